"""Planning step 3, concat placement: producers write straight into their slice of a concat's buffer.

For every concat along a non-batch dim, each input that is computed here (a loop,
or a kernel writing [rows, N] blocks with a row stride when the concat is 2-D),
used once in this concat and not itself an output, a constant, an inlined value
or another concat gets a strided view into the concat's buffer: its producer
writes there, and the concat step copies only the inputs that could not be
placed (the header comment of model.cpp lists which).
"""
from __future__ import annotations

from xrec.ir import Op
from xrec.ir.ops import COMPARE, ELEMENTWISE, LOGICAL, REDUCE
from xrec.targets.views import slice_axis

from .plan import View

# producers that can write into any strided view (loops) or into a [rows, N] block with a row stride
LOOP_PRODUCERS = ELEMENTWISE | COMPARE | LOGICAL | REDUCE | {Op.WHERE, Op.FM, Op.EXPAND}
MATRIX_PRODUCERS = {Op.MLP, Op.LINEAR, Op.EMBEDDING_BAG, Op.EMBEDDING_BAG_GROUP, Op.DOT_INTERACTION,
                    Op.CROSS_LAYER}


def slice_view(v: View, axis: int, start: int, length: int, step: int = 1) -> View:
    """``v`` restricted to ``start, start + step, ...`` (``length`` entries) along non-batch ``axis``."""
    dims, strides, off = slice_axis(v.dims, v.strides, axis, start, length, step)
    ptr = v.ptr if off == 0 else f"({v.ptr} + {off})"
    return v.with_(ptr=ptr, dims=dims, strides=strides)


def can_place(ctx, u: str, rank: int, seen_here: set) -> bool:
    """Whether value ``u`` (an input of a rank-``rank`` concat) can be written into its slice by its producer."""
    g = ctx.g
    un = g.node(u)
    return (u not in ctx.placed and u not in ctx.out_target and u not in seen_here
            and u not in ctx.inline and u not in ctx.const_vals and ctx.rowwise(u)
            and un.type.rank == rank and un.op is not Op.CAT and u not in g.outputs
            and (un.op in LOOP_PRODUCERS or (un.op in MATRIX_PRODUCERS and rank == 2)))


def plan_concats(ctx) -> None:
    """Give every row-wise concat its output view (``ctx.views``) and its placeable inputs their slices
    (``ctx.placed``)."""
    g = ctx.g
    for n in g.nodes_of(Op.CAT):
        if not ctx.rowwise(n.name):
            continue
        rank = n.type.rank
        d = n.attr("dim") % rank
        if d == 0:
            continue
        cat_view = ctx.out_view(n)
        ctx.views[n.name] = cat_view
        col = 0
        seen_here: set = set()
        for u in n.inputs:
            size = g.node(u).type.shape[d]
            if can_place(ctx, u, rank, seen_here):
                ctx.placed[u] = slice_view(cat_view, d - 1, col, size)
            seen_here.add(u)
            col += size


def check_placements(ctx) -> None:
    """Every value planned into a concat was written there (an internal consistency check)."""
    for name, v in ctx.placed.items():
        if ctx.views.get(name) is not v:
            raise AssertionError(f"internal: %{name} was planned into a concat but written elsewhere")
