"""Energy: RAPL counters (a fake powercap tree), the power model, the source every reading names, and a
case where minimising energy picks a different configuration from minimising cost, and why."""
import json

import pytest

from xrec.cost.catalogue import load_device
from xrec.cost.energy import (EnergyMeter, EnergyUnavailable, PowerModel, parse_power, power_model,
                              rapl_domains)

from cost.plan_helpers import FAST, SLOW, plan, run_cli


def test_power_model_is_linear_between_idle_and_max():
    pm = PowerModel(50.0, 200.0, "test")
    assert pm.power(0.0) == 50.0 and pm.power(1.0) == 200.0 and pm.power(0.5) == 125.0
    assert pm.power(-1) == 50.0 and pm.power(2) == 200.0           # utilisation is clamped
    with pytest.raises(ValueError, match="below idle"):
        PowerModel(100.0, 50.0, "test")
    with pytest.raises(ValueError, match=">= 0"):
        PowerModel(-1.0, 50.0, "test")


def test_parse_power():
    assert parse_power("host=40:180") == ("host", 40.0, 180.0)
    for bad in ("host=40", "host", "=1:2", "host=a:b", "host=50:40"):
        with pytest.raises(ValueError, match="--power"):
            parse_power(bad)


def test_catalogue_power_model_names_its_source_or_says_what_is_missing():
    pm = power_model(load_device(FAST))
    assert (pm.idle_W, pm.max_W) == (50.0, 200.0)
    assert pm.source.startswith("catalogue power model") and "plan-fast.json" in pm.source
    h100 = load_device("h100-sxm")                     # max 700 W in the catalogue, idle not published
    with pytest.raises(EnergyUnavailable, match=r"h100-sxm: idle_W unknown .*--power h100-sxm=IDLE_W:MAX_W"):
        power_model(h100)
    pm = power_model(h100, (70.0, 700.0))
    assert pm.source.startswith("given by the user")


def _fake_rapl(root, uj, max_range=1_000_000):
    d = root / "intel-rapl:0"
    d.mkdir(parents=True, exist_ok=True)
    (d / "name").write_text("package-0\n")
    (d / "energy_uj").write_text(f"{uj}\n")
    (d / "max_energy_range_uj").write_text(f"{max_range}\n")
    sub = root / "intel-rapl:0:0"                      # a sub-domain (core): not counted twice
    sub.mkdir(exist_ok=True)
    (sub / "name").write_text("core\n")
    (sub / "energy_uj").write_text("5\n")
    return d


def test_rapl_counter_is_read_and_its_wrap_handled(tmp_path):
    d = _fake_rapl(tmp_path, 900_000)
    assert [x.name for x in rapl_domains(tmp_path)] == ["package-0"]
    with EnergyMeter(root=tmp_path, use_nvml=False) as m:
        (d / "energy_uj").write_text("400000\n")       # wrapped past 1 J: 0.1 J + 0.4 J
    assert m.reading.joules == pytest.approx(0.5)
    assert m.reading.source.startswith("rapl: ") and "package-0" in m.reading.source


def test_without_a_counter_the_model_is_used_and_named(tmp_path):
    pm = PowerModel(10.0, 110.0, "test model")
    with EnergyMeter(pm, utilisation=0.5, root=tmp_path, use_nvml=False) as m:
        pass
    assert m.reading.joules == pytest.approx(60.0 * m.reading.seconds)
    assert m.reading.source == "model at utilisation 0.50: test model"
    with pytest.raises(EnergyUnavailable, match="no RAPL counter"):
        with EnergyMeter(root=tmp_path, use_nvml=False):
            pass


