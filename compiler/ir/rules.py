"""Per-op typing rules: the single table the verifier (and builders) use.

Each rule takes the node and its input types and returns the node's type,
or raises ``TypeRuleError`` saying what is wrong.
"""
from __future__ import annotations

from typing import Callable, Sequence

import sympy

from .graph import GroupFeature, Node
from .ops import ACTIVATIONS, BINARY, COMPARE, LOGICAL, Op, UNARY
from .types import DType, JaggedType, TensorType, Type, canon_dim, dims_equal, numel


class TypeRuleError(Exception):
    pass


def _fail(node: Node, msg: str):
    raise TypeRuleError(f"%{node.name} = {node.op.value}(...): {msg}")


def _tensor(node: Node, t: Type, what: str) -> TensorType:
    if not isinstance(t, TensorType):
        _fail(node, f"{what} must be a tensor, got {t}")
    return t


def _arity(node: Node, ts: Sequence[Type], lo: int, hi: int | None = None):
    hi = lo if hi is None else hi
    if not lo <= len(ts) <= hi:
        want = str(lo) if lo == hi else f"{lo}..{hi}"
        _fail(node, f"takes {want} inputs, got {len(ts)}")


def _norm_dim(node: Node, d: int, rank: int) -> int:
    if not -rank <= d < max(rank, 1):
        _fail(node, f"dim {d} out of range for rank {rank}")
    return d % rank if rank else 0


def broadcast_shapes(node: Node, a: tuple, b: tuple) -> tuple:
    out = []
    for i in range(max(len(a), len(b))):
        da = a[len(a) - 1 - i] if i < len(a) else 1
        db = b[len(b) - 1 - i] if i < len(b) else 1
        if isinstance(da, int) and da == 1:
            out.append(db)
        elif isinstance(db, int) and db == 1:
            out.append(da)
        elif dims_equal(da, db):
            out.append(da)
        else:
            _fail(node, f"shapes {a} and {b} do not broadcast")
    return tuple(reversed(out))


def embedding_row_dim(node: Node, table: TensorType) -> int:
    """Logical row length of a table, also for packed/quantized layouts (attr ``dim``)."""
    if table.rank != 2:
        _fail(node, f"table must be 2-D, got {table}")
    if table.layout:
        d = node.attr("dim", None)
        if d is None:
            _fail(node, f"table with layout {table.layout!r} needs a 'dim' attribute")
        return int(d)
    return int(table.shape[1])


def _out_float(table: TensorType, node: Node | None = None) -> DType:
    """Pooled rows come out in the table's float type, or f32 for quantized/bf16 tables;
    compression passes pin ``out_dtype`` so a model keeps its f32 activations."""
    if node is not None and node.attr("out_dtype", None) is not None:
        return node.attr("out_dtype")
    if table.dtype in (DType.F32, DType.F16, DType.F64) and not table.layout:
        return table.dtype
    return DType.F32


# ---------------------------------------------------------------- rules
def r_source(node, ts):
    _arity(node, ts, 0)
    return node.type


def r_jagged(node, ts):
    _arity(node, ts, 2)
    idx = _tensor(node, ts[0], "indices")
    off = _tensor(node, ts[1], "offsets")
    for t, what in ((idx, "indices"), (off, "offsets")):
        if t.rank != 1 or t.dtype not in (DType.I32, DType.I64):
            _fail(node, f"{what} must be a 1-D int32/int64 tensor, got {t}")
    last = node.attr("include_last_offset", True)
    batch = off.shape[0] - 1 if last else off.shape[0]
    return JaggedType(batch, idx.shape[0], idx.dtype, off.dtype, last)


def r_embedding(node, ts):
    _arity(node, ts, 2)
    table = _tensor(node, ts[0], "table")
    ids = _tensor(node, ts[1], "ids")
    if ids.dtype not in (DType.I32, DType.I64):
        _fail(node, f"ids must be int32/int64, got {ids.dtype.value}")
    return TensorType(ids.shape + (embedding_row_dim(node, table),), _out_float(table, node))


