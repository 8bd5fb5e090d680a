"""Planning step 2, inlining: which elementwise values are computed inside the loop of their one consumer.

An elementwise value (arithmetic, comparison, logic, ``where``; or ``expand``/``full``) with one use, whose consumer is
itself a loop (elementwise, broadcast or reduction), becomes part of that loop's
expression instead of a buffer: a chain ``relu(x * w + b)`` is one loop. A
``full`` is always a literal wherever it is read. Graph outputs and folded
constants are never inlined.
"""
from __future__ import annotations

from typing import Callable, Container

from xrec.ir import Graph, Node, Op
from xrec.ir.ops import COMPARE, ELEMENTWISE, LOGICAL, REDUCE

INLINE_OPS = ELEMENTWISE | COMPARE | LOGICAL | {Op.WHERE, Op.EXPAND, Op.FULL}


def consumer_inlines(user: Node) -> bool:
    """Whether ``user`` computes an expression it can pull a producer into (a loop)."""
    return user.op in INLINE_OPS or user.op in REDUCE


def choose_inline(g: Graph, folded: Container[str], rowwise: Callable[[str], bool]) -> set[str]:
    """Names of the values of ``g`` computed inside their consumer's loop.

    ``folded``: values folded at compile time (never inlined); ``rowwise(name)``: whether a value has the
    batch as its leading dim (only those are inlined, so a loop never recomputes a constant per row).
    """
    inline: set[str] = set()
    for n in g.nodes:
        if n.op not in INLINE_OPS or n.name in folded or n.name in g.outputs:
            continue
        if n.op is Op.FULL:
            inline.add(n.name)          # a literal wherever an expression reads it
            continue
        users = g.users.get(n.name, [])
        if len(users) == 1 and g.num_uses(n.name) == 1 and consumer_inlines(users[0]) and rowwise(n.name):
            inline.add(n.name)
    return inline
