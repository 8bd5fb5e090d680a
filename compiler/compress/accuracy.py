"""Accuracy of a compressed model against its fp32 original, on a calibration set.

Labels are drawn once from the fp32 model's predicted probabilities
(y ~ Bernoulli(p_fp32), fixed seed), the usual way to score a compressed model
without a labelled data set; both models are scored on the same labels (AUC,
log-loss). Where the fp32 predictions spread little (synthetic zoo weights),
those labels are mostly noise, so the report also gives the ranking AUC: the
compressed model's AUC against "fp32 prediction above its median" (1.0 means
the compressed model ranks every sample pair across the median as fp32 does).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
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

    def as_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        scores = "AUC and log-loss n/a (output is not a probability)" if self.auc is None else (
            f"AUC {self.auc_fp32:.5f} -> {self.auc:.5f} ({self.auc_change:+.5f}); log-loss "
            f"{self.logloss_fp32:.5f} -> {self.logloss:.5f} ({self.logloss_change:+.5f})")
        return (f"{self.samples} calibration samples: output drift max {self.max_abs_err:.2e} "
                f"mean {self.mean_abs_err:.2e}; {scores}; ranking AUC {self.ranking_auc:.5f}; weights {self.bytes_before / 2**20:.1f} -> "
                f"{self.bytes_after / 2**20:.1f} MiB ({self.bytes_after / max(self.bytes_before, 1):.1%})")


def is_probability(p: np.ndarray) -> bool:
    return bool(np.all((p >= 0) & (p <= 1)))


def predictions(g: Graph, batches: Sequence[list[np.ndarray]]) -> np.ndarray:
    return np.concatenate([np.asarray(run_graph(g, b)[0], np.float64).ravel() for b in batches])


def measure(fp32: Graph, compressed: Graph, batches: Sequence[list[np.ndarray]], seed: int = 0,
            p_fp32: np.ndarray | None = None) -> AccuracyReport:
    """Score ``compressed`` against ``fp32`` on calibration ``batches`` (flat input lists)."""
    p0 = predictions(fp32, batches) if p_fp32 is None else p_fp32
    p1 = predictions(compressed, batches)
    d = np.abs(p1 - p0)
    a0 = a1 = l0 = l1 = None
    if is_probability(p0):
        y = np.random.default_rng(seed).random(len(p0)) < p0
        a0, a1 = auc(p0, y), auc(p1, y)
        l0, l1 = logloss(p0, y), logloss(p1, y)
    return AccuracyReport(samples=len(p0), max_abs_err=float(d.max()), mean_abs_err=float(d.mean()),
                          auc_fp32=a0, auc=a1, auc_change=None if a0 is None else a1 - a0,
                          logloss_fp32=l0, logloss=l1, logloss_change=None if l0 is None else l1 - l0,
                          ranking_auc=auc(p1, p0 > np.median(p0)),
                          bytes_before=fp32.param_bytes(),
                          bytes_after=compressed.param_bytes())
