"""xrec IR (after the default pipeline) -> one StableHLO module with static shapes.

Lowering rules live in ``LOWERINGS``, one function per IR op; each reads the
node's inputs as :class:`~.mlir.Value`s and returns the node's value. The
batch symbol ``B`` becomes the executable's static batch; sparse features
arrive bucketed (see ``bucketing.py``): per feature ``ids [B, M]`` int32 and
``lengths [B]`` int32 (and ``weights [B, M]`` with per-sample weights).

The function's arguments, in order: dense inputs, then per feature ids,
lengths (and weights), then the parameters (``weights="args"``; with
``weights="constants"`` they are baked into the module instead). The
:class:`Lowered` result lists every argument with its role, so the runner
(and a TPU host) can feed them.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np
import sympy

from xrec.ir import Graph, Node, Op
from xrec.ir.graph import FeatureInputs, feature_inputs
from xrec.ir.quant import LAYOUT_BITS
from xrec.ir.types import BATCH, DType

from . import layout as L
from .mlir import ELEM, Builder, Value, ssa_name, tensor_type


class LoweringError(Exception):
    """The graph uses something the xla target cannot lower; names the op and where it came from."""


def _where(n: Node) -> str:
    return f"%{n.name} = {n.op.value}(...)" + (f" at {n.loc}" if n.loc else "")


def unsupported(n: Node, why: str) -> LoweringError:
    return LoweringError(f"xla target: cannot lower {_where(n)}: {why}")


@dataclass(frozen=True)
class FeatureSlot:
    """One bucketed sparse feature: where its KJT arrays come from and where its static form goes.

    All features travel in three arguments (few host->device transfers per call):
    ``ids [batch, sum M_f]`` (feature f in columns ``column .. column + max_ids``),
    ``lengths [batch, F]`` (feature f in column ``index``) and, for features with
    per-sample weights, ``weights [batch, sum M_w]`` (columns from ``weights_column``).
    """

    jagged: str                 # the JAGGED node
    feature: str
    indices: int                # flat input positions
    offsets: int
    include_last_offset: bool
    max_ids: int
    num_rows: int | None
    index: int                  # column in lengths
    column: int                 # first column in ids
    weights: int | None = None  # flat position of per-sample weights (INPUT), if any
    weights_column: int | None = None


@dataclass
class Lowered:
    text: str
    batch: int                                    # static batch of the executable
    args: list[dict] = field(default_factory=list)
    features: list[FeatureSlot] = field(default_factory=list)
    outputs: list[dict] = field(default_factory=list)


@dataclass(frozen=True)
class Plan:
    batch: int                  # static batch (already rounded by the layout)
    layout: L.Layout
    budgets: dict               # feature name -> ids per bag
    weights: str = "args"       # "args" | "constants"


# ---------------------------------------------------------------- context
class Ctx:
    def __init__(self, g: Graph, plan: Plan):
        self.g, self.plan, self.lay = g, plan, plan.layout
        self.b = Builder()
        self.vals: dict[str, Value] = {}
        self.padded: dict[str, Value] = {}     # value -> copy with its last dim zero-padded to lanes
        self.args: list[tuple[int, dict, Value]] = []   # (order class, spec, value)
        self._params: dict[tuple, Value] = {}
        self._names: set[str] = set()
        self.slots: dict[str, FeatureSlot] = {}
        self.sparse_args: dict[str, Value] = {}
        self.input_pos = {n.name: k for k, n in enumerate(g.input_nodes)}

    # ---- shapes
    def shape(self, n: Node, t=None) -> tuple[int, ...]:
        t = t or n.type
        out = []
        for d in t.shape:
            if isinstance(d, int):
                out.append(d)
                continue
            extra = sorted(s.name for s in d.free_symbols if s != BATCH)
            if extra:
                raise unsupported(n, f"its shape {t} depends on {', '.join(extra)}; the xla target needs static "
                                     "shapes (only the batch B becomes the executable's static batch)")
            out.append(int(d.subs(BATCH, self.plan.batch)))
        return tuple(out)

    def batch_dims(self, n: Node, t=None) -> set[int]:
        t = t or n.type
        return {i for i, d in enumerate(t.shape) if not isinstance(d, int) and BATCH in d.free_symbols}

    # ---- values
    def value(self, n: Node, name: str) -> Value:
        if name not in self.vals:
            src = self.g.node(name)
            raise unsupported(n, f"it reads %{name} ({src.op.value}, kind {src.attr('kind', '?')}) which has no "
                                 "static form: sparse inputs can only feed embedding bags")
        return self.vals[name]

    def arg(self, order: int, hint: str, shape, elem: str, spec: dict) -> Value:
        name = ssa_name(hint)
        base, k = name, 1
        while name in self._names:
            name, k = f"{base}_{k}", k + 1
        self._names.add(name)
        v = Value(f"%{name}", tuple(int(d) for d in shape), elem)
        spec = {"name": name, **spec, "shape": list(v.shape), "dtype": elem}
        self.args.append((order, spec, v))
        return v

    def weight(self, n: Node, name: str, t: dict) -> Value:
        """A weight as the layout wants it: a transformed argument/constant, or transformed in-graph."""
        src = self.g.node(name)
        if src.op is not Op.PARAM:            # a computed weight: transform it in the graph
            v = self.value(n, name)
            if t.get("transpose"):
                v = self.b.transpose(v, [1, 0])
            if t.get("pad_to"):
                v = self.b.pad(v, [w - d for w, d in zip(t["pad_to"], v.shape)])
            return self.b.convert(v, t.get("dtype", v.elem))
        key = (src.attr("name"), L.transform_key(t))
        if key in self._params:
            return self._params[key]
        arr = self.g.params[src.attr("name")]
        shape = L.transformed_shape(arr.shape, t)
        elem = t.get("dtype") or ELEM[src.type.dtype.value]
        if self.plan.weights == "constants":
            v = self.b.array(L.apply_transform(arr, t))
        elif elem == "i64":     # jax puts 64-bit ints on devices as int32: pass int32, widen in the graph
            if arr.size and (arr.min() < -2**31 or arr.max() >= 2**31):
                raise unsupported(n, f"int64 parameter {src.attr('name')!r} holds values beyond int32")
            v = self.arg(3, "p_" + src.attr("name"), shape, "i32",
                         {"role": "param", "param": src.attr("name"), "transform": {**t, "dtype": "i32"}})
            v = self.b.convert(v, "i64")
        else:
            v = self.arg(3, "p_" + src.attr("name"), shape, elem,
                         {"role": "param", "param": src.attr("name"), "transform": t})
        self._params[key] = v
        return v

    def padded_last(self, n: Node, name: str) -> Value:
        """``name`` with its last dim zero-padded to the layout's lanes (cached per value)."""
        if name in self.padded:
            return self.padded[name]
        v = self.value(n, name)
        want = self.lay.lanes(v.shape[-1])
        p = self.b.pad(v, [0] * (v.rank - 1) + [want - v.shape[-1]])
        self.padded[name] = p
        return p

    def dot(self, x: Value, w: Value) -> Value:
        """x[..., K] @ w[K, N] with compute-dtype operands and an f32 result."""
        ce = self.lay.compute_elem
        return self.b.dot_general(self.b.convert(x, ce), self.b.convert(w, ce), ([x.rank - 1], [0]),
                                  out_elem="f32", precision=self.lay.precision)

    def add_bias(self, y: Value, bias: Value) -> Value:
        return self.b.binary("add", y, self.b.broadcast(bias, y.shape, [y.rank - 1]))


