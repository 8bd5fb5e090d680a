"""Load a cpu artifact into Python and run it on numpy arrays without copies.

The control plane (load, introspection, errors) goes through ctypes to the
artifact's C ABI (lib/libxrec_model.so). The per-call path goes through a tiny
CPython extension (pycall.cpp, built once and cached) that reads the numpy
buffers, allocates the outputs and calls ``xrec_model_run`` with the GIL
released: ctypes or cffi would spend 0.3-1 us per array on ~50 arrays per call.
Built against torch's headers, the extension also reads torch tensors directly
(``CpuModel.call_torch``), which ``CompiledModel`` uses for torch inputs.
"""
from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import importlib.machinery
import importlib.util
import subprocess
import sysconfig
import warnings
from pathlib import Path

import numpy as np

from xrec.artifact import ArtifactError
from xrec.config import knobs
from xrec.progress import step
from xrec.runtime.validate import InputError

from . import build

HERE = Path(__file__).resolve().parent
MAX_DIMS = 8
NP_DTYPES = {0: np.float32, 1: np.float16, 2: np.float64, 3: np.int32, 4: np.int64, 5: np.int8, 6: np.uint8,
             7: np.bool_}


class LoadOptions(ctypes.Structure):
    _fields_ = [("isa", ctypes.c_char_p), ("threads", ctypes.c_int), ("verify_weights", ctypes.c_int),
                ("lazy_weights", ctypes.c_int), ("huge_pages", ctypes.c_int)]

HUGE_PAGES = {"auto": 0, "on": 1, "off": -1}


def csrc_dir() -> Path:
    """The C++ runtime sources (csrc/, installed as the package data xrec._csrc)."""
    try:
        import xrec._csrc as pkg
        for p in getattr(pkg, "__path__", []):
            if (Path(p) / "xrec_model.h").is_file():
                return Path(p)
    except ImportError:
        pass
    p = HERE.parents[1] / "csrc"
    if (p / "xrec_model.h").is_file():
        return p
    raise FileNotFoundError("cannot find xrec's C++ runtime sources (csrc/ / xrec._csrc)")


def _torch_flags() -> list[str]:
    """Compile/link flags for the torch path of pycall.cpp (torch's headers and libraries)."""
    import torch
    from torch.utils import cpp_extension
    flags = [f"-D_GLIBCXX_USE_CXX11_ABI={int(torch._C._GLIBCXX_USE_CXX11_ABI)}", "-DXREC_PYCALL_TORCH",
             "-std=c++20", "-w"]
    flags += [f"-I{p}" for p in cpp_extension.include_paths()]
    for p in cpp_extension.library_paths():
        flags += [f"-L{p}", f"-Wl,-rpath,{p}"]
    return flags + ["-lc10", "-ltorch", "-ltorch_cpu", "-ltorch_python"]


