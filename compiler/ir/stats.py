"""Pooling statistics of a graph's sparse features, recorded once in the graph's metadata.

The frontend measures them on the example inputs it traces with
(``import_model``), and anything holding better inputs (a calibration set)
can measure again with :func:`record_pooling`. Passes and targets read them
with :func:`pooling_stats`; nobody guesses pooling factors from a model's name.

Stored under ``graph.meta["pooling"]`` as a tuple of ``(feature, bags, ids,
min_ids, max_ids)`` records (immutable, JSON round-trip through ir.json),
one per JAGGED feature whose indices and offsets are graph inputs; the feature
is the JAGGED node's ``feature`` attribute (``"indices[3]"``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from .graph import Graph
from .ops import Op

POOLING_KEY = "pooling"


@dataclass(frozen=True)
class PoolingStats:
    """Ids per bag of one sparse feature over the inputs it was measured on."""

    feature: str
    bags: int        # bags seen (batch rows, summed over the batches measured)
    ids: int         # ids seen
    min_ids: int     # fewest ids in one bag
    max_ids: int     # most ids in one bag

    @property
    def mean(self) -> float:
        """Mean ids per bag (the pooling factor); 0 when no bag was seen."""
        return self.ids / self.bags if self.bags else 0.0

    @property
    def one_hot(self) -> bool:
        """Every bag seen held exactly one id."""
        return self.bags > 0 and self.min_ids == self.max_ids == 1


def pooling_stats(g: Graph) -> dict[str, PoolingStats]:
    """feature -> its recorded statistics ({} when none were recorded)."""
    return {r[0]: PoolingStats(*r) for r in g.meta_get(POOLING_KEY, ()) or ()}


def _bag_lengths(offsets: np.ndarray, nnz: int, include_last_offset: bool) -> np.ndarray:
    off = np.asarray(offsets).astype(np.int64, copy=False).reshape(-1)
    if not include_last_offset:
        off = np.concatenate([off, [nnz]])
    return np.diff(off)


def measure_pooling(g: Graph, batches: Iterable[Sequence[np.ndarray]]) -> dict[str, PoolingStats]:
    """Statistics of every sparse feature over ``batches`` of flat inputs (in ``g.input_nodes`` order).

    Features whose indices or offsets are computed inside the model (not graph inputs) are skipped.
    """
    pos = {n.name: k for k, n in enumerate(g.input_nodes)}
    feats = {}                  # one entry per feature, however many JAGGED nodes (bags) read it
    for j in g.nodes_of(Op.JAGGED):
        idx, off = j.inputs[0], j.inputs[1]
        if idx in pos and off in pos:
            feats.setdefault(j.attr("feature", j.name), (pos[idx], pos[off], j.attr("include_last_offset", True)))
    acc: dict[str, list[int]] = {}
    for flat in batches:
        if len(flat) != len(pos):
            raise ValueError(f"{g.name}: expected {len(pos)} flat inputs to measure pooling on, got {len(flat)}")
        for name, (ki, ko, last) in feats.items():
            lengths = _bag_lengths(np.asarray(flat[ko]), int(np.asarray(flat[ki]).size), last)
            if lengths.size == 0:
                continue
            a = acc.setdefault(name, [0, 0, int(lengths.min()), int(lengths.max())])
            a[0] += int(lengths.size)
            a[1] += int(lengths.sum())
            a[2] = min(a[2], int(lengths.min()))
            a[3] = max(a[3], int(lengths.max()))
    return {name: PoolingStats(name, *a) for name, a in acc.items()}


def with_pooling(g: Graph, stats: dict[str, PoolingStats]) -> Graph:
    """``g`` with ``stats`` as its recorded pooling statistics (replacing any recorded before)."""
    rec = tuple((s.feature, s.bags, s.ids, s.min_ids, s.max_ids) for s in stats.values())
    meta = tuple((k, v) for k, v in g.meta if k != POOLING_KEY) + ((POOLING_KEY, rec),)
    return g.with_(meta=meta)


def record_pooling(g: Graph, batches: Iterable[Sequence[np.ndarray]]) -> Graph:
    """``g`` with pooling statistics measured on ``batches`` of flat numpy inputs."""
    return with_pooling(g, measure_pooling(g, batches))
