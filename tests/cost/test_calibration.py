"""Calibration profiles: the batch-dependent efficiency, measured tier bandwidths, the fit, the store."""
import json

import pytest

from xrec.cost import CostError, PerfParams, predict, predict_target, profile_path
from xrec.cost.calibrate import fit_efficiency

from cost.graphs import bag_graph, linear_graph
from cost.test_model import device


def test_efficiency_follows_e_times_b_over_b_plus_half():
    p = PerfParams(efficiency={"dense": 0.8}, batch_half={"dense": 64})
    assert p.efficiency_of("dense") == pytest.approx(0.8)                 # no batch: the large-batch value
    assert p.efficiency_of("dense", 64) == pytest.approx(0.4)
    assert p.efficiency_of("dense", 2048) == pytest.approx(0.8 * 2048 / 2112)
    assert p.efficiency_of("embedding", 1) == pytest.approx(1.0)          # no entry: constant default


def test_batch_half_default_applies_to_unlisted_stages():
    p = PerfParams(default_efficiency=0.5, batch_half={"default": 10})
    assert p.efficiency_of("interaction", 10) == pytest.approx(0.25)


def test_prediction_uses_the_efficiency_at_its_batch():
    g = linear_graph(256, 128, bias=False)
    p = PerfParams(efficiency={"dense": 1.0}, batch_half={"dense": 64}, call_overhead_s=0.0)
    for b in (1, 64, 512):
        flops = 2 * b * 256 * 128
        roof = max(flops / 1e12, 4 * (256 * 128 + b * 256 + b * 128) / 1e11)
        assert predict(g, device(), "cpu", b, p).stage("dense").time_s == pytest.approx(roof * (b + 64) / b)


def test_calibrated_tier_bandwidth_replaces_the_catalogue_figure():
    g = bag_graph(rows=1000, dim=16, pooling=4)
    dev = device(cache=(1e9, 1e12))
    fast = predict(g, dev, "cpu", 64, PerfParams(call_overhead_s=0.0)).stage("embedding")
    slow = predict(g, dev, "cpu", 64, PerfParams(call_overhead_s=0.0, bandwidth_Bps={"cache": 1e10},
                                                  gather_bandwidth_Bps={"cache": 1e9})).stage("embedding")
    assert slow.memory_s["cache"] > 10 * fast.memory_s["cache"]


@pytest.mark.parametrize("bad", [{"batch_half": {"dense": -1}}, {"batch_half": {"nope": 1}},
                                 {"bandwidth_Bps": {"cache": 0}}, {"gather_bandwidth_Bps": {"main": -5}}])
def test_bad_profile_fields_are_refused(bad):
    with pytest.raises(CostError):
        PerfParams(**bad)


def test_profile_round_trips_through_json_with_raw_samples(tmp_path):
    p = PerfParams(efficiency={"dense": 0.7}, batch_half={"dense": 12.5}, bandwidth_Bps={"cache": 2e10},
                   call_overhead_s=1e-7, fixed_overhead_s=2e-6, source="test")
    f = tmp_path / "p.json"
    f.write_text(json.dumps({**p.as_dict(), "measured": {"anything": [1, 2]}}))
    assert PerfParams.from_json(f) == p


def test_fit_recovers_a_known_curve():
    pts = [(b, 0.8 * b / (b + 50)) for b in (1, 8, 64, 256, 1024, 2048)]
    e, h = fit_efficiency(pts)
    assert e == pytest.approx(0.8, rel=1e-6) and h == pytest.approx(50, rel=1e-6)


def test_fit_caps_efficiency_at_one_and_keeps_half_non_negative():
    e, h = fit_efficiency([(1, 1.2), (64, 1.1), (2048, 1.05)])       # faster than the probed peak
    assert e == 1.0 and h == 0.0
    e, h = fit_efficiency([(1, 0.9), (64, 0.5), (2048, 0.3)])         # falling with batch: a constant
    assert 0.3 < e < 0.9 and h == 0.0
    with pytest.raises(ValueError):
        fit_efficiency([(1, float("nan"))])


