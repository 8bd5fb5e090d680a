"""MovieLens-100K as a CTR task, in xrec's calling convention.

Source: the files the ``recbole`` 1.2.1 wheel ships under ``recbole/dataset_example/ml-100k/``
(install with ``pip install --no-deps recbole==1.2.1``; only the files are read, recbole is never
imported). 100,000 ratings of 1,682 movies by 943 users, Sept 1997 - April 1998.

Task: **label = 1 when the rating is >= 4** (4 or 5 stars), else 0: the usual way to turn
MovieLens ratings into click-through-style binary labels (55.4 % positives).

Rows are ratings. Per row:

* sparse features (one bag per feature, in this order; the first six describe the user, the last
  three the item, so two-tower models can split them):
  ``user_id`` (943), ``age_bucket`` (7: <18, 18-24, 25-34, 35-44, 45-49, 50-55, 56+),
  ``gender`` (2), ``occupation`` (21), ``zip_prefix`` (first two characters of the zip code),
  ``hist_items`` (the user's last <= ``HIST_LEN`` items rated strictly before this row's
  timestamp, multi-hot, empty for a user's first ratings), ``item_id`` (1,682),
  ``year_bucket`` (release year: unknown, <1940, 1940s .. 1970s, 1980-84, 1985-89, then one per
  year 1990..1998), ``genres`` (multi-hot bag over the 19 genres, "unknown" included);
* ``dense`` float32 [4]: log1p of the user's and of the item's number of ratings strictly before
  this row's timestamp, and the mean of those earlier ratings (the train mean where there are
  none), standardised with the train split's mean and std. Only events strictly earlier in time
  enter a row's features, in every split;
* the behaviour sequence (``Split.history``): the user's earlier items in time order, for
  sequence models.

Split by time (global, not per user): rows sorted by timestamp; train is the first 80 %, validation
the next 10 %, test the last 10 %, with the cuts moved to timestamp boundaries so that every
validation timestamp is > every train timestamp and every test timestamp is > every validation
timestamp (no rating of the same second sits on both sides of a cut).
"""
from __future__ import annotations

import functools
import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..zoo.common import FeatureSpec

__all__ = ["MovieLens100K", "Split", "load", "data_dir", "LABEL_MIN_RATING", "HIST_LEN", "FEATURES",
           "USER_FEATURES", "ITEM_FEATURES", "DENSE_FEATURES", "SPLIT_FRACTIONS", "DataMissingError"]

NAME = "movielens-100k"
LABEL_MIN_RATING = 4
HIST_LEN = 20
SPLIT_FRACTIONS = (0.8, 0.1, 0.1)
USER_FEATURES = ("user_id", "age_bucket", "gender", "occupation", "zip_prefix", "hist_items")
ITEM_FEATURES = ("item_id", "year_bucket", "genres")
FEATURES = USER_FEATURES + ITEM_FEATURES
DENSE_FEATURES = ("log1p_user_prior_count", "user_prior_mean_rating",
                  "log1p_item_prior_count", "item_prior_mean_rating")
AGE_EDGES = (18, 25, 35, 45, 50, 56)
GENRES = ("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
          "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
          "War", "Western")
RECBOLE_VERSION = "1.2.1"


class DataMissingError(FileNotFoundError):
    """The MovieLens-100K files are not installed."""


def data_dir() -> Path:
    """The folder holding ml-100k.{inter,user,item} inside the installed recbole wheel."""
    spec = importlib.util.find_spec("recbole")
    if spec is None or spec.origin is None:
        raise DataMissingError(
            "MovieLens-100K comes from the recbole wheel, which is not installed: run scripts/setup.sh, or "
            f"`.venv/bin/python -m pip install --no-deps recbole=={RECBOLE_VERSION}` (only its data files are read)")
    d = Path(spec.origin).parent / "dataset_example" / "ml-100k"
    if not (d / "ml-100k.inter").is_file():
        raise DataMissingError(f"recbole is installed but {d} has no ml-100k.inter; reinstall "
                               f"recbole=={RECBOLE_VERSION} with --no-deps")
    return d


def _read(path: Path) -> tuple[list[str], list[list[str]]]:
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    header = [h.split(":")[0] for h in lines[0].split("\t")]
    return header, [ln.split("\t") for ln in lines[1:] if ln]


