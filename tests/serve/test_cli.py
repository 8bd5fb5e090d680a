"""`xrec serve`: refuses what it cannot serve, builds the server, becomes it (exec), prints the URL, stops on Ctrl-C."""
from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import time
import urllib.request

from xrec.cli import main

from .conftest import needs_cpu

pytestmark = needs_cpu


def test_serve_needs_an_artifact(capsys, tmp_path):
    assert main(["serve"]) == 2
    assert "needs an ARTIFACT" in capsys.readouterr().err
    assert main(["serve", str(tmp_path / "nothing.xrec")]) == 2
    assert "not an artifact directory (no manifest.json)" in capsys.readouterr().err


def test_serve_refuses_an_artifact_of_another_target(capsys, tmp_path):
    art = tmp_path / "m.xrec"
    art.mkdir()
    (art / "manifest.json").write_text(json.dumps({"model": "m", "target": "xla"}))
    assert main(["serve", str(art)]) == 2
    err = capsys.readouterr().err
    assert "compiled for target 'xla'" in err and "--target cpu" in err


def test_server_refuses_a_corrupt_artifact(artifact, server_exe, tmp_path):
    """The C ABI's checks at load (here: weights.bin of the wrong size) stop the server with its message."""
    import shutil
    bad = tmp_path / "bad.xrec"
    shutil.copytree(artifact("dlrm-small"), bad)
    with open(bad / "weights.bin", "ab") as f:
        f.write(b"\0" * 64)
    out = subprocess.run([str(server_exe), str(bad), "--port", "0"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert "cannot serve" in out.stderr and "weights.bin" in out.stderr


def test_xrec_serve_prints_the_url_answers_and_stops_on_ctrl_c(artifact, server_exe):
    proc = subprocess.Popen([sys.executable, "-m", "xrec", "serve", str(artifact("dlrm-small")), "--port", "0",
                             "--max-batch", "8"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url, lines, deadline = None, [], time.monotonic() + 120
        while url is None and time.monotonic() < deadline and proc.poll() is None:
            if select.select([proc.stdout], [], [], 0.5)[0]:
                lines.append(proc.stdout.readline())
                m = re.search(r"(http://127\.0\.0\.1:\d+)", lines[-1])
                url = m.group(1) if m else None
        assert url, (lines, proc.stderr.read() if proc.poll() is not None else "")
        assert "dlrm-small" in lines[0] and "max-batch 8 rows" in proc.stdout.readline()
        with urllib.request.urlopen(url + "/v2/health/ready") as r:
            assert r.status == 200
        # exec: the xrec process became the server (same pid)
        assert os.readlink(f"/proc/{proc.pid}/exe").endswith("xrec-server")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0
        assert "stopped" in proc.stdout.read()
        assert "SIGINT" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_example_request_is_a_valid_body_that_matches_pytorch(capsys, artifact, dlrm_server):
    """`xrec serve ART --example-request 3` prints what the README's curl example posts."""
    import numpy as np
    import torch

    from .conftest import TOL, model_of, post, torch_out
    assert main(["serve", str(artifact("dlrm-small")), "--example-request", "3"]) == 0
    body = json.loads(capsys.readouterr().out)
    status, answer = post(dlrm_server, "/v2/models/dlrm-small/infer", body)
    assert status == 200, answer
    assert answer["id"] == "example" and answer["outputs"][0]["shape"] == [3, 1]
    t = {i["name"]: torch.tensor(np.array(i["data"], dtype=np.float32 if i["datatype"] == "FP32" else np.int64)
                                 .reshape(i["shape"])) for i in body["inputs"]}
    args = (t["dense"], [t[f"indices[{k}]"] for k in range(26)], [t[f"offsets[{k}]"] for k in range(26)])
    np.testing.assert_allclose(np.array(answer["outputs"][0]["data"], np.float32).reshape(3, 1),
                               torch_out(model_of("dlrm-small"), args), **TOL)
