"""Dense layers at dlrm-small's shapes: xrec vs F.linear."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from xrec.bench.kernel_bench import _zoo_linear_shapes

SHAPES = _zoo_linear_shapes(["dlrm-small"])


@pytest.fixture(scope="module", params=SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
def layer(request, xrec_compile):
    k, n = request.param
    g = torch.Generator().manual_seed(0)
    lin = nn.Linear(k, n)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(n, k, generator=g) / k ** 0.5)
    module = nn.Sequential(lin).eval()
    return module, k, n, xrec_compile


def test_torch_linear(benchmark, layer, bench_opts):
    module, k, n, _ = layer
    x = torch.randn(bench_opts["batch"], k)
    w, b = module[0].weight.detach(), module[0].bias.detach()
    benchmark.extra_info.update(flops=2 * x.shape[0] * k * n)
    benchmark(F.linear, x, w, b)


def test_xrec_linear(benchmark, layer, bench_opts):
    module, k, n, xrec_compile = layer
    cm = xrec_compile(module, (torch.randn(8, k),))
    x = torch.randn(bench_opts["batch"], k)
    with torch.no_grad():
        torch.testing.assert_close(cm(x), module(x), rtol=1e-4, atol=1e-4)
    benchmark.extra_info.update(flops=2 * x.shape[0] * k * n)
    benchmark(cm, x)
