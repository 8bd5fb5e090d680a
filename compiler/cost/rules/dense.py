"""Dense linear algebra: GEMM FLOPs ``2 x M x K x N`` (+ ``M x N`` for a bias, + the activation's).

Bytes: the weights (and bias) once per call, from cache when all the graph's dense weights fit in it
(``ctx.weight_tier()``), else main memory; the input and output activations once each, in the tier
their size fits (``ctx.tier_for``). FLOPs count in the dtype of the node's output.
"""
from __future__ import annotations

import math

from xrec.ir.graph import mlp_layers
from xrec.ir.ops import Op

from ..work import Work
from . import register_cost
from .elementwise import ACTIVATION_FLOPS


def _acc(d: dict, tier: str, nb: float) -> None:
    if nb:
        d[tier] = d.get(tier, 0.0) + nb


def gemm_work(ctx, m: int, k: int, n: int, itemsize: int, dtype: str, *, bias: bool, act: str = "none",
              read_x: bool = True, write_y: bool = True) -> Work:
    """One ``[m, k] @ [k, n] (+ bias) -> act`` layer (a Linear or one layer of an MLP)."""
    flops = 2.0 * m * k * n + (m * n if bias else 0) + ACTIVATION_FLOPS[act] * m * n
    byts: dict[str, float] = {}
    _acc(byts, ctx.weight_tier(), (k * n + (n if bias else 0)) * itemsize)
    if read_x:
        _acc(byts, ctx.tier_for(m * k * itemsize), m * k * itemsize)
    if write_y:
        _acc(byts, ctx.tier_for(m * n * itemsize), m * n * itemsize)
    return Work({dtype: flops}, byts, calls=1)


@register_cost(Op.LINEAR, stage="dense")
def linear(node, ctx) -> Work:
    x = ctx.shape(node.inputs[0])
    n, k = ctx.shape(node.inputs[1])
    m = math.prod(x[:-1])
    return gemm_work(ctx, m, k, n, ctx.itemsize(node.name), ctx.dtype(node.name).value,
                     bias=len(node.inputs) > 2)


@register_cost(Op.MLP, stage="dense")
def mlp(node, ctx) -> Work:
    """A fused chain: one GEMM call per layer; the intermediate activations are written and read back."""
    x = ctx.shape(node.inputs[0])
    m = math.prod(x[:-1])
    item, dt = ctx.itemsize(node.name), ctx.dtype(node.name).value
    total = Work()
    for layer in mlp_layers(node):
        n, k = ctx.shape(layer.weight)
        total = total + gemm_work(ctx, m, k, n, item, dt, bias=layer.bias is not None, act=layer.act)
    return total


@register_cost(Op.MATMUL, stage="dense")
def matmul(node, ctx) -> Work:
    """numpy matmul: ``2 x K`` FLOPs per output element (1-d operands promoted as numpy does)."""
    a, b = ctx.shape(node.inputs[0]), ctx.shape(node.inputs[1])
    k = a[-1]
    flops = 2.0 * ctx.numel(node.name) * k
    byts: dict[str, float] = {}
    for name in (*node.inputs, node.name):
        _acc(byts, ctx.tier_for(ctx.nbytes(name)), ctx.nbytes(name))
    return Work({ctx.dtype(node.name).value: flops}, byts, calls=1)
