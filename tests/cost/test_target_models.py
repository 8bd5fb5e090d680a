"""The performance models of the xla, hls and triton targets (xrec.cost.targets), worked against their sources:
XLA's cost analysis, the hls cycle report, the triton program and the H200 measurements."""
import math
from dataclasses import replace

import pytest

from xrec.api import lower
from xrec.cost import CostError, PerfParams, graph_work, load_device, perf_model_for, predict_target
from xrec.cost.catalogue import parse_device
from xrec.ir import Op
from xrec.ir.graph import make_attrs, mlp_layers
from xrec.targets import get_target

from conftest import imported_zoo
from cost.graphs import dot_graph, linear_graph

XLA_OK, XLA_WHY = get_target("xla").available()
HLS_OK, HLS_WHY = get_target("hls").available()
needs_jax = pytest.mark.skipif(not XLA_OK, reason=XLA_WHY or "xla target unavailable")
needs_hls = pytest.mark.skipif(not HLS_OK, reason=HLS_WHY or "hls target unavailable")


def fig(v):
    return {"value": v, "source": "test"}


def toy(kind="cpu", targets=("cpu", "xla"), peak=1e12, bw=1e11, pcie=None, overhead=None):
    """A device of round figures (no cache tier)."""
    return parse_device({"name": "toy", "description": "toy", "kind": kind, "targets": list(targets),
                         "peak_flops": {"f32": fig(peak)},
                         "memory": {"main": {"capacity_bytes": fig(1e10), "bandwidth_Bps": fig(bw)}},
                         "links": {"pcie": fig(pcie)} if pcie else {},
                         "power": {"idle_W": fig(10), "max_W": fig(100)}, "price_per_hour": fig(1.0),
                         "call_overhead_s": {t: fig(overhead) for t in targets} if overhead is not None else {}},
                        "toy.json")


def with_input_kinds(g):
    """The frontend marks every input's role (kind); the hand-built test graphs are dense inputs."""
    nodes = tuple(replace(n, attrs=make_attrs({**dict(n.attrs), "kind": "dense"})) if n.op is Op.INPUT else n
                  for n in g.nodes)
    return replace(g, nodes=nodes)


def zoo_ir(name, target):
    _, g = imported_zoo(name)
    g, *_ = lower(g, target=target)
    return g


def test_predict_target_uses_the_model_each_target_registers():
    from xrec.cost.targets import hls, triton, xla
    assert perf_model_for("xla") is xla.predict_xla
    assert perf_model_for("hls") is hls.predict_hls
    assert perf_model_for("triton") is triton.predict_triton


# ---------------------------------------------------------------------------------------------------- xla
@needs_jax
@pytest.mark.parametrize("bias", [True, False])
def test_xla_flops_equal_graph_work_for_a_linear_layer(bias):
    from xrec.cost.targets.xla import cost_analysis
    g = with_input_kinds(linear_graph(256, 128, bias=bias))
    for pad in (False, True):        # 256 and 128 are already whole lanes: padding adds nothing here
        ca = cost_analysis(g, 64, options={"pad": pad})
        assert ca["flops"] == graph_work(g, 64).total.total_flops == 2 * 64 * 256 * 128 + (64 * 128 if bias else 0)


@needs_jax
def test_xla_computes_the_whole_gram_matrix_of_a_dot_interaction():
    from xrec.cost.targets.xla import cost_analysis
    f, d, pairs = 4, 16, [(0, 1), (0, 2), (1, 2), (2, 3)]
    g = with_input_kinds(dot_graph(f, d, pairs))
    ca, gw = cost_analysis(g, 64, options={"pad": False}), graph_work(g, 64)
    assert gw.total.total_flops == 2 * 64 * len(pairs) * d
    assert ca["flops"] == 2 * 64 * f * f * d == gw.total.total_flops * f * f / len(pairs)


@needs_jax
def test_xla_flops_on_dlrm_small_are_graph_works_dense_plus_gram_matrix_plus_budgeted_gathers():
    """Where they agree (the MLPs) and where XLA does more: the F x F Gram matrix, every slot of the id budget."""
    from xrec.cost.targets.xla import cost_analysis
    from xrec.targets.xla.bucketing import choose_budgets
    g = zoo_ir("dlrm-small", "xla")
    b = 64
    ca, gw = cost_analysis(g, b, options={"pad": False}), graph_work(g, b)
    inter = g.nodes_of(Op.DOT_INTERACTION)[0]
    _, nf, dim = g.type_of(inter.inputs[0]).shape
    gram = 2 * b * nf * nf * dim
    budgets = choose_budgets(g, [j.attr("feature") for j in g.nodes_of(Op.JAGGED)], None, 2.0)
    slots = b * sum(x.max_ids for x in budgets.values()) * dim
    rest = ca["flops"] - gw.stage("dense").total_flops - gram
    assert gw.stage("embedding").total_flops < rest <= 2 * slots           # gathers: budget, not mean pooling
    assert ca["transcendentals"] == b                                      # the output sigmoid
    padded = cost_analysis(g, b, options={"pad": True})
    assert padded["flops"] > ca["flops"]                                   # 13 -> 128 lanes, 415 -> 512, ...


