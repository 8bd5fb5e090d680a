"""Rules for values that launch nothing: INPUT / PARAM (declared by signature.py), JAGGED, FULL read by clusters."""
from __future__ import annotations

from xrec.ir import Op
from xrec.lowering import register_lowering

from .. import elementwise as ew
from ..context import LowerContext


@register_lowering([Op.INPUT, Op.PARAM], "triton")
def lower_declared(ctx: LowerContext, n):
    return True                                     # buffers and views made by the inputs / params steps


@register_lowering(Op.JAGGED, "triton")
def lower_jagged(ctx: LowerContext, n):
    ctx.jag[n.name] = (ctx.views[n.inputs[0]], ctx.views[n.inputs[1]], n.attr("include_last_offset", True))
    return True


@register_lowering(Op.FULL, "triton")
def lower_full(ctx: LowerContext, n):
    """A constant read only by fused clusters is a literal in their kernels; else declined."""
    if (ew.full_value(ctx.g, n.name) is not None and n.name not in ctx.outputs
            and all(u.name in ctx.cluster_of for u in ctx.g.users.get(n.name, []))):
        return True
    return False
