"""Feature interactions.

- DOT_INTERACTION ``T[B, F, D]`` with ``P`` pairs: ``2 x B x P x D`` FLOPs (one D-long dot per pair);
  reads T, writes ``[B, P]``.
- FM ``v[B, F, K]``: ``B x F x K`` adds for the sum over fields, ``2 x B x F x K`` for the sum of squares,
  ``B x K`` to square the sum, ``B x K`` to subtract, ``B x K`` to sum over K, ``B`` to halve:
  ``3BFK + 3BK + B``.
- CROSS_LAYER ``x0 * (W xl + b) + xl`` on ``[B, D]``: ``2BD^2`` (full W) or ``4BDr`` (low rank W V,
  ``r`` the rank), + ``3BD`` for the bias, the product and the sum; reads x0, xl and the weights.
"""
from __future__ import annotations

import math

from xrec.ir.ops import Op

from ..work import Work
from . import register_cost


def _io(ctx, node, weights=()) -> dict[str, float]:
    byts: dict[str, float] = {}
    for name in node.inputs:
        nb = ctx.nbytes(name)
        tier = ctx.weight_tier() if name in weights else ctx.tier_for(nb)
        byts[tier] = byts.get(tier, 0.0) + nb
    nb = ctx.nbytes(node.name)
    byts[ctx.tier_for(nb)] = byts.get(ctx.tier_for(nb), 0.0) + nb
    return byts


@register_cost(Op.DOT_INTERACTION, stage="interaction")
def dot_interaction(node, ctx) -> Work:
    shape = ctx.shape(node.inputs[0])
    b, d = math.prod(shape[:-2]), shape[-1]
    p = len(node.attr("pairs"))
    return Work({ctx.dtype(node.name).value: 2.0 * b * p * d}, _io(ctx, node), calls=1)


@register_cost(Op.FM, stage="interaction")
def fm(node, ctx) -> Work:
    b, f, k = ctx.shape(node.inputs[0])
    return Work({ctx.dtype(node.name).value: 3.0 * b * f * k + 3.0 * b * k + b}, _io(ctx, node), calls=1)


@register_cost(Op.CROSS_LAYER, stage="interaction")
def cross_layer(node, ctx) -> Work:
    x = ctx.shape(node.inputs[1])
    b, d = math.prod(x[:-1]), x[-1]
    if node.attr("low_rank", False):
        r = ctx.shape(node.inputs[2])[0]
        flops = 4.0 * b * d * r
    else:
        flops = 2.0 * b * d * d
    flops += 3.0 * b * d
    weights = set(node.inputs[2:])
    return Work({ctx.dtype(node.name).value: flops}, _io(ctx, node, weights), calls=1)
