"""Planning step ``placement`` (targets/triton/placement.py): values written into their concat slots."""
from __future__ import annotations

import torch
from torch import nn

from xrec.ir import Op

from .conftest import compiled_zoo, lowered, optimized_graph


def test_dlrms_bottom_mlp_and_embedding_bags_write_into_the_interaction_input_concat():
    g = compiled_zoo("dlrm-small")[1].graph
    ctx = lowered(g, "placement")
    mlp = next(n for n in g.nodes if n.op is Op.MLP)               # the bottom MLP comes first
    bags = next(n for n in g.nodes if n.op is Op.EMBEDDING_BAG_GROUP)
    cat, col = ctx.hint[mlp.name]
    assert col == 0 and ctx.hint[bags.name] == (cat, int(mlp.type.shape[1]))
    assert ctx.copies[cat] == []


class OutputTwice(nn.Module):
    def forward(self, x, y):
        a = torch.relu(x)
        return torch.cat([a, y * 2.0], dim=1), a


def test_graph_outputs_and_user_inputs_are_copied_into_their_slot_not_placed():
    g = optimized_graph(OutputTwice().eval(), (torch.randn(3, 4), torch.randn(3, 5)))
    ctx = lowered(g, "placement")
    cat = next(n for n in g.nodes if n.op is Op.CAT)
    relu = next(n.name for n in g.nodes if n.op is Op.RELU)
    assert relu not in ctx.hint and (relu, 0) in ctx.copies[cat.name]
    mul = next(n.name for n in g.nodes if n.op is Op.MUL)
    assert ctx.hint[mul] == (cat.name, 4)
    # and the program computes the same as torch
    import xrec
    cm = xrec.compile(OutputTwice().eval(), (torch.randn(3, 4), torch.randn(3, 5)), target="triton",
                      options={"aot": False})
    x, y = torch.randn(1, 4), torch.randn(1, 5)
    for got, want in zip(cm(x, y), OutputTwice()(x, y)):
        torch.testing.assert_close(got, want)
