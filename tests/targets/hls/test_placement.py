"""The hls target's placement stage (place_tables): embedding tables onto HBM/DDR channels and on-chip RAM,
balanced by bytes per query."""
from __future__ import annotations

import json

import numpy as np
import pytest

from xrec import zoo
from xrec.ir import BATCH, DType, Graph, GraphBuilder, GroupFeature, JaggedType, Op, TensorType, run_graph, sym, verify
from xrec.ir.serialize import graph_from_json, graph_to_json
from xrec.ir.stats import record_pooling
from xrec.passes import get_pass, run_pipeline
from xrec.targets.hls.placement import (BEAT_BYTES, MemoryConfig, make_plan, place, plan_of)


def group_graph(shapes, name="g", seed=0) -> Graph:
    """One EMBEDDING_BAG_GROUP over tables of the given (rows, dim), features named indices[k]."""
    rng = np.random.default_rng(seed)
    b = GraphBuilder(Graph(name=name, nodes=(), outputs=()))
    ins, feats = [], []
    for k, (rows, dim) in enumerate(shapes):
        n = sym(f"N_indices_{k}")
        idx = b.emit(Op.INPUT, (), TensorType((n,), DType.I64), {"name": f"indices[{k}]", "kind": "indices"},
                     hint=f"indices_{k}")
        off = b.emit(Op.INPUT, (), TensorType((BATCH + 1,), DType.I64), {"name": f"offsets[{k}]", "kind": "offsets"},
                     hint=f"offsets_{k}")
        jag = b.emit(Op.JAGGED, (idx, off), JaggedType(BATCH, n, DType.I64, DType.I64, True),
                     {"feature": f"indices[{k}]", "include_last_offset": True}, hint=f"jag_{k}")
        ins += [b.add_param(f"t{k}", rng.standard_normal((rows, dim)).astype(np.float32)), jag]
        feats.append(GroupFeature(f"indices[{k}]", "sum", None, False, rows, dim))
    out = b.emit(Op.EMBEDDING_BAG_GROUP, ins, TensorType((BATCH, sum(d for _, d in shapes)), DType.F32),
                 {"features": tuple(feats)}, hint="emb_group")
    return verify(b.finish(outputs=[out]))


def inputs_for(g, shapes, batch=5, seed=1):
    rng = np.random.default_rng(seed)
    by = {}
    for k, (rows, _) in enumerate(shapes):
        lengths = rng.integers(0, 4, batch)
        off = np.concatenate([[0], np.cumsum(lengths)])
        by[f"indices[{k}]"] = rng.integers(0, rows, off[-1])
        by[f"offsets[{k}]"] = off
    return [by[n.attr("name")] for n in g.input_nodes]


def by_feature(pooling: list) -> dict:
    """The pooling option for the tables of ``group_graph``, one number per table in order."""
    return {f"indices[{k}]": p for k, p in enumerate(pooling)}


SHAPES = [(3000, 64), (40, 16), (900, 32), (12000, 16), (5, 8), (700, 128), (2500, 64), (60, 64), (100, 10),
          (8000, 32), (300, 16), (1500, 64)]


def test_the_hls_target_registers_placement_as_its_layout_stage():
    from xrec.targets import get_target
    assert get_pass("place_tables").stage == "layout"
    t = get_target("hls")
    assert [p[0] for p in t.passes(t.parse_options({}))] == ["place_tables"]


