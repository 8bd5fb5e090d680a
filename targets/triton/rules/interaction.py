"""Rules for DOT_INTERACTION (``interaction_kernel``) and FM (``fm_kernel``).

A dot interaction the fusion step attached to its concatenation
(``cat(dense, interactions)``) is emitted by that concatenation's rule
(layout.py) with the dense prefix written by the same launch; on its own it
writes just the pair products. Both decline (the listed torch fallback) for
inputs that are not f32/f16.
"""
from __future__ import annotations

from xrec.ir import Op
from xrec.lowering import register_lowering

from ..context import KERNEL_INPUT_DTYPES, LowerContext
from ..program import CONST, Arg, Buffer, Launch, Variant, View
from ..tiles import cdiv_grid, np2


def interaction_launch(ctx: LowerContext, n, out_name: str | None = None):
    """The interaction of ``n``; with ``out_name`` (a concatenation) it also writes the dense prefix into it."""
    g = ctx.g
    t_name = n.inputs[0]
    tt = g.type_of(t_name)
    if tt.dtype not in KERNEL_INPUT_DTYPES:
        return False
    v = ctx.views[t_name]
    F, D = int(tt.shape[1]), int(tt.shape[2])
    if v.strides[1:] != (D, 1):
        v = ctx.materialize(t_name)
    pairs = n.attr("pairs")
    DP = np2(D)
    P = len(pairs)
    PP = np2(P)
    pname = f"pairs_{n.name}"
    ctx.buffers[pname] = Buffer(pname, CONST, "i32", (2, PP), data=[i for i, _ in pairs] + [0] * (PP - P)
                                + [j for _, j in pairs] + [0] * (PP - P))
    prefix = out_name is not None
    out = ctx.loc(out_name or n.name)
    B = v.shape[0]
    bp = min(PP, 64)
    bb = max(1, min(16, 4096 // (bp * DP)))
    cx = dict(F=F, D=D, P=P, DP=DP, PP=PP, PREFIX=prefix)
    ibp = min(PP, 1024)
    ibb = max(1, min(64, (1 << 20) // (ibp * DP)))
    ctx.steps.append(Launch(
        kernel="interaction_kernel",
        args=[Arg("ptr", v, name="T"), Arg("ptr", out, name="OUT"),
              Arg("ptr", View(pname, "i32", (2, PP), (PP, 1)), name="PAIRS"), Arg("i32", expr=B, name="M"),
              Arg("i32", expr=v.strides[0], name="stride_t"), Arg("i32", expr=out.strides[0], name="stride_out")],
        variants=[Variant(None, (cdiv_grid(B, bb), (P, bp), (1, 1)), {**cx, "BLOCK_B": bb, "BLOCK_P": bp},
                          num_warps=4, num_stages=1)],
        interp=[Variant(None, (cdiv_grid(B, ibb), (P, ibp), (1, 1)), {**cx, "BLOCK_B": ibb, "BLOCK_P": ibp})],
        batch=B, note=f"%{n.name}: dot interaction of {F} x {D} -> {P} pairs"
                      + (f", fused with %{out_name} = cat(dense, interactions)" if prefix else "")))
    return True


@register_lowering(Op.DOT_INTERACTION, "triton")
def lower_interaction(ctx: LowerContext, n):
    if n.name in ctx.fused_inter.values():
        return True                                 # written by its concatenation's launch
    return interaction_launch(ctx, n)


@register_lowering(Op.FM, "triton")
def lower_fm(ctx: LowerContext, n):
    g = ctx.g
    tt = g.type_of(n.inputs[0])
    if tt.dtype not in KERNEL_INPUT_DTYPES:
        return False
    v = ctx.views[n.inputs[0]]
    F, K = int(tt.shape[1]), int(tt.shape[2])
    if v.strides[1:] != (K, 1):
        v = ctx.materialize(n.inputs[0])
    out = ctx.loc(n.name)
    FP, KP = np2(F), np2(K)
    bb = max(1, min(64, 4096 // (FP * KP)))
    B = v.shape[0]
    ctx.steps.append(Launch(
        kernel="fm_kernel",
        args=[Arg("ptr", v, name="V"), Arg("ptr", out, name="OUT"), Arg("i32", expr=B, name="M"),
              Arg("i32", expr=v.strides[0], name="stride_v"), Arg("i32", expr=out.strides[0], name="stride_out")],
        variants=[Variant(None, (cdiv_grid(B, bb), (1, 1), (1, 1)),
                          dict(F=F, K=K, FP=FP, KP=KP, BLOCK_B=bb), num_warps=4, num_stages=1)],
        batch=B, note=f"%{n.name}: factorization machine over {F} x {K}"))
    return True
