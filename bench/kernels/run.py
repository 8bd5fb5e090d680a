"""Microbenchmarks of kernels/cpu against PyTorch on the same shapes, interleaved.

    .venv/bin/python bench/kernels/run.py                 # everything, 1 and 2 threads
    .venv/bin/python bench/kernels/run.py --only dense --threads 1 --quick
    .venv/bin/python bench/kernels/run.py --json out.json

Builds bench_kernels.cpp (the kernels compiled for AVX-512 like the cpu target's
avx512 build, plus a plain gather roofline probe and an FMA peak probe) as a shared
library and calls it through ctypes from this process, so each sample of our
kernel, of the probe and of torch (F.linear [+ activation], oneDNN's prepacked
linear, F.embedding_bag, torch.ops.quantized.embedding_bag_byte_rowwise_offsets,
bmm+index) alternates A B C A B C ... on the same buffers: this machine drifts
between a slow and a fast memory state for minutes, so only interleaved medians
from one run are compared. Each sample times a batch of calls sized to ~10 ms.

Tables are allocated with mmap + madvise(MADV_HUGEPAGE) (as the cpu target
should allocate big tables) unless --no-hugepages; torch reads the same memory.
"""
from __future__ import annotations

import argparse
import ctypes
import hashlib
import json
import mmap
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch  # before loading the library: it then shares torch's libgomp.so.1
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
KERNELS = ROOT / "kernels" / "cpu"
P = ctypes.c_void_p
c_long, c_int, c_i64 = ctypes.c_long, ctypes.c_int, ctypes.c_int64


# ------------------------------------------------------------------ build + load
def kernels_at(rev: str) -> Path:
    """kernels/cpu as of git revision ``rev``, extracted to a temp dir (for --baseline)."""
    sha = subprocess.run(["git", "-C", str(ROOT), "rev-parse", rev], check=True, capture_output=True,
                         text=True).stdout.strip()
    out = Path(tempfile.gettempdir()) / "xrec-kernel-bench" / f"kernels-{sha}"
    if not out.exists():
        tmp = Path(str(out) + f".tmp{os.getpid()}")
        tmp.mkdir(parents=True)
        files = subprocess.run(["git", "-C", str(ROOT), "ls-tree", "--name-only", sha, "kernels/cpu/"],
                               check=True, capture_output=True, text=True).stdout.split()
        for f in files:
            data = subprocess.run(["git", "-C", str(ROOT), "show", f"{sha}:{f}"], check=True,
                                  capture_output=True).stdout
            (tmp / Path(f).name).write_bytes(data)
        os.replace(tmp, out)
    return out


def build(isa_flags=("-march=x86-64-v4", "-DXREC_ISA_NS=avx512"), kernels: Path = KERNELS) -> ctypes.CDLL:
    src = HERE / "bench_kernels.cpp"
    h = hashlib.sha256(src.read_bytes())
    h.update(str(kernels).encode())
    for p in sorted(kernels.glob("*.h")):
        h.update(p.read_bytes())
    h.update(" ".join(isa_flags).encode())
    out = Path(tempfile.gettempdir()) / "xrec-kernel-bench" / f"libbench-{h.hexdigest()[:16]}.so"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        cmd = ["g++", "-O3", "-std=c++17", *isa_flags, "-fopenmp", "-shared", "-fPIC", "-Wall",
               f"-I{kernels}", str(src), "-o", str(out) + ".tmp"]
        subprocess.run(cmd, check=True)
        os.replace(str(out) + ".tmp", out)
    return _setup(ctypes.CDLL(str(out)))


