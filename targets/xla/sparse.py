"""Lowering of embedding ops over bucketed sparse features: masked gather + reduce, in-graph dequantization
of every table format of the IR (row-wise int8/int4/int2, fp16, bf16) and pruned tables' remaps."""
from __future__ import annotations

import numpy as np

from xrec.ir import Graph, Node, Op
from xrec.ir.graph import FeatureInputs, feature_inputs
from xrec.ir import formats
from xrec.ir.types import DType

from . import layout as L
from .context import Ctx, FeatureSlot, rule, unsupported
from .mlir import ELEM, Value


def table_rows(c: Ctx, n: Node, table_name: str, ids: Value, dim: int) -> Value:
    """f32 rows ``table[ids]`` -> ids.shape + [dim], for every table format of the IR (see xrec.ir.quant).

    Row-wise quantized tables are gathered as bytes and dequantized in the graph
    (q * scale + bias); fp16/bf16 tables are gathered narrow and widened.
    """
    b = c.b
    ttype = c.g.type_of(table_name)
    if ttype.layout in formats.QUANTIZED_LAYOUTS:
        fmt = formats.by_layout(ttype.layout)
        bits = fmt.bits
        packed = b.gather_rows(c.weight(n, table_name, {}), ids)           # [..., row_bytes] u8
        lead = packed.shape[:-1]
        last = packed.rank - 1
        nbytes, sfx, sfx_bytes = fmt.scale_offset(dim), ELEM[fmt.scale_bias.value], fmt.scale_bias.itemsize
        if bits == 8:
            q = b.slice_dim(packed, last, 0, dim)
        else:
            per = 8 // bits
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
                             f"f32/f16/bf16 tables and {', '.join(formats.QUANTIZED_LAYOUTS)}")
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


@rule(Op.EMBEDDING_BAG_GROUP)
def lower_group(c: Ctx, n: Node) -> Value:
    outs = []
    for fi in feature_inputs(n):
        outs.append(_pool_feature(c, n, fi, fi.feature.dim))
    return c.b.concat(outs, 1)


@rule(Op.EMBEDDING_BAG)
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


@rule(Op.EMBEDDING)
def lower_embedding(c: Ctx, n: Node) -> Value:
    table_name, ids_name = n.inputs
    ids = c.b.convert(c.value(n, ids_name), "i32")
    return c.b.convert(table_rows(c, n, table_name, ids, c.shape(n)[-1]), ELEM[n.type.dtype.value])
