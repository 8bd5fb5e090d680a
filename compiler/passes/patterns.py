"""Small matching helpers shared by the recognizer passes."""
from __future__ import annotations

import numpy as np

from typing import Callable

from ..ir import Graph, GraphBuilder, Node, Op


def producer(g: Graph, name: str, *ops: Op) -> Node | None:
    """The node defining ``name`` if its op is one of ``ops`` (any op when none given)."""
    n = g.by_name.get(name)
    if n is None or (ops and n.op not in ops):
        return None
    return n


def scalar_value(g: Graph, name: str):
    """The value of a 0-d/1-element constant (FULL, or a tiny PARAM), else None."""
    n = g.by_name.get(name)
    if n is None:
        return None
    if n.op is Op.FULL and all(d == 1 for d in n.type.shape if isinstance(d, int)):
        return n.attr("value")
    if n.op is Op.PARAM:
        a = g.params[n.attr("name")]
        if a.size == 1:
            return a.reshape(()).item()
    return None


def is_scalar(g: Graph, name: str, value: float) -> bool:
    v = scalar_value(g, name)
    return v is not None and float(v) == float(value)


def const_array(g: Graph, name: str) -> np.ndarray | None:
    n = g.by_name.get(name)
    if n is not None and n.op is Op.PARAM:
        return g.params[n.attr("name")]
    return None


def square_of(g: Graph, name: str) -> str | None:
    """If ``name`` is x*x or x**2, return x."""
    n = g.by_name.get(name)
    if n is None:
        return None
    if n.op is Op.MUL and n.inputs[0] == n.inputs[1]:
        return n.inputs[0]
    if n.op is Op.POW and is_scalar(g, n.inputs[1], 2.0):
        return n.inputs[0]
    return None


def rewrite_matches(g: Graph, match: Callable[[Graph, Node], object],
                    replacement: Callable[[GraphBuilder, Node, object], str]) -> Graph:
    """Copy ``g``; where ``match(g, n)`` finds something, ``replacement`` emits the new value for ``n``.

    The matched subgraph's other nodes are copied too and vanish when nothing else uses them.
    """
    b = GraphBuilder(g)
    for n in g.nodes:
        m = match(g, n)
        if m is None:
            b.copy(n)
        else:
            b.replace(n.name, replacement(b, n, m))
    return b.finish()
