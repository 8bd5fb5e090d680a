"""The state one cpu lowering builds up, and the helpers every planning step and op rule shares.

:class:`LowerContext` holds what the planning steps decided (folded values,
inlined values, concat placements, output targets) and what the op rules
produce (weight slots, tile buffers, steps, bag features). Its helpers answer
"where does this value live" (:meth:`~LowerContext.view_of`, :meth:`~LowerContext.out_view`),
"what is its expression at this index" (:meth:`~LowerContext.expr_of`) and
"which weight slot holds this constant" (:meth:`~LowerContext.slot`).
"""
from __future__ import annotations

import re

import numpy as np
import sympy

from xrec.ir import Graph, Node, Op
from xrec.ir.printer import print_node
from xrec.ir.types import DType, JaggedType, TensorType
from xrec.targets.views import contiguous_strides

from . import fold
from .arena import expr_buffers, reads_of, writes_of
from .errors import LoweringError, unsupported
from .plan import (Apply, BagFeatureInfo, Buffer, Const, InputInfo, Load, LoopStep, OutputInfo, Step, View,
                   WeightSlot)

CTYPES = {DType.F32: "float", DType.F64: "double", DType.I64: "int64_t", DType.I32: "int32_t",
          DType.I8: "int8_t", DType.U8: "uint8_t", DType.BOOL: "bool", DType.F16: "uint16_t",
          DType.BF16: "uint16_t", DType.I4X2: "uint8_t"}


def cident(name: str) -> str:
    s = re.sub(r"[^0-9A-Za-z_]", "_", name)
    return s if s and not s[0].isdigit() else "_" + s


def is_batch(d, B) -> bool:
    return isinstance(d, sympy.Symbol) and d == B


def static_dims(dims, n: Node) -> tuple[int, ...]:
    for d in dims:
        if not isinstance(d, int):
            raise unsupported(n, f"dim {d} besides the batch is not static (only the leading batch dim may vary)")
    return tuple(dims)




def index_vars(rank: int) -> tuple:
    """Loop variables of a value of ``rank`` dims: the tile row ``i`` then ``j0, j1, ...``."""
    return ("i",) + tuple(f"j{k}" for k in range(rank - 1))


def bcast_index(in_shape, out_rank: int, idx: tuple) -> tuple:
    """The index into a value of ``in_shape`` broadcast to ``out_rank`` dims at ``idx`` (numpy rules)."""
    off = out_rank - len(in_shape)
    if off < 0:
        raise ValueError("broadcast to a lower rank")
    return tuple("0" if (isinstance(d, int) and d == 1) else idx[off + t] for t, d in enumerate(in_shape))


def is_matrix(v: View, K: int) -> bool:
    """Whether ``v`` reads as [rows, K] rows with one uniform row stride (what the kernels take)."""
    if not v.rowwise or v.ld == "0" or not v.dims or v.dims[-1] != K or (K > 1 and v.strides[-1] != 1):
        return False
    mid = v.dims[:-1]
    if not mid:
        return True
    s = v.strides[-2]
    for t in range(len(mid) - 1):
        if mid[t] != 1 and v.strides[t] != v.strides[t + 1] * mid[t + 1]:
            return False
    return v.ld == str(s * int(np.prod(mid)))


def matrix_parts(v: View) -> tuple[str, str, str]:
    """(ptr, row stride, rows) of a view for which :func:`is_matrix` holds."""
    mid = v.dims[:-1]
    P = int(np.prod(mid)) if mid else 1
    ld = v.ld if not mid else str(v.strides[-2])
    rows = "m" if P == 1 else f"m * {P}"
    return v.ptr, ld, rows


def batch_symbol(g: Graph):
    """The batch symbol: a jagged value's batch, else the leading symbolic dim of an input."""
    for n in g.nodes:
        if isinstance(n.type, JaggedType) and isinstance(n.type.batch, sympy.Symbol):
            return n.type.batch
    for n in g.input_nodes:
        if isinstance(n.type, TensorType) and n.type.rank and isinstance(n.type.shape[0], sympy.Symbol):
            return n.type.shape[0]
    raise LoweringError(f"{g.name}: no input has a batch dim (a symbolic leading dim); the cpu target "
                        "runs models over a batch of rows")


