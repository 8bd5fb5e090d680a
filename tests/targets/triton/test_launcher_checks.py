"""The triton C library (lib/libxrec_model_cuda.so, what xrec-server loads for a triton artifact) refuses what a
careless caller passes, with the cpu library's checks and words (issue 22): NULL inputs/outputs/dims arrays,
negative dims, null data, a wrong output count, offsets that do not start at 0 or do not end at len(indices).
All of it is host code: it runs here on the stand-in driver (fake_cuda.c), in a child process per case so a
crash shows as a failed test. The fake driver logs every launch: a refused call launches nothing.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import xrec
from xrec import zoo
from xrec.targets.triton.launcher import DISPATCH_WORDS, GEN_WORDS, VALIDATE_WORDS
from xrec.testing import zoo_model

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent.parent
BATCH = 3


def _c_strings(path: Path) -> str:
    """The file's C string literals, adjacent ones joined ("a" "b" -> "ab"), one per line."""
    text = path.read_text()
    lits = re.findall(r'"((?:[^"\\\n]|\\.)*)"((?:\s*"(?:[^"\\\n]|\\.)*")*)', text)
    return "\n".join(a + "".join(re.findall(r'"((?:[^"\\\n]|\\.)*)"', rest)) for a, rest in lits)


def test_the_launchers_messages_are_the_cpu_codes_words():
    """Each message the launcher emits is the cpu code's string as written there (not a paraphrase)."""
    gen = _c_strings(REPO / "kernels" / "cpu" / "xrec_gen.h").splitlines()
    for key, words in GEN_WORDS.items():
        assert words in gen, f"GEN_WORDS[{key!r}] is not a string of kernels/cpu/xrec_gen.h: {words!r}"
    dispatch = _c_strings(REPO / "csrc" / "xrec_dispatch.cpp").splitlines()
    for key, words in DISPATCH_WORDS.items():
        if "%lld" in words:            # std::to_string there: the text either side of the number
            head, tail = words.split("%lld")
            assert head in dispatch and tail in dispatch, f"DISPATCH_WORDS[{key!r}]: {words!r}"
        else:
            assert words in dispatch, f"DISPATCH_WORDS[{key!r}] is not a string of csrc/xrec_dispatch.cpp: {words!r}"
    validate = (REPO / "compiler" / "runtime" / "validate.py").read_text()
    for key, words in VALIDATE_WORDS.items():
        assert words.split(": ", 1)[1] in validate, f"VALIDATE_WORDS[{key!r}]: {words!r}"


@pytest.fixture(scope="module")
def fake_cuda(tmp_path_factory):
    lib = tmp_path_factory.mktemp("fakecuda") / "libcuda.so.1"
    subprocess.run(["gcc", "-O1", "-shared", "-fPIC", "-Wall", "-Werror", "-Wl,-soname,libcuda.so.1",
                    str(HERE / "fake_cuda.c"), "-o", str(lib)], check=True)
    return lib


@pytest.fixture(scope="module")
def art(tmp_path_factory):
    m = zoo_model("dlrm-small", max_rows=100)
    out = tmp_path_factory.mktemp("launcher") / "dlrm-small.xrec"
    cm = xrec.compile(m, zoo.example_inputs(m), target="triton", out=out)
    assert cm.manifest["target_info"]["c_abi"]["runs_in_c"]
    dense, idx, off = zoo.make_inputs(m, BATCH, seed=2)
    arrays = [dense.numpy()] + [i.numpy() for i in idx] + [o.numpy() for o in off]
    np.savez(out.parent / "in.npz", *arrays)
    return out, out.parent / "in.npz", len(idx)


CHILD = textwrap.dedent(r'''
    import ctypes, json, sys
    import numpy as np

    class T(ctypes.Structure):
        _fields_ = [("data", ctypes.c_void_p), ("dtype", ctypes.c_int32), ("ndim", ctypes.c_int32),
                    ("shape", ctypes.c_int64 * 8)]

    fake, art, inputs, case, nf = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
    ctypes.CDLL(fake, mode=ctypes.RTLD_GLOBAL)
    lib = ctypes.CDLL(art + "/lib/libxrec_model_cuda.so")
    lib.xrec_model_load.restype = ctypes.c_void_p
    lib.xrec_last_error.restype = ctypes.c_char_p
    m = ctypes.c_void_p(lib.xrec_model_load(art.encode()))
    assert m, lib.xrec_last_error()
    data = np.load(inputs)
    arrays = [np.ascontiguousarray(data[f"arr_{k}"]) for k in range(len(data.files))]
    B = arrays[0].shape[0]
    i_idx, i_off = 1, 1 + nf                  # indices[0..nf), then offsets[0..nf)
    if case == "offsets_start":
        arrays[i_off + 3][0] = 1
    elif case == "offsets_end":
        arrays[i_off + 2][-1] -= 1
    elif case == "offsets_past_end":
        arrays[i_off + 2][-1] += 1
    codes = {np.dtype("float32"): 0, np.dtype("int32"): 3, np.dtype("int64"): 4}
    ins = (T * len(arrays))()
    for k, a in enumerate(arrays):
        ins[k].data = a.ctypes.data
        ins[k].dtype = codes[a.dtype]
        ins[k].ndim = a.ndim
        for d, s in enumerate(a.shape):
            ins[k].shape[d] = s
    out_buf = np.zeros((B, 1), np.float32)
    outs = (T * 1)()
    outs[0].data = out_buf.ctypes.data
    outs[0].dtype, outs[0].ndim = 0, 2
    outs[0].shape[0], outs[0].shape[1] = B, 1
    n = len(arrays)
    run = lambda: lib.xrec_model_run(m, ins, n, outs, 1)
    if case == "ok" or case.startswith("offsets"):
        rc = run()
    elif case.startswith("batch"):              # dense [b, 13] and every offsets [b + 1] with b < 0
        b = int(case[5:])
        ins[0].shape[0] = b
        for k in range(i_off, n):
            ins[k].shape[0] = b + 1
        outs[0].shape[0] = b
        rc = run()
    elif case == "empty_offsets":               # B = len(offsets) - 1 = -1
        ins[i_off].shape[0] = 0
        rc = run()
    elif case == "null_inputs":
        rc = lib.xrec_model_run(m, None, n, outs, 1)
    elif case == "null_outputs":
        rc = lib.xrec_model_run(m, ins, n, None, 1)
    elif case == "null_model":
        rc = lib.xrec_model_run(None, ins, n, outs, 1)
    elif case == "null_input_data":
        ins[i_idx + 4].data = None
        rc = run()
    elif case == "null_output_data":
        outs[0].data = None
        rc = run()
    elif case == "two_outputs":
        two = (T * 2)(outs[0], outs[0])
        rc = lib.xrec_model_run(m, ins, n, two, 2)
    elif case == "null_dims":
        rc = lib.xrec_model_output_shapes(m, ins, n, None)
    elif case == "null_shapes_inputs":
        dims = (ctypes.c_int64 * 8)()
        rc = lib.xrec_model_output_shapes(m, None, n, dims)
    elif case == "null_dims_batch":
        rc = lib.xrec_model_output_shape(m, 0, ctypes.c_int64(2), None)
    elif case == "negative_batch_shape":
        dims = (ctypes.c_int64 * 8)()
        rc = lib.xrec_model_output_shape(m, 0, ctypes.c_int64(-5), dims)
    print(json.dumps({"rc": rc, "error": lib.xrec_last_error().decode(), "B": B,
                      "nnz": [int(a.shape[0]) for a in arrays[i_idx:i_off]]}))
''')


