"""Per-table precision: given by the user, uniform, or chosen under a budget or an accuracy bound."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np

from ..ir import Graph, Op, feature_inputs
from ..passes.quantize_embeddings import PRECISIONS

LADDER = ("fp32", "fp16", "int8", "int4", "int2")     # from most to fewest bits


class CompressionError(ValueError):
    """The requested compression cannot be met (budget too small, accuracy bound exceeded)."""


@dataclass(frozen=True)
class TableStat:
    feature: str
    rows: int
    dim: int
    ids_per_sample: float      # measured on the calibration inputs

    def bytes_at(self, precision: str) -> int:
        from ..ir import formats
        return self.rows * formats.by_name(precision).row_bytes(self.dim)

    @property
    def coldness(self) -> float:
        """Rows per id read: big tables that are rarely read are cold."""
        return self.rows / max(self.ids_per_sample, 1e-9)


def table_stats(g: Graph, calib: Sequence[list[np.ndarray]]) -> list[TableStat]:
    """One entry per embedding feature, with ids per sample measured on ``calib`` (flat inputs)."""
    ins = {n.name: k for k, n in enumerate(g.input_nodes)}
    jag = {n.name: n for n in g.nodes_of(Op.JAGGED)}
    first = next(iter(jag.values()), None)
    samples = 0
    if first is not None and first.inputs[1] in ins:
        last = 1 if first.attr("include_last_offset", True) else 0
        samples = sum(len(b[ins[first.inputs[1]]]) - last for b in calib)
    out = []
    for n in g.nodes_of(Op.EMBEDDING_BAG_GROUP, Op.EMBEDDING_BAG):
        for fi in feature_inputs(n):
            f = fi.feature
            rows = f.num_rows if f.num_rows >= 0 else int(g.type_of(fi.remap or fi.table).shape[0])
            idx_input = jag[fi.jagged].inputs[0]
            ids = sum(len(b[ins[idx_input]]) for b in calib) if idx_input in ins else 0
            out.append(TableStat(f.feature, rows, f.dim, ids / max(samples, 1)))
    return out


def plan_precision(stats: Sequence[TableStat], quantize: str | Mapping[str, str], *,
                   budget_bytes: int | None = None,
                   evaluate: Callable[[dict[str, str]], float] | None = None,
                   max_auc_drop: float | None = None) -> dict[str, str]:
    """A precision per feature.

    ``quantize`` is a precision for every table ("int8", ...), a mapping
    feature -> precision, or "mixed": start at int8 and give fewer bits to the
    coldest, biggest tables first while the plan is over ``budget_bytes``, or
    while ``evaluate(plan)`` (the AUC drop of a plan) stays within ``max_auc_drop``.
    """
    feats = [s.feature for s in stats]
    if isinstance(quantize, Mapping):
        plan = {f: quantize.get(f, quantize.get("*", "fp32")) for f in feats}
    elif quantize in PRECISIONS:
        plan = {f: quantize for f in feats}
    elif quantize == "mixed":
        plan = {f: "int8" for f in feats}
        order = sorted(stats, key=lambda s: (s.coldness * s.bytes_at("fp32")), reverse=True)
        if budget_bytes is None and max_auc_drop is None:
            raise CompressionError("quantize='mixed' needs a memory budget or a max AUC drop to aim for")
        total = lambda p: sum(s.bytes_at(p[s.feature]) for s in stats)  # noqa: E731
        for target in ("int4", "int2"):
            for s in order:
                if budget_bytes is not None and total(plan) <= budget_bytes:
                    break
                trial = dict(plan)
                trial[s.feature] = target
                if max_auc_drop is not None and evaluate is not None and -evaluate(trial) > max_auc_drop:
                    continue
                plan = trial
        if budget_bytes is not None and total(plan) > budget_bytes:
            raise CompressionError(f"cannot fit the tables in {budget_bytes / 2**20:.1f} MiB: the smallest plan "
                                   f"within the accuracy bound needs {total(plan) / 2**20:.1f} MiB")
    else:
        raise CompressionError(f"unknown quantize {quantize!r}; use one of {', '.join(PRECISIONS)}, 'mixed', "
                               "or a mapping feature -> precision")
    for f, p in plan.items():
        if p not in PRECISIONS:
            raise CompressionError(f"feature {f!r}: unknown precision {p!r}; use one of {', '.join(PRECISIONS)}")
    return plan
