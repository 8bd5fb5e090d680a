"""A few seconds of bench/serving/run.py (the load test): every request is answered exactly once, with its own
rows, and the client's and the server's counts agree. Performance is not asserted (see bench/serving/)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from .conftest import needs_cpu

pytestmark = needs_cpu

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "serving" / "run.py"


def test_short_load_run_answers_every_request_exactly_once(artifact, server_exe, tmp_path):
    out = tmp_path / "load.json"
    cmd = [sys.executable, str(SCRIPT), "--artifact", str(artifact("dlrm-small")), "--duration", "2",
           "--warmup", "0.5", "--rounds", "1", "--concurrency", "16", "--distinct", "16", "--rows", "2",
           "--configs", "batched,batch1", "--out", str(tmp_path / "results"), "--json", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert [r["config"] for r in result["runs"]] == ["batched", "batch1"]
    for run in result["runs"]:
        c, s = run["client"], run["server"]
        assert run["exactly_once"]["ok"], run["exactly_once"]["checks"]
        assert all(run["exactly_once"]["checks"].values())
        assert c["sent"] > 16 and c["sent"] == c["answered"] == s["received"] == s["answered"]
        assert c["by_status"] == {"200": c["sent"]} and c["wrong_values"] == 0 and c["id_mismatch"] == 0
        assert sum(s["batch_size_hist"].values()) == s["kernel_calls"]
    batched, batch1 = result["runs"]
    assert batch1["server"]["batch_size_hist"] == {"1": batch1["server"]["kernel_calls"]}
    assert batched["server"]["mean_batch_requests"] > 1          # 16 clients at once: requests were merged
    assert (tmp_path / "results").is_dir() and list((tmp_path / "results").glob("serving-*.md"))
