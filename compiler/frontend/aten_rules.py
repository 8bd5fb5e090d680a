"""Lowering rules from aten ops (as torch.export produces them) to xrec IR.

One table, keyed by the aten overload packet name ("aten::linear"), each rule
a small function ``rule(ctx, a) -> value`` where ``a`` holds the op's schema
arguments by name, fx values already mapped to IR value names / python values.
"""
from __future__ import annotations

import operator
from typing import Callable, NamedTuple

import numpy as np
import sympy

from ..ir import Op, TensorType
from ..ir.types import DType, canon_dim, dims_equal, numel
from .context import Ctx
from .errors import FrontendError

RULES: dict[str, Callable] = {}
_INT_MAX = 2**62


def rule(*names: str):
    def deco(fn):
        for n in names:
            RULES[n] = fn
        return fn
    return deco


def _t(ctx: Ctx, v) -> TensorType:
    return ctx.type_of(v)


def _is_value(v) -> bool:
    return isinstance(v, str)


def _as_tensor(ctx: Ctx, v, like: str) -> str:
    """A tensor operand: an IR value, or a python scalar turned into a 0-d FULL."""
    if _is_value(v):
        return v
    return ctx.scalar(v, _t(ctx, like).dtype)


def _reshape(ctx: Ctx, x: str, shape) -> str:
    shape = [ctx.dim(d) for d in shape]
    if any(isinstance(d, int) and d == -1 for d in shape):
        known = 1
        for d in shape:
            if not (isinstance(d, int) and d == -1):
                known = known * d
        total = numel(_t(ctx, x).shape)
        rest = canon_dim(sympy.sympify(total) / known)
        if not isinstance(rest, int) and sympy.fraction(sympy.together(rest))[1] != 1:
            raise FrontendError(f"{ctx.loc}: view/reshape to {tuple(str(d) for d in shape)} splits a dynamic "
                                f"dim ({total} elements into {rest}); xrec keeps the batch and id-count "
                                "dims whole")
        shape = [rest if (isinstance(d, int) and d == -1) else d for d in shape]
    if tuple(shape) == _t(ctx, x).shape:
        return x
    return ctx.emit(Op.RESHAPE, (x,), {"shape": tuple(shape)})


def _norm(d: int, rank: int) -> int:
    return d % rank if rank else 0


# ----------------------------------------------------------------- sparse
_MODES = {0: "sum", 1: "mean", 2: "max"}


@rule("aten::embedding_bag", "aten::_embedding_bag", "aten::_embedding_bag_forward_only")
def embedding_bag(ctx: Ctx, a):
    mode = _MODES[int(a["mode"])]
    last = bool(a.get("include_last_offset", False))
    pad = a.get("padding_idx")
    # scale_grad_by_freq and sparse only change gradients: an inference compiler ignores them
    if pad is not None and int(pad) < 0:
        rows = _t(ctx, a["weight"]).shape[0]
        internal = ctx.fx_node.target._overloadpacket.__name__.startswith("_embedding_bag")
        pad = None if (internal and int(pad) == -1) else int(pad) % rows
    offsets = a["offsets"]
    psw = a.get("per_sample_weights")
    if offsets is None or isinstance(offsets, Arange):
        return (_fixed_bags(ctx, a["weight"], a["indices"], offsets, psw, mode, pad, last), None, None, None)
    feature = ctx.feature_names.get(a["indices"], a["indices"])
    jag = ctx.emit(Op.JAGGED, (a["indices"], offsets),
                   {"feature": feature, "include_last_offset": last}, hint=f"jag_{a['indices']}")
    ins = [a["weight"], jag] + ([psw] if psw is not None else [])
    out = ctx.emit(Op.EMBEDDING_BAG, ins, {"mode": mode, "padding_idx": pad, "has_psw": psw is not None,
                                           "feature": feature}, hint="bag")
    return (out, None, None, None)


@rule("xrec::rowwise_embedding_bag")
def rowwise_embedding_bag(ctx: Ctx, a):
    """A table already stored in one of xrec's row formats (TorchRec's quantized EBC, see torchrec_quant):
    the same EMBEDDING_BAG that ``quantize_embeddings`` leaves, over the table PARAM typed in that format."""
    from ..ir import formats
    fmt, dim = formats.by_code(int(a["fmt"])), int(a["dim"])
    table = _row_format_table(ctx, a["table"], fmt, dim)
    feature = ctx.feature_names.get(a["indices"], a["indices"])
    jag = ctx.emit(Op.JAGGED, (a["indices"], a["offsets"]), {"feature": feature, "include_last_offset": True},
                   hint=f"jag_{a['indices']}")
    psw = a.get("per_sample_weights")
    attrs = {"mode": formats.POOL_MODES[int(a["mode"])], "padding_idx": None, "has_psw": psw is not None,
             "feature": feature}
    if fmt.name != "fp32":
        attrs.update({"dim": dim, "out_dtype": DType.F32})
    ins = [table, jag] + ([psw] if psw is not None else [])
    return ctx.emit(Op.EMBEDDING_BAG, ins, attrs, hint="bag")


