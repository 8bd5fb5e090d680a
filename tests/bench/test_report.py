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


def test_variants_give_size_share_of_fp32_worst_diff_and_speed_per_batch(variant_doc):
    vs = {v["system"]: v for v in report.variants(variant_doc)}
    assert list(vs) == ["xrec-cpu", "xrec-cpu-int8", "xrec-cpu-int4"]
    assert vs["xrec-cpu-int8"]["weights_frac_of_fp32"] == pytest.approx(0.25)
    assert vs["xrec-cpu-int4"]["max_abs_diff_vs_eager"] == pytest.approx(0.012)      # the worse batch
    assert vs["xrec-cpu-int4"]["median_ms"] == {1: pytest.approx(0.7), 64: pytest.approx(2.8)}
    assert vs["xrec-cpu-int4"]["checks"] == ["ok", "mismatch"]


def test_a_run_without_compressed_variants_has_no_variant_table(sample_doc):
    assert report.variants(sample_doc) == []
    assert "size and speed by variant" not in report.format_text(sample_doc)
    assert "Size and speed by variant" not in report.markdown_page(sample_doc)


def test_text_and_page_show_size_and_speed_by_variant_and_the_timing_mode(variant_doc):
    text = report.format_text(variant_doc)
    assert "warm (bursts of 5, first untimed)" in text.splitlines()[0]
    line = next(ln for ln in text.splitlines() if ln.strip().startswith("xrec-cpu-int8  int8"))
    assert line.split() == ["xrec-cpu-int8", "int8", "1.00", "MiB", "25.0%", "8.00e-04", "1.0e-03", "+",
                            "1e-03|eager|", "0.800", "3.200"]
    page = report.markdown_page(variant_doc)
    assert "### Size and speed by variant" in page
    assert "| system | variant | weights.bin | % of fp32 | max \\|diff\\| vs eager | allowed |" in page
    assert ("| xrec-cpu-int4 | int4 | 0.50 MiB | 12.5% | 1.20e-02 ! | 1.0e-02 + 1e-03\\|eager\\| | 0.700 | 2.800 |"
            in page)
    assert "timing mode warm: each turn 5 calls back to back, the first untimed" in page
    assert "xrec compression variants: fp32, int8, int4" in page


def test_a_document_from_before_the_mode_option_reads_as_cold(sample_doc):
    assert "cold (1 call per turn, 10 ms gap)" in report.format_text(sample_doc).splitlines()[0]
    assert "timing mode cold: each turn one timed call, 10 ms gap after it" in report.markdown_page(sample_doc)
