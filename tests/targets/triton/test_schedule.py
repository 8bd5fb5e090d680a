"""Planning step ``schedule`` (targets/triton/schedule.py): units in a dependency order close to the IR's."""
from __future__ import annotations

import pytest

from xrec import zoo
from xrec.targets.triton.clusters import form_clusters, unit_edges
from xrec.targets.triton.schedule import schedule_units

from .conftest import compiled_zoo


@pytest.mark.parametrize("name", ["dlrm-small", "two-tower", "wide-deep"])
def test_every_unit_runs_once_after_the_units_it_reads(name):
    g = compiled_zoo(name)[1].graph
    cluster_of, clusters = form_clusters(g)
    order = schedule_units(g, cluster_of)
    edges = unit_edges(g, cluster_of)
    assert sorted(map(str, order)) == sorted(map(str, edges))
    pos = {u: k for k, u in enumerate(order)}
    for u, readers in edges.items():
        for v in readers:
            assert pos[u] < pos[v], f"{v} runs before its input {u}"


def test_without_clusters_the_schedule_is_the_graphs_order():
    g = compiled_zoo("dlrm-small")[1].graph
    assert schedule_units(g, {}) == [n.name for n in g.nodes]
