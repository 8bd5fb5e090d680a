"""`xrec bench --kernel` suites on tiny shapes: rows, checks and roofline fractions (no timing asserts)."""
from __future__ import annotations

import shutil

import pytest
import torch

from xrec.bench import kernel_bench, report

needs_cxx = pytest.mark.skipif(shutil.which("g++") is None, reason="no g++ to build the roofline probes")
TINY = dict(targets=["reference"], threads=1, reps=2, warmup=1, gap_ms=0.0, roofline=False)


@needs_cxx
def test_embedding_bag_suite_measures_torch_xrec_and_the_gather_probe():
    doc = kernel_bench.run_kernel_bench("embedding-bag", batches=[3], dims=[5], pooling=[1, 4], table_rows=[50], tables=2,
                                   formats=["fp32", "int8"], zipf=1.05, **TINY)
    report.validate(doc)
    assert doc["fraction_key"] == "fraction_of_probe"
    configs = {r["config"] for r in doc["rows"]}
    assert configs == {f"{f} d=5 rows=50 pool={p} B=3" for f in ("fp32", "int8") for p in (1, 4)}
    for r in doc["rows"]:
        if r["system"] in ("torch", "roofline-gather") or (r["system"] == "xrec-reference" and r["format"] == "fp32"):
            assert r["status"] == "ok" and r["check"] == "ok", r
            assert r["bytes"] == r["ids"] * (4 * 5 if r["format"] == "fp32" else 5 + 8)
            assert r["fraction_of_probe"] > 0
        if r["system"] == "roofline-gather":
            assert r["fraction_of_probe"] == pytest.approx(1.0)
        if r["status"] != "ok":
            assert r["reason"]
    assert {r["system"] for r in doc["rows"]} == {"torch", "xrec-reference", "roofline-gather"}


def test_embedding_bags_module_is_the_cat_of_pooled_tables():
    w = [torch.randn(10, 3), torch.randn(6, 2)]
    m = kernel_bench.EmbeddingBags(w)
    idx = [torch.tensor([1, 2, 9]), torch.tensor([5])]
    off = [torch.tensor([0, 2, 3]), torch.tensor([0, 0, 1])]
    want = torch.cat([torch.stack([w[0][1] + w[0][2], w[0][9]]), torch.stack([torch.zeros(2), w[1][5]])], dim=1)
    torch.testing.assert_close(m(idx, off), want)


def test_interaction_suite_runs_torch_and_xrec():
    doc = kernel_bench.run_kernel_bench("interaction", batches=[2, 5], dims=[4], num_vectors=4, **TINY)
    report.validate(doc)
    rows = {(r["system"], r["batch"]): r for r in doc["rows"]}
    assert set(rows) == {(s, b) for s in ("torch", "xrec-reference") for b in (2, 5)}
    for r in rows.values():
        assert r["status"] == "ok" and r["check"] == "ok"
        assert r["flops"] == 2 * r["batch"] * 6 * 4


def test_linear_suite_uses_zoo_shapes_and_roofline_fraction(monkeypatch):
    monkeypatch.setattr(kernel_bench, "_zoo_linear_shapes", lambda models: [(5, 3)])
    monkeypatch.setattr("xrec.bench.roofline.machine_ceilings",
                        lambda threads: {"threads": threads, "stream_read_GBps": 10.0, "gather_GBps": 1.0,
                                         "fma_peak_GFLOPs": 50.0})
    doc = kernel_bench.run_kernel_bench("linear", batches=[4], models=["x"], **{**TINY, "roofline": True})
    report.validate(doc)
    for r in doc["rows"]:
        assert r["status"] == "ok" and r["check"] == "ok"
        ai = r["flops"] / r["bytes"]
        assert r["fraction_of_roofline"] == pytest.approx(r["gflops"] / min(50.0, ai * 10.0))
        assert r["fraction_of_fma_peak"] == pytest.approx(r["gflops"] / 50.0)


def test_zoo_linear_shapes_are_the_distinct_linear_layers():
    shapes = kernel_bench._zoo_linear_shapes(["dlrm-small"])
    assert shapes == [(13, 512), (512, 256), (256, 64), (415, 512), (256, 1)]


def test_embedding_stage_suite_pools_a_zoo_models_own_tables_and_ids():
    from xrec import zoo
    spec = zoo.spec("dlrm-small", max_rows=30)
    doc = kernel_bench.run_kernel_bench("embedding-stage", batches=[2], models=["dlrm-small"], max_rows=30,
                                        formats=["fp32", "int8"], **TINY)
    report.validate(doc)
    assert doc["fraction_key"] == "fraction_of_probe" and doc["settings"]["max_rows"] == 30
    assert {(r["system"], r["format"]) for r in doc["rows"]} == {
        (s, f) for s in ("torch", "xrec-reference", "roofline-gather") for f in ("fp32", "int8")}
    for r in doc["rows"]:
        assert r["status"] == "ok" and r["check"] == "ok", r
        assert r["tables"] == len(spec.features) and r["config"].startswith(f"{r['format']} dlrm-small (")
        per_row = {"fp32": [4 * f.dim for f in spec.features], "int8": [f.dim + 8 for f in spec.features]}
        assert r["bytes"] > 0 and r["ids"] * min(per_row[r["format"]]) <= r["bytes"] <= r["ids"] * max(per_row[r["format"]])
