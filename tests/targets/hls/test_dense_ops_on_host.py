"""Comparisons, where, logical and/or/not and softmax in an hls model: the FPGA gathers the embedding bags,
the dense part (where these ops are) runs on the host target -- matching PyTorch, or failing with the one
LoweringError (xrec.lowering) of the host target, never another error."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import xrec
from xrec.lowering import LoweringError
from xrec.testing import check_model

from .conftest import FAST, needs_hls

pytestmark = needs_hls

ROWS, DIM = 40, 8


class GatedBags(nn.Module):
    """One embedding bag gated elementwise by comparisons with a linear layer of the dense input, then a
    softmax over the row: eq/ne/lt/le/gt/ge, where, logical_and/or/not and softmax in one dense part."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.emb = nn.EmbeddingBag(ROWS, DIM, mode="sum", include_last_offset=True)
        self.lin = nn.Linear(13, DIM)
        with torch.no_grad():              # columns 0 and 1 are exactly 0: ties for every comparison
            self.lin.weight[:2] = 0.0
            self.lin.bias[:2] = 0.0

    def forward(self, dense, indices, offsets):
        e = self.emb(indices[0], offsets[0])
        d = self.lin(dense)
        keep = torch.logical_and(d >= 0, torch.logical_not(e < -0.5))
        pick = torch.logical_or(keep, d == e)               # empty bags: e == 0 == d in columns 0 and 1
        other = torch.where(torch.logical_or(e > 0.25, d <= -0.25), e, -d)
        x = torch.where(pick, e, other) + torch.where(d != e, 0.5, 0.0)
        return torch.softmax(x, dim=1)


def inputs(batch: int, index_dtype, seed: int) -> tuple:
    """Bags of 0-3 ids (the first bag empty when batch > 1), ids 0 and ROWS-1, a duplicate id."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(0, 4, batch)
    if batch > 1:
        lengths[0] = 0
    off = np.concatenate([[0], np.cumsum(lengths)])
    ids = rng.integers(0, ROWS, int(off[-1]))
    if len(ids) >= 3:
        ids[0], ids[1], ids[2] = ROWS - 1, 0, 0
    dense = torch.from_numpy(rng.standard_normal((batch, 13)).astype(np.float32))
    return dense, [torch.from_numpy(ids).to(index_dtype)], [torch.from_numpy(off).to(index_dtype)]


CASES = [inputs(1, torch.int64, 0), inputs(7, torch.int32, 1), inputs(33, torch.int64, 2)]


def test_new_dense_ops_run_on_the_reference_host_and_match_pytorch(tmp_path):
    model = GatedBags()
    cm = xrec.compile(model, inputs(4, torch.int64, 5), target="hls", options=FAST, out=tmp_path / "g.xrec")
    assert cm.manifest["target_info"]["host"]["target"] == "reference"
    check_model(cm, model, CASES, rtol=1e-5, atol=1e-6)


def test_new_dense_ops_on_the_cpu_host_match_pytorch(tmp_path):
    from xrec.targets import get_target
    if not get_target("cpu").available()[0]:
        pytest.skip(f"cpu target unavailable: {get_target('cpu').available()[1]}")
    model = GatedBags()
    cm = xrec.compile(model, inputs(4, torch.int64, 5), target="hls", options={**FAST, "host": "cpu"},
                      out=tmp_path / "g.xrec")
    assert cm.manifest["target_info"]["host"]["target"] == "cpu"
    check_model(cm, model, CASES, rtol=1e-5, atol=1e-6)


def test_an_op_the_host_cannot_lower_is_the_one_lowering_error_naming_the_hls_host(tmp_path, monkeypatch):
    """The host's own LoweringError (op, node, target) reaches the user unchanged, with a note that the dense
    part of an hls model runs on that host and how to pick another."""
    from xrec.ir import Op
    from xrec.targets import get_target
    host = get_target("reference")

    def build_without_softmax(graph, options, writer):
        node = next(n for n in graph.nodes if n.op is Op.SOFTMAX)
        raise LoweringError("no rule", target="reference", node=node, known=[Op.ADD])

    monkeypatch.setattr(host, "build", build_without_softmax)
    with pytest.raises(LoweringError) as err:
        xrec.compile(GatedBags(), inputs(4, torch.int64, 5), target="hls", options=FAST, out=tmp_path / "g.xrec")
    e = err.value
    assert e.target == "reference" and e.op is Op.SOFTMAX
    assert "cannot lower %" in str(e) and "softmax" in str(e)
    assert any("runs on the host target 'reference'" in n and "-O host=cpu" in n for n in e.__notes__)