def _build_pycall(with_torch: bool):
    src = HERE / "pycall.cpp"
    inc = sysconfig.get_paths()["include"]
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    flags = ["-std=c++17", "-O2", "-fPIC", "-shared", f"-I{inc}", f"-I{csrc_dir()}"]
    version = ""
    if with_torch:
        import torch
        flags += _torch_flags()
        version = torch.__version__ + torch.__file__
    key = build._key([build.compiler_version(), " ".join(flags), suffix, version, src.read_bytes(),
                      (csrc_dir() / "xrec_model.h").read_bytes()])
    out = build.cache_root() / "pycall" / key / f"xrec_pycall{suffix}"
    if not out.is_file():
        if not (Path(inc) / "Python.h").is_file():
            raise build.CompilerError(f"Python.h not found in {inc}: install the Python development headers "
                                      "(python3-dev) to call cpu artifacts from Python")
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(f".{os.getpid()}.tmp")        # parallel test workers may build it at once
        say_step = step("build the torch binding of the cpu runtime (once per torch version)") if with_torch \
            else contextlib.nullcontext()
        with say_step:
            r = subprocess.run(build.compiler() + [str(src), "-o", str(tmp)] + flags, capture_output=True, text=True)
        if r.returncode != 0:
            raise build.CompilerError(f"building the Python binding failed:\n{r.stdout}{r.stderr}")
        tmp.replace(out)
    name = "xrec_pycall"
    loader = importlib.machinery.ExtensionFileLoader(name, str(out))
    spec = importlib.util.spec_from_file_location(name, str(out), loader=loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod


@functools.lru_cache(maxsize=None)
def pycall_module():
    """The compiled hot-path extension (built on first use, cached by content hash).

    Built against torch's headers when torch imports (adds ``call``, which reads torch tensors
    directly); if that build fails, the buffer-only build (``run``, numpy arrays) is used and
    the reason is logged once."""
    try:
        return _build_pycall(with_torch=True)
    except ImportError:
        pass
    except build.CompilerError as e:
        warnings.warn(f"xrec: the torch fast path of the cpu binding did not build; calls take the numpy "
                      f"path (about 60 us more per call on a DLRM). Reason: {str(e)[:2000]}", RuntimeWarning)
    return _build_pycall(with_torch=False)


def _bind(lib: ctypes.CDLL) -> ctypes.CDLL:
    P = ctypes.c_void_p
    sig = {
        "xrec_model_load_ex": (P, [ctypes.c_char_p, ctypes.POINTER(LoadOptions)]),
        "xrec_model_free": (None, [P]),
        "xrec_last_error": (ctypes.c_char_p, []),
        "xrec_model_num_inputs": (ctypes.c_int, [P]),
        "xrec_model_input_name": (ctypes.c_char_p, [P, ctypes.c_int]),
        "xrec_model_input_kind": (ctypes.c_char_p, [P, ctypes.c_int]),
        "xrec_model_input_dtype": (ctypes.c_int, [P, ctypes.c_int]),
        "xrec_model_input_shape": (ctypes.c_char_p, [P, ctypes.c_int]),
        "xrec_model_num_outputs": (ctypes.c_int, [P]),
        "xrec_model_output_dtype": (ctypes.c_int, [P, ctypes.c_int]),
        "xrec_model_output_ndim": (ctypes.c_int, [P, ctypes.c_int]),
        "xrec_model_output_shape": (ctypes.c_int, [P, ctypes.c_int, ctypes.c_int64, ctypes.POINTER(ctypes.c_int64)]),
        "xrec_model_isa": (ctypes.c_char_p, [P]),
        "xrec_model_weights_memory": (ctypes.c_char_p, [P]),
    }
    for name, (res, args) in sig.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = res, args
    return lib


class CpuModel:
    """A loaded cpu artifact: ``model(flat_inputs) -> flat outputs`` (numpy)."""

    def __init__(self, path, isa: str | None = None, threads: int | None = None, verify_weights: bool = False,
                 lazy_weights: bool = False, huge_pages: str | None = None):
        self.path = Path(path)
        libpath = self.path / "lib" / "libxrec_model.so"
        if not libpath.is_file():
            raise ArtifactError(f"{self.path}: no lib/libxrec_model.so; the artifact is incomplete")
        self.lib = _bind(ctypes.CDLL(str(libpath), mode=ctypes.RTLD_LOCAL))
        isa = isa if isa is not None else knobs.cpu_isa
        threads = threads if threads is not None else knobs.threads
        huge_pages = (huge_pages if huge_pages is not None else knobs.huge_pages).lower()
        if huge_pages not in HUGE_PAGES:
            raise ValueError(f"huge_pages must be one of {', '.join(HUGE_PAGES)} (knob huge_pages, env "
                             f"XREC_HUGE_PAGES), got {huge_pages!r}")
        opts = LoadOptions(isa=(isa or "auto").encode(), threads=int(threads or 0),
                           verify_weights=int(verify_weights), lazy_weights=int(lazy_weights),
                           huge_pages=HUGE_PAGES[huge_pages])
        h = self.lib.xrec_model_load_ex(str(self.path).encode(), ctypes.byref(opts))
        if not h:
            raise ArtifactError(self.lib.xrec_last_error().decode(errors="replace"))
        self.handle = h
        self.isa = self.lib.xrec_model_isa(h).decode()
        self.weights_memory = self.lib.xrec_model_weights_memory(h).decode()   # "file" | "hugepages"
        n_out = self.lib.xrec_model_num_outputs(h)
        outs = []
        for k in range(n_out):
            dt = self.lib.xrec_model_output_dtype(h, k)
            outs.append((self.lib.xrec_model_output_ndim(h, k), np.dtype(NP_DTYPES[dt]), dt))
        addr = lambda name: ctypes.cast(getattr(self.lib, name), ctypes.c_void_p).value  # noqa: E731
        self._ctx = (h, addr("xrec_model_run"), addr("xrec_model_output_shapes"), addr("xrec_last_error"), n_out,
                     np.empty, tuple(outs), InputError)
        # the per-call extension is built (once per torch version) or loaded on the first call, not here: a
        # compile that only writes the artifact never pays for it
        self._run = self._first_run
        self._call = self._first_call
        self.n_inputs = self.lib.xrec_model_num_inputs(h)
        self._free = self.lib.xrec_model_free

    def _bind_pycall(self) -> None:
        mod = pycall_module()
        self._run = mod.run
        self._call = getattr(mod, "call", None)

    def _first_run(self, ctx, flat):
        self._bind_pycall()
        return self._run(ctx, flat)

    def _first_call(self, ctx, args, n_inputs):
        self._bind_pycall()
        return NotImplemented if self._call is None else self._call(ctx, args, n_inputs)

    def inputs(self) -> list[dict]:
        """Names, kinds, dtypes and symbolic shapes of the flat inputs (from the C ABI)."""
        L, h = self.lib, self.handle
        return [{"name": L.xrec_model_input_name(h, i).decode(), "kind": L.xrec_model_input_kind(h, i).decode(),
                 "dtype": np.dtype(NP_DTYPES[L.xrec_model_input_dtype(h, i)]).name,
                 "shape": L.xrec_model_input_shape(h, i).decode()} for i in range(L.xrec_model_num_inputs(h))]

    def output_shape(self, k: int, batch: int) -> tuple:
        dims = (ctypes.c_int64 * MAX_DIMS)()
        if self.lib.xrec_model_output_shape(self.handle, k, batch, dims) != 0:
            raise ValueError(self.lib.xrec_last_error().decode())
        return tuple(dims[: self.lib.xrec_model_output_ndim(self.handle, k)])

    def __call__(self, flat):
        try:
            return self._run(self._ctx, flat)
        except (BufferError, ValueError) as e:      # a non-contiguous input: retry on contiguous copies
            if isinstance(e, InputError):
                raise
            return self._run(self._ctx, [np.ascontiguousarray(a) for a in flat])

    def call_torch(self, args: tuple):
        """Run on the model's positional arguments (nested tuples/lists of torch tensors) and return a
        list of torch outputs, without numpy views; NotImplemented when ``args`` holds anything else or
        a different number of tensors (the caller then takes the general path), or when the torch path
        of the binding is not built."""
        if self._call is None:
            return NotImplemented
        return self._call(self._ctx, args, self.n_inputs)

    def close(self):
        if getattr(self, "handle", None):
            self._free(self.handle)
            self.handle = None

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass
