"""Pruned embedding tables (compact table + int32 remap, -1 = pruned) on the cpu target.

A pruned id pools as a zero row: skipped by sum, counted by mean (the bag length
includes it), a 0 candidate for max (the IR interpreter's semantics; FBGEMM's
compressed_indices_mapping for sum). Every row format: f32, f16, int8, int4.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import xrec
from xrec import zoo
from xrec.ir import Op, feature_inputs, run_graph
from xrec.passes import run_pipeline
from xrec.runtime.validate import InputError
from xrec.targets.cpu.isa import best_isa
from xrec.testing import edge_case_inputs, zoo_model

from .conftest import needs_cpu

pytestmark = needs_cpu
TOL = {"rtol": 1e-4, "atol": 1e-6}
ISA = {"isa": best_isa()}     # one build per artifact (the isa paths share the kernel code; test_cpu_models runs all)


def _flat(args) -> list[np.ndarray]:
    dense, idx, off = args
    return [dense.numpy()] + [i.numpy() for i in idx] + [o.numpy() for o in off]


def _pruned_graph(name: str, keep: dict, precision: dict | None = None):
    """(torch model, fp32 graph, pruned [+ quantized] graph) of a small zoo model lowered for cpu."""
    model = zoo_model(name, 300)
    g = xrec.api.lower(model, zoo.example_inputs(model), target="cpu")[0]
    gp = run_pipeline(g, ["prune_embeddings"], options={"prune_embeddings": {"keep": keep}})
    if precision:
        gp = run_pipeline(gp, ["quantize_embeddings"], options={"quantize_embeddings": {"precision": precision}})
    assert sum(f.has_remap for n in gp.nodes_of(Op.EMBEDDING_BAG_GROUP) for f in n.attr("features")) >= len(keep)
    return model, g, gp


def _check_against_reference(model, g, gp, tmp_path):
    cm = xrec.compile(gp, target="cpu", options=ISA, out=tmp_path / "pruned.xrec")
    ref = xrec.compile(gp, target="reference")
    assert any("remap" in line for line in (cm.path / "src" / "model.cpp").read_text().splitlines())
    cases = edge_case_inputs(model, batches=(1, 6, 33)) + [
        zoo.make_inputs(model, 64, seed=5, index_dtype=torch.int32, empty_bag_prob=0.2)]
    changed = False
    for args in cases:
        got = cm(*args)
        torch.testing.assert_close(got, ref(*args), **TOL)
        np.testing.assert_allclose(got.numpy(), run_graph(gp, _flat(args))[0], **TOL)
        changed |= not np.allclose(got.numpy(), run_graph(g, _flat(args))[0], rtol=1e-4)
    assert changed, "pruning did not change any output: the remap was not read"


def test_pruned_f32_f16_int8_int4_sum_tables_match_the_reference(tmp_path):
    """dlrm-small (sum): pruned f32, f16, int8 and int4 tables next to unpruned ones; int32/int64 ids,
    batch 1, empty bags, duplicates, ids 0 and rows-1 (pruned or not)."""
    rng = np.random.default_rng(0)
    keep = {"indices[0]": np.arange(0, 300, 2), "indices[3]": np.array([1, 5, 7]),
            "indices[9]": np.sort(rng.choice(300, 60, replace=False)), "indices[12]": np.arange(150)}
    prec = {"indices[3]": "int8", "indices[9]": "int4", "indices[12]": "fp16", "indices[5]": "int8", "*": "fp32"}
    _check_against_reference(*_pruned_graph("dlrm-small", keep, prec), tmp_path)


def test_pruned_mean_tables_count_pruned_ids_in_the_bag_length(tmp_path):
    """wide-deep: features 3 and 15 are mean-pooled; pruned ids still count in the divisor (f32, int8, int4)."""
    rng = np.random.default_rng(1)
    keep = {f"indices[{k}]": np.sort(rng.choice(300, 100, replace=False)) for k in (0, 3, 15)}
    _check_against_reference(*_pruned_graph("wide-deep", keep), tmp_path / "f32")
    prec = {"indices[3]": "int8", "indices[15]": "int4", "*": "fp32"}
    _check_against_reference(*_pruned_graph("wide-deep", keep, prec), tmp_path / "q")


def test_pruned_max_tables_see_zero_for_pruned_ids(tmp_path):
    """two-tower: user_hist_categories and item_tags are max-pooled; a pruned id is a 0 candidate."""
    model = zoo_model("two-tower", 300)
    feats = [f.name for f in zoo.spec_of(model).features]
    names = {f"indices[{feats.index('user_hist_categories')}]", f"indices[{feats.index('item_tags')}]",
             "indices[0]"}
    keep = {n: np.arange(0, 300, 3) for n in names}
    prec = {n: "int8" for n in sorted(names)[:1]}
    _check_against_reference(*_pruned_graph("two-tower", keep, prec or None), tmp_path)


class Bags(nn.Module):
    """Pooled rows only (no dense layers), so the output is the kernel's output."""

    def __init__(self, rows=40, dim=24):
        super().__init__()
        g = torch.Generator().manual_seed(3)
        self.s = nn.EmbeddingBag(rows, dim, mode="sum", include_last_offset=True,
                                 _weight=torch.randn(rows, dim, generator=g))
        self.m = nn.EmbeddingBag(rows, dim, mode="mean", include_last_offset=True,
                                 _weight=torch.randn(rows, dim, generator=g))
        self.x = nn.EmbeddingBag(rows, dim, mode="max", include_last_offset=True,
                                 _weight=torch.randn(rows, dim, generator=g))

    def forward(self, i0, o0, i1, o1, i2, o2):
        return torch.cat([self.s(i0, o0), self.m(i1, o1), self.x(i2, o2)], dim=1)


