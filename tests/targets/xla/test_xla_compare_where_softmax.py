"""The xla target's rules for comparisons, logic, where and softmax, against PyTorch on edge cases."""
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import xrec
from xrec.lowering import LoweringError
from xrec.targets import get_target

pytestmark = pytest.mark.skipif(not get_target("xla").available()[0], reason="xla target unavailable here")
OPTS = {"tpu": None, "batch": 8}


class Masks(nn.Module):
    def forward(self, x, y, ids):
        a, b = x > y, y <= 0.25
        first = x[:, :1]
        # (ids compared together with x and y, so that export ties their batch dims)
        return (x == y, x != first, x < 0.5, x >= y, (ids == 3) & a[:, :3], (ids > 1.5) | b[:, 3:], a & ~b, a | b,
                torch.logical_not(x),
                torch.where(a, x, y), torch.where(b, x, 0.0), x.masked_fill(b, -1e9),
                F.softmax(x.masked_fill(b, float("-inf")), dim=-1), torch.softmax(y.view(-1, 2, 3), dim=1))


def _inputs(batch, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, 6)).astype(np.float32)
    y = x.copy()
    y[:, ::2] = rng.standard_normal((batch, 3))              # ties in the odd columns
    x[0, 1] = np.nan
    y[-1, 3] = np.inf
    y[0, 4] = 100.0                                          # softmax over y needs the max subtracted
    y[-1, :] = np.where(np.arange(6) % 2 == 0, -1.0, y[-1])  # y <= 0.25 on every column of the last row ...
    y[-1, 1::2] = -2.0                                       # ... so its masked softmax row is all -inf: NaN
    ids = rng.integers(0, 5, (batch, 3))
    return torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(ids)


@pytest.mark.parametrize("batch", [1, 5, 11])                 # 11 > the static batch 8: split in two
def test_comparisons_logic_where_and_softmax_match_torch(batch):
    model = Masks()
    cm = xrec.compile(model, _inputs(4, seed=3), target="xla", options=OPTS)
    args = _inputs(batch, seed=batch)
    want = model(*args)
    assert torch.isnan(want[12][-1]).all()                   # the all -inf row is exercised
    got = cm(*args)
    assert len(got) == len(want)
    for k, (w, o) in enumerate(zip(want, got)):
        assert o.dtype == w.dtype, (k, o.dtype, w.dtype)
        torch.testing.assert_close(o, w, rtol=1e-5, atol=1e-6, equal_nan=True, msg=f"output {k}")


class BatchSoftmax(nn.Module):
    def forward(self, x):
        return torch.softmax(x, dim=0)


def test_softmax_over_the_batch_is_refused_naming_the_node_and_why():
    with pytest.raises(LoweringError, match=r"target 'xla' cannot lower %.*softmax.*normalizes over the batch"):
        xrec.compile(BatchSoftmax(), (torch.randn(4, 3),), target="xla", options=OPTS)
