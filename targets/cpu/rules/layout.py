"""View ops (reshape, slice, permute) and cat: new strides over the same data; copies only where needed."""
from __future__ import annotations

from xrec.ir import Op
from xrec.lowering import register_lowering
from xrec.targets.views import contiguous_strides, permute_axes

from ..arena import expr_buffers, writes_of
from ..concat import slice_view
from ..context import index_vars, is_batch, static_dims
from ..errors import TARGET, unsupported
from ..plan import LoopStep


@register_lowering(Op.RESHAPE, TARGET)
def lower_reshape(ctx, n):
    src = n.inputs[0]
    v = ctx.view_of(src, n)
    dims = static_dims(n.type.shape[1:], n)
    if not is_batch(n.type.shape[0], ctx.B):
        raise unsupported(n, "a reshape that merges or splits the batch dim")
    if not v.rowwise or not v.contiguous or v.ld == "0":
        v = ctx.copy_contiguous(src, v, n)
    ctx.set(n, v.with_(dims=dims, strides=contiguous_strides(dims)))


@register_lowering(Op.SLICE, TARGET)
def lower_slice(ctx, n):
    v = ctx.view_of(n.inputs[0], n)
    t = ctx.g.type_of(n.inputs[0])
    d = n.attr("dim") % t.rank
    if d == 0:
        raise unsupported(n, "slicing the batch dim")
    size = int(t.shape[d])
    start, end, step = n.attr("start"), n.attr("end"), n.attr("step", 1)
    start, end, step = slice(start, end, step).indices(size)
    length = len(range(start, end, step))
    ctx.set(n, slice_view(v, d - 1, start, length, step))


@register_lowering(Op.PERMUTE, TARGET)
def lower_permute(ctx, n):
    perm = tuple(n.attr("perm"))
    if perm[0] != 0:
        raise unsupported(n, "a permutation that moves the batch dim")
    v = ctx.view_of(n.inputs[0], n)
    dims, strides = permute_axes(v.dims, v.strides, [q - 1 for q in perm[1:]])
    ctx.set(n, v.with_(dims=dims, strides=strides))


@register_lowering(Op.CAT, TARGET)
def lower_cat(ctx, n):
    """Copies the inputs that concat placement (concat.py) could not have written in place."""
    d = n.attr("dim") % n.type.rank
    if d == 0:
        raise unsupported(n, "concatenating along the batch dim")
    out = ctx.views.get(n.name) or ctx.out_view(n)
    col = 0
    how = []
    for u in n.inputs:
        size = int(ctx.g.type_of(u).shape[d])
        dst = slice_view(out, d - 1, col, size)
        col += size
        if ctx.placed.get(u) is not None and ctx.views.get(u) is ctx.placed[u] and dst == ctx.placed[u]:
            how.append(f"%{u} written in place")
            continue                   # already written in place by its producer
        how.append(f"%{u} copied")
        expr = ctx.expr_of(u, index_vars(n.type.rank))
        ctx.add(LoopStep(node=n.name, text=f"  (copy %{u} into its slice of %{n.name})", out=dst,
                         expr=expr, reads=expr_buffers(expr), writes=writes_of(out)))
    ctx.set(n, out)
    ctx.notes.append(f"%{n.name}: " + ", ".join(how))
