"""Normalisations inside each row: layer_norm over the trailing dims, softmax along one non-batch dim."""
from __future__ import annotations

from xrec.ir import Op
from xrec.ir.printer import print_node
from xrec.ir.types import DType
from xrec.lowering import register_lowering

from ..arena import reads_of, writes_of
from ..errors import TARGET, unsupported
from ..plan import LayerNormStep, SoftmaxStep


@register_lowering(Op.LAYER_NORM, TARGET)
def lower_layer_norm(ctx, n):
    k = int(n.attr("normalized_ndim"))
    if k >= n.type.rank:
        raise unsupported(n, "layer norm over the batch dim")
    src = n.inputs[0]
    v = ctx.view_of(src, n)
    if not v.contiguous or v.ld == "0":
        v = ctx.copy_contiguous(src, v, n)
    out = ctx.out_view(n)
    if not out.contiguous:
        raise AssertionError("internal: layer norm output must be contiguous")
    pos = 1
    w = b = ""
    if n.attr("has_weight"):
        w = ctx.const_member(n.inputs[pos], n)
        pos += 1
    if n.attr("has_bias"):
        b = ctx.const_member(n.inputs[pos], n)
    ctx.add(LayerNormStep(node=n.name, text=print_node(ctx.g, n), reads=reads_of(v), writes=writes_of(out),
                          x=v, out=out, n_norm=k, eps=float(n.attr("eps")), weight=w, bias=b))
    ctx.set(n, out)


@register_lowering(Op.SOFTMAX, TARGET)
def lower_softmax(ctx, n):
    """exp(x - max) / sum(exp(x - max)) along ``dim``, read and written through strided views (no copies).

    As the IR defines it: a row holding NaN or +inf, or only -inf, gives NaN throughout."""
    d = n.attr("dim") % n.type.rank
    if d == 0:
        raise unsupported(n, "softmax along the batch dim (it mixes the rows of the batch)")
    if n.type.dtype is not DType.F32:
        raise unsupported(n, f"softmax of {n.type.dtype.value}: the cpu computes it in float32 only")
    v = ctx.view_of(n.inputs[0], n)
    out = ctx.out_view(n)
    ctx.add(SoftmaxStep(node=n.name, text=print_node(ctx.g, n), reads=reads_of(v), writes=writes_of(out), x=v,
                        out=out, axis=d - 1))
    ctx.set(n, out)
