"""Cost a whole graph at one batch: per node, per stage, in total."""
from __future__ import annotations

from typing import Mapping

from xrec.ir.graph import Graph

from .cache import IdDistribution
from .context import CostContext
from .rules import CostError, estimate, rule_for
from .work import D2H, GraphWork, NodeWork, Work

OUTPUTS_NODE = "<outputs>"


def graph_work(g: Graph, batch: int, *, cache_bytes: int = 0, ids: IdDistribution | str | None = None,
               pooling: Mapping[str, float] | None = None, unknown: str = "error") -> GraphWork:
    """The work of ``g`` at ``batch``.

    ``cache_bytes``: on-chip cache available to the model (a device's "cache" tier); ``ids``: the id
    distribution (uniform by default, or "zipf:ALPHA"); ``pooling``: feature -> mean ids per bag,
    overriding the statistics recorded at compile time. ``unknown``: "error" (an op without a cost
    rule raises CostError naming it and where to add one) or "estimate" (the conservative default of
    ``xrec.cost.rules.estimate``, listed in the result's ``notes`` and ``estimated``).
    """
    if unknown not in ("error", "estimate"):
        raise CostError(f"unknown must be 'error' or 'estimate', got {unknown!r}")
    if isinstance(ids, str):
        ids = IdDistribution.parse(ids)
    ctx = CostContext.build(g, batch, cache_bytes=cache_bytes, ids=ids, pooling=pooling)
    out = []
    for n in g.nodes:
        try:
            rule = rule_for(n.op, n)
        except CostError:
            if unknown == "error":
                raise
            ctx.notes.append(f"op {n.op.value} (%{n.name}) has no cost rule: costed by the conservative "
                             "default (inputs and output through main memory, 4 FLOPs per element, 1 call)")
            out.append(NodeWork(n.name, n.op.value, "other", estimate(n, ctx), estimated=True))
            continue
        out.append(NodeWork(n.name, n.op.value, rule.stage, rule.fn(n, ctx)))
    back = float(sum(ctx.nbytes(o) for o in g.outputs))
    out.append(NodeWork(OUTPUTS_NODE, "output", "other", Work(transfers={D2H: back})))
    return GraphWork(g.name, batch, tuple(out), dict(ctx.bindings), ctx.cache_bytes, tuple(ctx.notes),
                     ctx.dense_param_bytes, ctx.largest_param_bytes)
