"""The C ABI (csrc/xrec_model.h) refuses what a careless caller passes (issue 22, item 7d): a negative batch, NULL
inputs / outputs / dims, with XREC_ERR_INPUT and a message, instead of reading out of bounds or crashing.
Each call runs in a child process, so a crash shows as a failed test rather than taking pytest down."""
from __future__ import annotations

import json
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
    import ctypes, json, sys
    import numpy as np
    import torch
    from xrec import zoo
    from xrec.testing import zoo_model

    class T(ctypes.Structure):
        _fields_ = [("data", ctypes.c_void_p), ("dtype", ctypes.c_int32), ("ndim", ctypes.c_int32),
                    ("shape", ctypes.c_int64 * 8)]

    art, case = sys.argv[1], sys.argv[2]
    lib = ctypes.CDLL(art + "/lib/libxrec_model.so")
    lib.xrec_model_load.restype = ctypes.c_void_p
    lib.xrec_last_error.restype = ctypes.c_char_p
    for f in ("xrec_model_run", "xrec_model_output_shapes", "xrec_model_output_shape"):
        getattr(lib, f).restype = ctypes.c_int
    m = ctypes.c_void_p(lib.xrec_model_load(art.encode()))
    assert m, lib.xrec_last_error()
    model = zoo_model("dlrm-small", 300)
    dense, idx, off = zoo.make_inputs(model, 2, seed=1)
    arrays = [np.ascontiguousarray(t.numpy()) for t in [dense, *idx, *off]]
    codes = {np.dtype("float32"): 0, np.dtype("int32"): 3, np.dtype("int64"): 4}
    ins = (T * len(arrays))()
    for k, a in enumerate(arrays):
        ins[k].data = a.ctypes.data
        ins[k].dtype = codes[a.dtype]
        ins[k].ndim = a.ndim
        for d, s in enumerate(a.shape):
            ins[k].shape[d] = s
    out_buf = np.zeros((2, 1), np.float32)
    outs = (T * 1)()
    outs[0].data = out_buf.ctypes.data
    outs[0].dtype, outs[0].ndim = 0, 2
    outs[0].shape[0], outs[0].shape[1] = 2, 1
    n = len(arrays)
    if case.startswith("batch"):                    # dense [B, 13] and every offsets [B + 1] with B < 0
        B = int(case[5:])
        ins[0].shape[0] = B
        for k in range(1 + len(idx), n):
            ins[k].shape[0] = B + 1
        outs[0].shape[0] = B
        rc = lib.xrec_model_run(m, ins, n, outs, 1)
    elif case == "null_inputs":
        rc = lib.xrec_model_run(m, None, n, outs, 1)
    elif case == "null_outputs":
        rc = lib.xrec_model_run(m, ins, n, None, 1)
    elif case == "null_dims":
        rc = lib.xrec_model_output_shapes(m, ins, n, None)
    elif case == "null_dims_batch":
        rc = lib.xrec_model_output_shape(m, 0, 2, None)
    elif case == "negative_batch_shape":
        dims = (ctypes.c_int64 * 8)()
        rc = lib.xrec_model_output_shape(m, 0, -5, dims)
    elif case == "null_shapes_inputs":
        dims = (ctypes.c_int64 * 8)()
        rc = lib.xrec_model_output_shapes(m, None, n, dims)
    print(json.dumps({"rc": rc, "error": lib.xrec_last_error().decode()}))
''')


@pytest.fixture(scope="module")
def art(tmp_path_factory):
    model = zoo_model("dlrm-small", 300)
    cm = xrec.compile(model, zoo.example_inputs(model), target="cpu", options={"isa": best_isa()},
                      out=tmp_path_factory.mktemp("abi") / "dlrm.xrec")
    return str(cm.path)


@pytest.mark.parametrize("case,words", [
    ("batch-1", "negative"), ("batch-1000000", "negative"),
    ("null_inputs", "NULL"), ("null_outputs", "NULL"), ("null_dims", "NULL"), ("null_dims_batch", "NULL"),
    ("negative_batch_shape", "negative"), ("null_shapes_inputs", "NULL"),
])
def test_c_abi_rejects_negative_batch_and_null_pointers_with_an_input_error(art, case, words):
    r = subprocess.run([sys.executable, "-c", CHILD, art, case], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"the call crashed (exit {r.returncode}): {r.stderr[-2000:]}"
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["rc"] == 1, got           # XREC_ERR_INPUT
    assert words in got["error"], got
