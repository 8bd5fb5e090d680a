"""Elementwise ops, reductions and normalisations: FLOP-equivalents per element, inputs read once.

FLOP-equivalents per output element (a convention, the same for every device; calibration absorbs
the real cost of transcendental functions): arithmetic, comparisons, logic, where, relu, abs, clamp,
neg: 1; exp, log, sqrt, rsqrt, sigmoid, tanh, pow: 4; gelu, silu: 8 / 5; cast: 0. Reductions: 1 per
input element (norm 2); layer_norm 8 per element; softmax 7 per element.
Bytes: every input (at its own, un-broadcast size) and the output once, in the tier each fits.
"""
from __future__ import annotations

from xrec.ir.ops import BINARY, COMPARE, LOGICAL, Op, UNARY

from ..work import Work
from . import register_cost

ACTIVATION_FLOPS = {"none": 0, "relu": 1, "sigmoid": 4, "tanh": 4, "gelu": 8, "gelu_tanh": 8, "silu": 5}
"""Per element, for the activations an MLP layer applies (xrec.ir.formats.ACTIVATIONS)."""

PER_ELEMENT = {Op.EXP: 4, Op.LOG: 4, Op.SQRT: 4, Op.RSQRT: 4, Op.SIGMOID: 4, Op.TANH: 4, Op.POW: 4,
               Op.GELU: 8, Op.SILU: 5, Op.CAST: 0}

assert set(ACTIVATION_FLOPS) == set(__import__("xrec.ir.formats", fromlist=["ACTIVATIONS"]).ACTIVATIONS), \
    "ACTIVATION_FLOPS must cover every activation of xrec.ir.formats.ACTIVATIONS"


def io_bytes(ctx, node) -> dict[str, float]:
    byts: dict[str, float] = {}
    for name in (*node.inputs, node.name):
        nb = ctx.nbytes(name)
        if nb:
            byts[ctx.tier_for(nb)] = byts.get(ctx.tier_for(nb), 0.0) + nb
    return byts


def _compute_dtype(ctx, node) -> str:
    """Comparisons and logic compute in their operands' dtype, not their bool result's."""
    return ctx.dtype(node.inputs[-1] if node.op is Op.WHERE else node.inputs[0]).value \
        if node.op in COMPARE | LOGICAL | {Op.WHERE, Op.CAST} else ctx.dtype(node.name).value


@register_cost(UNARY | BINARY | COMPARE | LOGICAL | {Op.WHERE}, stage="other")
def elementwise(node, ctx) -> Work:
    flops = PER_ELEMENT.get(node.op, 1) * ctx.numel(node.name)
    return Work({_compute_dtype(ctx, node): float(flops)}, io_bytes(ctx, node), calls=1)


@register_cost((Op.SUM, Op.MEAN, Op.AMAX, Op.NORM), stage="other")
def reduce(node, ctx) -> Work:
    flops = (2 if node.op is Op.NORM else 1) * ctx.numel(node.inputs[0])
    return Work({ctx.dtype(node.name).value: float(flops)}, io_bytes(ctx, node), calls=1)


@register_cost(Op.LAYER_NORM, stage="other")
def layer_norm(node, ctx) -> Work:
    return Work({ctx.dtype(node.name).value: 8.0 * ctx.numel(node.name)}, io_bytes(ctx, node), calls=1)


@register_cost(Op.SOFTMAX, stage="other")
def softmax(node, ctx) -> Work:
    return Work({ctx.dtype(node.name).value: 7.0 * ctx.numel(node.name)}, io_bytes(ctx, node), calls=1)
