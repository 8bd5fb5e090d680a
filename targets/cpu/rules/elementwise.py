"""Elementwise ops, ``expand`` and ``full``: one loop over the value, with its inlined producers."""
from __future__ import annotations

from xrec.ir import Op
from xrec.ir.ops import ELEMENTWISE
from xrec.lowering import register_lowering

from ..errors import TARGET


@register_lowering(ELEMENTWISE | {Op.EXPAND, Op.FULL}, TARGET)
def lower_loop(ctx, n):
    ctx.loop(n)
