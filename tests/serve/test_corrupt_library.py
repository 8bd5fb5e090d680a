"""A truncated library in an artifact's lib/ (issue 22 item 7c) is refused by its sha256 in manifest.json 'files'
before anything maps it: the server exits 1 naming the file, instead of dying of SIGBUS inside dlopen."""
from __future__ import annotations

import shutil
import subprocess

import pytest

from .conftest import needs_cpu

pytestmark = needs_cpu


def isa_libs(art):
    return sorted(p.name for p in (art / "lib").glob("xrec_model_*.so"))


@pytest.mark.parametrize("which", ["isa", "dispatcher"])
def test_server_refuses_a_truncated_library_by_its_sha256(artifact, server_exe, tmp_path, which):
    bad = tmp_path / "bad.xrec"
    shutil.copytree(artifact("dlrm-small"), bad)
    names = isa_libs(bad) if which == "isa" else ["libxrec_model.so"]
    for name in names:                       # every ISA build, so whichever this CPU picks is truncated
        lib = bad / "lib" / name
        lib.write_bytes(lib.read_bytes()[: lib.stat().st_size // 2])
    out = subprocess.run([str(server_exe), str(bad), "--port", "0"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1, (out.returncode, out.stderr)
    assert "cannot serve" in out.stderr and "corrupt or truncated" in out.stderr and "sha256" in out.stderr
