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


def test_render_re_presents_a_saved_run_without_measuring(tmp_path, sample_doc):
    src = report.write_json(sample_doc, tmp_path / "r.json")
    rc = cli.main(["bench", "--render", str(src), "--plot", str(tmp_path / "p.png"),
                   "--markdown", str(tmp_path / "page.md")])
    assert rc == 0
    assert (tmp_path / "p.png").read_bytes()[:8] == PNG_MAGIC
    assert "| eager |" in (tmp_path / "page.md").read_text()
    assert json.loads(src.read_text())["rows"] == sample_doc["rows"]


@pytest.mark.parametrize("argv,message", [
    (["bench"], "needs a MODEL"),
    (["bench", "two-tower", "--kernel", "linear"], "not both"),
    (["bench", "two-tower", "--baselines", "eager,nope"], "unknown baseline"),
    (["bench", "two-tower", "--target", "gpu9"], "unknown target"),
    (["bench", "two-tower", "--reps", "0"], "--reps"),
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
