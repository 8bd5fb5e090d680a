"""Fused elementwise kernels (targets/triton/elementwise.py): one expression table keyed by Op, and each
expression computes what torch does (NaN, +-inf, odd widths, batch 1)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import xrec
from xrec.ir import Op
from xrec.ir.ops import BINARY, COMPARE, LOGICAL, REDUCE, UNARY
from xrec.targets.triton import elementwise as ew

from .conftest import optimized_graph


def test_every_unary_binary_and_reduce_op_has_a_fused_expression():
    assert UNARY | BINARY | REDUCE <= ew.FUSED_OPS
    assert (set(ew.UNARY_EXPR) | set(ew.BINARY_EXPR) | set(ew.MASK_EXPR) | set(ew.SPECIAL_EXPR)
            | set(ew.MULTILINE_EXPR)) == ew.FUSED_OPS
    assert COMPARE | LOGICAL | {Op.WHERE, Op.SOFTMAX} <= ew.FUSED_OPS


def test_an_op_without_an_expression_says_which_ops_fuse():
    g = optimized_graph(nn.LayerNorm(5).eval(), (torch.randn(2, 5),))
    n = next(n for n in g.nodes if n.op is Op.LAYER_NORM)
    with pytest.raises(NotImplementedError, match=r"layer_norm; fused ops: .*sigmoid"):
        ew._expr(g, n, ["x0"], ["f"], "f")


UNARY_TORCH = {"relu": torch.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh, "silu": F.silu, "neg": torch.neg,
               "exp": torch.exp, "log": torch.log, "sqrt": torch.sqrt, "rsqrt": torch.rsqrt, "abs": torch.abs,
               "gelu": F.gelu, "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
               "clamp": lambda x: torch.clamp(x, min=-0.5, max=2.0), "pow2": lambda x: x ** 2,
               "pow-0.5": lambda x: x ** -0.5, "pow3": lambda x: x ** 3}


class Unary(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x) * 1.0


@pytest.mark.parametrize("name", sorted(UNARY_TORCH))
def test_each_fused_unary_expression_matches_torch_on_special_values(name):
    fn = UNARY_TORCH[name]
    x = torch.tensor([[0.0, -0.0, 1.5, -2.25, float("inf"), float("-inf"), float("nan")]])
    if name == "gelu":
        x[0, 4] = 30.0                       # torch's CPU gelu gives NaN at +inf (the formula gives +inf)
    cm = xrec.compile(Unary(fn).eval(), (torch.randn(3, 7),), target="triton", options={"aot": False})
    assert all(s.kind == "launch" for s in _steps(cm))
    torch.testing.assert_close(cm(x), fn(x) * 1.0, rtol=1e-5, atol=1e-6, equal_nan=True)


class Rows(nn.Module):
    def forward(self, x):
        return (x.sum(1, keepdim=True) + x.mean(1, keepdim=True) - x.amax(1, keepdim=True)
                + torch.linalg.vector_norm(x, ord=1, dim=1, keepdim=True)
                + x.abs().amax(1, keepdim=True)) / torch.linalg.vector_norm(
                    x, dim=1, keepdim=True)


@pytest.mark.parametrize("batch,cols", [(1, 5), (6, 33)])
def test_row_reductions_match_torch_over_odd_widths(batch, cols):
    x = torch.randn(batch, cols)
    x[0, 0] = -3.0
    cm = xrec.compile(Rows().eval(), (torch.randn(2, cols),), target="triton", options={"aot": False})
    assert all(s.kind == "launch" for s in _steps(cm))
    torch.testing.assert_close(cm(x), Rows()(x), rtol=1e-5, atol=1e-6)


def _steps(cm):
    from xrec.targets.triton.program import Program
    return Program.from_json((cm.path / "src" / "program.json").read_text()).steps


class RowMax(nn.Module):
    def forward(self, x):
        return x.amax(1, keepdim=True) * 1.0, x.sum(1, keepdim=True) * 1.0


def test_row_max_and_sum_propagate_nan_and_inf_like_torch():
    x = torch.tensor([[1.0, float("nan"), 3.0], [float("-inf"), float("-inf"), float("-inf")],
                      [-0.5, float("inf"), 2.0], [2.0, 2.0, -1.0]])
    cm = xrec.compile(RowMax().eval(), (torch.randn(2, 3),), target="triton", options={"aot": False})
    assert all(s.kind == "launch" for s in _steps(cm))
    for got, want in zip(cm(x), RowMax()(x)):
        torch.testing.assert_close(got, want, equal_nan=True)
