"""Cost terms pinned on hand-built graphs whose work is computed by hand."""

import numpy as np
import pytest

from xrec.cost import CostError, IdDistribution, graph_work, main_rows
from xrec.cost.rules import _RULES
from xrec.ir.ops import Op

from cost.graphs import bag_graph, chain_graph, cross_graph, dot_graph, fm_graph, linear_graph


def node_work(gw, name):
    return next(n for n in gw.nodes if n.node == name)


# ---- dense ----
@pytest.mark.parametrize("batch,k,n", [(1, 13, 512), (64, 256, 128), (7, 3, 5)])
def test_linear_flops_bytes_calls(batch, k, n):
    nw = node_work(graph_work(linear_graph(k, n, bias=False), batch), "y")
    assert nw.stage == "dense"
    assert nw.work.flops == {"f32": 2 * batch * k * n}
    assert nw.work.bytes == {"main": 4 * (k * n + batch * k + batch * n)}     # no cache: all from main memory
    assert nw.work.calls == 1
    with_bias = node_work(graph_work(linear_graph(k, n), batch), "y").work
    assert with_bias.flops["f32"] == 2 * batch * k * n + batch * n
    assert with_bias.bytes["main"] == 4 * (k * n + n + batch * k + batch * n)


def test_dense_tensors_fitting_the_cache_are_read_there():
    w = node_work(graph_work(linear_graph(64, 32, bias=False), 8, cache_bytes=1 << 20), "y").work
    assert w.bytes == {"cache": 4 * (64 * 32 + 8 * 64 + 8 * 32)}


# ---- embedding ----
@pytest.mark.parametrize("fmt,dim,row_bytes,quantized", [
    ("fp32", 16, 64, False), ("int8", 16, 16 + 8, True),     # u8 values, f32 scale + bias
    ("int4", 16, 8 + 4, True), ("int4", 15, 8 + 4, True),    # two values per byte, f16 scale + bias
    ("fp16", 10, 20, False), ("int2", 16, 4 + 4, True)])
def test_embedding_bag_bytes_are_ids_times_row_bytes(fmt, dim, row_bytes, quantized):
    rows, batch, pooling = 1000, 64, 3.0
    ids = int(batch * pooling)
    gw = graph_work(bag_graph(rows, dim, fmt, pooling), batch)
    assert gw.bindings == {"B": batch, "N_f": ids}
    w = node_work(gw, "bag").work
    assert sum(w.gather_bytes.values()) == pytest.approx(ids * row_bytes)
    # without a cache only repeats within the batch hit: distinct rows of a uniform draw come from main memory
    distinct = rows * (1 - (1 - 1 / rows) ** ids)
    assert w.gather_bytes["main"] == pytest.approx(distinct * row_bytes)
    streamed = ids * 8 + (batch + 1) * 8 + batch * dim * 4          # ids, offsets, pooled output
    assert w.bytes["main"] == pytest.approx(distinct * row_bytes + streamed)
    assert w.flops["f32"] == ids * dim * (3 if quantized else 1)     # adds, + q*scale+bias to decode
    assert w.calls == 1


def test_mean_pooling_adds_a_divide_per_output():
    s = node_work(graph_work(bag_graph(100, 8, mode="sum"), 16), "bag").work.flops["f32"]
    m = node_work(graph_work(bag_graph(100, 8, mode="mean"), 16), "bag").work.flops["f32"]
    assert m - s == 16 * 8


def test_a_table_that_fits_in_cache_reads_no_rows_from_main():
    rows, dim = 500, 16
    w = node_work(graph_work(bag_graph(rows, dim), 256, cache_bytes=rows * dim * 4), "bag").work
    assert w.gather_bytes.get("main", 0.0) == 0.0
    assert w.gather_bytes["cache"] == pytest.approx(256 * 3 * dim * 4)


def test_zipf_main_rows_match_the_exact_sum():
    for rows, cached in ((1000, 0), (100_000, 3000), (50_000, 40_000)):
        p = np.arange(1, rows + 1, dtype=np.float64) ** -1.2
        p /= p.sum()
        exact = float((1 - (1 - p[cached:]) ** 4096).sum())
        assert main_rows(rows, cached, 4096, IdDistribution("zipf", 1.2)) == pytest.approx(exact, rel=1e-3)


