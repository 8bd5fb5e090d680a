"""manifest.json is checked before an artifact is read (issue 22 item 7g): a malformed field (missing, of the wrong
type, a negative or out-of-file offset) is refused with an ArtifactError / XREC_ERR_ARTIFACT naming the field, by
the Python loader (xrec.load), the C ABI (xrec_model_load[_ex] of lib/libxrec_model.so) and the C++ runtime
(xrec::Model::open); the layout fields are covered by the checksum "layout_sha256" the compiler stores, so
swapped table offsets or an edited weights sha256 (with weights.bin edited to match) are refused by both
loaders, also when Python tells the C loader not to re-hash weights.bin. C loads run in child processes, so a
crash shows as a failed test."""
from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import xrec
from xrec import zoo
from xrec.artifact import ArtifactError
from xrec.runtime.manifest import LAYOUT_KEY, layout_sha256, seal
from xrec.targets import get_target
from xrec.targets.cpu.isa import best_isa
from xrec.testing import zoo_model

ROOT = Path(__file__).resolve().parents[2]
needs_cpu = pytest.mark.skipif(not get_target("cpu").available()[0], reason="needs the cpu target")

CHILD = textwrap.dedent(r'''
    import ctypes, sys
    class Opts(ctypes.Structure):
        _fields_ = [("isa", ctypes.c_char_p), ("threads", ctypes.c_int), ("verify_weights", ctypes.c_int),
                    ("lazy_weights", ctypes.c_int), ("huge_pages", ctypes.c_int)]
    lib = ctypes.CDLL(sys.argv[1] + "/lib/libxrec_model.so")
    lib.xrec_model_load_ex.restype = ctypes.c_void_p
    lib.xrec_last_error.restype = ctypes.c_char_p
    m = lib.xrec_model_load_ex(sys.argv[1].encode(), ctypes.byref(Opts(b"auto", 1, int(sys.argv[2]), 1, -1)))
    print("loaded" if m else "refused: " + lib.xrec_last_error().decode())
''')

DRIVER = r'''
#include <fstream>
#include <iostream>
#include <sstream>
#include "xrec_json.h"
#include "xrec_runtime.h"
int main(int argc, char** argv) {
  const std::string mode = argv[1], arg = argv[2];
  if (mode == "sha") {            // layout_sha256 of a manifest file, as the C loaders compute it
    std::ifstream f(arg, std::ios::binary);
    std::ostringstream s;
    s << f.rdbuf();
    std::cout << xrec::json::layout_sha256(xrec::json::parse(s.str())) << std::endl;
    return 0;
  }
  try {                           // xrec::Model::open, as the server and xrec_run load, not re-hashing weights.bin
    xrec::LoadOptions o;
    o.verify_weights = false;
    auto m = xrec::Model::open(arg, o);
    std::cout << "loaded" << std::endl;
  } catch (const xrec::Error& e) {
    std::cout << "refused(" << e.code << "): " << e.what() << std::endl;
  }
  return 0;
}
'''


# ------------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def cpu_art(tmp_path_factory):
    if not get_target("cpu").available()[0]:
        pytest.skip("needs the cpu target")
    model = zoo_model("dlrm-small", 300)
    cm = xrec.compile(model, zoo.example_inputs(model), target="cpu", options={"isa": best_isa()},
                      out=tmp_path_factory.mktemp("mi") / "dlrm.xrec")
    return cm.path


@pytest.fixture(scope="module")
def ref_art(tmp_path_factory):
    model = zoo_model("dlrm-small", 300)
    cm = xrec.compile(model, zoo.example_inputs(model), target="reference",
                      out=tmp_path_factory.mktemp("mi") / "dlrm-ref.xrec")
    return cm.path


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    if shutil.which("g++") is None:
        pytest.skip("needs g++")
    d = tmp_path_factory.mktemp("driver")
    (d / "driver.cpp").write_text(DRIVER)
    exe = d / "driver"
    subprocess.run(["g++", "-std=c++17", "-O1", f"-I{ROOT / 'csrc'}", str(d / "driver.cpp"),
                    str(ROOT / "csrc" / "xrec_runtime.cpp"), "-ldl", "-o", str(exe)], check=True,
                   capture_output=True, timeout=300)
    return exe


