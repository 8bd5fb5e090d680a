"""Roofline of this machine: stream read, random-row gather and FMA peak, from probes.c.

The probes are compiled once with ``knobs.cxx`` (g++) and cached under
``knobs.cache_dir/bench``. Machine ceilings are best-of-N (they are
ceilings); kernel suites time the gather probe inside the interleaved run on
the very tables and ids the kernels use, so its number drifts with the
machine exactly as theirs do.

    attainable(ai) = min(fma_peak, ai * bandwidth)      GFLOP/s at ai FLOP/byte
"""
from __future__ import annotations

import ctypes
import hashlib
import subprocess
import time
from pathlib import Path

import numpy as np

PROBE_SOURCE = Path(__file__).with_name("probes.c")
CXX_FLAGS = ["-O3", "-march=native", "-fopenmp", "-shared", "-fPIC"]
PARALLEL_MIN_BYTES = 256 * 1024
_LIB: ctypes.CDLL | None = None


class ProbeBuildError(RuntimeError):
    pass


def probe_library() -> ctypes.CDLL:
    """Build (once, cached by source + compiler + flags) and load the probes."""
    global _LIB
    if _LIB is not None:
        return _LIB
    from xrec.config import knobs
    if not PROBE_SOURCE.is_file():
        raise ProbeBuildError(f"roofline probe source missing: {PROBE_SOURCE} (reinstall xrec with its "
                              "bench package data)")
    src = PROBE_SOURCE.read_bytes()
    key = hashlib.sha256(src + knobs.cxx.encode() + " ".join(CXX_FLAGS).encode()).hexdigest()[:16]
    out_dir = Path(knobs.cache_dir) / "bench"
    out_dir.mkdir(parents=True, exist_ok=True)
    lib = out_dir / f"probes-{key}.so"
    if not lib.is_file():
        tmp = lib.with_suffix(f".tmp{time.monotonic_ns()}.so")
        cmd = [knobs.cxx, *CXX_FLAGS, "-x", "c++", str(PROBE_SOURCE), "-o", str(tmp)]
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        except OSError as e:
            raise ProbeBuildError(f"cannot run the C++ compiler {knobs.cxx!r} ({e}); set CXX to a g++") from None
        if r.returncode != 0:
            raise ProbeBuildError(f"building the roofline probes failed: {' '.join(cmd)}\n{r.stderr[-2000:]}")
        tmp.replace(lib)
    L = ctypes.CDLL(str(lib))
    dbl, i64, c_int = ctypes.c_double, ctypes.c_int64, ctypes.c_int
    vp = ctypes.c_void_p
    L.xb_stream_read.restype = dbl
    L.xb_stream_read.argtypes = [vp, i64, c_int, c_int, ctypes.POINTER(dbl)]
    L.xb_fma_peak.restype = dbl
    L.xb_fma_peak.argtypes = [i64, c_int, ctypes.POINTER(dbl)]
    L.xb_fma_lanes.restype = c_int
    L.xb_fma_accs.restype = c_int
    for name in ("xb_gather_f32", "xb_gather_i8"):
        f = getattr(L, name)
        f.restype = None
        f.argtypes = [c_int, vp, vp, vp, vp, vp, i64, vp, i64, c_int]
    _LIB = L
    return L


