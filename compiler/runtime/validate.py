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
        self.binder = Binder([n.type for n in self.inputs], [n.attr("name") for n in self.inputs])

    def __call__(self, arrays: Sequence[np.ndarray], check_values: bool = True) -> list[np.ndarray]:
        ins = self.inputs
        if len(arrays) != len(ins):
            names = ", ".join(n.attr("name") for n in ins)
            raise InputError(f"expected {len(ins)} input tensors ({names}), got {len(arrays)}")
        out = []
        for n, a in zip(ins, arrays):
            name, t = n.attr("name"), n.type
            a = np.asarray(a)
            want = t.dtype.to_numpy()
            if a.dtype != want:
                if n.attr("kind") in ("indices", "offsets") and a.dtype in _INDEX_DTYPES:
                    a = a.astype(want)       # int32 and int64 ids are both accepted
                elif t.dtype.is_float and a.dtype.kind == "f" and n.attr("kind") == "dense":
                    raise InputError(f"input {name!r}: dtype {a.dtype}, expected {want} "
                                     f"(convert with .float())")
                else:
                    raise InputError(f"input {name!r}: dtype {a.dtype}, expected {want}")
            if a.ndim != t.rank:
                raise InputError(f"input {name!r}: rank {a.ndim} (shape {a.shape}), expected rank "
                                 f"{t.rank} ({t})")
            out.append(a)
        try:
            self.binder.bind([a.shape for a in out])
        except ShapeError as e:
            raise InputError(str(e)) from None
        if check_values:
            for f in self.features:
                self._check_feature(f, out)
        return out

    @staticmethod
    def _check_feature(f: dict, arrays: list[np.ndarray]) -> None:
        if f["indices"] is None or f["offsets"] is None:
            return
        name = f["feature"]
        idx, off = arrays[f["indices"]], arrays[f["offsets"]]
        if f["include_last_offset"]:
            if len(off) == 0:
                raise InputError(f"feature {name!r}: offsets is empty; it needs batch+1 entries")
            if off[0] != 0:
                raise InputError(f"feature {name!r}: offsets must start at 0, got {int(off[0])}")
            if off[-1] != len(idx):
                raise InputError(f"feature {name!r}: offsets end at {int(off[-1])} but indices holds "
                                 f"{len(idx)} ids (offsets[-1] must equal len(indices))")
        elif len(off) and off[0] != 0:
            raise InputError(f"feature {name!r}: offsets must start at 0, got {int(off[0])}")
        d = np.diff(off)
        if d.size and d.min() < 0:
            p = int(np.argmax(d < 0))
            raise InputError(f"feature {name!r}: offsets decrease at position {p + 1} "
                             f"({int(off[p])} then {int(off[p + 1])}); offsets must be non-decreasing")
        if len(off) and off[-1] > len(idx):
            raise InputError(f"feature {name!r}: offsets reach {int(off[-1])} beyond the {len(idx)} ids")
        rows = f.get("num_rows")
        if rows is not None and idx.size:
            lo, hi = idx.min(), idx.max()
            if lo < 0 or hi >= rows:
                p = int(np.argmax((idx < 0) | (idx >= rows)))
                raise InputError(f"feature {name!r}: index {int(idx[p])} at position {p} is out of range "
                                 f"for its table of {rows} rows")