def _check_bag(node, table: TensorType, jag: Type, psw: Type | None, mode: str, dim: int):
    if not isinstance(jag, JaggedType):
        _fail(node, f"expects a jagged feature, got {jag}")
    if mode not in ("sum", "mean", "max"):
        _fail(node, f"mode must be sum, mean or max, got {mode!r}")
    if psw is not None:
        p = _tensor(node, psw, "per_sample_weights")
        if p.rank != 1 or not dims_equal(p.shape[0], jag.nnz):
            _fail(node, f"per_sample_weights must be [{jag.nnz}], got {p}")
        if mode != "sum":
            _fail(node, "per_sample_weights need mode='sum' (as in PyTorch)")
    return jag.batch


def _check_remap(node, remap: Type | None, feature: str) -> int | None:
    """A pruned table's remap: int32 [logical rows]; returns the logical row count."""
    if remap is None:
        return None
    r = _tensor(node, remap, f"remap of {feature}")
    if r.rank != 1 or r.dtype is not DType.I32 or not isinstance(r.shape[0], int):
        _fail(node, f"feature {feature}: remap must be a static int32 [rows] tensor, got {r}")
    return int(r.shape[0])


def r_embedding_bag(node, ts):
    has_psw, has_remap = node.attr("has_psw", False), node.attr("has_remap", False)
    _arity(node, ts, 2 + has_psw + has_remap)
    table = _tensor(node, ts[0], "table")
    dim = embedding_row_dim(node, table)
    _check_remap(node, ts[-1] if has_remap else None, node.attr("feature", node.name))
    b = _check_bag(node, table, ts[1], ts[2] if has_psw else None, node.attr("mode"), dim)
    return TensorType((b, dim), _out_float(table, node))


def r_embedding_bag_group(node, ts):
    feats: tuple[GroupFeature, ...] = node.attr("features")
    _arity(node, ts, sum(f.num_inputs for f in feats))
    pos, batch, total = 0, None, 0
    for f in feats:
        fts = ts[pos:pos + f.num_inputs]
        table = _tensor(node, fts[0], f"table of {f.feature}")
        rows = _check_remap(node, fts[-1] if f.has_remap else None, f.feature)
        if rows is not None and rows != f.num_rows:
            _fail(node, f"feature {f.feature}: remap has {rows} entries for a table of {f.num_rows} rows")
        stored_rows = table.shape[0] if f.has_remap else f.num_rows
        if table.rank != 2 or (not table.layout and (table.shape[0] != stored_rows or table.shape[1] != f.dim)):
            _fail(node, f"feature {f.feature}: table {table} does not match rows={stored_rows} dim={f.dim}")
        b = _check_bag(node, table, fts[1], fts[2] if f.has_psw else None, f.mode, f.dim)
        if batch is None:
            batch = b
        elif not dims_equal(batch, b):
            _fail(node, f"feature {f.feature} has batch {b}, others {batch}")
        total += f.dim
        pos += f.num_inputs
    return TensorType((batch, total), DType.F32)


def r_linear(node, ts):
    _arity(node, ts, 2, 3)
    x = _tensor(node, ts[0], "x")
    w = _tensor(node, ts[1], "weight")
    if w.rank != 2 or x.rank < 1 or not dims_equal(x.shape[-1], w.shape[1]):
        _fail(node, f"x {x} and weight {w} do not match (weight must be [N, K])")
    if len(ts) == 3:
        b = _tensor(node, ts[2], "bias")
        if b.rank != 1 or not dims_equal(b.shape[0], w.shape[0]):
            _fail(node, f"bias {b} must be [{w.shape[0]}]")
    return TensorType(x.shape[:-1] + (w.shape[0],), x.dtype)


def r_matmul(node, ts):
    _arity(node, ts, 2)
    a = _tensor(node, ts[0], "a")
    b = _tensor(node, ts[1], "b")
    if a.rank < 1 or b.rank < 1:
        _fail(node, "matmul operands must be at least 1-D")
    if a.dtype != b.dtype:
        _fail(node, f"dtype mismatch {a.dtype.value} vs {b.dtype.value}")
    sa, sb = a.shape, b.shape
    va = sa if a.rank > 1 else (1,) + sa
    vb = sb if b.rank > 1 else sb + (1,)
    if not dims_equal(va[-1], vb[-2]):
        _fail(node, f"inner dims differ: {a} @ {b}")
    batch = broadcast_shapes(node, va[:-2], vb[:-2])
    out = batch + ((va[-2],) if a.rank > 1 else ()) + ((vb[-1],) if b.rank > 1 else ())
    return TensorType(out, a.dtype)