@needs_jax
def test_xla_bytes_count_the_rows_gathered_not_whole_tables():
    """XLA's raw bytes grow by exactly the tables' growth (it counts fused gathers' tables in full); the model's
    bytes do not depend on the table size: batch x id budget x row bytes replace them."""
    from xrec import zoo
    from xrec.cost.targets.xla import cost_analysis
    from xrec.frontend import import_model
    out = []
    for rows in (300, 3000):
        m = zoo.build("dlrm-small", max_rows=rows).eval()
        g, *_ = lower(import_model(m, zoo.example_inputs(m), name="dlrm-small"), target="xla")
        out.append(cost_analysis(g, 64))
    small, big = out
    assert big["table_bytes"] > small["table_bytes"] > 0
    assert big["bytes_accessed_raw"] - small["bytes_accessed_raw"] == big["table_bytes"] - small["table_bytes"]
    assert big["bytes_accessed"] == small["bytes_accessed"] == \
        small["bytes_accessed_raw"] - small["table_bytes"] + small["gathered_bytes"]
    assert big["flops"] == small["flops"]


@needs_jax
def test_xla_time_is_the_analysis_on_the_devices_roofline_split_by_graph_work():
    from xrec.cost.targets.xla import cost_analysis
    g = with_input_kinds(linear_graph(512, 512, bias=False))
    dev = toy(peak=1e12, bw=1e11)
    p = predict_target(g, dev, "xla", 64, PerfParams(call_overhead_s=2e-6))
    ca = cost_analysis(g, 64, dev)
    dense = p.stage("dense")
    assert dense.compute_s == pytest.approx(ca["flops"] / 1e12)
    assert dense.memory_s["main"] == pytest.approx(ca["bytes_accessed"] / 1e11)   # all of it: a dense-only graph
    assert dense.time_s == pytest.approx(max(ca["flops"] / 1e12, ca["bytes_accessed"] / 1e11))
    assert p.stage("other").overhead_s == pytest.approx(2e-6)                      # one run of the executable
    assert p.total_s == pytest.approx(dense.time_s + 2e-6) and p.transfer_s == 0   # a CPU has no host link
    half = predict_target(g, dev, "xla", 64, PerfParams(efficiency={"dense": 0.5}, call_overhead_s=0))
    assert half.total_s == pytest.approx(2 * dense.time_s)


@needs_jax
def test_xla_a_fixed_executable_batch_runs_ceil_b_over_n_times_and_pays_the_link_each_run():
    from xrec.cost.targets.xla import cost_analysis
    g = zoo_ir("dlrm-small", "xla")
    dev = toy(kind="gpu", pcie=1e10, overhead=1e-5)
    one = cost_analysis(g, 64, dev, {"batch": 64})
    p = predict_target(g, dev, "xla", 200, options={"batch": 64})
    assert sum(s.compute_s for s in p.stages) * 1e12 == pytest.approx(4 * (one["flops"] + 4 * one["transcendentals"]))
    assert p.stage("other").overhead_s == pytest.approx(4 * 1e-5)
    assert p.transfer_s == pytest.approx(4 * (one["h2d_bytes"] + one["d2h_bytes"]) / 1e10)
    assert one["h2d_bytes"] > 64 * 13 * 4                               # dense features + bucketed ids + lengths
    small, big = (predict_target(g, dev, "xla", b).total_s for b in (64, 512))
    assert big > small


@needs_jax
def test_xla_on_a_tpu_without_libtpu_uses_the_cpu_clients_analysis_and_says_so():
    from xrec.targets.xla import tpu
    if tpu.available()[0]:
        pytest.skip("libtpu is installed: the TPU's own analysis is used")
    g = zoo_ir("dlrm-small", "xla")
    p = predict_target(g, load_device("tpu-v5e"), "xla", 64, use_profile=False)
    text = " ".join(p.notes)
    assert "libtpu is not installed" in text and "CPU client" in text
    assert "6 bf16 passes" in text                     # f32 dots at precision HIGHEST on the MXU
    assert p.total_s > 0


