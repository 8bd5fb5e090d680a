"""kernels/cpu templates called directly (bench/kernel_calls.cpp) against PyTorch, and as systems of `xrec bench --kernel`."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from xrec.bench import kernel_bench, kernel_calls, report
from xrec.ir import formats

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="no g++ to build bench/kernel_calls.cpp")
TINY = dict(threads=1, reps=2, warmup=1, gap_ms=0.0, roofline=False)


@pytest.fixture(scope="module")
def lib():
    from xrec.config import knobs
    return kernel_calls.load("scalar", Path(knobs.cache_dir) / "bench" / "kernel_calls")


def _bags_inputs(batch, rows, seed, dtype=torch.int64):
    """Bags of 0..5 ids (empty bags, duplicate ids) per table, offsets of length batch + 1."""
    g = torch.Generator().manual_seed(seed)
    idx, off = [], []
    for n in rows:
        lens = torch.randint(0, 6, (batch,), generator=g)
        lens[0] = 0
        o = torch.cat([torch.zeros(1, dtype=torch.long), lens.cumsum(0)]).to(dtype)
        i = torch.randint(0, n, (int(o[-1]),), generator=g).to(dtype)
        if len(i) > 1:
            i[1] = i[0]                                          # a duplicate id
        idx.append(i)
        off.append(o)
    return idx, off


@pytest.mark.parametrize("fmt,batch,dim", [(f, b, d) for f in ("fp32", "int8") for b, d in ((1, 5), (9, 17), (33, 64))]
                         + [("int4", 1, 6), ("int4", 9, 18), ("int4", 33, 64)])   # FBGEMM packs int4 of even dims
def test_bags_pool_like_torch_and_fbgemm(lib, fmt, batch, dim):
    g = torch.Generator().manual_seed(dim)
    weights = [torch.randn(40, dim, generator=g), torch.randn(7, dim, generator=g)]
    rf = formats.by_name(fmt)
    idx, off = _bags_inputs(batch, [40, 7], 3)
    if fmt == "fp32":
        stored = weights
        want = [F.embedding_bag(i, w, o, mode="sum", include_last_offset=True) for w, i, o in zip(weights, idx, off)]
    else:                                        # FBGEMM's rows and its pooling op
        stored = [kernel_bench._fbgemm(rf.fbgemm_prepack)(w) for w in weights]
        op = kernel_bench._fbgemm(rf.fbgemm_op)
        want = [op(p, i, o, False, 0, False, None, None, True) for p, i, o in zip(stored, idx, off)]
    bags = kernel_calls.Bags(lib, [t.numpy() for t in stored], [dim, dim], rf.code, threads=1)
    out = np.full((batch, 2 * dim), np.nan, np.float32)
    got = bags([i.numpy() for i in idx], [o.numpy() for o in off], out)
    np.testing.assert_allclose(got, torch.cat(want, dim=1).numpy(), rtol=1e-5, atol=1e-5)
    assert not got[0].any()                                      # the empty first bag pools to zeros


@pytest.mark.parametrize("m,k,n", [(1, 13, 5), (7, 33, 17), (70, 16, 64)])
def test_linear_matches_torch(lib, m, k, n):
    g = torch.Generator().manual_seed(k)
    w, b, x = torch.randn(n, k, generator=g), torch.randn(n, generator=g), torch.randn(m, k, generator=g)
    lin = kernel_calls.Linear(lib, w.numpy(), b.numpy(), formats.ACT_CODES["none"], threads=1)
    got = lin(x.numpy(), np.empty((m, n), np.float32))
    np.testing.assert_allclose(got, F.linear(x, w, b).numpy(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("batch,vectors,dim", [(1, 2, 3), (5, 4, 17), (3, 27, 64)])
def test_interaction_is_the_zoo_dlrm_pairs(lib, batch, vectors, dim):
    g = torch.Generator().manual_seed(batch)
    x = torch.randn(batch, dim, generator=g)
    ly = [torch.randn(batch, dim, generator=g) for _ in range(vectors - 1)]
    want = kernel_bench.DotInteraction(vectors)(x, ly)[:, dim:]
    inter = kernel_calls.Interaction(lib, vectors, threads=1)
    stacked = torch.cat([x] + ly, dim=1).view(batch, vectors, dim).numpy()
    got = inter(stacked, np.empty((batch, inter.pairs), np.float32))
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-4, atol=1e-4)


@pytest.fixture
def no_cpu_target(monkeypatch):
    """The cpu target reports itself unavailable (so no model compile), kernel_calls still builds."""
    import xrec.targets
    real = xrec.targets.available_targets
    monkeypatch.setattr(xrec.targets, "available_targets", lambda: {**real(), "cpu": "not in this test"})


def test_kernel_suites_time_the_template_next_to_torch_with_a_reason_for_a_bad_revision(no_cpu_target):
    doc = kernel_bench.run_kernel_bench("embedding-bag", targets=["cpu"], batches=[3], dims=[6], pooling=[2],
                                        table_rows=[50], tables=2, formats=["fp32", "int4"], zipf=1.05,
                                        kernels_at=("no-such-revision",), **TINY)
    report.validate(doc)
    got = {(r["system"], r["format"]): r for r in doc["rows"]}
    assert set(got) == {(s, f) for s in ("torch", "xrec-cpu", "kernels-cpu", "kernels-cpu@no-such-revision",
                                         "roofline-gather") for f in ("fp32", "int4")}
    for f in ("fp32", "int4"):
        assert got[("torch", f)]["status"] == "ok"
        k = got[("kernels-cpu", f)]
        assert k["status"] == "ok" and k["check"] == "ok" and k["kind"] == "xrec" and k["target"] == "cpu"
        bad = got[("kernels-cpu@no-such-revision", f)]
        assert bad["status"] == "failed" and "no-such-revision" in bad["reason"]
    assert got[("roofline-gather", "int4")]["status"] == "unavailable"
    assert "int4" in got[("roofline-gather", "int4")]["reason"]
    assert got[("xrec-cpu", "fp32")]["reason"] == "target cpu not available: not in this test"
    assert {s["system"] for s in report.speedups(doc)} == {"kernels-cpu"}     # the xrec rows that ran


def test_interaction_and_linear_suites_check_the_template(no_cpu_target, monkeypatch):
    monkeypatch.setattr(kernel_bench, "_zoo_linear_shapes", lambda models: [(6, 3)])
    for kernel, kw in (("interaction", dict(dims=[4], num_vectors=3)), ("linear", dict(models=["x"]))):
        doc = kernel_bench.run_kernel_bench(kernel, targets=["cpu"], batches=[2], **kw, **TINY)
        rows = {r["system"]: r for r in doc["rows"]}
        assert rows["kernels-cpu"]["status"] == "ok" and rows["kernels-cpu"]["check"] == "ok", rows["kernels-cpu"]
        assert rows["torch"]["check"] == "ok"
        if kernel == "linear":
            assert rows["onednn"]["status"] in ("ok", "unavailable")
            assert rows["onednn"]["status"] != "ok" or rows["onednn"]["check"] == "ok"


@pytest.mark.parametrize("kw,message", [
    (dict(clock="thread-cpu", threads=2), "--threads 1"),
    (dict(clock="cycles"), "unknown clock"),
    (dict(kernels_at=("HEAD",), targets=["reference"]), "needs the cpu target"),
    (dict(kernel="embedding-bag", formats=["int4"], dims=[4, 5]), "even dims"),
])
def test_kernel_bench_rejects_settings_it_cannot_honour(kw, message):
    args = {"kernel": "interaction", "targets": ["cpu"], "batches": [2], "dims": [4], "num_vectors": 3, **TINY, **kw}
    with pytest.raises(ValueError, match=message):
        kernel_bench.run_kernel_bench(**args)


def test_kernels_at_extracts_the_headers_of_a_revision(tmp_path):
    src = kernel_calls.kernels_at("HEAD", tmp_path)
    assert (src / "xrec_kernels.h").is_file()
    with pytest.raises(kernel_calls.KernelCallsError, match="no-such-revision"):
        kernel_calls.kernels_at("no-such-revision", tmp_path)