def _bag_case(dtype):
    # bags: [pruned only], [], [kept, pruned, kept dup], [rows-1 (pruned), 0 (kept)], [kept]
    idx = torch.tensor([1, 1, 3, 0, 2, 2, 39, 0, 6], dtype=dtype)
    off = torch.tensor([0, 2, 2, 6, 8, 9], dtype=dtype)
    return tuple(t.clone() for t in (idx, off) * 3)     # distinct tensors: three traced features


def _bags_graph(keep, precision=None, dtype=torch.int64):
    """Bags traced with ``dtype`` ids (a user model's compiled id dtype is the traced one)."""
    model = Bags().eval()
    g = xrec.api.lower(model, _bag_case(dtype), target="cpu")[0]
    feats = [f.feature for n in g.nodes_of(Op.EMBEDDING_BAG_GROUP) for f in n.attr("features")]
    gp = run_pipeline(g, ["prune_embeddings"], options={"prune_embeddings": {"keep": {f: keep for f in feats}}})
    if precision:
        gp = run_pipeline(gp, ["quantize_embeddings"], options={"quantize_embeddings": {"precision": precision}})
    return model, gp


@pytest.mark.parametrize("precision", ["fp32", "int8", "int4"])
def test_pruned_rows_pool_as_zero_rows_in_sum_mean_and_max(tmp_path, precision):
    """Against torch on the table with pruned rows zeroed (sum, mean over the full bag length, max)."""
    keep = np.array([0, 2, 3, 6, 10, 17])
    model, _ = _bags_graph(keep, {"*": precision})
    zeroed = Bags().eval()
    with torch.no_grad():
        for e_src, e_dst in zip((model.s, model.m, model.x), (zeroed.s, zeroed.m, zeroed.x)):
            w = e_src.weight.clone()
            if precision != "fp32":          # the values the quantized table holds
                from xrec.ir.quant import dequantize_rows
                from xrec.passes.quantize_embeddings import encode_table
                arr, t = encode_table(w.numpy(), precision)
                w = torch.from_numpy(dequantize_rows(arr, t.layout, w.shape[1]))
            mask = torch.ones(len(w), dtype=torch.bool)
            mask[keep] = False
            w[mask] = 0.0
            e_dst.weight.copy_(w)
    tol = TOL if precision == "fp32" else {"rtol": 1e-5, "atol": 1e-5}
    for dtype in (torch.int64, torch.int32):
        _, gp = _bags_graph(keep, {"*": precision}, dtype)
        cm = xrec.compile(gp, target="cpu", options=ISA, out=tmp_path / f"bags-{dtype}.xrec")
        args = _bag_case(dtype)
        with torch.no_grad():
            want = zeroed(*(a.long() for a in args))
        got = cm(*args)
        torch.testing.assert_close(got, want, **tol)
        assert torch.all(got[0] == 0) and torch.all(got[1] == 0)          # only pruned ids; empty bag
    # batch 1, a pruned id
    single = tuple(t.clone() for t in (torch.tensor([5], dtype=dtype), torch.tensor([0, 1], dtype=dtype)) * 3)
    torch.testing.assert_close(cm(*single), torch.zeros(1, 72), **TOL)


