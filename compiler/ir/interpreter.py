"""A small numpy reference interpreter for the IR.

Every pass is checked by running this before and after it; targets are
checked against it and against PyTorch eager. It favours clarity over speed.

Its rules are the ``"reference"`` target's lowering rules in the registry
(xrec.lowering): a new op registers its meaning here first.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np

from ..lowering import TargetLowering, register_lowering, rules_of
from .bind import Binder
from .graph import Graph, Node, feature_inputs, mlp_layers
from .ops import Op
from . import formats
from .quant import decode_rows
from .types import DType, JaggedType, TensorType, eval_dim


class Jagged:
    """A sparse feature's value at run time: int64 indices and full offsets (B+1)."""

    def __init__(self, indices: np.ndarray, offsets: np.ndarray, include_last_offset: bool):
        self.indices = np.asarray(indices).astype(np.int64, copy=False)
        off = np.asarray(offsets).astype(np.int64, copy=False)
        if not include_last_offset:
            off = np.concatenate([off, [len(self.indices)]])
        self.offsets = off

    @property
    def batch(self) -> int:
        return len(self.offsets) - 1


def gather_rows(table: np.ndarray, ttype: TensorType, dim: int, idx: np.ndarray) -> np.ndarray:
    """float32 rows ``idx`` of a table in any of the IR's row formats (see formats.py)."""
    if not ttype.layout and ttype.dtype not in (DType.F16, DType.BF16):
        return table[idx].astype(np.float32)       # f32 (and f64 tables of a user's f64 model)
    return decode_rows(formats.of_type(ttype), table[idx], dim)


def _bag(table: np.ndarray, jag: Jagged, mode: str, padding_idx, psw, feature: str = "",
         ttype: TensorType | None = None, dim: int | None = None, remap: np.ndarray | None = None) -> np.ndarray:
    """PyTorch's embedding_bag; with a ``remap`` (pruned table), ids remapped to -1 read a zero row."""
    idx, off = jag.indices, jag.offsets
    rows = table.shape[0] if remap is None else len(remap)
    ttype = ttype or TensorType(table.shape, DType.from_numpy(table.dtype))
    dim = table.shape[1] if dim is None else dim
    if len(idx) and (idx.min() < 0 or idx.max() >= rows):
        bad = int(np.nonzero((idx < 0) | (idx >= rows))[0][0])
        raise IndexError(f"feature {feature!r}: index {int(idx[bad])} at position {bad} "
                         f"is out of range for a table of {rows} rows")
    B, D = jag.batch, dim
    lengths = np.diff(off)
    seg = np.repeat(np.arange(B), lengths)
    keep = np.ones(len(idx), bool) if padding_idx is None else idx != (padding_idx % rows)
    if remap is None:
        vals = gather_rows(table, ttype, dim, idx)
    else:
        phys = remap[idx].astype(np.int64)
        if table.shape[0] == 0:        # every row pruned: nothing to gather
            vals = np.zeros((len(idx), D), np.float32)
        else:
            vals = gather_rows(table, ttype, dim, np.maximum(phys, 0))
            vals[phys < 0] = 0.0
    if psw is not None:
        vals = vals * psw.astype(np.float32)[:, None]
    vals, seg_k = vals[keep], seg[keep]
    if mode == "max":
        out = np.full((B, D), -np.inf, np.float32)
        np.maximum.at(out, seg_k, vals)
        out[np.isneginf(out).all(axis=1)] = 0.0
        return out
    out = np.zeros((B, D), np.float32)
    np.add.at(out, seg_k, vals)
    if mode == "mean":
        cnt = np.bincount(seg_k, minlength=B).astype(np.float32)
        out = out / np.maximum(cnt, 1)[:, None]
    return out


def _gelu(x, approximate):
    if approximate == "tanh":
        return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
    from math import erf
    return (0.5 * x * (1 + np.vectorize(erf, otypes=[np.float64])(x / math.sqrt(2)))).astype(x.dtype)


def _sigmoid(x):
    return (1 / (1 + np.exp(-x.astype(np.float64)))).astype(x.dtype)


def _act(name: str, x):
    return {"none": lambda v: v, "relu": lambda v: np.maximum(v, 0), "sigmoid": _sigmoid,
            "tanh": np.tanh, "gelu": lambda v: _gelu(v, "none"),
            "gelu_tanh": lambda v: _gelu(v, "tanh"), "silu": lambda v: v * _sigmoid(v)}[name](x)


def _linear(x, w, b=None):
    y = x @ w.T
    return y + b if b is not None else y


def _np_dtype(t) -> np.dtype:
    return t.dtype.to_numpy()


TARGET = "reference"


