"""Dense layers on the GEMM kernel (xk::linear, packed weights): mlp, linear, matmul, cross_layer."""
from __future__ import annotations

import numpy as np

from xrec.ir import Op, mlp_layers
from xrec.ir.printer import print_node
from xrec.ir.types import DType
from xrec.lowering import register_lowering

from ..arena import expr_buffers, reads_of, writes_of
from ..context import is_matrix, matrix_parts
from ..errors import TARGET, unsupported
from ..plan import Apply, BmmStep, Load, LinearStep, LoopStep, View


def linear_chain(ctx, n, x: str, layers: list, out: View) -> None:
    """layers: (weight value, bias value or None, act). Writes the last layer into ``out``."""
    K0 = int(ctx.g.type_of(x).shape[-1])
    xp, ldx, rows, xv = ctx.matrix(x, n, K0)
    mid = tuple(xv.dims[:-1])
    step_reads = reads_of(xv)
    calls = []
    temps = []
    cur, cur_ld, K = xp, ldx, K0
    for li, (w, b, act) in enumerate(layers):
        slot, N, Kw = ctx.linear_weight(w, n)
        if Kw != K:
            raise unsupported(n, f"layer {li}: weight {N}x{Kw} does not take {K} inputs")
        bias = ctx.const_member(b, n) if b is not None else ""
        if li == len(layers) - 1:
            if not is_matrix(out, N):
                raise AssertionError(f"internal: output view of %{n.name} is not a row block")
            yp, ldy, _ = matrix_parts(out)
        else:
            tb = ctx.new_buffer(int(np.prod(mid)) * N if mid else N, DType.F32, f"%{n.name} layer {li}")
            temps.append(tb.id)
            yp, ldy = tb.cname, str(N)
        calls.append(dict(x=cur, ldx=cur_ld, rows=rows, K=K, N=N, weight="W." + slot.cname, bias=bias,
                          act=act, y=yp, ldy=ldy))
        cur, cur_ld, K = yp, ldy, N
    text = print_node(ctx.g, n)
    for li, c in enumerate(calls):
        ctx.add(LinearStep(node=n.name, text=text if li == 0 else "", reads=step_reads if li == 0 else set(),
                           writes=writes_of(out) if li == len(calls) - 1 else set(), temps=temps, **c))


@register_lowering(Op.MLP, TARGET)
def lower_mlp(ctx, n):
    out = ctx.out_view(n)
    linear_chain(ctx, n, n.inputs[0], mlp_layers(n), out)
    ctx.set(n, out)


@register_lowering(Op.LINEAR, TARGET)
def lower_linear(ctx, n):
    out = ctx.out_view(n)
    linear_chain(ctx, n, n.inputs[0], [(n.inputs[1], n.inputs[2] if len(n.inputs) == 3 else None, "none")], out)
    ctx.set(n, out)


@register_lowering(Op.MATMUL, TARGET)
def lower_matmul(ctx, n):
    """rows @ constant [K, N] (a Linear with the transposed weight, packed now), or a per-row bmm."""
    a, b = n.inputs
    ta, tb = ctx.g.type_of(a), ctx.g.type_of(b)
    if ctx.rowwise(a) and ctx.is_const(b) and tb.rank == 2:
        key = f"@fold/{b}.T"
        if key not in ctx.extra:
            ctx.extra[key] = np.ascontiguousarray(ctx.const_array(b).T)
        out = ctx.out_view(n)
        slot = ctx.slot(key, "packed", N=int(tb.shape[1]), K=int(tb.shape[0]))
        K = int(tb.shape[0])
        xp, ldx, rows, xv = ctx.matrix(a, n, K)
        yp, ldy, _ = matrix_parts(out)
        ctx.add(LinearStep(node=n.name, text=print_node(ctx.g, n), reads=reads_of(xv), writes=writes_of(out),
                           x=xp, ldx=ldx, rows=rows, K=K, N=slot.N, weight="W." + slot.cname, bias="",
                           act="none", y=yp, ldy=ldy))
        ctx.set(n, out)
        return
    if ta.rank == 3 and tb.rank == 3 and ctx.rowwise(a) and ctx.rowwise(b):
        av, bv = ctx.view_of(a, n), ctx.view_of(b, n)
        out = ctx.out_view(n)
        M, K = int(ta.shape[1]), int(ta.shape[2])
        N = int(tb.shape[2])
        ctx.add(BmmStep(node=n.name, text=print_node(ctx.g, n), reads=reads_of(av, bv), writes=writes_of(out),
                        a=av, b=bv, out=out, M=M, K=K, N=N))
        ctx.set(n, out)
        return
    raise unsupported(n, f"matmul of {ta} and {tb} (supported: rows @ constant matrix, per-row bmm)")


@register_lowering(Op.CROSS_LAYER, TARGET)
def lower_cross_layer(ctx, n):
    """x_{l+1} = x0 * (W x_l + b) + x_l; low rank: W (V x_l)."""
    x0, xl = n.inputs[:2]
    K = int(n.type.shape[1])
    out = ctx.out_view(n)
    t = ctx.new_buffer(K, DType.F32, f"%{n.name}: W x + b")
    tv = View(ptr=t.cname, ctype="float", rowwise=True, ld=str(K), dims=(K,), strides=(1,), buffer=t.id)
    if n.attr("low_rank"):
        v, w, b = n.inputs[2:]
        layers = [(v, None, "none"), (w, b, "none")]
    else:
        w, b = n.inputs[2:]
        layers = [(w, b, "none")]
    linear_chain(ctx, n, xl, layers, tv)
    ex = Apply(Op.ADD, (Apply(Op.MUL, (ctx.expr_of(x0, ("i", "j0")), Load(tv, ("i", "j0")))),
                        ctx.expr_of(xl, ("i", "j0"))))
    ctx.add(LoopStep(node=n.name, text="", out=out, expr=ex, reads=expr_buffers(ex) | {t.id},
                     writes=writes_of(out)))
    ctx.set(n, out)
