"""`xrec cost` on dlrm-small: the JSON's sums match its per-node terms and hand-computed work."""
import contextlib
import io
import json

import pytest
import torch

from xrec.cli import main
from xrec.model_arg import resolve

BATCHES = (1, 64, 512)
ACT_FLOPS = {torch.nn.ReLU: 1, torch.nn.Sigmoid: 4}      # the convention of xrec/cost/rules/elementwise.py


def run_cli(*argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(["cost", *argv])
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def report():
    rc, out, err = run_cli("dlrm-small", "--max-rows", "1000", "--target", "xla", "--hardware", "tpu-v5e",
                           "--batch", ",".join(map(str, BATCHES)), "--json", "--lower-bound")
    assert rc == 0, err
    return json.loads(out)


def _sum(dicts, key):
    out = {}
    for d in dicts:
        for k, v in d[key].items():
            out[k] = out.get(k, 0.0) + v
    return out


def test_stage_and_total_sums_match_the_nodes(report):
    for r in report["batches"]:
        w = r["work"]
        for stage, sw in w["stages"].items():
            nodes = [n for n in w["nodes"] if n["stage"] == stage]
            for key in ("flops", "bytes", "gather_bytes", "transfers"):
                assert sw[key] == pytest.approx(_sum(nodes, key)), (stage, key)
            assert sw["calls"] == sum(n["calls"] for n in nodes)
        for key in ("flops", "bytes"):
            assert w["total"][key] == pytest.approx(_sum(w["stages"].values(), key))


def test_dense_flops_are_those_of_the_models_linear_layers(report):
    model = resolve("dlrm-small", max_rows=1000).module
    for r in report["batches"]:
        b, want = r["batch"], 0
        for seq in (model.bottom_mlp, model.top_mlp):
            for layer in seq:
                if isinstance(layer, torch.nn.Linear):
                    want += 2 * b * layer.in_features * layer.out_features + b * layer.out_features
                    width = layer.out_features
                else:
                    want += ACT_FLOPS[type(layer)] * b * width
        assert sum(r["work"]["stages"]["dense"]["flops"].values()) == want
        f, d = 27, 64                                  # 26 tables + the bottom MLP's output, dim 64
        assert r["work"]["stages"]["interaction"]["flops"] == {"f32": 2 * b * (f * (f - 1) // 2) * d}


def test_embedding_reads_ids_times_fp32_row_bytes(report):
    for r in report["batches"]:
        ids = sum(v for k, v in r["work"]["bindings"].items() if k.startswith("N_"))
        assert ids >= 26 * r["batch"]
        assert sum(r["work"]["stages"]["embedding"]["gather_bytes"].values()) == pytest.approx(ids * 64 * 4)


def test_stage_times_are_the_roofline_of_the_catalogue_figures(report):
    dev = report["device"]
    bw = dev["memory"]["main"]["bandwidth_Bps"]["value"]
    peak = dev["peak_flops"]["bf16"]["value"]              # the TPU has no f32 peak: timed at bf16, and said so
    for r in report["batches"]:
        p = r["prediction"]
        for stage, sw in r["work"]["stages"].items():
            want = max(sum(sw["flops"].values()) / peak, sw["bytes"].get("main", 0.0) / bw)
            assert p["stages"][stage]["time_s"] == pytest.approx(want), stage
        assert p["total_s"] == pytest.approx(sum(s["time_s"] for s in p["stages"].values()))
        assert any("no f32 peak" in n for n in p["notes"])
    totals = [r["prediction"]["total_s"] for r in report["batches"]]
    assert totals == sorted(totals)


def test_quantized_tables_read_their_row_bytes():
    rc, out, err = run_cli("dlrm-small", "--max-rows", "1000", "--target", "reference", "--hardware", "epyc-9654",
                           "--batch", "64", "--quantize", "int8", "--calib-samples", "256", "--json")
    assert rc == 0, err
    r = json.loads(out)["batches"][0]
    ids = sum(v for k, v in r["work"]["bindings"].items() if k.startswith("N_"))
    assert sum(r["work"]["stages"]["embedding"]["gather_bytes"].values()) == pytest.approx(ids * (64 + 8))


def test_text_output_lists_every_stage_and_the_total():
    rc, out, _ = run_cli("dlrm-small", "--max-rows", "1000", "--hardware", "xeon-8592plus", "--batch", "1,64")
    assert rc == 0
    for word in ("batch 1", "batch 64", "embedding", "dense", "interaction", "other", "total", "GFLOP", "calls"):
        assert word in out


def test_bad_hardware_and_targets_are_one_clear_line():
    rc, _, err = run_cli("dlrm-small", "--hardware", "h800")
    assert rc == 2 and "unknown hardware 'h800'; known:" in err and "h100-sxm" in err
    rc, _, err = run_cli("dlrm-small", "--hardware", "h100-sxm", "--target", "cpu")
    assert rc == 2 and "target 'cpu' does not run on h100-sxm" in err
    rc, _, err = run_cli("dlrm-small", "--hardware", "l4", "--target", "triton", "--ids", "pareto")
    assert rc == 2 and "unknown id distribution 'pareto'" in err
