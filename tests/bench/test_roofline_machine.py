"""Roofline probes (probes.c built with g++) and machine description."""
from __future__ import annotations

import math
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from xrec.bench import machine, roofline

needs_cxx = pytest.mark.skipif(shutil.which("g++") is None, reason="no g++ to build the roofline probes")


def _bags(seed=0):
    rng = np.random.default_rng(seed)
    tables = [rng.standard_normal((300, 16)).astype(np.float32), rng.standard_normal((40, 5)).astype(np.float32)]
    ids = [rng.integers(0, 300, 37), rng.integers(0, 40, 11)]
    ids[0][:3] = [0, 299, 299]                           # both ends and a duplicate
    offs = [np.array([0, 0, 10, 30, 30, 37]), np.array([0, 4, 4, 4, 11, 11])]   # empty bags
    return tables, ids, offs


def _torch_pooled(tables, ids, offs):
    return torch.cat([F.embedding_bag(torch.from_numpy(i), torch.from_numpy(t), torch.from_numpy(o), mode="sum",
                                      include_last_offset=True) for t, i, o in zip(tables, ids, offs)], dim=1)


@needs_cxx
@pytest.mark.parametrize("threads", [1, 2])
def test_gather_probe_pools_like_embedding_bag(threads):
    tables, ids, offs = _bags()
    probe = roofline.GatherProbe(tables, ids, offs, threads)
    np.testing.assert_allclose(probe(), _torch_pooled(tables, ids, offs).numpy(), rtol=1e-6, atol=1e-6)
    assert probe.bytes_touched == (37 * 16 + 11 * 5) * 4


@needs_cxx
def test_gather_probe_int8_matches_torch_byte_rowwise_op():
    tables, ids, offs = _bags(1)
    packed = [torch.ops.quantized.embedding_bag_byte_prepack(torch.from_numpy(t)) for t in tables]
    probe = roofline.GatherProbe([p.numpy() for p in packed], ids, offs, 2, fmt="int8")
    op = torch.ops.quantized.embedding_bag_byte_rowwise_offsets
    want = torch.cat([op(p, torch.from_numpy(i), torch.from_numpy(o), False, 0, False, None, None, True)
                      for p, i, o in zip(packed, ids, offs)], dim=1)
    np.testing.assert_allclose(probe(), want.numpy(), rtol=1e-5, atol=1e-5)
    assert probe.bytes_touched == 37 * (16 + 8) + 11 * (5 + 8)


def test_gather_probe_rejects_mixed_batches_and_unknown_formats():
    tables, ids, offs = _bags()
    with pytest.raises(ValueError, match="same batch"):
        roofline.GatherProbe(tables, ids, [offs[0], offs[1][:-1]], 1)
    with pytest.raises(ValueError, match="fp32 or int8"):
        roofline.GatherProbe(tables, ids, offs, 1, fmt="int4")


@needs_cxx
def test_machine_ceilings_are_positive_finite_numbers():
    c = roofline.machine_ceilings(1, quick=True)
    for k in ("stream_read_GBps", "gather_GBps", "fma_peak_GFLOPs"):
        assert math.isfinite(c[k]) and c[k] > 0, (k, c)


def test_attainable_is_the_lower_of_bandwidth_and_peak():
    c = {"fma_peak_GFLOPs": 100.0, "stream_read_GBps": 10.0}
    assert roofline.attainable_gflops(2.0, c) == pytest.approx(20.0)
    assert roofline.attainable_gflops(50.0, c) == pytest.approx(100.0)


def test_probe_build_failure_names_the_compiler(tmp_path, monkeypatch):
    from xrec.config import knobs
    monkeypatch.setattr(roofline, "_LIB", None)
    with knobs.override(cxx=str(tmp_path / "no-such-g++"), cache_dir=str(tmp_path)):
        with pytest.raises(roofline.ProbeBuildError, match="no-such-g\\+\\+"):
            roofline.probe_library()


def test_machine_info_describes_cpu_isa_cores_and_memory():
    info = machine.machine_info()
    assert info["cores"] >= 1 and info["memory_bytes"] > 0
    assert info["best_isa"] in ("avx512", "avx2", "sse4.2", "scalar")
    assert set(info["isa"]) <= set(machine.ISA_FLAGS)
    assert "torch" in info["versions"]
    line = machine.describe(info)
    assert f"{info['cores']} cores" in line and info["best_isa"] in line


def test_load_monitor_reports_fractions_between_zero_and_one():
    mon = machine.LoadMonitor().start()
    sum(i * i for i in range(200_000))
    out = mon.stop()
    assert out["elapsed_s"] >= 0
    if "other_busy_frac" in out:                      # Linux
        assert 0.0 <= out["other_busy_frac"] <= 1.0
        assert 0.0 <= out["own_busy_frac"] <= 1.0
