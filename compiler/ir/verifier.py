"""Graph verifier: structure (SSA, order, references) plus the per-op rules table."""
from __future__ import annotations

from .graph import Graph
from .ops import Op
from .rules import TypeRuleError, infer_type
from .types import DType, TensorType


class VerifyError(Exception):
    """The graph breaks an IR invariant; the message names the value and the rule."""


def verify(g: Graph, where: str = "") -> Graph:
    ctx = f" (after {where})" if where else ""
    seen: dict[str, object] = {}
    for n in g.nodes:
        if n.name in seen:
            raise VerifyError(f"value %{n.name} is defined twice{ctx}")
        for i in n.inputs:
            if i not in seen:
                raise VerifyError(f"%{n.name} uses %{i} before it is defined (or it is undefined){ctx}")
        try:
            t = infer_type(n, [seen[i] for i in n.inputs])
        except TypeRuleError as e:
            raise VerifyError(f"{e}{ctx}") from None
        if not t.same_as(n.type):
            raise VerifyError(f"%{n.name} = {n.op.value}: recorded type {n.type} but rule gives {t}{ctx}")
        if n.op is Op.PARAM:
            key = n.attr("name")
            if key not in g.params:
                raise VerifyError(f"%{n.name} refers to missing parameter {key!r}{ctx}")
            arr = g.params[key]
            want = n.type
            if not isinstance(want, TensorType) or tuple(arr.shape) != want.shape:
                raise VerifyError(f"parameter {key!r} has shape {arr.shape}, node says {want}{ctx}")
            np_want = "uint16" if want.dtype is DType.BF16 else want.dtype.to_numpy()
            if arr.dtype != np_want:
                raise VerifyError(f"parameter {key!r} has dtype {arr.dtype}, node says {want.dtype.value}{ctx}")
        if n.op is Op.INPUT and n.attr("kind", None) is None:
            raise VerifyError(f"input %{n.name} lacks its 'kind' attribute{ctx}")
        seen[n.name] = n.type
    for o in g.outputs:
        if o not in seen:
            raise VerifyError(f"output %{o} is not defined{ctx}")
    return g
