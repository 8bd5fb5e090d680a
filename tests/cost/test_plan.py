"""`xrec plan`: what it returns never breaks the bounds it was given, and it says why others fail."""
import json

import pytest

from cost.plan_helpers import FAST, SLOW, plan, run_cli, tiny_device, variants


def _ranked_ok(rows, p99_ms, max_auc_drop=None):
    ok = [r for r in rows if r["feasible"]]
    for r in ok:
        assert r["p99_ms"] <= p99_ms, r
        if r["capacity_bytes"] is not None:
            assert r["memory_bytes"] <= r["capacity_bytes"], r
        if max_auc_drop is not None:
            assert r["auc_drop"] is not None and r["auc_drop"] <= max_auc_drop, r
    return ok


def test_no_returned_configuration_breaks_the_sla_memory_or_accuracy_bound(tmp_path):
    rc, out, err, rows, chosen = plan(tmp_path, "--qps", "200000", "--p99-ms", "2", "--hardware",
                                      f"{FAST},{SLOW}", "--max-auc-drop", "0.01", "--max-devices", "4")
    assert rc == 0, err
    ok = _ranked_ok(rows, 2.0, 0.01)
    assert ok and chosen["chosen"]["p99_ms"] <= 2.0
    # the chosen configuration is the cheapest feasible one
    assert chosen["chosen"]["usd_per_million_queries"] == min(r["usd_per_million_queries"] for r in ok)
    # every rejected configuration says why
    for r in rows:
        if not r["feasible"]:
            assert r["reasons"] and all(w.split(":")[0] in ("SLA", "memory", "accuracy", "no price", "no power",
                                                              "build") for w in r["reasons"]), r
    assert "rejected:" in out and "SLA: 4 devices serve at most" in out
    # which time model timed each device and target is said
    assert "time models (" in out and "plan-fast/cpu: " in out and "plan-slow/cpu: " in out


def test_memory_too_small_is_rejected_with_the_sizes(tmp_path):
    rc, out, err, rows, _ = plan(tmp_path, "--qps", "1000", "--p99-ms", "5", "--hardware", tiny_device(tmp_path))
    assert rc == 0, err
    fp32 = [r for r in rows if r["precision"] == "fp32"]
    assert fp32 and all(any(w.startswith("memory: the model needs 5.99 MiB, tiny holds 3.81 MiB") for w in r["reasons"])
                        for r in fp32)
    assert all(r["precision"] == "int8" for r in rows if r["feasible"])


def test_accuracy_bound_rejects_exactly_the_precisions_that_lose_more(tmp_path):
    bound = 0.0005
    rc, out, err, rows, _ = plan(tmp_path, "--qps", "1000", "--p99-ms", "5", "--hardware", FAST,
                                 "--max-auc-drop", str(bound))
    assert rc == 0, err
    for r in rows:
        assert r["auc_drop"] is not None          # fp32 and int8 both have the calibration report
        rejected = any(w.startswith("accuracy:") for w in r["reasons"])
        assert rejected == (r["auc_drop"] > bound), r


def test_a_precision_losing_auc_or_without_an_auc_is_rejected_under_a_bound():
    """The gate itself, on the real int8 IR with a report that loses 0.02 AUC, or has no AUC at all."""
    from xrec.cost.catalogue import load_device
    from xrec.cost.plan.queueing import Policy
    from xrec.cost.plan.score import score
    from xrec.cost.plan.space import Variant
    v8 = variants()["cpu", "int8"]
    dev = load_device(FAST)
    lossy = Variant("cpu", "int8", v8.graph, {"auc_change": -0.02, "samples": 256, "labels": "synthetic"})
    blind = Variant("cpu", "int8", v8.graph, {"auc_change": None, "samples": 256, "labels": "synthetic"})
    pol = [Policy(16, 0.0)]
    kw = dict(qps=1000.0, p99_s=5e-3, price=1.0)
    assert score(lossy, dev, pol, max_auc_drop=0.01, **kw)[0].reasons == ["accuracy: AUC drops 0.02000 > 0.01"]
    assert score(lossy, dev, pol, max_auc_drop=0.05, **kw)[0].feasible
    assert score(lossy, dev, pol, **kw)[0].feasible                     # no bound, no gate
    r = score(blind, dev, pol, max_auc_drop=0.05, **kw)[0]
    assert r.reasons == ["accuracy: int8 not accuracy-checked: the model's output is not a probability (no AUC)"]