def _row_format_table(ctx: Ctx, param: str, fmt, dim: int) -> str:
    """The PARAM ``param`` (a buffer: plain u8/f16/f32 array) retyped as a table of ``fmt`` rows (one PARAM per
    table, also when several features read it)."""
    key = (param, fmt.name, dim)
    if key not in ctx.row_tables:
        src = next((n for n in ctx.b.nodes if n.name == param), None)
        if src is None or src.op is not Op.PARAM:
            raise FrontendError(f"{ctx.loc}: the table of xrec::rowwise_embedding_bag must be a parameter or "
                                "buffer of the model")
        rows = int(src.type.shape[0])
        want = fmt.table_type(rows, dim)
        if src.type.shape != want.shape or src.type.dtype is not want.dtype:
            raise FrontendError(f"{ctx.loc}: table {src.attr('name')!r} is {src.type}; {fmt.name} rows of dim "
                                f"{dim} are {want}")
        ctx.row_tables[key] = src.name if src.type == want else ctx.b.emit(
            Op.PARAM, (), want, {"name": src.attr("name")}, hint=f"{src.name}_{fmt.name}", loc=ctx.loc)
    return ctx.row_tables[key]


def _fixed_bags(ctx: Ctx, weight: str, ids: str, offsets, psw, mode: str, pad, last: bool) -> str:
    """Bags of one fixed length L: a 2-D [N, L] input (F.embedding_bag makes its offsets with
    ``arange(0, N * L, L)``), as rows = embedding(weight, ids[N, L]) pooled over dim 1."""
    it = _t(ctx, ids)
    if offsets is None:
        if it.rank != 2:
            raise FrontendError(f"{ctx.loc}: embedding_bag without offsets needs a 2-D input, got {it}")
        length = it.shape[1]
    else:
        length = offsets.step
        if not (offsets.start == 0 and isinstance(length, int) and length > 0 and it.rank == 1
                and dims_equal(offsets.end, it.shape[0])):
            raise FrontendError(f"{ctx.loc}: embedding_bag offsets from arange({offsets.start}, {offsets.end}, "
                                f"{offsets.step}) are not fixed-size bags over the {it.shape[0]} ids; pass "
                                "offsets as a model input (or a 2-D [bags, length] input)")
        if last:
            raise FrontendError(f"{ctx.loc}: embedding_bag with arange offsets and include_last_offset=True "
                                "(the last bag's ids ignored) is not supported; pass a 2-D input without it")
        bags = canon_dim(sympy.sympify(it.shape[0]) / length)
        if not isinstance(bags, int) and sympy.fraction(sympy.together(bags))[1] != 1:
            raise FrontendError(f"{ctx.loc}: embedding_bag offsets arange(0, {it.shape[0]}, {length}) over a "
                                f"dynamic number of ids: bags of {length} need it to be a multiple of {length}, "
                                f"which xrec cannot know; pass a 2-D [bags, {length}] input instead")
        ids = _reshape(ctx, ids, [-1, length])
        if psw is not None:
            psw = _reshape(ctx, psw, [-1, length])
    if not isinstance(length, int):
        raise FrontendError(f"{ctx.loc}: embedding_bag over 2-D input needs a static bag length, got {length}")
    rows = ctx.emit(Op.EMBEDDING, (weight, ids), hint="bag_rows")            # [N, L, D]
    dt = _t(ctx, rows).dtype
    if psw is not None:
        if mode != "sum":
            raise FrontendError(f"{ctx.loc}: per_sample_weights need mode='sum' (as in PyTorch)")
        w = psw if _t(ctx, psw).dtype == dt else ctx.emit(Op.CAST, (psw,), {"dtype": dt})
        rows = ctx.emit(Op.MUL, (rows, _reshape(ctx, w, list(_t(ctx, w).shape) + [1])))
    keep = None
    if pad is not None:
        keep = ctx.emit(Op.NE, (ids, ctx.scalar(int(pad), it.dtype)))                    # [N, L]
        keep3 = _reshape(ctx, keep, list(_t(ctx, keep).shape) + [1])
        fill = ctx.scalar(float("-inf") if mode == "max" else 0.0, dt)
        rows = ctx.emit(Op.WHERE, (keep3, rows, fill))
    if mode == "sum":
        return ctx.emit(Op.SUM, (rows,), {"dims": (1,), "keepdim": False}, hint="bag")
    if mode == "mean" and keep is None:
        return ctx.emit(Op.MEAN, (rows,), {"dims": (1,), "keepdim": False}, hint="bag")
    if mode == "max" and keep is None:
        return ctx.emit(Op.AMAX, (rows,), {"dims": (1,), "keepdim": False}, hint="bag")
    # padding ids excluded: mean over the others, max of the others; a bag of only padding ids is 0
    count = ctx.emit(Op.SUM, (ctx.emit(Op.CAST, (keep,), {"dtype": dt}),), {"dims": (1,), "keepdim": True})
    if mode == "mean":
        total = ctx.emit(Op.SUM, (rows,), {"dims": (1,), "keepdim": False})
        return ctx.emit(Op.DIV, (total, ctx.emit(Op.MAXIMUM, (count, ctx.scalar(1.0, dt)))), hint="bag")
    top = ctx.emit(Op.AMAX, (rows,), {"dims": (1,), "keepdim": False})
    empty = ctx.emit(Op.EQ, (count, ctx.scalar(0.0, dt)))
    return ctx.emit(Op.WHERE, (empty, ctx.scalar(0.0, dt), top), hint="bag")


