"""Rule for EMBEDDING_BAG_GROUP / EMBEDDING_BAG: ``embedding_bag_group_kernel``, one launch per row format.

Features whose tables share a row format (and index/offset dtypes) go into one
launch: a small int64 metadata array (one row per feature, columns
``kernels.META_*``) and a per-call pointer table (ids, offsets, per-sample
weights, id count). Each feature gets an error slot the kernel's bounds check
fills. Tables must be parameters (views into weights.bin).
"""
from __future__ import annotations

from xrec.ir import Op, feature_inputs
from xrec.ir import formats
from xrec.ir.rules import embedding_row_dim
from xrec.lowering import LoweringError, register_lowering

from ..context import ERR, WEIGHTS, LowerContext
from ..program import CONST, PTRTABLE, Arg, Buffer, ErrorSlot, Launch, Variant, View
from ..tiles import cdiv_grid, embedding_tiles, np2

# element type the kernel reads a table of each row format as (bf16 rows as their int16 bit patterns)
WEIGHT_DTYPES = {"fp32": "f32", "fp16": "f16", "int8": "u8", "int4": "u8", "int2": "u8", "bf16": "i16"}
# (dtype, layout) of a table -> (KIND constexpr = the format's code, dtype the kernel reads the weights as)
ROW_FORMATS = {(f.dtype, f.layout): (f.code, WEIGHT_DTYPES[f.name]) for f in formats.FORMATS}
META_COLS = 10
_ELEM_BYTES = {"f32": 4, "f16": 2, "i16": 2, "u8": 1}


def row_format_note(code: int) -> str:
    """How a launch's note names a row format: ``f32`` / ``bf16`` for float rows, ``int8 row-wise`` for quantized."""
    f = formats.by_code(code)
    return f"{f.name} row-wise" if f.quantized else f.dtype.value


@register_lowering([Op.EMBEDDING_BAG_GROUP, Op.EMBEDDING_BAG], "triton")
def lower_bags(ctx: LowerContext, n):
    g = ctx.g
    feats = []
    for fi in feature_inputs(n):
        f = fi.feature
        table = g.node(fi.table)
        rows = f.num_rows if f.num_rows >= 0 else int(table.type.shape[0])
        if fi.remap is not None:
            rows = int(g.type_of(fi.remap).shape[0])
        feats.append(dict(feature=f.feature, mode=f.mode, padding_idx=f.padding_idx, table=fi.table,
                          jagged=fi.jagged, psw=fi.psw, remap=fi.remap, num_rows=rows,
                          dim=f.dim if n.op is Op.EMBEDDING_BAG_GROUP else embedding_row_dim(n, table.type)))
    out = ctx.loc(n.name)
    if not out.is_rows():
        raise LoweringError("its output must be a row-major 2-D buffer", target="triton", node=n)
    col = 0
    groups: dict[tuple, list] = {}
    for f in feats:
        tnode = g.node(f["table"])
        if tnode.op is not Op.PARAM or (f["remap"] and g.node(f["remap"]).op is not Op.PARAM):
            raise LoweringError(f"the table of feature {f['feature']!r} is computed (%{tnode.name}); the triton "
                                "target needs tables that are parameters", target="triton", node=n)
        tt = tnode.type
        fmt = ROW_FORMATS.get((tt.dtype, tt.layout))
        if fmt is None:
            known = ", ".join(f"{d.value}{'#' + lay if lay else ''}" for d, lay in ROW_FORMATS)
            raise LoweringError(f"feature {f['feature']!r} has a table of type {tt}; the triton target reads "
                                f"tables of type {known}", target="triton", node=n)
        f["kind"], f["wdtype"] = fmt
        f["row_stride"] = int(tt.shape[1])
        f["col"] = col
        col += f["dim"]
        idx, off, last = ctx.jag[f["jagged"]]
        f["idx"], f["off"], f["last"] = idx, off, last
        key = (f["kind"], idx.dtype, off.dtype, last)
        groups.setdefault(key, []).append(f)
    B = out.shape[0]
    for k, ((kind, idt, odt, last), fs) in enumerate(groups.items()):
        meta, rows = [], []
        for f in fs:
            slot = len(ctx.errors)
            tv = ctx.views[f["table"]]
            pad = -1 if f["padding_idx"] is None else int(f["padding_idx"]) % f["num_rows"]
            remap = int(ctx.views[f["remap"]].offset) if f["remap"] else -1
            meta.append([int(tv.offset), f["num_rows"], f["dim"], int(f["col"]), formats.POOL_CODES[f["mode"]], pad,
                         f["row_stride"], slot, remap, 0])
            psw = ctx.views[f["psw"]] if f["psw"] is not None else None
            rows.append([f["idx"], f["off"], psw, f["idx"].shape[0]])
            ctx.errors.append(ErrorSlot(slot, f["feature"], f["idx"], f["num_rows"]))
        mname = f"meta_{n.name}_{k}"
        ctx.buffers[mname] = Buffer(mname, CONST, "i64", (len(fs), META_COLS), data=[v for r in meta for v in r])
        pname = f"ptrs_{n.name}_{k}"
        ctx.buffers[pname] = Buffer(pname, PTRTABLE, "i64", (len(fs), 4), rows=rows)
        bd = np2(max(f["dim"] for f in fs))
        L, bb, warps = embedding_tiles(kind, bd)
        wdt = fs[0]["wdtype"]
        cx = dict(KIND=kind, IDX_64=idt == "i64", OFF_64=odt == "i64", INCLUDE_LAST=bool(last),
                  HAS_PSW=any(f["psw"] is not None for f in fs),
                  HAS_PAD=any(f["padding_idx"] is not None for f in fs),
                  HAS_MEAN=any(f["mode"] == "mean" for f in fs), HAS_MAX=any(f["mode"] == "max" for f in fs),
                  HAS_REMAP=any(f["remap"] is not None for f in fs),
                  CHECK=bool(ctx.option("bounds_check", True)), BLOCK_B=bb, L=L, BLOCK_D=bd)
        wsize = ctx.blob_bytes // _ELEM_BYTES[wdt]
        ibb = max(1, min(64, 65536 // (32 * bd)))
        interp = [Variant(None, ((len(fs), 1), cdiv_grid(B, ibb), (1, 1)), {**cx, "BLOCK_B": ibb, "L": 32})]
        ctx.steps.append(Launch(
            kernel="embedding_bag_group_kernel",
            args=[Arg("ptr", View(WEIGHTS, wdt, (wsize,), (1,)), name="WEIGHTS"),
                  Arg("ptr", View(WEIGHTS, "i32", (ctx.blob_bytes // 4,), (1,)), name="REMAP"),
                  Arg("ptr", View(mname, "i64", (len(fs), META_COLS), (META_COLS, 1)), name="META"),
                  Arg("ptr", View(pname, "i64", (len(fs), 4), (4, 1)), name="PTRS"),
                  Arg("ptr", out, name="OUT"), Arg("ptr", View(ERR, "i32", (1,), (1,)), name="ERR"),
                  Arg("i32", expr=B, name="B"), Arg("i32", expr=out.strides[0], name="stride_out")],
            variants=[Variant(None, ((len(fs), 1), cdiv_grid(B, bb), (1, 1)), cx, num_warps=warps, num_stages=1)],
            batch=B, interp=interp,
            note=f"%{n.name}: {len(fs)} embedding bag(s) "
                 f"[{', '.join(str(f['feature']) + ':' + f['mode'] for f in fs[:4])}"
                 f"{', ...' if len(fs) > 4 else ''}], row format {row_format_note(kind)}"))
