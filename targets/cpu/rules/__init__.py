"""Planning step 4, per-op lowering: one rule per IR ``Op``, each appending steps to the context.

A rule is ``rule(ctx, node) -> None``: it reads its inputs' views or
expressions from ``ctx`` (:class:`~xrec.targets.cpu.context.LowerContext`),
appends steps (kernel calls, loops) and records where the node's value lives
(``ctx.set``). Rules are registered per op in xrec.lowering's registry with
``@register_lowering(op, "cpu")``; the files group them by kind:

    layout.py       reshape, slice, permute, cat (views; copies only where needed)
    elementwise.py  elementwise ops, comparisons, logic, where, expand, full (one loop with the inlined producers)
    dense.py        mlp, linear, matmul, cross_layer (the GEMM kernel)
    sparse.py       embedding_bag, embedding_bag_group, embedding (the bag kernel, gathers)
    interaction.py  dot_interaction, fm
    norm.py         layer_norm, softmax
    reduce.py       sum, mean, amax, norm
"""
from __future__ import annotations

from xrec.lowering import lowering_for, rules_of

from ..errors import TARGET

RULES = rules_of(TARGET)      # a read-only view of the cpu's rules, by Op


def rule_for(n, *, strict: bool = False):
    """The rule lowering ``n``, or xrec.lowering's LoweringError naming the op, the node, its source line and
    the ops the cpu lowers (the cpu lists no fallbacks)."""
    return lowering_for(TARGET, strict=strict).rule(n)


from . import dense, elementwise, interaction, layout, norm, reduce, sparse  # noqa: E402,F401  (registers the rules)