@rule("aten::embedding")
def embedding(ctx: Ctx, a):
    # padding_idx, scale_grad_by_freq and sparse only change gradients: the forward reads the rows as they are
    return ctx.emit(Op.EMBEDDING, (a["weight"], a["indices"]))


@rule("aten::embedding_renorm_")
def embedding_renorm_inplace(ctx: Ctx, a):
    """The in-place form (an ExportedProgram not functionalised): later reads of the table, through
    ``detach``/``alias`` views of it, read the renormalised one."""
    out = embedding_renorm(ctx, a)
    src = ctx.fx_node.args[0]
    while True:
        ctx.env[src] = out
        name = getattr(getattr(src, "target", None), "_overloadpacket", None)
        if src.op != "call_function" or getattr(name, "__name__", "") not in ("detach", "alias") or not src.args:
            break
        src = src.args[0]
    return out


@rule("aten::embedding_renorm")
def embedding_renorm(ctx: Ctx, a):
    """``max_norm``: PyTorch rescales, in place, each row it reads whose norm exceeds max_norm by
    max_norm / (norm + 1e-7). Every output row is such a row, so the output equals a lookup into the table
    with all rows renormalised: for a parameter table that table is computed here, by PyTorch's own
    ``embedding_renorm_`` (bit-exact); for a table computed at run time, with IR ops."""
    w, max_norm, p = a["self"], float(a["max_norm"]), float(a["norm_type"])
    arr = _param_array(ctx, w)
    if arr is not None:
        import torch
        t = torch.from_numpy(np.array(arr, copy=True))
        with torch.no_grad():
            torch.embedding_renorm_(t, torch.arange(t.shape[0]), max_norm, p)
        return ctx.param("renormed", t.numpy())
    if not (p > 0 and np.isfinite(p)):
        raise FrontendError(f"{ctx.loc}: embedding max_norm with norm_type={p} on a table computed at run "
                            "time is not supported (only finite positive norms; a parameter table takes any)")
    dt = _t(ctx, w).dtype
    norm = ctx.emit(Op.NORM, (w,), {"p": p, "dims": (1,), "keepdim": True})
    scale = ctx.emit(Op.DIV, (ctx.scalar(max_norm, dt), ctx.emit(Op.ADD, (norm, ctx.scalar(1e-7, dt)))))
    over = ctx.emit(Op.GT, (norm, ctx.scalar(max_norm, dt)))
    return ctx.emit(Op.MUL, (w, ctx.emit(Op.WHERE, (over, scale, ctx.scalar(1.0, dt)))))


def _param_array(ctx: Ctx, v: str):
    """The value of ``v`` when it is a parameter of the graph being built, else None."""
    for n in reversed(ctx.b.nodes):
        if n.name == v:
            return ctx.b.params.get(n.attr("name")) if n.op is Op.PARAM else None
    return None


class Arange(NamedTuple):
    """``torch.arange(start, end, step)`` whose only use is as embedding_bag offsets (fixed-size bags)."""
    start: object
    end: object
    step: object


_EB_NAMES = ("embedding_bag", "_embedding_bag", "_embedding_bag_forward_only")


@rule("aten::arange")
def arange(ctx: Ctx, a):
    start, end, step = a.get("start", 0), a["end"], a.get("step", 1)
    users = list(ctx.fx_node.users)
    if users and all(getattr(getattr(u.target, "_overloadpacket", None), "__name__", "") in _EB_NAMES
                     and len(u.args) > 2 and u.args[2] is ctx.fx_node for u in users):
        return Arange(start, end, step)
    if not all(isinstance(v, (int, float)) for v in (start, end, step)):
        raise FrontendError(f"{ctx.loc}: torch.arange({start}, {end}, {step}) depends on an input's size "
                            "(the batch or the number of ids), which xrec does not support outside "
                            "embedding_bag offsets; use a size fixed by the model (positions 0..L-1)")
    import torch
    dt = a.get("dtype")
    vals = torch.arange(start, end, step, dtype=dt) if dt is not None else torch.arange(start, end, step)
    if vals.dtype == torch.bfloat16 or vals.dtype == torch.float16:
        raise FrontendError(f"{ctx.loc}: torch.arange in {vals.dtype} is not supported")
    return ctx.param("arange", vals.numpy())


