"""plan.json round trip: `xrec compile --plan plan.json` builds what `xrec plan` chose."""
import json

from cost.plan_helpers import SLOW, plan, run_cli, tiny_device


def test_compile_builds_the_chosen_target_and_precision(tmp_path):
    # on a device with 4 MB the fp32 tables do not fit: the plan must choose int8
    rc, out, err, rows, chosen = plan(tmp_path, "--qps", "50000", "--p99-ms", "2", "--hardware",
                                      f"{tiny_device(tmp_path)},{SLOW}", "--price", "tiny=0.01")
    assert rc == 0, err
    c = chosen["compile"]
    assert chosen["chosen"]["device"] == "tiny"          # a tenth of plan-slow's price
    assert (c["model"], c["target"], c["quantize"], c["max_rows"]) == ("dlrm-small", "cpu", "int8", 1000)
    assert c["options"] == {"isa": "scalar"}
    art = tmp_path / "art"
    rc, out, err = run_cli("compile", "--plan", str(tmp_path / "plan.json"), "-o", str(art),
                           "--calib-samples", "256")
    assert rc == 0, err
    m = json.loads((art / "manifest.json").read_text())
    assert m["target"] == "cpu" and m["target_info"]["options"]["isa"] == "scalar"
    assert set(m["compression"]["plan"].values()) == {"int8"}
    assert m["source"]["max_rows"] == 1000
    sv = chosen["serve"]
    assert f"--max-batch {sv['max_batch']} --max-delay-us {sv['max_delay_us']}" in out


def test_compile_refuses_a_plan_that_chose_nothing_or_disagrees(tmp_path):
    bad = tmp_path / "none.json"
    bad.write_text(json.dumps({"format": 1, "compile": None, "serve": None}))
    rc, out, err = run_cli("compile", "--plan", str(bad), "-o", str(tmp_path / "a"))
    assert rc == 2 and "chose no configuration" in err
    good = tmp_path / "p.json"
    good.write_text(json.dumps({"format": 1, "compile": {"model": "dlrm-small", "target": "cpu", "quantize": None,
                                                           "max_rows": 1000}, "serve": {}}))
    rc, out, err = run_cli("compile", "--plan", str(good), "--target", "xla", "-o", str(tmp_path / "a"))
    assert rc == 2 and "--target 'xla' disagrees" in err
    rc, out, err = run_cli("compile", "-o", str(tmp_path / "a"))
    assert rc == 2 and "give MODEL" in err
