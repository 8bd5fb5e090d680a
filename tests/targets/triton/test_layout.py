"""Layout rules (targets/triton/rules/layout.py): slices, permutes, expands and reshapes are strided views
(targets/views.py, shared with the cpu target); a reshape no view expresses takes the listed torch fallback."""
from __future__ import annotations

import json

import torch
from torch import nn

import xrec
from xrec.ir import Op
from xrec.targets.triton.program import Program

from .conftest import lowered, optimized_graph


class Views(nn.Module):
    def forward(self, x):
        a = x[:, 2:11:3] * 2.0                                    # strided column slice
        b = x[:, -4:] + x[:, :1].expand(-1, 4)                    # negative start; broadcast column
        return torch.cat([a, b], dim=1)


class Permuted(nn.Module):
    def forward(self, x):
        return x.reshape(-1, 3, 4).permute(0, 2, 1).reshape(-1, 12) + 1.0


def test_slices_and_expands_are_views_of_the_input_buffer():
    g = optimized_graph(Views().eval(), (torch.randn(3, 12),))
    ctx = lowered(g)
    x = g.input_nodes[0].name
    unit = [n.name for n in g.nodes if n.op is Op.SLICE and n.attr("step", 1) == 1]
    assert len(unit) == 2 and all(ctx.views[u].buf == x for u in unit)
    assert sorted(ctx.views[u].offset for u in unit) == [0, 8]          # x[:, :1] and x[:, -4:]
    # the step-3 slice is a view too; the fused kernel reads rows with unit column stride, so it is copied
    (copy,) = [s for s in ctx.steps if s.kind == "torch"]
    assert copy.node == "" and copy.inputs[0].buf == x
    assert copy.inputs[0].strides == (12, 3) and copy.inputs[0].offset == 2
    cm = xrec.compile(Views().eval(), (torch.randn(3, 12),), target="triton", options={"aot": False})
    for batch in (1, 5):
        xb = torch.randn(batch, 12)
        torch.testing.assert_close(cm(xb), Views()(xb))


def test_a_reshape_of_a_permuted_value_takes_the_torch_fallback_and_matches():
    cm = xrec.compile(Permuted().eval(), (torch.randn(3, 12),), target="triton", options={"aot": False})
    fb = json.loads((cm.path / "manifest.json").read_text())["target_info"]["fallbacks"]
    assert [f["op"] for f in fb] == ["reshape"]
    prog = Program.from_json((cm.path / "src" / "program.json").read_text())
    perm = [s for s in prog.torch_steps() if s.node and cm.graph.node(s.node).op is Op.RESHAPE]
    assert len(perm) == 1 and perm[0].inputs[0].strides[1:] == (1, 4)     # the permuted view it copies
    for batch in (1, 4):
        xb = torch.randn(batch, 12)
        torch.testing.assert_close(cm(xb), Permuted()(xb))