# ----------------------------------------------------------------- dense algebra
@rule("aten::linear")
def linear(ctx: Ctx, a):
    ins = [a["input"], a["weight"]] + ([a["bias"]] if a.get("bias") is not None else [])
    return ctx.emit(Op.LINEAR, ins)


@rule("aten::addmm")
def addmm(ctx: Ctx, a):
    """beta * self + alpha * (mat1 @ mat2); beta == 0 ignores self (NaN included), as in torch."""
    beta, alpha = a.get("beta", 1), a.get("alpha", 1)
    if _is_value(beta) or _is_value(alpha):
        raise FrontendError(f"{ctx.loc}: addmm with tensor beta/alpha is not supported")
    y = ctx.emit(Op.MATMUL, (a["mat1"], a["mat2"]))
    dt = _t(ctx, y).dtype
    if alpha != 1:
        y = ctx.emit(Op.MUL, (y, ctx.scalar(alpha, dt)))
    if beta == 0:
        return y
    c = a["self"]
    if beta != 1:
        c = ctx.emit(Op.MUL, (c, ctx.scalar(beta, dt)))
    return ctx.emit(Op.ADD, (y, c))


@rule("aten::mm", "aten::bmm", "aten::matmul")
def matmul(ctx: Ctx, a):
    return ctx.emit(Op.MATMUL, (a["self"], a.get("mat2", a.get("other"))))


# ----------------------------------------------------------------- elementwise
def _unary(op: Op, **attrs):
    return lambda ctx, a: ctx.emit(op, (a["self"],), attrs or None)


for _name, _op in [("relu", Op.RELU), ("sigmoid", Op.SIGMOID), ("tanh", Op.TANH), ("silu", Op.SILU),
                   ("neg", Op.NEG), ("exp", Op.EXP), ("log", Op.LOG), ("sqrt", Op.SQRT),
                   ("rsqrt", Op.RSQRT), ("abs", Op.ABS)]:
    RULES[f"aten::{_name}"] = _unary(_op)


@rule("aten::gelu")
def gelu(ctx: Ctx, a):
    return ctx.emit(Op.GELU, (a["self"],), {"approximate": a.get("approximate", "none")})


@rule("aten::clamp", "aten::clamp_min", "aten::clamp_max", "aten::hardtanh")
def clamp(ctx: Ctx, a):
    name = ctx.fx_node.target._overloadpacket.__name__
    lo = a.get("min", a.get("min_val")) if name != "clamp_max" else None
    hi = a.get("max", a.get("max_val")) if name != "clamp_min" else None
    if name == "hardtanh":
        lo, hi = a.get("min_val", -1.0), a.get("max_val", 1.0)
    if _is_value(lo) or _is_value(hi):
        # tensor bounds: min(max(x, lo), hi), torch's order (lo > hi gives hi)
        x = a["self"]
        if lo is not None:
            x, lo_ = _operands(ctx, [x, lo])
            x = ctx.emit(Op.MAXIMUM, (x, lo_))
        if hi is not None:
            x, hi_ = _operands(ctx, [x, hi])
            x = ctx.emit(Op.MINIMUM, (x, hi_))
        return x
    attrs = {"min": None if lo is None else float(lo), "max": None if hi is None else float(hi)}
    return ctx.emit(Op.CLAMP, (a["self"],), attrs)


def _binary(op: Op, reverse: bool = False):
    def fn(ctx: Ctx, a):
        x, y = a["self"], a["other"] if "other" in a else a.get("exponent")
        if a.get("alpha", 1) != 1:
            # add/sub: self + alpha * other; rsub: other - alpha * self
            if reverse:
                x = ctx.emit(Op.MUL, (_as_tensor(ctx, x, y), ctx.scalar(a["alpha"], _t(ctx, x).dtype)))
            else:
                y = ctx.emit(Op.MUL, (_as_tensor(ctx, y, x), ctx.scalar(a["alpha"], _t(ctx, x).dtype)))
        if not _is_value(x):
            x = _as_tensor(ctx, x, y)
        y = _as_tensor(ctx, y, x)
        x, y = _promote(ctx, x, y)
        return ctx.emit(op, (y, x) if reverse else (x, y))
    return fn


def _promote(ctx: Ctx, x: str, y: str):
    tx, ty = _t(ctx, x), _t(ctx, y)
    if tx.dtype == ty.dtype:
        return x, y
    # a 0-d constant adopts the other operand's type; otherwise follow torch: float wins
    want = tx.dtype if tx.dtype.is_float or not ty.dtype.is_float else ty.dtype
    if tx.dtype != want:
        x = ctx.emit(Op.CAST, (x,), {"dtype": want})
    if ty.dtype != want:
        y = ctx.emit(Op.CAST, (y,), {"dtype": want})
    return x, y