# ---------------------------------------------------------------- activations
_ERF_ALPHA = (0.00022905065861350646, 0.0034082910107109506, 0.050955695062380861,
              0.18520832239976145, 1.128379143519084)
_ERF_BETA = (-1.1791602954361697e-7, 0.000023547966471313185, 0.0010179625278914885,
             0.014070470171167667, 0.11098505178285362, 0.49746925110067538, 1.0)


def _erf(b: Builder, x: Value) -> Value:
    """erf as XLA's f32 rational approximation, in plain StableHLO (no chlo: portable artifacts)."""
    c = 3.7439211627767994
    x = b.clamp(b.scalar(-c, x.elem), x, b.scalar(c, x.elem))
    x2 = b.binary("multiply", x, x)

    def poly(coefs):
        acc = b.full(coefs[0], x.shape, x.elem)
        for k in coefs[1:]:
            acc = b.binary("add", b.binary("multiply", acc, x2), b.full(k, x.shape, x.elem))
        return acc
    return b.binary("divide", b.binary("multiply", x, poly(_ERF_ALPHA)), poly(_ERF_BETA))


def activation(b: Builder, name: str, x: Value) -> Value:
    if name == "none":
        return x
    if name == "relu":
        return b.binary("maximum", x, b.full(0, x.shape, x.elem))
    if name == "sigmoid":
        return b.unary("logistic", x)
    if name == "tanh":
        return b.unary("tanh", x)
    if name == "silu":
        return b.binary("multiply", x, b.unary("logistic", x))
    half = b.full(0.5, x.shape, x.elem)
    one = b.full(1.0, x.shape, x.elem)
    if name == "gelu":
        e = _erf(b, b.binary("multiply", x, b.full(1 / math.sqrt(2), x.shape, x.elem)))
        return b.binary("multiply", b.binary("multiply", half, x), b.binary("add", one, e))
    if name == "gelu_tanh":
        x3 = b.binary("multiply", b.binary("multiply", x, x), x)
        inner = b.binary("add", x, b.binary("multiply", b.full(0.044715, x.shape, x.elem), x3))
        t = b.unary("tanh", b.binary("multiply", b.full(math.sqrt(2 / math.pi), x.shape, x.elem), inner))
        return b.binary("multiply", b.binary("multiply", half, x), b.binary("add", one, t))
    raise ValueError(f"unknown activation {name!r}")


