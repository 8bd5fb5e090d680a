"""Every zoo model through the hls target (C-simulated gather + dense part on the host) vs PyTorch."""
from __future__ import annotations

import copy
import json

import pytest
import torch

import xrec
from xrec import zoo
from xrec.cli import main as cli_main
from xrec.ir.stats import pooling_stats
from xrec.targets.hls.placement import plan_of
from xrec.targets import get_target
from xrec.targets.hls.tables import effective_table
from xrec.testing import check_model, edge_case_inputs

from conftest import imported_zoo            # tests/conftest.py: traced zoo graphs, shared per session
from .conftest import FAST, needs_hls

pytestmark = needs_hls

# small budgets so every model spreads over on-chip RAM, HBM channels and DDR banks
ZOO_OPTS = {**FAST, "report_batch": 8, "uram_bytes": 150_000, "bram_bytes": 0, "hbm_channels": 8,
            "hbm_channel_bytes": 60_000}


@pytest.mark.parametrize("name", zoo.list_models())
def test_zoo_model_matches_pytorch(name, tmp_path):
    model, g = imported_zoo(name)
    cm = xrec.compile(g, target="hls", options=ZOO_OPTS, out=tmp_path / f"{name}.xrec")
    plan = plan_of(cm.graph)
    assert {t.memory for t in plan.tables} >= {"onchip", "ddr"}
    # placed by the pooling the frontend measured on the example inputs, never by the model's name
    stats = pooling_stats(g)
    assert plan.pooling_source.startswith("graph statistics")
    assert [t.pooling for t in plan.tables] == [round(stats[t.feature].mean, 3) for t in plan.tables]
    assert cm.manifest["tolerances"] == {"rtol": 1e-4, "atol": 1e-6}
    check_model(cm, model, edge_case_inputs(model), rtol=1e-4, atol=1e-6)


def test_int8_rows_match_pytorch_on_the_dequantized_tables(tmp_path):
    """int8 rows: equal (fp32 tolerance) to PyTorch run on the tables as the card stores them, and within
    the artifact's own tolerance of the fp32 model."""
    model, g = imported_zoo("dlrm-small")
    cm = xrec.compile(g, target="hls", options={**FAST, "quantize_rows": "int8", "onchip_units": 0},
                      out=tmp_path / "i8.xrec")
    qmodel = copy.deepcopy(model)
    sd = qmodel.state_dict()
    for n in cm.graph.nodes:
        if n.op.value == "param" and n.attr("name").startswith("embeddings."):
            key = n.attr("name")
            sd[key] = torch.from_numpy(effective_table(cm.graph.params[key], n.type, "int8", n.type.shape[1]))
    qmodel.load_state_dict(sd)
    inputs = edge_case_inputs(model)
    check_model(cm, qmodel, inputs, rtol=1e-4, atol=1e-6)
    tol = cm.manifest["tolerances"]
    assert tol["atol"] > 1e-6                       # derived from the measured int8 drift
    check_model(cm, model, inputs, rtol=tol["rtol"], atol=tol["atol"])


@pytest.mark.slow
def test_cli_compile_and_check_with_the_default_host(tmp_path, capsys):
    out = tmp_path / "tt.xrec"
    assert cli_main(["compile", "two-tower", "--target", "hls", "--max-rows", "100", "-o", str(out)]) == 0
    for f in ("src/xrec_gather.cpp", "src/xrec_gather.h", "src/tb.cpp", "src/host.cpp", "src/xrec_gather.cfg",
              "src/run_hls.tcl", "src/Makefile", "lib/csim", "lib/host.xrec/manifest.json", "report.json",
              "report.md"):
        assert (out / f).is_file(), f
    man = json.loads((out / "manifest.json").read_text())
    host = man["target_info"]["host"]["target"]
    try:
        cpu_ok = get_target("cpu").available()[0]
    except KeyError:
        cpu_ok = False
    assert host == ("cpu" if cpu_ok else "reference")
    capsys.readouterr()
    assert cli_main(["check", str(out), "--batches", "1,7", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rep["ok"] and rep["target"] == "hls" and rep["max_rel_err"] <= 1e-4
