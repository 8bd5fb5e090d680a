"""One feature of a table-batched embedding op (a small record graph.py, the printer and passes share)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class GroupFeature:
    """One feature of an ``EMBEDDING_BAG_GROUP``: which table it pools and how."""

    feature: str
    mode: str                 # "sum" | "mean" | "max"
    padding_idx: int | None
    has_psw: bool             # per-sample weights follow the jagged input
    num_rows: int             # logical rows (ids range over [0, num_rows))
    dim: int
    has_remap: bool = False   # a pruned table: an int32 [num_rows] remap (-1 = pruned) comes last

    @property
    def num_inputs(self) -> int:
        return 2 + self.has_psw + self.has_remap
