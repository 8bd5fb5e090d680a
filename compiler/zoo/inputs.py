"""Synthetic inputs for zoo models, from the model's :class:`ZooSpec` alone.

``make_inputs(spec, B)`` returns ``(dense, indices, offsets)``:

* ``dense``: float32 ``[B, num_dense]``, standard normal.
* per feature f, TorchRec KeyedJaggedTensor layout: ``indices[f]`` is a flat
  1-D tensor of row ids, ``offsets[f]`` has length B+1, starts at 0, ends at
  ``len(indices[f])``, and bag b is ``indices[f][offsets[f][b]:offsets[f][b+1]]``.
  Both have ``index_dtype`` (int64 or int32; ``nn.EmbeddingBag`` wants the
  two to match).

Bag lengths: one-hot features (pooling == 1) get exactly one id; multi-hot
features get ``1 + Poisson(pooling - 1)`` ids (mean = pooling, never empty);
features with pooling < 1 get ``Poisson(pooling)``. Independently, each bag is
emptied with probability ``empty_bag_prob``.

Ids: ranks follow a bounded Zipf law over ``[0, num_rows)`` with exponent
``zipf_a`` (sampled by inverse CDF of the continuous power law, so any table
size works, 1 row included, and ``zipf_a`` may be 0 for uniform). Ranks are
then scattered by a fixed per-table bijection ``(rank * P + salt) % num_rows``
(P a prime larger than any table, salt derived from the feature's position),
so the hot rows of a table are the same for every seed and batch, but are not
rows 0, 1, 2, ... Duplicate ids inside a bag occur naturally.

Everything is vectorised numpy: no Python loop per bag. Each feature draws
from its own stream of one ``numpy.random.SeedSequence(seed)``, so the inputs
are a pure function of (spec, batch, seed, options).
"""
from __future__ import annotations

import numpy as np
import torch

from .common import ZooSpec

__all__ = ["make_inputs", "example_inputs", "spec_of"]

# Knuth's multiplicative-hash prime; larger than any table we model, hence
# coprime with every table size, so rank -> (rank * P + salt) % n is a bijection.
_SCATTER_PRIME = 2_654_435_761
_SALT_MULT = 0x9E3779B97F4A7C15
_INDEX_DTYPES = {torch.int64: np.int64, torch.int32: np.int32}


def spec_of(model_or_spec) -> ZooSpec:
    """The :class:`ZooSpec` of a zoo model (its ``xrec_spec``), or the spec itself."""
    if isinstance(model_or_spec, ZooSpec):
        return model_or_spec
    spec = getattr(model_or_spec, "xrec_spec", None)
    if isinstance(spec, ZooSpec):
        return spec
    raise TypeError(
        f"expected a zoo model (with .xrec_spec) or a ZooSpec, got {type(model_or_spec).__name__}"
    )


def _bag_lengths(rng: np.random.Generator, batch: int, pooling: float, empty_bag_prob: float) -> np.ndarray:
    if pooling == 1.0:
        lengths = np.ones(batch, dtype=np.int64)
    elif pooling > 1.0:
        lengths = 1 + rng.poisson(pooling - 1.0, size=batch).astype(np.int64)
    else:
        lengths = rng.poisson(pooling, size=batch).astype(np.int64)
    if empty_bag_prob > 0.0:
        lengths[rng.random(batch) < empty_bag_prob] = 0
    return lengths


def _zipf_ranks(rng: np.random.Generator, count: int, num_rows: int, a: float) -> np.ndarray:
    """``count`` ranks in ``[0, num_rows)``, P(rank r) ~ (r + 1) ** -a (continuous approx)."""
    u = rng.random(count)
    n1 = float(num_rows) + 1.0
    if a == 0.0:
        x = 1.0 + u * float(num_rows)
    elif abs(a - 1.0) < 1e-9:
        x = np.exp(u * np.log(n1))
    else:
        s = 1.0 - a
        x = (1.0 + u * (n1**s - 1.0)) ** (1.0 / s)
    ranks = np.floor(x).astype(np.int64) - 1
    return np.clip(ranks, 0, num_rows - 1)


def _scatter(ranks: np.ndarray, num_rows: int, feature_pos: int) -> np.ndarray:
    """Fixed bijection of ``[0, num_rows)`` so hot ranks land on scattered rows."""
    salt = ((feature_pos + 1) * _SALT_MULT) % num_rows
    mult = _SCATTER_PRIME % num_rows  # < num_rows, keeps the product in int64
    return (ranks * mult + salt) % num_rows


def make_inputs(
    model_or_spec,
    batch: int,
    *,
    seed: int = 0,
    index_dtype: torch.dtype = torch.int64,
    empty_bag_prob: float = 0.05,
    zipf_a: float = 1.05,
    min_ids_per_feature: int = 0,
) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
    """Deterministic synthetic ``(dense, indices, offsets)`` for a zoo model or spec.

    ``min_ids_per_feature`` tops up the first bag of a feature whose bags hold
    fewer ids in total (``example_inputs`` uses 2, for torch.export).
    """
    spec = spec_of(model_or_spec)
    batch = int(batch)
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    if index_dtype not in _INDEX_DTYPES:
        raise ValueError(f"index_dtype must be torch.int64 or torch.int32, got {index_dtype}")
    if not 0.0 <= empty_bag_prob <= 1.0:
        raise ValueError(f"empty_bag_prob must be in [0, 1], got {empty_bag_prob}")
    if zipf_a < 0.0:
        raise ValueError(f"zipf_a must be >= 0, got {zipf_a}")
    np_dtype = _INDEX_DTYPES[index_dtype]

    streams = np.random.SeedSequence(int(seed)).spawn(1 + spec.num_features)
    dense_rng = np.random.default_rng(streams[0])
    dense = torch.from_numpy(dense_rng.standard_normal((batch, spec.num_dense), dtype=np.float32))

    indices: list[torch.Tensor] = []
    offsets: list[torch.Tensor] = []
    for pos, feat in enumerate(spec.features):
        rng = np.random.default_rng(streams[1 + pos])
        lengths = _bag_lengths(rng, batch, float(feat.pooling), float(empty_bag_prob))
        missing = int(min_ids_per_feature) - int(lengths.sum())
        if missing > 0:
            lengths[0] += missing
        ranks = _zipf_ranks(rng, int(lengths.sum()), feat.num_rows, float(zipf_a))
        ids = _scatter(ranks, feat.num_rows, pos)
        offs = np.zeros(batch + 1, dtype=np.int64)
        np.cumsum(lengths, out=offs[1:])
        indices.append(torch.from_numpy(ids.astype(np_dtype)))
        offsets.append(torch.from_numpy(offs.astype(np_dtype)))
    return dense, indices, offsets


def example_inputs(model, batch: int = 8, seed: int = 0) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
    """Inputs safe for ``torch.export`` tracing with dynamic sizes.

    torch.export specialises sizes 0 and 1, so the batch is at least 2, no
    bag is forced empty and every feature holds at least 2 ids in total.
    """
    return make_inputs(
        model,
        max(2, int(batch)),
        seed=seed,
        empty_bag_prob=0.0,
        min_ids_per_feature=2,
    )
