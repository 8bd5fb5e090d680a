"""TorchRec's quantized EmbeddingBagCollection (FBGEMM IntNBit TBE, int8/int4/int2/fp16 tables) compiles as it is.

Its tables are taken byte for byte from FBGEMM and converted into xrec's row formats, never re-quantized: the
compiled model gives TorchRec's quantized output (not the fp32 one) at batch 1, 7 and 64, with empty bags and a
key empty in the whole batch, on the reference and cpu targets. Shared helpers come from test_torchrec.py.
"""
import numpy as np
import pytest
import torch
import torch.nn as nn

from frontend.test_torchrec import (DENSE, KEYS, ROWS, assert_matches_on_dense_cases, cases,  # noqa: E402
                                    dense_cases, dlrm, example_kjt, kjt, make_ebc)  # (skips without torchrec)

from torchrec.inference.modules import quantize_inference_model  # noqa: E402
from torchrec.modules.embedding_configs import PoolingType  # noqa: E402

import xrec  # noqa: E402
from xrec.frontend import FrontendError, import_model  # noqa: E402
from xrec.frontend.torchrec_quant import QuantizedBags, from_fbgemm_rows  # noqa: E402
from xrec.ir import Op, formats  # noqa: E402
from xrec.ir.quant import decode_rows  # noqa: E402
from xrec.passes import run_pipeline  # noqa: E402

TARGETS = ["reference", "cpu"]
# FBGEMM packs int4 rows only for dims that are a multiple of 4 (int2: of 8); "item_t" is shared by two features
TABLES = [("user_t", ROWS["user"], 8, ["user"], PoolingType.SUM),
          ("item_t", ROWS["item"], 8, ["item", "item_hist"], PoolingType.MEAN),
          ("cat_t", ROWS["cat"], 16, ["cat"], PoolingType.SUM)]
DTYPES = {"int8": torch.qint8, "int4": torch.quint4x2, "int2": torch.quint2x4, "fp16": torch.float16}


class QRanker(nn.Module):
    """dense -> MLP, sparse -> EBC (quantized below), concatenated -> MLP -> probability."""

    def __init__(self, weighted=False):
        super().__init__()
        torch.manual_seed(10)
        self.ebc = make_ebc(is_weighted=weighted, tables=TABLES)
        width = sum(d * len(f) for _, _, d, f, _ in TABLES)
        self.bottom = nn.Sequential(nn.Linear(DENSE, 16), nn.ReLU())
        self.top = nn.Sequential(nn.Linear(16 + width, 16), nn.ReLU(), nn.Linear(16, 1))

    def forward(self, dense, features):
        pooled = self.ebc(features)
        return torch.sigmoid(self.top(torch.cat([self.bottom(dense), pooled.values()], dim=1)))


class Pooled(nn.Module):
    def __init__(self, weighted=False):
        super().__init__()
        torch.manual_seed(11)
        self.ebc = make_ebc(is_weighted=weighted, tables=TABLES)

    def forward(self, features):
        return self.ebc(features)


def quantized(model, precision, **kw):
    """TorchRec's own quantization: quantize_inference_model (every table at ``precision``)."""
    return quantize_inference_model(model.eval(), quantization_dtype=DTYPES[precision], **kw)


_compiled = {}


def compiled_ranker(precision, target):
    """(TorchRec's quantized ranker, the same ranker in fp32, the compiled quantized one), once per session."""
    if (precision, target) not in _compiled:
        q = quantized(QRanker(), precision)
        _compiled[precision, target] = (q, QRanker().eval(),
                                        xrec.compile(q, (torch.randn(4, DENSE), example_kjt()), target=target))
    return _compiled[precision, target]


def qebc_of(model):
    return model.ebc


# ---------------------------------------------------------------- the byte layout
@pytest.mark.parametrize("precision", ["int8", "int4", "int2", "fp16"])
def test_fbgemm_rows_convert_exactly_into_xrec_rows_of_the_same_format(precision):
    """Every row of every table, decoded from xrec's layout, is exactly what TorchRec's quantized module returns
    for a bag holding only that row (FBGEMM: fp16 scale and bias before the values; xrec: after, int8's as f32)."""
    q = quantized(Pooled(), precision)
    tbe = qebc_of(q)._emb_modules[0]
    for t, (spec, (raw, _, _)) in enumerate(zip(tbe.embedding_specs,
                                                tbe.split_embedding_weights_with_scale_bias(0))):
        name, rows, dim, sparse_type, _ = spec
        arr, fmt = from_fbgemm_rows(raw.numpy(), sparse_type.as_int(), dim)
        assert fmt.name == precision and arr.shape == fmt.table_type(rows, dim).shape
        feature = [f for n, _, _, fs, _ in TABLES if n == name for f in fs][0]
        ones = [torch.ones(rows, dtype=torch.long) if k == feature else torch.zeros(rows, dtype=torch.long)
                for k in KEYS]
        from torchrec import KeyedJaggedTensor
        one_row_bags = KeyedJaggedTensor.from_lengths_sync(keys=KEYS, values=torch.arange(rows),
                                                           lengths=torch.cat(ones))
        want = q(one_row_bags)[feature].numpy()
        np.testing.assert_array_equal(decode_rows(fmt, arr, dim), want, err_msg=f"table {name}")