def test_higher_qps_never_needs_fewer_devices(tmp_path):
    least = {}
    for q in (2e3, 2e4, 1e5, 3e5, 6e5, 1.2e6):
        rc, _, err, rows, _ = plan(tmp_path, "--qps", str(q), "--p99-ms", "3", "--hardware", f"{FAST},{SLOW}",
                                   "--objective", "latency", "--max-devices", "256", name=f"q{q:g}")
        assert rc == 0, err
        for dev in ("plan-fast", "plan-slow"):
            n = min(r["count"] for r in rows if r["feasible"] and r["device"] == dev)
            assert n >= least.get(dev, 0), (dev, q, n, least)
            least[dev] = n
    assert least["plan-slow"] > 1          # the range went past one device


def test_no_configuration_meets_an_impossible_sla(tmp_path):
    rc, out, err, rows, chosen = plan(tmp_path, "--qps", "1000", "--p99-ms", "0.01", "--hardware", FAST)
    assert rc == 1 and chosen is None
    assert "no configuration meets 1000 queries/s at p99 <= 0.01 ms" in err
    assert "the closest:" in err and "plan-fast/cpu/" in err and "SLA: p99" in err
    assert "Traceback" not in err + out


@pytest.mark.parametrize("args,words", [
    (["--qps", "0", "--p99-ms", "5"], "--qps must be > 0"),
    (["--qps", "-3", "--p99-ms", "5"], "--qps must be > 0"),
    (["--qps", "100", "--p99-ms", "0"], "--p99-ms must be > 0"),
    (["--qps", "100", "--p99-ms", "5", "--hardware", "h100-sxmm"], "unknown hardware 'h100-sxmm'; known: "),
    (["--qps", "100", "--p99-ms", "5", "--precisions", "fp33"], "unknown precision 'fp33'"),
    (["--qps", "100", "--p99-ms", "5", "--targets", "cuda"], "--targets: unknown target 'cuda'; targets: "),
    (["--qps", "100", "--p99-ms", "5", "--hardware", "h100-sxm", "--price", "l4=1"], "'l4' is not among the planned"),
    (["--qps", "100", "--p99-ms", "5", "--price", "l4=cheap"], "expected NAME=USD_PER_HOUR"),
    (["--qps", "100", "--p99-ms", "5", "--power", "l4=50"], "expected NAME=IDLE_W:MAX_W"),
])
def test_bad_input_is_a_clear_error(tmp_path, args, words):
    rc, out, err = run_cli("plan", "dlrm-small", "--max-rows", "1000", "-o", str(tmp_path / "p.json"), *args)
    assert rc == 2 and words in err and "Traceback" not in err
    assert not (tmp_path / "p.json").exists()


@pytest.mark.parametrize("edit,words", [
    (lambda d: d["power"].pop("idle_W"), "field 'power.idle_W' is missing"),
    (lambda d: d["price_per_hour"].__setitem__("value", -1.0), "field 'price_per_hour.value' must not be negative"),
    (lambda d: d["memory"]["main"]["bandwidth_Bps"].__setitem__("value", -5), "must not be negative"),
])
def test_a_broken_catalogue_file_names_the_field(tmp_path, edit, words):
    d = json.loads(open(FAST).read())
    edit(d)
    f = tmp_path / "broken.json"
    f.write_text(json.dumps(d))
    rc, out, err = run_cli("plan", "dlrm-small", "--max-rows", "1000", "--qps", "100", "--p99-ms", "5",
                           "--hardware", str(f), "-o", str(tmp_path / "p.json"))
    assert rc == 2 and words in err and str(f) in err and "Traceback" not in err


