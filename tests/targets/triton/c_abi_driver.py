"""Drive a triton artifact's C library (lib/libxrec_model_cuda.so) through its C ABI with ctypes.

    python c_abi_driver.py ARTIFACT INPUTS.npz OUT.json [--fake-cuda libcuda.so.1] [--isa sm_80]

Run as a child process by the tests: with --fake-cuda the stand-in driver is loaded first (its
soname is libcuda.so.1, so the library's dlopen finds it) and tensors live in host memory; on a
GPU machine without --fake-cuda, inputs are copied to the device with torch and the outputs back.
Writes what happened (return codes, error text, tensor addresses, outputs) as JSON.
"""
from __future__ import annotations

import ctypes
import json
import sys
from pathlib import Path

import numpy as np

MAX_DIMS = 8
DTYPES = {np.dtype(np.float32): 0, np.dtype(np.float16): 1, np.dtype(np.float64): 2, np.dtype(np.int32): 3,
          np.dtype(np.int64): 4, np.dtype(np.int8): 5, np.dtype(np.uint8): 6, np.dtype(np.bool_): 7}
NP = {v: k for k, v in DTYPES.items()}


class Tensor(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("dtype", ctypes.c_int32), ("ndim", ctypes.c_int32),
                ("shape", ctypes.c_int64 * MAX_DIMS)]


class LoadOptions(ctypes.Structure):
    _fields_ = [("isa", ctypes.c_char_p), ("threads", ctypes.c_int), ("verify_weights", ctypes.c_int)]


def tensor(ptr: int, dtype: np.dtype, shape) -> Tensor:
    t = Tensor()
    t.data = ptr
    t.dtype = DTYPES[np.dtype(dtype)]
    t.ndim = len(shape)
    for k, d in enumerate(shape):
        t.shape[k] = d
    return t


def main(argv) -> int:
    import argparse
    p = argparse.ArgumentParser()
    p.add_argument("artifact")
    p.add_argument("inputs")
    p.add_argument("out")
    p.add_argument("--fake-cuda")
    p.add_argument("--isa")
    p.add_argument("--host-io", action="store_true",
                   help="on a GPU: pass host memory (numpy arrays) instead of CUDA tensors")
    a = p.parse_args(argv)
    if a.fake_cuda:
        ctypes.CDLL(a.fake_cuda, mode=ctypes.RTLD_GLOBAL)
    lib = ctypes.CDLL(str(Path(a.artifact) / "lib" / "libxrec_model_cuda.so"))
    lib.xrec_model_load_ex.restype = ctypes.c_void_p
    lib.xrec_model_load_ex.argtypes = [ctypes.c_char_p, ctypes.POINTER(LoadOptions)]
    lib.xrec_last_error.restype = ctypes.c_char_p
    lib.xrec_model_isa.restype = ctypes.c_char_p
    lib.xrec_model_isa.argtypes = [ctypes.c_void_p]
    lib.xrec_model_run.argtypes = [ctypes.c_void_p, ctypes.POINTER(Tensor), ctypes.c_int, ctypes.POINTER(Tensor),
                                   ctypes.c_int]
    lib.xrec_model_output_shapes.argtypes = [ctypes.c_void_p, ctypes.POINTER(Tensor), ctypes.c_int,
                                             ctypes.POINTER(ctypes.c_int64)]
    lib.xrec_model_free.argtypes = [ctypes.c_void_p]
    res: dict = {}
    opts = LoadOptions(a.isa.encode() if a.isa else None, 0, 0)
    m = lib.xrec_model_load_ex(a.artifact.encode(), ctypes.byref(opts))
    res["load_error"] = lib.xrec_last_error().decode()
    if not m:
        Path(a.out).write_text(json.dumps(res))
        return 0
    res["isa"] = lib.xrec_model_isa(m).decode()
    data = np.load(a.inputs)
    arrays = [np.ascontiguousarray(data[f"arr_{k}"]) for k in range(len(data.files))]
    on_gpu = not a.fake_cuda and not a.host_io
    if on_gpu:
        import torch
        dev = [torch.from_numpy(x).cuda() for x in arrays]
        ptrs = [t.data_ptr() for t in dev]
    else:
        ptrs = [x.ctypes.data for x in arrays]
    ins = (Tensor * len(arrays))(*[tensor(pt, x.dtype, x.shape) for pt, x in zip(ptrs, arrays)])
    n_out = lib.xrec_model_num_outputs(ctypes.c_void_p(m))
    dims = (ctypes.c_int64 * (MAX_DIMS * n_out))()
    res["shapes_rc"] = lib.xrec_model_output_shapes(m, ins, len(arrays), dims)
    res["shapes_error"] = lib.xrec_last_error().decode()
    if res["shapes_rc"]:
        Path(a.out).write_text(json.dumps(res))
        return 0
    outs, out_arrays, keep = [], [], []
    for k in range(n_out):
        nd = lib.xrec_model_output_ndim(ctypes.c_void_p(m), k)
        shape = [dims[k * MAX_DIMS + d] for d in range(nd)]
        dt = NP[lib.xrec_model_output_dtype(ctypes.c_void_p(m), k)]
        host = np.full(shape, -7.0, dt)
        if on_gpu:
            import torch
            t = torch.from_numpy(host).cuda()
            keep.append(t)
            outs.append(tensor(t.data_ptr(), dt, shape))
        else:
            outs.append(tensor(host.ctypes.data, dt, shape))
        out_arrays.append(host)
    outs_c = (Tensor * n_out)(*outs)
    res["run_rc"] = lib.xrec_model_run(m, ins, len(arrays), outs_c, n_out)
    res["run_error"] = lib.xrec_last_error().decode()
    res["inputs"] = ptrs
    res["outputs"] = [int(o.data) for o in outs]
    if on_gpu:
        out_arrays = [t.cpu().numpy() for t in keep]
    res["output_values"] = [o.tolist() for o in out_arrays]
    lib.xrec_model_free(ctypes.c_void_p(m))
    Path(a.out).write_text(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
