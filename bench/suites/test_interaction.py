"""DLRM dot interaction (27 vectors, as dlrm-small): xrec vs the zoo's PyTorch code."""
from __future__ import annotations

import pytest
import torch

from xrec.bench.kernel_bench import DotInteraction

VECTORS = 27


@pytest.fixture(scope="module", params=[64, 128], ids=lambda d: f"d{d}")
def dim(request):
    return request.param


def _args(batch, dim, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, dim, generator=g), [torch.randn(batch, dim, generator=g) for _ in range(VECTORS - 1)]


def test_torch_interaction(benchmark, dim, bench_opts):
    m = DotInteraction(VECTORS).eval()
    args = _args(bench_opts["batch"], dim)
    with torch.inference_mode():
        benchmark(m, *args)


def test_xrec_interaction(benchmark, dim, bench_opts, xrec_compile):
    m = DotInteraction(VECTORS).eval()
    cm = xrec_compile(m, _args(8, dim))
    args = _args(bench_opts["batch"], dim)
    torch.testing.assert_close(cm(*args), m(*args), rtol=1e-4, atol=1e-4)
    benchmark(cm, *args)
