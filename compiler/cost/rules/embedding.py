"""Embedding lookups: rows read x row bytes (split into cache hits and main-memory misses), pooling FLOPs.

Per feature of a bag op, with ``n`` ids over ``B`` bags of a ``rows x dim`` table whose rows take
``rb`` bytes (its row format's, xrec.ir.formats):

- gathered rows: ``n x rb`` bytes, ``main_rows(...) x rb`` of them from main memory (see cache.py),
  the rest from cache; they are ``gather_bytes`` (scattered reads);
- ids and offsets read once (``n`` ids + ``B+1`` offsets at their index dtypes), per-sample weights
  ``n x 4``, a pruned table's remap ``n x 4`` (scattered);
- the pooled output ``B x dim x 4`` written;
- FLOPs (f32): ``n x dim`` adds, ``2 x n x dim`` more to decode a quantized row (``q*scale + bias``),
  ``n x dim`` for per-sample weights, ``B x dim`` divides for mean pooling;
- one call for the whole op (a table-batched group is one kernel).
"""
from __future__ import annotations

from xrec.ir.formats import of_type
from xrec.ir.graph import feature_inputs
from xrec.ir.ops import Op

from ..cache import main_rows
from ..work import CACHE, MAIN, Work
from . import register_cost


def _rows_read(ctx, node: str, feature: str, rows: int, rb: int, ids: int) -> tuple[dict, dict]:
    miss = main_rows(rows, ctx.cached_rows(node, feature), ids, ctx.ids)
    by_tier = {MAIN: miss * rb, CACHE: (ids - miss) * rb}
    return by_tier, dict(by_tier)


def _quantized(table_type) -> bool:
    try:
        return of_type(table_type).quantized
    except ValueError:
        return False


def bag_feature_work(ctx, node, fi) -> Work:
    """The work of one feature (``fi``: xrec.ir.graph.FeatureInputs) of a bag op ``node``."""
    from ..context import row_bytes
    g = ctx.graph
    f = fi.feature
    ttype = g.type_of(fi.table)
    jag = g.type_of(fi.jagged)
    rows, dim = ctx.dim(ttype.shape[0]), f.dim
    rb = row_bytes(ttype, dim)
    n, bags = ctx.dim(jag.nnz), ctx.dim(jag.batch)
    byts, gath = _rows_read(ctx, node.name, f.feature, rows, rb, n)
    idx = ctx.nbytes(fi.jagged)
    byts[ctx.tier_for(idx)] = byts.get(ctx.tier_for(idx), 0.0) + idx
    if fi.psw is not None:
        byts[ctx.tier_for(4 * n)] = byts.get(ctx.tier_for(4 * n), 0.0) + 4.0 * n
    if fi.remap is not None:
        t = ctx.tier_for(ctx.nbytes(fi.remap))
        byts[t] = byts.get(t, 0.0) + 4.0 * n
        gath[t] = gath.get(t, 0.0) + 4.0 * n
    out = bags * dim * 4
    byts[ctx.tier_for(out)] = byts.get(ctx.tier_for(out), 0.0) + out
    flops = n * dim * (1 + 2 * _quantized(ttype) + (fi.psw is not None)) + (bags * dim if f.mode == "mean" else 0)
    return Work({"f32": float(flops)}, byts, gath)


@register_cost((Op.EMBEDDING_BAG, Op.EMBEDDING_BAG_GROUP), stage="embedding")
def bag(node, ctx) -> Work:
    return sum((bag_feature_work(ctx, node, fi) for fi in feature_inputs(node)), Work()) + Work(calls=1)


@register_cost(Op.EMBEDDING, stage="embedding")
def embedding(node, ctx) -> Work:
    """(table, ids) -> rows: each id reads one row (decoded for quantized tables) and writes it."""
    from ..context import row_bytes
    ttype = ctx.graph.type_of(node.inputs[0])
    dim = ctx.shape(node.name)[-1]
    rb = row_bytes(ttype, dim)
    n = ctx.numel(node.inputs[1])
    byts, gath = _rows_read(ctx, node.name, node.name, ctx.dim(ttype.shape[0]), rb, n)
    for nb in (ctx.nbytes(node.inputs[1]), ctx.nbytes(node.name)):
        byts[ctx.tier_for(nb)] = byts.get(ctx.tier_for(nb), 0.0) + nb
    flops = 2.0 * n * dim if _quantized(ttype) else 0.0
    return Work({"f32": flops}, byts, gath, calls=1)


@register_cost(Op.JAGGED, stage="embedding")
def jagged(node, ctx) -> Work:
    """Pairs indices with offsets: no work (the bag op reading it counts the reads)."""
    return Work()