def test_pruned_int8_sum_matches_fbgemm_compressed_indices_mapping(tmp_path):
    """torch.ops.quantized.embedding_bag_byte_rowwise_offsets with pruned_weights and
    compressed_indices_mapping (FBGEMM) on the same compact int8 table and ids."""
    keep = np.array([0, 2, 3, 6, 10, 17, 39])
    model, gp = _bags_graph(keep, {"*": "int8"})
    group = gp.nodes_of(Op.EMBEDDING_BAG_GROUP)[0]
    fi = feature_inputs(group)[0]                    # the sum table
    q = torch.from_numpy(np.ascontiguousarray(gp.param(gp.node(fi.table))))
    remap = torch.from_numpy(gp.param(gp.node(fi.remap)))
    rng = np.random.default_rng(4)
    lengths = rng.integers(0, 6, size=17)
    off = torch.from_numpy(np.concatenate([[0], np.cumsum(lengths)]))
    for dtype in (torch.int32, torch.int64):
        cm = xrec.compile(_bags_graph(keep, {"*": "int8"}, dtype)[1], target="cpu", options=ISA,
                          out=tmp_path / f"{dtype}.xrec")
        idx = torch.from_numpy(rng.integers(0, 40, size=int(off[-1]))).to(dtype)
        o = off.to(dtype)
        want = torch.ops.quantized.embedding_bag_byte_rowwise_offsets(
            q, idx, o, mode=0, pruned_weights=True, compressed_indices_mapping=remap, include_last_offset=True)
        got = cm(idx, o, idx, o, idx, o)[:, :24]
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_bad_id_on_a_pruned_table_names_feature_and_position(tmp_path):
    """Ids are checked against the logical rows (the remap's length), not the compact table's."""
    keep = np.array([0, 2, 3])
    model, gp = _bags_graph(keep)
    cm = xrec.compile(gp, target="cpu", options=ISA, out=tmp_path / "bags.xrec")
    raw = xrec.load(cm.path, validate=False)        # only the generated code's own checks
    ok = [a.numpy() for a in _bag_case(torch.int64)]
    ok[0] = np.array([1, 1, 3, 0, 2, 2, 39, 0, 35])      # 35 >= 3 compact rows, < 40 logical rows: fine
    raw.run_flat(ok)
    for bad_id, pos in ((40, 4), (-1, 7)):
        bad = [a.copy() for a in ok]
        bad[2][pos] = bad_id                               # feature 1 (mean table)
        with pytest.raises(InputError) as e:
            raw.run_flat(bad)
        msg = str(e.value)
        assert f"index {bad_id} at position {pos}" in msg and "40 rows" in msg
        feat = [f.feature for f in gp.nodes_of(Op.EMBEDDING_BAG_GROUP)[0].attr("features")][1]
        assert f"feature '{feat}'" in msg


def test_compile_with_prune_targets_cpu():
    """xrec.compile(..., prune=...) no longer refuses cpu: the result matches the reference target."""
    m = zoo_model("dlrm-small", max_rows=1200)
    kw = dict(quantize="int8", prune=("frequency", 0.5), calib_samples=256)
    cm = xrec.compile(m, zoo.example_inputs(m), target="cpu", options=ISA, **kw)
    assert cm.manifest["compression"]["prune"]["rows_kept"]
    ref = xrec.compile(cm.graph, target="reference")
    for args in edge_case_inputs(m, batches=(1, 9)):
        torch.testing.assert_close(cm(*args), ref(*args), **TOL)


@pytest.mark.parametrize("formats", [{"i0": "int8", "i1": "int4", "i2": "fp16"},
                                     {"i0": "int2", "i1": "bf16", "i2": "int2"}])
@pytest.mark.parametrize("isa", ["avx512", "avx2", "scalar"])
def test_pruned_tables_on_every_isa_path(tmp_path, isa, formats):
    """Pruned tables of every row format (sum, mean and max) through each ISA build equal the reference target."""
    from xrec.targets.cpu.isa import supported
    if not supported(isa):
        pytest.skip(f"this CPU cannot run {isa}")
    keep = np.array([0, 2, 3, 6, 10, 17, 39])
    _, gp = _bags_graph(keep, formats)
    cm = xrec.compile(gp, target="cpu", options={"isa": isa}, out=tmp_path / "bags.xrec")
    ref = xrec.compile(gp, target="reference")
    rng = np.random.default_rng(7)
    lengths = rng.integers(0, 7, size=23)
    off = torch.from_numpy(np.concatenate([[0], np.cumsum(lengths)]))
    args = [t for _ in range(3) for t in (torch.from_numpy(rng.integers(0, 40, size=int(off[-1]))), off.clone())]
    torch.testing.assert_close(cm(*args), ref(*args), **TOL)
    args1 = _bag_case(torch.int64)
    torch.testing.assert_close(cm(*args1), ref(*args1), **TOL)
