"""TorchRec models compile: an ``EmbeddingBagCollection`` + dense layers, called with a ``KeyedJaggedTensor``.

The compiled model is called exactly like the TorchRec model (the same KJT), gives TorchRec's own eager output at
batch 1, 7 and 64 on the reference and cpu targets, and keeps the flat per-feature signature (one values and
one offsets input per KJT key) for the C ABI and the server. What xrec does not take yet is refused by name.

Needs the `torchrec` extra (scripts/setup.sh installs it). Skipped without it, except in CI, where a missing
torchrec fails.
"""
import os

import numpy as np
import pytest
import torch
import torch.nn as nn

try:
    import torchrec  # noqa: F401
except ImportError:      # pragma: no cover: the tests below need it; CI installs it
    if os.environ.get("CI"):
        raise
    pytest.skip("torchrec not installed: bash scripts/setup.sh (installs fbgemm-gpu-cpu==1.8.0, then "
                "torchrec==1.8.0 --no-deps, then tensordict pyre-extensions tqdm torchmetrics==1.0.3)",
                allow_module_level=True)

from torchrec import EmbeddingBagCollection, EmbeddingBagConfig, KeyedJaggedTensor, KeyedTensor  # noqa: E402
from torchrec.modules.embedding_configs import PoolingType  # noqa: E402

import xrec  # noqa: E402
from xrec.frontend import FrontendError, import_model  # noqa: E402
from xrec.ir import Op  # noqa: E402
from xrec.runtime.validate import InputError  # noqa: E402

TARGETS = ["reference", "cpu"]
BATCHES = (1, 7, 64)
DENSE = 13

# three tables: sum and mean pooling; the table "item_t" is shared by two features ("item", "item_hist")
TABLES = [("user_t", 300, 8, ["user"], PoolingType.SUM),
          ("item_t", 200, 4, ["item", "item_hist"], PoolingType.MEAN),
          ("cat_t", 50, 6, ["cat"], PoolingType.SUM)]
KEYS = ["user", "item", "item_hist", "cat"]
ROWS = {f: rows for _, rows, _, feats, _ in TABLES for f in feats}


def make_ebc(is_weighted=False, tables=TABLES):
    return EmbeddingBagCollection(
        tables=[EmbeddingBagConfig(name=n, num_embeddings=r, embedding_dim=d, feature_names=list(f),
                                   pooling=PoolingType.SUM if is_weighted else p)
                for n, r, d, f, p in tables],
        is_weighted=is_weighted, device=torch.device("cpu"))


class Ranker(nn.Module):
    """dense -> MLP, sparse -> EBC, concatenated -> MLP -> probability."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.ebc = make_ebc()
        width = sum(d * len(f) for _, _, d, f, _ in TABLES)
        self.bottom = nn.Sequential(nn.Linear(DENSE, 16), nn.ReLU())
        self.top = nn.Sequential(nn.Linear(16 + width, 16), nn.ReLU(), nn.Linear(16, 1))

    def forward(self, dense, features):
        pooled = self.ebc(features)
        return torch.sigmoid(self.top(torch.cat([self.bottom(dense), pooled.values()], dim=1)))


class PerFeature(nn.Module):
    """Returns the EBC's KeyedTensor as a dict of per-feature tensors (KeyedTensor.to_dict())."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.ebc = make_ebc()

    def forward(self, features):
        return self.ebc(features).to_dict()


def kjt(batch, seed, *, empty_key=None, weighted=False, keys=KEYS):
    """A KJT over ``keys`` with the edge cases: empty bags (about a third), ids 0 and rows-1, a whole key
    with no ids in the batch (``empty_key``), and the first bag of the mean-pooled "item" empty."""
    g = torch.Generator().manual_seed(seed)
    lengths, values = [], []
    for k in keys:
        lens = torch.randint(0, 5, (batch,), generator=g)
        lens[torch.rand(batch, generator=g) < 0.3] = 0
        if k == "item":
            lens[0] = 0                      # mean pooling of an empty bag is 0
        if k == empty_key:
            lens[:] = 0
        ids = torch.randint(0, ROWS[k], (int(lens.sum()),), generator=g)
        if len(ids) >= 2:
            ids[0], ids[-1] = 0, ROWS[k] - 1
        lengths.append(lens)
        values.append(ids)
    values = torch.cat(values)
    weights = torch.rand(len(values), generator=g) if weighted else None
    return KeyedJaggedTensor.from_lengths_sync(keys=list(keys), values=values, lengths=torch.cat(lengths),
                                               weights=weights)


