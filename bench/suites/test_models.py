"""Whole zoo models (tables capped at --bench-rows): xrec vs PyTorch eager."""
from __future__ import annotations

import pytest
import torch

from xrec import zoo

MODELS = ["dlrm-small", "dcn-v2", "deepfm", "wide-deep", "two-tower", "dlrm-v2"]


@pytest.fixture(scope="module", params=MODELS)
def model(request, bench_opts):
    return request.param, zoo.build(request.param, max_rows=min(bench_opts["rows"], 100_000))


def test_eager(benchmark, model, bench_opts):
    name, m = model
    args = zoo.make_inputs(m, bench_opts["batch"], seed=1)
    with torch.inference_mode():
        benchmark(m, *args)


def test_xrec(benchmark, model, bench_opts, xrec_compile):
    name, m = model
    cm = xrec_compile(m, zoo.example_inputs(m), name=name)
    args = zoo.make_inputs(m, bench_opts["batch"], seed=1)
    with torch.inference_mode():
        torch.testing.assert_close(cm(*args), m(*args), rtol=1e-3, atol=1e-4)
    benchmark(cm, *args)
