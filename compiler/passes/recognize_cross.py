"""recognize_cross: DCN cross layers become CROSS_LAYER ops.

Full rank (DCN-v2 paper):   x_{l+1} = x0 * (W x_l + b) + x_l
Low rank (torchrec LowRankCrossNet): x_{l+1} = x0 * (W (V x_l) + b) + x_l
"""
from __future__ import annotations

from ..ir import Graph, Op
from . import register_pass
from .patterns import producer, rewrite_matches


def _match(g: Graph, n):
    if n.op is not Op.ADD:
        return None
    for mul_name, xl in (n.inputs, n.inputs[::-1]):
        mul = producer(g, mul_name, Op.MUL)
        if mul is None or g.num_uses(mul_name) != 1:
            continue
        for x0, lin_name in (mul.inputs, mul.inputs[::-1]):
            lin = producer(g, lin_name, Op.LINEAR)
            if lin is None or len(lin.inputs) != 3 or g.num_uses(lin_name) != 1:
                continue
            x0t, xlt = g.type_of(x0), g.type_of(xl)
            if not (x0t.rank == 2 and x0t.same_as(xlt) and x0t.same_as(n.type)):
                continue
            w, bias = lin.inputs[1], lin.inputs[2]
            if lin.inputs[0] == xl:
                return {"x0": x0, "xl": xl, "weights": (w, bias), "low_rank": False}
            inner = producer(g, lin.inputs[0], Op.LINEAR)
            if inner is not None and len(inner.inputs) == 2 and inner.inputs[0] == xl \
                    and g.num_uses(inner.name) == 1:
                return {"x0": x0, "xl": xl, "weights": (inner.inputs[1], w, bias), "low_rank": True}
    return None


@register_pass("recognize_cross", stage="recognize")
def recognize_cross(g: Graph) -> Graph:
    """Raise x0 * (W x + b) + x (and its low-rank form) into CROSS_LAYER."""
    return rewrite_matches(g, _match, lambda b, n, m: b.emit(
        Op.CROSS_LAYER, (m["x0"], m["xl"]) + m["weights"], n.type, {"low_rank": m["low_rank"]},
        hint="cross", loc=n.loc))
