"""Embedding-bag stage alone: xrec vs F.embedding_bag per table vs the plain C gather probe.

4 tables of --bench-rows x dim, sum pooling, Zipf(1.05) ids as the zoo draws them.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from xrec import zoo
from xrec.bench.kernel_bench import EmbeddingBags
from xrec.zoo.common import FeatureSpec, ZooSpec

TABLES = 4


@pytest.fixture(scope="module", params=[64, 128], ids=lambda d: f"d{d}")
def tables(request, bench_opts):
    g = torch.Generator().manual_seed(0)
    return [torch.rand(bench_opts["rows"], request.param, generator=g) for _ in range(TABLES)]


def _inputs(tables, pooling, batch):
    spec = ZooSpec("bench", 1, tuple(FeatureSpec(f"t{i}", t.shape[0], t.shape[1], float(pooling))
                                     for i, t in enumerate(tables)), "")
    _, idx, off = zoo.make_inputs(spec, batch, seed=1, empty_bag_prob=0.0)
    return idx, off


@pytest.fixture(scope="module")
def compiled(tables, xrec_compile):
    module = EmbeddingBags(tables).eval()
    idx, off = _inputs(tables, 2, 8)
    return module, xrec_compile(module, (idx, off))


@pytest.mark.parametrize("pooling", [1, 10, 50, 200], ids=lambda p: f"pool{p}")
def test_torch_embedding_bag(benchmark, tables, pooling, bench_opts):
    idx, off = _inputs(tables, pooling, bench_opts["batch"])
    benchmark.extra_info.update(bytes=sum(len(i) for i in idx) * tables[0].shape[1] * 4)

    def run():
        with torch.inference_mode():
            return torch.cat([F.embedding_bag(i, w, o, mode="sum", include_last_offset=True)
                              for w, i, o in zip(tables, idx, off)], dim=1)
    benchmark(run)


@pytest.mark.parametrize("pooling", [1, 10, 50, 200], ids=lambda p: f"pool{p}")
def test_xrec_embedding_bag(benchmark, compiled, tables, pooling, bench_opts):
    module, cm = compiled
    idx, off = _inputs(tables, pooling, bench_opts["batch"])
    torch.testing.assert_close(cm(idx, off), module(idx, off), rtol=1e-4, atol=1e-4)
    benchmark.extra_info.update(bytes=sum(len(i) for i in idx) * tables[0].shape[1] * 4)
    benchmark(cm, idx, off)


@pytest.mark.parametrize("pooling", [1, 10, 50, 200], ids=lambda p: f"pool{p}")
def test_gather_probe(benchmark, tables, pooling, bench_opts):
    from xrec.bench.roofline import GatherProbe
    idx, off = _inputs(tables, pooling, bench_opts["batch"])
    probe = GatherProbe([t.numpy() for t in tables], [i.numpy() for i in idx], [o.numpy() for o in off],
                        bench_opts["threads"])
    benchmark.extra_info.update(bytes=probe.bytes_touched)
    benchmark(probe)
