"""``xrec bench --kernel``: one kernel of a recommendation model, against PyTorch and the roofline.

* ``embedding-bag``: a tiny module holding only EmbeddingBags (forward returns
  ``torch.cat`` of the pooled tables) compiled by xrec, against
  ``F.embedding_bag`` once per table (as PyTorch users call it) and, for int8,
  ``torch.ops.quantized.embedding_bag_byte_rowwise_offsets``; plus the plain C
  gather loop of probes.c over the same tables and ids, timed in the same
  interleaved run. Each system's fraction = probe time / system time (same
  bytes of rows touched).
* ``linear``: every distinct ``nn.Linear`` shape of the chosen zoo models,
  xrec vs ``F.linear``; fraction = achieved GFLOP/s / roofline attainable
  (min(FMA peak, intensity x stream bandwidth)).
* ``interaction``: DLRM's dot interaction (cat, bmm, lower triangle) with 27
  vectors of each dim, xrec vs the PyTorch code of the zoo model.
"""
from __future__ import annotations

import datetime as _dt
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
from .timing import check_mode, measure, summarize
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
class _Sys:
    def __init__(self, name: str, label: str, kind: str, target: str | None = None,
                 fn: Callable | None = None, reason: str = "", status: str = "ok"):
        self.name, self.label, self.kind, self.target = name, label, kind, target
        self.fn, self.reason = fn, reason
        self.status = "ok" if fn is not None else (status if status != "ok" else "unavailable")
        self.keep = None


def _xrec_systems(targets: list[str], module: nn.Module, example: tuple, name: str, threads: int,
                  workdir: Path, quantize: str | None = None) -> list[_Sys]:
    out = []
    ctx = ModelContext(name=name, module=module, example_inputs=example, threads=threads, workdir=workdir)
    for t in targets:
        s = xrec_system(t, quantize)
        try:
            p = s.prepare(ctx)
            out.append(_Sys(f"xrec-{t}", s.label, "xrec", t, fn=p.fn))
            out[-1].keep = p.keep
        except (Unavailable, StageError) as e:
            out.append(_Sys(f"xrec-{t}", s.label, "xrec", t, reason=str(e),
                            status="unavailable" if isinstance(e, Unavailable) else "failed"))
        except Exception as e:
            out.append(_Sys(f"xrec-{t}", s.label, "xrec", t, reason=f"prepare: {type(e).__name__}: {e}",
                            status="failed"))
    return out


def _measure_config(rows: list[dict], kernel: str, config: str, batch: int, threads: int,
                    systems: list[_Sys], args: tuple, check: Callable[[torch.Tensor], tuple[float, str]],
                    work: dict, reps: int, warmup: int, gap_ms: float, machine: dict,
                    fraction: Callable[[dict, dict], float | None] | None = None,
                    peak: float | None = None, mode: str = "cold", burst: int = 1) -> None:
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
                out = outputs_to_tensor(s.fn(*args)).detach() if s.kind != "probe" else torch.from_numpy(s.fn())
        except Exception as e:
            msg = " ".join(str(e).split())[:400]
            new.append({**base, "status": "failed", "reason": f"run: {type(e).__name__}: {msg}",
                        "median_ms": None, "p10_ms": None, "p90_ms": None, "qps": None})
            continue
        errs[s.name] = check(out)
        calls[s.name] = (lambda f=s.fn, probe=(s.kind == "probe"): f() if probe else f(*args))
        new.append(base)
    samples = measure(calls, reps=reps, warmup=warmup, gap_s=gap_ms / 1e3, mode=mode, burst=burst) if calls else {}
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
    if peak and kernel != "embedding-bag":
        for r in new:
            if r.get("status") == "ok" and r.get("gflops"):
                r["fraction_of_fma_peak"] = r["gflops"] / peak
    rows.extend(new)


_FRACTION_KEY = {"embedding-bag": "fraction_of_probe", "linear": "fraction_of_roofline",
                 "interaction": "fraction_of_roofline"}
_FRACTION_OF = {"embedding-bag": "the plain C gather loop (probes.c) on the same tables and ids",
                "linear": "the roofline: min(FMA peak, intensity x stream read bandwidth)",
                "interaction": "the roofline: min(FMA peak, intensity x stream read bandwidth)"}


def _allclose_check(ref: torch.Tensor, rtol: float = 1e-4, atol: float = 1e-4):
    def check(out: torch.Tensor) -> tuple[float, str]:
        if out.shape != ref.shape:
            return float("inf"), f"shape {tuple(out.shape)} != {tuple(ref.shape)}"
        d = (out.float() - ref.float()).abs()
        err = float(d.max()) if d.numel() else 0.0
        ok = bool(torch.all(d <= atol + rtol * ref.float().abs()))
        return err, "" if ok else "mismatch"
    return check


