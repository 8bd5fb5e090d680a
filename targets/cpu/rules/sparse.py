"""Embedding lookups: embedding_bag and embedding_bag_group on the bag kernel, embedding as a checked gather."""
from __future__ import annotations

import numpy as np

from xrec.ir import Op, feature_inputs
from xrec.ir.printer import print_node
from xrec.ir.types import DType, TensorType
from xrec.lowering import register_lowering

from ..arena import reads_of, writes_of
from ..context import is_matrix, matrix_parts
from ..errors import TARGET, unsupported
from ..plan import BagFeatureInfo, BagStep, GatherStep

POOL = {"sum": "POOL_SUM", "mean": "POOL_MEAN", "max": "POOL_MAX"}


def row_format(table: TensorType, dim: int, n) -> tuple[str, int]:
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


def remap_member(ctx, n, feature: str, remap: str, num_rows: int, table_rows: int) -> str:
    """``W.<member>`` of a pruned table's remap, checked now: the kernel trusts its values."""
    if not ctx.is_const(remap):
        raise unsupported(n, f"feature {feature!r}: the remap of a pruned table must be a constant (a parameter)")
    arr = ctx.const_array(remap)
    if arr.dtype != np.int32 or arr.ndim != 1 or len(arr) != num_rows:
        raise unsupported(n, f"feature {feature!r}: the remap of a pruned table must be int32 [{num_rows}], "
                             f"got {arr.dtype} {list(arr.shape)}")
    if len(arr) and (arr.min() < -1 or arr.max() >= table_rows):
        bad = int(np.nonzero((arr < -1) | (arr >= table_rows))[0][0])
        raise unsupported(n, f"feature {feature!r}: remap[{bad}] = {int(arr[bad])} is not -1 (pruned) or a "
                             f"row of the compact table of {table_rows} rows; rerun prune_embeddings")
    return ctx.const_member(remap, n)


def bag_feature(ctx, n, table: str, jag: str, psw: str | None, mode: str, padding_idx, dim: int,
                num_rows: int, remap: str | None = None) -> int:
    """One kernel feature (an entry of Call::bags); ``num_rows`` is the logical row count (a pruned table's
    remap length)."""
    j = ctx.jagged[jag]
    if not ctx.is_const(table):
        raise unsupported(n, "embedding tables must be parameters")
    pos = ctx.input_positions()
    if psw is not None and psw not in pos:
        raise unsupported(n, "per-sample weights must be a model input")
    fmt, row_bytes = row_format(ctx.g.type_of(table), dim, n)
    member = None
    if remap is not None:
        member = remap_member(ctx, n, j["feature"], remap, num_rows, int(ctx.g.type_of(table).shape[0]))
    pad = -1 if padding_idx is None else int(padding_idx) % num_rows
    s = ctx.slot(ctx.const_key(table))
    ctx.bags.append(BagFeatureInfo(
        feature=j["feature"], indices=j["indices"], offsets=j["offsets"],
        psw=None if psw is None else pos[psw], include_last_offset=j["last"],
        nnz=f"in[{j['indices']}].shape[0]", table="W." + s.cname, num_rows=num_rows, dim=dim,
        row_bytes=row_bytes, fmt=fmt, mode=POOL[mode], padding_idx=pad, remap=member))
    return len(ctx.bags) - 1


@register_lowering(Op.EMBEDDING_BAG_GROUP, TARGET)
def lower_embedding_bag_group(ctx, n):
    out = ctx.out_view(n)
    if not is_matrix(out, int(n.type.shape[1])) or out.dims != (int(n.type.shape[1]),):
        raise AssertionError("internal: embedding group output must be a row block")
    feats, col = [], 0
    first = len(ctx.bags)
    for fi in feature_inputs(n):
        f = fi.feature
        k = bag_feature(ctx, n, fi.table, fi.jagged, fi.psw, f.mode, f.padding_idx, f.dim, f.num_rows, fi.remap)
        feats.append((k, col, f.dim, f.feature, f.num_rows))
        col += f.dim
    ptr, ld, _ = matrix_parts(out)
    ctx.add(BagStep(node=n.name, text=print_node(ctx.g, n), group=first, features=feats, out=ptr, ldo=ld,
                    writes=writes_of(out)))
    ctx.set(n, out)


@register_lowering(Op.EMBEDDING_BAG, TARGET)
def lower_embedding_bag(ctx, n):
    out = ctx.out_view(n)
    fi = feature_inputs(n)[0]
    dim = int(n.type.shape[1])
    rows = int(ctx.g.type_of(fi.remap or fi.table).shape[0])    # logical rows: a pruned table's remap length
    k = bag_feature(ctx, n, fi.table, fi.jagged, fi.psw, n.attr("mode"), n.attr("padding_idx", None), dim, rows,
                    fi.remap)
    ptr, ld, _ = matrix_parts(out)
    ctx.add(BagStep(node=n.name, text=print_node(ctx.g, n), group=k,
                    features=[(k, 0, dim, ctx.bags[k].feature, rows)], out=ptr, ldo=ld, writes=writes_of(out)))
    ctx.set(n, out)


@register_lowering(Op.EMBEDDING, TARGET)
def lower_embedding(ctx, n):
    table, ids = n.inputs
    tt = ctx.g.type_of(table)
    if tt.layout or tt.dtype is not DType.F32:
        raise unsupported(n, "nn.Embedding lookups read fp32 tables only")
    iv = ctx.view_of(ids, n)
    out = ctx.out_view(n)
    s = ctx.slot(ctx.const_key(table))
    ctx.add(GatherStep(node=n.name, text=print_node(ctx.g, n), reads=reads_of(iv), writes=writes_of(out),
                       ids=iv, table="W." + s.cname, rows=int(tt.shape[0]), dim=int(tt.shape[1]), out=out,
                       name=ctx.user_name(ids)))
    ctx.set(n, out)
