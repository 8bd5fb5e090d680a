"""`xrec compile / check --target triton` through the target registry (on the interpreter here; dlrm-small,
whose cubins the AOT tests already put in Triton's cache)."""
from __future__ import annotations

import json

from xrec.cli import main


def test_xrec_check_compiles_for_triton_and_matches_pytorch(capsys):
    rc = main(["check", "dlrm-small", "--target", "triton", "--max-rows", "100", "--batches", "1,3", "--json"])
    rep = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rc == 0 and rep["ok"] and rep["target"] == "triton"
    assert [r["batch"] for r in rep["batches"]] == [1, 3]


def test_xrec_compile_writes_a_triton_artifact_that_check_reloads(tmp_path, capsys):
    out = tmp_path / "tt.xrec"
    assert main(["compile", "dlrm-small", "--target", "triton", "--max-rows", "100", "-o", str(out)]) == 0
    man = json.loads((out / "manifest.json").read_text())
    assert man["target"] == "triton" and man["tolerances"] == {"rtol": 1e-4, "atol": 1e-6}
    assert {"sm_80", "sm_90"} <= set(man["target_info"]["kernels"][0]["archs"])
    capsys.readouterr()
    assert main(["check", str(out), "--batches", "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["ok"]
