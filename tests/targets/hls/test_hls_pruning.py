"""Pruned embedding tables (compact table + int32 remap, -1 = pruned) on the hls target.

The gather unit reads the remap itself: a lookup stage between the tokens and the row burst (an m_axi
port next to the table's rows, or on-chip RAM for on-chip tables). A pruned id fetches nothing and
pools as a zero row: skipped by sum, counted by mean (the bag length includes it), a 0 candidate for
max -- the IR interpreter's semantics. Compared with the IR interpreter and the reference target on
the same pruned graph.
"""
from __future__ import annotations

import re
import subprocess

import numpy as np
import pytest
import torch

import xrec
from xrec import zoo
from xrec.config import knobs
from xrec.ir import DType, Op, feature_inputs, run_graph
from xrec.passes import run_pipeline
from xrec.runtime.validate import InputError
from xrec.targets.hls.placement import plan_of
from xrec.targets import get_target
from xrec.targets.hls import report as hls_report
from xrec.targets.hls.headers import xrt_stub_dir
from xrec.targets.hls.runtime import Gatherer
from xrec.targets.hls.spec import kernel_spec
from xrec.targets.hls.tables import effective_table
from xrec.testing import edge_case_inputs, zoo_model

from conftest import imported_zoo            # tests/conftest.py: traced zoo graphs (300 rows), shared per session
from .conftest import FAST, T, bag_graph, make_flat, needs_hls

pytestmark = needs_hls
TOL = {"rtol": 1e-4, "atol": 1e-6}

# on chip, HBM and DDR; sum / mean / max, padding, weights, int32 ids, one- and multi-lane pooling
TABLES = [
    T(300, 64, "sum"),                              # 0: pruned, its compact table + remap > an HBM channel -> DDR
    T(200, 16, "mean", pad=5),                      # 1: pruned, the padding id 5 is a pruned id
    T(100, 10, "max"),                              # 2: pruned to a single row
    T(50, 1, "sum", psw=True, index=DType.I32),     # 3: pruned, weighted
    T(120, 33, "sum", pad=-1),                      # 4: not pruned
    T(80, 17, "mean", pooling=20),                  # 5: pruned, partial-sum lanes
    T(60, 16, "max", pooling=8),                    # 6: pruned, lanes
]
OPTS = {**FAST, "uram_bytes": 12000, "bram_bytes": 0, "onchip_units": 2, "hbm_channels": 2,
        "hbm_channel_bytes": 30000, "ddr_banks": 1, "pooling": {f"indices[{k}]": t.pooling for k, t in enumerate(TABLES)}}


