"""recognize_interaction: DLRM's pairwise dot interaction becomes one DOT_INTERACTION op.

Pattern (facebookresearch/dlrm, torchrec): Z = T @ T^T over T [B, F, D], then a
constant gather Z[:, li, lj]. The pairs (li, lj) are kept as the op's attribute.
"""
from __future__ import annotations

from ..ir import Graph, Op
from . import register_pass
from .patterns import const_array, producer, rewrite_matches


def _match(g: Graph, n):
    if n.op is not Op.INDEX or n.attr("dim") != 1 or len(n.inputs) != 3:
        return None
    mm = producer(g, n.inputs[0], Op.MATMUL)
    if mm is None or g.num_uses(mm.name) != 1:
        return None
    t_name, tt_name = mm.inputs
    tt = producer(g, tt_name, Op.PERMUTE)
    if tt is None or tt.inputs[0] != t_name or tuple(tt.attr("perm")) != (0, 2, 1):
        return None
    if g.type_of(t_name).rank != 3:
        return None
    li, lj = const_array(g, n.inputs[1]), const_array(g, n.inputs[2])
    if li is None or lj is None or li.ndim != 1 or li.shape != lj.shape:
        return None
    return t_name, tuple((int(i), int(j)) for i, j in zip(li, lj))


@register_pass("recognize_interaction", stage="recognize")
def recognize_interaction(g: Graph) -> Graph:
    """Raise bmm(T, T^T)[:, li, lj] into DOT_INTERACTION(T; pairs)."""
    return rewrite_matches(g, _match, lambda b, n, m: b.emit(
        Op.DOT_INTERACTION, (m[0],), n.type, {"pairs": m[1]}, hint="interaction", loc=n.loc))