def test_predict_target_picks_up_the_stored_profile(tmp_path, monkeypatch):
    monkeypatch.setenv("XREC_CACHE_DIR", str(tmp_path))
    dev = device()
    g = linear_graph(256, 128, bias=False)
    bare = predict_target(g, dev, "cpu", 64)
    path = profile_path(dev, "cpu")
    assert str(path).startswith(str(tmp_path))
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(PerfParams(efficiency={"dense": 0.5}, call_overhead_s=0.0,
                                          source="stored").as_dict()))
    cal = predict_target(g, dev, "cpu", 64)
    assert cal.params.source == "stored"
    assert cal.stage("dense").time_s == pytest.approx(2 * (bare.stage("dense").time_s - 1e-6))
    assert predict_target(g, dev, "cpu", 64, use_profile=False).params.source != "stored"


def test_calibrate_cli_writes_a_profile_that_xrec_cost_uses(tmp_path, monkeypatch):
    """One quick calibration end to end: compiles the synthetic probes, fits, writes; cost reads it."""
    import contextlib
    import io
    from xrec.cli import main
    monkeypatch.setenv("XREC_CACHE_DIR", str(tmp_path / "cache"))
    prof = tmp_path / "cpu.json"
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(["calibrate", "--quick", "--threads", "1", "-o", str(prof)])
    assert rc == 0, err.getvalue()
    doc = json.loads(prof.read_text())
    p = PerfParams.from_json(prof)
    assert 0 < p.efficiency["dense"] <= 1 and 0 < p.efficiency["embedding"] <= 1
    assert p.fixed_overhead_s > 0 and p.call_overhead_s >= 0
    assert p.bandwidth_Bps["cache"] > 0 and p.gather_bandwidth_Bps["cache"] > 0
    assert {s["batch"] for s in doc["measured"]["dense"]["samples"]} == {1, 64, 512}
    assert p.weight_stream["threads"] == 1 and len(p.weight_stream["points"]) == 3     # the quick sweep
    assert "calibrate" in err.getvalue()                                   # progress on stderr
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        rc = main(["cost", "dlrm-small", "--max-rows", "1000", "--batch", "64", "--params", str(prof), "--json"])
    assert rc == 0
    rep = json.loads(out.getvalue())
    assert rep["batches"][0]["prediction"]["params"]["source"] == p.source
    # dlrm-small's inputs: 1 dense tensor + (ids, offsets) of 26 features
    assert rep["batches"][0]["prediction"]["fixed_s"] == pytest.approx(p.fixed_overhead_s + 53 * p.input_overhead_s)
    assert p.request_overhead_s > 0                                       # served by the real xrec-server
    assert [s["inputs"] for s in doc["measured"]["serving"]] == [1, 16]


def test_calibrate_refuses_unknown_targets_and_bad_threads(capsys):
    from xrec.cli import main
    with pytest.raises(SystemExit):
        main(["calibrate", "--target", "hls"])              # the cycle report is its model: nothing to fit
    assert "invalid choice" in capsys.readouterr().err
    assert main(["calibrate", "--threads", "0"]) == 2
    assert "--threads" in capsys.readouterr().err


