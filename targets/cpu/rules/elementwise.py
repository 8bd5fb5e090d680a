"""Elementwise ops (arithmetic, comparisons, logic, where), ``expand`` and ``full``: one loop over the value, with
its inlined producers. Comparisons follow IEEE (NaN compares unequal: ``!=`` is true), as numpy and torch."""
from __future__ import annotations

from xrec.ir import Op
from xrec.ir.ops import COMPARE, ELEMENTWISE, LOGICAL
from xrec.lowering import register_lowering

from ..errors import TARGET


@register_lowering(ELEMENTWISE | COMPARE | LOGICAL | {Op.WHERE, Op.EXPAND, Op.FULL}, TARGET)
def lower_loop(ctx, n):
    ctx.loop(n)