def example_kjt(weighted=False, keys=KEYS):
    """The traced example: batch 4, every key with 2 to 4 ids (torch.export fixes sizes 0 and 1)."""
    g = torch.Generator().manual_seed(99)
    lengths = torch.tensor([1, 1, 0, 2] * len(keys))
    values = torch.cat([torch.randint(0, ROWS[k], (4,), generator=g) for k in keys])
    weights = torch.rand(len(values), generator=g) if weighted else None
    return KeyedJaggedTensor.from_lengths_sync(keys=list(keys), values=values, lengths=lengths, weights=weights)


def cases(batches=BATCHES):
    """(batch, KJT) pairs: each batch once, and once with the key "cat" empty in the whole batch."""
    out = []
    for b in batches:
        out.append((b, kjt(b, seed=b)))
        out.append((b, kjt(b, seed=100 + b, empty_key="cat")))
    return out


def dense_cases(batches=BATCHES):
    """(batch, dense, KJT): ``cases`` with a dense input of that batch."""
    return [(b, torch.randn(b, DENSE, generator=torch.Generator().manual_seed(b)), f) for b, f in cases(batches)]


def assert_matches_on_dense_cases(model, cm, batches=BATCHES):
    """``cm(dense, kjt)`` equals TorchRec's own ``model(dense, kjt)`` (a [B, 1] tensor) on every dense case;
    returns the outputs of ``model``."""
    wants = []
    for b, dense, features in dense_cases(batches):
        with torch.no_grad():
            want = model(dense, features)
        got = cm(dense, features)
        assert isinstance(got, torch.Tensor) and got.shape == (b, 1)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6, msg=f"batch {b}")
        wants.append(want)
    return wants


def dlrm(seed):
    """torchrec.models.dlrm.DLRM over one sum-pooled dim-8 table per key."""
    from torchrec.models.dlrm import DLRM
    torch.manual_seed(seed)
    tables = [(f"t_{k}", rows, 8, [k], PoolingType.SUM) for k, rows in ROWS.items()]
    return DLRM(embedding_bag_collection=make_ebc(tables=tables), dense_in_features=DENSE,
                dense_arch_layer_sizes=[16, 8], over_arch_layer_sizes=[16, 1]).eval()


_compiled = {}


def compiled(kind, target):
    """Compiled once per test session (the cpu target builds C++)."""
    if (kind, target) not in _compiled:
        if kind == "ranker":
            m = Ranker().eval()
            ex = (torch.randn(4, DENSE), example_kjt())
        elif kind == "per_feature":
            m = PerFeature().eval()
            ex = (example_kjt(),)
        elif kind == "weighted":
            torch.manual_seed(2)
            m = make_ebc(is_weighted=True).eval()
            ex = (example_kjt(weighted=True),)
        _compiled[kind, target] = (m, xrec.compile(m, ex, target=target))
    return _compiled[kind, target]


# ---------------------------------------------------------------- calling with a KJT
@pytest.mark.parametrize("target", TARGETS)
def test_ebc_ranker_called_with_a_kjt_matches_torchrec_eager_at_batch_1_7_64(target):
    model, cm = compiled("ranker", target)
    assert_matches_on_dense_cases(model, cm)


