"""Benchmark documents: JSON schema, speedups, reasons, text and markdown pages."""
from __future__ import annotations

import json

import pytest

from xrec.bench import report


def test_speedup_is_against_the_fastest_baseline_of_each_batch(sample_doc):
    sp = {(s["group"], s["system"]): s for s in report.speedups(sample_doc)}
    assert sp[(1, "xrec-cpu")]["baseline"] == "onnxruntime"
    assert sp[(1, "xrec-cpu")]["speedup"] == pytest.approx(2.0)
    assert sp[(64, "xrec-cpu")]["baseline"] == "eager"
    assert sp[(64, "xrec-cpu")]["speedup"] == pytest.approx(0.8)


def test_reasons_list_each_reason_once_per_system(sample_doc):
    assert report.reasons(sample_doc) == {"tvm": [(1, "import: boom")]}


def test_validate_accepts_a_good_document_and_round_trips_through_json(sample_doc, tmp_path):
    doc = sample_doc
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
def test_validate_names_what_is_wrong(sample_doc, breakage, message):
    doc = sample_doc
    breakage(doc)
    with pytest.raises(ValueError, match=message):
        report.validate(doc)


def test_text_report_has_every_system_speedups_reasons_and_load(sample_doc):
    text = report.format_text(sample_doc)
    for s in ("eager", "onnxruntime", "xrec-cpu", "tvm"):
        assert s in text
    assert "2.00x" in text and "0.80x" in text
    assert "tvm: import: boom" in text
    assert "other processes used 50%" in text


def test_rich_and_plain_printing_both_work(sample_doc, capsys, monkeypatch):
    report.print_report(sample_doc)
    assert "xrec-cpu" in capsys.readouterr().out
    import builtins
    real = builtins.__import__
    monkeypatch.setattr(builtins, "__import__",
                        lambda name, *a, **k: (_ for _ in ()).throw(ImportError(name)) if name.startswith("rich")
                        else real(name, *a, **k))
    report.print_report(sample_doc)
    out = capsys.readouterr().out
    assert "xrec-cpu" in out and "batch 64" in out


def test_markdown_page_describes_machine_load_settings_and_results(sample_doc):
    page = report.markdown_page(sample_doc, plot="p.png", json_name="r.json")
    assert page.startswith("# xrec bench: m (2026-01-02)")
    assert "> others were compiling" in page
    assert "Test CPU" in page and "other processes used 50%" in page
    assert "![latency and throughput](p.png)" in page
    assert "| eager | 2.000 (1.800-2.400) | 8.000 (7.200-9.600) |" in page
    assert "| tvm | n/a | n/a |" in page
    assert "**did not run**: import: boom" in page
    assert "xrec bench --render r.json" in page