# ------------------------------------------------------------------ suites
def _fmt_rows(n: int) -> str:
    return f"{n // 1_000_000}M" if n % 1_000_000 == 0 else f"{n // 1000}k" if n % 1000 == 0 else str(n)


def _embedding_bag_suite(rows_out: list, *, targets, batches, threads, reps, warmup, seed, gap_ms, dims, pooling,
                         rows, tables, formats, zipf, machine, workdir, timing) -> None:
    from xrec import zoo
    from xrec.zoo.common import FeatureSpec, ZooSpec
    from .roofline import GatherProbe
    for dim in dims:
        for nrows in rows:
            _say(f"embedding-bag: {tables} tables of {nrows} x {dim} fp32 "
                 f"({tables * nrows * dim * 4 / 2**20:.0f} MiB)")
            g = torch.Generator().manual_seed(seed)
            weights = [torch.rand(nrows, dim, generator=g) * 2 - 1 for _ in range(tables)]
            module = EmbeddingBags(weights).eval()
            spec0 = ZooSpec("kernel", 1, tuple(FeatureSpec(f"t{i}", nrows, dim, 2.0) for i in range(tables)), "")
            _, ex_i, ex_o = zoo.make_inputs(spec0, 8, seed=seed, empty_bag_prob=0.0, min_ids_per_feature=2)
            example = (ex_i, ex_o)
            packed = None
            for fmt in formats:
                if fmt == "fp32":
                    xs = _xrec_systems(targets, module, example, f"bags_d{dim}", threads, workdir)
                else:
                    xs = _xrec_systems(targets, module, example, f"bags_d{dim}_int8", threads, workdir,
                                       quantize="int8")
                    packed = [torch.ops.quantized.embedding_bag_byte_prepack(w) for w in weights]
                for pool in pooling:
                    spec = ZooSpec("kernel", 1, tuple(FeatureSpec(f"t{i}", nrows, dim, float(pool))
                                                      for i in range(tables)), "")
                    for batch in batches:
                        _, idx, off = zoo.make_inputs(spec, batch, seed=seed + 1, empty_bag_prob=0.0, zipf_a=zipf)
                        config = f"{fmt} d={dim} rows={_fmt_rows(nrows)} pool={pool:g} B={batch}"
                        _say(f"  {config}")
                        n_ids = sum(len(i) for i in idx)
                        row_bytes = 4 * dim if fmt == "fp32" else dim + 8
                        work = {"ids": n_ids, "bytes": n_ids * row_bytes, "flops": n_ids * dim * (1 if fmt == "fp32" else 3),
                                "dim": dim, "rows": nrows, "pooling": pool, "format": fmt, "tables": tables}
                        if fmt == "fp32":
                            def torch_fn(indices, offsets, ws=weights):
                                return torch.cat([F.embedding_bag(i, w, o, mode="sum", include_last_offset=True)
                                                  for w, i, o in zip(ws, indices, offsets)], dim=1)
                            base = [_Sys("torch", "torch F.embedding_bag per table + torch.cat", "baseline",
                                         fn=torch_fn)]
                            probe = GatherProbe([w.numpy() for w in weights], [i.numpy() for i in idx],
                                                [o.numpy() for o in off], threads, "fp32")
                            with torch.inference_mode():
                                ref = torch_fn(idx, off)
                            check = _allclose_check(ref)
                        else:
                            def torch_fn(indices, offsets, ps=packed):
                                op = torch.ops.quantized.embedding_bag_byte_rowwise_offsets
                                return torch.cat([op(p, i, o, False, 0, False, None, None, True)
                                                  for p, i, o in zip(ps, indices, offsets)], dim=1)
                            base = [_Sys("torch", "torch.ops.quantized.embedding_bag_byte_rowwise_offsets "
                                         "per table + torch.cat", "baseline", fn=torch_fn)]
                            probe = GatherProbe([p.numpy() for p in packed], [i.numpy() for i in idx],
                                                [o.numpy() for o in off], threads, "int8")
                            with torch.inference_mode():
                                ref = torch_fn(idx, off)
                            # another int8 scheme may round differently: allow half a step per id
                            scale = max(float(p[:, dim:dim + 4].contiguous().view(torch.float32).max()) for p in packed)
                            most = max(int((o[1:] - o[:-1]).max()) for o in off)
                            check = _allclose_check(ref, rtol=0.0, atol=1e-4 + 0.5 * scale * most)
                        psys = _Sys("roofline-gather", "plain C gather loop (probes.c), same tables and ids",
                                    "probe", fn=probe)

                        def frac(r, by_name):
                            p = by_name.get("roofline-gather")
                            return (p["median_ms"] / r["median_ms"]) if p and p.get("status") == "ok" else None
                        with torch.inference_mode():
                            _measure_config(rows_out, "embedding-bag", config, batch, threads,
                                            base + xs + [psys], (idx, off), check, work, reps, warmup, gap_ms,
                                            machine, frac, **timing)
            del module, weights, packed, xs


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


