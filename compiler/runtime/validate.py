"""Input validation at the runtime boundary: clear errors, never a crash or a silent wrong answer.

Checks, in order: the number of inputs, each input's dtype and rank, the
shapes against the compiled symbols (one batch size for all), then per sparse
feature: offsets start at 0, never decrease, end at len(indices), and every
id lies inside its table. Messages name the input or feature and position.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..ir import Graph, Op
from ..ir.bind import Binder, ShapeError
from ..ir.types import DType


class InputError(ValueError):
    """The inputs do not fit the compiled model; the message says which and where."""


_INDEX_DTYPES = (np.dtype(np.int32), np.dtype(np.int64))


class InputValidator:
    def __init__(self, g: Graph, features: list[dict]):
        self.inputs = g.input_nodes
        self.features = features
        self.names = [n.attr("name") for n in self.inputs]
        self.kinds = [n.attr("kind") for n in self.inputs]
        # (expected numpy dtype, rank) per input, worked out once: this runs on every call
        self.expect = [(n.type.dtype.to_numpy(), n.type.rank) for n in self.inputs]
        self.binder = Binder([n.type for n in self.inputs], self.names)

    def __call__(self, arrays: Sequence[np.ndarray], check_values: bool = True) -> list[np.ndarray]:
        if len(arrays) != len(self.expect):
            raise InputError(f"expected {len(self.expect)} input tensors ({', '.join(self.names)}), "
                             f"got {len(arrays)}")
        out = [a if isinstance(a, np.ndarray) else np.asarray(a) for a in arrays]
        for k, (a, (want, rank)) in enumerate(zip(out, self.expect)):
            if a.dtype != want:
                out[k] = a = self._convert(k, a, want)
            if a.ndim != rank:
                raise InputError(f"input {self.names[k]!r}: rank {a.ndim} (shape {a.shape}), expected rank "
                                 f"{rank} ({self.inputs[k].type})")
        try:
            self.binder.bind([a.shape for a in out])
        except ShapeError as e:
            raise InputError(str(e)) from None
        if check_values:
            for f in self.features:
                self._check_feature(f, out)
        return out

    def _convert(self, k: int, a: np.ndarray, want: np.dtype) -> np.ndarray:
        name, kind = self.names[k], self.kinds[k]
        if kind in ("indices", "offsets") and a.dtype in _INDEX_DTYPES:
            return a.astype(want)       # int32 and int64 ids are both accepted
        if kind == "dense" and a.dtype.kind == "f":
            raise InputError(f"input {name!r}: dtype {a.dtype}, expected {want} (convert with .float())")
        raise InputError(f"input {name!r}: dtype {a.dtype}, expected {want}")

    @staticmethod
    def _check_feature(f: dict, arrays: list[np.ndarray]) -> None:
        check_feature(f, arrays)


def check_offset_ends(name: str, include_last_offset: bool, n_offsets: int, first: int | None,
                      last: int | None, n_ids: int) -> None:
    """The O(1) part of the offsets checks (first and last entry), shared by every target's runtime."""
    if include_last_offset:
        if n_offsets == 0:
            raise InputError(f"feature {name!r}: offsets is empty; it needs batch+1 entries")
        if first != 0:
            raise InputError(f"feature {name!r}: offsets must start at 0, got {first}")
        if last != n_ids:
            raise InputError(f"feature {name!r}: offsets end at {last} but indices holds "
                             f"{n_ids} ids (offsets[-1] must equal len(indices))")
    elif n_offsets and first != 0:
        raise InputError(f"feature {name!r}: offsets must start at 0, got {first}")


def check_feature(f: dict, arrays: list) -> None:
    """Every check of one sparse feature's ids and offsets (numpy arrays), in the documented order."""
    if f["indices"] is None or f["offsets"] is None:
        return
    name = f["feature"]
    idx, off = np.asarray(arrays[f["indices"]]), np.asarray(arrays[f["offsets"]])
    n = len(off)
    check_offset_ends(name, bool(f["include_last_offset"]), n, int(off[0]) if n else None,
                      int(off[-1]) if n else None, len(idx))
    d = np.diff(off)
    if d.size and d.min() < 0:
        p = int(np.argmax(d < 0))
        raise InputError(f"feature {name!r}: offsets decrease at position {p + 1} "
                         f"({int(off[p])} then {int(off[p + 1])}); offsets must be non-decreasing")
    if n and off[-1] > len(idx):
        raise InputError(f"feature {name!r}: offsets reach {int(off[-1])} beyond the {len(idx)} ids")
    check_ids_in_range(name, idx, f.get("num_rows"))


def check_ids_in_range(name: str, idx: np.ndarray, rows: int | None) -> None:
    """Every id of feature ``name`` in [0, rows): the first one outside is named with its position."""
    if rows is not None and idx.size:
        lo, hi = idx.min(), idx.max()
        if lo < 0 or hi >= rows:
            p = int(np.argmax((idx < 0) | (idx >= rows)))
            raise InputError(f"feature {name!r}: index {int(idx[p])} at position {p} is out of range "
                             f"for its table of {rows} rows")
