"""Which embedding rows to keep: by access frequency on a calibration sample, or by row norm."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..ir import Graph, Op, feature_inputs


def prune_plan(g: Graph, calib: Sequence[list[np.ndarray]], method: str = "frequency",
               keep_fraction: float = 0.5, min_rows: int = 1000) -> dict[str, np.ndarray]:
    """Rows to keep per feature, for tables of at least ``min_rows`` rows.

    frequency: the most often read rows in ``calib`` (ties, and rows never read, ordered by row norm);
    norm: the rows with the largest L2 norm.
    """
    if method not in ("frequency", "norm"):
        raise ValueError(f"unknown pruning method {method!r}; use 'frequency' or 'norm'")
    if not 0 < keep_fraction <= 1:
        raise ValueError(f"keep fraction must be in (0, 1], got {keep_fraction}")
    ins = {n.name: k for k, n in enumerate(g.input_nodes)}
    jag = {n.name: n for n in g.nodes_of(Op.JAGGED)}
    plan: dict[str, np.ndarray] = {}
    for n in g.nodes_of(Op.EMBEDDING_BAG_GROUP):
        for fi in feature_inputs(n):
            f = fi.feature
            if f.num_rows < min_rows or f.has_remap:
                continue
            table = g.params[g.node(fi.table).attr("name")]
            norm = np.linalg.norm(table, axis=1)
            k = max(1, int(round(keep_fraction * f.num_rows)))
            if method == "norm":
                order = np.lexsort((-np.arange(f.num_rows), norm))[::-1]
            else:
                idx_input = jag[fi.jagged].inputs[0]
                counts = np.zeros(f.num_rows, np.int64)
                for b in calib:
                    ids = np.asarray(b[ins[idx_input]], np.int64)
                    counts += np.bincount(ids[(ids >= 0) & (ids < f.num_rows)], minlength=f.num_rows)
                order = np.lexsort((norm, counts))[::-1]
            plan[f.feature] = np.sort(order[:k])
    return plan
