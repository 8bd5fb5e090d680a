"""Rules for MLP / LINEAR / CROSS_LAYER: ``linear_kernel`` launches, bias and activation in the epilogue.

An MLP is one launch per layer (the hidden activations in temps, the last layer
into the node's own location); a cross layer ``x0 * (W xl + b) + xl`` is the
linear kernel with the cross epilogue (low rank: a projection launch first).
Tiles per batch bucket come from tiles.py. A rule declines (returns False:
the listed torch fallback) when the operands are not f32/f16 2-D rows with
parameter weights of the same dtype.
"""
from __future__ import annotations

from xrec.ir import Op, formats, mlp_layers
from xrec.lowering import register_lowering

from ..context import KERNEL_INPUT_DTYPES, LowerContext
from ..program import TEMP, Arg, Buffer, Launch, View, contiguous_strides
from ..tiles import linear_interp_variants, linear_variants

DEFAULT_PRECISION = "tf32x3"


def linear_ok(ctx: LowerContext, x: str, weights: list[str]) -> bool:
    """The linear kernel takes ``x`` and ``weights``: 2-D f32/f16 input, parameter weights of its dtype."""
    g = ctx.g
    t = g.type_of(x)
    return (t.rank == 2 and t.dtype in KERNEL_INPUT_DTYPES
            and all(g.node(w).op is Op.PARAM and g.type_of(w).dtype is t.dtype for w in weights))


def linear_launch(ctx: LowerContext, x: View, w: View, bias: View | None, y: View, act: str, note: str,
                  cross: tuple | None = None) -> None:
    """Y = act(X W^T + bias) (or the cross epilogue X0 * (...) + XL) as one launch."""
    M = x.shape[0]
    N, K = int(w.shape[0]), int(w.shape[1])
    prec = ctx.option("precision", DEFAULT_PRECISION) if x.dtype == "f32" else "tf32"
    x0, xl = cross if cross else (x, x)
    cx = dict(N=N, K=K, ACT=formats.ACT_CODES[act], HAS_BIAS=bias is not None, CROSS=cross is not None,
              PRECISION=prec)
    variants = linear_variants(M, N, K, prec)
    interp = linear_interp_variants(M, N, K)
    for v in variants + interp:
        v.constexprs = {**cx, **v.constexprs}
    ctx.steps.append(Launch(
        kernel="linear_kernel",
        args=[Arg("ptr", x, name="X"), Arg("ptr", w, name="W"), Arg("ptr", bias or w, name="BIAS"),
              Arg("ptr", y, name="Y"), Arg("ptr", x0, name="X0"), Arg("ptr", xl, name="XL"),
              Arg("i32", expr=M, name="M"), Arg("i32", expr=x.strides[0], name="stride_x"),
              Arg("i32", expr=y.strides[0], name="stride_y"), Arg("i32", expr=x0.strides[0], name="stride_x0"),
              Arg("i32", expr=xl.strides[0], name="stride_xl")],
        variants=variants, batch=M, note=note, interp=interp))


@register_lowering(Op.MLP, "triton")
def lower_mlp(ctx: LowerContext, n):
    layers = mlp_layers(n)
    if not linear_ok(ctx, n.inputs[0], [w for w, b, _ in layers] + [b for _, b, _ in layers if b]):
        return False
    x = ctx.rows(n.inputs[0])
    out = ctx.loc(n.name)
    if not out.is_rows():
        return False
    M = x.shape[0]
    for k, (w, b, a) in enumerate(layers):
        wv = ctx.views[w]
        if k == len(layers) - 1:
            y = out
        else:
            buf = f"t_{n.name}_l{k}"
            shape = (M, int(wv.shape[0]))
            ctx.buffers[buf] = Buffer(buf, TEMP, x.dtype, shape)
            y = View(buf, x.dtype, shape, contiguous_strides(shape))
        linear_launch(ctx, x, wv, ctx.views[b] if b else None, y, a,
                      note=f"%{n.name} layer {k}: [{M}, {wv.shape[1]}] -> {wv.shape[0]}, {a}")
        x = y
    return True


@register_lowering(Op.LINEAR, "triton")
def lower_linear(ctx: LowerContext, n):
    if not linear_ok(ctx, n.inputs[0], list(n.inputs[1:])):
        return False
    out = ctx.loc(n.name)
    x = ctx.rows(n.inputs[0])
    b = ctx.views[n.inputs[2]] if len(n.inputs) == 3 else None
    linear_launch(ctx, x, ctx.views[n.inputs[1]], b, out, "none", note=f"%{n.name} = linear")
    return True


@register_lowering(Op.CROSS_LAYER, "triton")
def lower_cross(ctx: LowerContext, n):
    low = n.attr("low_rank")
    weights = list(n.inputs[2:])
    if not linear_ok(ctx, n.inputs[1], weights) or not linear_ok(ctx, n.inputs[0], weights):
        return False
    x0, xl = ctx.rows(n.inputs[0]), ctx.rows(n.inputs[1])
    out = ctx.loc(n.name)
    if not out.is_rows():
        return False
    M = xl.shape[0]
    if low:
        v, w, b = (ctx.views[i] for i in n.inputs[2:])
        r = int(v.shape[0])
        buf = f"t_{n.name}_low"
        ctx.buffers[buf] = Buffer(buf, TEMP, xl.dtype, (M, r))
        t = View(buf, xl.dtype, (M, r), (r, 1))
        linear_launch(ctx, xl, v, None, t, "none", note=f"%{n.name}: low-rank projection xl V^T -> {r}")
        src = t
    else:
        w, b = (ctx.views[i] for i in n.inputs[2:])
        src = xl
    linear_launch(ctx, src, w, b, out, "none", cross=(x0, xl),
                  note=f"%{n.name}: cross layer x0 * (W x + b) + xl, K={w.shape[0]}")
    return True
