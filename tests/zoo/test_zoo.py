"""Tests for xrec.zoo: registry, models, synthetic inputs, export."""
from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest
import torch

from xrec import zoo
from xrec.zoo.common import FeatureSpec, ZooSpec
from xrec.zoo.deepfm import fm_second_order
from xrec.zoo.dlrm import DLRM_V2_DEFAULT_MAX_ROWS, MLPERF_DLRM_V2_ROWS, dot_interaction_indices

SMALL_ROWS = 1000
MODELS = zoo.list_models()
GIB = 2**30


@pytest.fixture(scope="module")
def small_models():
    """One small build per model, shared by the tests that only run models."""
    return {name: zoo.build(name, max_rows=SMALL_ROWS) for name in MODELS}


# ------------------------------------------------------------------ registry
def test_list_models_is_sorted_and_names_every_family():
    assert MODELS == ["dcn-v2", "deepfm", "dlrm-small", "dlrm-v2", "two-tower", "wide-deep"]


def test_unknown_model_name_raises_value_error_listing_known_names():
    with pytest.raises(ValueError) as err:
        zoo.build("dlrm-large")
    for name in MODELS:
        assert name in str(err.value)
    with pytest.raises(ValueError):
        zoo.describe("nope")


@pytest.mark.parametrize("name", MODELS)
def test_describe_is_one_nonempty_line(name):
    text = zoo.describe(name)
    assert text and "\n" not in text


@pytest.mark.parametrize("name", MODELS)
def test_model_carries_its_spec_and_is_in_eval_mode(name, small_models):
    model = small_models[name]
    assert isinstance(model.xrec_spec, ZooSpec)
    assert model.xrec_spec == zoo.spec(name, max_rows=SMALL_ROWS)
    assert model.xrec_spec.name == name
    assert model.xrec_name == name
    assert not model.training


def test_spec_is_frozen():
    spec = zoo.spec("dlrm-small")
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.num_dense = 3
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.features[0].num_rows = 3


# -------------------------------------------------------------------- models
@pytest.mark.parametrize("batch", [1, 7, 64])
@pytest.mark.parametrize("name", MODELS)
def test_model_outputs_probabilities_of_shape_batch_by_1(name, batch, small_models):
    model = small_models[name]
    with torch.no_grad():
        out = model(*zoo.make_inputs(model, batch, seed=batch))
    assert out.shape == (batch, 1)
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()
    assert ((out > 0) & (out < 1)).all()


@pytest.mark.parametrize("name", MODELS)
def test_outputs_vary_across_the_batch(name, small_models):
    # A near-constant output would make numerical checks blind to wrong lookups.
    model = small_models[name]
    with torch.no_grad():
        out = model(*zoo.make_inputs(model, 64, seed=3))
    assert out.std() > 1e-3


@pytest.mark.parametrize("name", MODELS)
def test_same_seed_gives_identical_weights_and_other_seed_differs(name, small_models):
    again = zoo.build(name, max_rows=SMALL_ROWS)
    state, state_again = small_models[name].state_dict(), again.state_dict()
    assert state.keys() == state_again.keys()
    for key in state:
        assert torch.equal(state[key], state_again[key]), key
    other = zoo.build(name, max_rows=SMALL_ROWS, seed=1).state_dict()
    assert any(not torch.equal(state[k], other[k]) for k in state)


@pytest.mark.parametrize("name", MODELS)
def test_int32_and_int64_indices_give_the_same_output(name, small_models):
    model = small_models[name]
    x64 = zoo.make_inputs(model, 9, seed=4, index_dtype=torch.int64)
    x32 = zoo.make_inputs(model, 9, seed=4, index_dtype=torch.int32)
    with torch.no_grad():
        torch.testing.assert_close(model(*x64), model(*x32), rtol=0, atol=0)


@pytest.mark.parametrize("name", MODELS)
def test_models_run_with_many_empty_bags(name, small_models):
    model = small_models[name]
    dense, indices, offsets = zoo.make_inputs(model, 16, seed=2, empty_bag_prob=0.5)
    lengths = torch.cat([o[1:] - o[:-1] for o in offsets])
    assert (lengths == 0).any()
    with torch.no_grad():
        out = model(dense, indices, offsets)
    assert torch.isfinite(out).all() and ((out > 0) & (out < 1)).all()


def test_models_run_when_every_bag_is_empty(small_models):
    for name, model in small_models.items():
        with torch.no_grad():
            out = model(*zoo.make_inputs(model, 4, empty_bag_prob=1.0))
        assert torch.isfinite(out).all(), name


def test_dlrm_interaction_indices_follow_the_reference_order():
    li, lj = dot_interaction_indices(4)
    assert list(zip(li, lj)) == [(1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2)]
    li, lj = dot_interaction_indices(27)
    assert len(li) == 351
    assert all(i > j for i, j in zip(li, lj))


