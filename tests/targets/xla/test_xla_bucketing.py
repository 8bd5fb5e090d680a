"""Jagged features -> static [batch, max_ids] arrays, id budgets, and what happens past them."""
import numpy as np
import pytest
import torch

from xrec import zoo
from xrec.runtime.validate import InputError
from xrec.targets.xla.bucketing import IdBudgetWarning, bucket_feature, budget_from_pooling, choose_budgets
from xrec.testing import check_model

from conftest import imported_zoo


def loop_reference(idx, off, m, weights=None):
    """The meaning of bucketing, bag by bag (the implementation has no Python loop over bags)."""
    b = len(off) - 1
    ids = np.zeros((b, m), np.int32)
    w = np.zeros((b, m), np.float32)
    lengths = np.zeros(b, np.int32)
    for k in range(b):
        bag = idx[off[k]:off[k + 1]][:m]
        ids[k, :len(bag)] = bag
        lengths[k] = len(bag)
        if weights is not None:
            w[k, :len(bag)] = weights[off[k]:off[k + 1]][:m]
    return ids, lengths, w


def random_kjt(rng, batch, rows, max_len, dtype):
    lengths = rng.integers(0, max_len + 1, size=batch)
    lengths[rng.random(batch) < 0.3] = 0                       # empty bags
    off = np.concatenate([[0], np.cumsum(lengths)]).astype(dtype)
    idx = rng.integers(0, rows, size=int(off[-1])).astype(dtype)
    if len(idx) > 2:
        idx[1] = idx[0]                                        # a duplicate
    return idx, off


@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_bucket_feature_matches_bag_by_bag_reference(dtype):
    rng = np.random.default_rng(0)
    for batch in (1, 7, 33):
        idx, off = random_kjt(rng, batch, 50, 6, dtype)
        w = rng.standard_normal(len(idx)).astype(np.float32)
        got = bucket_feature(idx, off, include_last_offset=True, max_ids=6, overflow="error", feature="f",
                             num_rows=50, weights=w)
        ids, lengths, ww = loop_reference(idx, off, 6, w)
        assert got.ids.dtype == np.int32 and got.ids.shape == (batch, 6)
        np.testing.assert_array_equal(got.ids, ids)
        np.testing.assert_array_equal(got.lengths, lengths)
        np.testing.assert_array_equal(got.weights, ww)
        assert got.dropped == 0


def test_bucket_feature_offsets_without_last_entry():
    idx = np.array([4, 5, 6, 7, 8])
    got = bucket_feature(idx, np.array([0, 2, 2]), include_last_offset=False, max_ids=4, overflow="error",
                         feature="f")
    np.testing.assert_array_equal(got.lengths, [2, 0, 3])
    np.testing.assert_array_equal(got.ids, [[4, 5, 0, 0], [0, 0, 0, 0], [6, 7, 8, 0]])


def test_bag_over_budget_is_an_error_naming_feature_bag_and_fix():
    idx, off = np.arange(9), np.array([0, 2, 9, 9])
    with pytest.raises(InputError) as e:
        bucket_feature(idx, off, include_last_offset=True, max_ids=4, overflow="error", feature="indices[2]")
    msg = str(e.value)
    assert "indices[2]" in msg and "bag 1 holds 7 ids" in msg and "at most 4" in msg
    assert "max_ids_per_bag" in msg and "truncate" in msg


def test_truncate_keeps_first_ids_and_warns_with_count():
    idx, off = np.arange(9), np.array([0, 2, 9, 9])
    with pytest.warns(IdBudgetWarning, match="3 id"):
        got = bucket_feature(idx, off, include_last_offset=True, max_ids=4, overflow="truncate", feature="f")
    np.testing.assert_array_equal(got.ids, [[0, 1, 0, 0], [2, 3, 4, 5], [0, 0, 0, 0]])
    np.testing.assert_array_equal(got.lengths, [2, 4, 0])
    assert got.dropped == 3


