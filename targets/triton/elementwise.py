"""Fusion of the remaining elementwise work into generated Triton kernels.

A *cluster* is a connected set of IR nodes over one row extent R (a batch
dim) and at most one column count K: elementwise unary/binary ops, row
reductions (sum/mean/amax/norm over the last dim), expand and float casts.
Every value of a cluster is held as a register tile: full ``[BLOCK_R, BLOCK_K]``
("f"), one column per row ``[BLOCK_R, 1]`` ("r"), one row broadcast to all rows
``[1, BLOCK_K]`` ("c", a parameter vector) or a scalar ("s"). One program handles
BLOCK_R rows; only the values used outside the cluster are stored.

``generate`` writes the kernel source (a function of the cluster's structure
only, so identical clusters share one kernel); the generated functions call
the helpers of kernels.py (``_rsum``, ``_rmax``, ``_act``, ...) and are
appended to it in the artifact.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field

from xrec.ir import Graph, Op
from xrec.ir.formats import ACT_CODES
from xrec.ir.ops import BINARY, COMPARE, LOGICAL, UNARY
from xrec.ir.types import DType, TensorType, dims_equal

FLOATS = (DType.F32, DType.F16)
REDUCE_OPS = (Op.SUM, Op.MEAN, Op.AMAX, Op.NORM)
MASK_OPS = COMPARE | LOGICAL          # ops with a bool result (an int1 tile in the kernel)
MAX_BLOCK_K = 16384
TILE_ELEMS = 4096


def _is_sym(d) -> bool:
    return not isinstance(d, int)


def value_kind(t: TensorType, R, K: int) -> str | None:
    """How a value of type ``t`` sits in a cluster of ``R`` rows and ``K`` columns."""
    s = t.shape
    if all(isinstance(d, int) and d == 1 for d in s):
        return "s"
    if len(s) == 1:
        if isinstance(s[0], int):
            return "c" if s[0] == K else None
        return "r" if dims_equal(s[0], R) else None
    if len(s) == 2:
        rows, cols = s
        if not isinstance(cols, int):
            return None
        if isinstance(rows, int) and rows == 1:
            return "c" if cols == K else None
        if not dims_equal(rows, R):
            return None
        if cols == 1:
            return "r"
        return "f" if cols == K else None
    return None


def _float(t) -> bool:
    return isinstance(t, TensorType) and t.dtype in FLOATS


def full_value(g: Graph, name: str):
    """The fill value of a FULL node (a literal in the kernels of the clusters reading it), else None."""
    n = g.node(name)
    if n.op is Op.FULL and (_float(n.type) or _bool(n.type)):
        return n.attr("value")
    return None


def scalar_full(g: Graph, name: str):
    """The value of a FULL node holding one element, else None."""
    n = g.node(name)
    if n.op is Op.FULL and all(isinstance(d, int) and d == 1 for d in n.type.shape):
        return float(n.attr("value"))
    return None


def _bool(t) -> bool:
    return isinstance(t, TensorType) and t.dtype is DType.BOOL


def _operands_ok(g: Graph, n) -> bool:
    """The operand types an op takes inside a cluster: floats, except masks (bool) where the op reads them."""
    ins = [g.type_of(i) for i in n.inputs]
    if not all(isinstance(x, TensorType) and x.rank <= 2 for x in ins):
        return False
    if n.op in LOGICAL:
        return all(_bool(x) for x in ins)
    if n.op is Op.WHERE:
        return _bool(ins[0]) and all(_float(x) for x in ins[1:])
    if n.op is Op.CAST:
        return _float(ins[0]) or _bool(ins[0])
    return all(_float(x) for x in ins)


def node_extent(g: Graph, n) -> tuple | None:
    """(R, K) of a node that can join a cluster, else None."""
    t = n.type
    if not (_float(t) or (_bool(t) and n.op in MASK_OPS)) or t.rank > 2 or t.rank == 0:
        return None
    R = t.shape[0]
    if not _is_sym(R):
        return None                     # depends on no batch dim: leave to torch
    if n.op in UNARY or n.op in BINARY or n.op in MASK_OPS or n.op in (Op.EXPAND, Op.WHERE):
        ins = [g.type_of(i) for i in n.inputs]
        if not _operands_ok(g, n):
            return None
        if n.op is Op.POW and scalar_full(g, n.inputs[1]) not in POW_EXPR:
            return None
        if n.op is Op.CAST and not n.attr("dtype") in FLOATS:
            return None
    elif n.op in REDUCE_OPS or n.op is Op.SOFTMAX:
        x = g.type_of(n.inputs[0])
        dims = [n.attr("dim")] if n.op is Op.SOFTMAX else n.attr("dims")
        if not _float(x) or x.rank != 2 or [d % 2 for d in dims] != [1]:
            return None
        if n.op is Op.NORM and float(n.attr("p", 2.0)) not in NORM_EXPR:
            return None
        ins = [x]
    else:
        return None
    cols = [x.shape[-1] for x in ins + [t] if x.rank == 2] + [x.shape[0] for x in ins + [t]
                                                              if x.rank == 1 and not _is_sym(x.shape[0])]
    if not all(isinstance(c, int) for c in cols):
        return None
    K = max([c for c in cols] + [1])
    if K > MAX_BLOCK_K:
        return None
    for x in ins + [t]:
        if value_kind(x, R, K) is None:
            return None
    return R, K


@dataclass
class Cluster:
    cid: int
    members: list = field(default_factory=list)      # node names, topological order
    R: object = None
    K: int = 1


def compatible(a: tuple, b: tuple) -> tuple | None:
    (ra, ka), (rb, kb) = a, b
    if not dims_equal(ra, rb):
        return None
    if ka != kb and 1 not in (ka, kb):
        return None
    return ra, max(ka, kb)


def _lit(v: float) -> str:
    if math.isinf(v):
        return "float('inf')" if v > 0 else "float('-inf')"
    if math.isnan(v):
        return "float('nan')"
    return repr(float(v))


_TL_DTYPE = {DType.F32: "tl.float32", DType.F16: "tl.float16"}


@dataclass
class Generated:
    name: str
    source: str
    inputs: list          # external value names, in argument order
    input_kinds: list
    outputs: list         # member value names stored, in argument order
    output_kinds: list
    block_r: int
    block_k: int
    note: str


def generate(g: Graph, cl: Cluster, outputs: list[str]) -> Generated:
    """The Triton source of one fused cluster (function name derived from its content)."""
    R, K = cl.R, cl.K
    members = set(cl.members)
    ext: list[str] = []
    lits: dict[str, float] = {}
    for m in cl.members:
        for i in g.node(m).inputs:
            if i in members or i in ext or i in lits:
                continue
            v = full_value(g, i)
            if v is not None:
                lits[i] = v
            else:
                ext.append(i)
    var: dict[str, str] = {}
    kinds: dict[str, str] = {}
    body: list[str] = []
    in_kinds = []
    for j, x in enumerate(ext):
        k = value_kind(g.type_of(x), R, K)
        kinds[x] = k
        in_kinds.append(k)
        var[x] = f"x{j}"
        P, S = f"X{j}", f"X{j}_rs"
        mask = _bool(g.type_of(x))                   # a mask: an int1 tile
        zero = "0" if mask else "0.0"
        load = {"f": f"tl.load({P} + r64 * {S} + c, mask=rm & cm, other={zero})",
                "r": f"tl.load({P} + r64 * {S}, mask=rm, other={zero})",
                "c": f"tl.load({P} + c, mask=cm, other={zero})",
                "s": f"tl.load({P})"}[k]
        body.append(f"    x{j} = ({load} != 0)" if mask else f"    x{j} = {load}.to(tl.float32)")
    for x, v in lits.items():
        if _bool(g.type_of(x)):
            var[x] = f"tl.full([1, 1], {bool(v)}, tl.int1)"
        else:
            var[x] = f"tl.full([1, 1], {_lit(v)}, tl.float32)"
        kinds[x] = "s"
    for idx, m in enumerate(cl.members):
        n = g.node(m)
        kinds[m] = value_kind(n.type, R, K)
        a = [var[i] for i in n.inputs]
        if n.op in MULTILINE_EXPR:
            pre, expr = MULTILINE_EXPR[n.op](g, n, a, [kinds[i] for i in n.inputs], kinds[m], f"t{idx}")
            body += [f"    {line}" for line in pre]
        else:
            expr = _expr(g, n, a, [kinds[i] for i in n.inputs], kinds[m])
        if n.type.dtype is DType.F16:
            expr = f"({expr}).to(tl.float16).to(tl.float32)"
        var[m] = f"v{idx}"
        body.append(f"    v{idx} = {expr}   # %{m} = {n.op.value}")
    params = [f"X{j}, X{j}_rs" for j in range(len(ext))] + [f"Y{j}, Y{j}_rs" for j in range(len(outputs))]
    out_kinds = []
    for j, o in enumerate(outputs):
        k = kinds[o]
        out_kinds.append(k)
        if k == "f":
            body.append(f"    tl.store(Y{j} + r64 * Y{j}_rs + c, tl.broadcast_to({var[o]}, [BLOCK_R, BLOCK_K])"
                        f".to(Y{j}.dtype.element_ty), mask=rm & cm)")
        else:
            body.append(f"    tl.store(Y{j} + r64 * Y{j}_rs, tl.broadcast_to({var[o]}, [BLOCK_R, 1])"
                        f".to(Y{j}.dtype.element_ty), mask=rm)")
    block_k = 1 << max(0, (K - 1).bit_length())
    block_r = max(1, min(128, TILE_ELEMS // block_k))
    ops = ", ".join(g.node(m).op.value for m in cl.members) or "copy"
    note = f"fused elementwise [{ops}] over [R, {K}]"
    head = (f"@triton.jit\ndef NAME({', '.join(params + ['R'])}, K: tl.constexpr, BLOCK_R: tl.constexpr, "
            f"BLOCK_K: tl.constexpr):\n"
            f'    """{note}: {len(ext)} input(s), {len(outputs)} output(s)."""\n'
            "    r = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)[:, None]\n"
            "    c = tl.arange(0, BLOCK_K)[None, :]\n"
            "    rm = r < R\n"
            "    cm = c < K\n"
            "    r64 = r.to(tl.int64)\n")
    src = head + "\n".join(body) + "\n"
    name = "ew_" + hashlib.sha1(src.encode()).hexdigest()[:12]
    return Generated(name=name, source=src.replace("def NAME(", f"def {name}(", 1), inputs=ext,
                     input_kinds=in_kinds, outputs=list(outputs), output_kinds=out_kinds,
                     block_r=block_r, block_k=block_k, note=note)


# tl.maximum / tl.minimum drop a NaN operand by default; torch (and the IR) propagate it
NAN = "propagate_nan=tl.PropagateNan.ALL"

# ---- the Triton expression of each op, over register tiles named ``{x}`` (unary) / ``{a}``, ``{b}`` (binary)
UNARY_EXPR: dict[Op, str] = {
    Op.RELU: f"tl.maximum({{x}}, 0.0, {NAN})",
    Op.SIGMOID: "_sigmoid({x})",
    Op.TANH: "_tanh({x})",
    Op.SILU: f"_act({{x}}, {ACT_CODES['silu']})",
    Op.NEG: "(-{x})",
    Op.EXP: "tl.exp({x})",
    Op.LOG: "tl.log({x})",
    Op.SQRT: "tl.sqrt_rn({x})",
    Op.RSQRT: "(1.0 / tl.sqrt_rn({x}))",
    Op.ABS: "tl.abs({x})",
}
BINARY_EXPR: dict[Op, str] = {
    Op.ADD: "({a} + {b})",
    Op.SUB: "({a} - {b})",
    Op.MUL: "({a} * {b})",
    Op.DIV: "({a} / {b})",
    Op.MAXIMUM: f"tl.maximum({{a}}, {{b}}, {NAN})",
    Op.MINIMUM: f"tl.minimum({{a}}, {{b}}, {NAN})",
}
# comparisons give int1 tiles (IEEE: NaN compares unequal to everything); logic and selection read them
MASK_EXPR: dict[Op, str] = {
    Op.EQ: "({a} == {b})",
    Op.NE: "({a} != {b})",
    Op.LT: "({a} < {b})",
    Op.LE: "({a} <= {b})",
    Op.GT: "({a} > {b})",
    Op.GE: "({a} >= {b})",
    Op.LOGICAL_AND: "({a} & {b})",
    Op.LOGICAL_OR: "({a} | {b})",
}
# pow by a literal exponent (other exponents leave the node to torch: node_extent)
POW_EXPR: dict[float, str] = {
    0.5: "tl.sqrt_rn({x})",
    1.0: "({x})",
    2.0: "({x} * {x})",
    3.0: "({x} * {x} * {x})",
    -1.0: "(1.0 / {x})",
    -0.5: "(1.0 / tl.sqrt_rn({x}))",
}
# row reductions over the K columns of a full tile (``cm`` masks the padding columns)
REDUCE_EXPR: dict[Op, str] = {
    Op.SUM: "_rsum(tl.where(cm, {x}, 0.0), 1)[:, None]",
    Op.MEAN: "(_rsum(tl.where(cm, {x}, 0.0), 1)[:, None] / {cols})",
    # the row's max; NaN when the row has a NaN (the max combine drops NaN; torch.amax propagates it)
    Op.AMAX: "tl.where(_rmax(tl.where(cm & ({x} != {x}), 1.0, 0.0), 1)[:, None] > 0.0, float('nan'), "
             "_rmax(tl.where(cm, {x}, float('-inf')), 1)[:, None])",
}
NORM_EXPR: dict[float, str] = {
    2.0: "tl.sqrt_rn(_rsum(tl.where(cm, {x} * {x}, 0.0), 1))[:, None]",
    1.0: "_rsum(tl.where(cm, tl.abs({x}), 0.0), 1)[:, None]",
    math.inf: "tl.where(_rmax(tl.where(cm & ({x} != {x}), 1.0, 0.0), 1)[:, None] > 0.0, float('nan'), "
              "_rmax(tl.where(cm, tl.abs({x}), 0.0), 1)[:, None])",
}
# a reduction over one column (an "r" tile) is the value itself (the norm: its magnitude)
REDUCE_ONE_COLUMN: dict[Op, str] = {Op.SUM: "{x}", Op.MEAN: "{x}", Op.AMAX: "{x}", Op.NORM: "tl.abs({x})"}


def _gelu(g, n, a, ka, kout) -> str:
    act = "gelu_tanh" if n.attr("approximate", "none") == "tanh" else "gelu"
    return f"_act({a[0]}, {ACT_CODES[act]})"


def _pow(g, n, a, ka, kout) -> str:
    return POW_EXPR[scalar_full(g, n.inputs[1])].format(x=a[0])


def _clamp(g, n, a, ka, kout) -> str:
    x = a[0]
    lo, hi = n.attr("min", None), n.attr("max", None)
    if lo is not None:
        x = f"tl.maximum({x}, {_lit(lo)}, {NAN})"
    if hi is not None:
        x = f"tl.minimum({x}, {_lit(hi)}, {NAN})"
    return x


def _expand(g, n, a, ka, kout) -> str:
    return f"tl.broadcast_to({a[0]}, [BLOCK_R, {'BLOCK_K' if kout == 'f' else '1'}])"


def _reduce(g, n, a, ka, kout) -> str:
    x, k = a[0], ka[0]
    if k != "f":
        return f"tl.broadcast_to({REDUCE_ONE_COLUMN[n.op].format(x=x)}, [BLOCK_R, 1])"
    if n.op is Op.NORM:
        return NORM_EXPR[float(n.attr("p", 2.0))].format(x=x)
    cols = g.type_of(n.inputs[0]).shape[-1]
    return REDUCE_EXPR[n.op].format(x=x, cols=repr(float(cols)))


def _logical_not(g, n, a, ka, kout) -> str:
    return f"({a[0]} == 0)"


def _where(g, n, a, ka, kout) -> str:
    return f"tl.where({a[0]}, {a[1]}, {a[2]})"


def _cast(g, n, a, ka, kout) -> str:
    """To a float: masks become 0.0 / 1.0; floats stay fp32 tiles (fp16 results are rounded by generate)."""
    if _bool(g.type_of(n.inputs[0])):
        return f"{a[0]}.to(tl.float32)"
    return f"({a[0]})"


def _softmax(g, n, a, ka, kout, tmp) -> tuple[list[str], str]:
    """exp(x - max) / sum(exp(x - max)) over the row's K columns (a row of -inf, or with NaN or +inf: NaN,
    like torch); over one column: 1 (NaN for a non-finite value)."""
    x = a[0]
    if ka[0] != "f":
        return [], f"(tl.exp({x} - {x}) / tl.exp({x} - {x}))"
    return [f"{tmp}m = _rmax(tl.where(cm, {x}, float('-inf')), 1)[:, None]",
            f"{tmp}e = tl.where(cm, tl.exp({x} - {tmp}m), 0.0)"], f"({tmp}e / _rsum({tmp}e, 1)[:, None])"


# ops whose expression takes helper lines first: rule(g, node, vars, kinds, output kind, temp prefix)
MULTILINE_EXPR = {Op.SOFTMAX: _softmax}

# ops whose expression depends on attributes or tile kinds: rule(g, node, input vars, input kinds, output kind)
SPECIAL_EXPR = {Op.GELU: _gelu, Op.POW: _pow, Op.CLAMP: _clamp, Op.EXPAND: _expand, Op.CAST: _cast,
                Op.LOGICAL_NOT: _logical_not, Op.WHERE: _where, **{op: _reduce for op in REDUCE_OPS}}
FUSED_OPS = (frozenset(UNARY_EXPR) | frozenset(BINARY_EXPR) | frozenset(MASK_EXPR) | frozenset(SPECIAL_EXPR)
             | frozenset(MULTILINE_EXPR))


def _expr(g: Graph, n, a: list[str], ka: list[str], kout: str) -> str:
    op = n.op
    if op in UNARY_EXPR:
        return UNARY_EXPR[op].format(x=a[0])
    if op in BINARY_EXPR:
        return BINARY_EXPR[op].format(a=a[0], b=a[1])
    if op in MASK_EXPR:
        return MASK_EXPR[op].format(a=a[0], b=a[1])
    if op in SPECIAL_EXPR:
        return SPECIAL_EXPR[op](g, n, a, ka, kout)
    raise NotImplementedError(f"%{n.name}: no fused-kernel expression for {op.value}; fused ops: "
                              + ", ".join(sorted(o.value for o in FUSED_OPS)))


def generate_copy(K: int) -> Generated:
    """A kernel copying [R, K] rows between two row windows (a concat input that cannot write its slot)."""
    block_k = 1 << max(0, (K - 1).bit_length())
    block_r = max(1, min(128, TILE_ELEMS // block_k))
    note = "copy of [R, K] rows into a concat slot"
    src = ("@triton.jit\n"
           "def NAME(X0, X0_rs, Y0, Y0_rs, R, K: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_K: tl.constexpr):\n"
           f'    """{note}."""\n'
           "    r = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)[:, None]\n"
           "    c = tl.arange(0, BLOCK_K)[None, :]\n"
           "    m = (r < R) & (c < K)\n"
           "    r64 = r.to(tl.int64)\n"
           "    x = tl.load(X0 + r64 * X0_rs + c, mask=m, other=0.0)\n"
           "    tl.store(Y0 + r64 * Y0_rs + c, x.to(Y0.dtype.element_ty), mask=m)\n")
    name = "copy_rows"
    return Generated(name=name, source=src.replace("def NAME(", f"def {name}(", 1), inputs=[], input_kinds=["f"],
                     outputs=[], output_kinds=["f"], block_r=block_r, block_k=block_k, note=note)