def test_dlrm_small_matches_a_hand_written_dot_interaction(small_models):
    model = small_models["dlrm-small"]
    dense, indices, offsets = zoo.make_inputs(model, 5, seed=7)
    with torch.no_grad():
        x = model.bottom_mlp(dense)
        vectors = [x] + [bag(indices[f], offsets[f]) for f, bag in enumerate(model.embeddings.bags)]
        pairs = [(vectors[i] * vectors[j]).sum(1) for i in range(27) for j in range(i)]
        expected = model.top_mlp(torch.cat([x, torch.stack(pairs, dim=1)], dim=1))
        torch.testing.assert_close(model(dense, indices, offsets), expected)


def test_fm_second_order_equals_the_sum_over_field_pairs():
    v = torch.randn(3, 5, 4, generator=torch.Generator().manual_seed(0))
    pairs = sum((v[:, i] * v[:, j]).sum(1, keepdim=True) for i, j in itertools.combinations(range(5), 2))
    torch.testing.assert_close(fm_second_order(v), pairs)


def test_pooling_modes_cover_sum_mean_and_max(small_models):
    modes = {
        bag.mode
        for model in small_models.values()
        for bag in model.modules()
        if isinstance(bag, torch.nn.EmbeddingBag)
    }
    assert modes == {"sum", "mean", "max"}
    for model in small_models.values():
        for bag in model.modules():
            if isinstance(bag, torch.nn.EmbeddingBag):
                assert bag.include_last_offset


# ---------------------------------------------------------------------- sizes
def test_dlrm_small_default_size_is_at_most_1_gib():
    nbytes = zoo.param_bytes("dlrm-small")
    assert 0.9 * GIB <= nbytes <= GIB
    rows = [f.num_rows for f in zoo.spec("dlrm-small").features]
    assert min(rows) == 10 and max(rows) == 1_000_000


def test_dlrm_v2_default_size_is_about_1_5_gib():
    nbytes = zoo.param_bytes("dlrm-v2")
    assert abs(nbytes - 1.5 * GIB) <= 0.02 * 1.5 * GIB
    rows = [f.num_rows for f in zoo.spec("dlrm-v2").features]
    assert rows == [min(r, DLRM_V2_DEFAULT_MAX_ROWS) for r in MLPERF_DLRM_V2_ROWS]


@pytest.mark.parametrize("name", ["dcn-v2", "deepfm", "two-tower", "wide-deep"])
def test_other_models_default_size_is_modest(name):
    assert zoo.param_bytes(name) <= 200 * 10**6


@pytest.mark.parametrize("name", MODELS)
def test_param_bytes_counts_what_build_allocates(name, small_models):
    model = small_models[name]
    real = sum(t.numel() * t.element_size() for t in itertools.chain(model.parameters(), model.buffers()))
    assert zoo.param_bytes(name, max_rows=SMALL_ROWS) == real


@pytest.mark.parametrize("name", MODELS)
def test_max_rows_caps_every_table(name):
    spec = zoo.spec(name, max_rows=7)
    assert all(f.num_rows <= 7 for f in spec.features)
    model = zoo.build(name, max_rows=7)
    for bag in model.modules():
        if isinstance(bag, torch.nn.EmbeddingBag):
            assert bag.num_embeddings <= 7


def test_max_rows_below_one_is_rejected():
    with pytest.raises(ValueError):
        zoo.spec("dcn-v2", max_rows=0)


# --------------------------------------------------------------------- inputs
def _check_kjt(spec, batch, dense, indices, offsets, dtype):
    assert dense.dtype == torch.float32 and dense.shape == (batch, spec.num_dense)
    assert len(indices) == len(offsets) == spec.num_features
    for feat, idx, off in zip(spec.features, indices, offsets):
        assert idx.dtype == dtype and off.dtype == dtype, feat.name
        assert idx.dim() == 1 and off.shape == (batch + 1,), feat.name
        assert off[0] == 0 and off[-1] == idx.numel(), feat.name
        assert (off[1:] >= off[:-1]).all(), feat.name
        if idx.numel():
            assert idx.min() >= 0 and idx.max() < feat.num_rows, feat.name


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32])
@pytest.mark.parametrize("name", MODELS)
def test_inputs_satisfy_keyed_jagged_invariants(name, dtype):
    spec = zoo.spec(name)  # full-size tables: ids must stay in range of big ones too
    for batch in (1, 7, 300):
        dense, indices, offsets = zoo.make_inputs(spec, batch, seed=batch, index_dtype=dtype)
        _check_kjt(spec, batch, dense, indices, offsets, dtype)