def r_mlp(node, ts):
    acts = node.attr("acts")
    has_bias = node.attr("has_bias")
    if len(acts) != len(has_bias) or not acts:
        _fail(node, "attrs acts and has_bias must have one entry per layer")
    for a in acts:
        if a not in ACTIVATIONS:
            _fail(node, f"unknown activation {a!r}; known: {', '.join(ACTIVATIONS)}")
    _arity(node, ts, 1 + len(acts) + sum(has_bias))
    x = _tensor(node, ts[0], "x")
    pos, shape = 1, x.shape
    for layer, hb in enumerate(has_bias):
        w = _tensor(node, ts[pos], f"layer {layer} weight")
        if w.rank != 2 or not dims_equal(shape[-1], w.shape[1]):
            _fail(node, f"layer {layer}: input {shape} does not match weight {w}")
        if hb:
            b = _tensor(node, ts[pos + 1], f"layer {layer} bias")
            if b.shape != (w.shape[0],):
                _fail(node, f"layer {layer}: bias {b} must be [{w.shape[0]}]")
        shape = shape[:-1] + (w.shape[0],)
        pos += 2 if hb else 1
    return TensorType(shape, x.dtype)


def r_dot_interaction(node, ts):
    _arity(node, ts, 1)
    t = _tensor(node, ts[0], "T")
    if t.rank != 3 or not isinstance(t.shape[1], int):
        _fail(node, f"input must be [B, F, D] with static F, got {t}")
    pairs = node.attr("pairs")
    f = t.shape[1]
    for i, j in pairs:
        if not (0 <= i < f and 0 <= j < f):
            _fail(node, f"pair ({i},{j}) out of range for F={f}")
    return TensorType((t.shape[0], len(pairs)), t.dtype)


def r_cross_layer(node, ts):
    low_rank = node.attr("low_rank")
    _arity(node, ts, 5 if low_rank else 4)
    x0 = _tensor(node, ts[0], "x0")
    xl = _tensor(node, ts[1], "xl")
    if x0.rank != 2 or not x0.same_as(xl):
        _fail(node, f"x0 {x0} and xl {xl} must be the same [B, K]")
    k = x0.shape[1]
    if low_rank:
        v, w, b = ts[2], ts[3], ts[4]
        if v.rank != 2 or not dims_equal(v.shape[1], k) or w.rank != 2 or w.shape != (k, v.shape[0]):
            _fail(node, f"low-rank weights V {v} and W {w} do not fit K={k}")
    else:
        w, b = ts[2], ts[3]
        if w.shape != (k, k):
            _fail(node, f"weight {w} must be [{k},{k}]")
    if b.shape != (k,):
        _fail(node, f"bias {b} must be [{k}]")
    return x0


def r_fm(node, ts):
    _arity(node, ts, 1)
    v = _tensor(node, ts[0], "v")
    if v.rank != 3:
        _fail(node, f"input must be [B, F, K], got {v}")
    return TensorType((v.shape[0], 1) if node.attr("keepdim", True) else (v.shape[0],), v.dtype)


def r_unary(node, ts):
    _arity(node, ts, 1)
    x = _tensor(node, ts[0], "x")
    if node.op is Op.CAST:
        return TensorType(x.shape, node.attr("dtype"))
    if node.op is Op.GELU and node.attr("approximate", "none") not in ("none", "tanh"):
        _fail(node, "approximate must be 'none' or 'tanh'")
    return TensorType(x.shape, x.dtype)


def _same_dtype_operands(node, ts, hint: str = "") -> tuple[TensorType, tuple]:
    """Two tensors of one dtype: (lhs type, their broadcast shape)."""
    _arity(node, ts, 2)
    a = _tensor(node, ts[0], "lhs")
    b = _tensor(node, ts[1], "rhs")
    if a.dtype != b.dtype:
        _fail(node, f"dtype mismatch {a.dtype.value} vs {b.dtype.value}{hint}")
    return a, broadcast_shapes(node, a.shape, b.shape)


