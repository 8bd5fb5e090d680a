"""The C-simulated gather kernel against the IR interpreter: pooling modes, padding, weights, dims,
placements (on chip, HBM, DDR), row formats, and the files the target generates."""
from __future__ import annotations

import json
import re
import subprocess

import numpy as np
import pytest

import xrec
from xrec.ir import DType, run_graph
from xrec.runtime.validate import InputError
from xrec.targets.hls.placement import plan_of
from xrec.targets import get_target
from xrec.targets.hls import report as hls_report
from xrec.targets.hls.spec import kernel_spec
from xrec.targets.hls.tables import int8_error_bound

from .conftest import FAST, T, bag_graph, make_flat, needs_hls

pytestmark = needs_hls

# eight tables: every pooling mode, padding ids (also negative), weights, int32 ids, an fp16 table,
# dims from 1 to 64, and pooling factors that pick both pooling-loop designs (one lane / partial sums)
TABLES = [
    T(300, 64, "sum"),                      # 0: 76.8 KB > an HBM channel here -> DDR
    T(200, 16, "mean", pad=5),              # 1
    T(100, 10, "max"),                      # 2
    T(50, 1, "sum", psw=True, index=DType.I32),   # 3
    T(120, 33, "sum", pad=-1),              # 4: padding_idx -1 means row 119
    T(80, 17, "mean", pooling=20),          # 5: 2 chunks, long bags -> partial-sum lanes
    T(60, 16, "max", pooling=8),            # 6: 1 chunk -> lanes
    T(40, 8, "sum", dtype=np.float16),      # 7: fp16 table
]
MIXED = {**FAST, "uram_bytes": 20000, "bram_bytes": 0, "onchip_units": 2, "hbm_channels": 2,
         "hbm_channel_bytes": 50000, "ddr_banks": 1, "pooling": {f"indices[{k}]": t.pooling for k, t in enumerate(TABLES)}}


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    g = bag_graph(TABLES, name="mixed")
    cm = xrec.compile(g, target="hls", options=MIXED, out=tmp_path_factory.mktemp("hls") / "mixed.xrec")
    return g, cm


def test_placement_uses_onchip_hbm_and_ddr(mixed):
    g, cm = mixed
    plan = plan_of(cm.graph)
    where = {t.id: t.memory for t in plan.tables}
    assert where[0] == "ddr"                       # bigger than one HBM channel
    assert {where[5], where[6]} == {"onchip"}      # the hottest bytes per stored byte
    assert set(where.values()) == {"onchip", "hbm", "ddr"}
    assert cm.manifest["target_info"]["placement"]["tables"][0]["memory"] == "ddr"