def test_inputs_handle_tiny_tables_and_fractional_pooling():
    spec = ZooSpec(
        "tiny", 2,
        (FeatureSpec("a", 1, 4, 1.0), FeatureSpec("b", 3, 4, 5.0), FeatureSpec("c", 3, 4, 0.3)),
        "tiny tables",
    )
    for batch in (1, 2, 50):
        dense, indices, offsets = zoo.make_inputs(spec, batch, seed=1)
        _check_kjt(spec, batch, dense, indices, offsets, torch.int64)
    _, indices, _ = zoo.make_inputs(spec, 200, zipf_a=0.0)
    assert set(indices[1].tolist()) == {0, 1, 2}


@pytest.mark.parametrize("name", MODELS)
def test_inputs_are_deterministic_per_seed(name):
    spec = zoo.spec(name, max_rows=SMALL_ROWS)
    a = zoo.make_inputs(spec, 33, seed=5)
    b = zoo.make_inputs(spec, 33, seed=5)
    c = zoo.make_inputs(spec, 33, seed=6)
    assert torch.equal(a[0], b[0]) and not torch.equal(a[0], c[0])
    assert all(torch.equal(x, y) for x, y in zip(a[1] + a[2], b[1] + b[2]))
    assert any(not torch.equal(x, y) for x, y in zip(a[1], c[1]))


def test_make_inputs_accepts_a_model_or_its_spec(small_models):
    model = small_models["deepfm"]
    a = zoo.make_inputs(model, 4, seed=1)
    b = zoo.make_inputs(model.xrec_spec, 4, seed=1)
    assert torch.equal(a[0], b[0]) and all(torch.equal(x, y) for x, y in zip(a[1], b[1]))
    with pytest.raises(TypeError):
        zoo.make_inputs(torch.nn.Linear(2, 2), 4)


def test_empty_bags_follow_empty_bag_prob():
    spec = zoo.spec("dlrm-v2", max_rows=SMALL_ROWS)
    for prob in (0.0, 0.05, 0.5):
        _, _, offsets = zoo.make_inputs(spec, 2000, seed=1, empty_bag_prob=prob)
        lengths = torch.cat([o[1:] - o[:-1] for o in offsets]).double()
        empty = (lengths == 0).double().mean().item()
        assert abs(empty - prob) < 0.02


def test_bag_lengths_average_the_spec_pooling():
    spec = zoo.spec("dlrm-v2", max_rows=SMALL_ROWS)
    _, _, offsets = zoo.make_inputs(spec, 4000, seed=1, empty_bag_prob=0.0)
    for feat, off in zip(spec.features, offsets):
        lengths = (off[1:] - off[:-1]).double()
        assert lengths.min() >= 1, feat.name
        assert abs(lengths.mean().item() - feat.pooling) <= 0.05 * feat.pooling + 0.05, feat.name
        if feat.pooling == 1.0:
            assert (lengths == 1).all(), feat.name


def test_ids_are_skewed_with_scattered_hot_rows():
    spec = ZooSpec("skew", 1, tuple(FeatureSpec(f"t{i}", 10_000, 4, 50.0) for i in range(4)), "skew")
    _, indices, _ = zoo.make_inputs(spec, 400, seed=0)
    hottest = []
    for idx in indices:
        counts = np.bincount(idx.numpy(), minlength=10_000)
        assert counts.max() > 50 * counts.mean()  # Zipf: a few rows take much of the traffic
        hottest.append(int(counts.argmax()))
    assert len(set(hottest)) == len(hottest)  # each table scatters its hot rows differently
    assert all(h != 0 for h in hottest)


def test_example_inputs_are_safe_for_export_tracing():
    spec = ZooSpec("thin", 3, (FeatureSpec("rare", 5, 4, 0.01), FeatureSpec("one", 5, 4, 1.0)), "thin")
    dense, indices, offsets = zoo.example_inputs(spec, batch=1)
    assert dense.shape[0] >= 2
    assert all(idx.numel() >= 2 for idx in indices)
    assert all(((o[1:] - o[:-1]) >= 0).all() for o in offsets)


# --------------------------------------------------------------------- export
@pytest.mark.parametrize("name", MODELS)
def test_export_with_dynamic_batch_matches_eager_at_another_batch(name, small_models):
    model = small_models[name]
    exported = torch.export.export(
        model, zoo.example_inputs(model, batch=8), dynamic_shapes=zoo.export_dynamic_shapes(model)
    )
    runner = exported.module()
    for batch, seed in ((13, 1), (3, 2)):
        inputs = zoo.make_inputs(model, batch, seed=seed)
        with torch.no_grad():
            torch.testing.assert_close(runner(*inputs), model(*inputs), rtol=1e-6, atol=1e-6)


def test_export_dynamic_shapes_uses_dim_auto_everywhere(small_models):
    shapes = zoo.export_dynamic_shapes(small_models["two-tower"])
    auto = torch.export.Dim.AUTO
    assert shapes["dense"] == {0: auto}
    assert shapes["indices"] == [{0: auto}] * 16 and shapes["offsets"] == [{0: auto}] * 16
