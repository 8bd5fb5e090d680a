"""``xrec bench --kernel``: one kernel of a recommendation model, against PyTorch and the roofline.

* ``embedding-bag``: a tiny module holding only EmbeddingBags (forward returns
  ``torch.cat`` of the pooled tables) compiled by xrec, against
  ``F.embedding_bag`` once per table (as PyTorch users call it) and, for int8 and
  int4, FBGEMM's ``torch.ops.quantized.embedding_bag_{byte,4bit}_rowwise_offsets``;
  with the cpu target the kernels/cpu ``embedding_bags`` called directly
  (:mod:`.kernel_calls`, system ``kernels-cpu``); plus the plain C
  gather loop of probes.c over the same tables and ids, timed in the same
  interleaved run. Each system's fraction = probe time / system time (same
  bytes of rows touched).
* ``embedding-stage``: the same systems over a zoo model's own tables and
  ids (every sparse feature, into one concat): the model's whole embedding stage.
* ``linear``: every distinct ``nn.Linear`` shape of the chosen zoo models,
  xrec (and the kernels/cpu linear) vs ``F.linear`` and oneDNN's prepacked linear; fraction = achieved GFLOP/s / roofline attainable
  (min(FMA peak, intensity x stream bandwidth)).
* ``interaction``: DLRM's dot interaction (cat, bmm, lower triangle) with 27
  vectors of each dim, xrec vs the PyTorch code of the zoo model.
"""
from __future__ import annotations

import datetime as _dt
import functools
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import SCHEMA
from .timing import CLOCKS, check_mode, measure, summarize
from .machine import LoadMonitor, machine_info
from .systems import ModelContext, StageError, Unavailable, outputs_to_tensor, quiet, xrec_system


def _say(msg: str) -> None:
    from xrec.progress import say
    say(msg)


