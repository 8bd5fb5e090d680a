"""prune_embeddings: compact tables plus a remap; pruned ids read zero rows (FBGEMM's pruning for sum)."""
import numpy as np
import pytest
import torch

import xrec
from xrec import zoo
from xrec.compress.prune import prune_plan
from xrec.ir import Op, run_graph, verify
from xrec.passes import get_pass
from xrec.testing import zoo_model

from conftest import flat
from passutil import zoo_prepared


def _pruned(keep):
    model, g, inputs = zoo_prepared("dlrm-small", upto=("fuse_embedding_bags", "canonicalize"))
    return model, g, verify(get_pass("prune_embeddings").fn(g, keep=keep)), inputs


def test_pruned_graph_equals_the_fp32_graph_with_pruned_rows_zeroed():
    rng = np.random.default_rng(0)
    keep = {"indices[0]": rng.choice(300, 100, replace=False), "indices[2]": np.arange(0, 300, 3)}
    _, g, p, inputs = _pruned(keep)
    group = p.nodes_of(Op.EMBEDDING_BAG_GROUP)[0]
    feats = {f.feature: f for f in group.attr("features")}
    assert feats["indices[0]"].has_remap and feats["indices[2]"].has_remap and not feats["indices[1]"].has_remap
    assert p.param_bytes() < g.param_bytes()
    params = dict(g.params)
    g_group = g.nodes_of(Op.EMBEDDING_BAG_GROUP)[0]
    for k, feature in ((0, "indices[0]"), (2, "indices[2]")):
        name = g.node(g_group.inputs[2 * k]).attr("name")
        t = params[name].copy()
        mask = np.ones(len(t), bool)
        mask[keep[feature]] = False
        t[mask] = 0.0
        params[name] = t
    zeroed = g.with_(params=params)
    for args in inputs:
        np.testing.assert_allclose(run_graph(p, flat(args))[0], run_graph(zeroed, flat(args))[0], rtol=1e-6, atol=1e-7)


def test_sum_pooling_of_a_pruned_int8_table_matches_fbgemm():
    t = torch.randn(50, 16)
    keep = np.array([0, 3, 4, 10, 49])
    q = torch.ops.quantized.embedding_bag_byte_prepack(t)
    remap = np.full(50, -1, np.int32)
    remap[keep] = np.arange(len(keep))
    idx = torch.tensor([0, 1, 3, 49, 7, 10, 10])
    off = torch.tensor([0, 2, 2, 7])
    want = torch.ops.quantized.embedding_bag_byte_rowwise_offsets(
        q[keep], idx, off, mode=0, pruned_weights=True, compressed_indices_mapping=torch.from_numpy(remap),
        include_last_offset=True)
    from xrec.ir.interpreter import Jagged, _bag
    from xrec.ir import DType, TensorType
    got = _bag(q[keep].numpy(), Jagged(idx.numpy(), off.numpy(), True), "sum", None, None, "f",
               TensorType(tuple(q[keep].shape), DType.U8, "rowwise_i8"), 16, remap)
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-5, atol=1e-5)


def test_frequency_plan_keeps_the_most_read_rows_and_norm_plan_the_largest():
    model, g, _ = zoo_prepared("dlrm-small", upto=("fuse_embedding_bags", "canonicalize"))
    batches = [flat(zoo.make_inputs(model, 256, seed=s)) for s in range(2)]
    plan = prune_plan(g, batches, "frequency", keep_fraction=0.1, min_rows=100)
    rows = {f.feature: f.num_rows for f in g.nodes_of(Op.EMBEDDING_BAG_GROUP)[0].attr("features")}
    assert plan and all(len(k) == round(0.1 * rows[f]) and rows[f] >= 100 for f, k in plan.items())
    ins = {n.name: k for k, n in enumerate(g.input_nodes)}
    jag = g.nodes_of(Op.JAGGED)[0]
    ids = np.concatenate([b[ins[jag.inputs[0]]] for b in batches])
    counts = np.bincount(ids, minlength=rows[jag.attr("feature")])
    kept = plan[jag.attr("feature")]
    assert counts[kept].min() >= np.sort(counts)[-len(kept)]     # nothing read more often was dropped
    nplan = prune_plan(g, batches, "norm", keep_fraction=0.5, min_rows=100)
    group = g.nodes_of(Op.EMBEDDING_BAG_GROUP)[0]
    table = g.params[g.node(group.inputs[0]).attr("name")]
    norms = np.linalg.norm(table, axis=1)
    assert norms[nplan["indices[0]"]].min() >= np.median(norms) - 1e-6


def test_a_table_pruned_to_no_rows_pools_zeros_and_still_checks_ids():
    from xrec.ir.interpreter import Jagged, _bag
    remap = np.full(40, -1, np.int32)
    idx, off = np.array([0, 39, 5]), np.array([0, 2, 2, 3])
    for mode in ("sum", "mean", "max"):
        got = _bag(np.zeros((0, 8), np.float32), Jagged(idx, off, True), mode, None, None, "f", remap=remap)
        np.testing.assert_array_equal(got, np.zeros((3, 8), np.float32))
    with pytest.raises(IndexError, match="index 40 at position 1"):
        _bag(np.zeros((0, 8), np.float32), Jagged(np.array([1, 40]), np.array([0, 2]), True), "sum", None, None,
             "f", remap=remap)


def test_compile_with_pruning_reports_it_and_refuses_targets_without_support():
    m = zoo_model("dlrm-small", max_rows=3000)
    cm = xrec.compile(m, zoo.example_inputs(m), target="reference", quantize="int8", prune=("frequency", 0.5),
                      calib_samples=1024)
    c = cm.manifest["compression"]
    assert c["prune"]["method"] == "frequency" and len(c["prune"]["rows_kept"]) > 0
    assert c["ranking_auc"] > 0.9
    from xrec.targets import Capabilities, get_target
    assert not Capabilities().supports_pruning