for _name, _op in [("add", Op.ADD), ("sub", Op.SUB), ("mul", Op.MUL), ("div", Op.DIV),
                   ("pow", Op.POW), ("maximum", Op.MAXIMUM), ("minimum", Op.MINIMUM)]:
    RULES[f"aten::{_name}"] = _binary(_op)
RULES["aten::rsub"] = _binary(Op.SUB, reverse=True)


@rule("aten::square")
def square(ctx: Ctx, a):
    return ctx.emit(Op.MUL, (a["self"], a["self"]))


@rule("aten::reciprocal")
def reciprocal(ctx: Ctx, a):
    x = a["self"]
    return ctx.emit(Op.DIV, (ctx.scalar(1.0, _t(ctx, x).dtype), x))


# ----------------------------------------------------------------- comparisons, logic, where
def _kind(dt: DType) -> int:
    """torch's promotion categories: bool < integer < floating point."""
    return 2 if dt.is_float else 0 if dt is DType.BOOL else 1


def _scalar_dtype(v) -> DType:
    return DType.BOOL if isinstance(v, bool) else DType.I64 if isinstance(v, int) else DType.F32


def _common(ctx: Ctx, xs: list) -> DType:
    """The dtype torch computes ``xs`` (IR values and Python scalars) in: the highest category wins;
    within it, tensors decide (the widest), Python scalars only lift the category (to i64 / f32)."""
    tensors = [_t(ctx, x).dtype for x in xs if _is_value(x)]
    kind = max([_kind(d) for d in tensors] + [_kind(_scalar_dtype(x)) for x in xs if not _is_value(x)])
    same = [d for d in tensors if _kind(d) == kind]
    if not same:
        return {0: DType.BOOL, 1: DType.I64, 2: DType.F32}[kind]
    return max(same, key=lambda d: d.itemsize)


def _operands(ctx: Ctx, xs: list) -> list[str]:
    """``xs`` as IR values of one dtype (Python scalars become 0-d constants, tensors are cast)."""
    want = _common(ctx, xs)
    out = []
    for x in xs:
        if not _is_value(x):
            out.append(ctx.scalar(x, want))
        elif _t(ctx, x).dtype != want:
            out.append(ctx.emit(Op.CAST, (x,), {"dtype": want}))
        else:
            out.append(x)
    return out


def _as_bool(ctx: Ctx, x) -> str:
    """A bool operand (nonzero is true, as torch's logical ops read numbers)."""
    if not _is_value(x):
        return ctx.scalar(bool(x), DType.BOOL)
    return x if _t(ctx, x).dtype is DType.BOOL else ctx.emit(Op.CAST, (x,), {"dtype": DType.BOOL})


def _compare(op: Op):
    def fn(ctx: Ctx, a):
        x, y = _operands(ctx, [a["self"], a["other"]])
        return ctx.emit(op, (x, y))
    return fn


for _name, _op in [("eq", Op.EQ), ("ne", Op.NE), ("lt", Op.LT), ("le", Op.LE), ("gt", Op.GT), ("ge", Op.GE)]:
    RULES[f"aten::{_name}"] = _compare(_op)


@rule("aten::logical_and", "aten::logical_or")
def logical_binary(ctx: Ctx, a):
    op = Op.LOGICAL_AND if ctx.fx_node.target._overloadpacket.__name__ == "logical_and" else Op.LOGICAL_OR
    return ctx.emit(op, (_as_bool(ctx, a["self"]), _as_bool(ctx, a["other"])))


@rule("aten::logical_not")
def logical_not(ctx: Ctx, a):
    return ctx.emit(Op.LOGICAL_NOT, (_as_bool(ctx, a["self"]),))


@rule("aten::bitwise_and", "aten::bitwise_or", "aten::bitwise_not")
def bitwise_on_bools(ctx: Ctx, a):
    """``mask1 & mask2``, ``mask1 | mask2``, ``~mask`` on bool tensors (bitwise ops on integers are not supported)."""
    name = ctx.fx_node.target._overloadpacket.__name__
    xs = [a["self"]] + ([a["other"]] if name != "bitwise_not" else [])
    for x in xs:
        if _is_value(x) and _t(ctx, x).dtype is not DType.BOOL:
            raise FrontendError(f"{ctx.loc}: {name} on {_t(ctx, x).dtype.value} tensors is not supported; "
                                "xrec supports &, | and ~ on bool tensors (masks)")
    op = {"bitwise_and": Op.LOGICAL_AND, "bitwise_or": Op.LOGICAL_OR, "bitwise_not": Op.LOGICAL_NOT}[name]
    return ctx.emit(op, [_as_bool(ctx, x) for x in xs])


@rule("aten::where")
def where(ctx: Ctx, a):
    if "self" not in a or "other" not in a:
        raise FrontendError(f"{ctx.loc}: torch.where(condition) with one argument (nonzero) is not supported; "
                            "use torch.where(condition, a, b)")
    x, y = _operands(ctx, [a["self"], a["other"]])
    return ctx.emit(Op.WHERE, (_as_bool(ctx, a["condition"]), x, y))


