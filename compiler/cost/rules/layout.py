"""Graph inputs, parameters, constants and layout ops.

- INPUT: its bytes cross the host link (``transfers["h2d"]``; free on a CPU); the graph's outputs
  cross back (added by ``xrec.cost.graph_work``).
- PARAM, FULL: no work of their own (the ops reading them count the reads).
- RESHAPE, EXPAND, SLICE: views, no work.
- PERMUTE, CAT: a copy (inputs read, output written), one call.
- INDEX: the index tensors and the gathered output read, the output written, one call.
"""
from __future__ import annotations

from xrec.ir.ops import Op

from ..work import H2D, Work
from . import register_cost
from .elementwise import io_bytes


@register_cost(Op.INPUT, stage="other")
def graph_input(node, ctx) -> Work:
    return Work(transfers={H2D: float(ctx.nbytes(node.name))})


@register_cost((Op.PARAM, Op.FULL, Op.RESHAPE, Op.EXPAND, Op.SLICE), stage="other")
def no_work(node, ctx) -> Work:
    return Work()


@register_cost((Op.PERMUTE, Op.CAT), stage="other")
def copy(node, ctx) -> Work:
    return Work(bytes=io_bytes(ctx, node), calls=1)


@register_cost(Op.INDEX, stage="other")
def index(node, ctx) -> Work:
    byts = {}
    for name in (*node.inputs[1:], node.name, node.name):      # indices, the gathered rows, the output
        nb = ctx.nbytes(name)
        byts[ctx.tier_for(nb)] = byts.get(ctx.tier_for(nb), 0.0) + nb
    return Work(bytes=byts, calls=1)