def test_reverse_qparam_rows_put_scale_and_bias_after_the_values():
    dim, rows = 8, 3
    values = np.arange(rows * dim, dtype=np.uint8).reshape(rows, dim)
    sb = np.array([[0.5, -1.0]] * rows, np.float16).view(np.uint8)
    front, _ = from_fbgemm_rows(np.concatenate([sb, values, np.zeros((rows, 4), np.uint8)], 1), 2, dim)
    back, _ = from_fbgemm_rows(np.concatenate([values, sb, np.zeros((rows, 4), np.uint8)], 1), 2, dim,
                               reverse_qparam=True)
    np.testing.assert_array_equal(front, back)
    np.testing.assert_array_equal(decode_rows("int8", front, dim), values * np.float32(0.5) - 1)


# ---------------------------------------------------------------- compiled vs TorchRec's quantized module
@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("precision", ["int8", "int4"])
def test_a_quantized_ranker_matches_torchrec_quantized_output_at_batch_1_7_64(precision, target):
    q, fp32, cm = compiled_ranker(precision, target)
    wants = assert_matches_on_dense_cases(q, cm)
    with torch.no_grad():
        unquantized = [fp32(dense, features) for _, dense, features in dense_cases()]
    drift = max(float((w - u).abs().max()) for w, u in zip(wants, unquantized))
    assert drift > 1e-5, "the quantized model should differ from the fp32 one (else this test checks nothing)"


@pytest.mark.parametrize("target", ["xla", "hls", "triton"])
def test_a_quantized_ranker_matches_torchrec_on_the_other_targets(target):
    """int8 and int4 tables on xla (JAX CPU), hls (C simulation) and triton (its interpreter without a GPU)."""
    from xrec.targets import available_targets
    why = available_targets().get(target)
    if why:
        pytest.skip(f"target {target} not available here: {why}")
    for precision in ("int8", "int4"):
        q = quantized(QRanker(), precision)
        assert_matches_on_dense_cases(q, xrec.compile(q, (torch.randn(4, DENSE), example_kjt()), target=target))


@pytest.mark.parametrize("target", TARGETS)
def test_a_quantized_ebc_keyed_tensor_output_keeps_torchrec_keys_and_order_and_empty_bags(target):
    q = quantized(Pooled(), "int8")
    cm = xrec.compile(q, (example_kjt(),), target=target)
    for b, features in cases():
        want, got = q(features), cm(features)
        # TorchRec orders its quantized output by pooling group (sum tables, then mean ones)
        assert got.keys() == want.keys() == ["user", "cat", "item", "item_hist"]
        assert got.length_per_key() == want.length_per_key()
        torch.testing.assert_close(got.values(), want.values(), rtol=1e-5, atol=1e-6, msg=f"batch {b}")
        assert torch.all(got["item"][0] == 0)          # mean of an empty bag
    _, empty = cases((7,))[1]
    assert torch.all(cm(empty)["cat"] == 0)


