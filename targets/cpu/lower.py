"""Lower the optimized IR to a cpu :class:`~.plan.Program` (kernel calls, loops, buffer plan).

Decisions made here, in order:

1. constant folding: values computed from parameters alone are evaluated now
   (numpy interpreter) and become weights;
2. which elementwise values are inlined into the loop of their one consumer
   (chains of elementwise ops, broadcasts and reductions become one loop);
3. which values are written straight into their slice of a concat's buffer
   (the kernels take output row strides), and which values are written straight
   into the caller's output;
4. one step per remaining op, in graph order, each reading and writing views;
5. tile buffers get arena offsets from their live ranges (first-fit), so a
   buffer's memory is reused once its last reader ran.

An op that breaks row-locality (mixes batch rows) or has no lowering raises
:class:`LoweringError` naming the op and its source line.
"""
from __future__ import annotations

import re

import numpy as np
import sympy

from xrec.ir import Graph, Node, Op, feature_inputs, mlp_layers
from xrec.ir.interpreter import IMPLS, Interpreter
from xrec.ir.ops import ELEMENTWISE, REDUCE
from xrec.ir.printer import print_node
from xrec.ir.types import DType, JaggedType, TensorType

from .plan import (ARENA_ALIGN, Apply, BagFeatureInfo, BagStep, BmmStep, Buffer, Const, FMStep, GatherStep,
                   InputInfo, InteractionStep, LayerNormStep, LinearStep, Load, LoopStep, OutputInfo, Program,
                   ReduceStep, Step, View, WeightSlot)


class LoweringError(Exception):
    """The cpu target cannot lower an op; the message names the op and its source line."""


def unsupported(n: Node, why: str) -> LoweringError:
    where = n.loc or "an unknown source line"
    return LoweringError(f"cpu target cannot lower %{n.name} = {n.op.value}(...) from {where}: {why}")


CTYPES = {DType.F32: "float", DType.F64: "double", DType.I64: "int64_t", DType.I32: "int32_t",
          DType.I8: "int8_t", DType.U8: "uint8_t", DType.BOOL: "bool", DType.F16: "uint16_t",
          DType.BF16: "uint16_t", DType.I4X2: "uint8_t"}

VIEW_OPS = {Op.RESHAPE, Op.SLICE, Op.PERMUTE}
INLINE_OPS = ELEMENTWISE | {Op.EXPAND, Op.FULL}
# producers that can write into any strided view (loops) or into a [rows, N] block with a row stride
LOOP_PRODUCERS = ELEMENTWISE | REDUCE | {Op.FM, Op.EXPAND}
MATRIX_PRODUCERS = {Op.MLP, Op.LINEAR, Op.EMBEDDING_BAG, Op.EMBEDDING_BAG_GROUP, Op.DOT_INTERACTION,
                    Op.CROSS_LAYER}
POOL = {"sum": "POOL_SUM", "mean": "POOL_MEAN", "max": "POOL_MAX"}


def cident(name: str) -> str:
    s = re.sub(r"[^0-9A-Za-z_]", "_", name)
    return s if s and not s[0].isdigit() else "_" + s


def row_format(table: TensorType, dim: int, n: Node) -> tuple[str, int]:
    """The kernel RowFormat of an embedding table and its row size in bytes.

    Plain fp32/fp16 tables are row-major; the row-wise quantized layouts of
    xrec.ir.quant (FBGEMM's) store per row the codes then scale and bias.
    """
    from xrec.ir.quant import row_bytes
    if not table.layout:
        if table.dtype is DType.F32:
            return "ROW_F32", 4 * dim
        if table.dtype is DType.F16:
            return "ROW_F16", 2 * dim
        if table.dtype is DType.BF16:
            return "ROW_BF16", 2 * dim
        raise unsupported(n, f"embedding table of dtype {table.dtype.value}: the cpu bag kernel reads fp32, fp16, "
                             "bf16 and row-wise int8/int4/int2 rows")
    fmt = {"rowwise_i8": "ROW_I8", "rowwise_i4": "ROW_I4", "rowwise_i2": "ROW_I2"}.get(table.layout)
    if fmt is None:
        raise unsupported(n, f"embedding table layout {table.layout!r}: the cpu bag kernel reads fp32, fp16, bf16, "
                             "rowwise_i8, rowwise_i4 and rowwise_i2 rows")
    width = int(table.shape[1])
    if width != row_bytes(table.layout, dim):
        raise unsupported(n, f"{table.layout} table {table} does not match dim {dim}")
    return fmt, width


def _is_batch(d, B) -> bool:
    return isinstance(d, sympy.Symbol) and d == B


def _static(dims, n: Node) -> tuple[int, ...]:
    for d in dims:
        if not isinstance(d, int):
            raise unsupported(n, f"dim {d} besides the batch is not static (only the leading batch dim may vary)")
    return tuple(dims)