@rule("aten::masked_fill")
def masked_fill(ctx: Ctx, a):
    x = a["self"]
    value = a["value"]
    if _is_value(value):
        value = value if _t(ctx, value).dtype == _t(ctx, x).dtype else ctx.emit(Op.CAST, (value,),
                                                                                {"dtype": _t(ctx, x).dtype})
    else:
        value = ctx.scalar(value, _t(ctx, x).dtype)
    return ctx.emit(Op.WHERE, (_as_bool(ctx, a["mask"]), value, x))


@rule("aten::softmax", "aten::_softmax")
def softmax(ctx: Ctx, a):
    x = a["self"]
    if a.get("dtype") is not None:
        want = DType.from_torch(a["dtype"])
        x = x if want == _t(ctx, x).dtype else ctx.emit(Op.CAST, (x,), {"dtype": want})
    if a.get("half_to_float"):
        x = ctx.emit(Op.CAST, (x,), {"dtype": DType.F32})
    if _t(ctx, x).rank == 0:            # torch reads a 0-d tensor as one element along dim 0 / -1
        y = ctx.emit(Op.SOFTMAX, (_reshape(ctx, x, [1]),), {"dim": 0})
        return _reshape(ctx, y, [])
    return ctx.emit(Op.SOFTMAX, (x,), {"dim": _norm(int(a["dim"]), _t(ctx, x).rank)})


@rule("aten::full_like", "aten::zeros_like", "aten::ones_like")
def full_like(ctx: Ctx, a):
    x = a["self"]
    t = _t(ctx, x)
    dt = DType.from_torch(a["dtype"]) if a.get("dtype") is not None else t.dtype
    name = ctx.fx_node.target._overloadpacket.__name__
    value = {"zeros_like": 0, "ones_like": 1}.get(name, a.get("fill_value"))
    if _is_value(value):
        raise FrontendError(f"{ctx.loc}: full_like with a tensor fill value is not supported")
    v = float(value) if dt.is_float else bool(value) if dt is DType.BOOL else int(value)
    return ctx.emit(Op.FULL, (), {"value": v}, hint="full", type=TensorType(t.shape, dt))


# ----------------------------------------------------------------- reductions / norms
def _dims_arg(ctx: Ctx, a, rank: int, key="dim"):
    d = a.get(key)
    if d is None or (isinstance(d, (list, tuple)) and len(d) == 0):
        return tuple(range(rank))
    if isinstance(d, int):
        d = [d]
    return tuple(_norm(int(x), rank) for x in d)


def _reduce(op: Op):
    def fn(ctx: Ctx, a):
        x = a["self"]
        dt = _t(ctx, x).dtype
        # dtype=: torch casts the input first; sum of bools and integers is int64 in torch
        want = DType.from_torch(a["dtype"]) if a.get("dtype") is not None else \
            DType.I64 if (op is Op.SUM and not dt.is_float) else dt
        if want != dt:
            x = ctx.emit(Op.CAST, (x,), {"dtype": want})
        if _t(ctx, x).rank == 0:            # torch reads a 0-d tensor as one element along dim 0 / -1
            return x
        return ctx.emit(op, (x,), {"dims": _dims_arg(ctx, a, _t(ctx, x).rank),
                                   "keepdim": bool(a.get("keepdim", False))})
    return fn


RULES["aten::sum"] = _reduce(Op.SUM)
RULES["aten::mean"] = _reduce(Op.MEAN)
RULES["aten::amax"] = _reduce(Op.AMAX)


@rule("aten::linalg_vector_norm", "aten::norm")
def vector_norm(ctx: Ctx, a):
    x = a["self"]
    p = a.get("ord", a.get("p", 2))
    if p is None:
        p = 2
    if not isinstance(p, (int, float)) or float(p) <= 0 or np.isinf(float(p)):
        raise FrontendError(f"{ctx.loc}: only finite positive p-norms are supported, got {p!r}")
    if _t(ctx, x).rank == 0:
        return ctx.emit(Op.ABS, (x,))
    return ctx.emit(Op.NORM, (x,), {"p": float(p), "dims": _dims_arg(ctx, a, _t(ctx, x).rank),
                                    "keepdim": bool(a.get("keepdim", False))})


@rule("aten::layer_norm")
def layer_norm(ctx: Ctx, a):
    w, b = a.get("weight"), a.get("bias")
    ins = [a["input"]] + ([w] if w is not None else []) + ([b] if b is not None else [])
    return ctx.emit(Op.LAYER_NORM, ins, {"normalized_ndim": len(a["normalized_shape"]),
                                         "eps": float(a.get("eps", 1e-5)),
                                         "has_weight": w is not None, "has_bias": b is not None})