def _run(fake_cuda, art, case: str, tmp_path: Path, track_host: bool = False) -> tuple[dict, list[str]]:
    path, inputs, nf = art
    log = tmp_path / "launches.log"
    env = {"FAKE_CUDA_LOG": str(log), "PATH": "/usr/bin:/bin"}
    if track_host:
        env["FAKE_CUDA_TRACK_HOST"] = "1"     # numpy memory is host memory unknown to CUDA (as the server's)
    r = subprocess.run([sys.executable, "-c", CHILD, str(fake_cuda), str(path), str(inputs), case, str(nf)],
                       capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, f"the call crashed (exit {r.returncode}): {r.stderr[-2000:]}"
    lines = log.read_text().splitlines() if log.is_file() else []
    return json.loads(r.stdout.strip().splitlines()[-1]), [ln for ln in lines if ln.startswith("L ")]


def test_good_inputs_still_launch(fake_cuda, art, tmp_path):
    got, launches = _run(fake_cuda, art, "ok", tmp_path)
    assert got["rc"] == 0, got
    assert launches


@pytest.mark.parametrize("case,code,words", [
    ("batch-1", 1, "input 'dense': dim 0 is negative (-1); sizes must be >= 0 (B,13)"),
    ("batch-1000000", 1, "input 'dense': dim 0 is negative (-1000000); sizes must be >= 0 (B,13)"),
    ("empty_offsets", 1, "feature 'indices[0]': offsets is empty; it needs batch+1 entries"),
    ("null_inputs", 1, "xrec_model_run: inputs is NULL"),
    ("null_outputs", 1, "xrec_model_run: outputs is NULL"),
    ("null_model", 3, "xrec_model_run: model is NULL"),
    ("null_input_data", 1, "input 'indices[4]': data is null"),
    ("null_output_data", 1, "output 0: wrong dtype, shape or null data (see xrec_model_output_shapes)"),
    ("two_outputs", 1, "expected 1 output tensors, got 2"),
    ("null_dims", 1, "xrec_model_output_shapes: dims is NULL (pass num_outputs * XREC_MAX_DIMS int64)"),
    ("null_shapes_inputs", 1, "xrec_model_output_shapes: inputs is NULL"),
    ("null_dims_batch", 1, "xrec_model_output_shape: dims is NULL (pass XREC_MAX_DIMS int64)"),
    ("negative_batch_shape", 1, "xrec_model_output_shape: batch is negative (-5)"),
])
def test_c_abi_refuses_null_arrays_negative_dims_and_bad_outputs_in_the_cpu_librarys_words(fake_cuda, art, tmp_path,
                                                                                          case, code, words):
    got, launches = _run(fake_cuda, art, case, tmp_path)
    assert (got["rc"], got["error"]) == (code, words)     # XREC_ERR_INPUT 1, XREC_ERR_RUNTIME 3 (as cpu)
    assert not launches, "a refused call launched kernels"


@pytest.mark.parametrize("track_host", [False, True], ids=["device-memory", "host-memory"])
@pytest.mark.parametrize("case", ["offsets_start", "offsets_end", "offsets_past_end"])
def test_offsets_ends_are_checked_on_the_host_before_any_launch(fake_cuda, art, tmp_path, case, track_host):
    """offsets[0] == 0 and offsets[-1] == len(indices), read from host memory or copied from the device."""
    got, launches = _run(fake_cuda, art, case, tmp_path, track_host)
    if case == "offsets_start":
        want = "feature 'indices[3]': offsets must start at 0, got 1"
    else:
        n = got["nnz"][2]
        last = n - 1 if case == "offsets_end" else n + 1
        want = (f"feature 'indices[2]': offsets end at {last} but indices holds {n} ids "
                "(offsets[-1] must equal len(indices))")
    assert (got["rc"], got["error"]) == (1, want)
    assert not launches, "offsets were checked after launching"
