"""The triton target's one fallback: a node without a Triton kernel runs as torch ops on the device.

Listed per op with its reason (``xrec.lowering.register_fallback``): a compile
that takes it prints the node and the reason, records it in the manifest
(``target_info["fallbacks"]``), and ``-O strict=true`` refuses it. Torch steps
run in the Python runtime only; the C library of a program with torch steps
refuses to load and names them (launcher.py).

An op is listed when ``torch_ops.run_node`` implements it: either it has no
triton rule at all, or its rule declines some operands (returns False).
"""
from __future__ import annotations

from xrec.ir import Op
from xrec.ir.ops import BINARY, COMPARE, LOGICAL, REDUCE, UNARY
from xrec.lowering import register_fallback

from ..context import LowerContext
from ..program import TorchStep


def emit_torch(ctx: LowerContext, n) -> None:
    """A TorchStep computing ``n`` from its inputs' views (jagged inputs as their ids and offsets)."""
    views, jag = [], []
    for i in n.inputs:
        if i in ctx.jag:
            idx, off, _ = ctx.jag[i]
            views.append(None)
            jag.append([idx, off])
        else:
            views.append(ctx.views[i])
            jag.append(None)
    ctx.steps.append(TorchStep(node=n.name, inputs=views, jagged=jag, out=ctx.loc(n.name),
                               note=f"%{n.name} = {n.op.value} (torch)"))


_TORCH = "runs as torch ops on the device (Python runtime only: the C library refuses programs with torch steps)"

# op group -> why it may take the torch step
FALLBACK_REASONS: dict[tuple[Op, ...], str] = {
    (Op.EMBEDDING, Op.MATMUL, Op.LAYER_NORM, Op.INDEX):
        f"the triton target has no kernel for it: {_TORCH}",
    tuple(sorted(UNARY | BINARY | REDUCE, key=list(Op).index)):
        "outside a fused elementwise kernel (not a float value of rank 1-2 over the batch, a pow exponent "
        f"other than 0.5, 1, 2, 3, -1, -0.5, or a norm other than p=1, 2, inf): {_TORCH}",
    (Op.MLP, Op.LINEAR, Op.CROSS_LAYER, Op.DOT_INTERACTION, Op.FM):
        f"operands that are not f32/f16 row-major values with parameter weights of the input's dtype: {_TORCH}",
    tuple(sorted(COMPARE | LOGICAL | {Op.WHERE, Op.SOFTMAX}, key=list(Op).index)):
        "outside a fused elementwise kernel (operands not float values (masks for logic, where's condition) of "
        f"rank 1-2 over the batch, or a softmax not along the last of 2 dims): {_TORCH}",
    (Op.FULL,): f"a constant not read only by fused kernels: {_TORCH}",
    (Op.RESHAPE,): f"a reshape no strided view of its input expresses: {_TORCH}",
    (Op.SLICE,): f"a slice with a negative start on a symbolic dim: {_TORCH}",
    (Op.CAT,): f"a concatenation that is not along the columns of 2-D values: {_TORCH}",
}

for _ops, _reason in FALLBACK_REASONS.items():
    register_fallback("triton", _ops, _reason, emit_torch)
