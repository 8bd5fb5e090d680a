"""Planning step ``schedule``: the order the units (node names, cluster ids) run in.

A topological order of the unit graph (clusters.unit_edges) that stays close to
the IR's order: among the ready units, the one whose first node comes first in
the graph runs next.
"""
from __future__ import annotations

import heapq

from xrec.ir import Graph

from .clusters import unit_edges, unit_of
from .context import LowerContext


def schedule_units(g: Graph, cluster_of: dict) -> list:
    """Units in a dependency order close to the IR's order."""
    edges = unit_edges(g, cluster_of)
    first: dict = {}
    for k, n in enumerate(g.nodes):
        first.setdefault(unit_of(cluster_of, n.name), k)
    indeg = {u: 0 for u in edges}
    for vs in edges.values():
        for v in vs:
            indeg[v] += 1
    heap = [(first[u], str(u), u) for u, d in indeg.items() if d == 0]
    heapq.heapify(heap)
    order = []
    while heap:
        _, _, u = heapq.heappop(heap)
        order.append(u)
        for v in edges[u]:
            indeg[v] -= 1
            if indeg[v] == 0:
                heapq.heappush(heap, (first[v], str(v), v))
    return order


def schedule(ctx: LowerContext) -> None:
    ctx.schedule = schedule_units(ctx.g, ctx.cluster_of)
