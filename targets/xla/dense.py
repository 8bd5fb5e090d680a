"""Lowering of the dense layers: MLP / LINEAR / CROSS_LAYER as padded dot_generals, MATMUL, the dot
interaction and FM, and the activations (erf for GELU in plain StableHLO)."""
from __future__ import annotations

import math

import numpy as np

from xrec.ir import Node, Op, mlp_layers

from . import layout as L
from .context import Ctx, rule, unsupported
from .mlir import Builder, Value


# ---------------------------------------------------------------- activations
_ERF_ALPHA = (0.00022905065861350646, 0.0034082910107109506, 0.050955695062380861,
              0.18520832239976145, 1.128379143519084)
_ERF_BETA = (-1.1791602954361697e-7, 0.000023547966471313185, 0.0010179625278914885,
             0.014070470171167667, 0.11098505178285362, 0.49746925110067538, 1.0)


def _erf(b: Builder, x: Value) -> Value:
    """erf as XLA's f32 rational approximation, in plain StableHLO (no chlo: portable artifacts)."""
    c = 3.7439211627767994
    xin = x
    x = b.clamp(b.scalar(-c, x.elem), x, b.scalar(c, x.elem))
    x2 = b.binary("multiply", x, x)

    def poly(coefs):
        acc = b.full(coefs[0], x.shape, x.elem)
        for k in coefs[1:]:
            acc = b.binary("add", b.binary("multiply", acc, x2), b.full(k, x.shape, x.elem))
        return acc
    r = b.binary("divide", b.binary("multiply", x, poly(_ERF_ALPHA)), poly(_ERF_BETA))
    # exactly +-1 from |x| >= c, where f32 erf is within 1.2e-7 of +-1 (the fit gives 1 - 1.8e-7): so
    # gelu(-200) is -0 (not -1.8e-5) and gelu(-inf) = -inf * 0 = NaN, both as in PyTorch; NaN stays NaN
    sat = b.compare("GE", b.unary("abs", xin), b.full(c, x.shape, x.elem))
    return b.select(sat, b.unary("sign", xin), r)


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


@rule(Op.MLP)
def lower_mlp(c: Ctx, n: Node) -> Value:
    return _dense_chain(c, n, n.inputs[0], mlp_layers(n))


@rule(Op.LINEAR)
def lower_linear(c: Ctx, n: Node) -> Value:
    return _dense_chain(c, n, n.inputs[0], [(n.inputs[1], n.inputs[2] if len(n.inputs) > 2 else None, "none")])


@rule(Op.CROSS_LAYER)
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


@rule(Op.MATMUL)
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


@rule(Op.DOT_INTERACTION)
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


@rule(Op.FM)
def lower_fm(c: Ctx, n: Node) -> Value:
    b = c.b
    v = c.value(n, n.inputs[0])
    s = b.reduce(v, [1], "add")
    sq = b.reduce(b.binary("multiply", v, v), [1], "add")
    d = b.binary("subtract", b.binary("multiply", s, s), sq)
    r = b.binary("multiply", b.reduce(d, [1], "add"), b.full(0.5, (v.shape[0],), v.elem))
    return b.reshape(r, c.shape(n))
