"""The model's inputs and outputs: what the C ABI accepts, and where outputs are written.

``plan_outputs`` (before concat placement) lets the producer of each output
write straight into the caller's output tensor; ``bind_inputs`` records each
input's accepted dtypes and its view; ``bind_jagged`` records which inputs make
up each sparse feature; ``write_outputs`` (after the op rules) copies any output
that was not written in place.
"""
from __future__ import annotations

import numpy as np

from xrec.ir import Node, Op
from xrec.ir.types import DType
from xrec.targets.views import contiguous_strides

from .context import CTYPES, cident, index_vars, static_dims
from .errors import unsupported
from .plan import InputInfo, LoopStep, OutputInfo, View

VIEW_OPS = {Op.RESHAPE, Op.SLICE, Op.PERMUTE}
XREC_DTYPE = {DType.F32: "XREC_F32", DType.I64: "XREC_I64", DType.I32: "XREC_I32", DType.F64: "XREC_F64",
              DType.I8: "XREC_I8", DType.U8: "XREC_U8", DType.BOOL: "XREC_BOOL", DType.F16: "XREC_F16"}


def _row_view(ptr_name: str, dims: tuple, dtype: DType) -> View:
    ld = int(np.prod(dims, dtype=np.int64)) if dims else 1
    return View(ptr=f"(C.{ptr_name} + r0 * {ld}L)", ctype=CTYPES[dtype], rowwise=True, ld=str(ld), dims=dims,
                strides=contiguous_strides(dims))


def plan_outputs(ctx) -> None:
    """``ctx.outputs`` in order, and ``ctx.out_target``: outputs whose producer writes the caller's tensor."""
    g = ctx.g
    seen = set()
    for k, o in enumerate(g.outputs):
        n = g.node(o)
        t = n.type
        if not ctx.rowwise(o):
            raise unsupported(n, f"model output {t} has no leading batch dim")
        dims = static_dims(t.shape[1:], n)
        cname = f"out{k}"
        ctx.outputs.append(OutputInfo(value=o, dtype=t.dtype, shape=t.shape, cname=cname))
        v = _row_view(cname, dims, t.dtype)
        storage = n.op not in VIEW_OPS | {Op.INPUT, Op.PARAM, Op.FULL, Op.JAGGED} \
            and o not in ctx.inline and o not in ctx.const_vals
        if storage and o not in seen:
            ctx.out_target[o] = v
        seen.add(o)


def bind_input(ctx, k: int, n: Node) -> None:
    """Input ``k``: its accepted dtypes (ids and offsets take int32 or int64) and, if read by rows, its view."""
    t = n.type
    kind = n.attr("kind", "dense")
    users = ctx.g.users.get(n.name, [])
    jag_only = users and all(u.op is Op.JAGGED or (u.op in (Op.EMBEDDING_BAG, Op.EMBEDDING_BAG_GROUP)
                                                   and n.name not in u.inputs[:1]) for u in users)
    if kind in ("indices", "offsets") or (jag_only and t.dtype in (DType.I32, DType.I64)):
        accept = ("XREC_I32", "XREC_I64")
    else:
        accept = (XREC_DTYPE[t.dtype],)
    cname = cident(n.name)
    ctx.inputs.append(InputInfo(index=k, name=n.attr("name", n.name), kind=kind, value=n.name,
                                dtype=t.dtype, shape=t.shape, accept=accept, cname=cname))
    if ctx.rowwise(n.name) and not jag_only:
        ctx.views[n.name] = _row_view(cname, static_dims(t.shape[1:], n), t.dtype)


def bind_inputs(ctx) -> None:
    for k, n in enumerate(ctx.g.input_nodes):
        bind_input(ctx, k, n)


def bind_jagged(ctx, n: Node) -> None:
    """A sparse feature: the input positions of its ids and offsets."""
    pos = ctx.input_positions()
    idx, off = n.inputs
    if idx not in pos or off not in pos:
        raise unsupported(n, "the indices and offsets of a sparse feature must be model inputs")
    ctx.jagged[n.name] = {"feature": n.attr("feature", n.name), "indices": pos[idx], "offsets": pos[off],
                          "last": bool(n.attr("include_last_offset", True))}


def write_outputs(ctx) -> None:
    """A copy step for every output not already written into the caller's tensor."""
    for o, info in zip(ctx.g.outputs, ctx.outputs):
        n = ctx.g.node(o)
        if ctx.out_target.get(o) is not None and ctx.views.get(o) is ctx.out_target[o]:
            continue
        out = _row_view(info.cname, static_dims(n.type.shape[1:], n), n.type.dtype)
        ctx.add(LoopStep(node=o, text=f"  (copy %{o} to output {info.cname})", out=out,
                         expr=ctx.expr_of(o, index_vars(n.type.rank))))