def r_binary(node, ts):
    a, shape = _same_dtype_operands(node, ts)
    return TensorType(shape, a.dtype)


def r_compare(node, ts):
    _, shape = _same_dtype_operands(node, ts, " (the frontend promotes operands first)")
    return TensorType(shape, DType.BOOL)


def r_logical(node, ts):
    _arity(node, ts, 1 if node.op is Op.LOGICAL_NOT else 2)
    xs = [_tensor(node, t, f"operand {i}") for i, t in enumerate(ts)]
    for x in xs:
        if x.dtype is not DType.BOOL:
            _fail(node, f"operands must be bool, got {x} (cast to bool first: nonzero is true)")
    shape = xs[0].shape if len(xs) == 1 else broadcast_shapes(node, xs[0].shape, xs[1].shape)
    return TensorType(shape, DType.BOOL)


def r_where(node, ts):
    _arity(node, ts, 3)
    c = _tensor(node, ts[0], "condition")
    a = _tensor(node, ts[1], "a")
    b = _tensor(node, ts[2], "b")
    if c.dtype is not DType.BOOL:
        _fail(node, f"condition must be bool, got {c}")
    if a.dtype != b.dtype:
        _fail(node, f"dtype mismatch {a.dtype.value} vs {b.dtype.value}")
    shape = broadcast_shapes(node, broadcast_shapes(node, c.shape, a.shape), b.shape)
    return TensorType(shape, a.dtype)


def r_softmax(node, ts):
    _arity(node, ts, 1)
    x = _tensor(node, ts[0], "x")
    if not x.dtype.is_float:
        _fail(node, f"input must be floating point, got {x}")
    if x.rank == 0:
        _fail(node, "input must have at least one dim")
    _norm_dim(node, node.attr("dim"), x.rank)
    return x


def r_reduce(node, ts):
    _arity(node, ts, 1)
    x = _tensor(node, ts[0], "x")
    dims = sorted({_norm_dim(node, d, x.rank) for d in node.attr("dims")})
    keep = node.attr("keepdim", False)
    shape = tuple((1 if i in dims else d) for i, d in enumerate(x.shape) if keep or i not in dims)
    return TensorType(shape, x.dtype)


def r_layer_norm(node, ts):
    hw, hb = node.attr("has_weight"), node.attr("has_bias")
    _arity(node, ts, 1 + hw + hb)
    x = _tensor(node, ts[0], "x")
    k = node.attr("normalized_ndim")
    for t in ts[1:]:
        if not (t.rank == k and all(dims_equal(a, b) for a, b in zip(t.shape, x.shape[-k:]))):
            _fail(node, f"affine parameter {t} must match normalized shape {x.shape[-k:]}")
    return x


def r_reshape(node, ts):
    _arity(node, ts, 1)
    x = _tensor(node, ts[0], "x")
    shape = node.attr("shape")
    if not dims_equal(numel(shape), numel(x.shape)):
        _fail(node, f"cannot reshape {x} to {tuple(str(d) for d in shape)}")
    return TensorType(shape, x.dtype)


def r_permute(node, ts):
    _arity(node, ts, 1)
    x = _tensor(node, ts[0], "x")
    perm = node.attr("perm")
    if sorted(perm) != list(range(x.rank)):
        _fail(node, f"perm {perm} is not a permutation of rank {x.rank}")
    return TensorType(tuple(x.shape[p] for p in perm), x.dtype)


def r_expand(node, ts):
    _arity(node, ts, 1)
    x = _tensor(node, ts[0], "x")
    shape = node.attr("shape")
    if len(shape) < x.rank:
        _fail(node, f"cannot expand {x} to fewer dims {shape}")
    pad = (1,) * (len(shape) - x.rank) + x.shape
    out = []
    for s, d in zip(shape, pad):
        if isinstance(d, int) and d == 1:
            out.append(s)
        elif dims_equal(s, d):
            out.append(d)
        else:
            _fail(node, f"cannot expand dim {d} to {s}")
    return TensorType(tuple(out), x.dtype)