def _linear_suite(rows_out: list, *, targets, batches, threads, reps, warmup, seed, gap_ms, models, machine,
                  workdir, ceilings, timing) -> None:
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
        base = [_Sys("torch", "torch F.linear", "baseline", fn=lambda x, w=w, b=b: F.linear(x, w, b))]
        for batch in batches:
            x = torch.randn(batch, k, generator=g)
            config = f"{k}x{n} B={batch}"
            _say(f"  {config}")
            work = {"flops": 2 * batch * k * n, "bytes": 4 * (batch * k + k * n + n + batch * n), "K": k, "N": n}
            ref = F.linear(x, w, b)
            with torch.inference_mode():
                _measure_config(rows_out, "linear", config, batch, threads, base + xs, (x,),
                                _allclose_check(ref, rtol=1e-4, atol=1e-4), work, reps, warmup, gap_ms, machine,
                                _roofline_fraction(ceilings), _peak(ceilings), **timing)


def _interaction_suite(rows_out: list, *, targets, batches, threads, reps, warmup, seed, gap_ms, dims, num_vectors,
                       machine, workdir, ceilings, timing) -> None:
    g = torch.Generator().manual_seed(seed)
    module = DotInteraction(num_vectors).eval()
    pairs = num_vectors * (num_vectors - 1) // 2
    for dim in dims:
        ex = (torch.randn(8, dim, generator=g), [torch.randn(8, dim, generator=g) for _ in range(num_vectors - 1)])
        xs = _xrec_systems(targets, module, ex, f"interaction_{num_vectors}x{dim}", threads, workdir)
        base = [_Sys("torch", "PyTorch eager (cat, bmm, lower-triangle index) as the zoo's DLRM", "baseline",
                     fn=module)]
        for batch in batches:
            args = (torch.randn(batch, dim, generator=g),
                    [torch.randn(batch, dim, generator=g) for _ in range(num_vectors - 1)])
            config = f"F={num_vectors} d={dim} B={batch}"
            _say(f"  {config}")
            work = {"flops": 2 * batch * pairs * dim,
                    "bytes": 4 * (batch * num_vectors * dim + batch * (dim + pairs)), "dim": dim,
                    "vectors": num_vectors}
            with torch.inference_mode():
                ref = module(*args)
                _measure_config(rows_out, "interaction", config, batch, threads, base + xs, args,
                                _allclose_check(ref, rtol=1e-4, atol=1e-4), work, reps, warmup, gap_ms, machine,
                                _roofline_fraction(ceilings), _peak(ceilings), **timing)


def run_kernel_bench(kernel: str, *, targets: list[str], batches: list[int], threads: int, reps: int = 20,
                     warmup: int = 3, seed: int = 123, gap_ms: float = 10.0, dims=(64, 128), pooling=(1, 10, 50, 200),
                     rows=(1_000_000,), tables: int = 4, formats=("fp32", "int8"), zipf: float = 1.05,
                     models=("dlrm-small",), num_vectors: int = 27, roofline: bool = True, note: str = "",
                     command: list[str] | None = None, mode: str = "warm", burst: int = 5) -> dict:
    """Run one kernel suite; returns the result document (rows keyed by ``config``).

    ``mode`` / ``burst``: see :func:`xrec.bench.timing.measure`."""
    from xrec.config import knobs
    if kernel not in _FRACTION_KEY:
        raise ValueError(f"unknown kernel {kernel!r}; known: {', '.join(_FRACTION_KEY)}")
    check_mode(mode, burst)
    burst = burst if mode == "warm" else 1
    monitor = LoadMonitor().start()
    machine = machine_info()
    settings = {"kernel": kernel, "targets": targets, "batches": list(batches), "threads": threads, "reps": reps,
                "warmup": warmup, "seed": seed, "gap_ms": gap_ms, "mode": mode, "burst": burst,
                "timed_region": "one call on ready torch inputs (the probe: one C call on numpy views)"}
    if kernel == "embedding-bag":
        settings.update(dims=list(dims), pooling=list(pooling), rows=list(rows), tables=tables,
                        formats=list(formats), zipf=zipf)
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
    try:
        with knobs.override(threads=threads), tempfile.TemporaryDirectory(prefix="kernels-", dir=base_dir) as wd:
            common = dict(targets=targets, batches=batches, threads=threads, reps=reps, warmup=warmup, seed=seed,
                          gap_ms=gap_ms, machine=machine, workdir=Path(wd),
                          timing={"mode": mode, "burst": burst})
            if kernel == "embedding-bag":
                _embedding_bag_suite(rows_out, dims=dims, pooling=pooling, rows=rows, tables=tables,
                                     formats=formats, zipf=zipf, **common)
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