# ----------------------------------------------------------------- layout
@rule("aten::view", "aten::reshape", "aten::_unsafe_view")
def view(ctx: Ctx, a):
    return _reshape(ctx, a["self"], a.get("size", a.get("shape")))


@rule("aten::flatten")
def flatten(ctx: Ctx, a):
    x = a["self"]
    shape = _t(ctx, x).shape
    r = len(shape)
    if r == 0:
        return _reshape(ctx, x, [1])
    s, e = _norm(a.get("start_dim", 0), r), _norm(a.get("end_dim", -1), r)
    return _reshape(ctx, x, list(shape[:s]) + [numel(shape[s:e + 1])] + list(shape[e + 1:]))


@rule("aten::unsqueeze")
def unsqueeze(ctx: Ctx, a):
    x = a["self"]
    shape = list(_t(ctx, x).shape)
    d = a["dim"] % (len(shape) + 1)
    return _reshape(ctx, x, shape[:d] + [1] + shape[d:])


@rule("aten::squeeze")
def squeeze(ctx: Ctx, a):
    x = a["self"]
    shape = list(_t(ctx, x).shape)
    dims = a.get("dim")
    if dims is None:
        dims = [i for i, d in enumerate(shape) if isinstance(d, int) and d == 1]
    elif isinstance(dims, int):
        dims = [dims]
    dims = {_norm(d, len(shape)) for d in dims}
    keep = [d for i, d in enumerate(shape) if not (i in dims and isinstance(d, int) and d == 1)]
    return _reshape(ctx, x, keep)


@rule("aten::permute")
def permute(ctx: Ctx, a):
    x = a["self"]
    r = _t(ctx, x).rank
    perm = tuple(_norm(d, r) for d in a["dims"])
    return x if perm == tuple(range(r)) else ctx.emit(Op.PERMUTE, (x,), {"perm": perm})


@rule("aten::transpose")
def transpose(ctx: Ctx, a):
    x = a["self"]
    r = _t(ctx, x).rank
    perm = list(range(r))
    d0, d1 = _norm(a["dim0"], r), _norm(a["dim1"], r)
    if d0 == d1:                        # (a 0-d tensor takes dims 0 / -1 and is its own transpose)
        return x
    perm[d0], perm[d1] = perm[d1], perm[d0]
    return x if d0 == d1 else ctx.emit(Op.PERMUTE, (x,), {"perm": tuple(perm)})


@rule("aten::t")
def t(ctx: Ctx, a):
    x = a["self"]
    return x if _t(ctx, x).rank < 2 else ctx.emit(Op.PERMUTE, (x,), {"perm": (1, 0)})


@rule("aten::expand")
def expand(ctx: Ctx, a):
    x = a["self"]
    xs = _t(ctx, x).shape
    size = [ctx.dim(d) for d in a["size"]]
    pad = len(size) - len(xs)
    shape = tuple(xs[i - pad] if (isinstance(d, int) and d == -1) else d for i, d in enumerate(size))
    return x if shape == xs else ctx.emit(Op.EXPAND, (x,), {"shape": shape})


@rule("aten::expand_as")
def expand_as(ctx: Ctx, a):
    return ctx.emit(Op.EXPAND, (a["self"],), {"shape": _t(ctx, a["other"]).shape})


@rule("aten::cat", "aten::concat", "aten::concatenate")
def cat(ctx: Ctx, a):
    xs = [x for x in a["tensors"] if not (_t(ctx, x).rank == 1 and _t(ctx, x).shape[0] == 0)]
    if len(xs) == 1:
        return xs[0]
    return ctx.emit(Op.CAT, xs, {"dim": _norm(a.get("dim", 0), _t(ctx, xs[0]).rank)})


@rule("aten::stack")
def stack(ctx: Ctx, a):
    xs = a["tensors"]
    r = _t(ctx, xs[0]).rank
    d = a.get("dim", 0) % (r + 1)
    parts = [_reshape(ctx, x, list(_t(ctx, x).shape[:d]) + [1] + list(_t(ctx, x).shape[d:])) for x in xs]
    return parts[0] if len(parts) == 1 else ctx.emit(Op.CAT, parts, {"dim": d})


@rule("aten::slice")
def slice_(ctx: Ctx, a):
    x = a["self"]
    shape = _t(ctx, x).shape
    d = _norm(a.get("dim", 0), len(shape))
    start, end, step = a.get("start"), a.get("end"), a.get("step", 1)
    start = 0 if start is None else start
    if not isinstance(start, int) or (end is not None and not isinstance(end, int)):
        raise FrontendError(f"{ctx.loc}: slicing with symbolic bounds is not supported")
    if end is not None and end >= _INT_MAX:
        end = None
    if isinstance(shape[d], int) and end is not None and end >= shape[d]:
        end = None
    if start == 0 and end is None and step == 1:
        return x
    return ctx.emit(Op.SLICE, (x,), {"dim": d, "start": start, "end": end, "step": step})