@pytest.mark.parametrize("batch,seed", [(1, 0), (7, 1), (37, 2)])
def test_gather_matches_interpreter(mixed, batch, seed):
    g, cm = mixed
    flat = make_flat(g, TABLES, batch, seed=seed)
    got = cm.run_flat(flat)[0]
    want = run_graph(g, flat)[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    # one accumulator per chunk (dim 64 = 4 chunks >= fadd latency): PyTorch's summation order, bit for bit
    np.testing.assert_array_equal(got[:, :64], want[:, :64])


def test_all_bags_empty_give_zeros(mixed):
    g, cm = mixed
    flat = make_flat(g, TABLES, 5, seed=3, empty_prob=1.0)
    got = cm.run_flat(flat)[0]
    np.testing.assert_array_equal(got, np.zeros_like(got))


def test_only_padding_ids_pool_to_zero_and_mean_ignores_them(mixed):
    g, cm = mixed
    flat = make_flat(g, TABLES, 4, seed=4, empty_prob=0.0)
    names = [n.attr("name") for n in g.input_nodes]
    idx = flat[names.index("indices[1]")]
    off = flat[names.index("offsets[1]")]
    idx[off[0]:off[1]] = 5                                  # bag 0 of table 1: padding only
    got = cm.run_flat(flat)[0]
    want = run_graph(g, flat)[0]
    np.testing.assert_array_equal(got[0, 64:80], np.zeros(16, np.float32))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_out_of_range_id_is_an_input_error_naming_the_feature(mixed):
    g, cm = mixed
    flat = make_flat(g, TABLES, 3, seed=5)
    names = [n.attr("name") for n in g.input_nodes]
    flat[names.index("indices[2]")][0] = 100                # table 2 has 100 rows
    want = "feature 'indices[2]': index 100 at position 0 is out of range for its table of 100 rows"
    with pytest.raises(InputError) as api:                  # the API's validator
        cm.run_flat(flat)
    cm.validate = False                                     # past the API's validator, into the runner
    try:
        with pytest.raises(InputError) as runner:
            cm.run_flat(flat)
    finally:
        cm.validate = True
    assert str(api.value) == str(runner.value) == want     # the same words (xrec.runtime.validate's) both ways


@pytest.mark.parametrize("case", ["start", "end", "decrease"])
def test_bad_offsets_past_the_validator_are_the_validators_input_error(mixed, case):
    """The runner checks offsets itself (validate=False): the kernel never sees them, the words are validate's."""
    g, cm = mixed
    flat = make_flat(g, TABLES, 4, seed=6, empty_prob=0.0)
    names = [n.attr("name") for n in g.input_nodes]
    off = flat[names.index("offsets[1]")]
    if case == "start":
        off[0] = 1
    elif case == "end":
        off[-1] -= 1
    else:
        off[1], off[2] = off[2] + 1, off[1]
    with pytest.raises(InputError) as api:
        cm.run_flat(flat)
    cm.validate = False
    try:
        with pytest.raises(InputError) as runner:
            cm.run_flat(flat)
    finally:
        cm.validate = True
    assert str(runner.value) == str(api.value) and str(runner.value).startswith("feature 'indices[1]': offsets")


def test_csim_aborts_on_out_of_range_id(mixed, tmp_path):
    """The kernel's own C-sim bounds check (what would read garbage on a card) fails loudly."""
    g, cm = mixed
    ks = kernel_spec(cm.graph, plan_of(cm.graph))
    (tmp_path / "batch.txt").write_text("1\n")
    for u in ks.units:
        ids = np.full(u.nfeat, 10_000, np.int32)
        np.arange(u.nfeat + 1, dtype=np.int32).tofile(tmp_path / f"{u.name}_bag_off.bin")
        ids.tofile(tmp_path / f"{u.name}_ids.bin")
        if u.has_psw:
            np.ones(u.nfeat, np.float32).tofile(tmp_path / f"{u.name}_psw.bin")
    r = subprocess.run([str(cm.path / "lib" / "csim"), str(cm.path), str(tmp_path)], capture_output=True, text=True)
    assert r.returncode != 0
    assert "out of range" in r.stderr and "10000" in r.stderr


def test_kernel_source_has_the_hls_pragmas(mixed):
    g, cm = mixed
    src = (cm.path / "src" / "xrec_gather.cpp").read_text()
    hdr = (cm.path / "src" / "xrec_gather.h").read_text()
    plan = plan_of(cm.graph)
    for t in plan.tables:
        if t.memory == "onchip":
            assert f"BIND_STORAGE variable=xrec_onchip_{t.id} " in src
        else:   # one AXI master (bundle) per memory channel, shared by the tables on it
            assert re.search(rf"INTERFACE m_axi port=tab_{t.id} offset=slave bundle={t.memory}{t.channel} ", src)
            assert f"INTERFACE s_axilite port=tab_{t.id} bundle=control" in src
    assert "INTERFACE s_axilite port=return bundle=control" in src
    assert "INTERFACE s_axilite port=batch bundle=control" in src
    for u in plan.units:
        assert re.search(rf"INTERFACE m_axi port=ids_{u.name} offset=slave bundle=io_{u.name} ", src)
        assert re.search(rf"INTERFACE m_axi port=out_{u.name} offset=slave bundle=io_{u.name} .*write_burst", src)
    assert src.count("#pragma HLS DATAFLOW") == len(plan.units) + 1      # each unit and the top region
    for u in plan.units:          # offsets and ids are each read in one pipelined loop: one burst
        assert re.search(rf"U{u.id}_OFFSETS: for .*\n\s*#pragma HLS PIPELINE II=1", src)
        assert re.search(rf"U{u.id}_IDS: for .*\n\s*#pragma HLS PIPELINE II=1", src)
    assert "#pragma HLS PIPELINE II=1" in hdr and "#pragma HLS PIPELINE II=1" in src
    assert re.search(r"#pragma HLS PIPELINE II=4\n\s*// II=4: a row is one burst of 4 512-bit beats", hdr)
    assert "ARRAY_PARTITION variable=acc complete" in hdr
    assert re.search(r"#pragma HLS STREAM variable=id_s depth=\d+", src)
    assert "DEPENDENCE variable=acc type=inter direction=RAW dependent=true" in hdr
    assert "typedef ap_uint<512> xrec_word_t;" in hdr
    assert "memcpy((void*)row.w, (const void*)(tab + (long long)tok.id * 4), 4 * sizeof(xrec_word_t));" in hdr


def test_kernel_takes_row_format_and_pooling_codes_from_the_generated_formats_header(mixed):
    """The kernel switches on the codes of xrec/ir/formats.py, through src/xrec_formats.h, never its own."""
    from xrec.ir import formats
    g, cm = mixed
    src = cm.path / "src"
    assert (src / "xrec_formats.h").read_text() == formats.c_header()
    hdr, cpp = (src / "xrec_gather.h").read_text(), (src / "xrec_gather.cpp").read_text()
    assert '#include "xrec_formats.h"' in hdr
    assert not re.search(r"#define XREC_(ROW_|POOL_)?(FP32|FP16|BF16|INT8|INT4|INT2|SUM|MEAN|MAX)\b", hdr + cpp)
    # each table's dequant and pool stages are instantiated with its format's and mode's macro
    for t in TABLES:
        fmt = "fp16" if t.dtype == np.float16 else "fp32"
        assert re.search(rf"xrec_dequant_bag<{formats.by_name(fmt).macro}, 0, {-(-t.dim // 16)}, ", cpp)
        assert re.search(rf"xrec_pool_bag_c{-(-t.dim // 16)}_l\d+<XREC_POOL_{t.mode.upper()}, ", cpp)


def test_vpp_config_maps_every_memory_argument_to_its_bank(mixed):
    g, cm = mixed
    cfg = (cm.path / "src" / "xrec_gather.cfg").read_text()
    sp = dict(re.findall(r"^sp=xrec_gather_1\.(\w+):(\S+)$", cfg, re.M))
    plan = plan_of(cm.graph)
    assert "[connectivity]" in cfg and re.search(r"^nk=xrec_gather:1:xrec_gather_1$", cfg, re.M)
    for t in plan.tables:
        if t.memory != "onchip":
            assert sp.pop(f"tab_{t.id}") == f"{t.memory.upper()}[{t.channel}]"
    for u in plan.units:
        for a in ("bag_off", "ids", "out"):
            assert sp.pop(f"{a}_{u.name}") == f"{u.io_memory.upper()}[{u.io_channel}]"
        if any(TABLES[t].psw for t in u.tables):
            assert sp.pop(f"psw_{u.name}") == f"{u.io_memory.upper()}[{u.io_channel}]"
    assert sp.pop("onchip_src") == "DDR[0]"
    assert sp == {}


def test_report_trip_counts_come_from_the_csim_run(mixed):
    g, cm = mixed
    batch = 11
    flat = make_flat(g, TABLES, batch, seed=6)
    run = get_target("hls").load(cm.artifact, cm.options)
    run(flat)
    counters = run.gatherer.last_counters
    names = [n.attr("name") for n in g.input_nodes]
    ks = kernel_spec(cm.graph, plan_of(cm.graph))
    for t in ks.tables:
        ids = flat[names.index(f"indices[{t.id}]")].astype(np.int64)
        off = flat[names.index(f"offsets[{t.id}]")].astype(np.int64)
        kept = ids != t.pad
        per_bag = np.add.reduceat(kept.astype(np.int64), off[:-1]) if len(ids) else np.zeros(batch, np.int64)
        per_bag = np.where(np.diff(off) > 0, per_bag, 0)
        c = counters["tables"][t.id]
        assert c["ids_read"] == len(ids)
        assert c["ids_padding"] == int((~kept).sum())
        assert c["rows"] == int(kept.sum())
        assert c["beats"] == int(kept.sum()) * t.plan.beats
        assert c["bags"] == batch
        assert c["empty_bags"] == int((per_bag == 0).sum())
    for u in ks.units:
        cu = counters["units"][u.plan.id]
        assert cu["out_beats"] == batch * u.outch
        assert cu["bags"] == batch * u.nfeat
        assert cu["offsets_read"] == batch * u.nfeat + 1
        assert cu["chunks_pooled"] == sum(counters["tables"][t.id]["rows"] * t.plan.chunks for t in u.tables)

    rep = hls_report.model(ks, counters, {"clock_mhz": 250.0})
    a = rep["assumptions"]
    for u, ru in zip(ks.units, rep["units"]):
        L = {"hbm": a["axi_read_latency_hbm"], "ddr": a["axi_read_latency_ddr"]}.get(u.plan.memory)
        fetch = sum(counters["tables"][t.id]["rows"] * (t.plan.beats if t.onchip else max(t.plan.beats,
                    L / a["outstanding_reads"])) + counters["tables"][t.id]["empty_bags"] * t.plan.beats
                    for t in u.tables)
        assert ru["stage_cycles"]["fetch"] == pytest.approx(fetch)
        assert ru["cycles_per_batch"] == pytest.approx(max(ru["stage_cycles"].values()) + ru["fill_cycles"])
    s = rep["summary"]
    assert s["kernel_cycles_per_batch"] == pytest.approx(max([u["cycles_per_batch"] for u in rep["units"]] +
                                                             [c["bound_cycles"] for c in rep["channels"]]))
    assert s["queries_per_s"] == pytest.approx(batch / (s["kernel_cycles_per_batch"] / 250e6))


def test_report_is_written_with_its_assumptions_and_labelled_modelled(mixed):
    g, cm = mixed
    rep = json.loads((cm.path / "report.json").read_text())
    md = (cm.path / "report.md").read_text()
    assert rep["summary"]["batch"] == MIXED["report_batch"]
    assert rep["self_check"]["max_abs_err_vs_reference"] < 1e-5
    for k in ("clock_mhz", "axi_read_latency_hbm", "outstanding_reads", "fadd_latency", "beat_bytes"):
        assert k in rep["assumptions"] and f"| {k} |" in md
    assert "MODELLED" in md and "## Assumptions" in md and "## Channels" in md
    nums = hls_report.modelled_numbers(cm)
    assert nums["label"].startswith("MODELLED")
    assert nums["cycles_per_query"] > 0 and nums["queries_per_s"] > 0
    assert cm.manifest["target_info"]["report"]["cycles_per_query"] == nums["cycles_per_query"]


def test_csim_binary_is_cached_by_source_hash(mixed, tmp_path):
    g, cm = mixed
    again = xrec.compile(g, target="hls", options=MIXED, out=tmp_path / "again.xrec")
    assert again.manifest["target_info"]["csim"]["cached"] is True
    assert again.manifest["target_info"]["csim"]["cache_key"] == cm.manifest["target_info"]["csim"]["cache_key"]


LONE = [T(70, 12, "sum"), T(40, 16, "max", pad=0), T(30, 20, "mean", dtype=np.float16), T(25, 5, "sum", psw=True)]


def test_lone_embedding_bags_and_an_fp16_table(tmp_path):
    g = bag_graph(LONE, name="lone", group=False)
    cm = xrec.compile(g, target="hls", options=FAST, out=tmp_path / "lone.xrec")
    for batch, seed in ((1, 0), (9, 1)):
        flat = make_flat(g, LONE, batch, seed=seed)
        got, want = cm.run_flat(flat), run_graph(g, flat)
        assert [o.dtype for o in got] == [np.float32, np.float32, np.float16, np.float32]
        for a, b in zip(got, want):
            np.testing.assert_allclose(a.astype(np.float32), np.asarray(b, np.float32),
                                       rtol=1e-3 if a.dtype == np.float16 else 1e-5, atol=1e-6)


ROWS = [T(90, 24, "sum"), T(60, 40, "mean", pad=2), T(50, 7, "sum", psw=True), T(30, 64, "max")]


def test_int8_rows_stay_within_the_rowwise_bound(tmp_path):
    g = bag_graph(ROWS, name="int8rows")
    cm = xrec.compile(g, target="hls", options={**FAST, "quantize_rows": "int8"}, out=tmp_path / "i8.xrec")
    flat = make_flat(g, ROWS, 23, seed=7)
    got = cm.run_flat(flat)[0]
    want = run_graph(g, flat)[0]                        # fp32 tables
    names = [n.attr("name") for n in g.input_nodes]
    col = 0
    for k, t in enumerate(ROWS):
        table = g.params[f"table_{k}"]
        rb = int8_error_bound(table)
        ids = flat[names.index(f"indices[{k}]")].astype(np.int64)
        off = flat[names.index(f"offsets[{k}]")].astype(np.int64)
        w = np.abs(flat[names.index(f"weights[{k}]")]) if t.psw else np.ones(len(ids), np.float32)
        keep = ids != (t.pad if t.pad is not None else -1)
        bound = np.zeros(23)
        for b in range(23):
            sl = slice(off[b], off[b + 1])
            terms = (w[sl] * rb[ids[sl]])[keep[sl]]
            bound[b] = terms.max(initial=0.0) if t.mode == "max" else terms.sum()
            if t.mode == "mean" and keep[sl].sum():
                bound[b] /= keep[sl].sum()
        err = np.abs(got[:, col:col + t.dim].astype(np.float64) - want[:, col:col + t.dim])
        assert np.all(err <= bound[:, None] + 1e-5 * (1 + np.abs(want[:, col:col + t.dim]))), k
        assert err.max() > 0                            # the rows really were quantized
        col += t.dim
    assert cm.manifest["target_info"]["quantization_drift"]["row_formats"] == ["int8"]
    assert cm.manifest["tolerances"]["atol"] >= 4 * cm.manifest["target_info"]["quantization_drift"]["max_abs"]


def test_int8_image_is_fbgemm_byte_prepack():
    torch = pytest.importorskip("torch")
    from xrec.ir.types import TensorType
    from xrec.targets.hls.tables import image
    t = (np.random.default_rng(0).standard_normal((9, 24)) * 3).astype(np.float32)
    img = image(t, TensorType(t.shape, DType.F32), "int8", 24, 1)
    ref = torch.ops.quantized.embedding_bag_byte_prepack(torch.from_numpy(t)).numpy()
    np.testing.assert_array_equal(img[:, :32], ref)
    assert not img[:, 32:].any()


def test_fp16_rows_equal_the_half_rounded_tables(tmp_path):
    g = bag_graph(ROWS, name="fp16rows")
    cm = xrec.compile(g, target="hls", options={**FAST, "quantize_rows": "fp16"}, out=tmp_path / "f16.xrec")
    g16 = g.with_(params={k: v.astype(np.float16).astype(np.float32) for k, v in g.params.items()})
    flat = make_flat(g, ROWS, 13, seed=8)
    np.testing.assert_allclose(cm.run_flat(flat)[0], run_graph(g16, flat)[0], rtol=1e-5, atol=1e-6)


def test_tables_quantized_by_the_compression_pass_keep_their_format(tmp_path):
    """int4, int2, bf16 and int8 rows from xrec's quantize_embeddings (FBGEMM row-wise layouts) are gathered
    as they are: the kernel decodes each format by its code from xrec/ir/formats.py."""
    from xrec.passes import run_pipeline
    precision = {"indices[0]": "int4", "indices[1]": "int2", "indices[2]": "bf16", "indices[3]": "int8"}
    g = run_pipeline(bag_graph(ROWS, name="narrowrows"), ["quantize_embeddings"],
                     options={"quantize_embeddings": {"precision": precision}})
    cm = xrec.compile(g, target="hls", options=FAST, out=tmp_path / "narrow.xrec")
    assert [t.fmt for t in plan_of(cm.graph).tables] == ["int4", "int2", "bf16", "int8"]
    for seed, batch in ((9, 13), (10, 1)):
        flat = make_flat(g, ROWS, batch, seed=seed)
        np.testing.assert_allclose(cm.run_flat(flat)[0], run_graph(g, flat)[0], rtol=1e-5, atol=1e-6)
