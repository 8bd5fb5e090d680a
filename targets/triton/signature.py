"""Planning steps ``inputs`` and ``params``: buffers and views of the user's inputs and of weights.bin.

Inputs are buffers of kind ``input`` in flat input order; every symbolic dim
``s + delta`` of an input shape binds ``s`` (``B``, ``N_<input>``) to that
axis at run time. Parameters are views into the one ``weights`` blob at the
offsets ``ArtifactWriter.write_weights`` gave them (bf16 tables are read as
their int16 bit patterns).
"""
from __future__ import annotations

import numpy as np
import sympy

from xrec.ir import Graph, Op
from xrec.ir.types import DType
from xrec.lowering import LoweringError

from .context import WEIGHTS, LowerContext
from .program import BLOB, INPUT, Buffer, View, contiguous_strides


def declare_inputs(ctx: LowerContext) -> None:
    for k, n in enumerate(ctx.g.input_nodes):
        t = n.type
        ctx.buffers[n.name] = Buffer(n.name, INPUT, t.dtype.value, t.shape, index=k)
        ctx.views[n.name] = View(n.name, t.dtype.value, t.shape, contiguous_strides(t.shape))
        ctx.inputs.append((n.attr("name"), n.name))
        for axis, d in enumerate(t.shape):
            if isinstance(d, int):
                continue
            free = list(d.free_symbols)
            if len(free) == 1:
                s = free[0]
                delta = sympy.expand(d - s)
                if delta.is_Integer and s.name not in ctx.symbols:
                    ctx.symbols[s.name] = (k, axis, int(delta))


def declare_params(ctx: LowerContext) -> None:
    total = 0
    for e in ctx.layout.values():
        total = max(total, e["offset"] + e["nbytes"])
    total = (total + 63) // 64 * 64
    ctx.buffers[WEIGHTS] = Buffer(WEIGHTS, BLOB, "u8", (total,))
    ctx.blob_bytes = total
    for n in ctx.g.nodes_of(Op.PARAM):
        key = n.attr("name")
        e = ctx.layout[key]
        dt = np.dtype(e["dtype"])
        code = "i16" if dt == np.uint16 else DType.from_numpy(dt).value    # bf16 tables: uint16 bits
        if e["offset"] % dt.itemsize:
            raise LoweringError(f"parameter {key!r} is at byte {e['offset']} of weights.bin, not a multiple of its "
                                f"element size {dt.itemsize}; write the weights with ArtifactWriter.write_weights",
                                target="triton", node=n)
        shape = tuple(e["shape"])
        ctx.views[n.name] = View(WEIGHTS, code, shape, contiguous_strides(shape), e["offset"] // dt.itemsize)


def weights_layout(g: Graph, align: int = 64) -> dict:
    """The layout ``ArtifactWriter.write_weights`` gives ``g``'s parameters (for lowering without a writer)."""
    out, off = {}, 0
    for name, a in g.params.items():
        off += (-off) % align
        out[name] = {"offset": off, "nbytes": int(a.nbytes), "dtype": a.dtype.str, "shape": list(a.shape)}
        off += a.nbytes
    return out
