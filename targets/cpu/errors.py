"""The cpu target's lowering errors: xrec.lowering's one LoweringError, naming the op, the node, its source
line and the target (``e.op``, ``e.node``, ``e.target`` for programs)."""
from __future__ import annotations

from xrec.ir import Node
from xrec.lowering import LoweringError

TARGET = "cpu"


def unsupported(n: Node, why: str) -> LoweringError:
    """The cpu cannot lower node ``n`` as it stands, because ``why``."""
    return LoweringError(why, target=TARGET, node=n)