def test_out_of_range_id_is_an_error():
    with pytest.raises(InputError, match="index 12 at position 1 is out of range"):
        bucket_feature(np.array([1, 12]), np.array([0, 2]), include_last_offset=True, max_ids=4,
                       overflow="error", feature="f", num_rows=10)


def test_budgets_from_the_recorded_pooling_statistics_and_options():
    model, g = imported_zoo("dlrm-small")
    feats = [f"indices[{k}]" for k in range(26)]
    b = choose_budgets(g, feats, None, 4.0)
    assert b["indices[0]"].max_ids == 1 and "one-hot" in b["indices[0]"].source      # C1 is one-hot
    _, idx, off = zoo.example_inputs(model)                     # what the frontend traced (and measured) with
    lengths = np.diff(off[2].numpy())
    assert zoo.spec_of(model).features[2].pooling == 20.0 and lengths.min() != lengths.max()
    want = max(budget_from_pooling(lengths.mean(), 4.0), -(-lengths.max() // 8) * 8)
    assert b["indices[2]"].max_ids == want and want >= 4 * 16 + 8             # multi-hot: 4 x mean + 8, to 8
    assert b["indices[2]"].source.startswith(f"pooling: mean {lengths.mean():.4g} ids per bag (max {lengths.max()}")
    assert budget_from_pooling(20.0, 4.0) == 88 and budget_from_pooling(20.5, 2.0) == 56
    b = choose_budgets(g, feats, {"C3": 5, "indices[0]": 2}, 4.0)   # zoo names and xrec names
    assert (b["indices[2]"].max_ids, b["indices[2]"].source) == (5, "option")
    assert b["indices[0]"].max_ids == 2 and b["indices[1]"].max_ids == 1
    assert all(v.max_ids == 7 for v in choose_budgets(g, feats, 7, 4.0).values())
    with pytest.raises(ValueError, match="C99"):
        choose_budgets(g, feats, {"C99": 3}, 4.0)
    from xrec.ir.stats import with_pooling
    no_stats = with_pooling(g, {}).with_(name="my-model")
    assert choose_budgets(no_stats, ["indices[0]"], None, 4.0)["indices[0]"].source == "default"


def _long_bag_inputs(model, batch=6):
    dense, idx, off = zoo.make_inputs(model, batch, seed=3, empty_bag_prob=0.0)
    idx, off = list(idx), list(off)
    # feature 0 (one-hot, budget 2 below): bag 1 gets 5 ids
    lengths = torch.diff(off[0])
    lengths[1] = 5
    off[0] = torch.cat([torch.zeros(1, dtype=off[0].dtype), torch.cumsum(lengths, 0)])
    idx[0] = torch.arange(int(off[0][-1])) % 7
    return dense, idx, off


def test_request_over_budget_raises_by_default(compile_zoo):
    model, cm = compile_zoo("dlrm-small", batch=8, max_ids_per_bag={"C1": 2})
    assert cm.manifest["target_info"]["budgets"]["indices[0]"] == {"max_ids_per_bag": 2, "source": "option"}
    with pytest.raises(InputError, match=r"feature 'indices\[0\]': bag 1 holds 5 ids"):
        cm(*_long_bag_inputs(model))


def test_request_over_budget_with_truncate_matches_pytorch_on_truncated_bags(compile_zoo):
    model, cm = compile_zoo("dlrm-small", batch=8, max_ids_per_bag={"C1": 2}, overflow="truncate")
    dense, idx, off = _long_bag_inputs(model)
    with pytest.warns(IdBudgetWarning, match="3 id"):
        got = cm(dense, idx, off)
    # what the artifact computes: bag 1 of feature 0 keeps its first 2 ids
    keep = torch.ones(len(idx[0]), dtype=torch.bool)
    keep[int(off[0][1]) + 2:int(off[0][2])] = False
    lengths = torch.diff(off[0]).clamp(max=2)
    t_idx, t_off = list(idx), list(off)
    t_idx[0] = idx[0][keep]
    t_off[0] = torch.cat([torch.zeros(1, dtype=off[0].dtype), torch.cumsum(lengths, 0)])
    with torch.no_grad():
        want = model(dense, t_idx, t_off)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-4, atol=1e-6)


def test_batches_over_static_batch_are_split_or_refused(compile_zoo):
    model, cm = compile_zoo("two-tower", batch=8)
    check_model(cm, model, [zoo.make_inputs(model, b, seed=b) for b in (1, 8, 9, 21)], rtol=1e-4, atol=1e-6)
    model, cm = compile_zoo("two-tower", batch=8, large_batch="error")
    check_model(cm, model, [zoo.make_inputs(model, 8, seed=1)], rtol=1e-4, atol=1e-6)
    with pytest.raises(InputError, match="batch 9 exceeds the static batch 8"):
        cm(*zoo.make_inputs(model, 9, seed=1))


def test_static_batch_is_rounded_up_to_sublanes_when_padding(compile_zoo):
    _, cm = compile_zoo("two-tower", batch=5)
    assert cm.manifest["target_info"]["module"]["batch"] == 8
    _, cm = compile_zoo("two-tower", batch=5, pad=False)
    assert cm.manifest["target_info"]["module"]["batch"] == 5


def test_bucket_all_features_at_once_equals_one_feature_at_a_time():
    from xrec.targets.xla.bucketing import Slot, bucket_all
    rng = np.random.default_rng(1)
    for batch in (1, 9):
        budgets, kjts, slots, col, wcol = (3, 1, 8, 5), [], [], 0, 0
        for f, m in enumerate(budgets):
            idx, off = random_kjt(rng, batch, 40, m, np.int64 if f % 2 else np.int32)
            last = f != 2
            w = rng.standard_normal(len(idx)).astype(np.float32) if f in (0, 2) else None
            kjts.append((idx, off if last else off[:-1], w))
            slots.append(Slot(f"f{f}", m, col, wcol if w is not None else None, 40, last))
            col += m
            wcol += m if w is not None else 0
        ids, lengths, weights = bucket_all(kjts, slots, batch=batch, total_ids=col, total_weights=wcol,
                                           overflow="error")
        assert ids.shape == (batch, col) and lengths.shape == (batch, 4) and weights.shape == (batch, wcol)
        for f, (s, (idx, off, w)) in enumerate(zip(slots, kjts)):
            one = bucket_feature(idx, off, include_last_offset=s.include_last_offset, max_ids=s.max_ids,
                                 overflow="error", feature=s.feature, weights=w)
            np.testing.assert_array_equal(ids[:, s.column:s.column + s.max_ids], one.ids)
            np.testing.assert_array_equal(lengths[:, f], one.lengths)
            if w is not None:
                np.testing.assert_array_equal(weights[:, s.weights_column:s.weights_column + s.max_ids], one.weights)
    # over budget: the same error as one feature at a time, or truncation with a warning
    kjts = [(np.arange(3), np.array([0, 3]), None), (np.arange(6), np.array([0, 6]), None)]
    slots = [Slot("a", 4, 0, None, None, True), Slot("b", 4, 4, None, None, True)]
    with pytest.raises(InputError, match="feature 'b': bag 0 holds 6 ids"):
        bucket_all(kjts, slots, batch=1, total_ids=8, total_weights=0, overflow="error")
    with pytest.warns(IdBudgetWarning, match="'b': 2 id"):
        ids, lengths, _ = bucket_all(kjts, slots, batch=1, total_ids=8, total_weights=0, overflow="truncate")
    np.testing.assert_array_equal(ids, [[0, 1, 2, 0, 0, 1, 2, 3]])
    np.testing.assert_array_equal(lengths, [[3, 4]])