@rule("aten::split_with_sizes", "aten::split")
def split(ctx: Ctx, a):
    """Static pieces along ``dim`` (TorchRec's ``KeyedTensor.to_dict()`` splits its values per key)."""
    x = a["self"]
    shape = _t(ctx, x).shape
    d = _norm(a.get("dim", 0), len(shape))
    sizes = a.get("split_sizes", a.get("split_size"))
    if isinstance(sizes, int):
        if not isinstance(shape[d], int):
            raise FrontendError(f"{ctx.loc}: split of a dynamic dim into pieces of {sizes} is not supported "
                                "(the number of pieces would depend on the batch or the id count)")
        sizes = [min(sizes, shape[d] - s) for s in range(0, shape[d], sizes)] or [0]
    if not all(isinstance(s, int) for s in sizes):
        raise FrontendError(f"{ctx.loc}: split with symbolic sizes {sizes} is not supported; split by sizes "
                            "fixed in the model")
    out, start = [], 0
    for size in sizes:
        out.append(slice_(ctx, {"self": x, "dim": d, "start": start, "end": start + size, "step": 1}))
        start += size
    return tuple(out)


@rule("aten::select")
def select(ctx: Ctx, a):
    x = a["self"]
    shape = list(_t(ctx, x).shape)
    d = _norm(a["dim"], len(shape))
    i = int(a["index"])
    arr = _param_array(ctx, x)
    if arr is not None and arr.dtype.kind in "iub":
        # a row of a constant index buffer (torchrec's DLRM: interactions[:, triu[0], triu[1]]): a constant,
        # so that the gather it feeds stays a gather by constant indices (recognize_interaction)
        return ctx.param("select", np.ascontiguousarray(np.take(arr, i, axis=d)))
    s = ctx.emit(Op.SLICE, (x,), {"dim": d, "start": i, "end": (i + 1) or None, "step": 1})
    return _reshape(ctx, s, shape[:d] + shape[d + 1:])


@rule("aten::index")
def index(ctx: Ctx, a):
    x = a["self"]
    idx = list(a["indices"])
    lead = 0
    while lead < len(idx) and idx[lead] is None:
        lead += 1
    rest = idx[lead:]
    if not rest or any(i is None for i in rest):
        raise FrontendError(f"{ctx.loc}: indexing must use consecutive index tensors after leading ':'")
    for i in rest:
        src = ctx.b.types.get(i)
        if src is None or src.dtype not in (DType.I32, DType.I64):
            raise FrontendError(f"{ctx.loc}: only integer index tensors are supported (no boolean masks)")
    return ctx.emit(Op.INDEX, [x] + rest, {"dim": lead})


@rule("aten::index_select")
def index_select(ctx: Ctx, a):
    x = a["self"]
    return ctx.emit(Op.INDEX, (x, a["index"]), {"dim": _norm(a["dim"], _t(ctx, x).rank)})


# ----------------------------------------------------------------- no-ops and casts
def _identity(ctx: Ctx, a):
    return a.get("self", a.get("input"))


for _name in ("clone", "contiguous", "alias", "detach", "lift_fresh_copy", "_assert_tensor_metadata"):
    RULES[f"aten::{_name}"] = _identity


@rule("aten::dropout", "aten::native_dropout", "aten::feature_dropout")
def dropout(ctx: Ctx, a):
    if a.get("train", False):
        raise FrontendError(f"{ctx.loc}: dropout in training mode; call model.eval() before compiling")
    return a["input"]


@rule("aten::_to_copy", "aten::to")
def to_copy(ctx: Ctx, a):
    x = a["self"]
    dt = a.get("dtype")
    if dt is None:
        return x
    want = DType.from_torch(dt)
    return x if want == _t(ctx, x).dtype else ctx.emit(Op.CAST, (x,), {"dtype": want})


@rule("aten::type_as")
def type_as(ctx: Ctx, a):
    want = _t(ctx, a["other"]).dtype
    x = a["self"]
    return x if want == _t(ctx, x).dtype else ctx.emit(Op.CAST, (x,), {"dtype": want})


@rule("aten::sym_size")
def sym_size(ctx: Ctx, a):
    return _t(ctx, a["self"]).shape[_norm(a["dim"], _t(ctx, a["self"]).rank)]


@rule("aten::sym_numel")
def sym_numel(ctx: Ctx, a):
    return canon_dim(sympy.sympify(numel(_t(ctx, a["self"]).shape)))


# python operators on sizes (export records symbolic arithmetic with these)
PY_RULES = {
    operator.add: lambda x, y: canon_dim(sympy.sympify(x) + y),
    operator.sub: lambda x, y: canon_dim(sympy.sympify(x) - y),
    operator.mul: lambda x, y: canon_dim(sympy.sympify(x) * y),
    operator.floordiv: lambda x, y: canon_dim(sympy.floor(sympy.sympify(x) / y)),
}