@needs_jax
def test_xla_calibration_on_this_host_solves_fixed_and_efficiency_from_two_measured_batches():
    """measured = fixed + roofline / efficiency at the two fit batches; the others are predicted and reported.
    (Their error is not asserted: this machine is shared, its load swings 10x within a minute; the report
    gives the numbers of a quiet run.)"""
    from xrec.cost.targets.xla import calibrate
    g = zoo_ir("dlrm-small", "xla")
    host = load_device("host")
    r = calibrate(host, g, batches=(8, 32, 128, 512), fit=(8, 128), reps=3)
    e, fixed = r["params"].default_efficiency, r["params"].fixed_overhead_s
    assert 0 < e <= 1 and fixed >= 0
    fitted = {c["batch"]: c for c in r["checks"] if not c["held_out"]}
    assert set(fitted) == {8, 128}
    if e < 1 and fixed > 0:                                  # neither clamped: the two fit points are exact
        assert all(abs(c["error"]) < 1e-9 for c in fitted.values())
    held = [c for c in r["checks"] if c["held_out"]]
    assert [c["batch"] for c in held] == [32, 512]
    assert all(math.isfinite(c["error"]) and c["measured_s"] > 0 for c in held)
    preds = [c["predicted_s"] for c in sorted(r["checks"], key=lambda c: c["batch"])]
    assert preds == sorted(preds) and preds[0] >= fixed
    with pytest.raises(CostError, match="this machine"):
        calibrate(load_device("tpu-v5e"), g)


# ---------------------------------------------------------------------------------------------------- hls
def test_hls_card_options_come_from_the_catalogue():
    from xrec.cost.targets.hls import card_options
    u280, u55c = card_options(load_device("alveo-u280")), card_options(load_device("alveo-u55c"))
    assert u280["hbm_channel_bytes"] == 256 * 2**20 and u280["ddr_banks"] == 2 and u280["ddr_bank_bytes"] == 16 * 2**30
    assert u280["hbm_gbps"] == pytest.approx(460 / 32) and u280["ddr_gbps"] == pytest.approx(19.0)
    assert u55c["hbm_channel_bytes"] == 512 * 2**20 and u55c["ddr_banks"] == 0
    assert card_options(load_device("alveo-u280"), {"clock_mhz": 250})["clock_mhz"] == 250


@needs_hls
def test_hls_is_the_cycle_report_on_the_card_plus_the_cpu_model_on_the_host_plus_pcie():
    from xrec.artifact import open_artifact
    from xrec.cost.targets.hls import compiled_for, gather_report
    g = zoo_ir("dlrm-small", "hls")
    card = load_device("alveo-u280")
    host = toy(targets=("cpu", "reference"), overhead=1e-6)
    hp = PerfParams(call_overhead_s=1e-6)
    b = 128
    p = predict_target(g, card, "hls", b, host_device=host, host_params=hp)
    rep = gather_report(compiled_for(g, card), b)
    f_hz = rep["summary"]["clock_mhz"] * 1e6
    emb = p.stage("embedding")
    assert max(emb.compute_s, *emb.memory_s.values()) * f_hz == pytest.approx(rep["summary"]["kernel_cycles_per_batch"])
    host_g = open_artifact(rep["path"] / "lib" / "host.xrec", verify_checksums=False).graph
    assert not host_g.nodes_of(Op.EMBEDDING_BAG, Op.EMBEDDING_BAG_GROUP)        # the card does the gathers
    want = predict_target(host_g, host, "cpu", b, hp)
    for s in ("dense", "interaction", "other"):
        assert p.stage(s).time_s == pytest.approx(want.stage(s).time_s)
    pooled = b * 26 * 64 * 4                                                   # 26 tables of dim 64, fp32
    assert rep["d2h_bytes"] == pooled and rep["h2d_bytes"] > b * 26 * 4        # at least one int32 id per bag
    assert p.transfer_s == pytest.approx((rep["h2d_bytes"] + rep["d2h_bytes"]) / 15.75e9)
    assert p.total_s == pytest.approx(sum(s.time_s for s in p.stages) + p.transfer_s)
    assert any("MODELLED" in n for n in p.notes)


@needs_hls
def test_hls_gather_cycles_and_total_grow_with_batch():
    g = zoo_ir("dlrm-small", "hls")
    card = load_device("alveo-u280")
    host = toy(targets=("cpu", "reference"))
    ps = [predict_target(g, card, "hls", b, host_device=host, host_params=PerfParams()) for b in (16, 256, 1024)]
    for a, c in zip(ps, ps[1:]):
        assert c.stage("embedding").time_s > a.stage("embedding").time_s
        assert c.transfer_s > a.transfer_s and c.total_s > a.total_s


