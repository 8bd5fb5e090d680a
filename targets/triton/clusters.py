"""Planning step ``clusters``: connected elementwise / row-reduction work grouped into fused kernels.

Every node that can live in a register tile (``elementwise.node_extent``: a
float value over a batch extent R and at most one column count K) starts a
cluster of its own; a node then joins the cluster of each input whose extent is
compatible (same R, K equal or 1), unless that would put a cycle between units
(a unit is a cluster or a single node outside any). ``elementwise.generate``
writes one kernel per cluster (rules/cluster.py emits its launch).
"""
from __future__ import annotations

from xrec.ir import Graph

from . import elementwise as ew
from .context import LowerContext


def unit_of(cluster_of: dict, name: str):
    """The unit holding ``name``: its cluster id, or the name itself."""
    return cluster_of.get(name, name)


def unit_edges(g: Graph, cluster_of: dict) -> dict:
    """unit -> set of units reading it (every unit is a key)."""
    edges: dict = {}
    for n in g.nodes:
        u = unit_of(cluster_of, n.name)
        edges.setdefault(u, set())
        for i in n.inputs:
            ui = unit_of(cluster_of, i)
            if ui != u:
                edges.setdefault(ui, set()).add(u)
    return edges


def is_acyclic(edges: dict) -> bool:
    """Whether the unit graph ``edges`` has no cycle (iterative depth-first search)."""
    color: dict = {}
    for start in edges:
        if start in color:
            continue
        stack = [(start, iter(edges[start]))]
        color[start] = 1
        while stack:
            u, it = stack[-1]
            for v in it:
                c = color.get(v, 0)
                if c == 1:
                    return False
                if c == 0:
                    color[v] = 1
                    stack.append((v, iter(edges.get(v, ()))))
                    break
            else:
                color[u] = 2
                stack.pop()
    return True


def form_clusters(g: Graph) -> tuple[dict[str, int], dict[int, ew.Cluster]]:
    """(node name -> cluster id, cluster id -> Cluster) with members in graph order."""
    index = {n.name: k for k, n in enumerate(g.nodes)}
    cluster_of: dict[str, int] = {}
    clusters: dict[int, ew.Cluster] = {}
    extent: dict[int, tuple] = {}
    next_id = 0
    for n in g.nodes:
        ext = ew.node_extent(g, n)
        if ext is None:
            continue
        cid = next_id
        next_id += 1
        clusters[cid] = ew.Cluster(cid, [n.name], *ext)
        cluster_of[n.name] = cid
        extent[cid] = ext
        for i in n.inputs:
            other = cluster_of.get(i)
            cur = cluster_of[n.name]
            if other is None or other == cur:
                continue
            both = ew.compatible(extent[cur], extent[other])
            if both is None:
                continue
            moved = clusters[cur].members
            for m in moved:
                cluster_of[m] = other
            if is_acyclic(unit_edges(g, cluster_of)):
                clusters[other].members = sorted(clusters[other].members + moved, key=index.__getitem__)
                clusters[other].R, clusters[other].K = both
                extent[other] = both
                del clusters[cur]
            else:
                for m in moved:
                    cluster_of[m] = cur
    return cluster_of, clusters


def find_clusters(ctx: LowerContext) -> None:
    ctx.cluster_of, ctx.clusters = form_clusters(ctx.g)
