"""The C++ runtime and its example program: built with cmake, run on .npy inputs, checked against PyTorch."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

import xrec
from xrec import zoo
from xrec.targets import get_target
from xrec.targets.cpu.isa import best_isa
from xrec.testing import zoo_model

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(shutil.which("cmake") is None or not get_target("cpu").available()[0],
                                reason="needs cmake and the cpu target")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("csrc")
    model = zoo_model("dlrm-small", 300)
    cm = xrec.compile(model, zoo.example_inputs(model), target="cpu", options={"isa": best_isa()},
                      out=tmp / "dlrm.xrec")
    build = tmp / "build"
    subprocess.run(["cmake", "-S", str(ROOT), "-B", str(build), f"-DXREC_ARTIFACT={cm.path}"], check=True,
                   capture_output=True)
    subprocess.run(["cmake", "--build", str(build), "-j2", "--target", "xrec_run", "xrec_run_linked"], check=True,
                   capture_output=True)
    return tmp, cm, model, build


def _write_inputs(tmp: Path, args, name: str) -> list[str]:
    dense, idx, off = args
    flat = [dense] + list(idx) + list(off)
    files = []
    for k, t in enumerate(flat):
        p = tmp / f"{name}_{k:03d}.npy"
        np.save(p, t.numpy())
        files.append(str(p))
    return files


@pytest.mark.parametrize("program", ["xrec_run", "xrec_run_linked"])
@pytest.mark.parametrize("batch,dtype", [(1, torch.int64), (37, torch.int32)])
def test_program_matches_pytorch(built, program, batch, dtype):
    tmp, cm, model, build = built
    args = zoo.make_inputs(model, batch, seed=batch, index_dtype=dtype, empty_bag_prob=0.2)
    files = _write_inputs(tmp, args, f"in{batch}")
    out = tmp / f"out_{program}_{batch}.npy"
    r = subprocess.run([str(build / program), str(cm.path), "--out", str(out), *files], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert f"shape [{batch},1]" in r.stdout
    with torch.no_grad():
        want = model(*args).numpy()
    np.testing.assert_allclose(np.load(out), want, rtol=1e-4, atol=1e-6)


def test_program_reports_bad_input(built):
    tmp, cm, model, build = built
    dense, idx, off = zoo.make_inputs(model, 4, seed=1)
    idx = [i.clone() for i in idx]
    idx[7][0] = 10**6
    files = _write_inputs(tmp, (dense, idx, off), "bad")
    r = subprocess.run([str(build / "xrec_run"), str(cm.path), *files], capture_output=True, text=True)
    assert r.returncode == 1
    assert "feature 'indices[7]': index 1000000 at position 0 is out of range" in r.stderr


def test_program_refuses_corrupt_artifact(built):
    tmp, cm, model, build = built
    bad = Path(shutil.copytree(cm.path, tmp / "corrupt.xrec"))
    w = bad / "weights.bin"
    data = bytearray(w.read_bytes())
    data[100] ^= 1
    w.write_bytes(bytes(data))
    r = subprocess.run([str(build / "xrec_run"), str(bad), "--info"], capture_output=True, text=True)
    assert r.returncode == 1 and "checksum" in r.stderr and "corrupt" in r.stderr