def test_every_table_is_placed_once_within_channel_capacity():
    cfg = MemoryConfig(hbm_channels=4, hbm_channel_bytes=400_000, ddr_banks=1, uram_bytes=20_000, bram_bytes=0)
    plan = make_plan(group_graph(SHAPES), cfg)
    assert sorted(t.id for t in plan.tables) == list(range(len(SHAPES)))
    assert sorted(i for u in plan.units for i in u.tables) == list(range(len(SHAPES)))
    used = {}
    for t in plan.tables:
        assert t.beats == -(-t.dim * 4 // BEAT_BYTES) and t.image_bytes == t.rows * t.beats * BEAT_BYTES
        if t.memory != "onchip":
            used[(t.memory, t.channel)] = used.get((t.memory, t.channel), 0) + t.image_bytes
        assert plan.units[t.unit].memory == t.memory and plan.units[t.unit].channel == t.channel
    for (mem, ch), b in used.items():
        assert b <= plan.channel(mem, ch).capacity
    assert plan.onchip_bytes() <= cfg.onchip_bytes


def test_a_table_larger_than_an_hbm_channel_goes_to_ddr():
    plan = make_plan(group_graph(SHAPES), MemoryConfig(hbm_channel_bytes=700_000, uram_bytes=0, bram_bytes=0))
    big = [t for t in plan.tables if t.image_bytes > 700_000]
    assert big and all(t.memory == "ddr" for t in big)
    assert plan.policy == "ddr_spill"


def test_a_table_that_fits_no_channel_is_an_error_naming_it():
    cfg = MemoryConfig(hbm_channel_bytes=100_000, ddr_banks=1, ddr_bank_bytes=200_000, uram_bytes=0, bram_bytes=0)
    with pytest.raises(ValueError, match=r"indices\[5\].*358,400 bytes.*fits no memory channel.*200,000 bytes "
                                         r"in DDR\[0\].*quantize_rows"):
        make_plan(group_graph(SHAPES), cfg)


def test_channel_loads_are_balanced_within_one_table():
    pooling = by_feature([1, 3, 20, 2, 1, 8, 5, 1, 2, 30, 4, 7])
    cfg = MemoryConfig(hbm_channels=4, ddr_banks=0, uram_bytes=0, bram_bytes=0, pooling=pooling)
    plan = make_plan(group_graph(SHAPES), cfg)
    loads = plan.channel_load()
    per_channel = [loads.get(("hbm", c), 0.0) for c in range(4)]
    biggest = max(t.load for t in plan.tables)
    assert max(per_channel) <= sum(per_channel) / 4 + biggest          # the LPT guarantee
    assert all(x > 0 for x in per_channel)
    # bytes per query = pooling x padded row bytes
    t9 = plan.tables[9]
    assert t9.pooling == 30 and t9.load == 30 * 2 * BEAT_BYTES


def test_hot_small_tables_go_on_chip_first():
    pooling = [1] * len(SHAPES)
    pooling[5] = 50                    # 700 rows, but read 50x per query
    budget = 700 * 8 * 64 + 5 * 64 + 40 * 64
    plan = make_plan(group_graph(SHAPES), MemoryConfig(uram_bytes=budget, bram_bytes=0, pooling=by_feature(pooling)))
    on = {t.id for t in plan.tables if t.memory == "onchip"}
    assert on == {5, 4, 1}             # densest (pooling / rows) first while they fit
    assert make_plan(group_graph(SHAPES), MemoryConfig(onchip_units=0)).onchip_bytes() == 0


def test_pooling_is_never_guessed_from_the_model_name():
    """A graph named like a zoo model but without recorded statistics is placed with 1 id per bag."""
    spec = zoo.spec("dlrm-v2")
    g = group_graph([(50, f.dim) for f in spec.features], name="dlrm-v2")
    plan = make_plan(g, MemoryConfig())
    assert plan.pooling_source == "assumed 1 id per bag (no statistics given)"
    assert {t.pooling for t in plan.tables} == {1.0}
    assert {f.pooling for f in spec.features} != {1.0}            # the zoo spec would have said otherwise


def test_pooling_comes_from_the_statistics_recorded_in_the_graph():
    g = group_graph(SHAPES[:4])
    # bags of 0..6 ids: feature 0 holds 3 ids per bag on average, feature 1 is one-hot, feature 2 sees only
    # empty bags (no estimate: assumed 1), feature 3 two batches averaging (2*2 + 1*6) / 8
    batches = [{"indices[0]": [0, 3, 6], "indices[1]": [0, 1, 2, 3], "indices[2]": [0, 0, 0],
                "indices[3]": [0, 2, 4]},
               {"indices[0]": [0, 3], "indices[1]": [0, 1], "indices[2]": [0, 0],
                "indices[3]": [0, 1, 2, 3, 4, 5, 6]}]
    flat = []
    for b in batches:
        by = {}
        for k in range(4):
            off = np.asarray(b[f"indices[{k}]"], np.int64)
            by[f"offsets[{k}]"] = off
            by[f"indices[{k}]"] = np.zeros(int(off[-1]), np.int64)
        flat.append([by[n.attr("name")] for n in g.input_nodes])
    gs = record_pooling(g, flat)
    plan = make_plan(gs, MemoryConfig())
    assert [t.pooling for t in plan.tables] == [3.0, 1.0, 1.0, 1.25]
    assert plan.pooling_source == ("graph statistics (ids per bag measured on the example or calibration inputs): "
                                   "3 tables; assumed 1 id per bag (no statistics given): 1 tables")
    # the option wins per feature; a number wins for every table
    opt = make_plan(gs, MemoryConfig(pooling={"indices[1]": 7.5}))
    assert [t.pooling for t in opt.tables] == [3.0, 7.5, 1.0, 1.25]
    assert make_plan(gs, MemoryConfig(pooling=2)).pooling_source == "option"
    assert {t.pooling for t in make_plan(gs, MemoryConfig(pooling=2)).tables} == {2.0}
    with pytest.raises(ValueError, match="unknown features"):
        make_plan(gs, MemoryConfig(pooling={"nope": 2}))


def test_int8_rows_halve_the_beats_of_a_64_wide_table():
    shapes = [(100, 64), (100, 56)]
    p32 = make_plan(group_graph(shapes), MemoryConfig())
    p8 = make_plan(group_graph(shapes), MemoryConfig(row_format="int8"))
    assert [t.beats for t in p32.tables] == [4, 4]
    assert [t.beats for t in p8.tables] == [2, 1]          # 64+8 bytes -> 2 beats, 56+8 -> 1
    assert {t.fmt for t in p8.tables} == {"int8"}


def test_tables_quantized_in_the_graph_keep_their_format():
    g = run_pipeline(group_graph([(100, 64), (50, 16)]), ["quantize_embeddings"],
                     options={"quantize_embeddings": {"precision": {"indices[0]": "int4", "*": "fp16"}}})
    plan = make_plan(g, MemoryConfig(row_format="int8"))
    assert [(t.fmt, t.rows, t.dim, t.beats) for t in plan.tables] == [("int4", 100, 64, 1), ("fp16", 50, 16, 1)]


def test_unit_io_goes_to_otherwise_idle_hbm_channels():
    plan = make_plan(group_graph(SHAPES), MemoryConfig(uram_bytes=0, bram_bytes=0))
    table_channels = {(t.memory, t.channel) for t in plan.tables}
    ios = [(u.io_memory, u.io_channel) for u in plan.units]
    assert len(set(ios)) == len(ios)
    assert not set(ios) & table_channels


def test_plan_is_recorded_on_the_graph_and_survives_ir_json():
    g = group_graph(SHAPES)
    placed = place(g, MemoryConfig(hbm_channels=4, uram_bytes=30_000))
    node = placed.nodes_of(Op.EMBEDDING_BAG_GROUP)[0]
    plan = plan_of(placed)
    assert node.attr("placement") == tuple((t.memory, t.channel, t.unit) for t in plan.tables)
    back = graph_from_json(json.loads(json.dumps(graph_to_json(placed))), dict(placed.params))
    assert plan_of(back) == plan
    assert back.nodes_of(Op.EMBEDDING_BAG_GROUP)[0].attr("placement") == node.attr("placement")
    with pytest.raises(KeyError, match="no table placement"):
        plan_of(g)


def test_placement_does_not_change_what_the_graph_computes():
    g = group_graph(SHAPES)
    placed = verify(get_pass("place_tables").fn(g))
    flat = inputs_for(g, SHAPES)
    np.testing.assert_array_equal(run_graph(placed, flat)[0], run_graph(g, flat)[0])


def test_memory_options_reach_the_pass():
    g = group_graph(SHAPES)
    cfg = {"hbm_channels": 3, "ddr_banks": 0, "uram_bytes": 0, "bram_bytes": 0}
    plan = plan_of(run_pipeline(g, [("place_tables", cfg)]))
    assert len(plan.channels) == 3 and {t.memory for t in plan.tables} == {"hbm"}
    plan2 = plan_of(run_pipeline(g, ["place_tables"], options={"place_tables": {"hbm_channels": 2, "ddr_banks": 0}}))
    assert len(plan2.channels) == 2
    with pytest.raises(ValueError, match="row_format"):
        MemoryConfig(row_format="int3")