class LowerContext:
    def __init__(self, g: Graph, bounds_check: bool = True):
        self.g = g
        self.bounds_check = bounds_check
        self.B = batch_symbol(g)
        self.weights: dict[str, WeightSlot] = {}
        self.extra: dict[str, np.ndarray] = {}     # folded values and transposed weights, by weights.bin name
        self.const_vals: dict[str, np.ndarray] = {}
        self.views: dict[str, View] = {}
        self.placed: dict[str, View] = {}
        self.out_target: dict[str, View] = {}
        self.inline: set[str] = set()
        self.buffers: list[Buffer] = []
        self.steps: list[Step] = []
        self.bags: list[BagFeatureInfo] = []
        self.pair_tables: dict[str, tuple] = {}
        self.jagged: dict[str, dict] = {}
        self.inputs: list[InputInfo] = []
        self.outputs: list[OutputInfo] = []
        self.notes: list[str] = []
        self.arena_bytes = 0                        # per-thread arena (set by the arena step)

    # ------------------------------------------------------------ facts about values
    def rowwise(self, name: str) -> bool:
        t = self.g.type_of(name)
        return isinstance(t, TensorType) and t.rank >= 1 and is_batch(t.shape[0], self.B)

    def is_const(self, name: str) -> bool:
        return fold.is_const(self.g, self.const_vals, name)

    def const_array(self, name: str) -> np.ndarray:
        return fold.const_array(self.g, self.const_vals, name)

    def input_positions(self) -> dict[str, int]:
        return {x.name: k for k, x in enumerate(self.g.input_nodes)}

    def user_name(self, value: str) -> str:
        """How an error message names a value: a model input by its name, else %value."""
        n = self.g.node(value)
        return f"input '{n.attr('name', value)}'" if n.op is Op.INPUT else f"%{value}"

    # ------------------------------------------------------------ storage
    def new_buffer(self, row_elems: int, dtype: DType, what: str) -> Buffer:
        b = Buffer(id=len(self.buffers), row_elems=max(int(row_elems), 1), itemsize=dtype.itemsize,
                   ctype=CTYPES[dtype], what=what)
        self.buffers.append(b)
        return b

    def buffer_view(self, dims, dtype: DType, what: str) -> View:
        dims = tuple(dims)
        b = self.new_buffer(int(np.prod(dims, dtype=np.int64)) if dims else 1, dtype, what)
        ld = int(np.prod(dims, dtype=np.int64)) if dims else 1
        return View(ptr=b.cname, ctype=b.ctype, rowwise=True, ld=str(ld), dims=dims,
                    strides=contiguous_strides(dims), buffer=b.id)

    def out_view(self, n: Node) -> View:
        """Where the step computing ``n`` writes: its concat slice, the caller's output, or a tile buffer."""
        if n.name in self.placed:
            return self.placed[n.name]
        if n.name in self.out_target:
            return self.out_target[n.name]
        dims = static_dims(n.type.shape[1:], n)
        return self.buffer_view(dims, n.type.dtype, "%" + n.name)

    # ------------------------------------------------------------ weights
    def slot(self, key: str, kind: str = "raw", N: int = 0, K: int = 0) -> WeightSlot:
        """The weight slot for parameter/folded array ``key`` (packed as a Linear weight if kind='packed')."""
        name = key if kind == "raw" else f"{key}@packed"
        if name in self.weights:
            return self.weights[name]
        arr = self.g.params[key] if key in self.g.params else self.extra[key]
        base = cident(key)
        cname = base if kind == "raw" else base + "_packed"
        while any(s.cname == cname for s in self.weights.values()):
            cname += "_"
        dt = DType.from_numpy(arr.dtype) if arr.dtype != np.uint16 else DType.F16
        s = WeightSlot(name=name, cname=cname, kind=kind, ctype=CTYPES.get(dt, "uint8_t"),
                       nbytes=None if kind == "packed" else int(arr.nbytes), source=key, N=N, K=K)
        self.weights[name] = s
        return s

    def const_key(self, name: str) -> str:
        """weights.bin key of a constant value (a parameter, or a folded array added now)."""
        n = self.g.node(name)
        if n.op is Op.PARAM:
            return n.attr("name")
        key = f"@fold/{name}"
        if key not in self.extra:
            self.extra[key] = np.ascontiguousarray(self.const_array(name))
        return key

    def linear_weight(self, name: str, n: Node) -> tuple[WeightSlot, int, int]:
        """A packed slot for Linear weight value ``name`` ([N, K])."""
        if not self.is_const(name):
            raise unsupported(n, "the weight of a linear layer must be a constant (a parameter)")
        key = self.const_key(name)
        arr = self.g.params[key] if key in self.g.params else self.extra[key]
        if arr.dtype != np.float32 or arr.ndim != 2:
            raise unsupported(n, f"linear weight must be fp32 [N, K], got {arr.dtype} {arr.shape}")
        N, K = arr.shape
        return self.slot(key, "packed", N=N, K=K), int(N), int(K)

    def const_member(self, name: str, n: Node) -> str:
        """``W.<member>`` for a constant value (raw)."""
        if not self.is_const(name):
            raise unsupported(n, f"%{name} must be a constant (a parameter) here")
        return "W." + self.slot(self.const_key(name)).cname

    # ------------------------------------------------------------ views and expressions
    def view_of(self, name: str, user: Node) -> View:
        if name in self.views:
            return self.views[name]
        n = self.g.node(name)
        if self.is_const(name):
            arr = self.const_array(name)
            if n.op is Op.FULL and arr.ndim == 0:
                raise unsupported(user, "a scalar constant where a tensor is needed")
            s = self.slot(self.const_key(name))
            dims = tuple(arr.shape)
            return View(ptr="W." + s.cname, ctype=s.ctype, rowwise=False, ld="0", dims=dims,
                        strides=contiguous_strides(dims))
        if name in self.inline:
            # an inlined value read by a non-loop consumer: materialise it (only FULL gets here)
            return self._materialize_expr(n)
        raise unsupported(user, f"input %{name} is not available as a tensor here")

    def _materialize_expr(self, n: Node) -> View:
        out = self.buffer_view(static_dims(n.type.shape[1:], n), n.type.dtype, "%" + n.name)
        idx = index_vars(n.type.rank)
        self.add(LoopStep(node=n.name, text=print_node(self.g, n), out=out, expr=self.expr_of(n.name, idx)))
        self.views[n.name] = out
        return out

    def expr_of(self, name: str, idx: tuple):
        """The expression of value ``name`` at index ``idx`` (one entry per dim of the value)."""
        n = self.g.node(name)
        if n.op is Op.FULL:
            return Const(float(n.attr("value")), n.type.dtype)
        if name in self.inline:
            rank = n.type.rank
            if n.op is Op.EXPAND:
                src = n.inputs[0]
                return self.expr_of(src, bcast_index(self.g.type_of(src).shape, rank, idx))
            args = tuple(self.expr_of(i, bcast_index(self.g.type_of(i).shape, rank, idx)) for i in n.inputs)
            return Apply(n.op, args, n.attrs, n.type.dtype)
        v = self.view_of(name, n)
        if v.rowwise:
            return Load(v, idx)
        # a constant: drop a leading broadcast dim of size 1 (idx then has one more entry than dims)
        if len(idx) != len(v.dims):
            raise unsupported(n, f"cannot index constant {v.dims} with {idx}")
        return Load(v, idx)

    def expr_of_node(self, n: Node):
        """Expression of node ``n`` itself (as if inlined) at its own index space."""
        was = n.name in self.inline
        self.inline.add(n.name)
        try:
            return self.expr_of(n.name, index_vars(n.type.rank))
        finally:
            if not was:
                self.inline.discard(n.name)

    def matrix(self, name: str, user: Node, K: int) -> tuple[str, str, str, View]:
        """(ptr, ld, rows) of a value read as [rows, K] rows with a uniform stride; copies it if needed."""
        v = self.view_of(name, user)
        if is_matrix(v, K):
            return matrix_parts(v) + (v,)
        n = self.g.node(name)
        copy = self.buffer_view(v.dims, n.type.dtype, f"%{name} made contiguous")
        self.add(LoopStep(node=name, text=f"  (copy of %{name} into a contiguous buffer for {user.op.value})",
                          out=copy, expr=Load(v, index_vars(len(v.dims) + 1))))
        return matrix_parts(copy) + (copy,)

    def copy_contiguous(self, name: str, v: View, user: Node) -> View:
        """A contiguous tile-buffer copy of view ``v`` of value ``name`` (for a consumer that needs one)."""
        t = self.g.type_of(name)
        copy = self.buffer_view(v.dims, t.dtype, f"%{name} made contiguous")
        self.add(LoopStep(node=name, text=f"  (copy of %{name} into a contiguous buffer for {user.op.value})",
                          out=copy, expr=Load(v, index_vars(len(v.dims) + 1)),
                          reads=reads_of(v), writes=writes_of(copy)))
        return copy

    # ------------------------------------------------------------ steps
    def add(self, step: Step) -> Step:
        self.steps.append(step)
        return step

    def set(self, n: Node, v: View) -> None:
        """Value ``n`` lives in ``v`` from now on."""
        self.views[n.name] = v

    def loop(self, n: Node) -> None:
        """One loop step computing ``n`` (with its inlined producers) into its output view."""
        out = self.out_view(n)
        expr = self.expr_of_node(n)
        self.add(LoopStep(node=n.name, text=print_node(self.g, n), out=out, expr=expr,
                          reads=expr_buffers(expr), writes=writes_of(out)))
        self.set(n, out)
