"""Planning step 1, constant folding: values computed from parameters alone are evaluated at compile time.

A node folds when its shape is static (no batch or other symbol) and every input
is a parameter, a static ``full`` or an already folded value; the numpy
interpreter (the IR's definition of each op) computes it. Folded values become
weights (``@fold/<name>`` entries of weights.bin) when a step reads them.
"""
from __future__ import annotations

import numpy as np

from xrec.ir import Graph, Op
from xrec.ir.interpreter import IMPLS, Interpreter
from xrec.ir.types import TensorType


def fold_constants(g: Graph) -> dict[str, np.ndarray]:
    """The value of every node of ``g`` that depends on parameters alone, by node name (graph order)."""
    folded: dict[str, np.ndarray] = {}
    interp = Interpreter(g)
    for n in g.nodes:
        if n.op in (Op.INPUT, Op.PARAM, Op.FULL, Op.JAGGED):
            continue
        t = n.type
        if not isinstance(t, TensorType) or any(not isinstance(d, int) for d in t.shape):
            continue
        srcs = [g.node(i) for i in n.inputs]
        if all(s.op in (Op.PARAM, Op.FULL) or s.name in folded for s in srcs):
            args = [const_array(g, folded, s.name) for s in srcs]
            folded[n.name] = np.ascontiguousarray(IMPLS[n.op](interp, n, args, {}))
    return folded


def const_array(g: Graph, folded: dict[str, np.ndarray], name: str) -> np.ndarray:
    """The array of constant value ``name``: a parameter, a ``full`` or a folded value."""
    n = g.node(name)
    if n.op is Op.PARAM:
        return g.param(n)
    if n.op is Op.FULL:
        return np.full(tuple(n.type.shape), n.attr("value"), dtype=n.type.dtype.to_numpy())
    return folded[name]


def is_const(g: Graph, folded: dict[str, np.ndarray], name: str) -> bool:
    """Whether ``name`` is known at compile time (a parameter, a folded value or a static ``full``)."""
    n = g.node(name)
    return n.op is Op.PARAM or name in folded or (
        n.op is Op.FULL and all(isinstance(d, int) for d in n.type.shape))
