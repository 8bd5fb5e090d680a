"""xrec IR (after the default pipeline) -> one StableHLO module with static shapes.

Lowering rules are registered in xrec.lowering's registry for target "xla"
(``@rule(Op...)``: dense layers in ``dense.py``, embedding ops in
``sparse.py``, the rest here); each reads the node's inputs as
:class:`~.mlir.Value`s and returns the node's value. The
batch symbol ``B`` becomes the executable's static batch; sparse features
arrive bucketed (see ``bucketing.py``) in two arguments shared by all
features: ``ids [B, sum M_f]`` and ``lengths [B, F]`` int32 (plus
``weights [B, sum M_w]`` for per-sample weights).

The function's arguments, in order: dense inputs, ids, lengths (weights),
then the parameters (``weights="args"``; with ``weights="constants"`` they
are baked into the module instead). The :class:`Lowered` result lists every
argument with its role, so the runner (and a TPU host) can feed them.
"""
from __future__ import annotations

import math
import re

import numpy as np
import sympy

from xrec.ir import Graph, Node, Op
from xrec.ir.types import BATCH

from . import layout as L
from xrec.lowering import TargetLowering, rules_of

from .context import FeatureSlot, LoweringError
from .context import TARGET, Ctx, Lowered, Plan, _where, rule, unsupported
from .dense import (activation, lower_cross, lower_dot_interaction, lower_fm, lower_linear, lower_matmul,
                    lower_mlp)
from .mlir import ELEM, Value, tensor_type
from .sparse import lower_bag, lower_embedding, lower_group, lower_jagged, plan_features

__all__ = ["LOWERINGS", "lower_graph", "Plan", "Lowered", "FeatureSlot", "LoweringError"]


# ---------------------------------------------------------------- generic ops
_UNARY = {Op.NEG: "negate", Op.EXP: "exponential", Op.LOG: "log", Op.SQRT: "sqrt", Op.RSQRT: "rsqrt",
          Op.ABS: "abs", Op.TANH: "tanh", Op.SIGMOID: "logistic"}
_BINARY = {Op.ADD: "add", Op.SUB: "subtract", Op.MUL: "multiply", Op.DIV: "divide", Op.POW: "power",
           Op.MAXIMUM: "maximum", Op.MINIMUM: "minimum"}


@rule(Op.RELU, Op.SIGMOID, Op.TANH, Op.GELU, Op.SILU, Op.NEG, Op.EXP, Op.LOG, Op.SQRT, Op.RSQRT, Op.ABS, Op.CLAMP,
      Op.CAST)
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


@rule(*_BINARY)
def lower_binary(c: Ctx, n: Node) -> Value:
    shape = c.shape(n)
    a = c.b.broadcast_to(c.value(n, n.inputs[0]), shape)
    w = c.b.broadcast_to(c.value(n, n.inputs[1]), shape)
    return c.b.binary(_BINARY[n.op], a, w)


_COMPARE = {Op.EQ: "EQ", Op.NE: "NE", Op.LT: "LT", Op.LE: "LE", Op.GT: "GT", Op.GE: "GE"}


@rule(*_COMPARE)
def lower_compare(c: Ctx, n: Node) -> Value:
    """IEEE comparison (compare type FLOAT: NaN is unequal to everything) -> i1."""
    shape = c.shape(n)
    a = c.b.broadcast_to(c.value(n, n.inputs[0]), shape)
    w = c.b.broadcast_to(c.value(n, n.inputs[1]), shape)
    return c.b.compare(_COMPARE[n.op], a, w)


@rule(Op.LOGICAL_AND, Op.LOGICAL_OR, Op.LOGICAL_NOT)
def lower_logical(c: Ctx, n: Node) -> Value:
    shape = c.shape(n)
    xs = [c.b.broadcast_to(c.value(n, i), shape) for i in n.inputs]
    if n.op is Op.LOGICAL_NOT:
        return c.b.unary("not", xs[0])
    return c.b.binary("and" if n.op is Op.LOGICAL_AND else "or", xs[0], xs[1])


@rule(Op.WHERE)
def lower_where(c: Ctx, n: Node) -> Value:
    shape = c.shape(n)
    cond, a, w = (c.b.broadcast_to(c.value(n, i), shape) for i in n.inputs)
    return c.b.select(cond, a, w)


@rule(Op.SOFTMAX)
def lower_softmax(c: Ctx, n: Node) -> Value:
    """exp(x - max) / sum(exp(x - max)) along the dim (a row of -inf gives NaN, as in PyTorch)."""
    b = c.b
    x = c.value(n, n.inputs[0])
    d = n.attr("dim") % x.rank
    if d in c.batch_dims(n, c.g.type_of(n.inputs[0])):
        raise unsupported(n, f"it normalizes over the batch (dim {d}); the executable pads the batch to a static "
                             "size, which would change the result")
    keep = [i for i in range(x.rank) if i != d]
    m = b.broadcast(b.reduce(x, [d], "maximum"), x.shape, keep)
    e = b.unary("exponential", b.binary("subtract", x, m))
    s = b.broadcast(b.reduce(e, [d], "add"), x.shape, keep)
    return b.binary("divide", e, s)


def _reduce_dims(c: Ctx, n: Node, x: Value) -> list[int]:
    dims = sorted({d % x.rank for d in n.attr("dims")})
    across = set(dims) & c.batch_dims(n, c.g.type_of(n.inputs[0]))
    if across:
        raise unsupported(n, f"it reduces over the batch (dims {sorted(across)}); the executable pads the batch "
                             "to a static size, which would change the result")
    return dims


@rule(Op.SUM, Op.MEAN, Op.AMAX, Op.NORM)
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


@rule(Op.LAYER_NORM)
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


@rule(Op.RESHAPE)
def lower_reshape(c: Ctx, n: Node) -> Value:
    return c.b.reshape(c.value(n, n.inputs[0]), c.shape(n))


@rule(Op.PERMUTE)
def lower_permute(c: Ctx, n: Node) -> Value:
    return c.b.transpose(c.value(n, n.inputs[0]), n.attr("perm"))


@rule(Op.EXPAND)
def lower_expand(c: Ctx, n: Node) -> Value:
    return c.b.broadcast_to(c.value(n, n.inputs[0]), c.shape(n))


@rule(Op.CAT)
def lower_cat(c: Ctx, n: Node) -> Value:
    xs = [c.value(n, i) for i in n.inputs]
    return c.b.concat(xs, n.attr("dim") % xs[0].rank)


@rule(Op.SLICE)
def lower_slice(c: Ctx, n: Node) -> Value:
    x = c.value(n, n.inputs[0])
    d = n.attr("dim") % x.rank
    start, stop, step = slice(n.attr("start"), n.attr("end"), n.attr("step", 1)).indices(x.shape[d])
    stop = max(stop, start)
    return c.b.slice_dim(x, d, start, stop, step)


@rule(Op.INDEX)
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


@rule(Op.FULL)
def lower_full(c: Ctx, n: Node) -> Value:
    return c.b.full(n.attr("value"), c.shape(n), ELEM[n.type.dtype.value])


def lower_param(c: Ctx, n: Node) -> Value:
    return c.weight(n, n.name, {})


# op -> rule (a live view of the registry's "xla" rules)
LOWERINGS = rules_of(TARGET)


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
    low = TargetLowering(TARGET, strict=plan.strict)
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
        lower_node = low.rule(n)
        b.comment(_describe(n))
        v = lower_node(c, n)
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
    return Lowered(text=text, batch=plan.batch, args=[a[1] for a in args], features=slots, outputs=outs,
                   fallbacks=low.fallbacks_used())


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
