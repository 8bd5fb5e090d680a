"""Accuracy of a compressed model against its fp32 original: on real labels where the model has them.

Real labels: a model that carries ``model.xrec_data`` (``xrec.data``: MovieLens-100K) is scored on
its data's real test split: AUC and log-loss of fp32 and of the compressed model against the true
labels, the change, and whether the MLPerf-style accuracy targets hold (compressed AUC at least 99 %
and 99.9 % of the fp32 AUC). Choices (the mixed planner's trials) are made on the validation split,
the report and the ``--max-auc-drop`` gate use the test split, and frequency pruning and table
statistics count ids on the train split, so the test split never steers a decision.

Synthetic labels (every other model): labels are drawn once from the fp32 model's predicted
probabilities (y ~ Bernoulli(p_fp32), fixed seed) on calibration inputs, the usual way to score a
compressed model without a labelled data set; both models are scored on the same labels. Where the
fp32 predictions spread little (synthetic zoo weights), those labels are mostly noise, so the report
also gives the ranking AUC: the compressed model's AUC against "fp32 prediction above its median"
(1.0 means the compressed model ranks every sample pair across the median as fp32 does). The report
says which kind of labels it used (``labels``); the MLPerf criteria are given on real labels only.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np

from ..ir import Graph, run_graph


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """ROC AUC by the rank-sum (Mann-Whitney) statistic, ties averaged."""
    s = np.asarray(scores, np.float64).ravel()
    y = np.asarray(labels).ravel().astype(bool)
    pos, neg = int(y.sum()), int((~y).sum())
    if pos == 0 or neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), np.float64)
    sorted_s = s[order]
    # average ranks over ties
    uniq, start, counts = np.unique(sorted_s, return_index=True, return_counts=True)
    avg = start + (counts - 1) / 2.0 + 1.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[y].sum() - pos * (pos + 1) / 2.0) / (pos * neg))


def logloss(p: np.ndarray, labels: np.ndarray, eps: float = 1e-7) -> float:
    p = np.clip(np.asarray(p, np.float64).ravel(), eps, 1 - eps)
    y = np.asarray(labels).ravel().astype(np.float64)
    return float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).mean())


MLPERF_TARGETS = (0.99, 0.999)      # compressed AUC / fp32 AUC, MLPerf's "99 %" and "99.9 %" accuracy targets


@dataclass
class EvalSet:
    """Inputs to score on: flat input batches, real labels (None: synthetic, drawn from fp32), a description."""
    batches: list
    labels: np.ndarray | None = None
    source: str = "synthetic"
    p_fp32: np.ndarray | None = field(default=None, repr=False)    # filled by ``scored``

    def scored(self, fp32: Graph) -> "EvalSet":
        if self.p_fp32 is None:
            self.p_fp32 = predictions(fp32, self.batches)
        return self


@dataclass
class AccuracyReport:
    samples: int
    max_abs_err: float
    mean_abs_err: float
    # AUC and log-loss need a CTR-style output (probabilities); None for other models
    auc_fp32: float | None
    auc: float | None
    auc_change: float | None
    logloss_fp32: float | None
    logloss: float | None
    logloss_change: float | None
    ranking_auc: float
    bytes_before: int
    bytes_after: int
    # "real: <data> <split> split" or "synthetic: ..."; the relative-AUC criteria only on real labels
    labels: str = "synthetic"
    auc_ratio: float | None = None
    meets_99: bool | None = None
    meets_99_9: bool | None = None

    @property
    def real_labels(self) -> bool:
        return self.labels.startswith("real")

    def as_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        scores = "AUC and log-loss n/a (output is not a probability)" if self.auc is None else (
            f"AUC {self.auc_fp32:.5f} -> {self.auc:.5f} ({self.auc_change:+.5f}); log-loss "
            f"{self.logloss_fp32:.5f} -> {self.logloss:.5f} ({self.logloss_change:+.5f})")
        if self.auc_ratio is not None:
            yes = lambda b: "met" if b else "NOT met"    # noqa: E731
            scores += (f"; AUC {self.auc_ratio:.4%} of fp32: 99 % target {yes(self.meets_99)}, "
                       f"99.9 % target {yes(self.meets_99_9)}")
        return (f"{self.samples} samples (labels {self.labels}): output drift max {self.max_abs_err:.2e} "
                f"mean {self.mean_abs_err:.2e}; {scores}; ranking AUC {self.ranking_auc:.5f}; weights "
                f"{self.bytes_before / 2**20:.1f} -> {self.bytes_after / 2**20:.1f} MiB "
                f"({self.bytes_after / max(self.bytes_before, 1):.1%})")


def is_probability(p: np.ndarray) -> bool:
    return bool(np.all((p >= 0) & (p <= 1)))


def predictions(g: Graph, batches: Sequence[list[np.ndarray]]) -> np.ndarray:
    return np.concatenate([np.asarray(run_graph(g, b)[0], np.float64).ravel() for b in batches])


SYNTHETIC = "synthetic: Bernoulli(fp32 prediction) on calibration inputs"


def measure(fp32: Graph, compressed: Graph, batches: Sequence[list[np.ndarray]] | EvalSet, seed: int = 0,
            p_fp32: np.ndarray | None = None) -> AccuracyReport:
    """Score ``compressed`` against ``fp32`` on ``batches`` (flat input lists, or an :class:`EvalSet`
    that may carry real labels)."""
    ev = batches if isinstance(batches, EvalSet) else EvalSet(list(batches), None, SYNTHETIC, p_fp32)
    p0 = ev.scored(fp32).p_fp32
    p1 = predictions(compressed, ev.batches)
    d = np.abs(p1 - p0)
    a0 = a1 = l0 = l1 = ratio = m99 = m999 = None
    real = ev.labels is not None
    if is_probability(p0):
        y = np.asarray(ev.labels) if real else np.random.default_rng(seed).random(len(p0)) < p0
        a0, a1 = auc(p0, y), auc(p1, y)
        l0, l1 = logloss(p0, y), logloss(p1, y)
        if real and a0 > 0:
            ratio = a1 / a0
            m99, m999 = bool(ratio >= MLPERF_TARGETS[0]), bool(ratio >= MLPERF_TARGETS[1])
    return AccuracyReport(samples=len(p0), max_abs_err=float(d.max()), mean_abs_err=float(d.mean()),
                          auc_fp32=a0, auc=a1, auc_change=None if a0 is None else a1 - a0,
                          logloss_fp32=l0, logloss=l1, logloss_change=None if l0 is None else l1 - l0,
                          ranking_auc=auc(p1, p0 > np.median(p0)),
                          bytes_before=fp32.param_bytes(),
                          bytes_after=compressed.param_bytes(),
                          labels=ev.source, auc_ratio=ratio, meets_99=m99, meets_99_9=m999)


@dataclass
class EvalSets:
    """Where each step of compression looks: ``calib`` (table statistics, frequency pruning),
    ``decide`` (the mixed planner's trials), ``report`` (the report and the --max-auc-drop gate)."""
    calib: list
    decide: EvalSet
    report: EvalSet

    @property
    def real(self) -> bool:
        return self.report.labels is not None


def evaluation_sets(model, synthetic) -> EvalSets:
    """Real splits when ``model`` carries ``xrec_data`` (train / validation / test), else
    ``synthetic()`` (flat calibration batches) for all three, with labels drawn from fp32."""
    data = getattr(model, "xrec_data", None)
    if data is None:
        batches = synthetic()
        ev = EvalSet(batches, None, SYNTHETIC)
        return EvalSets(batches, ev, ev)
    train, _ = data.evaluation("train")
    vb, vy = data.evaluation("validation")
    tb, ty = data.evaluation("test")
    return EvalSets(train, EvalSet(vb, vy, f"real: {data.name} validation split"),
                    EvalSet(tb, ty, f"real: {data.name} test split"))
