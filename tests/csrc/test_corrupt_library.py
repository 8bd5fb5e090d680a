"""The C loader (xrec_model_load of lib/libxrec_model.so) refuses a truncated lib/xrec_model_<isa>.so by the sha256
manifest.json 'files' records, with XREC_ERR_ARTIFACT's message, instead of dying of SIGBUS in dlopen (issue 22
item 7c). The load runs in a child process, so a crash shows as a failed test."""
from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap

import pytest

import xrec
from xrec import zoo
from xrec.targets import get_target
from xrec.targets.cpu.isa import best_isa
from xrec.testing import zoo_model

pytestmark = pytest.mark.skipif(not get_target("cpu").available()[0], reason="needs the cpu target")

CHILD = textwrap.dedent(r'''
    import ctypes, sys
    lib = ctypes.CDLL(sys.argv[1] + "/lib/libxrec_model.so")
    lib.xrec_model_load.restype = ctypes.c_void_p
    lib.xrec_last_error.restype = ctypes.c_char_p
    m = lib.xrec_model_load(sys.argv[1].encode())
    print("loaded" if m else "refused: " + lib.xrec_last_error().decode())
''')


@pytest.fixture(scope="module")
def art(tmp_path_factory):
    model = zoo_model("dlrm-small", 300)
    cm = xrec.compile(model, zoo.example_inputs(model), target="cpu", options={"isa": best_isa()},
                      out=tmp_path_factory.mktemp("lib") / "dlrm.xrec")
    return cm.path


def load(path):
    return subprocess.run([sys.executable, "-c", CHILD, str(path)], capture_output=True, text=True, timeout=120)


def test_intact_artifact_loads(art):
    r = load(art)
    assert r.returncode == 0 and r.stdout.strip() == "loaded", r


@pytest.mark.parametrize("cut", ["half", "one_byte", "empty"])
def test_c_loader_refuses_a_truncated_isa_library(art, tmp_path, cut):
    bad = shutil.copytree(art, tmp_path / "bad.xrec")
    for lib in (bad / "lib").glob("xrec_model_*.so"):
        data = lib.read_bytes()
        lib.write_bytes({"half": data[: len(data) // 2], "one_byte": data[:-1], "empty": b""}[cut])
    r = load(bad)
    assert r.returncode == 0, f"the load crashed (exit {r.returncode}): {r.stderr[-2000:]}"
    out = r.stdout.strip()
    assert out.startswith("refused:") and "corrupt or truncated" in out and "xrec_model_" in out, out


def test_c_loader_refuses_an_isa_library_the_manifest_does_not_list(art, tmp_path):
    import json
    bad = shutil.copytree(art, tmp_path / "unlisted.xrec")
    mf = json.loads((bad / "manifest.json").read_text())
    mf["files"] = {k: v for k, v in mf["files"].items() if not k.startswith("lib/xrec_model_")}
    (bad / "manifest.json").write_text(json.dumps(mf))
    r = load(bad)                           # the edit itself: refused by the manifest's layout checksum
    assert r.returncode == 0 and "layout_sha256" in r.stdout, r
    from xrec.runtime.manifest import seal
    (bad / "manifest.json").write_text(seal(mf))     # re-sealed: refused by the library check behind it
    r = load(bad)
    assert r.returncode == 0 and "does not list" in r.stdout, r
