"""Compression is reported, not hidden: plans, AUC/log-loss, the manifest, and --max-auc-drop."""
import json

import numpy as np
import pytest

import xrec
from xrec import zoo
from xrec.compress import CompressionError, auc, logloss, plan_precision
from xrec.compress.plan import TableStat
from xrec.testing import zoo_model


def test_auc_matches_the_pairwise_definition_with_ties():
    rng = np.random.default_rng(0)
    s = rng.integers(0, 5, 200).astype(float)          # many ties
    y = rng.random(200) < 0.4
    pos, neg = s[y], s[~y]
    want = ((pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()) / (len(pos) * len(neg))
    assert auc(s, y) == pytest.approx(want, abs=1e-12)
    assert logloss(np.array([0.9, 0.1]), np.array([1, 0])) == pytest.approx(-np.log(0.9))


def test_mixed_plan_gives_fewer_bits_to_big_cold_tables_first_until_within_budget():
    stats = [TableStat("hot_small", 1000, 64, 10.0), TableStat("cold_big", 1_000_000, 64, 1.0),
             TableStat("mid", 100_000, 64, 1.0)]
    int8_bytes = sum(s.bytes_at("int8") for s in stats)
    plan = plan_precision(stats, "mixed", budget_bytes=int(int8_bytes * 0.6))
    assert plan["cold_big"] in ("int4", "int2") and plan["hot_small"] == "int8"
    assert sum(s.bytes_at(plan[s.feature]) for s in stats) <= int8_bytes * 0.6
    with pytest.raises(CompressionError, match="cannot fit"):
        plan_precision(stats, "mixed", budget_bytes=1000)
    with pytest.raises(CompressionError, match="needs a memory budget"):
        plan_precision(stats, "mixed")


@pytest.fixture(scope="module")
def int8_model():
    m = zoo_model("dlrm-small", max_rows=2000)
    return m, xrec.compile(m, zoo.example_inputs(m), target="reference", quantize="int8", calib_samples=1024)


def test_quantized_artifact_records_plan_sizes_and_accuracy(int8_model):
    m, cm = int8_model
    c = cm.manifest["compression"]
    assert set(c["plan"].values()) == {"int8"} and len(c["plan"]) == 26
    assert c["bytes_after"] < 0.5 * c["bytes_before"]
    assert c["samples"] == 1024 and 0 < c["max_abs_err"] < 0.01 and c["ranking_auc"] > 0.99
    assert cm.manifest["tolerances"]["atol"] >= 4 * c["max_abs_err"]
    dense, idx, off = zoo.make_inputs(m, 16, seed=5)
    with __import__("torch").no_grad():
        want = m(dense, idx, off).numpy()
    assert np.abs(cm(dense, idx, off).numpy() - want).max() <= cm.manifest["tolerances"]["atol"]


def test_max_auc_drop_fails_the_compile_when_exceeded():
    m = zoo_model("dlrm-small", max_rows=2000)
    with pytest.raises(CompressionError, match="AUC drops by"):
        xrec.compile(m, zoo.example_inputs(m), target="reference", quantize="int2", max_auc_drop=-1.0,
                     calib_samples=512)


def test_cli_compile_prints_the_accuracy_report(capsys, tmp_path):
    from xrec.cli import main
    code = main(["compile", "two-tower", "--target", "reference", "--max-rows", "500", "--quantize", "int4",
                 "--calib-samples", "512", "-o", str(tmp_path / "tt.xrec")])
    out = capsys.readouterr().out
    assert code == 0
    for key in ("precision   16 tables int4", "size", "drift", "AUC", "log-loss", "ranking AUC"):
        assert key in out
    man = json.loads((tmp_path / "tt.xrec" / "manifest.json").read_text())
    assert man["compression"]["plan"]["indices[0]"] == "int4"


def test_models_without_probability_outputs_get_drift_but_no_auc():
    import torch.nn as nn
    bags = nn.EmbeddingBag(500, 8, mode="sum", include_last_offset=True).eval()
    ex = (torch_tensor([1, 2, 3, 4, 5, 6]), torch_tensor([0, 2, 4, 6]))

    def calib(batch, seed):
        rng = np.random.default_rng(seed)
        off = np.concatenate([[0], np.cumsum(rng.integers(0, 4, size=batch))])
        return (torch_tensor(rng.integers(0, 500, size=off[-1])), torch_tensor(off))

    cm = xrec.compile(bags, ex, target="reference", quantize="int8", calibration=calib, calib_samples=256)
    c = cm.manifest["compression"]
    assert c["auc"] is None and c["logloss"] is None and 0 < c["max_abs_err"] < 0.05
    with pytest.raises(CompressionError, match="probability"):
        xrec.compile(bags, ex, target="reference", quantize="int8", calibration=calib, calib_samples=256,
                     max_auc_drop=0.01)


def torch_tensor(x):
    import torch
    return torch.tensor(np.asarray(x), dtype=torch.int64)
