"""Compare a compiled model with PyTorch eager on fresh inputs at several batch sizes."""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
from torch.utils import _pytree as pytree

# values below this magnitude are compared absolutely in max_rel_err (a sigmoid output of 1e-9
# that differs by 1e-12 is not a 0.1% error)
REL_FLOOR = 1e-4


def errors(got: Sequence[np.ndarray], want: Sequence[np.ndarray], rtol: float = 0.0,
           atol: float = 0.0) -> tuple[float, float]:
    """(max abs error, max rel error); with rtol/atol also whether every element is within them."""
    return _errors(got, want, rtol, atol)[:2]


def within(got, want, rtol: float, atol: float) -> bool:
    return _errors(got, want, rtol, atol)[2]


def _errors(got, want, rtol, atol) -> tuple[float, float, bool]:
    max_abs, max_rel, ok = 0.0, 0.0, True
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
            return float("inf"), float("inf"), False
        d = np.where(np.isfinite(b), d, 0.0)
        ok = ok and bool(np.all(d <= atol + rtol * np.abs(np.where(np.isfinite(b), b, 0.0))))
        max_abs = max(max_abs, float(d.max()))
        max_rel = max(max_rel, float((d / np.maximum(np.abs(b), REL_FLOOR)).max()))
    return max_abs, max_rel, ok


def check(compiled, reference: Callable, make_inputs: Callable[[int, int], tuple],
          batches: Sequence[int] = (1, 7, 64), rtol: float = 1e-5, atol: float = 1e-6, seed: int = 1) -> dict:
    """Run both on the same inputs at each batch; report errors and whether every element is
    within ``atol + rtol * |expected|`` (numpy's allclose rule)."""
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
        a, r, ok = _errors(g, w, rtol, atol)
        rows.append({"batch": batch, "max_abs_err": a, "max_rel_err": r, "ok": ok})
    max_abs = max(r["max_abs_err"] for r in rows)
    max_rel = max(r["max_rel_err"] for r in rows)
    return {"max_abs_err": max_abs, "max_rel_err": max_rel, "rtol": rtol, "atol": atol, "rel_floor": REL_FLOOR,
            "ok": all(r["ok"] for r in rows), "batches": rows}
