"""recognize_fm: the factorization-machine second-order term becomes one FM op.

Pattern (DeepFM, Rendle's identity): 0.5 * sum_k((sum_f v)^2 - sum_f v^2)
over v [B, F, K], in the orders PyTorch code commonly writes it.
"""
from __future__ import annotations

from ..ir import Graph, Op
from . import register_pass
from .patterns import is_scalar, producer, rewrite_matches, square_of


def _half_of(g: Graph, name: str) -> str | None:
    """If ``name`` is 0.5 * y (either order) or y / 2, return y."""
    n = g.by_name.get(name)
    if n is None:
        return None
    if n.op is Op.MUL:
        if is_scalar(g, n.inputs[0], 0.5):
            return n.inputs[1]
        if is_scalar(g, n.inputs[1], 0.5):
            return n.inputs[0]
    if n.op is Op.DIV and is_scalar(g, n.inputs[1], 2.0):
        return n.inputs[0]
    return None


def _is_sum(n, dims, keepdim=None) -> bool:
    return n is not None and n.op is Op.SUM and tuple(n.attr("dims")) == dims and \
        (keepdim is None or n.attr("keepdim") == keepdim)


def _diff_v(g: Graph, name: str) -> str | None:
    """If ``name`` is (sum_f v)^2 - sum_f v^2 with v [B, F, K], return v."""
    sub = producer(g, name, Op.SUB)
    if sub is None:
        return None
    sq_of_sum, sum_of_sq = sub.inputs
    s = producer(g, square_of(g, sq_of_sum) or "", Op.SUM)
    t = producer(g, sum_of_sq, Op.SUM)
    if not (_is_sum(s, (1,), False) and _is_sum(t, (1,), False)):
        return None
    v = s.inputs[0]
    if square_of(g, t.inputs[0]) != v or g.type_of(v).rank != 3:
        return None
    return v


def _match(g: Graph, n):
    # sum_k(0.5 * diff)  or  0.5 * sum_k(diff)
    if n.op is Op.SUM and tuple(n.attr("dims")) == (1,):
        inner = _half_of(g, n.inputs[0])
        v = _diff_v(g, inner) if inner else None
        return (v, n.attr("keepdim")) if v else None
    inner = _half_of(g, n.name)
    s = producer(g, inner or "", Op.SUM)
    if _is_sum(s, (1,)):
        v = _diff_v(g, s.inputs[0])
        return (v, s.attr("keepdim")) if v else None
    return None


@register_pass("recognize_fm", stage="recognize")
def recognize_fm(g: Graph) -> Graph:
    """Raise 0.5 * ((sum_f v)^2 - sum_f v^2).sum(k) into FM(v)."""
    return rewrite_matches(g, _match, lambda b, n, m: b.emit(
        Op.FM, (m[0],), n.type, {"keepdim": bool(m[1])}, hint="fm", loc=n.loc))
