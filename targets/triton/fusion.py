"""Planning step ``fusion``: DLRM's ``cat([x, dot_interaction(reshape(cat([x, ...])))])`` as one launch.

The interaction kernel writes both parts of the outer concatenation: the dense
prefix ``x`` (read from the inner concatenation it starts) and the pairwise dot
products after it. The DOT_INTERACTION node is then lowered by the rule of its
concatenation (rules/interaction.py), and nothing else reads it.
"""
from __future__ import annotations

from xrec.ir import Op

from .context import LowerContext


def interaction_fusions(ctx: LowerContext) -> dict[str, str]:
    """{outer cat: the DOT_INTERACTION it absorbs} for every concatenation of that form."""
    g = ctx.g
    out: dict[str, str] = {}
    for n in g.nodes:
        if not ctx.is_cat_rows(n) or len(n.inputs) != 2:
            continue
        x, inter = n.inputs
        it = g.node(inter)
        if it.op is not Op.DOT_INTERACTION or g.num_uses(inter) != 1 or inter in ctx.outputs:
            continue
        r = g.node(it.inputs[0])
        src = g.node(r.inputs[0]) if r.op is Op.RESHAPE else None
        if src is None or not ctx.is_cat_rows(src) or src.inputs[0] != x:
            continue
        t = g.type_of(it.inputs[0])
        if g.type_of(x).shape[1] != t.shape[2]:
            continue
        out[n.name] = inter
    return out


def find_interaction_fusions(ctx: LowerContext) -> None:
    ctx.fused_inter = interaction_fusions(ctx)