@pytest.mark.parametrize("target", TARGETS)
def test_ebc_dict_output_per_feature_matches_torchrec_including_empty_bags_and_empty_keys(target):
    model, cm = compiled("per_feature", target)
    for b, features in cases():
        with torch.no_grad():
            want = model(features)
        got = cm(features)
        assert isinstance(got, dict) and list(got) == list(want)
        for key in want:
            torch.testing.assert_close(got[key], want[key], rtol=1e-5, atol=1e-6, msg=f"batch {b} {key}")
        # the empty bag of the mean-pooled item is 0 (as in TorchRec), and so is every bag of an empty key
        assert torch.all(got["item"][0] == 0) and torch.all(want["item"][0] == 0)
    _, empty = cases((7,))[1]
    assert torch.all(cm(empty)["cat"] == 0)


@pytest.mark.parametrize("target", TARGETS)
def test_weighted_kjt_into_a_weighted_ebc_matches_torchrec(target):
    ebc, cm = compiled("weighted", target)
    for b in BATCHES:
        features = kjt(b, seed=200 + b, weighted=True)
        with torch.no_grad():
            want = ebc(features)
        got = cm(features)
        assert isinstance(got, KeyedTensor)
        assert got.keys() == want.keys() and got.length_per_key() == want.length_per_key()
        torch.testing.assert_close(got.values(), want.values(), rtol=1e-5, atol=1e-6, msg=f"batch {b}")


def test_per_id_weights_no_ebc_reads_are_not_inputs_and_are_ignored_when_given():
    model = PerFeature().eval()
    cm = xrec.compile(model, (example_kjt(weighted=True),), target="reference")
    assert not [i for i in cm.manifest["signature"]["inputs"] if ".weights[" in i["name"]]
    features = kjt(7, seed=9, weighted=True)
    got, want = cm(features), model(features)
    for key in want:
        torch.testing.assert_close(got[key], want[key].detach(), rtol=1e-5, atol=1e-6)


def test_a_weighted_model_called_without_weights_is_refused():
    _, cm = compiled("weighted", "reference")
    with pytest.raises(InputError, match="has no weights"):
        cm(kjt(3, seed=3))


def test_a_feature_read_by_two_tables_and_a_table_shared_by_two_features():
    torch.manual_seed(3)
    tables = [("t_a", 100, 4, ["x", "y"], PoolingType.SUM), ("t_b", 60, 8, ["x"], PoolingType.MEAN)]
    ebc = make_ebc(tables=tables).eval()
    keys = ["x", "y"]
    g = torch.Generator().manual_seed(5)
    ex = KeyedJaggedTensor.from_lengths_sync(keys=keys, values=torch.randint(0, 60, (8,), generator=g),
                                             lengths=torch.tensor([1, 1, 0, 2, 2, 0, 1, 1]))
    cm = xrec.compile(ebc, (ex,), target="reference")
    assert cm.manifest["signature"]["features"][0]["num_rows"] == 60    # "x" indexes both tables
    for b in BATCHES:
        lengths = torch.randint(0, 4, (2 * b,), generator=g)
        f = KeyedJaggedTensor.from_lengths_sync(keys=keys, values=torch.randint(0, 60, (int(lengths.sum()),),
                                                                                 generator=g), lengths=lengths)
        want, got = ebc(f), cm(f)
        assert got.keys() == want.keys() == ["x@t_a", "y", "x@t_b"]
        torch.testing.assert_close(got.values(), want.values(), rtol=1e-5, atol=1e-6)