def _bucket_year(year: int | None) -> int:
    if year is None:
        return 0
    if year < 1940:
        return 1
    if year < 1980:
        return 2 + (year - 1940) // 10          # 1940s..1970s -> 2..5
    if year < 1990:
        return 6 + (year >= 1985)               # 6, 7
    return 8 + min(year, 1998) - 1990           # 1990..1998 -> 8..16


YEAR_BUCKETS = 17


def _year_of(year_text: str, title: str) -> int | None:
    if year_text.isdigit():
        return int(year_text)
    m = re.search(r"\((\d{4})\)", title)          # one row has its year in the title only
    return int(m.group(1)) if m else None


@dataclass
class Split:
    """One split: every array has one entry per row (a rating), rows in time order."""
    name: str
    dense: np.ndarray                               # [n, 4] float32
    ids: list[tuple[np.ndarray, np.ndarray]]        # per feature: (values int64, offsets int64 [n+1])
    labels: np.ndarray                              # [n] float32, 1.0 when rating >= 4
    ratings: np.ndarray                             # [n] int64
    timestamps: np.ndarray                          # [n] int64
    users: np.ndarray                               # [n] int64, 0-based user row
    items: np.ndarray                               # [n] int64, 0-based item row
    _history: tuple[np.ndarray, np.ndarray, np.ndarray]   # (items, offsets, timestamps) of the full history

    def __len__(self) -> int:
        return len(self.labels)

    def rows(self, sel: np.ndarray, index_dtype=torch.int64) -> tuple[torch.Tensor, list[torch.Tensor],
                                                                     list[torch.Tensor]]:
        """``(dense, indices, offsets)`` of the rows ``sel`` (int array), ready for ``model(*args)``."""
        sel = np.asarray(sel, np.int64)
        dense = torch.from_numpy(np.ascontiguousarray(self.dense[sel]))
        indices, offsets = [], []
        for values, offs in self.ids:
            idx, off = _gather_bags(values, offs, sel)
            indices.append(torch.from_numpy(idx).to(index_dtype))
            offsets.append(torch.from_numpy(off).to(index_dtype))
        return dense, indices, offsets

    def batches(self, batch_size: int, *, order: np.ndarray | None = None):
        """``(args, labels)`` over the split in ``order`` (default: time order), ``batch_size`` rows each."""
        order = np.arange(len(self)) if order is None else np.asarray(order)
        for s in range(0, len(order), batch_size):
            sel = order[s:s + batch_size]
            yield self.rows(sel), torch.from_numpy(self.labels[sel])

    def flat_batches(self, batch_size: int = 2048) -> list[list[np.ndarray]]:
        """The split as flat numpy input lists (dense, indices..., offsets...), as xrec's runners take them."""
        out = []
        for (dense, idx, off), _ in self.batches(batch_size):
            out.append([dense.numpy()] + [i.numpy() for i in idx] + [o.numpy() for o in off])
        return out

    def history(self, max_len: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The behaviour sequence per row: ``(items, offsets [n+1], timestamps)``, the user's items rated
        strictly before the row's timestamp, oldest first; ``max_len`` keeps the most recent ones."""
        items, offs, ts = self._history
        if max_len is None:
            return items, offs, ts
        lengths = np.diff(offs)
        keep = np.minimum(lengths, max_len)
        starts = offs[1:] - keep
        new_offs = np.zeros(len(offs), np.int64)
        np.cumsum(keep, out=new_offs[1:])
        sel = _ranges(starts, keep)
        return items[sel], new_offs, ts[sel]


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(s, s + n)`` for each (s, n), vectorised."""
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, np.int64)
    ends = np.cumsum(lengths)
    base = np.repeat(starts - (ends - lengths), lengths)
    return base + np.arange(total, dtype=np.int64)


def _gather_bags(values: np.ndarray, offs: np.ndarray, sel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lengths = offs[sel + 1] - offs[sel]
    new = np.zeros(len(sel) + 1, np.int64)
    np.cumsum(lengths, out=new[1:])
    return values[_ranges(offs[sel], lengths)], new


@dataclass
class MovieLens100K:
    """MovieLens-100K as CTR data: ``train``, ``validation``, ``test`` splits and the feature table."""
    train: Split
    validation: Split
    test: Split
    features: tuple[FeatureSpec, ...]      # rows per feature; dim 1 here (models choose their own)
    num_users: int
    num_items: int
    num_interactions: int
    name: str = NAME

    @property
    def num_dense(self) -> int:
        return self.train.dense.shape[1]

    def split(self, name: str) -> Split:
        try:
            return {"train": self.train, "validation": self.validation, "test": self.test}[name]
        except KeyError:
            raise ValueError(f"unknown split {name!r}; use train, validation or test") from None


def _prior_stats(keys: np.ndarray, ts: np.ndarray, ratings: np.ndarray, order_tiebreak: np.ndarray):
    """Per row: number and sum of ratings of the same key with a strictly smaller timestamp, plus the
    stable (key, ts) order and the position of the row's first same-(key, ts) row in that order."""
    order = np.lexsort((order_tiebreak, ts, keys))
    k, t = keys[order], ts[order]
    n = len(keys)
    new_key = np.ones(n, bool)
    new_key[1:] = k[1:] != k[:-1]
    new_kt = new_key.copy()
    new_kt[1:] |= t[1:] != t[:-1]
    pos = np.arange(n)
    group_start = np.maximum.accumulate(np.where(new_key, pos, 0))
    first_same = np.maximum.accumulate(np.where(new_kt, pos, 0))
    csum = np.concatenate([[0], np.cumsum(ratings[order])])
    count_sorted = first_same - group_start
    sum_sorted = csum[first_same] - csum[group_start]
    count = np.empty(n, np.int64)
    total = np.empty(n, np.float64)
    count[order] = count_sorted
    total[order] = sum_sorted
    return count, total, order, group_start, first_same


@functools.lru_cache(maxsize=4)
def load(hist_len: int = HIST_LEN) -> MovieLens100K:
    """Read the files and build the CTR data set (about a second; cached per process)."""
    d = data_dir()
    _, inter = _read(d / "ml-100k.inter")
    uh, users = _read(d / "ml-100k.user")
    ih, items = _read(d / "ml-100k.item")
    ucol = {h: i for i, h in enumerate(uh)}
    icol = {h: i for i, h in enumerate(ih)}

    user_tokens = sorted({r[ucol["user_id"]] for r in users}, key=int)
    item_tokens = sorted({r[icol["item_id"]] for r in items}, key=int)
    uidx = {t: i for i, t in enumerate(user_tokens)}
    iidx = {t: i for i, t in enumerate(item_tokens)}
    nu, ni = len(user_tokens), len(item_tokens)

    # user table: age bucket, gender, occupation, zip prefix
    occupations = sorted({r[ucol["occupation"]] for r in users})
    zips = sorted({r[ucol["zip_code"]][:2].upper() for r in users})
    u_age = np.zeros(nu, np.int64)
    u_gender = np.zeros(nu, np.int64)
    u_occ = np.zeros(nu, np.int64)
    u_zip = np.zeros(nu, np.int64)
    for r in users:
        u = uidx[r[ucol["user_id"]]]
        u_age[u] = int(np.searchsorted(AGE_EDGES, int(r[ucol["age"]]), side="right"))
        u_gender[u] = 0 if r[ucol["gender"]] == "M" else 1
        u_occ[u] = occupations.index(r[ucol["occupation"]])
        u_zip[u] = zips.index(r[ucol["zip_code"]][:2].upper())

    # item table: year bucket, genre bag
    g_of = {g: k for k, g in enumerate(GENRES)}
    i_year = np.zeros(ni, np.int64)
    i_genres: list[list[int]] = [[] for _ in range(ni)]
    for r in items:
        i = iidx[r[icol["item_id"]]]
        i_year[i] = _bucket_year(_year_of(r[icol["release_year"]], r[icol["movie_title"]]))
        names = r[icol["class"]].split() if len(r) > icol["class"] else []
        # "Children's" is one token; unknown names map to "unknown"
        i_genres[i] = sorted({g_of.get(n, 0) for n in names}) or [0]
    g_len = np.array([len(g) for g in i_genres], np.int64)
    g_off = np.zeros(ni + 1, np.int64)
    np.cumsum(g_len, out=g_off[1:])
    g_val = np.array([g for gs in i_genres for g in gs], np.int64)

    # interactions
    n = len(inter)
    user = np.fromiter((uidx[r[0]] for r in inter), np.int64, n)
    item = np.fromiter((iidx[r[1]] for r in inter), np.int64, n)
    rating = np.fromiter((float(r[2]) for r in inter), np.float64, n).astype(np.int64)
    ts = np.fromiter((int(float(r[3])) for r in inter), np.int64, n)
    row = np.arange(n)

    # point-in-time features: only ratings with a strictly smaller timestamp
    ucount, usum, uorder, ustart, ufirst = _prior_stats(user, ts, rating.astype(np.float64), row)
    icount, isum, *_ = _prior_stats(item, ts, rating.astype(np.float64), row)

    # behaviour sequence: the user's items strictly before, oldest first (from the (user, ts) order)
    h_len_sorted = ufirst - ustart
    h_items_sorted = item[uorder]
    h_ts_sorted = ts[uorder]

    # time split on timestamp boundaries
    ts_sorted = np.sort(ts)
    t1 = ts_sorted[int(SPLIT_FRACTIONS[0] * n)]
    t2 = ts_sorted[int((SPLIT_FRACTIONS[0] + SPLIT_FRACTIONS[1]) * n)]
    part = np.where(ts < t1, 0, np.where(ts < t2, 1, 2))

    label = (rating >= LABEL_MIN_RATING).astype(np.float32)
    train_mask = part == 0
    mean_rating = float(rating[train_mask].mean())
    dense = np.stack([
        np.log1p(ucount), np.where(ucount > 0, usum / np.maximum(ucount, 1), mean_rating),
        np.log1p(icount), np.where(icount > 0, isum / np.maximum(icount, 1), mean_rating),
    ], axis=1)
    mu, sd = dense[train_mask].mean(0), dense[train_mask].std(0)
    dense = ((dense - mu) / np.where(sd > 0, sd, 1.0)).astype(np.float32)

    # position of each row in the (user, ts) order, to find its history
    pos_in_sorted = np.empty(n, np.int64)
    pos_in_sorted[uorder] = np.arange(n)

    def make_split(name: str, mask: np.ndarray) -> Split:
        rows = np.flatnonzero(mask)
        rows = rows[np.lexsort((rows, ts[rows]))]                    # time order, stable
        m = len(rows)
        one = np.arange(m + 1, dtype=np.int64)
        p = pos_in_sorted[rows]
        h_len = h_len_sorted[p]
        h_start = ustart[p]
        full = _ranges(h_start, h_len)
        h_off = np.zeros(m + 1, np.int64)
        np.cumsum(h_len, out=h_off[1:])
        hist = (h_items_sorted[full], h_off, h_ts_sorted[full])
        keep = np.minimum(h_len, hist_len)
        recent = _ranges(h_start + h_len - keep, keep)
        k_off = np.zeros(m + 1, np.int64)
        np.cumsum(keep, out=k_off[1:])
        u, it = user[rows], item[rows]
        g_rows = _ranges(g_off[it], g_len[it])
        gr_off = np.zeros(m + 1, np.int64)
        np.cumsum(g_len[it], out=gr_off[1:])
        ids = [
            (u.copy(), one), (u_age[u], one), (u_gender[u], one), (u_occ[u], one), (u_zip[u], one),
            (h_items_sorted[recent], k_off),
            (it.copy(), one), (i_year[it], one), (g_val[g_rows], gr_off),
        ]
        return Split(name, dense[rows], ids, label[rows], rating[rows], ts[rows], u, it, hist)

    train = make_split("train", part == 0)
    rows_per = (nu, 7, 2, len(occupations), len(zips), ni, ni, YEAR_BUCKETS, len(GENRES))
    pooling = [max(float(len(v)) / max(len(train), 1), 1e-3) for v, _ in train.ids]
    features = tuple(FeatureSpec(f, r, 1, p) for f, r, p in zip(FEATURES, rows_per, pooling))
    return MovieLens100K(train, make_split("validation", part == 1), make_split("test", part == 2),
                         features, num_users=nu, num_items=ni, num_interactions=n)
