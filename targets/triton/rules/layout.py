"""Rules for RESHAPE / SLICE / EXPAND / PERMUTE (views: no launch) and CAT along columns.

A layout op becomes a new strided view over its input's buffer; RESHAPE of a
value that no view can express, and SLICE with a negative start on a symbolic
dim, decline (the listed torch fallback). A column concatenation of 2-D values
costs nothing for the inputs placement.py put into their slots; the others are
copied in (a generated copy kernel, or a torch copy for non-float or
symbolic-width values). A concatenation that absorbs a dot interaction
(fusion.py) is that interaction's launch.
"""
from __future__ import annotations

import dataclasses

from xrec.ir import Op
from xrec.ir.rules import slice_length
from xrec.ir.types import canon_dim
from xrec.lowering import register_lowering

from ... import views
from .. import elementwise as ew
from ..context import KERNEL_INPUT_DTYPES, LowerContext
from ..program import Arg, Launch, TorchStep, Variant, View
from ..tiles import cdiv_grid
from .interaction import interaction_launch


@register_lowering(Op.RESHAPE, "triton")
def lower_reshape(ctx: LowerContext, n):
    v = views.reshape(ctx.views[n.inputs[0]], n.type.shape)
    if v is None:
        return False
    ctx.views[n.name] = v
    return True


@register_lowering(Op.SLICE, "triton")
def lower_slice(ctx: LowerContext, n):
    v = ctx.views[n.inputs[0]]
    d = n.attr("dim") % v.rank
    start, step = n.attr("start"), n.attr("step", 1)
    size = v.shape[d]
    if start < 0:
        if not isinstance(size, int):
            return False
        start = max(0, size + start)
    if isinstance(size, int):
        start = min(start, size)
    s = views.view_slice(v, d, start, slice_length(size, n.attr("start"), n.attr("end"), step), step)
    ctx.views[n.name] = dataclasses.replace(s, strides=tuple(canon_dim(x) for x in s.strides),
                                            offset=canon_dim(s.offset))
    return True


@register_lowering(Op.EXPAND, "triton")
def lower_expand(ctx: LowerContext, n):
    ctx.views[n.name] = views.expand(ctx.views[n.inputs[0]], n.type.shape)
    return True


@register_lowering(Op.PERMUTE, "triton")
def lower_permute(ctx: LowerContext, n):
    ctx.views[n.name] = views.permute(ctx.views[n.inputs[0]], n.attr("perm"))
    return True


@register_lowering(Op.CAT, "triton")
def lower_cat(ctx: LowerContext, n):
    if not ctx.is_cat_rows(n):
        return False
    if n.name in ctx.fused_inter:
        return interaction_launch(ctx, ctx.g.node(ctx.fused_inter[n.name]), out_name=n.name)
    ctx.loc(n.name)
    for i, col in ctx.copies.get(n.name, []):
        copy_into(ctx, i, ctx.slot_view(n.name, ctx.g.type_of(i).shape, col))
    return True


def copy_into(ctx: LowerContext, name: str, dst: View) -> None:
    """Copy the value ``name`` into the window ``dst`` (a concatenation slot)."""
    t = ctx.g.type_of(name)
    if t.dtype not in KERNEL_INPUT_DTYPES or not isinstance(t.shape[1], int):
        ctx.steps.append(TorchStep(node="", inputs=[ctx.views[name]], jagged=[None], out=dst,
                                   note=f"copy %{name} into its concat slot"))
        return
    src = ctx.rows(name)
    K = int(t.shape[1])
    gen = ew.generate_copy(K)
    ctx.sources.setdefault(gen.name, gen.source)
    R = t.shape[0]
    ctx.steps.append(Launch(
        kernel=gen.name,
        args=[Arg("ptr", src, name="X0"), Arg("i32", expr=src.strides[0], name="X0_rs"),
              Arg("ptr", dst, name="Y0"), Arg("i32", expr=dst.strides[0], name="Y0_rs"),
              Arg("i32", expr=R, name="R")],
        variants=[Variant(None, (cdiv_grid(R, gen.block_r), (1, 1), (1, 1)),
                          dict(K=K, BLOCK_R=gen.block_r, BLOCK_K=gen.block_k))],
        batch=R, note=f"copy %{name} [{R}, {K}] into its concat slot"))