def test_a_model_reading_kjt_by_key_and_its_lengths_compiles():
    class ByKey(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(4)
            self.ebc = make_ebc()

        def forward(self, features):
            user = features["user"]
            return self.ebc(features)["cat"] * user.lengths().unsqueeze(1).float()

    model = ByKey().eval()
    cm = xrec.compile(model, (example_kjt(),), target="reference")
    for b, features in cases((1, 7)):
        torch.testing.assert_close(cm(features), model(features).detach(), rtol=1e-5, atol=1e-6)


def test_a_kjt_inside_a_dict_input_is_flattened_and_rebuilt_in_place():
    class DictIn(nn.Module):
        def __init__(self):
            super().__init__()
            self.ranker = Ranker()

        def forward(self, batch):
            return self.ranker(batch["dense"], batch["sparse"])

    model = DictIn().eval()
    cm = xrec.compile(model, ({"dense": torch.randn(4, DENSE), "sparse": example_kjt()},), target="reference")
    assert [i["name"] for i in cm.manifest["signature"]["inputs"]][:2] == [
        "batch['dense']", "batch['sparse'].values[user]"]
    for b, features in cases((1, 7)):
        batch = {"dense": torch.randn(b, DENSE), "sparse": features}
        torch.testing.assert_close(cm(batch), model(batch).detach(), rtol=1e-5, atol=1e-6)
    from xrec.runtime.inputs import random_args
    (batch,) = random_args(cm)(3, 0)
    assert isinstance(batch["sparse"], KeyedJaggedTensor) and batch["dense"].shape == (3, DENSE)


def test_xrec_check_draws_kjts_over_the_compiled_signature_and_agrees_with_torchrec():
    from xrec.check import check
    from xrec.runtime.inputs import random_args
    model, cm = compiled("ranker", "reference")
    make = random_args(cm)
    dense, features = make(5, 0)
    assert isinstance(features, KeyedJaggedTensor) and features.keys() == KEYS and features.stride() == 5
    report = check(cm, model, make, batches=BATCHES)
    assert report["ok"], report
    # and it can fail: a model that differs from the compiled one
    other = Ranker().eval()
    with torch.no_grad():
        other.top[2].bias += 1.0
    assert not check(cm, other, make, batches=(7,))["ok"]


@pytest.mark.parametrize("target", TARGETS)
def test_torchrec_dlrm_compiles_to_one_embedding_group_and_one_dot_interaction_and_matches_torchrec(target):
    from xrec.passes import run_pipeline
    model = dlrm(seed=5)
    example = (torch.randn(4, DENSE), example_kjt())
    if target == "reference":
        g = run_pipeline(import_model(model, example))
        assert len(g.nodes_of(Op.EMBEDDING_BAG_GROUP)) == 1 and len(g.nodes_of(Op.DOT_INTERACTION)) == 1
        assert not g.nodes_of(Op.INDEX, Op.MATMUL)
    assert_matches_on_dense_cases(model, xrec.compile(model, example, target=target))


# ---------------------------------------------------------------- the flat signature
def test_the_compiled_signature_is_one_values_and_one_offsets_input_per_kjt_key_in_key_order():
    _, cm = compiled("ranker", "reference")
    sig = cm.manifest["signature"]
    assert [i["name"] for i in sig["inputs"]] == (
        ["dense"] + [f"features.values[{k}]" for k in KEYS] + [f"features.offsets[{k}]" for k in KEYS])
    assert [i["kind"] for i in sig["inputs"]] == ["dense"] + ["indices"] * 4 + ["offsets"] * 4
    assert [f["feature"] for f in sig["features"]] == KEYS
    assert [f["num_rows"] for f in sig["features"]] == [ROWS[k] for k in KEYS]
    assert all(f["include_last_offset"] for f in sig["features"])
    g = cm.graph
    assert {str(j.type.batch) for j in g.nodes_of(Op.JAGGED)} == {"B"}
    assert len({str(j.type.nnz) for j in g.nodes_of(Op.JAGGED)}) == 4       # one id count per key


@pytest.mark.parametrize("target", TARGETS)
def test_the_compiled_model_also_takes_the_flat_per_feature_tensors(target):
    model, cm = compiled("ranker", target)
    features = kjt(7, seed=7)
    dense = torch.randn(7, DENSE)
    jts = features.to_dict()
    values = [jts[k].values() for k in KEYS]
    offsets = [jts[k].offsets() for k in KEYS]
    want = model(dense, features).detach()
    torch.testing.assert_close(cm(dense, (values, offsets)), want, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(cm(dense, *values, *offsets), want, rtol=1e-5, atol=1e-6)


def test_a_saved_torchrec_artifact_loads_and_takes_the_kjt(tmp_path):
    model, cm = compiled("per_feature", "cpu")
    path = cm.save(tmp_path / "per_feature.xrec")
    again = xrec.load(path)
    features = kjt(7, seed=8)
    got, want = again(features), model(features)
    assert list(got) == list(want)
    for key in want:
        torch.testing.assert_close(got[key], want[key].detach(), rtol=1e-5, atol=1e-6)


def test_a_kjt_with_other_keys_than_the_compiled_ones_is_refused_naming_both():
    _, cm = compiled("ranker", "reference")
    swapped = kjt(3, seed=1, keys=["item", "user", "item_hist", "cat"])
    with pytest.raises(InputError, match=r"keys \['item', 'user', 'item_hist', 'cat'\].*compiled with "
                                         r"\['user', 'item', 'item_hist', 'cat'\]"):
        cm(torch.randn(3, DENSE), swapped)


def test_an_out_of_range_id_in_a_kjt_names_the_feature():
    _, cm = compiled("ranker", "reference")
    lengths = torch.tensor([1, 1, 1, 1])
    bad = KeyedJaggedTensor.from_lengths_sync(keys=KEYS, values=torch.tensor([0, 0, 0, 50]), lengths=lengths)
    with pytest.raises(InputError, match="cat"):
        cm(torch.randn(1, DENSE), bad)


# ---------------------------------------------------------------- what xrec does not take yet
def test_a_traced_kjt_key_with_fewer_than_2_ids_asks_for_a_bigger_example():
    ex = KeyedJaggedTensor.from_lengths_sync(keys=KEYS, values=torch.tensor([0, 1, 2, 3, 4, 5, 6]),
                                             lengths=torch.tensor([1, 1, 1, 1, 0, 1, 1, 1]))
    with pytest.raises(FrontendError, match=r"key 'item_hist' has 1 id\(s\).*at least 2 ids per key"):
        import_model(Ranker().eval(), (torch.randn(2, DENSE), ex))


def test_embedding_collection_is_refused_naming_the_module_and_the_alternative():
    from torchrec import EmbeddingCollection, EmbeddingConfig

    class Seq(nn.Module):
        def __init__(self):
            super().__init__()
            self.ec = EmbeddingCollection(tables=[EmbeddingConfig(name="t", num_embeddings=10, embedding_dim=4,
                                                                  feature_names=["user"])])

        def forward(self, features):
            return self.ec(features)["user"].values()

    with pytest.raises(FrontendError, match=r"EmbeddingCollection at 'ec'.*use EmbeddingBagCollection"):
        import_model(Seq(), (example_kjt(keys=["user"]),))


def test_a_variable_batch_kjt_is_refused():
    vbe = KeyedJaggedTensor(keys=["user", "item"], values=torch.tensor([1, 2, 3, 4, 5]),
                            lengths=torch.tensor([2, 1, 2]), stride_per_key_per_rank=[[2], [1]])
    assert vbe.variable_stride_per_key()
    with pytest.raises(FrontendError, match="variable-batch KeyedJaggedTensor"):
        import_model(PerFeature().eval(), (vbe,))


def test_a_feature_processor_is_refused_with_the_weighted_kjt_alternative():
    from torchrec.modules.feature_processor_ import PositionWeightedModuleCollection
    from torchrec.modules.fp_embedding_modules import FeatureProcessedEmbeddingBagCollection
    ebc = make_ebc(is_weighted=True)
    fp = FeatureProcessedEmbeddingBagCollection(
        ebc, PositionWeightedModuleCollection(max_feature_lengths={k: 8 for k in KEYS}))
    with pytest.raises(FrontendError, match=r"feature processor.*weighted KeyedJaggedTensor"):
        import_model(fp.eval(), (example_kjt(),))


def test_an_fp16_torchrec_table_is_refused_pointing_at_xrec_quantize():
    from torchrec.modules.embedding_configs import DataType
    ebc = EmbeddingBagCollection(tables=[EmbeddingBagConfig(name="t", num_embeddings=10, embedding_dim=4,
                                                            feature_names=["user"], data_type=DataType.FP16)])
    with pytest.raises(FrontendError, match=r"table 't' is torch.float16.*quantize='fp16'"):
        import_model(ebc, (example_kjt(keys=["user"]),))