class Interpreter:
    def __init__(self, g: Graph):
        self.g = g
        ins = g.input_nodes
        self.binder = Binder([n.type for n in ins], [n.attr("name") for n in ins])
        low = TargetLowering(TARGET)
        self.rules = {n.name: low.rule(n) for n in g.nodes if n.op is not Op.INPUT}

    def run(self, flat_inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        g = self.g
        ins = g.input_nodes
        if len(flat_inputs) != len(ins):
            raise ValueError(f"{g.name}: expected {len(ins)} inputs, got {len(flat_inputs)}")
        arrays = [np.asarray(a) for a in flat_inputs]
        binds = self.binder.bind([a.shape for a in arrays])
        env: dict[str, object] = {n.name: a for n, a in zip(ins, arrays)}
        for n in g.nodes:
            if n.op is Op.INPUT:
                continue
            args = [env[i] for i in n.inputs]
            env[n.name] = self.rules[n.name](self, n, args, binds)
        return [env[o] for o in g.outputs]


def _shape(attr_shape, binds):
    return tuple(eval_dim(d, binds) for d in attr_shape)


def i_param(it, n, args, b):
    return it.g.params[n.attr("name")]


def i_full(it, n, args, b):
    return np.full(_shape(n.type.shape, b), n.attr("value"), dtype=_np_dtype(n.type))


def i_jagged(it, n, args, b):
    return Jagged(args[0], args[1], n.attr("include_last_offset", True))


def i_embedding(it, n, args, b):
    table, ids = args
    ids = ids.astype(np.int64)
    if ids.size and (ids.min() < 0 or ids.max() >= table.shape[0]):
        raise IndexError(f"%{n.name}: index out of range for a table of {table.shape[0]} rows")
    ttype = it.g.type_of(n.inputs[0])
    dim = n.type.shape[-1]
    rows = gather_rows(table, ttype, dim, ids.reshape(-1))
    return rows.reshape(ids.shape + (dim,)).astype(_np_dtype(n.type))


def i_embedding_bag(it, n, args, b):
    return i_group(it, n, args, b)


def i_group(it, n, args, b):
    env = dict(zip(n.inputs, args))
    outs = []
    for fi in feature_inputs(n):
        f = fi.feature
        outs.append(_bag(env[fi.table], env[fi.jagged], f.mode, f.padding_idx,
                         env[fi.psw] if fi.psw else None, f.feature, it.g.type_of(fi.table), f.dim,
                         env[fi.remap] if fi.remap else None))
    return np.concatenate(outs, axis=1)


def i_linear(it, n, args, b):
    return _linear(*args).astype(args[0].dtype)


def i_mlp(it, n, args, b):
    x = args[0]
    for w, bias, act in mlp_layers(n, args):
        x = _act(act, _linear(x, w, bias)).astype(args[0].dtype)
    return x


def i_dot(it, n, args, b):
    t = args[0]
    pairs = n.attr("pairs")
    li = np.array([p[0] for p in pairs], np.int64)
    lj = np.array([p[1] for p in pairs], np.int64)
    z = t @ np.swapaxes(t, 1, 2)
    return z[:, li, lj]


def i_cross(it, n, args, b):
    if n.attr("low_rank"):
        x0, xl, v, w, bias = args
        y = (xl @ v.T) @ w.T + bias
    else:
        x0, xl, w, bias = args
        y = xl @ w.T + bias
    return x0 * y + xl


def i_fm(it, n, args, b):
    v = args[0]
    s = v.sum(axis=1)
    out = 0.5 * (s * s - (v * v).sum(axis=1)).sum(axis=1, keepdims=n.attr("keepdim", True))
    return out.astype(v.dtype)


def _unary(fn: Callable):
    return lambda it, n, args, b: np.asarray(fn(args[0])).astype(args[0].dtype)


def i_gelu(it, n, args, b):
    return _gelu(args[0], n.attr("approximate", "none"))


def i_clamp(it, n, args, b):
    lo, hi = n.attr("min", None), n.attr("max", None)
    return np.clip(args[0], lo, hi).astype(args[0].dtype)


def i_cast(it, n, args, b):
    return args[0].astype(n.attr("dtype").to_numpy())


def _binary(fn: Callable):
    return lambda it, n, args, b: np.asarray(fn(args[0], args[1])).astype(_np_dtype(n.type))


def _reduce(fn: Callable):
    def impl(it, n, args, b):
        x = args[0]
        dims = tuple(d % x.ndim for d in n.attr("dims"))
        return np.asarray(fn(x, axis=dims, keepdims=n.attr("keepdim", False))).astype(x.dtype)
    return impl


def i_norm(it, n, args, b):
    x = args[0]
    dims = tuple(d % x.ndim for d in n.attr("dims"))
    p = n.attr("p", 2.0)
    out = (np.abs(x.astype(np.float64)) ** p).sum(axis=dims, keepdims=n.attr("keepdim", False)) ** (1 / p)
    return out.astype(x.dtype)


def i_layer_norm(it, n, args, b):
    x = args[0]
    k = n.attr("normalized_ndim")
    axes = tuple(range(x.ndim - k, x.ndim))
    mu = x.mean(axis=axes, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=axes, keepdims=True)
    y = (x - mu) / np.sqrt(var + n.attr("eps"))
    pos = 1
    if n.attr("has_weight"):
        y = y * args[pos]
        pos += 1
    if n.attr("has_bias"):
        y = y + args[pos]
    return y.astype(x.dtype)


def i_where(it, n, args, b):
    return np.where(args[0], args[1], args[2]).astype(_np_dtype(n.type))


def i_softmax(it, n, args, b):
    x = args[0]
    d = n.attr("dim") % x.ndim
    with np.errstate(invalid="ignore", over="ignore"):      # rows of -inf (or with +inf/NaN) give NaN, as in torch
        x64 = x.astype(np.float64)
        e = np.exp(x64 - x64.max(axis=d, keepdims=True))
        return (e / e.sum(axis=d, keepdims=True)).astype(x.dtype)


def i_reshape(it, n, args, b):
    return args[0].reshape(_shape(n.attr("shape"), b))


def i_permute(it, n, args, b):
    return np.transpose(args[0], n.attr("perm"))


def i_expand(it, n, args, b):
    return np.broadcast_to(args[0], _shape(n.type.shape, b))


def i_cat(it, n, args, b):
    return np.concatenate(args, axis=n.attr("dim"))


def i_slice(it, n, args, b):
    x = args[0]
    d = n.attr("dim") % x.ndim
    sl = [slice(None)] * x.ndim
    sl[d] = slice(n.attr("start"), n.attr("end"), n.attr("step", 1))
    return x[tuple(sl)]


def i_index(it, n, args, b):
    x = args[0]
    d = n.attr("dim") % x.ndim
    return x[(slice(None),) * d + tuple(a.astype(np.int64) for a in args[1:])]


_RULES: dict[Op, Callable] = {
    Op.PARAM: i_param, Op.FULL: i_full, Op.JAGGED: i_jagged,
    Op.EMBEDDING: i_embedding, Op.EMBEDDING_BAG: i_embedding_bag, Op.EMBEDDING_BAG_GROUP: i_group,
    Op.LINEAR: i_linear, Op.MATMUL: _binary(np.matmul), Op.MLP: i_mlp,
    Op.DOT_INTERACTION: i_dot, Op.CROSS_LAYER: i_cross, Op.FM: i_fm,
    Op.RELU: _unary(lambda x: np.maximum(x, 0)), Op.SIGMOID: _unary(_sigmoid), Op.TANH: _unary(np.tanh),
    Op.GELU: i_gelu, Op.SILU: _unary(lambda x: x * _sigmoid(x)), Op.NEG: _unary(np.negative),
    Op.EXP: _unary(np.exp), Op.LOG: _unary(np.log), Op.SQRT: _unary(np.sqrt),
    Op.RSQRT: _unary(lambda x: 1 / np.sqrt(x)), Op.ABS: _unary(np.abs), Op.CLAMP: i_clamp,
    Op.CAST: i_cast,
    Op.ADD: _binary(np.add), Op.SUB: _binary(np.subtract), Op.MUL: _binary(np.multiply),
    Op.DIV: _binary(np.divide), Op.POW: _binary(np.power), Op.MAXIMUM: _binary(np.maximum),
    Op.MINIMUM: _binary(np.minimum),
    Op.EQ: _binary(np.equal), Op.NE: _binary(np.not_equal), Op.LT: _binary(np.less),
    Op.LE: _binary(np.less_equal), Op.GT: _binary(np.greater), Op.GE: _binary(np.greater_equal),
    Op.LOGICAL_AND: _binary(np.logical_and), Op.LOGICAL_OR: _binary(np.logical_or),
    Op.LOGICAL_NOT: _unary(np.logical_not), Op.WHERE: i_where, Op.SOFTMAX: i_softmax,
    Op.SUM: _reduce(np.sum), Op.MEAN: _reduce(np.mean), Op.AMAX: _reduce(np.max), Op.NORM: i_norm,
    Op.LAYER_NORM: i_layer_norm,
    Op.RESHAPE: i_reshape, Op.PERMUTE: i_permute, Op.EXPAND: i_expand, Op.CAT: i_cat,
    Op.SLICE: i_slice, Op.INDEX: i_index,
}
for _op, _rule in _RULES.items():
    register_lowering(_op, TARGET)(_rule)

# the interpreter's rules, op -> fn(interpreter, node, input values, symbol bindings) (a live view of the
# registry's "reference" rules)
IMPLS = rules_of(TARGET)
_missing = set(Op) - set(IMPLS) - {Op.INPUT}
assert not _missing, f"ops the interpreter lacks: {_missing}"


def run_graph(g: Graph, flat_inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    return Interpreter(g).run(flat_inputs)
