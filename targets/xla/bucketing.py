"""Jagged sparse features -> static arrays, as TPUs need fixed shapes.

Each feature f gets an id budget ``M_f`` (ids per bag). The executable takes,
per feature, ``ids [batch, M_f]`` int32 (unused slots hold 0) and
``lengths [batch]`` int32 (ids actually present per bag), plus
``weights [batch, M_f]`` f32 when the feature has per-sample weights; the
graph masks slots ``>= lengths[b]``.

The budget comes from, in order: the target option ``max_ids_per_bag`` (one
int for every feature, or ``{feature: int}``), the pooling statistics the
frontend recorded in the graph (``xrec.ir.stats``: a feature whose every
example bag held one id is one-hot, budget 1; multi-hot:
``ids_multiplier * mean + 8`` rounded up to a multiple of 8, and at least
the longest bag seen; the executable gathers every slot, so the budget is
also its cost), else ``DEFAULT_MAX_IDS``. A bag holding more ids than its budget is an error
(``overflow="error"``, the default) or, with ``overflow="truncate"``, keeps
its first ``M_f`` ids and warns with the number of ids dropped.

:func:`bucket_feature` is the host-side conversion: vectorised numpy, no
Python loop over bags.
"""
from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass

import numpy as np

from xrec.ir.stats import PoolingStats, pooling_stats
from xrec.runtime.validate import InputError, check_ids_in_range

from .layout import round_up

DEFAULT_MAX_IDS = 32
SLACK_IDS = 8


class IdBudgetWarning(UserWarning):
    """Ids were dropped because a bag exceeded its budget under ``overflow="truncate"``."""


@dataclass(frozen=True)
class Budget:
    max_ids: int
    source: str               # "option" | "pooling ..." (recorded statistics) | "default"


def _zoo_features(graph, feature_names: list[str]) -> dict:
    """xrec feature name (indices[k]) -> its zoo FeatureSpec when ``graph`` is a zoo model traced by xrec."""
    from xrec import zoo
    if graph.name not in zoo.list_models():
        return {}
    spec = zoo.spec(graph.name)
    out = {}
    for f in feature_names:
        m = re.fullmatch(r"indices\[(\d+)\]", f)
        if m and int(m.group(1)) < spec.num_features:
            out[f] = spec.features[int(m.group(1))]
    return out


def zoo_feature_aliases(graph, feature_names: list[str]) -> dict[str, str]:
    """Zoo feature names (C1, cat_0, user_id, ...) -> xrec feature names (indices[k])."""
    return {fs.name: f for f, fs in _zoo_features(graph, feature_names).items()}


def budget_from_pooling(pooling: float, multiplier: float) -> int:
    """Id budget of a multi-hot feature with mean ``pooling`` ids per bag."""
    return round_up(math.ceil(multiplier * pooling) + SLACK_IDS, 8)


def budget_from_stats(s: PoolingStats, multiplier: float) -> Budget:
    """The budget recorded statistics give (see the module docstring)."""
    if s.one_hot:
        return Budget(1, f"pooling: one-hot (one id in each of {s.bags} bags seen)")
    b = max(budget_from_pooling(s.mean, multiplier), round_up(max(s.max_ids, 1), 8))
    return Budget(b, f"pooling: mean {s.mean:.4g} ids per bag (max {s.max_ids}, {s.bags} bags seen) "
                     f"x {multiplier:g} + {SLACK_IDS}, to 8")


def choose_budgets(graph, feature_names: list[str], max_ids_per_bag, multiplier: float) -> dict[str, Budget]:
    """The id budget of every feature (see the module docstring for the order of sources)."""
    given: dict[str, int] = {}
    if isinstance(max_ids_per_bag, dict):
        aliases = zoo_feature_aliases(graph, feature_names)
        for k, v in max_ids_per_bag.items():
            name = k if k in feature_names else aliases.get(k)
            if name is None:
                raise ValueError(f"xla option max_ids_per_bag names feature {k!r}, which this model does not "
                                 f"have; features: {', '.join(feature_names)}"
                                 + (f" (or zoo names {', '.join(aliases)})" if aliases else ""))
            given[name] = int(v)
    elif max_ids_per_bag is not None:
        given = {f: int(max_ids_per_bag) for f in feature_names}
    stats = pooling_stats(graph)
    out = {}
    for f in feature_names:
        if f in given:
            out[f] = Budget(given[f], "option")
        elif f in stats:
            out[f] = budget_from_stats(stats[f], multiplier)
        else:
            out[f] = Budget(DEFAULT_MAX_IDS, "default")
    return out


@dataclass
class Bucketed:
    ids: np.ndarray                 # [batch, M] int32
    lengths: np.ndarray             # [batch] int32 (clamped to M)
    weights: np.ndarray | None      # [batch, M] float32
    dropped: int                    # ids dropped by truncation