# ------------------------------------------------------------------ the measured modules
class EmbeddingBags(nn.Module):
    """Only embedding bags: ``forward(indices, offsets) -> cat(pooled, dim=1)`` (sum pooling)."""

    def __init__(self, tables: list[torch.Tensor]):
        super().__init__()
        self.bags = nn.ModuleList(nn.EmbeddingBag(t.shape[0], t.shape[1], mode="sum", include_last_offset=True,
                                                  _weight=t) for t in tables)

    def forward(self, indices: list[torch.Tensor], offsets: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat([bag(i, o) for bag, i, o in zip(self.bags, indices, offsets)], dim=1)


class DotInteraction(nn.Module):
    """DLRM's dot interaction exactly as the zoo's ``DLRM.interact_features``."""

    def __init__(self, num_vectors: int):
        super().__init__()
        from xrec.zoo.dlrm import dot_interaction_indices
        li, lj = dot_interaction_indices(num_vectors)
        self.register_buffer("li", torch.tensor(li, dtype=torch.int64), persistent=False)
        self.register_buffer("lj", torch.tensor(lj, dtype=torch.int64), persistent=False)

    def forward(self, x: torch.Tensor, ly: list[torch.Tensor]) -> torch.Tensor:
        batch_size, d = x.shape
        T = torch.cat([x] + ly, dim=1).view((batch_size, -1, d))
        Z = torch.bmm(T, torch.transpose(T, 1, 2))
        Zflat = Z[:, self.li, self.lj]
        return torch.cat([x] + [Zflat], dim=1)


# ------------------------------------------------------------------ one configuration
class _KernelSystem:
    """One measured system of a kernel configuration.

    ``fn(*args)`` takes the configuration's torch inputs, or, when ``bound``, no
    arguments (its inputs were bound at creation: the probe and the kernels/cpu
    calls, which run on ready numpy buffers). ``expected(ref)`` is the part of
    the reference output it computes, when that is not all of it."""

    def __init__(self, name: str, label: str, kind: str, target: str | None = None,
                 fn: Callable | None = None, reason: str = "", status: str = "ok", bound: bool = False,
                 expected: Callable[[torch.Tensor], torch.Tensor] | None = None):
        self.name, self.label, self.kind, self.target = name, label, kind, target
        self.fn, self.reason, self.bound, self.expected = fn, reason, bound, expected
        self.status = "ok" if fn is not None else (status if status != "ok" else "unavailable")
        self.keep = None


def _xrec_systems(targets: list[str], module: nn.Module, example: tuple, name: str, threads: int,
                  workdir: Path, quantize: str | None = None) -> list[_KernelSystem]:
    out = []
    ctx = ModelContext(name=name, module=module, example_inputs=example, threads=threads, workdir=workdir)
    for t in targets:
        s = xrec_system(t, quantize)
        try:
            p = s.prepare(ctx)
            out.append(_KernelSystem(f"xrec-{t}", s.label, "xrec", t, fn=p.fn))
            out[-1].keep = p.keep
        except (Unavailable, StageError) as e:
            out.append(_KernelSystem(f"xrec-{t}", s.label, "xrec", t, reason=str(e),
                            status="unavailable" if isinstance(e, Unavailable) else "failed"))
        except Exception as e:
            out.append(_KernelSystem(f"xrec-{t}", s.label, "xrec", t, reason=f"prepare: {type(e).__name__}: {e}",
                            status="failed"))
    return out


def _measure_config(rows_out: list[dict], kernel: str, config: str, batch: int, threads: int,
                    systems: list[_KernelSystem], args: tuple, ref: torch.Tensor, tol: tuple[float, float],
                    work: dict, reps: int, warmup: int, gap_ms: float, machine: dict,
                    fraction: Callable[[dict, dict], float | None] | None = None,
                    peak: float | None = None, mode: str = "cold", burst: int = 1,
                    timer: Callable[[], float] = time.perf_counter) -> None:
    """First call + check for each system, interleaved timing, one row per system."""
    calls, errs, new = {}, {}, []
    for s in systems:
        base = {"system": s.name, "label": s.label, "kind": s.kind, "model": f"kernel:{kernel}",
                "target": s.target, "batch": batch, "threads": threads, "config": config,
                "cpu_model": machine["cpu_model"], "cores": machine["cores"], "isa": machine["best_isa"], **work}
        if s.fn is None:
            new.append({**base, "status": s.status, "reason": s.reason, "median_ms": None, "p10_ms": None,
                        "p90_ms": None, "qps": None})
            continue
        try:
            with quiet():
                got = s.fn() if s.bound else s.fn(*args)
                out = torch.from_numpy(np.array(got)) if isinstance(got, np.ndarray) else outputs_to_tensor(got).detach()
        except Exception as e:
            msg = " ".join(str(e).split())[:400]
            new.append({**base, "status": "failed", "reason": f"run: {type(e).__name__}: {msg}",
                        "median_ms": None, "p10_ms": None, "p90_ms": None, "qps": None})
            continue
        errs[s.name] = _allclose(out, s.expected(ref) if s.expected else ref, *tol)
        calls[s.name] = s.fn if s.bound else (lambda f=s.fn: f(*args))
        new.append(base)
    samples = measure(calls, reps=reps, warmup=warmup, gap_s=gap_ms / 1e3, mode=mode, burst=burst,
                      timer=timer) if calls else {}
    for r in new:
        if r["system"] not in samples:
            continue
        st = summarize(samples[r["system"]])
        err, why = errs[r["system"]]
        sec = st.median_ms / 1e3
        r.update(status="ok", reason="", **st.as_dict(), qps=batch / sec, max_abs_err=err,
                 check="ok" if not why else why)
        if work.get("flops"):
            r["gflops"] = work["flops"] / sec / 1e9
        if work.get("bytes"):
            r["gbps"] = work["bytes"] / sec / 1e9
    if fraction:
        for r in new:
            if r.get("status") == "ok":
                r[_FRACTION_KEY[kernel]] = fraction(r, {x["system"]: x for x in new})
    if peak:
        for r in new:
            if r.get("status") == "ok" and r.get("gflops"):
                r["fraction_of_fma_peak"] = r["gflops"] / peak
    rows_out.extend(new)


_FRACTION_KEY = {"embedding-bag": "fraction_of_probe", "embedding-stage": "fraction_of_probe",
                 "linear": "fraction_of_roofline",
                 "interaction": "fraction_of_roofline"}
_FRACTION_OF = {"embedding-bag": "the plain C gather loop (probes.c) on the same tables and ids",
                "embedding-stage": "the plain C gather loop (probes.c) on the same tables and ids",
                "linear": "the roofline: min(FMA peak, intensity x stream read bandwidth)",
                "interaction": "the roofline: min(FMA peak, intensity x stream read bandwidth)"}


def _allclose(out: torch.Tensor, ref: torch.Tensor, rtol: float, atol: float) -> tuple[float, str]:
    """(max |out - ref|, "" or what is wrong)."""
    if out.shape != ref.shape:
        return float("inf"), f"shape {tuple(out.shape)} != {tuple(ref.shape)}"
    d = (out.float() - ref.float()).abs()
    err = float(d.max()) if d.numel() else 0.0
    ok = bool(torch.all(d <= atol + rtol * ref.float().abs()))
    return err, "" if ok else "mismatch"


# ------------------------------------------------------------------ suites
def _fmt_rows(n: int) -> str:
    return f"{n // 1_000_000}M" if n % 1_000_000 == 0 else f"{n // 1000}k" if n % 1000 == 0 else str(n)


def _fbgemm(op_name: str):
    """torch.ops.quantized.<op> from a formats entry's ``quantized::<op>``."""
    return getattr(torch.ops.quantized, op_name.split("::", 1)[1])


def _embedding_bag_suite(rows_out: list, *, dims, pooling, table_rows, tables, seed, **common) -> None:
    """``tables`` synthetic tables per (dim, rows), every pooling factor: one kernel at many shapes."""
    from xrec.zoo.common import FeatureSpec, ZooSpec
    for dim in dims:
        for nrows in table_rows:
            _say(f"embedding-bag: {tables} tables of {nrows} x {dim} fp32 "
                 f"({tables * nrows * dim * 4 / 2**20:.0f} MiB)")
            g = torch.Generator().manual_seed(seed)
            weights = [torch.rand(nrows, dim, generator=g) * 2 - 1 for _ in range(tables)]
            shapes = [(f"d={dim} rows={_fmt_rows(nrows)} pool={pool:g}",
                       ZooSpec("kernel", 1, tuple(FeatureSpec(f"t{i}", nrows, dim, float(pool))
                                                  for i in range(tables)), ""),
                       {"dim": dim, "rows": nrows, "pooling": pool, "tables": tables}) for pool in pooling]
            _bags_suite(rows_out, "embedding-bag", f"d{dim}", weights, shapes, seed=seed, **common)
            del weights


def _embedding_stage_suite(rows_out: list, *, models, max_rows, seed, **common) -> None:
    """A zoo model's whole embedding stage: its tables (capped at ``max_rows``) and its ids."""
    from xrec import zoo
    for name in models:
        spec = zoo.spec(name, max_rows=max_rows)
        mib = sum(f.num_rows * f.dim * 4 for f in spec.features) / 2**20
        _say(f"embedding-stage: {name}, {len(spec.features)} tables, {mib:.0f} MiB fp32")
        g = torch.Generator().manual_seed(seed)
        weights = [torch.rand(f.num_rows, f.dim, generator=g) * 2 - 1 for f in spec.features]
        shapes = [(f"{name} ({len(weights)} tables, {mib:.0f} MiB)", spec,
                   {"model_tables": name, "tables": len(weights), "max_rows": max_rows})]
        _bags_suite(rows_out, "embedding-stage", name.replace("-", "_"), weights, shapes, seed=seed, **common)
        del weights


def _bags_suite(rows_out: list, kernel: str, tag: str, weights: list[torch.Tensor], shapes: list, *, targets,
                batches, threads, reps, warmup, seed, gap_ms, formats, zipf, machine, workdir, timing,
                kernel_libs) -> None:
    """Sum-pooled bags over ``weights`` (one table each) into one concat, per format, shape and batch:
    torch (FBGEMM for quantized rows), xrec, the kernels/cpu call and the gather probe.
    ``shapes``: (config prefix, ZooSpec drawing the ids, facts for the rows)."""
    from xrec import zoo
    from xrec.ir import formats as row_formats
    from xrec.zoo.common import FeatureSpec, ZooSpec
    from . import kernel_calls
    from .roofline import GatherProbe
    dims = [w.shape[1] for w in weights]
    module = EmbeddingBags(weights).eval()
    spec0 = ZooSpec("kernel", 1, tuple(FeatureSpec(f"t{i}", w.shape[0], w.shape[1], 2.0)
                                       for i, w in enumerate(weights)), "")
    _, ex_i, ex_o = zoo.make_inputs(spec0, 8, seed=seed, empty_bag_prob=0.0, min_ids_per_feature=2)
    example = (ex_i, ex_o)
    for fmt in formats:
        rf = row_formats.by_name(fmt)
        if fmt == "fp32":
            xs = _xrec_systems(targets, module, example, f"bags_{tag}", threads, workdir)
            stored = weights
            label = "torch F.embedding_bag per table + torch.cat"

            def torch_fn(indices, offsets, ws=weights):
                return torch.cat([F.embedding_bag(i, w, o, mode="sum", include_last_offset=True)
                                  for w, i, o in zip(ws, indices, offsets)], dim=1)
        else:
            xs = _xrec_systems(targets, module, example, f"bags_{tag}_{fmt}", threads, workdir, quantize=fmt)
            stored = [_fbgemm(rf.fbgemm_prepack)(w) for w in weights]
            label = f"torch.ops.{rf.fbgemm_op.replace('::', '.')} (FBGEMM) per table + torch.cat"

            def torch_fn(indices, offsets, ps=stored, op=_fbgemm(rf.fbgemm_op)):
                return torch.cat([op(p, i, o, False, 0, False, None, None, True)
                                  for p, i, o in zip(ps, indices, offsets)], dim=1)
        bags = {name: kernel_calls.Bags(lib, [t.numpy() for t in stored], dims, rf.code, threads)
                for name, lib in kernel_libs.items() if not isinstance(lib, str)}
        for prefix, spec, facts in shapes:
            for batch in batches:
                _, idx, off = zoo.make_inputs(spec, batch, seed=seed + 1, empty_bag_prob=0.0, zipf_a=zipf)
                config = f"{fmt} {prefix} B={batch}"
                _say(f"  {config}")
                n_ids = sum(len(i) for i in idx)
                work = {"ids": n_ids, "bytes": sum(len(i) * rf.row_bytes(d) for i, d in zip(idx, dims)),
                        "flops": sum(len(i) * d for i, d in zip(idx, dims)) * (1 if fmt == "fp32" else 3),
                        "format": fmt, **facts}
                with torch.inference_mode():
                    ref = torch_fn(idx, off)
                if fmt == "fp32":
                    tol = (1e-4, 1e-4)
                else:   # another rounding of the same rows may differ: allow half a step per id
                    size = rf.scale_bias.itemsize
                    sdt = torch.float32 if size == 4 else torch.float16
                    scale = max(float(p[:, rf.scale_offset(d):rf.scale_offset(d) + size].contiguous().view(sdt).max())
                                for p, d in zip(stored, dims))
                    most = max(int((o[1:] - o[:-1]).max()) for o in off)
                    tol = (0.0, 1e-4 + 0.5 * scale * most)
                np_idx = [np.ascontiguousarray(i.numpy(), np.int64) for i in idx]
                np_off = [np.ascontiguousarray(o.numpy(), np.int64) for o in off]
                out = np.empty((batch, sum(dims)), np.float32)
                calls = [_kernel_call_sys(name, kernel_libs,
                                          lambda b=bags.get(name): functools.partial(b, np_idx, np_off, out),
                                          "embedding_bags (one call per thread over its bags)")
                         for name in kernel_libs]
                probe_label = "plain C gather loop (probes.c), same tables and ids"
                if fmt in GatherProbe.FORMATS:
                    probe = GatherProbe([t.numpy() for t in stored], np_idx, np_off, threads, fmt)
                    psys = _KernelSystem("roofline-gather", probe_label, "probe", fn=probe, bound=True)
                else:
                    psys = _KernelSystem("roofline-gather", probe_label, "probe",
                                         reason=f"the gather probe reads {', '.join(GatherProbe.FORMATS)} rows, "
                                                f"not {fmt}")

                def frac(r, by_name):
                    p = by_name.get("roofline-gather")
                    return (p["median_ms"] / r["median_ms"]) if p and p.get("status") == "ok" else None
                with torch.inference_mode():
                    _measure_config(rows_out, kernel, config, batch, threads,
                                    [_KernelSystem("torch", label, "baseline", fn=torch_fn)] + xs + calls + [psys],
                                    (idx, off), ref, tol, work, reps, warmup, gap_ms, machine, frac, **timing)
        del bags, stored, xs
    del module


def _kernel_call_sys(name: str, kernel_libs: dict, make: Callable[[], Callable], what: str,
                     expected: Callable[[torch.Tensor], torch.Tensor] | None = None) -> _KernelSystem:
    """The system ``name`` calling a kernels/cpu template directly, or the reason its library is missing."""
    lib = kernel_libs[name]
    label = (f"kernels/cpu {what} called directly (bench/kernel_calls.cpp"
             + (f", kernels/cpu as of {name.split('@', 1)[1]}" if "@" in name else "") + "), on ready numpy buffers")
    if isinstance(lib, str):
        return _KernelSystem(name, label, "xrec", "cpu", reason=lib, status="failed")
    return _KernelSystem(name, label, "xrec", "cpu", fn=make(), bound=True, expected=expected)


def _zoo_linear_shapes(models: list[str]) -> list[tuple[int, int]]:
    from xrec import zoo
    shapes = []
    for name in models:
        m = zoo.build(name, max_rows=10)
        for mod in m.modules():
            if isinstance(mod, nn.Linear) and (mod.in_features, mod.out_features) not in shapes:
                shapes.append((mod.in_features, mod.out_features))
    return shapes


def _peak(ceilings: dict | None) -> float | None:
    return float(ceilings["fma_peak_GFLOPs"]) if ceilings and "error" not in ceilings else None


def _roofline_fraction(ceilings: dict | None):
    from .roofline import attainable_gflops

    def frac(r, _by):
        if not ceilings or "error" in ceilings or not r.get("bytes"):
            return None
        return r["gflops"] / attainable_gflops(r["flops"] / r["bytes"], ceilings)
    return frac


def _onednn_linear(w: torch.Tensor, b: torch.Tensor, batch: int) -> _KernelSystem:
    """oneDNN's prepacked linear as PyTorch's CPU inductor calls it, or the reason it is missing here."""
    label = "oneDNN prepacked linear (torch.ops.mkldnn._linear_pointwise, weight reordered for this batch)"
    try:
        packed = torch.ops.mkldnn._reorder_linear_weight(w, batch)
    except (AttributeError, RuntimeError) as e:
        return _KernelSystem("onednn", label, "baseline", reason=f"not in this torch build: {type(e).__name__}: {e}")
    return _KernelSystem("onednn", label, "baseline",
                fn=lambda x: torch.ops.mkldnn._linear_pointwise(x, packed, b, "none", [], ""))


def _linear_suite(rows_out: list, *, targets, batches, threads, reps, warmup, seed, gap_ms, models, machine,
                  workdir, ceilings, timing, kernel_libs) -> None:
    from . import kernel_calls
    shapes = _zoo_linear_shapes(models)
    _say(f"linear: {len(shapes)} shapes from {', '.join(models)}")
    g = torch.Generator().manual_seed(seed)
    for k, n in shapes:
        lin = nn.Linear(k, n)
        with torch.no_grad():
            lin.weight.copy_(torch.randn(n, k, generator=g) / k ** 0.5)
            lin.bias.copy_(torch.randn(n, generator=g) * 0.1)
        module = nn.Sequential(lin).eval()
        xs = _xrec_systems(targets, module, (torch.randn(8, k, generator=g),), f"linear_{k}x{n}", threads, workdir)
        w, b = lin.weight.detach(), lin.bias.detach()
        torch_sys = _KernelSystem("torch", "torch F.linear", "baseline", fn=lambda x, w=w, b=b: F.linear(x, w, b))
        linears = {name: kernel_calls.Linear(lib, w.numpy(), b.numpy(), 0, threads)
                   for name, lib in kernel_libs.items() if not isinstance(lib, str)}
        for batch in batches:
            x = torch.randn(batch, k, generator=g)
            config = f"{k}x{n} B={batch}"
            _say(f"  {config}")
            work = {"flops": 2 * batch * k * n, "bytes": 4 * (batch * k + k * n + n + batch * n), "K": k, "N": n}
            ref = F.linear(x, w, b)
            x_np, out = x.numpy(), np.empty((batch, n), np.float32)
            calls = [_kernel_call_sys(name, kernel_libs, lambda f=linears.get(name): functools.partial(f, x_np, out),
                                      "linear (packed weights, no activation)") for name in kernel_libs]
            with torch.inference_mode():
                _measure_config(rows_out, "linear", config, batch, threads,
                                [torch_sys, _onednn_linear(w, b, batch)] + xs + calls, (x,), ref, (1e-4, 1e-4),
                                work, reps, warmup, gap_ms, machine, _roofline_fraction(ceilings), _peak(ceilings),
                                **timing)


def _interaction_suite(rows_out: list, *, targets, batches, threads, reps, warmup, seed, gap_ms, dims, num_vectors,
                       machine, workdir, ceilings, timing, kernel_libs) -> None:
    from . import kernel_calls
    g = torch.Generator().manual_seed(seed)
    module = DotInteraction(num_vectors).eval()
    pairs = num_vectors * (num_vectors - 1) // 2
    for dim in dims:
        ex = (torch.randn(8, dim, generator=g), [torch.randn(8, dim, generator=g) for _ in range(num_vectors - 1)])
        xs = _xrec_systems(targets, module, ex, f"interaction_{num_vectors}x{dim}", threads, workdir)
        base = [_KernelSystem("torch", "PyTorch eager (cat, bmm, lower-triangle index) as the zoo's DLRM", "baseline",
                     fn=module)]
        for batch in batches:
            args = (torch.randn(batch, dim, generator=g),
                    [torch.randn(batch, dim, generator=g) for _ in range(num_vectors - 1)])
            config = f"F={num_vectors} d={dim} B={batch}"
            _say(f"  {config}")
            work = {"flops": 2 * batch * pairs * dim,
                    "bytes": 4 * (batch * num_vectors * dim + batch * (dim + pairs)), "dim": dim,
                    "vectors": num_vectors}
            # the kernel reads the vectors stacked [B, F, D] and writes the pairs only
            stacked = torch.cat([args[0]] + args[1], dim=1).view(batch, num_vectors, dim).numpy()
            out = np.empty((batch, pairs), np.float32)
            calls = [_kernel_call_sys(name, kernel_libs,
                                      lambda f=kernel_calls.Interaction(lib, num_vectors, threads)
                                      if not isinstance(lib, str) else None: functools.partial(f, stacked, out),
                                      "dot_interaction (on the stacked [B, F, D] vectors; writes the pairs only)",
                                      expected=lambda ref, d=dim: ref[:, d:])
                     for name, lib in kernel_libs.items()]
            with torch.inference_mode():
                ref = module(*args)
                _measure_config(rows_out, "interaction", config, batch, threads, base + xs + calls, args, ref,
                                (1e-4, 1e-4), work, reps, warmup, gap_ms, machine, _roofline_fraction(ceilings),
                                _peak(ceilings), **timing)


def _kernel_libs(machine: dict, cache: Path, kernels_at) -> dict:
    """system name -> kernel_calls library (this checkout's kernels/cpu, then each revision), or why not."""
    from . import kernel_calls
    from xrec.targets.cpu.build import ISA_FLAGS
    isa = machine.get("best_isa") if machine.get("best_isa") in ISA_FLAGS else "scalar"
    out: dict = {}
    for rev in (None, *kernels_at):
        name = "kernels-cpu" + (f"@{rev}" if rev else "")
        _say(f"build {name} (bench/kernel_calls.cpp, {isa})")
        try:
            src = kernel_calls.kernels_at(rev, cache) if rev else None
            out[name] = kernel_calls.load(isa, cache, src)
        except (kernel_calls.KernelCallsError, OSError) as e:
            out[name] = f"{type(e).__name__}: {e}"
    return out


def run_kernel_bench(kernel: str, *, targets: list[str], batches: list[int], threads: int, reps: int = 20,
                     warmup: int = 3, seed: int = 123, gap_ms: float = 10.0, dims=(64, 128), pooling=(1, 10, 50, 200),
                     table_rows=(1_000_000,), tables: int = 4, formats=("fp32", "int8"), zipf: float = 1.05,
                     models=("dlrm-small",), num_vectors: int = 27, roofline: bool = True, note: str = "",
                     command: list[str] | None = None, mode: str = "warm", burst: int = 5,
                     kernels_at: tuple[str, ...] = (), clock: str = "wall", max_rows: int | None = None) -> dict:
    """Run one kernel suite; returns the result document (rows keyed by ``config``).

    ``embedding-stage`` pools the tables of each of ``models`` (capped at ``max_rows``) with the zoo's ids.
    With the cpu target among ``targets``, the kernels/cpu template is also called directly
    (system ``kernels-cpu``), and as of each git revision in ``kernels_at`` (``kernels-cpu@REV``).
    ``mode`` / ``burst``: see :func:`xrec.bench.timing.measure`; ``clock``: see :data:`CLOCKS`."""
    from xrec.config import knobs
    if kernel not in _FRACTION_KEY:
        raise ValueError(f"unknown kernel {kernel!r}; known: {', '.join(_FRACTION_KEY)}")
    if clock not in CLOCKS:
        raise ValueError(f"unknown clock {clock!r}; known: {', '.join(CLOCKS)}")
    if clock == "thread-cpu" and threads != 1:
        raise ValueError(f"the thread-cpu clock sees only the calling thread: it needs --threads 1, got {threads}")
    if kernel == "embedding-bag" and "int4" in formats and any(d % 2 for d in dims):
        raise ValueError(f"FBGEMM packs int4 rows of even dims only (the int4 baseline): got --dims "
                         f"{','.join(map(str, dims))}")
    if kernels_at and "cpu" not in targets:
        raise ValueError("--kernels-at REV times the kernels/cpu template: it needs the cpu target (--target cpu)")
    check_mode(mode, burst)
    burst = burst if mode == "warm" else 1
    monitor = LoadMonitor().start()
    machine = machine_info()
    settings = {"kernel": kernel, "targets": targets, "batches": list(batches), "threads": threads, "reps": reps,
                "warmup": warmup, "seed": seed, "gap_ms": gap_ms, "mode": mode, "burst": burst,
                "clock": clock, "kernels_at": list(kernels_at),
                "timed_region": "one call on ready torch inputs (the probe and the kernels/cpu calls: one C call "
                                "on ready numpy buffers)"}
    if kernel == "embedding-bag":
        settings.update(dims=list(dims), pooling=list(pooling), rows=list(table_rows), tables=tables,
                        formats=list(formats), zipf=zipf)
    elif kernel == "embedding-stage":
        settings.update(models=list(models), max_rows=max_rows, formats=list(formats), zipf=zipf)
    elif kernel == "linear":
        settings.update(models=list(models))
    else:
        settings.update(dims=list(dims), vectors=num_vectors)
    ceilings = None
    if roofline:
        from .roofline import machine_ceilings
        _say("measure the machine's roofline (stream read, random gather, FMA peak)")
        try:
            ceilings = machine_ceilings(threads)
        except Exception as e:
            ceilings = {"error": f"{type(e).__name__}: {e}"}
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    base_dir = Path(knobs.cache_dir) / "bench"
    base_dir.mkdir(parents=True, exist_ok=True)
    rows_out: list[dict] = []
    kernel_libs = _kernel_libs(machine, base_dir / "kernel_calls", kernels_at) if "cpu" in targets else {}
    try:
        with knobs.override(threads=threads), tempfile.TemporaryDirectory(prefix="kernels-", dir=base_dir) as wd:
            common = dict(targets=targets, batches=batches, threads=threads, reps=reps, warmup=warmup, seed=seed,
                          gap_ms=gap_ms, machine=machine, workdir=Path(wd), kernel_libs=kernel_libs,
                          timing={"mode": mode, "burst": burst, "timer": CLOCKS[clock]})
            if kernel == "embedding-bag":
                _embedding_bag_suite(rows_out, dims=dims, pooling=pooling, table_rows=table_rows, tables=tables,
                                     formats=formats, zipf=zipf, **common)
            elif kernel == "embedding-stage":
                _embedding_stage_suite(rows_out, models=list(models), max_rows=max_rows, formats=formats, zipf=zipf,
                                       **common)
            elif kernel == "linear":
                _linear_suite(rows_out, models=list(models), ceilings=ceilings, **common)
            else:
                _interaction_suite(rows_out, dims=dims, num_vectors=num_vectors, ceilings=ceilings, **common)
    finally:
        torch.set_num_threads(old)
    systems = {}
    for r in rows_out:
        e = systems.setdefault(r["system"], {"label": r["label"], "kind": r["kind"], "status": r["status"]})
        if r["status"] != "ok" and "reason" not in e:
            e["reason"] = r["reason"]
        if r["status"] == "ok":
            e["status"] = "ok"
    return {"schema": SCHEMA, "kind": "kernel", "created": _dt.datetime.now(_dt.timezone.utc).isoformat(
                timespec="seconds"),
            "command": command if command is not None else sys.argv, "note": note, "settings": settings,
            "machine": machine, "load": monitor.stop(), "roofline": ceilings, "systems": systems,
            "fraction_key": _FRACTION_KEY[kernel], "fraction_of": _FRACTION_OF[kernel], "rows": rows_out}
