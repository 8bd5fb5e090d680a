"""Shared by the xrec plan tests: run the CLI in-process on dlrm-small with 1000-row tables."""
import contextlib
import io
import json
from pathlib import Path

from xrec.cli import main

DATA = Path(__file__).with_name("data")
FAST, SLOW = str(DATA / "plan-fast.json"), str(DATA / "plan-slow.json")
SMALL = ["dlrm-small", "--max-rows", "1000", "--precisions", "fp32,int8", "--max-batch", "1,16,128",
         "--max-delay-us", "0,500", "--calib-samples", "256", "-O", "cpu.isa=scalar"]


def run_cli(*argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(list(argv))
    return rc, out.getvalue(), err.getvalue()


def variants():
    """The (target, precision) IR the plans of SMALL cost (built once per process)."""
    from xrec.cost.plan.space import build_variants
    return build_variants("dlrm-small", ["cpu"], ["fp32", "int8"], max_rows=1000, calib_samples=256,
                          options={"cpu": {"isa": "scalar"}})


def tiny_device(tmp_path, capacity=4e6):
    """plan-fast with only ``capacity`` bytes of memory (4 MB: the int8 tables fit, the fp32 ones do not)."""
    d = json.loads(open(FAST).read())
    d["name"] = "tiny"
    d["memory"]["main"]["capacity_bytes"]["value"] = capacity
    f = tmp_path / "tiny.json"
    f.write_text(json.dumps(d))
    return str(f)


def plan(tmp_path, *extra, name="plan"):
    """(exit code, stdout, stderr, every row, plan.json or None)."""
    allj, pj = tmp_path / f"{name}-all.json", tmp_path / f"{name}.json"
    rc, out, err = run_cli("plan", *SMALL, "--json", str(allj), "-o", str(pj), *extra)
    rows = json.loads(allj.read_text())["rows"] if allj.exists() else None
    chosen = json.loads(pj.read_text()) if pj.exists() else None
    return rc, out, err, rows, chosen
