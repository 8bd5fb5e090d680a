"""Planning step ``clusters`` (targets/triton/clusters.py): elementwise work grouped into fused kernels."""
from __future__ import annotations

import torch
from torch import nn

from xrec.ir import Op
from xrec.targets.triton.clusters import form_clusters, is_acyclic, unit_edges

from .conftest import optimized_graph


class Chain(nn.Module):
    def forward(self, x):
        y = torch.sigmoid(torch.relu(x) * 2.0 - 1.0)
        return y / y.sum(dim=1, keepdim=True)


class Diamond(nn.Module):
    """a = relu(x); b = linear(a); c = a + b: joining c to a's cluster would put a cycle through the linear."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(8, 8)

    def forward(self, x):
        a = torch.relu(x)
        return a + self.lin(a)


def test_a_chain_of_elementwise_ops_and_its_row_sum_is_one_cluster_in_graph_order():
    g = optimized_graph(Chain().eval(), (torch.randn(4, 8),))
    cluster_of, clusters = form_clusters(g)
    assert len(clusters) == 1
    (cl,) = clusters.values()
    order = [n.name for n in g.nodes]
    assert cl.members == sorted(cl.members, key=order.index)
    ops = {g.node(m).op for m in cl.members}
    assert {Op.RELU, Op.SIGMOID, Op.SUM, Op.DIV} <= ops
    assert cl.K == 8 and str(cl.R) == "B"


def test_a_node_does_not_join_a_cluster_when_that_would_make_a_cycle_between_units():
    g = optimized_graph(Diamond().eval(), (torch.randn(4, 8),))
    cluster_of, clusters = form_clusters(g)
    relu = next(n.name for n in g.nodes if n.op is Op.RELU)
    add = next(n.name for n in g.nodes if n.op is Op.ADD)
    assert cluster_of[relu] != cluster_of[add]
    assert is_acyclic(unit_edges(g, cluster_of))
    # the merge it refused is indeed cyclic
    merged = {**cluster_of, add: cluster_of[relu]}
    assert not is_acyclic(unit_edges(g, merged))


def test_is_acyclic_finds_a_cycle_anywhere_in_the_unit_graph():
    assert is_acyclic({"a": {"b"}, "b": {"c"}, "c": set()})
    assert not is_acyclic({"a": {"b"}, "b": {"c"}, "c": {"a"}})
    assert not is_acyclic({"x": set(), "a": {"b"}, "b": {"a"}})
