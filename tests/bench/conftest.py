"""Fixtures of the bench tests: a small, hand-made benchmark document."""
from __future__ import annotations

import copy

import pytest

from xrec.bench import SCHEMA


def _row(system, batch, median, kind="baseline", status="ok", reason=""):
    ok = status == "ok"
    return {"system": system, "label": system, "kind": kind, "model": "m", "target": "cpu" if kind == "xrec" else None,
            "batch": batch, "threads": 2, "median_ms": median if ok else None,
            "p10_ms": median * 0.9 if ok else None, "p90_ms": median * 1.2 if ok else None,
            "qps": batch / (median / 1e3) if ok else None, "status": status, "reason": reason, "check": "ok"}


def _doc(rows):
    return {"schema": SCHEMA, "kind": "model", "created": "2026-01-02T03:04:05+00:00", "command": ["xrec", "bench"],
            "note": "others were compiling", "settings": {"model": "m", "threads": 2, "reps": 5, "warmup": 1,
                                                          "gap_ms": 10},
            "machine": {"cpu_model": "Test CPU", "cores": 2, "best_isa": "avx2", "memory_gib": 1.0, "isa": ["avx2"],
                        "versions": {"torch": "x"}},
            "load": {"elapsed_s": 3.0, "other_busy_frac": 0.5, "steal_frac": 0.0, "loadavg_start": [1.0, 1, 1],
                     "loadavg_end": [2.0, 1, 1]},
            "roofline": {"threads": 2, "stream_read_GBps": 10.0, "gather_GBps": 2.0, "fma_peak_GFLOPs": 100.0},
            "systems": {"tvm": {"label": "tvm", "kind": "baseline", "status": "failed", "reason": "import: boom"}},
            "rows": rows}


ROWS = [_row("eager", 1, 2.0), _row("onnxruntime", 1, 1.0), _row("xrec-cpu", 1, 0.5, kind="xrec"),
        _row("tvm", 1, 0, status="failed", reason="import: boom"),
        _row("eager", 64, 8.0), _row("onnxruntime", 64, 16.0), _row("xrec-cpu", 64, 10.0, kind="xrec"),
        _row("tvm", 64, 0, status="failed", reason="import: boom")]


@pytest.fixture
def sample_doc():
    """A model-run document: eager, onnxruntime, xrec-cpu at batch 1 and 64, tvm failing."""
    return copy.deepcopy(_doc(ROWS))


def _xrow(system, variant, batch, median, weights, diff, atol, check="ok"):
    r = _row(system, batch, median, kind="xrec")
    r.update(variant=variant, weights_bytes=weights, weights_frac_of_fp32=weights / 4 * 2**-20,
             max_abs_err=diff, max_abs_diff_vs_eager=diff, check=check,
             check_tol={"rtol": 1e-3, "atol": atol, "from": "test"})
    return r


@pytest.fixture
def variant_doc():
    """A --quantize fp32,int8,int4 run in warm mode: eager and three xrec-cpu variants at batch 1 and 64
    (fp32 weights 4 MiB, int8 1 MiB, int4 0.5 MiB); int4 exceeds its tolerance at batch 64."""
    rows = []
    for b, scale in ((1, 1.0), (64, 4.0)):
        rows += [_row("eager", b, 2.0 * scale),
                 _xrow("xrec-cpu", "fp32", b, 1.0 * scale, 4 * 2**20, 1e-7, 1e-4),
                 _xrow("xrec-cpu-int8", "int8", b, 0.8 * scale, 2**20, 2e-4 * scale, 1e-3),
                 _xrow("xrec-cpu-int4", "int4", b, 0.7 * scale, 2**19, 3e-3 * scale, 1e-2,
                       check="ok" if b == 1 else "mismatch")]
    doc = _doc(rows)
    doc["settings"].update(mode="warm", burst=5, variants=["fp32", "int8", "int4"])
    return doc
