"""A small writer of StableHLO MLIR text: typed SSA values and one method per StableHLO op.

xrec writes the module text itself (no tracing through jax), so the emitted
``src/model.mlir`` reads like what it computes: one comment line per IR node,
then the StableHLO ops lowering it. Every method returns a :class:`Value`
carrying its static shape and element type, so callers never spell types.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np

# xrec DType values -> MLIR element types
ELEM = {"f32": "f32", "f16": "f16", "bf16": "bf16", "f64": "f64", "i64": "i64", "i32": "i32",
        "i8": "i8", "u8": "ui8", "i4x2": "ui8", "bool": "i1"}
_FLOAT = ("f32", "f16", "bf16", "f64")


def tensor_type(shape: Sequence[int], elem: str) -> str:
    dims = "".join(f"{int(d)}x" for d in shape)
    return f"tensor<{dims}{elem}>"


@dataclass(frozen=True)
class Value:
    ssa: str                  # "%v12" or "%arg_name"
    shape: tuple[int, ...]
    elem: str                 # MLIR element type: f32, bf16, i32, ui8, i1, ...

    @property
    def type(self) -> str:
        return tensor_type(self.shape, self.elem)

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def is_float(self) -> bool:
        return self.elem in _FLOAT


def ssa_name(hint: str) -> str:
    """A valid MLIR SSA suffix from any text (feature names hold brackets, params dots)."""
    s = re.sub(r"[^A-Za-z0-9_.$-]", "_", hint)
    return s if s and not s[0].isdigit() else f"v{s}"


def _scalar_literal(value, elem: str) -> str:
    if elem == "i1":
        return "true" if value else "false"
    if elem == "f32":
        return "0x%08X" % int(np.array(value, np.float32).view(np.uint32))
    if elem == "f64":
        return "0x%016X" % int(np.array(value, np.float64).view(np.uint64))
    if elem == "f16":
        return "0x%04X" % int(np.array(value, np.float16).view(np.uint16))
    if elem == "bf16":
        import ml_dtypes
        return "0x%04X" % int(np.array(value, ml_dtypes.bfloat16).view(np.uint16))
    return str(int(value))


_NP_OF = {"f32": np.float32, "f64": np.float64, "f16": np.float16, "i64": np.int64, "i32": np.int32,
          "i8": np.int8, "ui8": np.uint8}


def numpy_elem(a: np.ndarray) -> str:
    """The MLIR element type of a numpy array (bfloat16 from ml_dtypes included)."""
    if a.dtype.name == "bfloat16":
        return "bf16"
    for elem, t in _NP_OF.items():
        if a.dtype == np.dtype(t):
            return elem
    raise TypeError(f"no StableHLO element type for numpy dtype {a.dtype}")


class Builder:
    """Accumulates the body of one function; each op method appends a line and returns its Value."""

    def __init__(self):
        self.lines: list[str] = []
        self._n = 0
        self._scalars: dict[tuple, Value] = {}

    # ---- plumbing
    def comment(self, text: str) -> None:
        for line in text.splitlines():
            self.lines.append(f"// {line}")

    def _new(self) -> str:
        self._n += 1
        return f"%{self._n - 1}"

    def _emit(self, rhs: str, shape, elem: str) -> Value:
        v = Value(self._new(), tuple(int(d) for d in shape), elem)
        self.lines.append(f"{v.ssa} = {rhs}")
        return v

    # ---- constants
    def scalar(self, value, elem: str) -> Value:
        """A 0-d constant (emitted once per value and type)."""
        key = (repr(value), elem)
        if key not in self._scalars:
            self._scalars[key] = self._emit(
                f"stablehlo.constant dense<{_scalar_literal(value, elem)}> : {tensor_type((), elem)}", (), elem)
        return self._scalars[key]

    def full(self, value, shape, elem: str) -> Value:
        return self.broadcast(self.scalar(value, elem), shape, ())

    def array(self, a: np.ndarray) -> Value:
        """A dense constant from raw little-endian bytes (weights baked in, index tables)."""
        a = np.ascontiguousarray(a)
        elem = numpy_elem(a)
        if a.size == 1:
            lit = _scalar_literal(a.reshape(()).astype(a.dtype).item() if elem != "bf16"
                                  else float(a.reshape(())), elem)
            return self._emit(f"stablehlo.constant dense<{lit}> : {tensor_type(a.shape, elem)}", a.shape, elem)
        raw = a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()
        return self._emit(f'stablehlo.constant dense<"0x{raw.hex().upper()}"> : {tensor_type(a.shape, elem)}',
                          a.shape, elem)

    def iota(self, shape, dim: int, elem: str = "i32") -> Value:
        return self._emit(f"stablehlo.iota dim = {dim} : {tensor_type(shape, elem)}", shape, elem)

    # ---- elementwise
    def unary(self, op: str, x: Value) -> Value:
        return self._emit(f"stablehlo.{op} {x.ssa} : {x.type}", x.shape, x.elem)

    def binary(self, op: str, a: Value, b: Value) -> Value:
        if a.shape != b.shape or a.elem != b.elem:
            raise ValueError(f"stablehlo.{op}: operands {a.type} and {b.type} differ")
        return self._emit(f"stablehlo.{op} {a.ssa}, {b.ssa} : {a.type}", a.shape, a.elem)

    def compare(self, direction: str, a: Value, b: Value) -> Value:
        if a.shape != b.shape or a.elem != b.elem:
            raise ValueError(f"stablehlo.compare: operands {a.type} and {b.type} differ")
        kind = "FLOAT" if a.is_float else ("UNSIGNED" if a.elem.startswith("ui") or a.elem == "i1" else "SIGNED")
        return self._emit(f"stablehlo.compare {direction}, {a.ssa}, {b.ssa}, {kind} : "
                          f"({a.type}, {b.type}) -> {tensor_type(a.shape, 'i1')}", a.shape, "i1")

    def select(self, pred: Value, a: Value, b: Value) -> Value:
        if pred.shape != a.shape or a.shape != b.shape or a.elem != b.elem:
            raise ValueError(f"stablehlo.select: {pred.type}, {a.type}, {b.type} do not match")
        return self._emit(f"stablehlo.select {pred.ssa}, {a.ssa}, {b.ssa} : {pred.type}, {a.type}",
                          a.shape, a.elem)

    def clamp(self, lo: Value, x: Value, hi: Value) -> Value:
        return self._emit(f"stablehlo.clamp {lo.ssa}, {x.ssa}, {hi.ssa} : ({lo.type}, {x.type}, {hi.type}) -> "
                          f"{x.type}", x.shape, x.elem)

    def convert(self, x: Value, elem: str) -> Value:
        if x.elem == elem:
            return x
        return self._emit(f"stablehlo.convert {x.ssa} : ({x.type}) -> {tensor_type(x.shape, elem)}",
                          x.shape, elem)

    def bitcast_convert(self, x: Value, shape, elem: str) -> Value:
        return self._emit(f"stablehlo.bitcast_convert {x.ssa} : ({x.type}) -> {tensor_type(shape, elem)}",
                          shape, elem)

    # ---- shape and layout
    def reshape(self, x: Value, shape) -> Value:
        shape = tuple(int(d) for d in shape)
        if shape == x.shape:
            return x
        if int(np.prod(shape)) != int(np.prod(x.shape)):
            raise ValueError(f"reshape {x.type} to {shape}: element counts differ")
        return self._emit(f"stablehlo.reshape {x.ssa} : ({x.type}) -> {tensor_type(shape, x.elem)}", shape, x.elem)

    def transpose(self, x: Value, perm) -> Value:
        perm = [int(p) for p in perm]
        if perm == list(range(x.rank)):
            return x
        shape = tuple(x.shape[p] for p in perm)
        return self._emit(f"stablehlo.transpose {x.ssa}, dims = {perm} : ({x.type}) -> "
                          f"{tensor_type(shape, x.elem)}", shape, x.elem)

    def broadcast(self, x: Value, shape, dims) -> Value:
        """``broadcast_in_dim``: operand dim i goes to result dim ``dims[i]``."""
        shape = tuple(int(d) for d in shape)
        dims = [int(d) for d in dims]
        if shape == x.shape and dims == list(range(x.rank)):
            return x
        return self._emit(f"stablehlo.broadcast_in_dim {x.ssa}, dims = {dims} : ({x.type}) -> "
                          f"{tensor_type(shape, x.elem)}", shape, x.elem)

    def broadcast_to(self, x: Value, shape) -> Value:
        """numpy broadcasting of ``x`` to ``shape`` (trailing dims aligned)."""
        shape = tuple(int(d) for d in shape)
        if x.shape == shape:
            return x
        lead = len(shape) - x.rank
        keep = [i for i, d in enumerate(x.shape) if d == shape[lead + i]]
        if len(keep) != x.rank:          # size-1 dims that grow: drop them first
            x = self.reshape(x, [x.shape[i] for i in keep])
        return self.broadcast(x, shape, [lead + i for i in keep])

    def slice(self, x: Value, start, limit, strides=None) -> Value:
        strides = strides or [1] * x.rank
        if list(start) == [0] * x.rank and list(limit) == list(x.shape) and list(strides) == [1] * x.rank:
            return x
        shape = tuple(len(range(s, e, st)) for s, e, st in zip(start, limit, strides))
        spec = ", ".join(f"{s}:{e}:{st}" for s, e, st in zip(start, limit, strides))
        return self._emit(f"stablehlo.slice {x.ssa} [{spec}] : ({x.type}) -> {tensor_type(shape, x.elem)}",
                          shape, x.elem)

    def slice_dim(self, x: Value, dim: int, start: int, end: int, step: int = 1) -> Value:
        lo = [0] * x.rank
        hi = list(x.shape)
        st = [1] * x.rank
        lo[dim], hi[dim], st[dim] = start, end, step
        return self.slice(x, lo, hi, st)

    def pad(self, x: Value, high, value=0) -> Value:
        """Pad at the end of each dim by ``high[i]`` elements of ``value``."""
        high = [int(h) for h in high]
        if not any(high):
            return x
        shape = tuple(d + h for d, h in zip(x.shape, high))
        z = self.scalar(value, x.elem)
        zeros = [0] * x.rank
        return self._emit(f"stablehlo.pad {x.ssa}, {z.ssa}, low = {zeros}, high = {high}, interior = {zeros} : "
                          f"({x.type}, {z.type}) -> {tensor_type(shape, x.elem)}", shape, x.elem)

    def concat(self, xs: Sequence[Value], dim: int) -> Value:
        if len(xs) == 1:
            return xs[0]
        shape = list(xs[0].shape)
        shape[dim] = sum(x.shape[dim] for x in xs)
        args = ", ".join(x.ssa for x in xs)
        types = ", ".join(x.type for x in xs)
        return self._emit(f"stablehlo.concatenate {args}, dim = {dim} : ({types}) -> "
                          f"{tensor_type(shape, xs[0].elem)}", shape, xs[0].elem)

    # ---- contractions and reductions
    def dot_general(self, a: Value, b: Value, contract: tuple[list[int], list[int]],
                    batch: tuple[list[int], list[int]] = ([], []), out_elem: str | None = None,
                    precision: str = "HIGHEST") -> Value:
        """``dot_general`` with result type ``out_elem`` (bf16 x bf16 -> f32 accumulates in f32)."""
        (lb, rb), (lc, rc) = batch, contract
        shape = [a.shape[i] for i in lb]
        shape += [d for i, d in enumerate(a.shape) if i not in lb and i not in lc]
        shape += [d for i, d in enumerate(b.shape) if i not in rb and i not in rc]
        out_elem = out_elem or a.elem
        bd = f"batching_dims = {list(lb)} x {list(rb)}, " if lb else ""
        return self._emit(f"stablehlo.dot_general {a.ssa}, {b.ssa}, {bd}contracting_dims = {list(lc)} x {list(rc)}, "
                          f"precision = [{precision}, {precision}] : ({a.type}, {b.type}) -> "
                          f"{tensor_type(shape, out_elem)}", shape, out_elem)

    def reduce(self, x: Value, dims, kind: str) -> Value:
        """Reduce ``dims`` of ``x`` with ``kind`` in add | maximum | minimum | and | or."""
        dims = sorted(int(d) for d in dims)
        if not dims:
            return x
        if kind == "add":
            init = self.scalar(False if x.elem == "i1" else 0, x.elem)
        elif kind == "maximum":
            init = self.scalar(-np.inf if x.is_float else np.iinfo(_NP_OF[x.elem]).min, x.elem)
        elif kind == "minimum":
            init = self.scalar(np.inf if x.is_float else np.iinfo(_NP_OF[x.elem]).max, x.elem)
        else:
            raise ValueError(f"unknown reduction {kind!r}")
        shape = tuple(d for i, d in enumerate(x.shape) if i not in dims)
        return self._emit(f"stablehlo.reduce({x.ssa} init: {init.ssa}) applies stablehlo.{kind} across dimensions = "
                          f"{dims} : ({x.type}, {init.type}) -> {tensor_type(shape, x.elem)}", shape, x.elem)

    def gather_rows(self, table: Value, ids: Value) -> Value:
        """``table[ids]`` for a 2-D table and integer ids of any shape -> ids.shape + [row]."""
        row = table.shape[1]
        shape = ids.shape + (row,)
        k = ids.rank
        return self._emit(
            f'"stablehlo.gather"({table.ssa}, {ids.ssa}) {{dimension_numbers = #stablehlo.gather<'
            f"offset_dims = [{k}], collapsed_slice_dims = [0], start_index_map = [0], index_vector_dim = {k}>, "
            f"slice_sizes = array<i64: 1, {row}>, indices_are_sorted = false}} : ({table.type}, {ids.type}) -> "
            f"{tensor_type(shape, table.elem)}", shape, table.elem)

    def gather(self, x: Value, idx: Value, dim: int, count: int) -> Value:
        """``x[(:,)*dim + (idx[...,0], ..., idx[...,count-1])]``: numpy advanced indexing on consecutive dims.

        ``idx`` has shape ``batch + [count]``; the result is ``x.shape[:dim] + batch + x.shape[dim+count:]``.
        """
        batch = idx.shape[:-1]
        indexed = list(range(dim, dim + count))
        slice_sizes = [1 if i in indexed else d for i, d in enumerate(x.shape)]
        lead = list(range(dim))
        trail = list(range(dim + len(batch), dim + len(batch) + x.rank - dim - count))
        shape = x.shape[:dim] + batch + x.shape[dim + count:]
        return self._emit(
            f'"stablehlo.gather"({x.ssa}, {idx.ssa}) {{dimension_numbers = #stablehlo.gather<'
            f"offset_dims = {lead + trail}, collapsed_slice_dims = {indexed}, start_index_map = {indexed}, "
            f"index_vector_dim = {idx.rank - 1}>, slice_sizes = array<i64: {', '.join(map(str, slice_sizes))}>, "
            f"indices_are_sorted = false}} : ({x.type}, {idx.type}) -> {tensor_type(shape, x.elem)}",
            shape, x.elem)
