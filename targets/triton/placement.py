"""Planning step ``placement``: which values are written straight into their slot of a concatenation.

A column concatenation of 2-D values costs nothing when each input's producer
writes its rows into the concatenation's buffer at the input's first column
(every kernel takes an output pointer plus a row stride). The step walks the
schedule backwards, so an outer concatenation places its inputs before an inner
one is asked; an input gets a slot (``ctx.hint``) when its producer can write a
row window, its width is static, it is not a graph output and has no slot yet.
The others are copied in after they are computed (``ctx.copies``).
"""
from __future__ import annotations

from xrec.ir import Op
from xrec.ir.types import canon_dim

from .context import LowerContext

# ops whose lowering writes its result into any 2-D row window it is given
WRITES_ROW_WINDOWS = (Op.EMBEDDING_BAG_GROUP, Op.EMBEDDING_BAG, Op.MLP, Op.LINEAR, Op.CROSS_LAYER,
                      Op.DOT_INTERACTION, Op.FM)
# ops whose value is no computation of its own (a user input, a weight, a view of another value, a constant)
NOT_COMPUTED = (Op.INPUT, Op.PARAM, Op.JAGGED, Op.FULL, Op.RESHAPE, Op.SLICE, Op.EXPAND, Op.PERMUTE)


def writes_own_output(ctx: LowerContext, name: str) -> bool:
    """Whether the step producing ``name`` can write it into any 2-D row window."""
    n = ctx.g.node(name)
    if name in ctx.cluster_of or n.op in WRITES_ROW_WINDOWS:
        return True
    return n.op not in NOT_COMPUTED


def place_concat_inputs(ctx: LowerContext) -> None:
    g = ctx.g
    for unit in reversed(ctx.schedule):
        if isinstance(unit, int):
            continue
        n = g.node(unit)
        if not ctx.is_cat_rows(n):
            continue
        ctx.copies[n.name] = []
        if n.name in ctx.fused_inter:
            continue
        col = 0
        for i in n.inputs:
            w = g.type_of(i).shape[1]
            if (i not in ctx.hint and i not in ctx.outputs and writes_own_output(ctx, i)
                    and isinstance(w, int) and i not in ctx.fused_inter.values()):
                ctx.hint[i] = (n.name, col)
            else:
                ctx.copies[n.name].append((i, col))
            col = canon_dim(col + w)
