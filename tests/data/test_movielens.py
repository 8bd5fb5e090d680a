"""MovieLens-100K as CTR data: counts, labels, the time split, point-in-time features and histories,
each checked against an independent reading of the raw files."""
import bisect
import collections

import numpy as np
import pytest
import torch

from xrec import data
from xrec.data.movielens import AGE_EDGES, YEAR_BUCKETS


@pytest.fixture(scope="module")
def ml():
    return data.load()


@pytest.fixture(scope="module")
def raw():
    """The interactions as plain Python tuples (user token, item token, rating, timestamp)."""
    lines = (data.data_dir() / "ml-100k.inter").read_text().splitlines()[1:]
    return [(u, i, int(float(r)), int(float(t))) for u, i, r, t in (ln.split("\t") for ln in lines if ln)]


def test_data_set_has_the_published_movielens_100k_counts(ml, raw):
    assert len(raw) == 100_000
    assert len(ml.train) + len(ml.validation) + len(ml.test) == ml.num_interactions == 100_000
    assert ml.num_users == len({r[0] for r in raw}) == 943
    assert ml.num_items == len({r[1] for r in raw}) == 1682
    users = np.concatenate([s.users for s in (ml.train, ml.validation, ml.test)])
    items = np.concatenate([s.items for s in (ml.train, ml.validation, ml.test)])
    assert len(np.unique(users)) == 943 and len(np.unique(items)) == 1682


def test_label_is_rating_at_least_4_and_the_rate_matches_the_raw_file(ml, raw):
    want = sum(r[2] >= 4 for r in raw) / len(raw)
    got = np.concatenate([s.labels for s in (ml.train, ml.validation, ml.test)])
    assert got.mean() == pytest.approx(want, abs=1e-12)
    for s in (ml.train, ml.validation, ml.test):
        np.testing.assert_array_equal(s.labels, (s.ratings >= data.LABEL_MIN_RATING).astype(np.float32))
    # the split rows are the raw rows: same multiset of (rating, timestamp)
    mine = collections.Counter(zip(np.concatenate([s.ratings for s in (ml.train, ml.validation, ml.test)]).tolist(),
                                   np.concatenate([s.timestamps for s in (ml.train, ml.validation, ml.test)]).tolist()))
    assert mine == collections.Counter((r[2], r[3]) for r in raw)


def test_time_split_has_no_leakage_and_the_stated_fractions(ml):
    tr, va, te = ml.train, ml.validation, ml.test
    assert tr.timestamps.max() < va.timestamps.min()
    assert va.timestamps.max() < te.timestamps.min()
    n = ml.num_interactions
    for s, frac in zip((tr, va, te), data.SPLIT_FRACTIONS):
        assert abs(len(s) / n - frac) < 0.005
        assert np.all(np.diff(s.timestamps) >= 0)          # rows in time order


def test_histories_are_the_users_earlier_items_in_time_order(ml, raw):
    uidx = {t: k for k, t in enumerate(sorted({r[0] for r in raw}, key=int))}
    iidx = {t: k for k, t in enumerate(sorted({r[1] for r in raw}, key=int))}
    per_user = collections.defaultdict(list)
    for k, (u, i, _, t) in enumerate(raw):
        per_user[uidx[u]].append((t, k, iidx[i]))
    for v in per_user.values():
        v.sort()
    rng = np.random.default_rng(0)
    for s in (ml.train, ml.test):
        items, offs, ts = s.history()
        f_items, f_offs = s.ids[data.FEATURES.index("hist_items")]
        for row in rng.choice(len(s), 300, replace=False):
            u, t = int(s.users[row]), int(s.timestamps[row])
            want = [it for (tt, _, it) in per_user[u] if tt < t]
            got = items[offs[row]:offs[row + 1]].tolist()
            assert got == want
            assert np.all(ts[offs[row]:offs[row + 1]] < t)
            assert f_items[f_offs[row]:f_offs[row + 1]].tolist() == want[-data.HIST_LEN:]


def test_dense_features_count_only_strictly_earlier_ratings(ml, raw):
    """Column 0 is log1p(user's ratings strictly before), standardised on train; recomputed here by bisection."""
    uidx = {t: k for k, t in enumerate(sorted({r[0] for r in raw}, key=int))}
    times = collections.defaultdict(list)
    for u, _, _, t in raw:
        times[uidx[u]].append(t)
    for v in times.values():
        v.sort()

    def counts(s):
        return np.array([bisect.bisect_left(times[int(u)], int(t)) for u, t in zip(s.users, s.timestamps)])

    c_train = np.log1p(counts(ml.train))
    mu, sd = c_train.mean(), c_train.std()
    for s in (ml.train, ml.test):
        np.testing.assert_allclose(s.dense[:, 0], (np.log1p(counts(s)) - mu) / sd, rtol=1e-5, atol=1e-5)
    assert ml.num_dense == len(data.DENSE_FEATURES)


def test_user_and_item_features_match_the_raw_tables(ml):
    d = data.data_dir()
    users = [ln.split("\t") for ln in (d / "ml-100k.user").read_text().splitlines()[1:] if ln]
    by_user = {int(u[0]) - 1: u for u in users}          # tokens 1..943 map to rows 0..942 in order
    s = ml.test
    ids = dict(zip(data.FEATURES, s.ids))
    for row in range(0, len(s), 97):
        u = int(s.users[row])
        _, age, gender, occupation, zip_code = by_user[u]
        assert ids["user_id"][0][row] == u
        assert ids["age_bucket"][0][row] == sum(int(age) >= e for e in AGE_EDGES)
        assert ids["gender"][0][row] == (gender == "F")
    assert ml.features[data.FEATURES.index("year_bucket")].num_rows == YEAR_BUCKETS


def test_batches_follow_xrecs_calling_convention_with_ids_in_range(ml):
    s = ml.validation
    for dtype in (torch.int64, torch.int32):
        dense, idx, off = s.rows(np.array([5, 0, len(s) - 1, 5]), index_dtype=dtype)
        assert dense.dtype == torch.float32 and dense.shape == (4, ml.num_dense)
        assert len(idx) == len(off) == len(data.FEATURES)
        for f, (i, o) in enumerate(zip(idx, off)):
            assert i.dtype == o.dtype == dtype and o.shape == (5,) and o[0] == 0 and o[-1] == len(i)
            assert torch.all(o[1:] >= o[:-1])
            if len(i):
                assert 0 <= int(i.min()) and int(i.max()) < ml.features[f].num_rows
    # every id of every split is inside its table
    for sp in (ml.train, ml.validation, ml.test):
        for f, (values, offs) in enumerate(sp.ids):
            assert offs[-1] == len(values) and len(offs) == len(sp) + 1
            assert values.min() >= 0 and values.max() < ml.features[f].num_rows
    # empty bags occur (a user's first ratings have no history), and the zoo's EmbeddingBag takes them
    hist_len = np.diff(ml.train.ids[data.FEATURES.index("hist_items")][1])
    assert (hist_len == 0).any()


def test_missing_recbole_wheel_says_how_to_install_it(monkeypatch):
    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "recbole" else real(name, *a))
    with pytest.raises(data.DataMissingError, match=r"scripts/setup.sh.*--no-deps recbole==1\.2\.1"):
        data.data_dir()