def _contig_strides(dims) -> tuple[int, ...]:
    out, s = [], 1
    for d in reversed(dims):
        out.append(s)
        s *= d
    return tuple(reversed(out))


class Lowerer:
    def __init__(self, g: Graph, bounds_check: bool = True):
        self.g = g
        self.bounds_check = bounds_check
        self.B = self._batch_symbol()
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

    # ------------------------------------------------------------ analysis
    def _batch_symbol(self):
        g = self.g
        for n in g.nodes:
            if isinstance(n.type, JaggedType) and isinstance(n.type.batch, sympy.Symbol):
                return n.type.batch
        for n in g.input_nodes:
            if isinstance(n.type, TensorType) and n.type.rank and isinstance(n.type.shape[0], sympy.Symbol):
                return n.type.shape[0]
        raise LoweringError(f"{g.name}: no input has a batch dim (a symbolic leading dim); the cpu target "
                            "runs models over a batch of rows")

    def rowwise(self, name: str) -> bool:
        t = self.g.type_of(name)
        return isinstance(t, TensorType) and t.rank >= 1 and _is_batch(t.shape[0], self.B)

    def _fold_constants(self):
        """Evaluate values that depend on parameters alone (no symbols in their shape)."""
        g = self.g
        interp = Interpreter(g)
        for n in g.nodes:
            if n.op in (Op.INPUT, Op.PARAM, Op.FULL, Op.JAGGED):
                continue
            t = n.type
            if not isinstance(t, TensorType) or any(not isinstance(d, int) for d in t.shape):
                continue
            srcs = [g.node(i) for i in n.inputs]
            if all(s.op in (Op.PARAM, Op.FULL) or s.name in self.const_vals for s in srcs):
                args = [self._const_array(s.name) for s in srcs]
                self.const_vals[n.name] = np.ascontiguousarray(IMPLS[n.op](interp, n, args, {}))

    def _const_array(self, name: str) -> np.ndarray:
        n = self.g.node(name)
        if n.op is Op.PARAM:
            return self.g.param(n)
        if n.op is Op.FULL:
            return np.full(tuple(n.type.shape), n.attr("value"), dtype=n.type.dtype.to_numpy())
        return self.const_vals[name]

    def is_const(self, name: str) -> bool:
        n = self.g.node(name)
        return n.op is Op.PARAM or name in self.const_vals or (
            n.op is Op.FULL and all(isinstance(d, int) for d in n.type.shape))

    def _consumer_inlines(self, user: Node) -> bool:
        return user.op in INLINE_OPS or user.op in REDUCE

    def _choose_inline(self):
        g = self.g
        for n in g.nodes:
            if n.op not in INLINE_OPS or n.name in self.const_vals or n.name in g.outputs:
                continue
            if n.op is Op.FULL:
                self.inline.add(n.name)          # a literal wherever an expression reads it
                continue
            users = g.users.get(n.name, [])
            if len(users) == 1 and g.num_uses(n.name) == 1 and self._consumer_inlines(users[0]) \
                    and self.rowwise(n.name):
                self.inline.add(n.name)

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
                    strides=_contig_strides(dims), buffer=b.id)

    def out_view(self, n: Node) -> View:
        """Where the step computing ``n`` writes: its concat slice, the caller's output, or a tile buffer."""
        if n.name in self.placed:
            return self.placed[n.name]
        if n.name in self.out_target:
            return self.out_target[n.name]
        dims = _static(n.type.shape[1:], n)
        return self.buffer_view(dims, n.type.dtype, "%" + n.name)

    def _plan_outputs(self):
        g = self.g
        seen = set()
        for k, o in enumerate(g.outputs):
            n = g.node(o)
            t = n.type
            if not self.rowwise(o):
                raise unsupported(n, f"model output {t} has no leading batch dim")
            dims = _static(t.shape[1:], n)
            cname = f"out{k}"
            self.outputs.append(OutputInfo(value=o, dtype=t.dtype, shape=t.shape, cname=cname))
            ld = int(np.prod(dims, dtype=np.int64)) if dims else 1
            v = View(ptr=f"(C.{cname} + r0 * {ld}L)", ctype=CTYPES[t.dtype], rowwise=True, ld=str(ld),
                     dims=dims, strides=_contig_strides(dims))
            storage = n.op not in VIEW_OPS | {Op.INPUT, Op.PARAM, Op.FULL, Op.JAGGED} \
                and o not in self.inline and o not in self.const_vals
            if storage and o not in seen:
                self.out_target[o] = v
            seen.add(o)

    def _plan_concats(self):
        g = self.g
        for n in g.nodes_of(Op.CAT):
            if not self.rowwise(n.name):
                continue
            rank = n.type.rank
            d = n.attr("dim") % rank
            if d == 0:
                continue
            cat_view = self.out_view(n)
            self.views[n.name] = cat_view
            col = 0
            seen_here = set()
            for u in n.inputs:
                un = g.node(u)
                size = un.type.shape[d]
                ok = (u not in self.placed and u not in self.out_target and u not in seen_here
                      and u not in self.inline and u not in self.const_vals and self.rowwise(u)
                      and un.type.rank == rank and un.op is not Op.CAT and u not in g.outputs
                      and (un.op in LOOP_PRODUCERS or (un.op in MATRIX_PRODUCERS and rank == 2)))
                if ok:
                    self.placed[u] = self._slice_view(cat_view, d - 1, col, size)
                seen_here.add(u)
                col += size

    @staticmethod
    def _slice_view(v: View, axis: int, start: int, length: int, step: int = 1) -> View:
        off = start * v.strides[axis]
        dims = list(v.dims)
        strides = list(v.strides)
        dims[axis] = length
        strides[axis] = v.strides[axis] * step
        ptr = v.ptr if off == 0 else f"({v.ptr} + {off})"
        return v.with_(ptr=ptr, dims=tuple(dims), strides=tuple(strides))

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
            self.extra[key] = np.ascontiguousarray(self._const_array(name))
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
            arr = self._const_array(name)
            if n.op is Op.FULL and arr.ndim == 0:
                raise unsupported(user, "a scalar constant where a tensor is needed")
            s = self.slot(self.const_key(name))
            dims = tuple(arr.shape)
            return View(ptr="W." + s.cname, ctype=s.ctype, rowwise=False, ld="0", dims=dims,
                        strides=_contig_strides(dims))
        if name in self.inline:
            # an inlined value read by a non-loop consumer: materialise it (only FULL gets here)
            return self._materialize_expr(n)
        raise unsupported(user, f"input %{name} is not available as a tensor here")

    def _materialize_expr(self, n: Node) -> View:
        out = self.buffer_view(_static(n.type.shape[1:], n), n.type.dtype, "%" + n.name)
        idx = self._index_vars(n.type.rank)
        self.add(LoopStep(node=n.name, text=print_node(self.g, n), out=out, expr=self.expr_of(n.name, idx)))
        self.views[n.name] = out
        return out

    @staticmethod
    def _index_vars(rank: int) -> tuple:
        return ("i",) + tuple(f"j{k}" for k in range(rank - 1))

    @staticmethod
    def _bcast(in_shape, out_rank: int, idx: tuple) -> tuple:
        off = out_rank - len(in_shape)
        if off < 0:
            raise ValueError("broadcast to a lower rank")
        return tuple("0" if (isinstance(d, int) and d == 1) else idx[off + t] for t, d in enumerate(in_shape))

    def expr_of(self, name: str, idx: tuple):
        """The expression of value ``name`` at index ``idx`` (one entry per dim of the value)."""
        n = self.g.node(name)
        if n.op is Op.FULL:
            return Const(float(n.attr("value")), n.type.dtype)
        if name in self.inline:
            rank = n.type.rank
            if n.op is Op.EXPAND:
                src = n.inputs[0]
                return self.expr_of(src, self._bcast(self.g.type_of(src).shape, rank, idx))
            args = tuple(self.expr_of(i, self._bcast(self.g.type_of(i).shape, rank, idx)) for i in n.inputs)
            return Apply(n.op, args, n.attrs, n.type.dtype)
        v = self.view_of(name, n)
        if v.rowwise:
            return Load(v, idx)
        # a constant: drop a leading broadcast dim of size 1 (idx then has one more entry than dims)
        if len(idx) != len(v.dims):
            raise unsupported(n, f"cannot index constant {v.dims} with {idx}")
        return Load(v, idx)

    def expr_buffers(self, e) -> set:
        if isinstance(e, Load):
            return {e.view.buffer} if e.view.buffer is not None else set()
        if isinstance(e, Apply):
            out = set()
            for a in e.args:
                out |= self.expr_buffers(a)
            return out
        return set()

    def matrix(self, name: str, user: Node, K: int) -> tuple[str, str, str, View]:
        """(ptr, ld, rows) of a value read as [rows, K] rows with a uniform stride; copies it if needed."""
        v = self.view_of(name, user)
        if self._is_matrix(v, K):
            return self._matrix_parts(v) + (v,)
        n = self.g.node(name)
        copy = self.buffer_view(v.dims, n.type.dtype, f"%{name} made contiguous")
        self.add(LoopStep(node=name, text=f"  (copy of %{name} into a contiguous buffer for {user.op.value})",
                          out=copy, expr=Load(v, self._index_vars(len(v.dims) + 1))))
        return self._matrix_parts(copy) + (copy,)

    @staticmethod
    def _is_matrix(v: View, K: int) -> bool:
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

    @staticmethod
    def _matrix_parts(v: View) -> tuple[str, str, str]:
        mid = v.dims[:-1]
        P = int(np.prod(mid)) if mid else 1
        ld = v.ld if not mid else str(v.strides[-2])
        rows = "m" if P == 1 else f"m * {P}"
        return v.ptr, ld, rows

    # ------------------------------------------------------------ steps
    def add(self, step: Step) -> Step:
        self.steps.append(step)
        return step

    def run(self) -> Program:
        g = self.g
        self._fold_constants()
        self._choose_inline()
        self._plan_outputs()
        self._plan_concats()
        for k, n in enumerate(g.input_nodes):
            self._input(k, n)
        for n in g.nodes:
            if n.op in (Op.INPUT, Op.PARAM, Op.JAGGED) or n.name in self.const_vals or n.name in self.inline:
                if n.op is Op.JAGGED:
                    self._jagged(n)
                continue
            if not self.rowwise(n.name):
                raise unsupported(n, f"its result {n.type} does not have the batch as leading dim: the cpu "
                                     "target runs every op row by row over the batch")
            fn = getattr(self, "op_" + n.op.name.lower(), None)
            if fn is None and (n.op in ELEMENTWISE or n.op in (Op.EXPAND, Op.FULL)):
                fn = self._loop                # one loop, with its inlined producers
            if fn is None:
                raise unsupported(n, "no cpu lowering for this op")
            fn(n)
        for o, info in zip(g.outputs, self.outputs):
            self._output(o, info)
        self._check_placements()
        arena = self._plan_arena()
        return Program(
            name=g.name, graph_text=[print_node(g, n) for n in g.nodes if n.op not in (Op.INPUT, Op.PARAM)],
            symbols=[self.B.name], inputs=self.inputs, outputs=self.outputs,
            weights=list(self.weights.values()), bags=self.bags, steps=self.steps, buffers=self.buffers,
            pair_tables=self.pair_tables, arena_bytes=arena, bounds_check=self.bounds_check, notes=self.notes)

    def _input(self, k: int, n: Node):
        t = n.type
        kind = n.attr("kind", "dense")
        users = self.g.users.get(n.name, [])
        jag_only = users and all(u.op is Op.JAGGED or (u.op in (Op.EMBEDDING_BAG, Op.EMBEDDING_BAG_GROUP)
                                                       and n.name not in u.inputs[:1]) for u in users)
        if kind in ("indices", "offsets") or (jag_only and t.dtype in (DType.I32, DType.I64)):
            accept = ("XREC_I32", "XREC_I64")
        else:
            accept = ({DType.F32: "XREC_F32", DType.I64: "XREC_I64", DType.I32: "XREC_I32",
                       DType.F64: "XREC_F64", DType.I8: "XREC_I8", DType.U8: "XREC_U8",
                       DType.BOOL: "XREC_BOOL", DType.F16: "XREC_F16"}[t.dtype],)
        cname = cident(n.name)
        self.inputs.append(InputInfo(index=k, name=n.attr("name", n.name), kind=kind, value=n.name,
                                     dtype=t.dtype, shape=t.shape, accept=accept, cname=cname))
        if self.rowwise(n.name) and not jag_only:
            dims = _static(t.shape[1:], n)
            ld = int(np.prod(dims, dtype=np.int64)) if dims else 1
            self.views[n.name] = View(ptr=f"(C.{cname} + r0 * {ld}L)", ctype=CTYPES[t.dtype], rowwise=True,
                                      ld=str(ld), dims=dims, strides=_contig_strides(dims))

    def _jagged(self, n: Node):
        pos = {x.name: k for k, x in enumerate(self.g.input_nodes)}
        idx, off = n.inputs
        if idx not in pos or off not in pos:
            raise unsupported(n, "the indices and offsets of a sparse feature must be model inputs")
        self.jagged[n.name] = {"feature": n.attr("feature", n.name), "indices": pos[idx], "offsets": pos[off],
                               "last": bool(n.attr("include_last_offset", True))}

    def _bag_feature(self, n: Node, table: str, jag: str, psw: str | None, mode: str, padding_idx, dim: int,
                     num_rows: int, remap: str | None = None) -> int:
        """One kernel feature; ``num_rows`` is the logical row count (a pruned table's remap length)."""
        j = self.jagged[jag]
        if not self.is_const(table):
            raise unsupported(n, "embedding tables must be parameters")
        pos = {x.name: k for k, x in enumerate(self.g.input_nodes)}
        if psw is not None and psw not in pos:
            raise unsupported(n, "per-sample weights must be a model input")
        fmt, row_bytes = row_format(self.g.type_of(table), dim, n)
        remap_member = None
        if remap is not None:
            remap_member = self._remap_member(n, j["feature"], remap, num_rows,
                                              int(self.g.type_of(table).shape[0]))
        pad = -1 if padding_idx is None else int(padding_idx) % num_rows
        s = self.slot(self.const_key(table))
        self.bags.append(BagFeatureInfo(
            feature=j["feature"], indices=j["indices"], offsets=j["offsets"],
            psw=None if psw is None else pos[psw], include_last_offset=j["last"],
            nnz=f"in[{j['indices']}].shape[0]", table="W." + s.cname, num_rows=num_rows, dim=dim,
            row_bytes=row_bytes, fmt=fmt, mode=POOL[mode], padding_idx=pad, remap=remap_member))
        return len(self.bags) - 1

    def _remap_member(self, n: Node, feature: str, remap: str, num_rows: int, table_rows: int) -> str:
        """``W.<member>`` of a pruned table's remap, checked now: the kernel trusts its values."""
        if not self.is_const(remap):
            raise unsupported(n, f"feature {feature!r}: the remap of a pruned table must be a constant (a parameter)")
        arr = self._const_array(remap)
        if arr.dtype != np.int32 or arr.ndim != 1 or len(arr) != num_rows:
            raise unsupported(n, f"feature {feature!r}: the remap of a pruned table must be int32 [{num_rows}], "
                                 f"got {arr.dtype} {list(arr.shape)}")
        if len(arr) and (arr.min() < -1 or arr.max() >= table_rows):
            bad = int(np.nonzero((arr < -1) | (arr >= table_rows))[0][0])
            raise unsupported(n, f"feature {feature!r}: remap[{bad}] = {int(arr[bad])} is not -1 (pruned) or a "
                                 f"row of the compact table of {table_rows} rows; rerun prune_embeddings")
        return self.const_member(remap, n)

    def _output(self, o: str, info: OutputInfo):
        n = self.g.node(o)
        if self.out_target.get(o) is not None and self.views.get(o) is self.out_target[o]:
            return
        dims = _static(n.type.shape[1:], n)
        ld = int(np.prod(dims, dtype=np.int64)) if dims else 1
        out = View(ptr=f"(C.{info.cname} + r0 * {ld}L)", ctype=CTYPES[n.type.dtype], rowwise=True, ld=str(ld),
                   dims=dims, strides=_contig_strides(dims))
        idx = self._index_vars(n.type.rank)
        self.add(LoopStep(node=o, text=f"  (copy %{o} to output {info.cname})", out=out,
                          expr=self.expr_of(o, idx)))

    def _check_placements(self):
        for name, v in self.placed.items():
            if self.views.get(name) is not v:
                raise AssertionError(f"internal: %{name} was planned into a concat but written elsewhere")

    # ------------------------------------------------------------ buffer liveness and arena
    def _step_buffers(self, st: Step) -> None:
        """Complete a step's read/write sets from the views and expressions it holds."""
        for f in ("expr",):
            e = getattr(st, f, None)
            if e is not None:
                st.reads |= self.expr_buffers(e)
        for f in ("x", "v", "a", "b", "ids"):
            v = getattr(st, f, None)
            if isinstance(v, View):
                st.reads |= self._r(v)
        out = getattr(st, "out", None)
        if isinstance(out, View):
            st.writes |= self._w(out)

    def _plan_arena(self) -> int:
        for st in self.steps:
            self._step_buffers(st)
        for s_idx, st in enumerate(self.steps):
            for b in st.writes | st.reads | set(st.temps):
                buf = self.buffers[b]
                buf.first = s_idx if buf.first < 0 else min(buf.first, s_idx)
                buf.last = max(buf.last, s_idx)
        used = [b for b in self.buffers if b.first >= 0]
        live: list[Buffer] = []
        top = 0
        for s_idx in range(len(self.steps)):
            live = [b for b in live if b.last >= s_idx]
            for b in sorted((b for b in used if b.first == s_idx), key=lambda b: -b.bytes):
                b.offset = self._first_fit(live, b.bytes)
                live.append(b)
                top = max(top, b.offset + b.bytes)
        return (top + ARENA_ALIGN - 1) // ARENA_ALIGN * ARENA_ALIGN

    @staticmethod
    def _first_fit(live: list[Buffer], size: int) -> int:
        pos = 0
        for b in sorted(live, key=lambda b: b.offset):
            if b.offset - pos >= size:
                return pos
            pos = max(pos, b.offset + b.bytes)
        return pos

    # ------------------------------------------------------------ ops
    def _set(self, n: Node, v: View):
        self.views[n.name] = v

    def _loop(self, n: Node):
        out = self.out_view(n)
        expr = self.expr_of_node(n)
        self.add(LoopStep(node=n.name, text=print_node(self.g, n), out=out, expr=expr,
                          reads=self.expr_buffers(expr), writes=self._w(out)))
        self._set(n, out)

    def expr_of_node(self, n: Node):
        """Expression of node ``n`` itself (as if inlined) at its own index space."""
        was = n.name in self.inline
        self.inline.add(n.name)
        try:
            return self.expr_of(n.name, self._index_vars(n.type.rank))
        finally:
            if not was:
                self.inline.discard(n.name)

    @staticmethod
    def _w(v: View) -> set:
        return {v.buffer} if v.buffer is not None else set()

    @staticmethod
    def _r(*views) -> set:
        return {v.buffer for v in views if v is not None and v.buffer is not None}

    def op_reshape(self, n: Node):
        src = n.inputs[0]
        v = self.view_of(src, n)
        dims = _static(n.type.shape[1:], n)
        if not _is_batch(n.type.shape[0], self.B):
            raise unsupported(n, "a reshape that merges or splits the batch dim")
        if not v.rowwise or not v.contiguous or v.ld == "0":
            v = self._copy_contiguous(src, v, n)
        self._set(n, v.with_(dims=dims, strides=_contig_strides(dims)))

    def _copy_contiguous(self, name: str, v: View, user: Node) -> View:
        t = self.g.type_of(name)
        copy = self.buffer_view(v.dims, t.dtype, f"%{name} made contiguous")
        self.add(LoopStep(node=name, text=f"  (copy of %{name} into a contiguous buffer for {user.op.value})",
                          out=copy, expr=Load(v, self._index_vars(len(v.dims) + 1)),
                          reads=self._r(v), writes=self._w(copy)))
        return copy

    def op_slice(self, n: Node):
        v = self.view_of(n.inputs[0], n)
        t = self.g.type_of(n.inputs[0])
        d = n.attr("dim") % t.rank
        if d == 0:
            raise unsupported(n, "slicing the batch dim")
        size = int(t.shape[d])
        start, end, step = n.attr("start"), n.attr("end"), n.attr("step", 1)
        start, end, step = slice(start, end, step).indices(size)
        length = len(range(start, end, step))
        self._set(n, self._slice_view(v, d - 1, start, length, step))

    def op_permute(self, n: Node):
        perm = tuple(n.attr("perm"))
        if perm[0] != 0:
            raise unsupported(n, "a permutation that moves the batch dim")
        v = self.view_of(n.inputs[0], n)
        p = [q - 1 for q in perm[1:]]
        self._set(n, v.with_(dims=tuple(v.dims[q] for q in p), strides=tuple(v.strides[q] for q in p)))

    def op_cat(self, n: Node):
        d = n.attr("dim") % n.type.rank
        if d == 0:
            raise unsupported(n, "concatenating along the batch dim")
        out = self.views.get(n.name) or self.out_view(n)
        col = 0
        how = []
        for u in n.inputs:
            size = int(self.g.type_of(u).shape[d])
            dst = self._slice_view(out, d - 1, col, size)
            col += size
            if self.placed.get(u) is not None and self.views.get(u) is self.placed[u] and dst == self.placed[u]:
                how.append(f"%{u} written in place")
                continue                   # already written in place by its producer
            how.append(f"%{u} copied")
            rank = n.type.rank
            expr = self.expr_of(u, self._index_vars(rank))
            self.add(LoopStep(node=n.name, text=f"  (copy %{u} into its slice of %{n.name})", out=dst,
                              expr=expr, reads=self.expr_buffers(expr), writes=self._w(out)))
        self._set(n, out)
        self.notes.append(f"%{n.name}: " + ", ".join(how))

    # ---- dense
    def _linear_chain(self, n: Node, x: str, layers: list, out: View):
        """layers: (weight value, bias value or None, act). Writes the last layer into ``out``."""
        K0 = int(self.g.type_of(x).shape[-1])
        xp, ldx, rows, xv = self.matrix(x, n, K0)
        mid = tuple(xv.dims[:-1])
        step_reads = self._r(xv)
        calls = []
        temps = []
        cur, cur_ld, K = xp, ldx, K0
        for li, (w, b, act) in enumerate(layers):
            slot, N, Kw = self.linear_weight(w, n)
            if Kw != K:
                raise unsupported(n, f"layer {li}: weight {N}x{Kw} does not take {K} inputs")
            bias = self.const_member(b, n) if b is not None else ""
            if li == len(layers) - 1:
                if not self._is_matrix(out, N):
                    raise AssertionError(f"internal: output view of %{n.name} is not a row block")
                yp, ldy, _ = self._matrix_parts(out)
            else:
                tb = self.new_buffer(int(np.prod(mid)) * N if mid else N, DType.F32, f"%{n.name} layer {li}")
                temps.append(tb.id)
                yp, ldy = tb.cname, str(N)
            calls.append(dict(x=cur, ldx=cur_ld, rows=rows, K=K, N=N, weight="W." + slot.cname, bias=bias,
                              act=act, y=yp, ldy=ldy))
            cur, cur_ld, K = yp, ldy, N
        text = print_node(self.g, n)
        for li, c in enumerate(calls):
            self.add(LinearStep(node=n.name, text=text if li == 0 else "", reads=step_reads if li == 0 else set(),
                                writes=self._w(out) if li == len(calls) - 1 else set(), temps=temps, **c))

    def op_mlp(self, n: Node):
        layers = mlp_layers(n)
        out = self.out_view(n)
        self._linear_chain(n, n.inputs[0], layers, out)
        self._set(n, out)

    def op_linear(self, n: Node):
        out = self.out_view(n)
        self._linear_chain(n, n.inputs[0], [(n.inputs[1], n.inputs[2] if len(n.inputs) == 3 else None, "none")],
                           out)
        self._set(n, out)

    def op_matmul(self, n: Node):
        a, b = n.inputs
        ta, tb = self.g.type_of(a), self.g.type_of(b)
        if self.rowwise(a) and self.is_const(b) and tb.rank == 2:
            # x @ B with constant B [K, N]: a Linear with weight B.T, packed now
            key = f"@fold/{b}.T"
            if key not in self.extra:
                self.extra[key] = np.ascontiguousarray(self._const_array(b).T)
            out = self.out_view(n)
            slot = self.slot(key, "packed", N=int(tb.shape[1]), K=int(tb.shape[0]))
            K = int(tb.shape[0])
            xp, ldx, rows, xv = self.matrix(a, n, K)
            yp, ldy, _ = self._matrix_parts(out)
            self.add(LinearStep(node=n.name, text=print_node(self.g, n), reads=self._r(xv), writes=self._w(out),
                                x=xp, ldx=ldx, rows=rows, K=K, N=slot.N, weight="W." + slot.cname, bias="",
                                act="none", y=yp, ldy=ldy))
            self._set(n, out)
            return
        if ta.rank == 3 and tb.rank == 3 and self.rowwise(a) and self.rowwise(b):
            av, bv = self.view_of(a, n), self.view_of(b, n)
            out = self.out_view(n)
            M, K = int(ta.shape[1]), int(ta.shape[2])
            N = int(tb.shape[2])
            self.add(BmmStep(node=n.name, text=print_node(self.g, n), reads=self._r(av, bv), writes=self._w(out),
                             a=av, b=bv, out=out, M=M, K=K, N=N))
            self._set(n, out)
            return
        raise unsupported(n, f"matmul of {ta} and {tb} (supported: rows @ constant matrix, per-row bmm)")

    def op_cross_layer(self, n: Node):
        """x_{l+1} = x0 * (W x_l + b) + x_l; low rank: W (V x_l)."""
        x0, xl = n.inputs[:2]
        K = int(n.type.shape[1])
        out = self.out_view(n)
        t = self.new_buffer(K, DType.F32, f"%{n.name}: W x + b")
        tv = View(ptr=t.cname, ctype="float", rowwise=True, ld=str(K), dims=(K,), strides=(1,), buffer=t.id)
        if n.attr("low_rank"):
            v, w, b = n.inputs[2:]
            layers = [(v, None, "none"), (w, b, "none")]
        else:
            w, b = n.inputs[2:]
            layers = [(w, b, "none")]
        self._linear_chain(n, xl, layers, tv)
        ex = Apply(Op.ADD, (Apply(Op.MUL, (self.expr_of(x0, ("i", "j0")), Load(tv, ("i", "j0")))),
                            self.expr_of(xl, ("i", "j0"))))
        self.add(LoopStep(node=n.name, text="", out=out, expr=ex, reads=self.expr_buffers(ex) | {t.id},
                          writes=self._w(out)))
        self._set(n, out)

    # ---- sparse
    def op_embedding_bag_group(self, n: Node):
        out = self.out_view(n)
        if not self._is_matrix(out, int(n.type.shape[1])) or out.dims != (int(n.type.shape[1]),):
            raise AssertionError("internal: embedding group output must be a row block")
        feats, col = [], 0
        first = len(self.bags)
        for fi in feature_inputs(n):
            f = fi.feature
            k = self._bag_feature(n, fi.table, fi.jagged, fi.psw, f.mode, f.padding_idx, f.dim, f.num_rows,
                                  fi.remap)
            feats.append((k, col, f.dim, f.feature, f.num_rows))
            col += f.dim
        ptr, ld, _ = self._matrix_parts(out)
        self.add(BagStep(node=n.name, text=print_node(self.g, n), group=first, features=feats, out=ptr, ldo=ld,
                         writes=self._w(out)))
        self._set(n, out)

    def op_embedding_bag(self, n: Node):
        out = self.out_view(n)
        fi = feature_inputs(n)[0]
        dim = int(n.type.shape[1])
        rows = int(self.g.type_of(fi.remap or fi.table).shape[0])    # logical rows: a pruned table's remap length
        k = self._bag_feature(n, fi.table, fi.jagged, fi.psw, n.attr("mode"), n.attr("padding_idx", None), dim, rows,
                              fi.remap)
        ptr, ld, _ = self._matrix_parts(out)
        self.add(BagStep(node=n.name, text=print_node(self.g, n), group=k,
                         features=[(k, 0, dim, self.bags[k].feature, rows)], out=ptr, ldo=ld, writes=self._w(out)))
        self._set(n, out)

    def _user_name(self, value: str) -> str:
        """How an error message names a value: a model input by its name, else %value."""
        n = self.g.node(value)
        return f"input '{n.attr('name', value)}'" if n.op is Op.INPUT else f"%{value}"

    def op_embedding(self, n: Node):
        table, ids = n.inputs
        tt = self.g.type_of(table)
        if tt.layout or tt.dtype is not DType.F32:
            raise unsupported(n, "nn.Embedding lookups read fp32 tables only")
        iv = self.view_of(ids, n)
        out = self.out_view(n)
        s = self.slot(self.const_key(table))
        self.add(GatherStep(node=n.name, text=print_node(self.g, n), reads=self._r(iv), writes=self._w(out),
                            ids=iv, table="W." + s.cname, rows=int(tt.shape[0]), dim=int(tt.shape[1]), out=out,
                            name=self._user_name(ids)))
        self._set(n, out)

    # ---- interactions
    def op_dot_interaction(self, n: Node):
        src = n.inputs[0]
        t = self.g.type_of(src)
        F, D = int(t.shape[1]), int(t.shape[2])
        v = self.view_of(src, n)
        if not (v.rowwise and v.ld != "0" and v.strides == (D, 1)):
            v = self._copy_contiguous(src, v, n)
        out = self.out_view(n)
        pairs = n.attr("pairs")
        name = f"kPairs{len(self.pair_tables)}"
        self.pair_tables[name] = ([int(p[0]) for p in pairs], [int(p[1]) for p in pairs])
        ptr, ld, _ = self._matrix_parts(out)
        self.add(InteractionStep(node=n.name, text=print_node(self.g, n), reads=self._r(v), writes=self._w(out),
                                 t=v.ptr, ldt=v.ld, F=F, D=D, pairs=name, P=len(pairs), out=ptr, ldo=ld))
        self._set(n, out)

    def op_fm(self, n: Node):
        v = self.view_of(n.inputs[0], n)
        if len(v.dims) != 2:
            raise unsupported(n, "fm input must be [B, F, K]")
        out = self.out_view(n)
        self.add(FMStep(node=n.name, text=print_node(self.g, n), reads=self._r(v), writes=self._w(out), v=v,
                        out=out))
        self._set(n, out)

    def op_layer_norm(self, n: Node):
        k = int(n.attr("normalized_ndim"))
        if k >= n.type.rank:
            raise unsupported(n, "layer norm over the batch dim")
        src = n.inputs[0]
        v = self.view_of(src, n)
        if not v.contiguous or v.ld == "0":
            v = self._copy_contiguous(src, v, n)
        out = self.out_view(n)
        if not out.contiguous:
            raise AssertionError("internal: layer norm output must be contiguous")
        pos = 1
        w = b = ""
        if n.attr("has_weight"):
            w = self.const_member(n.inputs[pos], n)
            pos += 1
        if n.attr("has_bias"):
            b = self.const_member(n.inputs[pos], n)
        self.add(LayerNormStep(node=n.name, text=print_node(self.g, n), reads=self._r(v), writes=self._w(out),
                               x=v, out=out, n_norm=k, eps=float(n.attr("eps")), weight=w, bias=b))
        self._set(n, out)

    # ---- reductions
    def _reduce(self, n: Node, kind: str):
        src = n.inputs[0]
        t = self.g.type_of(src)
        dims = sorted({d % t.rank for d in n.attr("dims")})
        if 0 in dims:
            raise unsupported(n, "a reduction over the batch dim")
        idx = self._index_vars(t.rank)
        expr = self.expr_of(src, idx)
        out = self.out_view(n)
        self.add(ReduceStep(node=n.name, text=print_node(self.g, n), reads=self.expr_buffers(expr),
                            writes=self._w(out), out=out, expr=expr, in_dims=_static(t.shape[1:], n),
                            reduced=tuple(d - 1 for d in dims), kind=kind, p=float(n.attr("p", 2.0))))
        self._set(n, out)

    def op_sum(self, n):
        self._reduce(n, "sum")

    def op_mean(self, n):
        self._reduce(n, "mean")

    def op_amax(self, n):
        self._reduce(n, "amax")

    def op_norm(self, n):
        self._reduce(n, "norm")


def lower(g: Graph, *, bounds_check: bool = True) -> tuple[Program, dict[str, np.ndarray]]:
    """The program for ``g`` and the extra arrays (folded values) its weight slots name."""
    lw = Lowerer(g, bounds_check=bounds_check)
    prog = lw.run()
    return prog, lw.extra