def bucket_feature(indices, offsets, *, include_last_offset: bool, max_ids: int, overflow: str,
                   feature: str, num_rows: int | None = None, weights=None) -> Bucketed:
    """KJT (indices, offsets[, per-sample weights]) of one feature -> static [batch, max_ids] arrays."""
    idx = np.asarray(indices)
    off = np.asarray(offsets).astype(np.int64, copy=False)
    if not include_last_offset:
        off = np.concatenate([off, [len(idx)]])
    batch = len(off) - 1
    lengths = np.diff(off)
    check_ids_in_range(feature, idx, num_rows)
    dropped = 0
    if batch and lengths.max(initial=0) > max_ids:
        over = lengths > max_ids
        bag = int(np.argmax(over))
        if overflow == "error":
            raise InputError(
                f"feature {feature!r}: bag {bag} holds {int(lengths[bag])} ids but this xla artifact was "
                f"compiled for at most {max_ids} ids per bag of this feature ({int(over.sum())} bag(s) over); "
                f"recompile with a larger budget, e.g. options={{'max_ids_per_bag': {{'{feature}': "
                f"{int(lengths.max())}}}}}, or with options={{'overflow': 'truncate'}} to keep the first "
                f"{max_ids} ids of each bag")
        dropped = int((lengths[over] - max_ids).sum())
        warnings.warn(f"feature {feature!r}: {dropped} id(s) beyond the budget of {max_ids} per bag dropped "
                      f"in {int(over.sum())} bag(s) (overflow='truncate')", IdBudgetWarning, stacklevel=3)
    n = int(off[-1] - off[0]) if batch else 0
    rows = np.repeat(np.arange(batch, dtype=np.int64), lengths)
    pos = np.arange(n, dtype=np.int64) - np.repeat(off[:-1] - off[0], lengths)
    keep = pos < max_ids
    flat = rows[keep] * max_ids + pos[keep]
    src = idx[int(off[0]):int(off[0]) + n][keep] if batch else idx[:0]
    ids = np.zeros(batch * max_ids, np.int32)
    ids[flat] = src
    w = None
    if weights is not None:
        wsrc = np.asarray(weights, np.float32)[int(off[0]):int(off[0]) + n][keep] if batch else None
        w = np.zeros(batch * max_ids, np.float32)
        if batch:
            w[flat] = wsrc
        w = w.reshape(batch, max_ids)
    return Bucketed(ids.reshape(batch, max_ids), np.minimum(lengths, max_ids).astype(np.int32), w, dropped)


@dataclass(frozen=True)
class Slot:
    """Where one feature's KJT comes from and where it goes in the shared arrays (see ``emit``)."""

    feature: str
    max_ids: int
    column: int                 # first column in ids (and in weights when it has per-sample weights)
    weights_column: int | None
    num_rows: int | None
    include_last_offset: bool


def bucket_all(kjts: list[tuple], slots: list[Slot], *, batch: int, total_ids: int, total_weights: int,
               overflow: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Every feature at once -> (ids [batch, total_ids], lengths [batch, F], weights [batch, total_weights]).

    ``kjts[f]`` is ``(indices, offsets, per_sample_weights or None)``. Same meaning as
    :func:`bucket_feature` per feature, in a handful of numpy calls for all features together.
    """
    nf = len(slots)
    lengths = np.empty((nf, batch), np.int64)
    flat_idx, flat_w = [], []
    for f, ((idx, off, w), s) in enumerate(zip(kjts, slots)):
        idx = np.asarray(idx)
        off = np.asarray(off).astype(np.int64, copy=False)
        if not s.include_last_offset:
            off = np.concatenate([off, [len(idx)]])
        if len(off) - 1 != batch:
            raise InputError(f"feature {s.feature!r} has {len(off) - 1} bags but the batch is {batch}")
        n = int(off[-1] - off[0]) if batch else 0
        seg = idx[int(off[0]):int(off[0]) + n] if batch else idx[:0]
        if s.num_rows is not None and seg.size:
            lo, hi = seg.min(), seg.max()
            if lo < 0 or hi >= s.num_rows:
                p = int(np.argmax((seg < 0) | (seg >= s.num_rows)))
                raise InputError(f"feature {s.feature!r}: index {int(seg[p])} at position {p} is out of range "
                                 f"for its table of {s.num_rows} rows")
        lengths[f] = np.diff(off)
        flat_idx.append(seg)
        if s.weights_column is not None:
            flat_w.append(np.asarray(w, np.float32)[int(off[0]):int(off[0]) + n])
        else:
            flat_w.append(np.zeros(len(seg), np.float32))
    budgets = np.array([s.max_ids for s in slots], np.int64)[:, None]
    over = lengths > budgets
    if over.any():
        f = int(np.nonzero(over)[0][0])
        if overflow == "error":     # the first feature over budget, with bucket_feature's message
            bucket_feature(kjts[f][0], kjts[f][1], include_last_offset=slots[f].include_last_offset,
                           max_ids=slots[f].max_ids, overflow="error", feature=slots[f].feature)
        for f in np.nonzero(over.any(axis=1))[0]:
            o = over[f]
            warnings.warn(f"feature {slots[f].feature!r}: {int((lengths[f][o] - budgets[f, 0]).sum())} id(s) beyond "
                          f"the budget of {slots[f].max_ids} per bag dropped in {int(o.sum())} bag(s) "
                          f"(overflow='truncate')", IdBudgetWarning, stacklevel=3)
    lens = lengths.ravel()                                   # feature-major: (f, b)
    total = int(lens.sum())
    bag = np.repeat(np.arange(nf * batch, dtype=np.int64), lens)
    pos = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(lens) - lens, lens)
    feat = bag // max(batch, 1)
    row = bag - feat * batch
    keep = pos < budgets[feat, 0]
    col = np.array([s.column for s in slots], np.int64)[feat] + pos
    ids = np.zeros((batch, total_ids), np.int32)
    vals = np.concatenate(flat_idx) if flat_idx else np.zeros(0, np.int64)
    ids[row[keep], col[keep]] = vals[keep]
    weights = None
    if total_weights:
        weights = np.zeros((batch, total_weights), np.float32)
        has_w = np.array([s.weights_column is not None for s in slots])
        sel = keep & has_w[feat]
        wcol = np.array([s.weights_column or 0 for s in slots], np.int64)[feat] + pos
        weights[row[sel], wcol[sel]] = np.concatenate(flat_w)[sel]
    return ids, np.minimum(lengths, budgets).T.astype(np.int32), weights