def _setup(lib):
    lib.b_fma_peak.restype = ctypes.c_double
    lib.b_fma_peak.argtypes = [c_int, c_long]
    lib.b_use_thread_cpu_clock.argtypes = [c_int]
    lib.b_use_thread_cpu_clock.restype = None
    lib.b_fma_flops_per_iter.restype = ctypes.c_double
    lib.b_packed_floats.restype = ctypes.c_size_t
    lib.b_packed_floats.argtypes = [c_int, c_int]
    lib.b_pack.argtypes = [P, c_int, c_int, P]
    lib.b_linear.restype = ctypes.c_double
    lib.b_linear.argtypes = [P, c_long, c_int, P, c_int, P, c_int, P, c_int, c_int, c_int]
    lib.b_bag.restype = ctypes.c_double
    lib.b_bag.argtypes = [P, c_i64, c_int, c_int, c_int, c_int, P, P, c_long, P, P, c_int, c_int, c_int, c_int]
    lib.b_stage.restype = ctypes.c_double
    lib.b_stage.argtypes = [c_int, P, P, P, P, P, P, P, c_long, P, c_long, P, c_int, c_int]
    lib.b_gather_probe.restype = ctypes.c_double
    lib.b_gather_probe.argtypes = [P, c_int, P, P, c_long, c_int, c_int, c_int]
    lib.b_interaction.restype = ctypes.c_double
    lib.b_interaction.argtypes = [P, c_long, c_int, c_int, P, P, c_int, P, c_int, c_int]
    return lib


def ptr(a) -> ctypes.c_void_p | None:
    return None if a is None else ctypes.c_void_p(a.ctypes.data)


