"""`xrec bench` end to end on tiny models: rows for every system and batch, reasons, JSON, plot."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from xrec import cli
from xrec.bench import report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def no_cpu_target(monkeypatch):
    import xrec.targets
    real = xrec.targets.available_targets

    def fake():
        out = dict(real())
        out["cpu"] = "no compiler in this test"
        return out
    monkeypatch.setattr(xrec.targets, "available_targets", fake)


def test_bench_cli_on_a_tiny_model_writes_rows_reasons_json_and_plot(tmp_path, monkeypatch, no_cpu_target, capsys):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)          # as if not installed
    out_json, out_png, out_md = tmp_path / "r.json", tmp_path / "p.png", tmp_path / "page.md"
    rc = cli.main(["bench", "two-tower", "--max-rows", "100", "--batch", "1,4", "--reps", "3", "--warmup", "1",
                   "--gap-ms", "0", "--threads", "1", "--no-roofline", "--baselines", "eager,onnxruntime", "--target", "reference,cpu",
                   "--mode", "cold",
                   "--json", str(out_json), "--plot", str(out_png), "--markdown", str(out_md),
                   "--note", "test run"])
    assert rc == 0
    doc = report.read_json(out_json)                                # validates the schema
    got = {(r["system"], r["batch"]): r for r in doc["rows"]}
    assert set(got) == {(s, b) for s in ("eager", "onnxruntime", "xrec-reference", "xrec-cpu") for b in (1, 4)}
    for b in (1, 4):
        for s in ("eager", "xrec-reference"):
            r = got[(s, b)]
            assert r["status"] == "ok" and r["n"] == 3 and r["check"] == "ok"
            assert r["p10_ms"] <= r["median_ms"] <= r["p90_ms"]
            assert r["qps"] == pytest.approx(b / (r["median_ms"] / 1e3))
            assert r["model"] == "two-tower" and r["threads"] >= 1 and r["cpu_model"]
        assert got[("onnxruntime", b)]["status"] == "unavailable"
        assert "onnxruntime" in got[("onnxruntime", b)]["reason"]
        assert got[("xrec-cpu", b)]["reason"] == "target cpu not available: no compiler in this test"
        assert got[("xrec-reference", b)]["target"] == "reference"
    assert doc["machine"]["cores"] >= 1 and doc["machine"]["isa"] is not None
    assert doc["note"] == "test run"
    assert out_png.read_bytes()[:8] == PNG_MAGIC and out_png.stat().st_size > 10_000
    page = out_md.read_text()
    assert "![latency and throughput](p.png)" in page and "[r.json](r.json)" in page
    text = capsys.readouterr().out
    assert "xrec-reference" in text and "target cpu not available" in text
    # --no-roofline: the roofline % column is there and says why it is empty
    assert "roofline %" in text and "roofline % absent: --no-roofline" in " ".join(text.split())
    assert "roofline %: absent: --no-roofline" in page
    assert all(r["roofline_pct"] is None for r in doc["rows"])


def test_render_re_presents_a_saved_run_without_measuring(tmp_path, sample_doc):
    src = report.write_json(sample_doc, tmp_path / "r.json")
    rc = cli.main(["bench", "--render", str(src), "--plot", str(tmp_path / "p.png"),
                   "--markdown", str(tmp_path / "page.md")])
    assert rc == 0
    assert (tmp_path / "p.png").read_bytes()[:8] == PNG_MAGIC
    assert "| eager |" in (tmp_path / "page.md").read_text()
    assert json.loads(src.read_text())["rows"] == sample_doc["rows"]


def test_bench_cli_rejects_an_unknown_quantize_variant(capsys):
    with pytest.raises(SystemExit):
        cli.main(["bench", "two-tower", "--quantize", "fp32,int9"])
    assert "--quantize takes a comma-separated list of fp32, fp16, bf16, int8, int4" in capsys.readouterr().err


def test_bench_cli_quantize_compiles_each_variant_and_pages_size_and_speed(tmp_path, capsys):
    out_json, out_md = tmp_path / "r.json", tmp_path / "page.md"
    rc = cli.main(["bench", "dlrm-small", "--max-rows", "50", "--batch", "2", "--reps", "2", "--warmup", "0",
                   "--gap-ms", "0", "--threads", "1", "--no-roofline", "--baselines", "eager",
                   "--target", "reference", "--quantize", "fp32,int8", "--calib-samples", "256",
                   "--mode", "warm", "--burst", "2", "--json", str(out_json), "--markdown", str(out_md)])
    assert rc == 0
    doc = report.read_json(out_json)
    assert [r["system"] for r in doc["rows"]] == ["eager", "xrec-reference", "xrec-reference-int8"]
    assert all(r["status"] == "ok" and r["check"] == "ok" and r["n"] == 2 for r in doc["rows"])
    assert doc["settings"]["mode"] == "warm" and doc["settings"]["burst"] == 2
    int8 = doc["rows"][2]
    assert int8["variant"] == "int8" and 0 < int8["weights_frac_of_fp32"] < 1
    assert "### Size and speed by variant" in out_md.read_text()
    text = capsys.readouterr().out
    assert "size and speed by variant" in text and "warm (bursts of 2, first untimed)" in text


@pytest.mark.parametrize("argv,message", [
    (["bench"], "needs a MODEL"),
    (["bench", "two-tower", "--kernel", "linear"], "not both"),
    (["bench", "two-tower", "--baselines", "eager,nope"], "unknown baseline"),
    (["bench", "two-tower", "--target", "gpu9"], "unknown target"),
    (["bench", "two-tower", "--reps", "0"], "--reps"),
    (["bench", "two-tower", "--mode", "warm", "--burst", "1"], "--burst >= 2"),
    (["bench", "two-tower", "--quantize", "mixed"], "--budget-mb"),
    (["bench", "--kernel", "linear", "--quantize", "int8"], "--formats"),
    (["bench", "--kernel", "linear", "--parts"], "for models"),
    (["bench", "--kernel", "linear", "-O", "batch=4"], "for models"),
])
def test_bench_cli_rejects_bad_arguments_with_a_message(argv, message, capsys):
    assert cli.main(argv) == 2
    assert message in capsys.readouterr().err


def test_bench_cli_imports_without_optional_systems():
    code = ("import sys\n"
            "for m in ('onnxruntime', 'onnx', 'onnxscript', 'tvm', 'matplotlib', 'rich'): sys.modules[m] = None\n"
            "import xrec.cli\n"
            "a = xrec.cli.build_parser().parse_args(['bench', 'dlrm-small', '--batch', '1,64'])\n"
            "assert a.fn.__module__ == 'xrec.bench.cli', a.fn.__module__\n"
            "assert a.batch == [1, 64]\n"
            "assert 'onnxruntime' not in [k for k, v in sys.modules.items() if v is not None]\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