def stream_read_gbps(threads: int, mib: int = 256, reps: int = 5) -> float:
    """Sequential read bandwidth in GB/s (1e9 bytes/s), best of ``reps`` passes."""
    L = probe_library()
    n = (mib * 2**20 // 4) // 64 * 64
    a = np.ones(n, dtype=np.float32)
    sink = ctypes.c_double()
    L.xb_stream_read(a.ctypes.data, n, 1, threads, ctypes.byref(sink))     # first touch / warm
    best = L.xb_stream_read(a.ctypes.data, n, reps, threads, ctypes.byref(sink))
    return a.nbytes / best / 1e9


def fma_peak_gflops(threads: int, seconds: float = 0.3, reps: int = 3) -> float:
    """Peak fp32 FMA throughput in GFLOP/s (2 FLOPs per lane per FMA), best of ``reps``."""
    L = probe_library()
    sink = ctypes.c_double()
    lanes, accs = L.xb_fma_lanes(), L.xb_fma_accs()
    iters = 100_000
    dt = L.xb_fma_peak(iters, threads, ctypes.byref(sink))
    while dt < seconds / 4:
        iters *= 4
        dt = L.xb_fma_peak(iters, threads, ctypes.byref(sink))
    best = min(L.xb_fma_peak(iters, threads, ctypes.byref(sink)) for _ in range(reps))
    return 2.0 * lanes * accs * iters * threads / best / 1e9


class GatherProbe:
    """The plain C embedding-bag loop over given tables and ids; ``()`` runs it once.

    ``tables``: fp32 ``[rows, dim]`` arrays (fmt "fp32"), or uint8 ``[rows, dim + 8]``
    byte-rowwise arrays (fmt "int8"). ``ids`` / ``offsets``: per table, int64,
    offsets of length batch + 1. ``out`` holds the pooled ``[batch, sum(dims)]``.
    """

    FORMATS = ("fp32", "int8")     # the row formats probes.c reads

    def __init__(self, tables, ids, offsets, threads: int, fmt: str = "fp32"):
        if fmt not in self.FORMATS:
            raise ValueError(f"gather probe format must be {' or '.join(self.FORMATS)}, got {fmt!r}")
        self.L = probe_library()
        self.fmt = fmt
        self.tables = [np.ascontiguousarray(t) for t in tables]
        self.ids = [np.ascontiguousarray(np.asarray(i), dtype=np.int64) for i in ids]
        self.offsets = [np.ascontiguousarray(np.asarray(o), dtype=np.int64) for o in offsets]
        batches = {len(o) - 1 for o in self.offsets}
        if len(batches) != 1:
            raise ValueError(f"every table needs the same batch, got offsets lengths {sorted(batches)}")
        self.batch = batches.pop()
        if fmt == "fp32":
            dims = [t.shape[1] for t in self.tables]
            row_bytes = [4 * d for d in dims]
        else:
            dims = [t.shape[1] - 8 for t in self.tables]
            row_bytes = [d + 8 for d in dims]
        self.dims = dims
        self.bytes_touched = int(sum(len(i) * rb for i, rb in zip(self.ids, row_bytes)))
        cols = np.cumsum([0] + dims[:-1]).astype(np.int32)
        self.out = np.zeros((self.batch, sum(dims)), dtype=np.float32)
        n = len(self.tables)
        P = ctypes.c_void_p * n
        self._args = (n, P(*[t.ctypes.data for t in self.tables]),
                      np.asarray(dims, dtype=np.int32), cols,
                      P(*[i.ctypes.data for i in self.ids]), P(*[o.ctypes.data for o in self.offsets]))
        self._dims_arr, self._cols = self._args[2], self._args[3]
        # like PyTorch's grain size: tiny work runs on one thread (a parallel region costs more)
        self.threads = threads if self.bytes_touched >= PARALLEL_MIN_BYTES else 1
        self._fn = self.L.xb_gather_f32 if fmt == "fp32" else self.L.xb_gather_i8

    def __call__(self) -> np.ndarray:
        n, tabs, dims, cols, ids, offs = self._args
        self._fn(n, ctypes.cast(tabs, ctypes.c_void_p), dims.ctypes.data, cols.ctypes.data,
                 ctypes.cast(ids, ctypes.c_void_p), ctypes.cast(offs, ctypes.c_void_p),
                 self.batch, self.out.ctypes.data, self.out.shape[1], self.threads)
        return self.out


def random_gather_gbps(threads: int, table_mib: int = 256, dim: int = 64, batch: int = 4096,
                       pooling: int = 32, reps: int = 5, seed: int = 0) -> float:
    """Bytes of rows touched per second by the gather probe: uniform ids over one big table."""
    rng = np.random.default_rng(seed)
    rows = table_mib * 2**20 // (4 * dim)
    table = np.ones((rows, dim), dtype=np.float32)
    ids = rng.integers(0, rows, size=batch * pooling, dtype=np.int64)
    offs = np.arange(0, batch * pooling + 1, pooling, dtype=np.int64)
    probe = GatherProbe([table], [ids], [offs], threads)
    probe()
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        probe()
        best = min(best, time.perf_counter() - t0)
    return probe.bytes_touched / best / 1e9


def machine_ceilings(threads: int, quick: bool = False) -> dict:
    """The machine's roofline ceilings at ``threads`` threads (quick: smaller arrays, for tests)."""
    t0 = time.perf_counter()
    mib = 64 if quick else 256
    out = {
        "threads": threads,
        "stream_read_GBps": round(stream_read_gbps(threads, mib=mib, reps=2 if quick else 5), 2),
        "gather_GBps": round(random_gather_gbps(threads, table_mib=mib, batch=512 if quick else 4096,
                                                reps=2 if quick else 5), 2),
        "fma_peak_GFLOPs": round(fma_peak_gflops(threads, seconds=0.05 if quick else 0.3,
                                                 reps=1 if quick else 3), 1),
        "probe_source": PROBE_SOURCE.name,
        "flags": " ".join(CXX_FLAGS),
    }
    out["stream_MiB"] = mib
    out["seconds"] = round(time.perf_counter() - t0, 2)
    return out


def attainable_gflops(ai: float, ceilings: dict, bandwidth_key: str = "stream_read_GBps") -> float:
    """Roofline: min(FMA peak, arithmetic intensity x bandwidth), in GFLOP/s."""
    return min(float(ceilings["fma_peak_GFLOPs"]), ai * float(ceilings[bandwidth_key]))
