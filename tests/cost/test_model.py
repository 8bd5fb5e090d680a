"""The roofline time model on a device of known figures, worked by hand."""
import json

import pytest

from xrec.cost import CostError, PerfParams, graph_work, predict, predict_work
from xrec.cost.catalogue import parse_device

from cost.graphs import bag_graph, dot_graph, linear_graph


def fig(v):
    return {"value": v, "source": "test"}


def device(kind="cpu", gather=None, cache=None, overhead=1e-6, pcie=None):
    mem = {"main": {"capacity_bytes": fig(1e10), "bandwidth_Bps": fig(1e11)}}
    if gather:
        mem["main"]["gather_bandwidth_Bps"] = fig(gather)
    if cache:
        mem["cache"] = {"capacity_bytes": fig(cache[0]), "bandwidth_Bps": fig(cache[1])}
    return parse_device({"name": "toy", "description": "toy", "kind": kind, "targets": ["cpu", "triton"],
                         "peak_flops": {"f32": fig(1e12)}, "memory": mem,
                         "links": {"pcie": fig(pcie)} if pcie else {},
                         "power": {"idle_W": fig(10), "max_W": fig(100)}, "price_per_hour": fig(1.0),
                         "call_overhead_s": {"cpu": fig(overhead)}}, "toy.json")


def test_compute_bound_linear():
    p = predict(linear_graph(256, 128, bias=False), device(), "cpu", 64)
    st = p.stage("dense")
    flops, nbytes = 2 * 64 * 256 * 128, 4 * (256 * 128 + 64 * 256 + 64 * 128)
    assert st.compute_s == pytest.approx(flops / 1e12)
    assert st.memory_s == {"main": pytest.approx(nbytes / 1e11)}
    assert st.time_s == pytest.approx(flops / 1e12 + 1e-6)
    assert st.bound == "compute"
    assert p.total_s == pytest.approx(flops / 1e12 + 1e-6)          # a CPU moves no inputs over a link
    half = predict(linear_graph(256, 128, bias=False), device(), "cpu", 64, PerfParams(efficiency={"dense": 0.5}))
    assert half.stage("dense").time_s == pytest.approx(2 * flops / 1e12 + 1e-6)


def test_memory_bound_gather_uses_the_gather_bandwidth():
    g = bag_graph(100_000, 32)
    w = graph_work(g, 512).stage("embedding")
    plain = predict_work(graph_work(g, 512), device(), "cpu")
    assert plain.stage("embedding").time_s == pytest.approx(w.bytes["main"] / 1e11 + 1e-6)
    assert plain.stage("embedding").bound == "memory:main"
    slow = predict_work(graph_work(g, 512), device(gather=1e10), "cpu").stage("embedding")
    g_main = w.gather_bytes["main"]
    assert slow.memory_s["main"] == pytest.approx((w.bytes["main"] - g_main) / 1e11 + g_main / 1e10)


def test_cache_tier_is_timed_at_its_bandwidth():
    dev = device(cache=(1 << 30, 1e12))
    p = predict(linear_graph(64, 64, bias=False), dev, "cpu", 8)
    assert set(p.stage("dense").memory_s) == {"cache"}
    assert p.stage("dense").memory_s["cache"] == pytest.approx(4 * (64 * 64 + 8 * 64 + 8 * 64) / 1e12)


def test_accelerators_pay_for_transfers_and_overheads_scale_with_calls():
    g = dot_graph(8, 16, [(1, 0), (2, 0), (2, 1)])
    dev = device(kind="gpu", pcie=1e9)
    p = predict(g, dev, "triton", 100, PerfParams(call_overhead_s=5e-6, fixed_overhead_s=2e-5))
    moved = 100 * 8 * 16 * 4 + 100 * 3 * 4
    assert p.transfer_s == pytest.approx(moved / 1e9)
    assert p.stage("interaction").overhead_s == pytest.approx(5e-6)
    assert p.total_s == pytest.approx(sum(s.time_s for s in p.stages) + moved / 1e9 + 2e-5)
    assert any("no per-call overhead" in n for n in predict(g, dev, "triton", 1).notes)


def test_time_grows_with_batch():
    times = [predict(bag_graph(10_000, 16), device(), "cpu", b).total_s for b in (1, 64, 512, 4096)]
    assert times == sorted(times) and len(set(times)) == 4


def test_a_target_the_device_does_not_run_is_refused():
    with pytest.raises(CostError, match=r"target 'hls' does not run on toy \(its targets: cpu, triton\)"):
        predict(linear_graph(2, 2), device(), "hls", 1)


def test_perf_params_round_trip_and_checks(tmp_path):
    p = PerfParams(efficiency={"embedding": 0.4, "dense": 0.7}, call_overhead_s=2e-6, fixed_overhead_s=1e-5,
                   device="host", target="cpu", source="calibrated 2026-12-05")
    f = tmp_path / "profile.json"
    f.write_text(json.dumps(p.as_dict()))
    assert PerfParams.from_json(f) == p
    assert p.efficiency_of("interaction") == 1.0 and p.efficiency_of("embedding") == 0.4
    for bad, msg in (({"efficiency": {"dense": 0}}, r"efficiency\['dense'\] must be in \(0, 1\]"),
                     ({"efficiency": {"dense": 1.5}}, "must be in"),
                     ({"efficiency": {"mlp": 0.5}}, "unknown stage 'mlp'"),
                     ({"call_overhead_s": -1}, "call_overhead_s must be >= 0"),
                     ({"speed": 2}, r"unknown fields \['speed'\]")):
        f.write_text(json.dumps(bad))
        with pytest.raises(CostError, match=msg):
            PerfParams.from_json(f)