def test_the_tables_are_fbgemms_bytes_in_one_group_and_a_shared_table_is_stored_once():
    q = quantized(QRanker(), "int4")
    g = run_pipeline(import_model(q, (torch.randn(4, DENSE), example_kjt())))
    (group,) = g.nodes_of(Op.EMBEDDING_BAG_GROUP)
    tables = [n for n in g.nodes_of(Op.PARAM) if n.type.layout]
    assert len(tables) == 3 and {t.type.layout for t in tables} == {"rowwise_i4"}
    assert [f.dim for f in group.attr("features")] == [8, 16, 8, 8]
    tbe = qebc_of(q)._emb_modules
    raw = {spec[0]: (w, spec) for m in tbe for spec, (w, _, _) in
           zip(m.embedding_specs, m.split_embedding_weights_with_scale_bias(0))}
    for t in tables:
        name = t.attr("name").rsplit("table_", 1)[1]
        w, spec = raw[name]
        np.testing.assert_array_equal(g.param(t), from_fbgemm_rows(w.numpy(), spec[3].as_int(), spec[2])[0])
        # values and scale/bias moved, nothing recomputed: the packed values are FBGEMM's bytes after its qparams
        np.testing.assert_array_equal(g.param(t)[:, :spec[2] // 2], w.numpy()[:, 4:4 + spec[2] // 2])


def test_mixed_per_table_precisions_and_a_weighted_quantized_ebc_match_torchrec():
    q = quantize_inference_model(Pooled(weighted=True).eval(),
                                 per_table_weight_dtype={"user_t": torch.quint4x2, "item_t": torch.qint8,
                                                         "cat_t": torch.float16})
    cm = xrec.compile(q, (example_kjt(weighted=True),), target="reference")
    assert {n.type.layout or n.type.dtype.value for n in cm.graph.nodes_of(Op.PARAM)} == \
        {"rowwise_i4", "rowwise_i8", "f16"}
    for b in (1, 7, 64):
        features = kjt(b, seed=300 + b, weighted=True)
        torch.testing.assert_close(cm(features).values(), q(features).values(), rtol=1e-5, atol=1e-6,
                                   msg=f"batch {b}")


@pytest.mark.parametrize("target", TARGETS)
def test_torchrec_dlrm_quantized_compiles_to_one_group_and_one_dot_interaction_and_matches(target):
    q = quantize_inference_model(dlrm(seed=12), quantization_dtype=torch.qint8)
    example = (torch.randn(4, DENSE), example_kjt())
    if target == "reference":
        g = run_pipeline(import_model(q, example))
        assert len(g.nodes_of(Op.EMBEDDING_BAG_GROUP)) == 1 and len(g.nodes_of(Op.DOT_INTERACTION)) == 1
        assert {n.type.layout for n in g.nodes_of(Op.PARAM) if n.type.layout} == {"rowwise_i8"}
    assert_matches_on_dense_cases(q, xrec.compile(q, example, target=target))


def test_a_saved_quantized_artifact_loads_and_xrec_check_agrees_with_torchrec(tmp_path):
    from xrec.check import check
    from xrec.runtime.inputs import random_args
    q, _, cm = compiled_ranker("int4", "cpu")
    again = xrec.load(cm.save(tmp_path / "qranker.xrec"))
    assert_matches_on_dense_cases(q, again, batches=(1, 7))
    assert check(again, q, random_args(again), batches=(1, 7, 64))["ok"]


def test_compiling_leaves_the_users_quantized_model_as_it_was():
    q = quantized(Pooled(), "int8")
    before = type(q.ebc)
    xrec.compile(q, (example_kjt(),), target="reference")
    assert type(q.ebc) is before and not isinstance(q.ebc, QuantizedBags)


# ---------------------------------------------------------------- still refused
def test_a_quantized_ebc_with_fp16_output_is_refused_naming_output_dtype():
    q = quantized(Pooled(), "int8", output_dtype=torch.float16)
    with pytest.raises(FrontendError, match=r"EmbeddingBagCollection at 'ebc'.*output_dtype=torch.float"):
        import_model(q, (example_kjt(),))


def test_a_quantized_embedding_collection_is_refused_pointing_at_xrec_quantize():
    from torchrec import EmbeddingCollection, EmbeddingConfig
    from torchrec.quant.embedding_modules import EmbeddingCollection as QuantEC

    class Seq(nn.Module):
        def __init__(self):
            super().__init__()
            self.ec = EmbeddingCollection(tables=[EmbeddingConfig(name="t", num_embeddings=10, embedding_dim=8,
                                                                  feature_names=["user"])])

        def forward(self, features):
            return self.ec(features)["user"].values()

    q = quantize_inference_model(Seq().eval())
    assert isinstance(q.ec, QuantEC)
    with pytest.raises(FrontendError, match=r"quantized inference module that xrec does not take yet.*"
                                            r"quantize='int8'"):
        import_model(q, (example_kjt(keys=["user"]),))


def test_quantize_on_an_already_quantized_model_is_refused_naming_its_tables():
    q = quantized(Pooled(), "int8")
    with pytest.raises(FrontendError, match=r"quantize='int4'.*'model.ebc.table_user_t'.*already stored.*"
                                            r"Compile without quantize="):
        xrec.compile(q, (example_kjt(),), target="reference", quantize="int4")


def test_the_row_format_codes_are_fbgemms_sparse_types():
    from fbgemm_gpu.split_embedding_configs import SparseType
    for name in ("fp32", "fp16", "int8", "int4", "int2"):
        assert SparseType(name).as_int() == formats.by_name(name).code
