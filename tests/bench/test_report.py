"""Benchmark documents: JSON schema, speedups, reasons, text and markdown pages."""
from __future__ import annotations

import json

import pytest

from xrec.bench import SCHEMA, report


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


def test_speedup_is_against_the_fastest_baseline_of_each_batch():
    sp = {(s["group"], s["system"]): s for s in report.speedups(_doc(ROWS))}
    assert sp[(1, "xrec-cpu")]["baseline"] == "onnxruntime"
    assert sp[(1, "xrec-cpu")]["speedup"] == pytest.approx(2.0)
    assert sp[(64, "xrec-cpu")]["baseline"] == "eager"
    assert sp[(64, "xrec-cpu")]["speedup"] == pytest.approx(0.8)


def test_reasons_list_each_reason_once_per_system():
    assert report.reasons(_doc(ROWS)) == {"tvm": [(1, "import: boom")]}


def test_validate_accepts_a_good_document_and_round_trips_through_json(tmp_path):
    doc = _doc(ROWS)
    report.validate(doc)
    p = report.write_json(doc, tmp_path / "sub" / "r.json")
    assert report.read_json(p) == json.loads(json.dumps(doc))


@pytest.mark.parametrize("breakage,message", [
    (lambda d: d.update(schema="other/1"), "not an xrec bench document"),
    (lambda d: d.pop("machine"), "lacks 'machine'"),
    (lambda d: d["rows"][0].pop("p90_ms"), "lacks p90_ms"),
    (lambda d: d["rows"][3].update(reason=""), "gives no reason"),
    (lambda d: d["rows"][0].update(p10_ms=5.0), "p10 <= median <= p90"),
])
def test_validate_names_what_is_wrong(breakage, message):
    doc = json.loads(json.dumps(_doc(ROWS)))
    breakage(doc)
    with pytest.raises(ValueError, match=message):
        report.validate(doc)


def test_text_report_has_every_system_speedups_reasons_and_load():
    text = report.format_text(_doc(ROWS))
    for s in ("eager", "onnxruntime", "xrec-cpu", "tvm"):
        assert s in text
    assert "2.00x" in text and "0.80x" in text
    assert "tvm: import: boom" in text
    assert "other processes used 50%" in text


def test_rich_and_plain_printing_both_work(capsys, monkeypatch):
    report.print_report(_doc(ROWS))
    assert "xrec-cpu" in capsys.readouterr().out
    import builtins
    real = builtins.__import__
    monkeypatch.setattr(builtins, "__import__",
                        lambda name, *a, **k: (_ for _ in ()).throw(ImportError(name)) if name.startswith("rich")
                        else real(name, *a, **k))
    report.print_report(_doc(ROWS))
    out = capsys.readouterr().out
    assert "xrec-cpu" in out and "batch 64" in out


def test_markdown_page_describes_machine_load_settings_and_results():
    page = report.markdown_page(_doc(ROWS), plot="p.png", json_name="r.json")
    assert page.startswith("# xrec bench: m (2026-01-02)")
    assert "> others were compiling" in page
    assert "Test CPU" in page and "other processes used 50%" in page
    assert "![latency and throughput](p.png)" in page
    assert "| eager | 2.000 (1.800-2.400) | 8.000 (7.200-9.600) |" in page
    assert "| tvm | n/a | n/a |" in page
    assert "**did not run**: import: boom" in page
    assert "xrec bench --render r.json" in page