def test_calibrate_triton_fits_the_gpu_suite_measurements_and_reports_held_out_errors(tmp_path, capsys):
    from xrec.cli import main
    out = tmp_path / "triton.json"
    assert main(["calibrate", "--target", "triton", "--hardware", "h200", "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "(held out)" in text and "(fitted)" in text
    p = PerfParams.from_json(out)
    assert p.target == "triton" and p.fixed_overhead_s > 0
def test_per_input_overhead_counts_the_graphs_input_tensors():
    g = bag_graph(rows=1000, dim=16, pooling=4)
    n_inputs = sum(1 for n in g.nodes if n.op.value == "input")
    assert n_inputs >= 2                                    # ids and offsets at least
    base = PerfParams(call_overhead_s=0.0, fixed_overhead_s=1e-6)
    more = PerfParams(call_overhead_s=0.0, fixed_overhead_s=1e-6, input_overhead_s=1e-7)
    a, b = predict(g, device(), "cpu", 8, base), predict(g, device(), "cpu", 8, more)
    assert b.fixed_s == pytest.approx(1e-6 + n_inputs * 1e-7)
    assert b.total_s - a.total_s == pytest.approx(n_inputs * 1e-7)


def test_per_node_roofline_sums_each_nodes_own_bound():
    """A memory-bound node and a compute-bound node of one stage run one after the other: per node the
    stage takes the sum of their own bounds; the default (a lower bound) takes the max of the sums."""
    from xrec.cost import GraphWork, NodeWork, Work, predict_work
    mem_node = Work(flops={"f32": 1e6}, bytes={"main": 1e9}, calls=1)       # 10 ms of bytes, 1 us of FLOPs
    fma_node = Work(flops={"f32": 1e10}, bytes={"main": 1e6}, calls=1)      # 10 ms of FLOPs, 10 us of bytes
    gw = GraphWork("g", 1, (NodeWork("a", "linear", "dense", mem_node), NodeWork("b", "linear", "dense", fma_node)),
                   {"B": 1}, 0)
    lb = predict_work(gw, device(), "cpu", PerfParams(call_overhead_s=0.0)).stage("dense")
    pn = predict_work(gw, device(), "cpu", PerfParams(call_overhead_s=0.0, per_node=True)).stage("dense")
    assert lb.time_s == pytest.approx(max(1e9 / 1e11 + 1e6 / 1e11, 1e10 / 1e12 + 1e6 / 1e12))
    assert pn.time_s == pytest.approx(1e9 / 1e11 + 1e10 / 1e12)
    assert pn.time_s > 1.9 * lb.time_s * 0.99


def _two_probe_params():
    return PerfParams(efficiency={"dense": 1.0}, batch_half={"dense": 0.0}, bandwidth_Bps={"cache": 100e9},
                      large_weights={"efficiency": {"dense": 0.5}, "batch_half": {"dense": 10.0},
                                     "bandwidth_Bps": {"cache": 25e9}},
                      weight_points={"largest": (1e6, 16e6), "total": (1.5e6, 40e6)}, weight_cache_bytes=2e6)


def test_large_weight_efficiency_is_interpolated_in_log_bytes_of_the_largest_matrix():
    p = _two_probe_params()
    assert p.for_weights(1e6, 0.5e6) is p                                        # at or below the small probe
    assert p.for_weights(1e6, 1e6).efficiency_of("dense") == pytest.approx(1.0)
    assert p.for_weights(50e6, 16e6).efficiency_of("dense") == pytest.approx(0.5)
    assert p.for_weights(50e6, 99e6).efficiency_of("dense") == pytest.approx(0.5)  # clamped
    mid = p.for_weights(50e6, 4e6)                                               # halfway in log(1..16 MB)
    assert mid.efficiency_of("dense") == pytest.approx(0.5 ** 0.5)
    assert mid.batch_half["dense"] == pytest.approx(5.0)


def test_weight_stream_bandwidth_steps_once_the_weights_leave_l2():
    p = _two_probe_params()
    assert p.for_weights(1.9e6, 0.1e6).bandwidth_Bps["cache"] == pytest.approx(100e9)
    assert p.for_weights(2.1e6, 0.1e6).bandwidth_Bps["cache"] == pytest.approx(25e9)


def test_predictions_apply_the_graphs_own_weight_sizes():
    small, big = linear_graph(256, 256, bias=False), linear_graph(4096, 4096, bias=False)   # 0.25 MiB, 64 MiB
    p = PerfParams(call_overhead_s=0.0, per_node=True, **{k: v for k, v in _two_probe_params().as_dict().items()
                                                         if k in ("efficiency", "batch_half", "bandwidth_Bps",
                                                                  "large_weights", "weight_points",
                                                                  "weight_cache_bytes")})
    lb = PerfParams(call_overhead_s=0.0, per_node=True)
    for g, ratio in ((small, 1.0), (big, 2.0 * 2058 / 2048)):   # the big one: half the efficiency, half at B=10
        a = predict(g, device(), "cpu", 2048, lb).stage("dense").time_s
        b = predict(g, device(), "cpu", 2048, p).stage("dense").time_s
        assert b / a == pytest.approx(ratio, rel=1e-3)


def test_bad_large_weight_fields_are_refused():
    with pytest.raises(CostError, match="weight_points"):
        PerfParams(large_weights={"efficiency": {"dense": 0.5}})
    with pytest.raises(CostError, match="unknown keys"):
        PerfParams(large_weights={"speed": {}}, weight_points={"largest": (1, 2), "total": (1, 2)})
    with pytest.raises(CostError):
        PerfParams(large_weights={"efficiency": {"dense": 1.5}}, weight_points={"largest": (1, 2), "total": (1, 2)})
