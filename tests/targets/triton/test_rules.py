"""The triton target's lowering rules in xrec.lowering (targets/triton/rules/): which ops have rules, and
the one listed fallback (torch steps): printed, recorded in the manifest, refused under strict."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import xrec
from xrec import zoo
from xrec.ir import Op
from xrec.lowering import LoweringError, fallbacks, known_ops
from xrec.targets.triton.rules.fallback import emit_torch

from .conftest import compiled_zoo, lowered, optimized_graph


class Norm(nn.Module):
    """A layer norm (no Triton kernel: the torch fallback) between fused elementwise work."""

    def __init__(self):
        super().__init__()
        self.ln = nn.LayerNorm(6)

    def forward(self, x):
        return torch.sigmoid(self.ln(torch.relu(x)))


def test_the_kernel_ops_have_triton_rules_in_the_one_registry():
    ops = set(known_ops("triton"))
    assert {Op.EMBEDDING_BAG_GROUP, Op.EMBEDDING_BAG, Op.MLP, Op.LINEAR, Op.CROSS_LAYER, Op.DOT_INTERACTION,
            Op.FM, Op.RESHAPE, Op.SLICE, Op.EXPAND, Op.PERMUTE, Op.CAT, Op.JAGGED} <= ops


def test_every_fallback_is_listed_with_a_reason_and_runs_as_a_torch_step():
    listed = {fb.op: fb for fb in fallbacks("triton")}
    assert {Op.LAYER_NORM, Op.MATMUL, Op.EMBEDDING, Op.INDEX, Op.MLP, Op.ADD} <= set(listed)
    for fb in listed.values():
        assert fb.rule is emit_torch and "torch" in fb.reason
    assert Op.EMBEDDING_BAG_GROUP not in listed          # a table the kernel cannot read is an error, not torch


@pytest.mark.parametrize("name", zoo.list_models())
def test_zoo_models_take_no_fallback(name):
    cm = compiled_zoo(name)[1]
    manifest = json.loads((cm.path / "manifest.json").read_text())
    assert manifest["target_info"]["fallbacks"] == []


def test_a_fallback_is_printed_and_recorded_in_the_manifest():
    g = optimized_graph(Norm().eval(), (torch.randn(3, 6),))
    said = []
    from xrec.lowering import TargetLowering
    from xrec.targets.triton.lower import lower
    from xrec.targets.triton.signature import weights_layout
    low = TargetLowering("triton", say=said.append)
    prog, _ = lower(g, weights_layout(g), {"aot": False}, low)
    ln = next(n.name for n in g.nodes if n.op is Op.LAYER_NORM)
    assert [u["node"] for u in low.fallbacks_used()] == [ln] and low.fallbacks_used()[0]["op"] == "layer_norm"
    assert len(said) == 1 and f"%{ln}" in said[0] and "torch" in said[0]
    assert [s.node for s in prog.torch_steps()] == [ln]
    cm = xrec.compile(Norm().eval(), (torch.randn(3, 6),), target="triton", options={"aot": False})
    rec = json.loads((cm.path / "manifest.json").read_text())["target_info"]["fallbacks"]
    assert [r["op"] for r in rec] == ["layer_norm"] and rec[0]["reason"]
    x = torch.randn(1, 6)
    torch.testing.assert_close(cm(x), Norm().eval()(x))


def test_strict_refuses_the_fallback_with_the_one_lowering_error():
    with pytest.raises(LoweringError, match=r"(?s)layer_norm.*strict=True"):
        xrec.compile(Norm().eval(), (torch.randn(3, 6),), target="triton", options={"aot": False, "strict": True})


def test_strict_compiles_the_zoo_models_that_need_no_fallback():
    g = compiled_zoo("dlrm-small")[1].graph
    ctx = lowered(g, strict=True)
    assert ctx.steps and not any(s.kind == "torch" for s in ctx.steps)
