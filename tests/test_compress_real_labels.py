"""Compression reports on real labels: a model from xrec.data is scored on MovieLens-100K's test split
(AUC, log-loss, drop vs fp32, MLPerf-style 99 % / 99.9 % targets); other models stay synthetic and say so."""
import numpy as np
import pytest
import torch

import xrec
from xrec import data, zoo
from xrec.compress import CompressionError
from xrec.testing import zoo_model


def pairwise_auc(scores, labels):
    """AUC as P(score_pos > score_neg) + 0.5 P(tie), by binary search over the sorted negatives
    (independent of xrec's rank-sum implementation)."""
    s = np.asarray(scores, np.float64).ravel()
    y = np.asarray(labels).ravel() > 0.5
    neg = np.sort(s[~y])
    below = np.searchsorted(neg, s[y], side="left")
    ties = np.searchsorted(neg, s[y], side="right") - below
    return float((below + 0.5 * ties).sum() / (y.sum() * (~y).sum()))


def test_pairwise_auc_helper_agrees_with_brute_force():
    rng = np.random.default_rng(1)
    s, y = rng.integers(0, 6, 300).astype(float), rng.random(300) < 0.5
    pos, neg = s[y], s[~y]
    want = ((pos[:, None] > neg).sum() + 0.5 * (pos[:, None] == neg).sum()) / (len(pos) * len(neg))
    assert pairwise_auc(s, y) == pytest.approx(want, abs=1e-12)


@pytest.fixture(scope="module")
def trained():
    model, _ = data.train("deepfm", seed=0, config=data.TrainConfig(epochs=1))
    return model


def _predict(fn, split):
    with torch.no_grad():
        return np.concatenate([np.asarray(fn(*args)).ravel() for args, _ in split.batches(4096)])


@pytest.fixture(scope="module")
def int8(trained):
    return xrec.compile(trained, data.example_inputs(trained), target="reference", quantize="int8")


def test_report_of_a_movielens_model_is_on_the_real_test_split(trained, int8):
    test = data.load().test
    c = int8.manifest["compression"]
    assert c["labels"] == "real: movielens-100k test split" and c["samples"] == len(test)
    p32 = _predict(trained, test)
    assert c["auc_fp32"] == pytest.approx(pairwise_auc(p32, test.labels), abs=1e-5)
    y = test.labels
    want_ll = -np.mean(y * np.log(np.clip(p32, 1e-7, 1)) + (1 - y) * np.log(np.clip(1 - p32, 1e-7, 1)))
    assert c["logloss_fp32"] == pytest.approx(want_ll, abs=1e-5)
    assert c["auc_fp32"] > 0.6                         # a trained model on real labels, not a coin flip
    # the compressed model's AUC is that of the artifact's own predictions
    pq = _predict(int8, test)
    assert c["auc"] == pytest.approx(pairwise_auc(pq, test.labels), abs=1e-5)
    assert c["auc_change"] == pytest.approx(c["auc"] - c["auc_fp32"], abs=1e-12)


def test_int8_embeddings_keep_auc_within_mlperf_99_9_percent(int8):
    c = int8.manifest["compression"]
    assert abs(c["auc_change"]) < 2e-3
    assert c["auc_ratio"] == pytest.approx(c["auc"] / c["auc_fp32"], rel=1e-12)
    assert c["meets_99"] is True and c["meets_99_9"] is True


def test_mlperf_flags_follow_the_auc_ratio(trained):
    cm = xrec.compile(trained, data.example_inputs(trained), target="reference", quantize="int2")
    c = cm.manifest["compression"]
    assert c["meets_99"] == (c["auc"] / c["auc_fp32"] >= 0.99)
    assert c["meets_99_9"] == (c["auc"] / c["auc_fp32"] >= 0.999)
    assert c["max_abs_err"] > int8_err(trained)      # fewer bits, more drift on the same rows


def int8_err(model):
    cm = xrec.compile(model, data.example_inputs(model), target="reference", quantize="int8")
    return cm.manifest["compression"]["max_abs_err"]


def test_max_auc_drop_gate_uses_the_real_test_split(trained):
    with pytest.raises(CompressionError, match="real: movielens-100k test split"):
        xrec.compile(trained, data.example_inputs(trained), target="reference", quantize="int2", max_auc_drop=-1.0)


def test_mixed_planner_keeps_the_validation_auc_drop_within_the_bound(trained):
    bound = 5e-4
    cm = xrec.compile(trained, data.example_inputs(trained), target="reference", quantize="mixed",
                      max_auc_drop=bound)
    val = data.load().validation
    drop = pairwise_auc(_predict(trained, val), val.labels) - pairwise_auc(_predict(cm, val), val.labels)
    assert drop <= bound + 1e-5
    assert set(cm.manifest["compression"]["plan"].values()) <= {"int8", "int4", "int2"}


def test_models_without_data_are_scored_on_synthetic_labels_and_say_so():
    m = zoo_model("deepfm", max_rows=300)
    cm = xrec.compile(m, zoo.example_inputs(m), target="reference", quantize="int8", calib_samples=512)
    c = cm.manifest["compression"]
    assert c["labels"].startswith("synthetic") and c["samples"] == 512
    assert c["auc_ratio"] is None and c["meets_99"] is None and c["meets_99_9"] is None


def test_cli_compile_of_a_movielens_factory_reports_on_real_labels(tmp_path, monkeypatch, capsys):
    import json

    import xrec.data.factories as factories
    from xrec.cli import main
    quick = data.TrainConfig(epochs=1, max_train_rows=3000)
    real_trained = data.trained
    monkeypatch.setattr(data, "trained", lambda name, **kw: real_trained(name, config=quick))
    out = tmp_path / "ml.xrec"
    code = main(["compile", f"{factories.__file__}:two_tower", "--target", "reference", "--quantize", "int8",
                 "-o", str(out)])
    assert code == 0
    c = json.loads((out / "manifest.json").read_text())["compression"]
    assert c["labels"] == "real: movielens-100k test split" and c["samples"] == len(data.load().test)
    assert c["meets_99"] is not None
    assert "AUC" in capsys.readouterr().out