def test_hls_refuses_a_device_that_is_not_an_fpga():
    from xrec.cost.targets.hls import predict_hls
    with pytest.raises(CostError, match="does not run on h200"):
        predict_target(zoo_ir("dlrm-small", "reference"), load_device("h200"), "hls", 8)
    with pytest.raises(CostError, match="FPGA"):
        predict_hls(None, toy(targets=("hls",)), "hls", 8)


# ---------------------------------------------------------------------------------------------------- triton
def test_triton_counts_the_kernels_its_program_launches_per_stage():
    from xrec.cost.targets.triton import kernel_launches
    g = zoo_ir("dlrm-small", "triton")
    k = kernel_launches(g)
    layers = sum(len(mlp_layers(n)) for n in g.nodes_of(Op.MLP))
    assert k == {"dense": layers, "embedding": len(g.nodes_of(Op.EMBEDDING_BAG_GROUP)), "interaction": 1,
                 "other": 0, "torch": 0}                      # the cats are written in place: no kernel
    calls = graph_work(g, 64).total.calls
    assert calls == sum(k.values()) + len(g.nodes_of(Op.CAT))  # graph_work counts a call per cat


def test_triton_time_is_the_roofline_plus_a_launch_per_kernel():
    from xrec.cost.targets.triton import kernel_launches
    g = zoo_ir("dlrm-small", "triton")
    h200 = load_device("h200")
    gw = graph_work(g, 512, cache_bytes=h200.cache_bytes)
    k = kernel_launches(g)
    p = predict_target(g, h200, "triton", 512, PerfParams(call_overhead_s=5e-6), options={"precision": "ieee"})
    for s in ("embedding", "dense", "interaction"):
        st, w = p.stage(s), gw.stage(s)
        assert st.overhead_s == pytest.approx(k[s] * 5e-6)
        assert st.compute_s == pytest.approx(w.total_flops / 67e12)                       # ieee: the f32 peak
        assert st.memory_s["main"] == pytest.approx(w.total_bytes / 4.8e12)                # L2 hits at HBM speed
    assert p.transfer_s == pytest.approx(sum(gw.total.transfers.values()) / 64e9)
    tf = predict_target(g, h200, "triton", 512, PerfParams(call_overhead_s=5e-6))           # tf32x3: 3 x at tf32
    assert tf.stage("dense").compute_s == pytest.approx(3 * gw.stage("dense").total_flops / 494.5e12)
    on_gpu = predict_target(g, h200, "triton", 512, PerfParams(), inputs_on_device=True)
    assert on_gpu.transfer_s == 0


def test_triton_embedding_fit_reproduces_the_h200_measurements():
    from xrec.cost.targets.triton import embedding_fit, measured
    h200 = load_device("h200")
    data = measured(h200)
    assert data is not None and data["device"] == "NVIDIA H200"
    for ids in ("uniform", "zipf"):
        fit = embedding_fit(h200, data, ids=ids)
        assert 0 < fit["efficiency"] < 0.5 and 5e-6 < fit["launch_floor_s"] < 50e-6
        big = [pt for pt in fit["points"] if pt["batch"] >= 2048]
        assert big and all(abs(pt["error"]) < 0.20 for pt in big)        # the line holds where bytes dominate
    assert measured(load_device("h100-sxm")) is None                      # nothing measured there


def test_triton_calibrated_on_h200_predicts_the_held_out_whole_model_batches_within_30_percent():
    """Fixed overhead from dlrm-small at batch 64; 512 / 2048 / 8192 are predicted, then compared."""
    from xrec.cost.targets.triton import calibrate
    g = zoo_ir("dlrm-small", "triton")           # tables capped at 300 rows: every row read is timed at HBM
    r = calibrate(load_device("h200"), g)
    held = [c for c in r["checks"] if c["held_out"]]
    assert [c["batch"] for c in held] == [512, 2048, 8192]
    assert all(abs(c["error"]) < 0.30 for c in held), r["checks"]
    assert r["params"].fixed_overhead_s > 0 and r["params"].call_overhead_s == r["embedding"]["launch_floor_s"]
    preds = [c["predicted_s"] for c in r["checks"]]
    assert preds == sorted(preds)                                        # monotonic in batch


def test_triton_without_params_uses_the_measured_fit_on_h200_and_the_plain_roofline_elsewhere():
    g = zoo_ir("dlrm-small", "triton")
    h200 = predict_target(g, load_device("h200"), "triton", 64, use_profile=False)
    assert h200.params.call_overhead_s and h200.params.efficiency["embedding"] < 1
    assert any("partly calibrated" in n for n in h200.notes)
    h100 = predict_target(g, load_device("h100-sxm"), "triton", 64, use_profile=False)
    assert h100.params.efficiency == {} and not any("calibrated" in n for n in h100.notes)
    assert math.isfinite(h100.total_s) and h100.total_s < h200.total_s
