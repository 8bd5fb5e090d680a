"""Comparisons, where, logical and/or/not and softmax on the triton target: fused into the generated
elementwise kernels (run in Triton's interpreter) and matching PyTorch on NaN, +-inf, ties, all -inf rows,
broadcasting and batch 1; outside a fusable shape they take the listed torch fallback."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import xrec
from xrec.targets.triton.program import Program

INF, NAN = float("inf"), float("nan")


def _program(cm) -> Program:
    return Program.from_json((cm.path / "src" / "program.json").read_text())


def _compile(model, *example):
    return xrec.compile(model.eval(), example, target="triton", options={"aot": False})


def _special(batch: int, cols: int, seed: int = 0) -> torch.Tensor:
    """Random values with ties (repeated values), 0 / -0, +-inf and NaN in the first rows."""
    x = torch.randn(batch, cols, generator=torch.Generator().manual_seed(seed)).round(decimals=1)
    flat = x.view(-1)
    for k, v in enumerate([0.0, -0.0, INF, -INF, NAN, 0.5, 0.5]):
        if k < flat.numel():
            flat[(k * 7) % flat.numel()] = v
    return x


class Compare(nn.Module):
    """Each comparison against a tensor, a broadcast row vector and a scalar, reduced to floats by where."""

    def __init__(self, cols: int):
        super().__init__()
        self.thr = nn.Parameter(torch.linspace(-1, 1, cols))

    def forward(self, x, y):
        outs = []
        for m in (x == y, x != y, x < y, x <= self.thr, x > 0.5, x >= y):
            outs.append(torch.where(m, x, y))
            outs.append(m.float())
        return torch.cat(outs, dim=1)


@pytest.mark.parametrize("batch,cols", [(1, 5), (9, 33)])
def test_comparisons_and_where_fuse_and_match_torch_with_nan_inf_and_ties(batch, cols):
    model = Compare(cols)
    cm = _compile(model, torch.randn(2, cols), torch.randn(2, cols))
    prog = _program(cm)
    assert not prog.torch_steps() and any(s.kernel.startswith("ew_") for s in prog.launches())
    x, y = _special(batch, cols, 1), _special(batch, cols, 2)
    y[0, :3] = x[0, :3]                                  # ties between the operands, NaN == NaN included
    torch.testing.assert_close(cm(x, y), model(x, y), equal_nan=True)


class Logic(nn.Module):
    def forward(self, x, y):
        a, b = x > 0, y < 0.25
        m = torch.logical_or(torch.logical_and(a, b), ~(x == y)) & ~b | (a & torch.logical_not(x != x))
        return torch.where(m, x * 2.0, torch.zeros_like(x)), m


@pytest.mark.parametrize("batch", [1, 6])
def test_logical_and_or_not_give_the_masks_torch_gives(batch):
    model = Logic()
    cm = _compile(model, torch.randn(2, 7), torch.randn(2, 7))
    assert not _program(cm).torch_steps()
    x, y = _special(batch, 7, 3), _special(batch, 7, 4)
    got, want = cm(x, y), model(x, y)
    assert got[1].dtype == torch.bool
    torch.testing.assert_close(got[0], want[0], equal_nan=True)
    assert torch.equal(got[1], want[1])


class Softmax(nn.Module):
    def __init__(self, cols: int):
        super().__init__()
        self.lin = nn.Linear(cols, cols)

    def forward(self, x):
        return torch.softmax(self.lin(x), dim=-1), torch.softmax(x, dim=1) * 3.0


@pytest.mark.parametrize("batch,cols", [(1, 6), (5, 37)])
def test_softmax_over_rows_is_a_fused_row_reduction_matching_torch(batch, cols):
    model = Softmax(cols)
    cm = _compile(model, torch.randn(2, cols))
    prog = _program(cm)
    assert not prog.torch_steps()
    x = torch.randn(batch, cols) * 4
    torch.testing.assert_close(cm(x), model(x), rtol=1e-5, atol=1e-6)


def test_softmax_rows_of_minus_inf_nan_plus_inf_and_ties_match_torch():
    model = Softmax(4)
    cm = _compile(model, torch.randn(2, 4))
    x = torch.tensor([[-INF, -INF, -INF, -INF],           # all -inf: NaN row
                      [1.0, -INF, 1.0, -INF],               # ties and -inf entries: 0.5, 0, 0.5, 0
                      [NAN, 0.0, 1.0, 2.0],                 # NaN: NaN row
                      [INF, 0.0, 1.0, 2.0],                 # +inf: NaN row
                      [3.0, 3.0, 3.0, 3.0],                 # ties: uniform
                      [-80.0, 80.0, 0.0, 80.0]])            # large spread
    torch.testing.assert_close(cm(x)[1], model(x)[1], equal_nan=True)


class BatchSoftmax(nn.Module):
    def forward(self, x):
        return torch.softmax(x, dim=0) + (x > 0).float()


def test_a_softmax_across_the_batch_takes_the_listed_torch_fallback_and_matches():
    model = BatchSoftmax()
    cm = _compile(model, torch.randn(3, 4))
    import json
    fb = json.loads((cm.path / "manifest.json").read_text())["target_info"]["fallbacks"]
    assert [f["op"] for f in fb] == ["softmax"]
    x = _special(5, 4, 5)
    x[:, 1] = -INF
    torch.testing.assert_close(cm(x), model(x), equal_nan=True)


class MaskAndSoftmax(nn.Module):
    def forward(self, x, y):
        m = (x > y) | ~(x <= 0.0)
        return torch.where(m & (y != 1.0), torch.softmax(x, dim=-1), y) + x.amax(-1, keepdim=True), m


def test_the_mask_and_softmax_kernels_compile_ahead_of_time_for_sm80_and_sm90():
    model = MaskAndSoftmax()
    cm = xrec.compile(model.eval(), (torch.randn(2, 9), torch.randn(2, 9)), target="triton")
    ti = cm.manifest["target_info"]
    assert [s.kernel[:3] for s in _program(cm).launches()] == ["ew_"] and len(ti["kernels"]) == 1
    for k in ti["kernels"]:
        for arch in ("sm_80", "sm_90"):
            assert (cm.path / k["archs"][arch]["cubin"]).read_bytes()[:4] == b"\x7fELF"
    x, y = _special(3, 9, 6), _special(3, 9, 7)
    got, want = cm(x, y), model(x, y)
    torch.testing.assert_close(got[0], want[0], equal_nan=True)
    assert torch.equal(got[1], want[1])