def r_cat(node, ts):
    if not ts:
        _fail(node, "needs at least one input")
    xs = [_tensor(node, t, f"input {i}") for i, t in enumerate(ts)]
    d = _norm_dim(node, node.attr("dim"), xs[0].rank)
    total = 0
    for x in xs:
        if x.rank != xs[0].rank or x.dtype != xs[0].dtype:
            _fail(node, f"inputs differ in rank/dtype: {x} vs {xs[0]}")
        for i, (a, b) in enumerate(zip(x.shape, xs[0].shape)):
            if i != d and not dims_equal(a, b):
                _fail(node, f"inputs differ outside dim {d}: {x} vs {xs[0]}")
        total = total + x.shape[d]
    shape = list(xs[0].shape)
    shape[d] = total
    return TensorType(tuple(shape), xs[0].dtype)


def slice_length(size, start: int, end, step: int):
    """Length of x[start:end:step] along a dim of ``size`` (end None = to the end)."""
    if step <= 0:
        raise ValueError("slice step must be positive")
    if isinstance(size, int):
        return len(range(*slice(start, end, step).indices(size)))
    # symbolic size: allow only non-negative starts and ends counted from the end
    stop = size if end is None else (size + end if end < 0 else end)
    st = size + start if start < 0 else start
    return canon_dim(sympy.ceiling((sympy.sympify(stop) - st) / step))


def r_slice(node, ts):
    _arity(node, ts, 1)
    x = _tensor(node, ts[0], "x")
    d = _norm_dim(node, node.attr("dim"), x.rank)
    n = slice_length(x.shape[d], node.attr("start"), node.attr("end"), node.attr("step", 1))
    shape = list(x.shape)
    shape[d] = n
    return TensorType(tuple(shape), x.dtype)


def r_index(node, ts):
    if len(ts) < 2:
        _fail(node, "needs a tensor and at least one index tensor")
    x = _tensor(node, ts[0], "x")
    d = _norm_dim(node, node.attr("dim"), x.rank)
    idx = [_tensor(node, t, "index") for t in ts[1:]]
    if d + len(idx) > x.rank:
        _fail(node, f"{len(idx)} index tensors from dim {d} exceed rank {x.rank}")
    for t in idx:
        if t.dtype not in (DType.I32, DType.I64) or t.shape != idx[0].shape:
            _fail(node, f"index tensors must be integer and of one shape, got {t}")
    return TensorType(x.shape[:d] + idx[0].shape + x.shape[d + len(idx):], x.dtype)


RULES: dict[Op, Callable[[Node, Sequence[Type]], Type]] = {
    Op.INPUT: r_source, Op.PARAM: r_source, Op.FULL: r_source,
    Op.JAGGED: r_jagged,
    Op.EMBEDDING: r_embedding, Op.EMBEDDING_BAG: r_embedding_bag,
    Op.EMBEDDING_BAG_GROUP: r_embedding_bag_group,
    Op.LINEAR: r_linear, Op.MATMUL: r_matmul, Op.MLP: r_mlp,
    Op.DOT_INTERACTION: r_dot_interaction, Op.CROSS_LAYER: r_cross_layer, Op.FM: r_fm,
    Op.SUM: r_reduce, Op.MEAN: r_reduce, Op.AMAX: r_reduce, Op.NORM: r_reduce,
    Op.LAYER_NORM: r_layer_norm, Op.SOFTMAX: r_softmax, Op.WHERE: r_where,
    Op.RESHAPE: r_reshape, Op.PERMUTE: r_permute, Op.EXPAND: r_expand, Op.CAT: r_cat,
    Op.SLICE: r_slice, Op.INDEX: r_index,
}
RULES.update({op: r_unary for op in UNARY})
RULES.update({op: r_binary for op in BINARY})
RULES.update({op: r_compare for op in COMPARE})
RULES.update({op: r_logical for op in LOGICAL})

missing = set(Op) - set(RULES)
assert not missing, f"ops without a typing rule: {missing}"


def infer_type(node: Node, in_types: Sequence[Type]) -> Type:
    return RULES[node.op](node, in_types)