def test_skewed_ids_hit_the_cache_more_than_uniform_ones():
    kw = dict(cache_bytes=100_000 * 4 * 16 // 10)
    uni = node_work(graph_work(bag_graph(100_000, 16), 512, **kw), "bag").work.gather_bytes["main"]
    zipf = node_work(graph_work(bag_graph(100_000, 16), 512, ids="zipf:1.05", **kw), "bag").work.gather_bytes["main"]
    assert zipf < 0.8 * uni


# ---- interaction ----
@pytest.mark.parametrize("batch,f,d", [(1, 4, 8), (32, 27, 64)])
def test_dot_interaction_flops(batch, f, d):
    pairs = [(i, j) for i in range(f) for j in range(i)]
    w = node_work(graph_work(dot_graph(f, d, pairs), batch), "z").work
    assert w.flops == {"f32": 2 * batch * len(pairs) * d}
    assert w.bytes["main"] == 4 * (batch * f * d + batch * len(pairs))
    assert node_work(graph_work(dot_graph(f, d, pairs), batch), "z").stage == "interaction"


@pytest.mark.parametrize("batch,f,k", [(1, 3, 4), (128, 39, 10)])
def test_fm_flops(batch, f, k):
    w = node_work(graph_work(fm_graph(f, k), batch), "y").work
    assert w.flops == {"f32": 3 * batch * f * k + 3 * batch * k + batch}
    assert w.bytes["main"] == 4 * (batch * f * k + batch)


@pytest.mark.parametrize("rank", [None, 8])
def test_cross_layer_flops(rank):
    batch, d = 32, 100
    w = node_work(graph_work(cross_graph(d, rank), batch), "y").work
    gemm = 2 * batch * d * d if rank is None else 2 * batch * d * rank * 2
    assert w.flops == {"f32": gemm + 3 * batch * d}
    weights = d * d if rank is None else 2 * d * rank
    assert w.bytes["main"] == 4 * (3 * batch * d + weights + d)        # x0, xl, y; W (or W, V); bias


def test_elementwise_reduce_and_layout_terms():
    batch, n = 16, 10
    gw = graph_work(chain_graph(n), batch)
    by = {nw.node: nw.work for nw in gw.nodes}
    elems = batch * n
    assert by["a"].flops == {"f32": elems} and by["a"].bytes["main"] == 4 * 3 * elems   # x read twice, a written
    assert by["s"].flops == {"f32": 4 * elems}                                      # sigmoid: 4 per element
    assert by["r"] == by["r2"] and by["r"].calls == 0 and by["r"].total_bytes == 0   # views
    assert by["c"].flops == {} and by["c"].bytes["main"] == 4 * 4 * elems and by["c"].calls == 1
    assert by["m"].flops == {"f32": 2 * elems} and by["m"].calls == 1
    assert gw.stage("other").calls == 4


def test_inputs_and_outputs_are_host_transfers():
    gw = graph_work(linear_graph(10, 3), 4)
    assert gw.total.transfers == {"h2d": 4 * 10 * 4, "d2h": 4 * 3 * 4}


# ---- monotonic ----
def _total(g, batch, **kw):
    w = graph_work(g, batch, **kw).total
    return w.total_flops, w.total_bytes, w.bytes.get("main", 0.0)


def test_monotonic_in_batch():
    for g in (linear_graph(64, 32), bag_graph(10_000, 16), dot_graph(8, 16, [(1, 0), (2, 1)])):
        prev = (0, 0, 0)
        for b in (1, 2, 8, 64, 512, 4096):
            cur = _total(g, b)
            assert cur[0] >= prev[0] and cur[1] > prev[1], (g.name, b)
            prev = cur


def test_monotonic_in_rows_through_the_cache_hit_estimate():
    mains = [_total(bag_graph(rows, 16), 512, cache_bytes=200_000)[2] for rows in (100, 1000, 10_000, 100_000, 10**6)]
    assert mains[:2] == [0.0, 0.0]                  # tables that fit in the cache read nothing from main memory
    assert all(a < b for a, b in zip(mains[1:], mains[2:])), mains


def test_monotonic_in_pooling_and_dims():
    by_pool = [_total(bag_graph(10_000, 16, pooling=p), 64)[1] for p in (1, 2, 5, 20)]
    assert by_pool == sorted(by_pool) and len(set(by_pool)) == 4
    by_dim = [_total(bag_graph(10_000, d), 64) for d in (4, 16, 64, 128)]
    for k in (0, 1):                                   # FLOPs, bytes
        assert [x[k] for x in by_dim] == sorted(x[k] for x in by_dim) and len({x[k] for x in by_dim}) == 4
    by_lin = [_total(linear_graph(k, 32), 64)[0] for k in (1, 8, 64, 512)]
    assert by_lin == sorted(by_lin) and len(set(by_lin)) == 4


def test_pooling_override_and_missing_statistics():
    g = bag_graph(1000, 8, pooling=3.0)
    assert graph_work(g, 10, pooling={"f": 7.0}).bindings["N_f"] == 70
    bare = g.with_(meta=())
    gw = graph_work(bare, 10)
    assert gw.bindings["N_f"] == 10
    assert any("'f' has no pooling statistics" in n for n in gw.notes)


# ---- registry ----
def test_every_op_has_a_cost_rule():
    missing = [op.value for op in Op if op not in _RULES]
    assert not missing, f"ops without a cost rule (add one in compiler/cost/rules/): {missing}"


def test_an_op_without_a_rule_is_a_clear_error_or_a_reported_estimate(monkeypatch):
    monkeypatch.delitem(_RULES, Op.DOT_INTERACTION)
    g = dot_graph(4, 8, [(1, 0)])
    with pytest.raises(CostError, match=r"no cost rule for op 'dot_interaction' \(node %z\).*"
                                        r"@register_cost\(Op.DOT_INTERACTION.*compiler/cost/rules/"):
        graph_work(g, 4)
    gw = graph_work(g, 4, unknown="estimate")
    assert gw.estimated == ("z",)
    assert any("dot_interaction" in n and "conservative default" in n for n in gw.notes)
    assert node_work(gw, "z").work.total_flops > 0 and node_work(gw, "z").work.calls == 1


def test_id_distribution_parsing():
    assert IdDistribution.parse("zipf:1.2") == IdDistribution("zipf", 1.2)
    assert IdDistribution.parse("uniform") == IdDistribution()
    for bad in ("pareto", "zipf:0", "zipf:x"):
        with pytest.raises(ValueError, match="id distribution"):
            IdDistribution.parse(bad)


def test_bad_batch_is_refused():
    with pytest.raises(ValueError, match="batch must be a positive integer"):
        graph_work(linear_graph(2, 2), 0)