def _keep() -> dict:
    rng = np.random.default_rng(7)
    keep = {f"indices[{k}]": np.sort(rng.choice(t.rows, t.rows // 2, replace=False))
            for k, t in enumerate(TABLES) if k not in (2, 4)}
    keep["indices[1]"] = keep["indices[1]"][keep["indices[1]"] != 5]
    keep["indices[2]"] = np.array([99])
    return keep


def _prune(g, keep, precision=None):
    gp = run_pipeline(g, ["prune_embeddings"], options={"prune_embeddings": {"keep": keep}})
    if precision:
        gp = run_pipeline(gp, ["quantize_embeddings"], options={"quantize_embeddings": {"precision": precision}})
    n = sum(f.has_remap for node in gp.nodes_of(Op.EMBEDDING_BAG_GROUP) for f in node.attr("features"))
    assert n >= len(keep)          # a feature may feed several groups (wide-deep)
    return gp


def _inputs(gp, feature: str) -> tuple[np.ndarray, np.ndarray]:
    """(compact table, remap) of a pruned feature of the graph's embedding group."""
    for fi in feature_inputs(gp.nodes_of(Op.EMBEDDING_BAG_GROUP)[0]):
        if fi.feature.feature == feature:
            return gp.param(gp.node(fi.table)), gp.param(gp.node(fi.remap))
    raise KeyError(feature)


@pytest.fixture(scope="module")
def pruned(tmp_path_factory):
    g = bag_graph(TABLES, name="pruned")
    gp = _prune(g, _keep())
    cm = xrec.compile(gp, target="hls", options=OPTS, out=tmp_path_factory.mktemp("hls") / "pruned.xrec")
    return g, gp, cm


def test_pruned_tables_are_placed_on_chip_in_hbm_and_in_ddr(pruned):
    g, gp, cm = pruned
    where = {t.feature: t.memory for t in plan_of(cm.graph).tables}
    pruned_feats = set(_keep())
    assert {where[f] for f in pruned_feats} == {"onchip", "hbm", "ddr"}


@pytest.mark.parametrize("batch,seed", [(1, 0), (7, 1), (37, 2)])
def test_pruned_gather_matches_the_interpreter(pruned, batch, seed):
    g, gp, cm = pruned
    flat = make_flat(gp, TABLES, batch, seed=seed)
    got = cm.run_flat(flat)[0]
    np.testing.assert_allclose(got, run_graph(gp, flat)[0], rtol=1e-5, atol=1e-6)
    if batch > 1:      # the remap was read: pruning changed the pooled rows
        assert not np.allclose(got, run_graph(g, flat)[0], rtol=1e-4)


def test_pruned_ids_pool_as_zero_rows_and_count_for_mean(pruned):
    g, gp, cm = pruned
    flat = make_flat(gp, TABLES, 4, seed=4, empty_prob=0.0)
    names = [n.attr("name") for n in gp.input_nodes]
    (table1, r1), (table2, r2), (_, r5) = (_inputs(gp, f"indices[{k}]") for k in (1, 2, 5))
    kept1, cut1 = int(np.nonzero(r1 >= 0)[0][0]), int(np.nonzero((r1 < 0) & (np.arange(200) != 5))[0][0])
    cut2 = int(np.nonzero(r2 < 0)[0][0])
    kept5, cut5 = int(np.nonzero(r5 >= 0)[0][0]), int(np.nonzero(r5 < 0)[0][0])
    for k, ids_per_bag in ((1, [[cut1, cut1], [kept1, cut1, cut1, cut1]]), (2, [[cut2, cut2, cut2], [cut2, 99]]),
                           (5, [[cut5], [kept5, cut5]])):
        bags = ids_per_bag + [[0]] * (4 - len(ids_per_bag))
        off = np.concatenate([[0], np.cumsum([len(b) for b in bags])])
        dt = flat[names.index(f"indices[{k}]")].dtype
        flat[names.index(f"indices[{k}]")] = np.concatenate(bags).astype(dt)
        flat[names.index(f"offsets[{k}]")] = off.astype(dt)
    got = cm.run_flat(flat)[0]
    np.testing.assert_allclose(got, run_graph(gp, flat)[0], rtol=1e-5, atol=1e-6)
    c1 = 64                                    # columns of table 1 (mean, dim 16)
    c2 = c1 + 16                               # table 2 (max, dim 10)
    c5 = 64 + 16 + 10 + 1 + 33                 # table 5 (mean, dim 17)
    assert table1.shape == (int((r1 >= 0).sum()), 16)
    np.testing.assert_array_equal(got[0, c1:c1 + 16], 0)                          # pruned ids only
    np.testing.assert_allclose(got[1, c1:c1 + 16], table1[r1[kept1]] / 4, rtol=1e-6)   # mean over 4 ids
    np.testing.assert_array_equal(got[0, c2:c2 + 10], 0)                          # max over zero rows
    np.testing.assert_array_equal(got[1, c2:c2 + 10], np.maximum(table2[0], 0))    # max(kept row, 0)
    np.testing.assert_array_equal(got[0, c5:c5 + 17], 0)


def test_kernel_reads_each_remap_in_a_lookup_stage_before_the_row_burst(pruned):
    g, gp, cm = pruned
    src = (cm.path / "src" / "xrec_gather.cpp").read_text()
    hdr = (cm.path / "src" / "xrec_gather.h").read_text()
    cfg = (cm.path / "src" / "xrec_gather.cfg").read_text()
    tb = (cm.path / "src" / "tb.cpp").read_text()
    host = (cm.path / "src" / "host.cpp").read_text()
    plan = plan_of(cm.graph)
    pruned_ids = {t.id for t in plan.tables if t.feature in _keep()}
    assert "int p = remap[t.id];" in hdr                     # the lookup
    assert "const bool zero = tok.id < 0;" in hdr            # a pruned id: no burst
    for t in plan.tables:
        u = f"u{t.unit}"
        if t.id not in pruned_ids:
            assert not re.search(rf"\bremap_{t.id}\b", src)
            continue
        if t.memory == "onchip":
            assert re.search(rf"xrec_remap_bag\({t.id}, xrec_remap_{t.id}, \d+, in_s, out_s\);", src)
            assert f"BIND_STORAGE variable=xrec_remap_{t.id} " in src
            assert f"remap of table {t.id}" in tb and f"remap of table {t.id}" in host
        else:   # an m_axi port of its own (32-bit, no bursts) in the table's bank
            assert re.search(rf"xrec_remap_bag\({t.id}, remap_{t.id}, \d+, in_s, out_s\);", src)
            assert re.search(rf"INTERFACE m_axi port=remap_{t.id} offset=slave bundle={t.memory}{t.channel}_remap ",
                             src)
            assert f"sp=xrec_gather_1.remap_{t.id}:{t.memory.upper()}[{t.channel}]" in cfg
            assert f"remap_{t.id} -> {t.memory.upper()}[{t.channel}]" in host
        # the unit's DATAFLOW: tokens -> remap -> fetch
        assert re.search(rf"{u}_tokens\(batch, cnt_s, raw_s, id_s\);\n\s*{u}_remap\((remap_\d+, )*batch, id_s, "
                         rf"row_id_s\);\n\s*{u}_fetch\((tab_\d+, )*batch, row_id_s, row_s, ctl_a\);", src)
    units_with_remap = {t.unit for t in plan.tables if t.id in pruned_ids}
    assert units_with_remap != {u.id for u in plan.units}
    for u in plan.units:         # units without a pruned table keep tokens -> fetch
        assert (f"u{u.id}_remap(" in src) == (u.id in units_with_remap)
        if u.id not in units_with_remap:
            assert re.search(rf"u{u.id}_fetch\((tab_\d+, )*batch, id_s, row_s, ctl_a\);", src)


def test_host_code_with_remaps_syntax_checks_against_xrt_declarations(pruned):
    g, gp, cm = pruned
    r = subprocess.run([knobs.cxx, "-std=c++17", "-fsyntax-only", "-DXREC_HOST_MAIN", f"-I{xrt_stub_dir()}",
                        str(cm.path / "src" / "host.cpp")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_report_counts_remap_reads_pruned_ids_and_stored_bytes(pruned):
    g, gp, cm = pruned
    ks = kernel_spec(cm.graph, plan_of(cm.graph))
    gat = Gatherer(ks, cm.graph, cm.path, get_target("hls").parse_options(OPTS))
    flat = make_flat(gp, TABLES, 23, seed=9)
    feats, batch = gat.features_from_inputs(flat)
    _, counters = gat.run_features(feats, batch)
    for t in ks.tables:
        ids = feats[t.jagged_value][0].astype(np.int64)
        kept = ids if t.pad < 0 else ids[ids != t.pad]
        c = counters["tables"][t.id]
        if t.pruned:
            remap = cm.graph.param(cm.graph.node(t.remap_value))
            assert c["remap_reads"] == len(kept)
            assert c["ids_pruned"] == int((remap[kept] < 0).sum())
            assert c["rows"] == int((remap[kept] >= 0).sum())
            assert t.words == t.phys_rows * t.plan.beats < t.plan.rows * t.plan.beats
        else:
            assert c["remap_reads"] == c["ids_pruned"] == 0 and c["rows"] == len(kept)
    rep = hls_report.model(ks, counters)
    for u in rep["units"]:
        has = any(t.pruned for t in ks.units[[x.name for x in ks.units].index(u["unit"])].tables)
        assert ("remap" in u["stage_cycles"]) == has
        for t in u["tables"]:
            assert ("pruned" in t) == (t["feature"] in _keep())
    stored = cm.manifest["target_info"]["stored_bytes"]
    for t in ks.tables:     # compact rows + the remap in whole 64-byte words
        if t.pruned:
            assert t.stored_bytes == (t.phys_rows * t.plan.beats + -(-t.plan.rows // 16)) * 64
    assert sum(stored.values()) == sum(t.stored_bytes for t in ks.tables)
    md = (cm.path / "report.md").read_text()
    assert "| remap |" in md and "pruned ids (rows stored)" in md


def test_bad_id_on_a_pruned_table_names_feature_and_position(pruned):
    """Ids are checked against the logical rows (the remap's length), not the compact table's."""
    g, gp, cm = pruned
    flat = make_flat(gp, TABLES, 3, seed=5, empty_prob=0.0)
    names = [n.attr("name") for n in gp.input_nodes]
    k = names.index("indices[0]")
    flat[k][2] = 299                                   # >= 150 compact rows, < 300 logical rows: fine
    np.testing.assert_allclose(cm.run_flat(flat)[0], run_graph(gp, flat)[0], rtol=1e-5, atol=1e-6)
    cm.validate = False                                # past the API's validator, into the runner
    try:
        for bad_id, pos in ((300, 1), (-1, 2)):
            bad = [a.copy() for a in flat]
            bad[k][pos] = bad_id
            with pytest.raises(InputError) as e:
                cm.run_flat(bad)
            assert str(e.value) == (f"feature 'indices[0]': index {bad_id} at position {pos} is out of range for "
                                    "its table of 300 rows")     # xrec.runtime.validate's words
    finally:
        cm.validate = True


def test_csim_aborts_on_an_id_past_the_logical_rows_of_a_pruned_table(pruned, tmp_path):
    g, gp, cm = pruned
    ks = kernel_spec(cm.graph, plan_of(cm.graph))
    (tmp_path / "batch.txt").write_text("1\n")
    for u in ks.units:
        ids = np.array([t.plan.rows for t in u.tables], np.int32)       # one past the logical rows
        np.arange(u.nfeat + 1, dtype=np.int32).tofile(tmp_path / f"{u.name}_bag_off.bin")
        ids.tofile(tmp_path / f"{u.name}_ids.bin")
        if u.has_psw:
            np.ones(u.nfeat, np.float32).tofile(tmp_path / f"{u.name}_psw.bin")
    r = subprocess.run([str(cm.path / "lib" / "csim"), str(cm.path), str(tmp_path)], capture_output=True, text=True)
    assert r.returncode != 0 and "out of range" in r.stderr


def test_int8_rows_of_pruned_tables(tmp_path):
    """quantize_rows='int8': the compact tables are stored as FBGEMM int8 rows; equal to the interpreter
    run on the compact tables as the card stores them."""
    g = bag_graph(TABLES, name="pruned8")
    gp = _prune(g, _keep())
    cm = xrec.compile(gp, target="hls", options={**OPTS, "quantize_rows": "int8"}, out=tmp_path / "p8.xrec")
    params = dict(gp.params)
    for n in gp.nodes:
        if n.op is Op.PARAM and n.type.dtype is DType.F32 and len(n.type.shape) == 2:
            params[n.attr("name")] = effective_table(gp.params[n.attr("name")], n.type, "int8", n.type.shape[1])
    gq = gp.with_(params=params)
    for batch, seed in ((1, 0), (19, 3)):
        flat = make_flat(gp, TABLES, batch, seed=seed)
        np.testing.assert_allclose(cm.run_flat(flat)[0], run_graph(gq, flat)[0], rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- zoo models vs the reference target
def _zoo_case(name, keep_every, precision=None):
    model, g = imported_zoo(name)
    gl = xrec.api.lower(g, target="reference")[0]
    feats = [f.feature for n in gl.nodes_of(Op.EMBEDDING_BAG_GROUP) for f in n.attr("features")]
    rows = {f.feature: f.num_rows for n in gl.nodes_of(Op.EMBEDDING_BAG_GROUP) for f in n.attr("features")}
    keep = {f: np.arange(k % keep_every, rows[f], keep_every) for k, f in enumerate(feats) if k % 3 != 2}
    return model, _prune(gl, keep, precision)


def _check_vs_reference(model, gp, tmp_path, opts):
    cm = xrec.compile(gp, target="hls", options=opts, out=tmp_path / "hls.xrec")
    ref = xrec.compile(gp, target="reference")
    assert {t.memory for t in plan_of(cm.graph).tables} >= {"onchip", "hbm"}
    cases = edge_case_inputs(model, batches=(1, 6, 33)) + [
        zoo.make_inputs(model, 24, seed=5, index_dtype=torch.int32, empty_bag_prob=0.2)]
    for args in cases:
        torch.testing.assert_close(cm(*args), ref(*args), **TOL)


ZOO_OPTS = {**FAST, "report_batch": 8, "uram_bytes": 150_000, "bram_bytes": 0, "hbm_channels": 8,
            "hbm_channel_bytes": 60_000}


def test_dlrm_small_pruned_sum_tables_match_the_reference(tmp_path):
    """dlrm-small: sum pooling, f32 and (compression pass) int8 / int4 compact tables next to unpruned ones."""
    model, gp = _zoo_case("dlrm-small", 3, {"indices[0]": "int8", "indices[4]": "int4", "*": "fp32"})
    _check_vs_reference(model, gp, tmp_path, ZOO_OPTS)


def test_wide_deep_pruned_mean_tables_match_the_reference(tmp_path):
    """wide-deep: mean-pooled tables count pruned ids in the bag length."""
    model, gp = _zoo_case("wide-deep", 2)
    modes = {f.feature: f.mode for n in gp.nodes_of(Op.EMBEDDING_BAG_GROUP) for f in n.attr("features")
             if f.has_remap}
    assert "mean" in modes.values()
    _check_vs_reference(model, gp, tmp_path, ZOO_OPTS)


def test_compile_with_prune_targets_hls(tmp_path):
    """xrec.compile(..., prune=...) no longer refuses hls: the result matches the reference target pruned
    the same way (tables of 1200 rows: pruning picks tables of at least 1000)."""
    model = zoo_model("dlrm-small", max_rows=1200)
    kw = {"prune": ("frequency", 0.5), "calib_samples": 256}
    opts = {**FAST, "report_batch": 8, "uram_bytes": 2_000_000, "bram_bytes": 0}
    cm = xrec.compile(model, zoo.example_inputs(model), target="hls", options=opts, out=tmp_path / "h.xrec", **kw)
    ref = xrec.compile(model, zoo.example_inputs(model), target="reference", **kw)
    assert any(f.has_remap for n in cm.graph.nodes_of(Op.EMBEDDING_BAG_GROUP) for f in n.attr("features"))
    where = {t.memory for t in plan_of(cm.graph).tables}
    assert "onchip" in where and where - {"onchip"}
    for args in edge_case_inputs(model, batches=(1, 9)):
        torch.testing.assert_close(cm(*args), ref(*args), **TOL)


def test_compact_table_and_remap_that_overflow_their_channel_fail_the_build(tmp_path):
    """A pruned table stores its compact rows plus its remap: keeping 299 of 300 rows needs 299 + 19 words,
    more than a 300-word channel. The placement sizes it so and fails with a clear error."""
    tables = [T(300, 16, "sum")]
    g = bag_graph(tables, name="tight")
    gp = _prune(g, {"indices[0]": np.arange(299)})
    opts = {**FAST, "hbm_channels": 1, "hbm_channel_bytes": 300 * 64, "ddr_banks": 0, "onchip_units": 0}
    with pytest.raises(ValueError, match=r"feature 'indices\[0\]' \(20,352 bytes as fp32 rows, compact table \+ "
                                         r"remap\) fits no memory channel.*hbm_channel_bytes"):
        xrec.compile(gp, target="hls", options=opts, out=tmp_path / "tight.xrec")
    cm = xrec.compile(gp, target="hls", options={**opts, "hbm_channel_bytes": 320 * 64}, out=tmp_path / "ok.xrec")
    flat = make_flat(gp, tables, 5, seed=1)
    np.testing.assert_allclose(cm.run_flat(flat)[0], run_graph(gp, flat)[0], rtol=1e-5, atol=1e-6)