def huge_array(shape, dtype, hugepages=True) -> np.ndarray:
    """A zeroed array in its own anonymous mapping, madvise(MADV_HUGEPAGE)'d."""
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    m = mmap.mmap(-1, max(nbytes, 1), flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    if hugepages and hasattr(mmap, "MADV_HUGEPAGE"):
        m.madvise(mmap.MADV_HUGEPAGE)
    return np.frombuffer(m, dtype=dtype, count=int(np.prod(shape))).reshape(shape)


# ------------------------------------------------------------------ timing
class Timed:
    """A callable `run(reps) -> seconds` with its name; calibrated to ~target s per sample."""

    def __init__(self, name, run):
        self.name, self.run, self.reps, self.samples = name, run, 1, []

    def calibrate(self, target):
        self.run(1)
        t = max(self.run(1), 1e-7)
        self.reps = max(1, min(100000, int(target / t)))

    def sample(self):
        self.samples.append(self.run(self.reps) / self.reps)

    @property
    def median(self):
        return statistics.median(self.samples)


CLOCK = {"fn": time.perf_counter}
BASE: dict[str, ctypes.CDLL | None] = {"lib": None, "rev": None}   # --baseline build


def with_base(name, make):
    """[Timed(name, make(lib))] plus the same on the --baseline build, if any."""
    items = [Timed(name, make(None))]
    if BASE["lib"] is not None:
        items.append(Timed("base", make(BASE["lib"])))
    return items


def base_ratio(row, med):
    if "base" in med:
        row["speedup_vs_base"] = med["base"] / med["ours"]


def set_clock(lib, threads, mode):
    """Thread CPU time for single-threaded runs (mode 'auto'/'cpu'), else wall time."""
    cpu = mode == "cpu" or (mode == "auto" and threads == 1)
    for L in (lib, BASE["lib"]):
        if L is not None:
            L.b_use_thread_cpu_clock(int(cpu))
    CLOCK["fn"] = time.thread_time if cpu else time.perf_counter
    return "thread-cpu" if cpu else "wall"


def py_timer(fn):
    def run(reps):
        clock = CLOCK["fn"]
        t0 = clock()
        for _ in range(reps):
            fn()
        return clock() - t0
    return run


def interleave(timeds, samples, target):
    for t in timeds:
        t.calibrate(target)
    for _ in range(samples):
        for t in timeds:
            t.sample()
    return {t.name: t.median for t in timeds}


# ------------------------------------------------------------------ cases
DENSE_SHAPES = [  # (K, N, act) from the zoo: DLRM bottom/top, dlrm-v2 top, DCN-v2 low-rank cross
    (13, 512, "relu"), (512, 256, "relu"), (256, 64, "relu"), (415, 512, "relu"), (256, 1, "sigmoid"),
    (3456, 1024, "relu"), (1024, 1024, "relu"), (1024, 512, "relu"), (3456, 512, "none"),
    (512, 3456, "none")]
ACT = {"none": 0, "relu": 1, "sigmoid": 2, "tanh": 3, "gelu": 4, "gelu_tanh": 5, "silu": 6}
TORCH_ACT = {"none": lambda y: y, "relu": torch.relu_, "sigmoid": torch.sigmoid_, "tanh": torch.tanh_,
             "gelu": F.gelu, "gelu_tanh": lambda y: F.gelu(y, approximate="tanh"), "silu": F.silu}
ONEDNN_POST = {"none": ("none", ""), "relu": ("relu", ""), "sigmoid": ("sigmoid", ""), "tanh": ("tanh", ""),
               "gelu": ("gelu", "none"), "gelu_tanh": ("gelu", "tanh"), "silu": ("swish", "")}


def peak_item(lib, threads):
    """FMA peak probe as an interleaved sample: 'reps' = 1000 loop iterations."""
    return Timed("peak", lambda r: 1000 * r * lib.b_fma_flops_per_iter() * threads / (lib.b_fma_peak(threads, 1000 * r) * 1e9))


def flops_per_s(lib, threads, seconds_per_rep):
    return 1000 * lib.b_fma_flops_per_iter() * threads / seconds_per_rep


def bench_dense(lib, threads, batches, samples, target, quick, only_shapes=None):
    rows = []
    shapes = DENSE_SHAPES[:3] + DENSE_SHAPES[5:6] if quick else DENSE_SHAPES
    if only_shapes:
        shapes = [(int(x[0]), int(x[1]), x[2] if len(x) > 2 else "relu") for x in only_shapes]
    for K, N, act in shapes:
        g = np.random.default_rng(K * 7 + N)
        W = (g.standard_normal((N, K)) / np.sqrt(K)).astype(np.float32)
        b = g.standard_normal(N).astype(np.float32)
        packed = np.empty(lib.b_packed_floats(N, K) + 16, np.float32)
        packed = packed[(-packed.ctypes.data // 4) % 16:][:lib.b_packed_floats(N, K)]   # 64-byte aligned
        lib.b_pack(ptr(W), N, K, ptr(packed))
        bpacked = None
        if BASE["lib"] is not None:   # the baseline revision may pack differently
            bpacked = np.empty(BASE["lib"].b_packed_floats(N, K) + 16, np.float32)
            bpacked = bpacked[(-bpacked.ctypes.data // 4) % 16:][:BASE["lib"].b_packed_floats(N, K)]
            BASE["lib"].b_pack(ptr(W), N, K, ptr(bpacked))
        tw, tb = torch.from_numpy(W), torch.from_numpy(b)
        for M in batches:
            X = g.standard_normal((M, K)).astype(np.float32)
            Y = np.empty((M, N), np.float32)
            tx = torch.from_numpy(X)
            split = 0 if M >= 64 * threads else 1
            mine = with_base("ours", lambda L, X=X, M=M, Y=Y, split=split: (lambda r: (L or lib).b_linear(
                ptr(X), M, K, ptr(bpacked if L else packed), N, ptr(b), ACT[act], ptr(Y), threads, r, split)))
            fa = TORCH_ACT[act]
            tlin = Timed("torch", py_timer(lambda tx=tx: fa(F.linear(tx, tw, tb))))
            items = mine + [tlin]
            try:
                wp = torch.ops.mkldnn._reorder_linear_weight(tw, M)
                post = ONEDNN_POST[act]
                items.append(Timed("onednn", py_timer(
                    lambda tx=tx, wp=wp, post=post: torch.ops.mkldnn._linear_pointwise(tx, wp, tb, post[0], [],
                                                                                       post[1]))))
            except Exception:  # noqa: BLE001 - oneDNN prepack unavailable in this torch build
                pass
            items.append(peak_item(lib, threads))
            torch.set_num_threads(threads)
            med = interleave(items, samples, target)
            peak = flops_per_s(lib, threads, med["peak"]) * 1e-9
            ref = TORCH_ACT[act](F.linear(tx, tw, tb))
            lib.b_linear(ptr(X), M, K, ptr(packed), N, ptr(b), ACT[act], ptr(Y), threads, 1, split)
            err = float(np.abs(Y - ref.numpy()).max())
            flops = 2.0 * M * N * K
            rows.append(dict(kind="dense", shape=f"{K}->{N} {act}", M=M, threads=threads,
                             ours_us=med["ours"] * 1e6, torch_us=med["torch"] * 1e6,
                             onednn_us=med.get("onednn", float("nan")) * 1e6,
                             ours_gflops=flops / med["ours"] * 1e-9,
                             torch_gflops=flops / med["torch"] * 1e-9,
                             onednn_gflops=flops / med["onednn"] * 1e-9 if "onednn" in med else float("nan"),
                             speedup_vs_torch=med["torch"] / med["ours"],
                             speedup_vs_onednn=(med["onednn"] / med["ours"]) if "onednn" in med else float("nan"),
                             max_abs_err=err))
            base_ratio(rows[-1], med)
            rows[-1]["peak_gflops"] = peak
            rows[-1]["of_peak"] = rows[-1]["ours_gflops"] / peak
            rows[-1]["torch_of_peak"] = rows[-1]["torch_gflops"] / peak
            print(fmt_row(rows[-1]), flush=True)
    return rows


BAG_CASES = [  # (rows, dim, pooling)
    (4096, 64, 1), (4096, 64, 20), (4096, 128, 20),
    (100_000, 64, 20), (100_000, 128, 20),
    (1_000_000, 64, 1), (1_000_000, 64, 20), (1_000_000, 64, 100), (1_000_000, 128, 20),
]


def bench_bags(lib, threads, samples, target, quick, hugepages, batch=2048, formats=("f32", "i8"),
               prefetch_sweep=(), cases=None):
    """f32 vs F.embedding_bag, i8 vs FBGEMM's embedding_bag_byte_rowwise_offsets, i4 vs
    embedding_bag_4bit_rowwise_offsets (sum pooling, same ids and memory)."""
    rows = []
    cases = cases or ([BAG_CASES[1], BAG_CASES[6]] if quick else BAG_CASES)
    tables = {}
    for R, D, L in cases:
        g = np.random.default_rng(R + D)
        if (R, D) not in tables:
            tables = {}                          # keep one set alive at a time (memory)
            tf = huge_array((R, D), np.float32, hugepages)
            for s in range(0, R, 65536):
                tf[s:s + 65536] = g.standard_normal((min(65536, R - s), D), dtype=np.float32)
            tq = t4 = None
            if "i8" in formats:
                tq = huge_array((R, D + 8), np.uint8, hugepages)
                tq[:] = _prepack_chunks(tf, torch.ops.quantized.embedding_bag_byte_prepack, D + 8)
            if "i4" in formats:
                t4 = huge_array((R, (D + 1) // 2 + 4), np.uint8, hugepages)
                t4[:] = _prepack_chunks(tf, torch.ops.quantized.embedding_bag_4bit_prepack, (D + 1) // 2 + 4)
            tables = {(R, D): (tf, tq, t4)}
        tf, tq, t4 = tables[(R, D)]
        g = np.random.default_rng(R + D + L + batch)
        idx = g.integers(0, R, batch * L).astype(np.int64)
        off = np.arange(0, batch * L + 1, L, dtype=np.int64)
        out = np.empty((batch, D), np.float32)
        ti, to = torch.from_numpy(idx), torch.from_numpy(off)
        for fmt in formats:
            table = {"f32": tf, "i8": tq, "i4": t4}[fmt]
            row_bytes = table.shape[1] * table.itemsize
            f = {"f32": 0, "i8": 2, "i4": 3}[fmt]
            mine = with_base("ours", lambda L, table=table, row_bytes=row_bytes, f=f: (lambda r: (L or lib).b_bag(
                ptr(table), R, D, row_bytes, f, 0, ptr(idx), ptr(off), batch, None, ptr(out), threads, r, 0, -1)))
            sweep = [Timed(f"ours_pf{d}", lambda r, table=table, row_bytes=row_bytes, f=f, d=d: lib.b_bag(
                ptr(table), R, D, row_bytes, f, 0, ptr(idx), ptr(off), batch, None, ptr(out), threads, r, 0, d))
                for d in prefetch_sweep]
            probe = Timed("probe", lambda r, table=table, row_bytes=row_bytes: lib.b_gather_probe(
                ptr(table), row_bytes, ptr(idx), ptr(off), batch, threads, r, 0))
            probe_pf = Timed("probe_pf", lambda r, table=table, row_bytes=row_bytes: lib.b_gather_probe(
                ptr(table), row_bytes, ptr(idx), ptr(off), batch, threads, r, 16))
            if fmt == "f32":
                tt = torch.from_numpy(tf)
                tor = Timed("torch", py_timer(lambda: F.embedding_bag(ti, tt, to, mode="sum", include_last_offset=True)))
                ref = F.embedding_bag(ti, tt, to, mode="sum", include_last_offset=True).numpy()
            else:
                tt = torch.from_numpy(table)
                op = (torch.ops.quantized.embedding_bag_byte_rowwise_offsets if fmt == "i8"
                      else torch.ops.quantized.embedding_bag_4bit_rowwise_offsets)
                tor = Timed("torch", py_timer(lambda: op(tt, ti, to, False, 0, False, None, None, True)))
                ref = op(tt, ti, to, False, 0, False, None, None, True).numpy()
            torch.set_num_threads(threads)
            med = interleave(mine + [probe, probe_pf, tor] + sweep, samples, target)
            lib.b_bag(ptr(table), R, D, row_bytes, f, 0, ptr(idx), ptr(off), batch, None, ptr(out), threads, 1, 0, -1)
            err = float(np.abs(out - ref).max() / max(1.0, np.abs(ref).max()))
            nbytes = batch * L * row_bytes
            roof = min(med["probe"], med["probe_pf"])
            rows.append(dict(kind="bag", shape=f"{fmt} {R}x{D} L={L}", M=batch, threads=threads,
                             table_mb=R * row_bytes / 2**20,
                             ours_us=med["ours"] * 1e6, torch_us=med["torch"] * 1e6,
                             probe_us=roof * 1e6, ours_gbs=nbytes / med["ours"] * 1e-9,
                             probe_gbs=nbytes / roof * 1e-9, torch_gbs=nbytes / med["torch"] * 1e-9,
                             of_roofline=roof / med["ours"], speedup_vs_torch=med["torch"] / med["ours"],
                             max_rel_err=err))
            base_ratio(rows[-1], med)
            for d in prefetch_sweep:
                rows[-1][f"pf{d}_vs_default"] = med["ours"] / med[f"ours_pf{d}"]
            print(fmt_row(rows[-1]), flush=True)
            if prefetch_sweep:
                print("    prefetch sweep (speed vs default): " + "  ".join(
                    f"{d}: x{rows[-1][f'pf{d}_vs_default']:.2f}" for d in prefetch_sweep), flush=True)
    return rows


def _prepack_chunks(tf, prepack, width):
    out = np.empty((tf.shape[0], width), np.uint8)
    for s in range(0, tf.shape[0], 1 << 16):
        out[s:s + (1 << 16)] = prepack(torch.from_numpy(tf[s:s + (1 << 16)])).numpy()
    return out


def bench_stage(lib, threads, samples, target, model, max_rows, batches, hugepages):
    """A model's whole embedding stage (all features, zipf ids from the zoo's input
    generator, sum pooling, fp32) into one concat buffer: ours (one embedding_bags
    call per thread) vs torch eager (F.embedding_bag per feature + torch.cat)."""
    from xrec.zoo import dlrm
    spec = {"dlrm-small": dlrm.dlrm_small_spec, "dlrm-v2": dlrm.dlrm_v2_spec}[model](max_rows)
    from xrec.zoo import make_inputs
    feats = spec.features
    g = np.random.default_rng(0)
    tables = []
    for fs in feats:
        t = huge_array((fs.num_rows, fs.dim), np.float32, hugepages)
        for s0 in range(0, fs.num_rows, 1 << 16):
            n = min(1 << 16, fs.num_rows - s0)
            t[s0:s0 + n] = g.random((n, fs.dim), dtype=np.float32) - 0.5
        tables.append(t)
    total_mb = sum(t.nbytes for t in tables) / 2**20
    cols = np.cumsum([0] + [fs.dim for fs in feats])
    ldo = int(cols[-1])
    tt = [torch.from_numpy(t) for t in tables]
    rows = []
    nf = len(feats)
    arr = lambda ty, vals: (ty * nf)(*vals)  # noqa: E731
    for B in batches:
        _, idx, off = make_inputs(spec, B, seed=1)
        idx = [i.contiguous() for i in idx]
        off = [o.contiguous() for o in off]
        out = np.empty((B, ldo), np.float32)
        args = (nf, arr(P, [t.ctypes.data for t in tables]), arr(c_i64, [t.shape[0] for t in tables]),
                arr(c_int, [fs.dim for fs in feats]), arr(c_int, [fs.dim * 4 for fs in feats]),
                arr(c_int, [0] * nf), arr(P, [i.data_ptr() for i in idx]), arr(P, [o.data_ptr() for o in off]),
                B, ptr(out), ldo, arr(c_long, [int(c) for c in cols[:-1]]))
        mine = with_base("ours", lambda L: (lambda r: (L or lib).b_stage(*args, threads, r)))

        def torch_stage():
            return torch.cat([F.embedding_bag(i, t, o, mode="sum", include_last_offset=True)
                              for i, t, o in zip(idx, tt, off)], dim=1)
        tor = Timed("torch", py_timer(torch_stage))
        torch.set_num_threads(threads)
        med = interleave(mine + [tor], samples, target)
        lib.b_stage(*args, threads, 1)
        ref = torch_stage().numpy()
        err = float(np.abs(out - ref).max() / max(1.0, np.abs(ref).max()))
        nbytes = sum(len(i) * fs.dim * 4 for i, fs in zip(idx, feats))
        rows.append(dict(kind="stage", shape=f"{model} {nf}x{total_mb:.0f}MB", M=B, threads=threads,
                         ours_us=med["ours"] * 1e6, torch_us=med["torch"] * 1e6,
                         ours_gbs=nbytes / med["ours"] * 1e-9, speedup_vs_torch=med["torch"] / med["ours"],
                         ids=int(sum(len(i) for i in idx)), max_rel_err=err))
        base_ratio(rows[-1], med)
        print(fmt_row(rows[-1]), flush=True)
    return rows


def bench_interaction(lib, threads, samples, target, batches=(64, 512, 2048), Fn=27, D=64):
    rows = []
    li, lj = np.tril_indices(Fn, -1)
    pi, pj = li.astype(np.int32), lj.astype(np.int32)
    for B in batches:
        T = np.random.default_rng(B).standard_normal((B, Fn, D)).astype(np.float32)
        out = np.empty((B, len(pi)), np.float32)
        tT = torch.from_numpy(T)
        tli, tlj = torch.from_numpy(li), torch.from_numpy(lj)
        mine = with_base("ours", lambda L: (lambda r: (L or lib).b_interaction(
            ptr(T), B, Fn, D, ptr(pi), ptr(pj), len(pi), ptr(out), threads, r)))
        tor = Timed("torch", py_timer(lambda: torch.bmm(tT, tT.transpose(1, 2))[:, tli, tlj]))
        torch.set_num_threads(threads)
        med = interleave(mine + [tor], samples, target)
        flops = 2.0 * B * len(pi) * D
        rows.append(dict(kind="interaction", shape=f"F={Fn} D={D} P={len(pi)}", M=B, threads=threads,
                         ours_us=med["ours"] * 1e6, torch_us=med["torch"] * 1e6,
                         ours_gflops=flops / med["ours"] * 1e-9, speedup_vs_torch=med["torch"] / med["ours"]))
        base_ratio(rows[-1], med)
        print(fmt_row(rows[-1]), flush=True)
    return rows


def fmt_row(r):
    return _fmt_row(r) + (f"  [x{r['speedup_vs_base']:.2f} vs {BASE['rev']}]" if "speedup_vs_base" in r else "")


def _fmt_row(r):
    head = f"{r['kind']:<11} {r['shape']:<24} M={r['M']:<5} t={r['threads']}  ours {r['ours_us']:10.1f} us  torch {r['torch_us']:10.1f} us  x{r['speedup_vs_torch']:5.2f}"
    if r["kind"] == "dense":
        return head + (f"  | {r['ours_gflops']:6.1f} GF/s ({r['of_peak']*100:4.0f}% of peak {r['peak_gflops']:.0f})  torch {r['torch_gflops']:6.1f}"
                       f"  onednn {r['onednn_gflops']:6.1f} (x{r['speedup_vs_onednn']:.2f})") if "of_peak" in r else head
    if r["kind"] == "stage":
        return head + f"  | {r['ours_gbs']:6.1f} GB/s of rows, {r['ids']} ids"
    if r["kind"] == "bag":
        return head + f"  | {r['ours_gbs']:6.1f} GB/s = {r['of_roofline']*100:4.0f}% of probe {r['probe_gbs']:6.1f}"
    return head + f"  | {r['ours_gflops']:6.1f} GF/s"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="peak,dense,bag,stage,interaction",
                    help="comma list of: peak, dense, bag, stage, interaction")
    ap.add_argument("--stage-model", default="dlrm-small", help="dlrm-small or dlrm-v2 (tables of --stage-max-rows)")
    ap.add_argument("--stage-max-rows", type=int, default=None, help="cap table rows (default: the model's own)")
    ap.add_argument("--stage-batches", default="64,512,2048")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--batches", default="1,64,512,2048", help="M values for dense layers")
    ap.add_argument("--dense-shapes", default="", help="K:N[:act] list, e.g. 3456:1024,512:256:gelu "
                                                       "(act: none relu sigmoid tanh gelu gelu_tanh silu)")
    ap.add_argument("--samples", type=int, default=7)
    ap.add_argument("--target-ms", type=float, default=10.0, help="time per sample")
    ap.add_argument("--quick", action="store_true", help="a few representative shapes only")
    ap.add_argument("--formats", default="f32,i8,i4", help="bag row formats: f32, i8, i4")
    ap.add_argument("--bag-batches", default="2048", help="batch sizes of the bag cases")
    ap.add_argument("--no-hugepages", action="store_true")
    ap.add_argument("--prefetch-sweep", default="", help="also time these prefetch distances, e.g. 0,4,8,16,32")
    ap.add_argument("--bag-cases", default="", help="subset of rows:dim:pooling, e.g. 1000000:64:20,4096:64:1")
    ap.add_argument("--clock", choices=["auto", "cpu", "wall"], default="auto",
                    help="auto: the thread's CPU time for 1-thread runs (robust to other people's load "
                         "on this shared machine), wall time for 2 threads")
    ap.add_argument("--baseline", help="git revision whose kernels/cpu is timed too (interleaved): "
                                       "speedup_vs_base = before/after")
    ap.add_argument("--json", help="write all rows to this file")
    a = ap.parse_args(argv)
    only = set(a.only.split(","))
    threads = [int(t) for t in a.threads.split(",")]
    lib = build()
    if a.baseline:
        BASE["lib"] = _setup(build(kernels=kernels_at(a.baseline)))
        BASE["rev"] = a.baseline
    target = a.target_ms / 1000
    rows = []
    peak = {}
    for t in threads:
        set_clock(lib, t, a.clock)
        peak[t] = statistics.median(lib.b_fma_peak(t, 20_000_000) for _ in range(3))
        print(f"FMA peak probe, {t} thread(s): {peak[t]:.1f} GFLOP/s", flush=True)
        rows.append(dict(kind="peak", threads=t, gflops=peak[t]))
    for t in threads:
        print(f"-- {t} thread(s), clock: {set_clock(lib, t, a.clock)}", flush=True)
        if "dense" in only:
            only_shapes = [tuple(x.split(":")) for x in a.dense_shapes.split(",") if x]
            rows += bench_dense(lib, t, [int(m) for m in a.batches.split(",")], a.samples, target, a.quick,
                                only_shapes)
        if "bag" in only:
            cases = [tuple(int(v) for v in c.split(":")) for c in a.bag_cases.split(",") if c]
            for bb in (int(b) for b in a.bag_batches.split(",")):
                rows += bench_bags(lib, t, a.samples, target, a.quick, not a.no_hugepages, batch=bb,
                                   formats=tuple(a.formats.split(",")),
                                   prefetch_sweep=[int(d) for d in a.prefetch_sweep.split(",") if d],
                                   cases=cases or None)
        if "stage" in only:
            rows += bench_stage(lib, t, a.samples, target, a.stage_model, a.stage_max_rows,
                                [int(b) for b in a.stage_batches.split(",")], not a.no_hugepages)
        if "interaction" in only:
            rows += bench_interaction(lib, t, a.samples, target)
    print("\nsummary")
    for r in rows:
        if r["kind"] != "peak":
            print(fmt_row(r))
    if a.json:
        meta = dict(date=time.strftime("%Y-%m-%d %H:%M"), cpu=_cpu_name(), torch=torch.__version__,
                    argv=sys.argv[1:])
        Path(a.json).write_text(json.dumps(dict(meta=meta, rows=rows), indent=1))
    return rows


def _cpu_name():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "?"


if __name__ == "__main__":
    main()
