"""The kernels/cpu templates called directly (kernel_calls.cpp through ctypes): no compile, no runtime.

``xrec bench --kernel`` times these next to the compiled model and PyTorch, in the
same interleaved run, so a table shows what the kernel costs and what the runtime
around it adds. :func:`load` builds kernel_calls.cpp against ``kernels/cpu`` (this
checkout's, or a git revision's with :func:`kernels_at`, for before/after
comparisons) with the cpu target's flags for one ISA, cached by content hash.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import subprocess
from pathlib import Path

import numpy as np

SOURCE = Path(__file__).with_name("kernel_calls.cpp")
P = ctypes.c_void_p
c_long, c_int, c_i64 = ctypes.c_long, ctypes.c_int, ctypes.c_int64


class KernelCallsError(RuntimeError):
    """kernel_calls.cpp could not be built or the kernels revision not found; the message says why."""


def kernels_dir() -> Path:
    """This checkout's kernels/cpu (the headers the cpu target compiles)."""
    import xrec.kernels
    return Path(xrec.kernels.__file__).resolve().parent / "cpu"


def kernels_at(rev: str, cache: Path) -> Path:
    """kernels/cpu as of git revision ``rev`` of this checkout, extracted once under ``cache``."""
    repo = kernels_dir().parent.parent

    def git(*args, text=True):
        r = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=text)
        if r.returncode != 0:
            err = r.stderr if text else r.stderr.decode(errors="replace")
            raise KernelCallsError(f"git {' '.join(args)} failed in {repo}: {err.strip()}")
        return r.stdout
    sha = git("rev-parse", "--verify", f"{rev}^{{commit}}").strip()
    out = cache / f"kernels-{sha}"
    if not out.exists():
        tmp = Path(f"{out}.tmp{os.getpid()}")
        tmp.mkdir(parents=True)
        for f in git("ls-tree", "--name-only", sha, "kernels/cpu/").split():
            (tmp / Path(f).name).write_bytes(git("show", f"{sha}:{f}", text=False))
        os.replace(tmp, out)
    return out


def load(isa: str, cache: Path, kernels: Path | None = None) -> ctypes.CDLL:
    """kernel_calls.cpp built for ``isa`` (avx512, avx2, scalar) against ``kernels`` (default: this checkout's)."""
    from xrec.config import knobs
    from xrec.targets.cpu.build import ISA_FLAGS
    if isa not in ISA_FLAGS:
        raise KernelCallsError(f"unknown ISA {isa!r}; the cpu target builds {', '.join(ISA_FLAGS)}")
    kernels = kernels or kernels_dir()
    cxx = knobs.cxx or "g++"
    flags = ["-O3", "-std=c++17", *ISA_FLAGS[isa], f"-DXREC_ISA_NS={isa}", "-fopenmp", "-shared", "-fPIC",
             f"-I{kernels}"]
    h = hashlib.sha256(SOURCE.read_bytes())
    for p in sorted(kernels.glob("*.h")):
        h.update(p.name.encode() + p.read_bytes())
    h.update(" ".join([cxx, *flags]).encode())
    out = cache / f"libkernel_calls-{h.hexdigest()[:16]}.so"
    if not out.exists():
        cache.mkdir(parents=True, exist_ok=True)
        tmp = f"{out}.tmp{os.getpid()}"
        r = subprocess.run([*cxx.split(), *flags, str(SOURCE), "-o", tmp], capture_output=True, text=True)
        if r.returncode != 0:
            raise KernelCallsError(f"building {SOURCE.name} against {kernels} failed:\n{r.stderr[-2000:]}")
        os.replace(tmp, out)
    lib = ctypes.CDLL(str(out))
    lib.kc_packed_floats.restype = ctypes.c_size_t
    lib.kc_packed_floats.argtypes = [c_int, c_int]
    lib.kc_pack.argtypes = [P, c_int, c_int, P]
    lib.kc_pack.restype = None
    lib.kc_linear.argtypes = [P, c_long, c_int, P, c_int, P, c_int, P, c_int, c_int]
    lib.kc_linear.restype = None
    lib.kc_bags.argtypes = [c_int, P, P, P, P, P, P, P, c_long, P, c_long, P, c_int]
    lib.kc_bags.restype = c_int
    lib.kc_interaction.argtypes = [P, c_long, c_int, c_int, P, P, c_int, P, c_int]
    lib.kc_interaction.restype = None
    return lib


