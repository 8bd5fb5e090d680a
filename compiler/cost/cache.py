"""How many embedding rows a batch reads from main memory, given the id distribution and a cache.

Model (documented, an estimate): a table of ``rows`` rows is read ``ids`` times per batch, each id drawn
independently from the distribution (uniform, or Zipf with exponent ``alpha`` over the rows ranked by
popularity). The cache holds the table's ``cached`` hottest rows across batches. A row read more than
once in a batch is fetched from main memory at most once (the repeats hit in cache). So the expected
rows fetched from main memory are

    sum over ranks i > cached of  P(row i is read at least once) = 1 - (1 - p_i) ** ids

and every other read is a cache hit. Uniform: p_i = 1/rows, which gives
(rows - cached) * (1 - (1 - 1/rows) ** ids). The expectation grows with ``ids`` and ``rows`` and
shrinks with ``cached``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_EXACT_RANKS = 4096          # ranks summed one by one; beyond, geometric bins of ratio _BIN_RATIO
_BIN_RATIO = 1.01


@dataclass(frozen=True)
class IdDistribution:
    """How ids are drawn over a table's rows: ``"uniform"`` or ``"zipf"`` (exponent ``alpha`` > 0)."""

    kind: str = "uniform"
    alpha: float = 1.05

    def __post_init__(self):
        if self.kind not in ("uniform", "zipf"):
            raise ValueError(f"unknown id distribution {self.kind!r}; use 'uniform' or 'zipf[:ALPHA]'")
        if self.kind == "zipf" and not self.alpha > 0:
            raise ValueError(f"a zipf id distribution needs alpha > 0, got {self.alpha}")

    @staticmethod
    def parse(text: str) -> "IdDistribution":
        """``"uniform"``, ``"zipf"`` or ``"zipf:1.2"``."""
        kind, _, alpha = text.partition(":")
        try:
            return IdDistribution(kind, float(alpha)) if alpha else IdDistribution(kind)
        except ValueError as e:
            raise ValueError(f"bad id distribution {text!r}: {e}") from None

    def __str__(self) -> str:
        return self.kind if self.kind == "uniform" else f"zipf:{self.alpha:g}"


def _rank_bins(rows: int) -> tuple[np.ndarray, np.ndarray]:
    """(first rank, count) of bins covering ranks 1..rows: single ranks first, then geometric bins."""
    exact = np.arange(1, min(rows, _EXACT_RANKS) + 1, dtype=np.float64)
    starts, counts = [exact], [np.ones_like(exact)]
    if rows > _EXACT_RANKS:
        edges = [float(_EXACT_RANKS + 1)]
        while edges[-1] <= rows:
            edges.append(max(edges[-1] + 1, np.floor(edges[-1] * _BIN_RATIO)))
        e = np.minimum(np.array(edges), rows + 1)
        starts.append(e[:-1])
        counts.append(np.diff(e))
    s, c = np.concatenate(starts), np.concatenate(counts)
    keep = c > 0
    return s[keep], c[keep]


def _zipf_probs(rows: int, alpha: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per bin: first rank, count, and the probability of one rank in it (bin middle)."""
    start, count = _rank_bins(rows)
    mid = start + (count - 1) / 2
    w = mid ** (-alpha)
    norm = float((w * count).sum())
    return start, count, w / norm


def main_rows(rows: int, cached: int, ids: float, dist: IdDistribution = IdDistribution()) -> float:
    """Expected rows a batch of ``ids`` reads of a ``rows``-row table fetch from main memory."""
    if rows <= 0 or ids <= 0:
        return 0.0
    cached = int(min(max(cached, 0), rows))
    if dist.kind == "uniform":
        p = 1.0 / rows
        return float((rows - cached) * -np.expm1(ids * np.log1p(-p))) if rows > 1 else float(rows - cached)
    start, count, p = _zipf_probs(rows, dist.alpha)
    last = start + count - 1
    # ranks of each bin beyond the cached ones (the cached rows are the hottest: ranks 1..cached)
    beyond = np.clip(last - cached, 0, count)
    touched = -np.expm1(ids * np.log1p(-np.minimum(p, 1 - 1e-15)))
    return float((beyond * touched).sum())


def hit_fraction(rows: int, cached: int, ids: float, dist: IdDistribution = IdDistribution()) -> float:
    """Fraction of the ``ids`` reads served from cache (1 - main rows / ids)."""
    if ids <= 0:
        return 0.0
    return 1.0 - main_rows(rows, cached, ids, dist) / ids