_ZERO_PRESERVING = {"none", "relu", "tanh", "gelu", "gelu_tanh", "silu"}


# ---------------------------------------------------------------- sparse
def table_rows(c: Ctx, n: Node, table_name: str, ids: Value, dim: int) -> Value:
    """f32 rows ``table[ids]`` -> ids.shape + [dim], for every table format of the IR (see xrec.ir.quant).

    Row-wise quantized tables are gathered as bytes and dequantized in the graph
    (q * scale + bias); fp16/bf16 tables are gathered narrow and widened.
    """
    b = c.b
    ttype = c.g.type_of(table_name)
    if ttype.layout in LAYOUT_BITS:
        bits = LAYOUT_BITS[ttype.layout]
        packed = b.gather_rows(c.weight(n, table_name, {}), ids)           # [..., row_bytes] u8
        lead = packed.shape[:-1]
        last = packed.rank - 1
        if bits == 8:
            nbytes, sfx, sfx_bytes = dim, "f32", 4
            q = b.slice_dim(packed, last, 0, dim)
        else:
            per = 8 // bits
            nbytes, sfx, sfx_bytes = -(-dim // per), "f16", 2
            vals = b.slice_dim(packed, last, 0, nbytes)
            mask = b.full((1 << bits) - 1, vals.shape, "ui8")
            parts = []
            for k in range(per):          # low bits first
                v = vals if k == 0 else b.binary("shift_right_logical", vals, b.full(k * bits, vals.shape, "ui8"))
                parts.append(b.reshape(b.binary("and", v, mask), vals.shape + (1,)))
            q = b.reshape(b.concat(parts, vals.rank), lead + (nbytes * per,))
            q = b.slice_dim(q, last, 0, dim)
        q = b.convert(q, "f32")
        sb = b.slice_dim(packed, last, nbytes, nbytes + 2 * sfx_bytes)
        sb = b.bitcast_convert(b.reshape(sb, lead + (2, sfx_bytes)), lead + (2,), sfx)
        sb = b.convert(sb, "f32")
        scale = b.broadcast(b.reshape(b.slice_dim(sb, last, 0, 1), lead), q.shape, list(range(len(lead))))
        bias = b.broadcast(b.reshape(b.slice_dim(sb, last, 1, 2), lead), q.shape, list(range(len(lead))))
        return b.binary("add", b.binary("multiply", q, scale), bias)
    if ttype.layout:
        raise unsupported(n, f"table %{table_name} has layout {ttype.layout!r}; the xla target reads plain "
                             f"f32/f16/bf16 tables and {', '.join(LAYOUT_BITS)}")
    if ttype.dtype is DType.F32:
        t = L.transform(dtype=c.lay.compute_elem)       # bf16 option: tables stored in bf16
    elif ttype.dtype is DType.BF16:
        t = L.transform(dtype="bf16")                   # bit patterns (uint16) viewed as bf16
    elif ttype.dtype is DType.F16:
        t = {}
    else:
        raise unsupported(n, f"table %{table_name} has dtype {ttype.dtype.value}")
    return b.convert(b.gather_rows(c.weight(n, table_name, t), ids), "f32")


def _pool_feature(c: Ctx, n: Node, fi: FeatureInputs, dim: int) -> Value:
    """PyTorch's embedding_bag of one feature over its bucketed ids (masked gather + reduce)."""
    b = c.b
    f, jag_name, psw_name = fi.feature, fi.jagged, fi.psw
    mode, padding_idx = f.mode, f.padding_idx
    ids, lengths = c.vals[jag_name + "#ids"], c.vals[jag_name + "#lengths"]
    slot = c.slots[jag_name]
    if fi.remap is None:
        rows = table_rows(c, n, fi.table, ids, dim)                         # [B, M, dim] f32
    else:   # a pruned table: ids -> compact rows through the remap; -1 reads a zero row
        remap = c.b.convert(c.weight(n, fi.remap, {}), "i32")
        nr = remap.shape[0]
        phys = b.reshape(b.gather_rows(b.reshape(remap, (nr, 1)), ids), ids.shape)
        zero = b.full(0, ids.shape, "i32")
        rows = table_rows(c, n, fi.table, b.binary("maximum", phys, zero), dim)
        pruned = b.broadcast(b.compare("LT", phys, zero), rows.shape, [0, 1])
        rows = b.select(pruned, b.full(0.0, rows.shape, "f32"), rows)
    bs, m = ids.shape
    mask = b.compare("LT", b.iota((bs, m), 1), b.broadcast(lengths, (bs, m), [0]))
    if padding_idx is not None:
        rows_n = slot.num_rows if slot.num_rows is not None else int(c.g.type_of(fi.table).shape[0])
        pidx = b.full(int(padding_idx) % rows_n, (bs, m), "i32")
        mask = b.binary("and", mask, b.compare("NE", ids, pidx))
    if psw_name is not None:
        w = c.vals[jag_name + "#weights"]
        rows = b.binary("multiply", rows, b.broadcast(w, rows.shape, [0, 1]))
    mask3 = b.broadcast(mask, rows.shape, [0, 1])
    if mode == "max":
        pooled = b.reduce(b.select(mask3, rows, b.full(-np.inf, rows.shape, "f32")), [1], "maximum")
    else:
        pooled = b.reduce(b.select(mask3, rows, b.full(0.0, rows.shape, "f32")), [1], "add")
    if mode in ("mean", "max"):
        count = b.reduce(b.convert(mask, "f32"), [1], "add")                 # [B]
        if mode == "mean":
            denom = b.binary("maximum", count, b.full(1.0, count.shape, "f32"))
            pooled = b.binary("divide", pooled, b.broadcast(denom, pooled.shape, [0]))
        else:   # an empty bag pools to 0, as PyTorch
            empty = b.broadcast(b.compare("EQ", count, b.full(0.0, count.shape, "f32")), pooled.shape, [0])
            pooled = b.select(empty, b.full(0.0, pooled.shape, "f32"), pooled)
    return pooled


def lower_group(c: Ctx, n: Node) -> Value:
    outs = []
    for fi in feature_inputs(n):
        outs.append(_pool_feature(c, n, fi, fi.feature.dim))
    return c.b.concat(outs, 1)


def lower_bag(c: Ctx, n: Node) -> Value:
    fi = feature_inputs(n)[0]
    v = _pool_feature(c, n, fi, c.shape(n)[1])
    return c.b.convert(v, ELEM[n.type.dtype.value])


def plan_features(c: Ctx) -> None:
    """Lay out every sparse feature in the shared ids / lengths / weights arguments."""
    g = c.g
    psw: dict[str, str] = {}
    for n in g.nodes_of(Op.EMBEDDING_BAG_GROUP, Op.EMBEDDING_BAG):
        for fi in feature_inputs(n):
            if fi.psw is None:
                continue
            if g.node(fi.psw).op is not Op.INPUT:
                raise unsupported(n, f"per-sample weights %{fi.psw} are computed ({g.node(fi.psw).op.value}); the "
                                     "xla target takes them only as a model input (bucketed with their feature)")
            if psw.setdefault(fi.jagged, fi.psw) != fi.psw:
                raise unsupported(n, f"feature %{fi.jagged} is pooled with two different per-sample weights")
    col = wcol = 0
    for k, n in enumerate(g.nodes_of(Op.JAGGED)):
        idx, off = n.inputs
        for name in (idx, off):
            if g.node(name).op is not Op.INPUT:
                raise unsupported(n, f"%{name} is computed; the xla target buckets sparse features given as inputs")
        feature = n.attr("feature")
        m = int(c.plan.budgets[feature])
        rows = _features_reading(g, n.name)
        w = psw.get(n.name)
        c.slots[n.name] = FeatureSlot(n.name, feature, c.input_pos[idx], c.input_pos[off],
                                      bool(n.attr("include_last_offset", True)), m, min(rows) if rows else None,
                                      index=k, column=col, weights=c.input_pos[w] if w else None,
                                      weights_column=wcol if w else None)
        col += m
        wcol += m if w else 0
    if not c.slots:
        return
    bs = c.plan.batch
    c.sparse_args = {
        "ids": c.arg(1, "ids", (bs, col), "i32", {"role": "ids"}),
        "lengths": c.arg(1, "lengths", (bs, len(c.slots)), "i32", {"role": "lengths"}),
    }
    if wcol:
        c.sparse_args["weights"] = c.arg(1, "weights", (bs, wcol), "f32", {"role": "weights"})


def lower_jagged(c: Ctx, n: Node) -> None:
    """A feature's ids [B, M] and lengths [B]: slices of the shared arguments."""
    b, slot, a = c.b, c.slots[n.name], c.sparse_args
    c.vals[n.name + "#ids"] = b.slice_dim(a["ids"], 1, slot.column, slot.column + slot.max_ids)
    lengths = b.slice_dim(a["lengths"], 1, slot.index, slot.index + 1)
    c.vals[n.name + "#lengths"] = b.reshape(lengths, (lengths.shape[0],))
    if slot.weights is not None:
        c.vals[n.name + "#weights"] = b.slice_dim(a["weights"], 1, slot.weights_column,
                                                  slot.weights_column + slot.max_ids)


def _features_reading(g: Graph, jag: str) -> list[int]:
    """Logical table rows of every embedding bag reading the jagged feature ``jag``."""
    out = []
    for u in g.users.get(jag, []):
        if u.op not in (Op.EMBEDDING_BAG_GROUP, Op.EMBEDDING_BAG):
            continue
        for fi in feature_inputs(u):
            if fi.jagged != jag:
                continue
            if u.op is Op.EMBEDDING_BAG_GROUP:
                out.append(fi.feature.num_rows)
            else:
                out.append(int(g.type_of(fi.remap or fi.table).shape[0]))
    return out


def lower_embedding(c: Ctx, n: Node) -> Value:
    table_name, ids_name = n.inputs
    ids = c.b.convert(c.value(n, ids_name), "i32")
    return c.b.convert(table_rows(c, n, table_name, ids, c.shape(n)[-1]), ELEM[n.type.dtype.value])


# ---------------------------------------------------------------- dense layers
def _dense_chain(c: Ctx, n: Node, x_name: str, layers: list[tuple[str, str | None, str]]) -> Value:
    """x -> act(x @ W.T + b) for each (weight, bias, act); padded to lanes, sliced at the end."""
    b, lay = c.b, c.lay
    x = c.value(n, x_name)
    cur = c.padded_last(n, x_name)
    n_out = x.shape[-1]
    act = "none"
    for w_name, bias_name, act in layers:
        wt = c.g.type_of(w_name)
        n_out, k = int(wt.shape[0]), int(wt.shape[1])
        w = c.weight(n, w_name, L.transform(True, (lay.lanes(k), lay.lanes(n_out)), lay.compute_elem))
        y = c.dot(cur, w)
        if bias_name is not None:
            y = c.add_bias(y, c.weight(n, bias_name, L.transform(pad_to=(lay.lanes(n_out),))))
        cur = activation(b, act, y)
    out = b.convert(cur, x.elem)
    if act in _ZERO_PRESERVING:
        c.padded[n.name] = out
    return b.slice_dim(out, out.rank - 1, 0, n_out)


def lower_mlp(c: Ctx, n: Node) -> Value:
    layers, pos = [], 1
    for act, hb in zip(n.attr("acts"), n.attr("has_bias")):
        layers.append((n.inputs[pos], n.inputs[pos + 1] if hb else None, act))
        pos += 2 if hb else 1
    return _dense_chain(c, n, n.inputs[0], layers)


def lower_linear(c: Ctx, n: Node) -> Value:
    return _dense_chain(c, n, n.inputs[0], [(n.inputs[1], n.inputs[2] if len(n.inputs) > 2 else None, "none")])


def lower_cross(c: Ctx, n: Node) -> Value:
    """x0 * (W xl + b) + xl (low rank: W (V xl)); padded lanes stay zero, so the padded copy is kept."""
    b, lay = c.b, c.lay
    x0 = c.padded_last(n, n.inputs[0])
    xl = c.padded_last(n, n.inputs[1])
    k = c.value(n, n.inputs[0]).shape[-1]
    kp = lay.lanes(k)
    if n.attr("low_rank"):
        v_name, w_name, b_name = n.inputs[2:5]
        r = int(c.g.type_of(v_name).shape[0])
        v = c.weight(n, v_name, L.transform(True, (kp, lay.lanes(r)), lay.compute_elem))
        w = c.weight(n, w_name, L.transform(True, (lay.lanes(r), kp), lay.compute_elem))
        y = c.dot(c.dot(xl, v), w)
    else:
        w_name, b_name = n.inputs[2:4]
        y = c.dot(xl, c.weight(n, w_name, L.transform(True, (kp, kp), lay.compute_elem)))
    y = c.add_bias(y, c.weight(n, b_name, L.transform(pad_to=(kp,))))
    x0f, xlf = b.convert(x0, "f32"), b.convert(xl, "f32")
    out = b.convert(b.binary("add", b.binary("multiply", x0f, y), xlf), x0.elem)
    c.padded[n.name] = out
    return b.slice_dim(out, 1, 0, k)


def lower_matmul(c: Ctx, n: Node) -> Value:
    b = c.b
    a, w = c.value(n, n.inputs[0]), c.value(n, n.inputs[1])
    a2 = b.reshape(a, (1,) + a.shape) if a.rank == 1 else a
    w2 = b.reshape(w, w.shape + (1,)) if w.rank == 1 else w
    batch = np.broadcast_shapes(a2.shape[:-2], w2.shape[:-2])
    if a.rank - 1 in c.batch_dims(n, c.g.type_of(n.inputs[0])):
        raise unsupported(n, "it contracts over the batch; padding the batch would change the result")
    a3 = b.broadcast_to(a2, tuple(batch) + a2.shape[-2:])
    w3 = b.broadcast_to(w2, tuple(batch) + w2.shape[-2:])
    nb = len(batch)
    ce = c.lay.compute_elem if a.elem == "f32" else a.elem
    y = b.dot_general(b.convert(a3, ce), b.convert(w3, ce), ([nb + 1], [nb]), (list(range(nb)), list(range(nb))),
                      out_elem=a.elem, precision=c.lay.precision if a.is_float else "DEFAULT")
    return b.reshape(y, c.shape(n))


def lower_dot_interaction(c: Ctx, n: Node) -> Value:
    b = c.b
    t = c.value(n, n.inputs[0])
    bs, f, _ = t.shape
    ce = c.lay.compute_elem if t.elem == "f32" else t.elem
    tc = b.convert(t, ce)
    z = b.dot_general(tc, tc, ([2], [2]), ([0], [0]), out_elem=t.elem, precision=c.lay.precision)   # [B, F, F]
    flat = b.reshape(z, (bs, f * f))
    pairs = n.attr("pairs")
    idx = np.array([[i * f + j] for i, j in pairs], np.int32)
    return b.gather(flat, b.array(idx), 1, 1)


def lower_fm(c: Ctx, n: Node) -> Value:
    b = c.b
    v = c.value(n, n.inputs[0])
    s = b.reduce(v, [1], "add")
    sq = b.reduce(b.binary("multiply", v, v), [1], "add")
    d = b.binary("subtract", b.binary("multiply", s, s), sq)
    r = b.binary("multiply", b.reduce(d, [1], "add"), b.full(0.5, (v.shape[0],), v.elem))
    return b.reshape(r, c.shape(n))


# ---------------------------------------------------------------- generic ops
_UNARY = {Op.NEG: "negate", Op.EXP: "exponential", Op.LOG: "log", Op.SQRT: "sqrt", Op.RSQRT: "rsqrt",
          Op.ABS: "abs", Op.TANH: "tanh", Op.SIGMOID: "logistic"}
_BINARY = {Op.ADD: "add", Op.SUB: "subtract", Op.MUL: "multiply", Op.DIV: "divide", Op.POW: "power",
           Op.MAXIMUM: "maximum", Op.MINIMUM: "minimum"}


def lower_unary(c: Ctx, n: Node) -> Value:
    x = c.value(n, n.inputs[0])
    if n.op in _UNARY:
        return c.b.unary(_UNARY[n.op], x)
    if n.op is Op.RELU:
        return activation(c.b, "relu", x)
    if n.op is Op.SILU:
        return activation(c.b, "silu", x)
    if n.op is Op.GELU:
        return activation(c.b, "gelu_tanh" if n.attr("approximate", "none") == "tanh" else "gelu", x)
    if n.op is Op.CLAMP:
        lo, hi = n.attr("min", None), n.attr("max", None)
        if lo is not None:
            x = c.b.binary("maximum", x, c.b.full(lo, x.shape, x.elem))
        if hi is not None:
            x = c.b.binary("minimum", x, c.b.full(hi, x.shape, x.elem))
        return x
    if n.op is Op.CAST:
        return c.b.convert(x, ELEM[n.attr("dtype").value])
    raise unsupported(n, "no lowering rule")


def lower_binary(c: Ctx, n: Node) -> Value:
    shape = c.shape(n)
    a = c.b.broadcast_to(c.value(n, n.inputs[0]), shape)
    w = c.b.broadcast_to(c.value(n, n.inputs[1]), shape)
    return c.b.binary(_BINARY[n.op], a, w)


def _reduce_dims(c: Ctx, n: Node, x: Value) -> list[int]:
    dims = sorted({d % x.rank for d in n.attr("dims")})
    across = set(dims) & c.batch_dims(n, c.g.type_of(n.inputs[0]))
    if across:
        raise unsupported(n, f"it reduces over the batch (dims {sorted(across)}); the executable pads the batch "
                             "to a static size, which would change the result")
    return dims


def lower_reduce(c: Ctx, n: Node) -> Value:
    b = c.b
    x = c.value(n, n.inputs[0])
    dims = _reduce_dims(c, n, x)
    if n.op is Op.AMAX:
        r = b.reduce(x, dims, "maximum")
    elif n.op is Op.NORM:
        p = float(n.attr("p", 2.0))
        if math.isinf(p):
            r = b.reduce(b.unary("abs", x), dims, "maximum" if p > 0 else "minimum")
        elif p == 2.0:
            r = b.unary("sqrt", b.reduce(b.binary("multiply", x, x), dims, "add"))
        elif p == 1.0:
            r = b.reduce(b.unary("abs", x), dims, "add")
        else:
            s = b.reduce(b.binary("power", b.unary("abs", x), b.full(p, x.shape, x.elem)), dims, "add")
            r = b.binary("power", s, b.full(1 / p, s.shape, s.elem))
    else:
        r = b.reduce(x, dims, "add")
        if n.op is Op.MEAN:
            count = int(np.prod([x.shape[d] for d in dims]))
            r = b.binary("divide", r, b.full(count, r.shape, r.elem))
    return b.reshape(r, c.shape(n))


def lower_layer_norm(c: Ctx, n: Node) -> Value:
    b = c.b
    x = c.value(n, n.inputs[0])
    k = n.attr("normalized_ndim")
    dims = list(range(x.rank - k, x.rank))
    keep = [i for i in range(x.rank) if i not in dims]
    cnt = float(np.prod([x.shape[d] for d in dims]))

    def mean(v):
        s = b.reduce(v, dims, "add")
        return b.broadcast(b.binary("divide", s, b.full(cnt, s.shape, s.elem)), x.shape, keep)
    xc = b.binary("subtract", x, mean(x))
    var = mean(b.binary("multiply", xc, xc))
    y = b.binary("multiply", xc, b.unary("rsqrt", b.binary("add", var, b.full(n.attr("eps"), x.shape, x.elem))))
    pos = 1
    for has in (n.attr("has_weight"), n.attr("has_bias")):
        if has:
            p = b.broadcast_to(c.value(n, n.inputs[pos]), x.shape)
            y = b.binary("multiply" if pos == 1 and n.attr("has_weight") else "add", y, p)
            pos += 1
    return y


def lower_reshape(c: Ctx, n: Node) -> Value:
    return c.b.reshape(c.value(n, n.inputs[0]), c.shape(n))


def lower_permute(c: Ctx, n: Node) -> Value:
    return c.b.transpose(c.value(n, n.inputs[0]), n.attr("perm"))


def lower_expand(c: Ctx, n: Node) -> Value:
    return c.b.broadcast_to(c.value(n, n.inputs[0]), c.shape(n))


def lower_cat(c: Ctx, n: Node) -> Value:
    xs = [c.value(n, i) for i in n.inputs]
    return c.b.concat(xs, n.attr("dim") % xs[0].rank)


def lower_slice(c: Ctx, n: Node) -> Value:
    x = c.value(n, n.inputs[0])
    d = n.attr("dim") % x.rank
    start, stop, step = slice(n.attr("start"), n.attr("end"), n.attr("step", 1)).indices(x.shape[d])
    stop = max(stop, start)
    return c.b.slice_dim(x, d, start, stop, step)


def lower_index(c: Ctx, n: Node) -> Value:
    b = c.b
    x = c.value(n, n.inputs[0])
    d = n.attr("dim") % x.rank
    parts = []
    for k, name in enumerate(n.inputs[1:]):
        i = b.convert(c.value(n, name), "i32")
        size = b.full(x.shape[d + k], i.shape, "i32")
        i = b.select(b.compare("LT", i, b.full(0, i.shape, "i32")), b.binary("add", i, size), i)
        parts.append(b.reshape(i, i.shape + (1,)))
    idx = b.concat(parts, parts[0].rank - 1)
    return b.gather(x, idx, d, len(parts))


def lower_full(c: Ctx, n: Node) -> Value:
    return c.b.full(n.attr("value"), c.shape(n), ELEM[n.type.dtype.value])


def lower_param(c: Ctx, n: Node) -> Value:
    return c.weight(n, n.name, {})


LOWERINGS = {
    Op.EMBEDDING_BAG_GROUP: lower_group, Op.EMBEDDING_BAG: lower_bag, Op.EMBEDDING: lower_embedding,
    Op.MLP: lower_mlp, Op.LINEAR: lower_linear, Op.MATMUL: lower_matmul, Op.CROSS_LAYER: lower_cross,
    Op.DOT_INTERACTION: lower_dot_interaction, Op.FM: lower_fm,
    Op.SUM: lower_reduce, Op.MEAN: lower_reduce, Op.AMAX: lower_reduce, Op.NORM: lower_reduce,
    Op.LAYER_NORM: lower_layer_norm,
    Op.RESHAPE: lower_reshape, Op.PERMUTE: lower_permute, Op.EXPAND: lower_expand, Op.CAT: lower_cat,
    Op.SLICE: lower_slice, Op.INDEX: lower_index, Op.FULL: lower_full,
    **{op: lower_unary for op in (Op.RELU, Op.SIGMOID, Op.TANH, Op.GELU, Op.SILU, Op.NEG, Op.EXP, Op.LOG,
                                  Op.SQRT, Op.RSQRT, Op.ABS, Op.CLAMP, Op.CAST)},
    **{op: lower_binary for op in _BINARY},
}
_LAZY = {Op.PARAM}          # lowered on first use (so layouts can transform them)


# ---------------------------------------------------------------- module
def _params_used_directly(g: Graph) -> set[str]:
    """PARAM nodes read by generic ops (as plain tensors), not as weights of a layer or table."""
    layered = {Op.MLP, Op.LINEAR, Op.CROSS_LAYER, Op.EMBEDDING_BAG_GROUP, Op.EMBEDDING_BAG, Op.EMBEDDING}
    out = set()
    for n in g.nodes:
        if n.op in layered:
            continue
        out.update(i for i in n.inputs if g.node(i).op is Op.PARAM)
    return out


def lower_graph(g: Graph, plan: Plan) -> Lowered:
    c = Ctx(g, plan)
    b = c.b
    direct = _params_used_directly(g)
    # dense inputs become arguments; sparse ones are bucketed by their JAGGED node
    for n in g.input_nodes:
        if n.attr("kind") in ("indices", "offsets", "weights"):
            continue
        shape = c.shape(n)
        bd = c.batch_dims(n)
        if bd - {0} or (bd and not (isinstance(n.type.shape[0], sympy.Symbol) and n.type.shape[0] == BATCH)):
            raise unsupported(n, f"input {n.attr('name')!r} has shape {n.type}; the xla target pads and splits "
                                 "inputs along a leading batch dim B")
        elem = ELEM[n.type.dtype.value]
        v = c.arg(0, f"in_{n.attr('name')}", shape, "i32" if elem == "i64" else elem,
                  {"role": "input", "input": c.input_pos[n.name], "input_name": n.attr("name"), "batched": bool(bd)})
        c.vals[n.name] = b.convert(v, elem)     # int64 inputs travel as int32 (jax's device_put)
    plan_features(c)
    for n in g.nodes:
        if n.op is Op.INPUT:
            continue
        if n.op is Op.JAGGED:
            lower_jagged(c, n)
            continue
        if n.op is Op.PARAM:
            if n.name in direct:
                c.vals[n.name] = lower_param(c, n)
            continue
        rule = LOWERINGS.get(n.op)
        if rule is None:
            raise unsupported(n, f"no lowering rule; the xla target lowers {', '.join(sorted(o.value for o in LOWERINGS))}")
        b.comment(_describe(n))
        v = rule(c, n)
        want = c.shape(n)
        if v.shape != want:
            raise AssertionError(f"xla lowering of {_where(n)} gave {v.type}, the IR says {want}")
        c.vals[n.name] = v
    outs = []
    results = []
    for o in g.outputs:
        node = g.node(o)
        v = c.value(node, o)
        bd = c.batch_dims(node)
        if bd - {0}:
            raise unsupported(node, f"output %{o} has shape {node.type}; outputs must have the batch first")
        outs.append({"value": o, "shape": list(v.shape), "dtype": v.elem, "batched": 0 in bd})
        results.append(v)
    args = sorted(c.args, key=lambda a: a[0])
    header = _header(g, plan, [a[1] for a in args], outs)
    sig = ",\n      ".join(f"{v.ssa}: {v.type}" for _, _, v in args)
    body = "\n    ".join(b.lines)
    rtypes = ", ".join(v.type for v in results)
    text = (f"{header}module @{re.sub(r'[^A-Za-z0-9_]', '_', g.name)} attributes {{mhlo.num_partitions = 1 : i32, "
            f"mhlo.num_replicas = 1 : i32}} {{\n"
            f"  func.func public @main(\n      {sig}) -> ({rtypes}) {{\n    {body}\n"
            f"    return {', '.join(v.ssa for v in results)} : {rtypes}\n  }}\n}}\n")
    slots = [c.slots[n.name] for n in g.nodes_of(Op.JAGGED)]
    return Lowered(text=text, batch=plan.batch, args=[a[1] for a in args], features=slots, outputs=outs)


def _describe(n: Node) -> str:
    ins = ", ".join(f"%{i}" for i in n.inputs[:6]) + (", ..." if len(n.inputs) > 6 else "")
    loc = f"  [{n.loc}]" if n.loc else ""
    return f"%{n.name} = {n.op.value}({ins}) : {n.type}{loc}"


def _header(g: Graph, plan: Plan, args: list[dict], outs: list[dict]) -> str:
    lay = plan.layout
    lines = [
        f"xrec xla target: StableHLO for model {g.name!r}, written by xrec from its optimized IR.",
        f"Static batch {plan.batch} (smaller batches are padded, larger ones split by the runner);",
        f"dtype {lay.dtype} (dot_general operands {lay.compute_elem}, f32 accumulation, precision {lay.precision});",
        f"padding {'on: dense dims to multiples of ' + str(L.LANES) + ' lanes, batch to ' + str(L.SUBLANES) if lay.pad else 'off'};",
        f"weights {'as arguments' if plan.weights == 'args' else 'baked in as constants'}.",
        "Sparse features arrive bucketed: ids [batch, sum of max_ids] i32 (feature f in its own columns, 0 in",
        "unused slots), lengths [batch, features] i32 (ids present per bag), weights like ids (per-sample weights).",
        "Arguments:",
    ]
    for a in args:
        what = {"input": lambda: f"dense input {a['input_name']!r}",
                "ids": lambda: "bucketed ids of every sparse feature",
                "lengths": lambda: "bag lengths of every sparse feature",
                "weights": lambda: "bucketed per-sample weights",
                "param": lambda: f"parameter {a['param']!r} {a['transform'] or ''}"}[a["role"]]()
        lines.append(f"  %{a['name']}: {tensor_type(a['shape'], a['dtype'])}  {what}")
    lines.append("Results: " + ", ".join(f"%{o['value']} {tensor_type(o['shape'], o['dtype'])}" for o in outs))
    return "".join(f"// {line}\n" for line in lines)