def ptr(a) -> ctypes.c_void_p:
    return ctypes.c_void_p(a.ctypes.data)


def aligned_empty(n: int, dtype=np.float32, align: int = 64) -> np.ndarray:
    """An uninitialised 1-D array of ``n`` elements whose data starts on an ``align``-byte boundary."""
    item = np.dtype(dtype).itemsize
    raw = np.empty(n + align // item, dtype)
    start = (-raw.ctypes.data % align) // item
    return raw[start:start + n]


class Linear:
    """Y = act(X W^T + b) through kernels/cpu's packed linear; ``act`` an xrec.ir.formats activation code."""

    def __init__(self, lib, weight: np.ndarray, bias: np.ndarray, act: int, threads: int):
        self.lib, self.act, self.threads = lib, act, threads
        self.N, self.K = weight.shape
        self.bias = np.ascontiguousarray(bias, np.float32)
        self.packed = aligned_empty(lib.kc_packed_floats(self.N, self.K))
        lib.kc_pack(ptr(np.ascontiguousarray(weight, np.float32)), self.N, self.K, ptr(self.packed))

    def __call__(self, x: np.ndarray, out: np.ndarray) -> np.ndarray:
        m = x.shape[0]
        split = 0 if m >= 64 * self.threads else 1      # few rows: split the columns instead
        self.lib.kc_linear(ptr(x), m, self.K, ptr(self.packed), self.N, ptr(self.bias), self.act, ptr(out),
                           self.threads, split)
        return out


class Bags:
    """Sum-pooled bags of several tables into one [batch, sum dim] buffer (kernels/cpu embedding_bags).

    ``tables``: 2-D uint8/float32 arrays of rows in ``fmt`` (an xrec.ir.formats code) layout;
    ``indices`` / ``offsets``: int64 arrays per table (offsets of length batch + 1)."""

    def __init__(self, lib, tables: list[np.ndarray], dims: list[int], fmt: int, threads: int):
        self.lib, self.tables, self.threads, self.nf = lib, tables, threads, len(tables)
        self.dims = dims
        cols = np.cumsum([0] + dims)
        self.width = int(cols[-1])
        n = self.nf
        self._tables = (P * n)(*[t.ctypes.data for t in tables])
        self._rows = (c_i64 * n)(*[t.shape[0] for t in tables])
        self._dims = (c_int * n)(*dims)
        self._row_bytes = (c_int * n)(*[t.shape[1] * t.itemsize for t in tables])
        self._fmts = (c_int * n)(*[fmt] * n)
        self._cols = (c_long * n)(*[int(c) for c in cols[:-1]])

    def __call__(self, indices: list[np.ndarray], offsets: list[np.ndarray], out: np.ndarray) -> np.ndarray:
        n, batch = self.nf, out.shape[0]
        code = self.lib.kc_bags(n, self._tables, self._rows, self._dims, self._row_bytes, self._fmts,
                                (P * n)(*[i.ctypes.data for i in indices]), (P * n)(*[o.ctypes.data for o in offsets]),
                                batch, ptr(out), self.width, self._cols, self.threads)
        if code:
            raise RuntimeError(f"kernels/cpu embedding_bags reported status {code} (bad ids or offsets)")
        return out


class Interaction:
    """out[b, p] = <T[b, i_p], T[b, j_p]> over the lower triangle of F vectors, in the zoo DLRM's pair order
    (kernels/cpu dot_interaction)."""

    def __init__(self, lib, num_vectors: int, threads: int):
        from xrec.zoo.dlrm import dot_interaction_indices
        self.lib, self.F, self.threads = lib, num_vectors, threads
        li, lj = dot_interaction_indices(num_vectors)           # the pair order of the zoo's DLRM
        self.pi, self.pj = np.array(li, np.int32), np.array(lj, np.int32)
        self.pairs = len(li)

    def __call__(self, t: np.ndarray, out: np.ndarray) -> np.ndarray:
        b, f, d = t.shape
        self.lib.kc_interaction(ptr(t), b, f, d, ptr(self.pi), ptr(self.pj), self.pairs, ptr(out), self.threads)
        return out
