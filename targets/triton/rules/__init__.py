"""The triton target's per-op lowering rules, registered in ``xrec.lowering`` under ``"triton"``.

    values.py       INPUT, PARAM, JAGGED, FULL (scalar literals of fused kernels)
    sparse.py       EMBEDDING_BAG_GROUP, EMBEDDING_BAG    embedding_bag_group_kernel
    dense.py        MLP, LINEAR, CROSS_LAYER              linear_kernel
    interaction.py  DOT_INTERACTION, FM                   interaction_kernel, fm_kernel
    layout.py       RESHAPE, SLICE, EXPAND, PERMUTE (views), CAT (slots, copies)
    cluster.py      a fused elementwise cluster (a schedule unit, not an op)
    fallback.py     the listed torch-step fallback

A rule is ``rule(ctx, node)``; it returns False to decline operands it has no
kernel for, which then take the op's listed fallback (``lower_node``).
"""
from __future__ import annotations

from xrec.lowering import lowering_rule

from ..context import LowerContext
from . import cluster, dense, fallback, interaction, layout, sparse, values  # noqa: F401  (registers the rules)
from .cluster import emit_cluster

TARGET = "triton"

__all__ = ["TARGET", "emit_cluster", "lower_node"]


def lower_node(ctx: LowerContext, n) -> None:
    """Lower ``n`` by its op's rule; a missing rule or a declined node takes the op's listed fallback
    (printed, recorded, refused under strict; a LoweringError when the op lists none)."""
    rule = lowering_rule(TARGET, n.op)
    if rule is not None and rule(ctx, n) is not False:
        return
    fb = ctx.lowering.use_fallback(n)
    fb.rule(ctx, n)
