"""The cpu target's lowering errors: the one LoweringError of xrec.lowering, naming the op, node and source line."""
from __future__ import annotations

from xrec.ir import Node
from xrec.lowering import LoweringError

TARGET = "cpu"


def unsupported(n: Node, why: str) -> LoweringError:
    """The cpu cannot lower node ``n`` as it stands, because ``why``."""
    where = n.loc or "an unknown source line"
    return LoweringError(f"cpu target cannot lower %{n.name} = {n.op.value}(...) from {where}: {why}")
