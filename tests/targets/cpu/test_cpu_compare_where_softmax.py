"""cpu rules for comparisons, logical ops, where (and masked_fill) and softmax, against PyTorch: NaN, +-inf,
ties, rows of -inf in softmax, broadcasting, batch 1, int32 comparisons; each lowered into C++ loops."""
import numpy as np
import pytest
import torch
import torch.nn as nn

import xrec
from xrec.targets.cpu.isa import best_isa

from .conftest import needs_cpu

INF, NAN = float("inf"), float("nan")


class Masks(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("t", torch.tensor([0.0, 0.5, -1.0, 2.0, 0.25]))

    def forward(self, x, y):
        a = (x > y) & ~(x == 0.5)                               # gt, eq, logical_not, logical_and
        b = (x <= y) | (y != y)                                 # le, ne (true for NaN), logical_or
        c = torch.where(a, x, y * 2.0)                          # where on a mask computed in the same loop
        d = torch.where(x >= self.t, x, self.t)                 # ge against a [5] constant (broadcast)
        e = x.masked_fill(x < 0, -INF)                          # lt, masked_fill = where with a scalar
        return c, d, e, a.float(), b.float()


class IntMasks(nn.Module):
    def forward(self, k):                                       # int32 ids
        return (((k >= 3) | (k < 1)) & (k != 4)).float(), torch.where(k == 2, k, k * 3)


class Softmaxes(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(6, 4)

    def forward(self, x):                                       # x [B, 3, 6]
        return (torch.softmax(x, dim=-1), torch.softmax(x, dim=1),
                torch.softmax(self.lin(x[:, 0]), dim=1), torch.softmax(x[:, :, 1:5], dim=-1))


def _compile(model, example, tmp_path):
    return xrec.compile(model.eval(), example, target="cpu", options={"isa": best_isa()}, out=tmp_path / "m.xrec")


def _check(cm, model, inputs):
    with torch.no_grad():
        want = model(*inputs)
    got = cm(*inputs)
    for g, w in zip(got, want):
        np.testing.assert_allclose(np.asarray(g), w.numpy(), rtol=1e-5, atol=1e-6, equal_nan=True)


def _mask_inputs(B, rng):
    x = rng.choice([-1.0, 0.0, 0.5, 1.0, 2.0], size=(B, 5)).astype(np.float32)
    y = x.copy()                                                  # ties everywhere, then some changes
    y[::2] = rng.standard_normal((len(y[::2]), 5)).astype(np.float32)
    if B > 1:
        x[0, 0], y[0, 1], x[1, 2], y[1, 3], x[-1, 4] = NAN, NAN, INF, -INF, -INF
    return torch.from_numpy(x), torch.from_numpy(y)


@needs_cpu
def test_comparisons_logic_and_where_match_torch_with_nan_inf_ties_and_batch_1(tmp_path):
    rng = np.random.default_rng(0)
    model = Masks()
    cm = _compile(model, _mask_inputs(8, rng), tmp_path)
    for B in (1, 7, 130):
        _check(cm, model, _mask_inputs(B, rng))
    src = (cm.path / "src" / "model.cpp").read_text()
    assert " ? " in src and " != " in src and "!(" in src and " && " in src


@needs_cpu
def test_int32_comparisons_and_where_match_torch(tmp_path):
    rng = np.random.default_rng(2)
    model = IntMasks()
    cm = _compile(model, (torch.from_numpy(rng.integers(-2, 6, size=(4, 5)).astype(np.int32)),), tmp_path)
    for B in (1, 66):
        _check(cm, model, (torch.from_numpy(rng.integers(-2, 6, size=(B, 5)).astype(np.int32)),))


def _softmax_input(B, rng):
    x = (3 * rng.standard_normal((B, 3, 6))).astype(np.float32)
    x[0, 0, 2] = x[0, 0, 3]                                       # ties
    if B > 1:
        x[1, 0, :] = -INF                                         # a row of -inf: NaN (as torch)
        x[1, 1, 0] = -INF                                         # one -inf: a zero
        x[1, 2, 4] = INF                                          # +inf: NaN
        x[-1, 2, 1] = NAN                                         # NaN: NaN row
        x[-1, 1, :] = 80.0                                        # large equal values: uniform, no overflow
    return torch.from_numpy(x)


@needs_cpu
def test_softmax_matches_torch_on_every_dim_with_inf_nan_and_ties(tmp_path):
    rng = np.random.default_rng(1)
    model = Softmaxes()
    cm = _compile(model, (_softmax_input(4, rng),), tmp_path)
    for B in (1, 5, 70):
        _check(cm, model, (_softmax_input(B, rng),))
    src = (cm.path / "src" / "model.cpp").read_text()
    assert src.count("float mx = -INFINITY, sum = 0.0f;") == 4


def test_softmax_along_the_batch_is_refused(tmp_path):
    from xrec.lowering import LoweringError

    class BatchSoftmax(nn.Module):
        def forward(self, x):
            return torch.softmax(x, dim=0)
    with pytest.raises(LoweringError, match="softmax along the batch dim"):
        xrec.compile(BatchSoftmax(), (torch.randn(4, 3),), target="cpu", out=tmp_path / "m.xrec")