def c_load(path, verify_weights: int = 0) -> str:
    r = subprocess.run([sys.executable, "-c", CHILD, str(path), str(verify_weights)], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, f"the C load crashed (exit {r.returncode}): {r.stderr[-2000:]}"
    return r.stdout.strip()


def runtime_open(driver, path) -> str:
    r = subprocess.run([str(driver), "open", str(path)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"xrec::Model::open crashed (exit {r.returncode}): {r.stderr[-2000:]}"
    return r.stdout.strip()


def copy(art, tmp_path, name="bad.xrec") -> Path:
    return Path(shutil.copytree(art, tmp_path / name))


def edit(path: Path, fn, sealed: bool = False) -> dict:
    """Apply ``fn`` to the parsed manifest and write it back (re-sealed: with its layout checksum recomputed)."""
    mf = path / "manifest.json"
    m = json.loads(mf.read_text())
    fn(m)
    mf.write_text(seal(m) if sealed else json.dumps(m, indent=1))
    return m


def table(m, k=9):
    return m["weights"]["entries"][f"embeddings.bags.{k}.weight"]


# ------------------------------------------------------------------------------------------ malformed fields
E9 = 'weights.entries["embeddings.bags.9.weight"]'
CASES = {
    # name: (edit, the field the message names)
    "missing weights.bytes": (lambda m: m["weights"].pop("bytes"), "'weights.bytes' is missing"),
    "missing ir": (lambda m: m.pop("ir"), "'ir' is missing"),
    "missing entry offset": (lambda m: table(m).pop("offset"), f"'{E9}.offset' is missing"),
    "offset as a string": (lambda m: table(m).update(offset=str(table(m)["offset"])), f"'{E9}.offset' is \""),
    "negative offset": (lambda m: table(m).update(offset=-64), f"'{E9}.offset' is -64"),
    "offset past the file": (lambda m: table(m).update(offset=(m["weights"]["bytes"] // 64 + 1) * 64),
                             f"'{E9}.offset' is"),
    "unaligned offset": (lambda m: table(m).update(offset=table(m)["offset"] + 4), f"'{E9}.offset' is"),
    "nbytes as a float": (lambda m: table(m).update(nbytes=float(table(m)["nbytes"])), f"'{E9}.nbytes' is 76800.0"),
    "nbytes not the shape's": (lambda m: table(m).update(nbytes=64), f"'{E9}.nbytes' is 64"),
    "shape as a string": (lambda m: table(m).update(shape="300x64"), f"'{E9}.shape' is \"300x64\""),
    "shape with a string dim": (lambda m: table(m).update(shape=["300", 64]), f"'{E9}.shape[0]' is \"300\""),
    "dtype object": (lambda m: table(m).update(dtype="|O"), f"'{E9}.dtype' is \"|O\""),
    "entry as an array": (lambda m: m["weights"]["entries"].update({"embeddings.bags.9.weight": [0, 76800]}),
                          f"'{E9}' is an array"),
    "entries as an array": (lambda m: m["weights"].update(entries=[]), "'weights.entries' is an array"),
    "bytes negative": (lambda m: m["weights"].update(bytes=-1), "'weights.bytes' is -1"),
    "weights file outside": (lambda m: m["weights"].update(file="../weights.bin"), "'weights.file' is"),
    "weights sha256 a number": (lambda m: m["weights"].update(sha256=12345), "'weights.sha256' is 12345"),
    "files an array": (lambda m: m.update(files=[]), "'files' is an array"),
    "file hash not hex": (lambda m: m["files"].update({k: "x" for k in m["files"]}), "'files[\""),
    "num_rows a string": (lambda m: m["signature"]["features"][0].update(num_rows="300"),
                          "'signature.features[0].num_rows' is \"300\""),
    "features not an array": (lambda m: m["signature"].update(features={}), "'signature.features' is an object"),
    "target_info an array": (lambda m: m.update(target_info=[]), "'target_info' is an array"),
    "no layout checksum": (lambda m: m.pop(LAYOUT_KEY), "no 'layout_sha256'"),
}


@pytest.mark.parametrize("sealed", [False, True], ids=["as-edited", "resealed"])
@pytest.mark.parametrize("case", list(CASES))
def test_python_loader_names_the_malformed_field(ref_art, tmp_path, case, sealed):
    fn, field = CASES[case]
    if sealed and case == "no layout checksum":
        pytest.skip("sealing adds the checksum back")
    bad = copy(ref_art, tmp_path)
    edit(bad, fn, sealed)
    with pytest.raises(ArtifactError, match=re.escape(field)) as e:
        xrec.load(bad)
    assert "recompile" in str(e.value)


@needs_cpu
@pytest.mark.parametrize("sealed", [False, True], ids=["as-edited", "resealed"])
@pytest.mark.parametrize("case", list(CASES))
def test_c_loader_names_the_malformed_field(cpu_art, tmp_path, case, sealed):
    fn, field = CASES[case]
    if sealed and case == "no layout checksum":
        pytest.skip("sealing adds the checksum back")
    bad = copy(cpu_art, tmp_path)
    edit(bad, fn, sealed)
    out = c_load(bad)
    assert out.startswith("refused:") and field in out and "recompile" in out, out
    with pytest.raises(ArtifactError, match=re.escape(field)):     # and the cpu target through Python
        xrec.load(bad)


@needs_cpu
@pytest.mark.parametrize("case", ["negative offset", "offset as a string", "missing weights.bytes",
                                  "entries as an array", "no layout checksum"])
def test_cpp_runtime_names_the_malformed_field(cpu_art, driver, tmp_path, case):
    fn, field = CASES[case]
    bad = copy(cpu_art, tmp_path)
    edit(bad, fn)
    out = runtime_open(driver, bad)
    assert out.startswith("refused(2)") and field in out, out    # 2: XREC_ERR_ARTIFACT


# ------------------------------------------------------------------------------------ what the checksum covers
def swap_offsets(m):
    a, b = table(m, 9), table(m, 10)
    assert a["nbytes"] == b["nbytes"]
    a["offset"], b["offset"] = b["offset"], a["offset"]


def edit_weights_and_sha256(path: Path):
    """Change a row of table 9 in weights.bin and record the new file's sha256 in the manifest (only)."""
    m = json.loads((path / "manifest.json").read_text())
    w = path / "weights.bin"
    data = bytearray(w.read_bytes())
    off = table(m)["offset"]
    data[off:off + 256] = np.full(64, 123.0, np.float32).tobytes()
    w.write_bytes(bytes(data))
    edit(path, lambda m: m["weights"].update(sha256=hashlib.sha256(bytes(data)).hexdigest()))


@needs_cpu
def test_intact_artifact_loads_everywhere(cpu_art, driver):
    assert c_load(cpu_art, 0) == "loaded" and c_load(cpu_art, 1) == "loaded"
    assert runtime_open(driver, cpu_art) == "loaded"
    xrec.load(cpu_art)


def test_python_refuses_swapped_table_offsets(ref_art, tmp_path):
    bad = copy(ref_art, tmp_path)
    edit(bad, swap_offsets)
    with pytest.raises(ArtifactError, match="do not match its 'layout_sha256'"):
        xrec.load(bad)


@needs_cpu
def test_both_loaders_refuse_swapped_table_offsets(cpu_art, tmp_path):
    bad = copy(cpu_art, tmp_path)
    edit(bad, swap_offsets)
    with pytest.raises(ArtifactError, match="do not match its 'layout_sha256'"):
        xrec.load(bad)
    for verify in (0, 1):
        out = c_load(bad, verify)
        assert out.startswith("refused:") and "layout_sha256" in out, (verify, out)


@needs_cpu
def test_both_loaders_refuse_an_edited_weights_sha256(cpu_art, tmp_path):
    bad = copy(cpu_art, tmp_path)
    edit_weights_and_sha256(bad)
    with pytest.raises(ArtifactError, match="layout_sha256"):
        xrec.load(bad)                         # Python's sha256 of weights.bin matches; the manifest's does not
    out = c_load(bad, 0)                       # as Python loads it: the C loader does not re-hash weights.bin
    assert out.startswith("refused:") and "layout_sha256" in out, out


@needs_cpu
@pytest.mark.parametrize("how", ["swapped offsets", "edited weights sha256"])
def test_cpp_runtime_refuses_an_edited_layout(cpu_art, driver, tmp_path, how):
    bad = copy(cpu_art, tmp_path)
    edit(bad, swap_offsets) if how == "swapped offsets" else edit_weights_and_sha256(bad)
    out = runtime_open(driver, bad)
    assert out.startswith("refused(2)") and "layout_sha256" in out, out


@needs_cpu
def test_c_loader_refuses_an_edited_weights_checksum64(cpu_art, tmp_path):
    from xrec.targets.cpu.weights import checksum64
    bad = copy(cpu_art, tmp_path)
    edit_weights_and_sha256(bad)
    edit(bad, lambda m: m["target_info"].update(weights_checksum64=str(checksum64(bad / "weights.bin"))))
    for verify in (0, 1):
        out = c_load(bad, verify)
        assert out.startswith("refused:") and "layout_sha256" in out, (verify, out)


def test_informative_fields_are_not_covered_and_reserializing_keeps_the_checksum(ref_art, tmp_path):
    ok = copy(ref_art, tmp_path)
    m = json.loads((ok / "manifest.json").read_text())
    m["created"], m["source"] = "yesterday", {"note": "copied"}
    (ok / "manifest.json").write_text(json.dumps(m))            # no indent: other text, same values
    xrec.load(ok)


# ---------------------------------------------------------------------------- Python and C++ agree on the sum
def test_python_and_cpp_compute_the_same_layout_sha256(ref_art, driver, tmp_path):
    m = json.loads((ref_art / "manifest.json").read_text())
    got = subprocess.run([str(driver), "sha", str(ref_art / "manifest.json")], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert got == m[LAYOUT_KEY] == layout_sha256((ref_art / "manifest.json").read_text())
    # values a manifest may hold: non-ASCII and escaped names, astral characters, floats, exponents,
    # negative numbers, empty containers, nesting, keys whose UTF-8 order differs from their code points
    m["target_info"] = {"é\u00ff": 1.5e-07, "\U0001F600 z": [-0, -3, 1e+300, 0.1, [], {}], "a\"\\\n\t": None,
                        "\uffff": True, "\u00e9": False, "": {"b": [1, {"c": "\u0000x"}]}, "Z": 12345678901234}
    m["weights"]["entries"]["t\u00e9ble"] = {"offset": 0, "nbytes": 0, "dtype": "<f4", "shape": [0, 3]}
    for ascii_only in (True, False):
        p = tmp_path / f"m{ascii_only}.json"
        text = json.dumps(m, ensure_ascii=ascii_only, indent=None if ascii_only else 2)
        p.write_text(text, encoding="utf-8")
        got = subprocess.run([str(driver), "sha", str(p)], capture_output=True, text=True, check=True).stdout.strip()
        assert got == layout_sha256(text), ascii_only
    assert layout_sha256(json.dumps(m)) != m[LAYOUT_KEY]
