"""Test helpers shared by every target's tests (one ``check_model`` for all).

    cm = xrec.compile(model, example_inputs(model), target="cpu")
    check_model(cm, model, edge_case_inputs(model), rtol=1e-4)
"""
from __future__ import annotations

import functools
from typing import Iterable, Sequence

import numpy as np
import torch
from torch.utils import _pytree as pytree

from .check import errors


@functools.lru_cache(maxsize=None)
def zoo_model(name: str, max_rows: int = 300, seed: int = 0):
    """A small, cached zoo model (tables capped at ``max_rows``) for tests."""
    from . import zoo
    return zoo.build(name, max_rows=max_rows, seed=seed)


def edge_case_inputs(model, batches: Sequence[int] = (1, 7, 64), seed: int = 0) -> list[tuple]:
    """Inputs with the edge cases every kernel must handle.

    batch 1 and odd batches, int64 and int32 ids, empty bags (25% of bags),
    duplicate ids inside a bag, ids 0 and num_rows-1, and one feature's bags
    all empty in the last case.
    """
    from . import zoo
    spec = zoo.spec_of(model)
    cases = []
    for k, batch in enumerate(batches):
        dtype = torch.int64 if k % 2 == 0 else torch.int32
        dense, idx, off = zoo.make_inputs(model, batch, seed=seed + k, index_dtype=dtype, empty_bag_prob=0.25)
        idx = [i.clone() for i in idx]
        off = [o.clone() for o in off]
        for f, feat in enumerate(spec.features):
            if len(idx[f]) >= 2:
                idx[f][0] = feat.num_rows - 1
                idx[f][1] = 0
            if len(idx[f]) >= 4:
                idx[f][3] = idx[f][2]          # a duplicate, likely in the same bag
        cases.append((dense, idx, off))
    # every bag of feature 0 empty
    dense, idx, off = zoo.make_inputs(model, 5, seed=seed + 99)
    idx = list(idx)
    off = list(off)
    idx[0] = idx[0][:0]
    off[0] = torch.zeros_like(off[0])
    cases.append((dense, idx, off))
    return cases


def _leaves(x) -> list[np.ndarray]:
    return [np.asarray(t.detach().numpy() if isinstance(t, torch.Tensor) else t) for t in pytree.tree_leaves(x)]


def check_model(compiled, model, inputs: Iterable[tuple], rtol: float = 1e-4, atol: float = 1e-6) -> float:
    """Assert ``compiled(*x)`` matches ``model(*x)`` for each input tuple; return the worst rel error."""
    worst = 0.0
    for k, args in enumerate(inputs):
        with torch.no_grad():
            want = _leaves(model(*args))
        got = _leaves(compiled(*args))
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=rtol, atol=atol,
                                       err_msg=f"input case {k} (batch {len(args[0]) if args else '?'})")
        worst = max(worst, errors(got, want)[1])
    return worst


class BagsOnly(torch.nn.Module):
    """Embedding bags only, no dense input: the batch is known only as len(offsets) - 1."""

    def __init__(self):
        super().__init__()
        self.a = torch.nn.EmbeddingBag(30, 4, mode="sum", include_last_offset=True)
        self.b = torch.nn.EmbeddingBag(20, 3, mode="mean", include_last_offset=True)

    def forward(self, ia, oa, ib, ob):
        return torch.cat([self.a(ia, oa), self.b(ib, ob)], dim=1)


def bags_only_inputs(batch: int, seed: int = 0) -> tuple:
    """(ia, oa, ib, ob) for ``BagsOnly`` with 0-3 ids per bag (empty bags included)."""
    rng = np.random.default_rng(seed)
    out = []
    for rows in (30, 20):
        lengths = rng.integers(0, 4, size=batch)
        o = np.concatenate([[0], np.cumsum(lengths)])
        out += [torch.tensor(rng.integers(0, rows, size=o[-1])), torch.tensor(o)]
    return tuple(out)