def test_without_a_price_the_cost_objective_cannot_rank_and_says_so(tmp_path):
    d = json.loads(open(FAST).read())
    d["name"] = "unpriced"
    d["price_per_hour"] = {"value": None, "source": "none", "reason": "test: no price"}
    f = tmp_path / "unpriced.json"
    f.write_text(json.dumps(d))
    rc, out, err, rows, _ = plan(tmp_path, "--qps", "1000", "--p99-ms", "5", "--hardware", str(f))
    assert rc == 1 and "no price: unpriced has no price_per_hour" in err          # the closest ones
    assert f"unpriced: {len(rows)} configurations meet every bound" in out
    assert "cannot be ranked: unpriced has no price_per_hour (give --price unpriced=USD" in out
    assert all(r["usd_per_million_queries"] is None for r in rows)
    rc, *_ = plan(tmp_path, "--qps", "1000", "--p99-ms", "5", "--hardware", str(f), "--price", "unpriced=2.5",
                  name="priced")
    assert rc == 0


def test_plot_draws_the_pareto_front(tmp_path):
    png = tmp_path / "front.png"
    rc, out, err, rows, chosen = plan(tmp_path, "--qps", "50000", "--p99-ms", "2", "--hardware", f"{FAST},{SLOW}",
                                      "--plot", str(png))
    assert rc == 0, err
    assert png.stat().st_size > 10000 and png.read_bytes()[:4] == b"\x89PNG"
    front = chosen["pareto"]
    assert front
    # nothing feasible dominates a point of the front
    key = lambda r: (r["p99_ms"], r["usd_per_million_queries"], r["joules_per_query"])  # noqa: E731
    for f in front:
        for r in rows:
            if r["feasible"]:
                a, b = key(r), key(f)
                assert not (all(x <= y for x, y in zip(a, b)) and a != b), (r, f)


def test_the_chosen_configuration_meets_the_bound_in_the_simulation_too(tmp_path):
    """Not only the model's own number: the batcher simulated event by event on the chosen configuration's
    predicted service times, at its share of the traffic, keeps p99 within the bound."""
    from xrec.cost.plan.queueing import Policy, ServiceCurve, simulate
    for qps, p99 in ((20000, 1.0), (200000, 2.0), (400000, 3.0)):
        rc, out, err, rows, chosen = plan(tmp_path, "--qps", str(qps), "--p99-ms", str(p99), "--hardware",
                                          f"{FAST},{SLOW}", name=f"sim{qps}")
        assert rc == 0, err
        c = chosen["chosen"]
        curve = ServiceCurve({int(b): t for b, t in c["service_s"].items()})
        pol = Policy(c["policy"]["max_batch"], c["policy"]["max_delay_us"] / 1e6)
        sim = simulate(qps / c["count"], pol, curve, requests=20000, seed=11)
        assert sim.p99_s * 1e3 <= p99 * 1.05, (c, sim)


def test_throughput_at_the_bound_covers_each_devices_share(tmp_path):
    rc, out, err, rows, _ = plan(tmp_path, "--qps", "200000", "--p99-ms", "2", "--hardware", f"{FAST},{SLOW}",
                                 "--objective", "latency")
    assert rc == 0, err
    for r in rows:
        if r["feasible"]:
            # its share of the traffic is within what one device serves at the bound ...
            assert 200000 / r["count"] <= r["qps_per_device_at_p99_bound"] * 1.001, r
            # ... and one device fewer would not do (the count is the smallest, or the rate caps it)
            if r["count"] > 1 and r["policy"]["max_delay_us"] == 0:
                assert 200000 / (r["count"] - 1) > r["qps_per_device_at_p99_bound"] * 0.999, r
    assert "q/s/dev@p99" in out


def test_calibrated_server_cpu_per_request_lengthens_the_service_time_on_a_cpu():
    """PerfParams.request_cpu_s (xrec calibrate: HTTP/JSON work per request) is added per row on a CPU device."""
    from xrec.cost.catalogue import load_device
    from xrec.cost.model import PerfParams
    from xrec.cost.plan.score import service_curve
    v = variants()["cpu", "fp32"]
    dev = load_device(FAST)
    base = PerfParams(device=dev.name, target="cpu")
    busy = PerfParams(device=dev.name, target="cpu", request_overhead_s=10e-6, request_input_overhead_s=1e-6)
    _, plain, _ = service_curve(v, dev, [1, 64], base)
    _, more, notes = service_curve(v, dev, [1, 64], busy)
    k = len(v.graph.input_nodes)
    for b in (1, 64):
        assert more[b] - plain[b] == pytest.approx(b * (10e-6 + 1e-6 * k))
    assert any("CPU per request" in n for n in notes)
