"""Comparisons, logic, where and softmax: imported from aten and run by the IR interpreter, equal to PyTorch.

Edge cases: NaN (compares unequal, selects through where, poisons a softmax row), +-inf, ties, a row of
-inf in softmax (NaN, as in PyTorch), broadcasting against [B, 1] and scalars, int and bool operands,
batch 1.
"""
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import xrec
from xrec.frontend import FrontendError, import_model
from xrec.ir import DType, Op, run_graph
from xrec.passes import run_pipeline

from conftest import flat


class Compare(nn.Module):
    def forward(self, x, y, ids):
        first = x[:, :1]                                   # [B, 1]: broadcasts along the row
        return (x == y, x != y, x < first, x <= 0.5, x > y, x >= 0, ids == 3, ids < 2.5, y.eq(first), x.ne(x))


class Logic(nn.Module):
    def forward(self, x, y):
        a, b = x > 0, y < 1
        return (a & ~b, a | b, torch.logical_and(a, b), torch.logical_or(x, b), torch.logical_not(y),
                torch.where(a, x, y), torch.where(b, x, 0.0), torch.where(a, 1.0, 0.0) + y,
                x.masked_fill(b, -1e9), torch.where(x[:, :1] > 0, y, x), torch.where(a, x, torch.zeros_like(x)),
                torch.full_like(x, 2.5) * y, torch.ones_like(ids_of(x), dtype=torch.bool) & b)


def ids_of(x):
    return x.to(torch.int64)


class Softmax(nn.Module):
    def forward(self, x, mask):
        b = x.shape[0]
        return (F.softmax(x, dim=-1), torch.softmax(x.view(b, 2, 3), dim=1),
                x.masked_fill(mask, float("-inf")).softmax(dim=1), F.softmax(x.half(), dim=-1, dtype=torch.float32))


def _x(batch, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, 6)).astype(np.float32)
    y = x.copy()
    y[:, 1::2] = rng.standard_normal((batch, 3))            # ties where y == x
    x[0, 2] = np.nan                                        # NaN: unequal to everything, itself included
    x[-1, 4] = np.inf
    y[0, 5] = -np.inf
    x[:, 3] = 0.5                                           # ties with the scalar 0.5
    return torch.from_numpy(x), torch.from_numpy(y)


def _compare_inputs(batch, seed=0):
    x, y = _x(batch, seed)
    ids = torch.from_numpy(np.random.default_rng(seed).integers(0, 5, (batch, 4)))
    return x, y, ids


def _softmax_inputs(batch, seed=0):
    x, _ = _x(batch, seed)
    x = torch.nan_to_num(x, nan=0.0, posinf=30.0)
    x[0, 1] = 100.0                                         # exp(100) overflows f32: needs the max subtracted
    mask = torch.zeros(batch, 6, dtype=torch.bool)
    mask[:, ::2] = True
    mask[0] = True                                          # row 0 all -inf: NaN
    if batch > 2:
        x[2, 1] = float("nan")                              # a NaN poisons its row
    return x, mask


def _check(model, make, batches=(1, 5)):
    g = import_model(model, make(4, seed=9))
    for graph in (g, run_pipeline(g)):
        for b in batches:
            args = make(b, seed=b)
            want = [t.numpy() for t in model(*args)]
            got = run_graph(graph, flat(args))
            assert len(got) == len(want)
            for k, (w, o) in enumerate(zip(want, got)):
                assert o.dtype == w.dtype and o.shape == w.shape, (k, o.dtype, w.dtype, o.shape, w.shape)
                if w.dtype == np.bool_:
                    np.testing.assert_array_equal(o, w, err_msg=f"output {k}")
                else:
                    np.testing.assert_allclose(o, w, rtol=1e-6, atol=1e-7, equal_nan=True, err_msg=f"output {k}")
    return g


def test_comparisons_tensor_and_scalar_forms_match_torch_with_nan_inf_ties_and_broadcasting():
    g = _check(Compare(), _compare_inputs)
    ops = [n.op for n in g.nodes]
    assert {Op.EQ, Op.NE, Op.LT, Op.LE, Op.GT, Op.GE} <= set(ops)
    # an int tensor against the float 2.5 compares in float (torch's promotion), not against int(2.5)
    lt = [n for n in g.nodes if n.op is Op.LT and g.type_of(n.inputs[0]).dtype is DType.F32]
    assert any(g.node(n.inputs[0]).op is Op.CAST for n in lt)


def test_logic_where_and_full_like_match_torch_on_masks_numbers_and_scalars():
    g = _check(Logic(), lambda b, seed=0: _x(b, seed))
    assert {Op.LOGICAL_AND, Op.LOGICAL_OR, Op.LOGICAL_NOT, Op.WHERE, Op.FULL} <= {n.op for n in g.nodes}


def test_softmax_matches_torch_including_all_minus_inf_and_nan_rows():
    x, mask = _softmax_inputs(5)
    out = Softmax()(x, mask)[2]
    assert torch.isnan(out[0]).all() and torch.isnan(out[2]).all()      # the edge cases are exercised
    g = _check(Softmax(), _softmax_inputs, batches=(1, 5))
    assert sum(n.op is Op.SOFTMAX for n in g.nodes) == 4


def test_one_argument_where_and_bitwise_ops_on_integers_are_clear_frontend_errors():
    class Nonzero(nn.Module):
        def forward(self, x):
            return torch.where(x > 0)[0]

    class IntAnd(nn.Module):
        def forward(self, x, ids):
            return x * (ids & 1)

    with pytest.raises(FrontendError):
        import_model(Nonzero(), (torch.randn(4, 3),))
    with pytest.raises(FrontendError, match="bitwise_and on i64 tensors is not supported.*bool tensors"):
        import_model(IntAnd(), (torch.randn(4, 3), torch.ones(4, 3, dtype=torch.int64)))


@pytest.mark.parametrize("model,make", [(Compare(), _compare_inputs), (Logic(), _x), (Softmax(), _softmax_inputs)],
                         ids=["compare", "logic", "softmax"])
def test_reference_target_compiles_and_runs_the_new_ops_like_torch(model, make):
    cm = xrec.compile(model, make(4, seed=9), target="reference")
    for b in (1, 3):
        args = make(b, seed=b)
        for k, (w, o) in enumerate(zip(model(*args), cm(*args))):
            torch.testing.assert_close(o, w, rtol=1e-6, atol=1e-7, equal_nan=True, msg=f"output {k}")