def test_plan_says_when_energy_cannot_be_computed(tmp_path):
    d = json.loads(open(FAST).read())
    d["name"] = "no-idle"
    d["power"]["idle_W"] = {"value": None, "source": "none", "reason": "test: not published"}
    f = tmp_path / "no-idle.json"
    f.write_text(json.dumps(d))
    rc, out, err, rows, _ = plan(tmp_path, "--qps", "1000", "--p99-ms", "5", "--hardware", str(f))
    assert rc == 0, err
    assert "power energy cannot be computed: no-idle: idle_W unknown (test: not published); give --power " \
           "no-idle=IDLE_W:MAX_W" in out
    assert all(r["joules_per_query"] is None and r["energy_source"].startswith("energy cannot be computed")
               for r in rows)
    # the energy objective cannot rank it: no configuration, and the answer says so
    rc, out, err, rows, _ = plan(tmp_path, "--qps", "1000", "--p99-ms", "5", "--hardware", str(f),
                                 "--objective", "energy", name="energy")
    assert rc == 1 and "known power figures (objective energy)" in err and "no power: no-idle" in err
    # given on the command line, it is used and named
    rc, out, err, rows, _ = plan(tmp_path, "--qps", "1000", "--p99-ms", "5", "--hardware", str(f),
                                 "--objective", "energy", "--power", "no-idle=40:200", name="given")
    assert rc == 0 and "power given by the user (--power no-idle=...)" in out
    assert all(r["joules_per_query"] > 0 for r in rows if r["feasible"])


def test_energy_objective_picks_a_different_configuration_from_cost(tmp_path):
    """plan-slow (tests/cost/data) is 4x slower at a tenth of plan-fast's price and draws more power per
    unit of work: at a load that needs two plan-slow or one plan-fast, cost picks the two cheap ones and
    energy the one fast one (or a batching policy that keeps it less busy)."""
    args = ("--qps", "400000", "--p99-ms", "3", "--hardware", f"{FAST},{SLOW}")
    rc, out, err, rows, by_cost = plan(tmp_path, *args, "--objective", "cost", name="cost")
    assert rc == 0, err
    rc, out_e, err, _, by_energy = plan(tmp_path, *args, "--objective", "energy", name="energy")
    assert rc == 0, err
    c, e = by_cost["chosen"], by_energy["chosen"]
    assert (c["device"], c["count"], c["policy"]) != (e["device"], e["count"], e["policy"])
    assert c["usd_per_million_queries"] < e["usd_per_million_queries"]
    assert e["joules_per_query"] < c["joules_per_query"]
    # each is the best of every feasible configuration on its own objective
    ok = [r for r in rows if r["feasible"]]
    assert c["usd_per_million_queries"] == min(r["usd_per_million_queries"] for r in ok)
    assert e["joules_per_query"] == min(r["joules_per_query"] for r in ok)
    # and the output says why
    assert by_cost["cost_vs_energy"] == by_energy["cost_vs_energy"]
    why = by_cost["cost_vs_energy"]["why"]
    assert f"the cost objective picks {c['count']} x {c['device']}" in why
    assert f"the energy objective picks {e['count']} x {e['device']}" in why
    assert "the cheaper one draws more power per query" in why and "cost vs energy:" in out_e


def _unpowered_host():
    from dataclasses import replace

    from xrec.cost.catalogue import Figure
    dev = load_device(FAST)
    none = Figure(None, "none", "test: not given")
    return replace(dev, name="host", power={"idle_W": none, "max_W": none})


def test_host_power_comes_from_rapl_when_the_machine_exposes_it(tmp_path):
    d = _fake_rapl(tmp_path, 0)
    (d / "constraint_0_power_limit_uw").write_text("185000000\n")        # PL1 185 W
    pm = power_model(_unpowered_host(), root=tmp_path)
    assert pm.max_W == 185.0 and pm.idle_W == 0.0                        # the fake counter did not move
    assert "rapl: " in pm.source and "PL1" in pm.source


def test_host_without_rapl_or_figures_says_so(tmp_path):
    with pytest.raises(EnergyUnavailable, match=r"idle_W unknown \(test: not given\).*no RAPL counter.*--power host="):
        power_model(_unpowered_host(), root=tmp_path)
