"""Compare a compiled model with PyTorch eager on fresh inputs at several batch sizes."""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
from torch.utils import _pytree as pytree

# values below this magnitude are compared absolutely in max_rel_err (a sigmoid output of 1e-9
# that differs by 1e-12 is not a 0.1% error)
REL_FLOOR = 1e-4


def errors(got: Sequence[np.ndarray], want: Sequence[np.ndarray]) -> tuple[float, float]:
    max_abs, max_rel = 0.0, 0.0
    if len(got) != len(want):
        raise ValueError(f"{len(got)} outputs, PyTorch gives {len(want)}")
    for a, b in zip(got, want):
        a = np.asarray(a, np.float64)
        b = np.asarray(b, np.float64)
        if a.shape != b.shape:
            raise ValueError(f"output shape {a.shape}, PyTorch gives {b.shape}")
        if a.size == 0:
            continue
        d = np.abs(a - b)
        if not np.all(np.isfinite(a) == np.isfinite(b)):
            return float("inf"), float("inf")
        d = np.where(np.isfinite(b), d, 0.0)
        max_abs = max(max_abs, float(d.max()))
        max_rel = max(max_rel, float((d / np.maximum(np.abs(b), REL_FLOOR)).max()))
    return max_abs, max_rel


def check(compiled, reference: Callable, make_inputs: Callable[[int, int], tuple],
          batches: Sequence[int] = (1, 7, 64), rtol: float = 1e-5, seed: int = 1) -> dict:
    """Run both on the same inputs at each batch; report errors and whether within ``rtol``."""
    rows = []
    for k, batch in enumerate(batches):
        args = make_inputs(batch, seed + k)
        with torch.no_grad():
            want = reference(*args)
        got = compiled(*args)
        w = [np.asarray(x.detach().numpy() if isinstance(x, torch.Tensor) else x)
             for x in pytree.tree_leaves(want)]
        g = [np.asarray(x.detach().numpy() if isinstance(x, torch.Tensor) else x)
             for x in pytree.tree_leaves(got)]
        a, r = errors(g, w)
        rows.append({"batch": batch, "max_abs_err": a, "max_rel_err": r})
    max_abs = max(r["max_abs_err"] for r in rows)
    max_rel = max(r["max_rel_err"] for r in rows)
    return {"max_abs_err": max_abs, "max_rel_err": max_rel, "rtol": rtol, "rel_floor": REL_FLOOR,
            "ok": bool(max_rel <= rtol), "batches": rows}
