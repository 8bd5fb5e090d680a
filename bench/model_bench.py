"""``xrec bench MODEL``: every system on the same inputs, interleaved, per batch size.

Flow: resolve the model; prepare every system (export, compile; a failure
becomes a reason); then per batch: make the inputs once, run each system
once outside timing (compiles on first call, checks its output against
eager), then time all survivors interleaved. Rows for every system x batch,
a reason where a system could not run.

Each xrec target is compiled once per compression variant (``variants``:
fp32, int8, int4, ...); each variant is its own system (xrec-cpu,
xrec-cpu-int8, ...) with its weights.bin size in its rows. A compressed
variant differs from eager by design, so it is checked against the accuracy
its artifact promises (the manifest's tolerances: atol widened at compile time
to 4x the drift measured on the calibration inputs, the rule `xrec check`
applies) instead of the fp32 tolerance.
"""
from __future__ import annotations

import datetime as _dt
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch

from . import SCHEMA
from .timing import (BudgetExceeded, calls_per_turn, check_mode, measure, samples_per_turn, summarize,
                      time_budget)
from .lower_bound import LowerBounds
from .machine import LoadMonitor, machine_info
from .systems import (BASELINES, PARTS, ModelContext, Prepared, StageError, System, Unavailable,
                      outputs_to_tensor, quiet, xrec_system)

CHECK_RTOL, CHECK_ATOL = 1e-3, 1e-4
SLOW_CALL_S = 0.5        # a first call slower than this gets one more untimed call to estimate its cost
MIN_REPS = 3             # the fewest timed samples a slow system gets


def _say(msg: str) -> None:
    from xrec.progress import say
    say(msg)


def model_work(src, args) -> dict:
    """FLOPs (matmuls, from torch's FlopCounterMode) and an estimate of compulsory bytes.

    Bytes = embedding rows touched (ids x dim x 4, zoo models) + every
    non-embedding parameter once + the inputs. An estimate: activations and
    caches are ignored, so it is a lower bound on traffic.
    """
    from torch.utils.flop_counter import FlopCounterMode
    m = src.module
    with torch.inference_mode(), FlopCounterMode(display=False) as fc:
        m(*args)
    flops = int(fc.get_total_flops())
    out = {"flops": flops}
    spec = getattr(m, "xrec_spec", None)
    if spec is not None and len(args) == 3:
        _, indices, _ = args
        emb_bytes = sum(int(len(i)) * f.dim * 4 for i, f in zip(indices, spec.features))
        emb_params = {id(p) for mod in m.modules() if isinstance(mod, torch.nn.EmbeddingBag)
                      for p in mod.parameters()}
        dense_bytes = sum(p.numel() * p.element_size() for p in m.parameters() if id(p) not in emb_params)
        in_bytes = sum(x.numel() * x.element_size() for x in torch.utils._pytree.tree_leaves(args)
                       if isinstance(x, torch.Tensor))
        out.update(embedding_bytes=emb_bytes, dense_weight_bytes=dense_bytes, input_bytes=in_bytes,
                   bytes=emb_bytes + dense_bytes + in_bytes)
    return out


def check_tolerance(system: System, info: dict) -> tuple[float, float, str]:
    """(rtol, atol, where from) of the output check against eager.

    fp32 systems: the bench's fixed tolerance. A compressed xrec variant: its artifact's own
    tolerances (``xrec.compile`` widens atol to 4x the output drift it measured on the calibration
    inputs), never tighter than the fp32 one.
    """
    tol = (info.get("info") or {}).get("tolerances") or {}
    if system.variant in (None, "fp32") or "atol" not in tol:
        return CHECK_RTOL, CHECK_ATOL, "bench fp32 tolerance"
    return (max(CHECK_RTOL, float(tol.get("rtol", 0.0))), max(CHECK_ATOL, float(tol["atol"])),
            f"artifact tolerance of the {system.variant} variant")


def _sizes(systems: list[System], sysinfo: dict) -> dict[str, dict]:
    """system -> weights_bytes and weights_frac_of_fp32 (vs the same target's fp32 variant) for xrec
    systems that compiled."""
    out: dict[str, dict] = {}
    fp32 = {s.target: (sysinfo[s.name].get("info") or {}).get("weights_bytes") for s in systems
            if s.kind == "xrec" and s.variant == "fp32"}
    for s in systems:
        wb = (sysinfo[s.name].get("info") or {}).get("weights_bytes")
        if s.kind != "xrec" or wb is None:
            continue
        ref = fp32.get(s.target)
        out[s.name] = {"weights_bytes": wb, "weights_frac_of_fp32": (wb / ref) if ref else None}
    return out


def _reason_row(base: dict, status: str, reason: str) -> dict:
    return {**base, "status": status, "reason": reason, "median_ms": None, "p10_ms": None,
            "p90_ms": None, "qps": None}


def _input_maker(src, threads: int) -> Callable[[int, int], tuple]:
    if src.make_inputs is not None:
        return src.make_inputs
    # a .pt2 without an input generator: derive random inputs from its xrec signature
    import xrec
    from xrec.runtime.inputs import random_args
    if src.exported is None:
        raise ValueError(f"{src.name}: no input generator (give a zoo model, a module with xrec_spec, "
                         "or a .pt2)")
    with quiet():
        cm = xrec.compile(src.exported, None, target="reference", name=src.name)
    return random_args(cm)


def _add_parts(rows: list[dict], calls: dict, base: dict, system: System, prepared: Prepared, args) -> None:
    """Rows and calls for the parts of ``system``'s call (``xrec-xla:host``, ...), or a reason row."""
    try:
        with quiet():
            parts = PARTS[system.target](prepared.fn, args)
            for fn in parts.values():
                fn()
    except Exception as e:                  # the target's internals changed: say so, time the rest
        name = f"{system.name}:parts"
        rows.append(_reason_row({**base, "system": name, "label": f"parts of {system.name}'s call",
                                 "kind": "part"}, "failed", f"{type(e).__name__}: {' '.join(str(e).split())[:300]}"))
        return
    base = {k: v for k, v in base.items() if k != "check_tol"}
    for part, fn in parts.items():
        name = f"{system.name}:{part}"
        rows.append({**base, "system": name, "label": f"{system.label}: {part} only", "kind": "part",
                     "part_of": system.name})
        calls[name] = fn


def run_model_bench(model: str, *, targets: list[str], baselines: list[str], batches: list[int],
                    threads: int, reps: int = 20, warmup: int = 3, max_rows: int | None = None,
                    seed: int = 123, compile_budget_s: float = 600.0, gap_ms: float = 10.0,
                    roofline: bool = True, note: str = "", command: list[str] | None = None,
                    system_budget_s: float = 60.0, max_call_s: float = 30.0, variants: list[str] | None = None,
                    mode: str = "warm", burst: int = 5, budget_mb: float | None = None,
                    max_auc_drop: float | None = None, calib_samples: int = 4096,
                    target_options: dict | None = None, parts: bool = False) -> dict:
    """Run the model benchmark; returns the result document (see report.py for its use).

    ``variants``: compression variants of every xrec target (default ["fp32"]);
    ``budget_mb`` / ``max_auc_drop`` / ``calib_samples`` go to ``xrec.compile`` for them.
    ``mode`` / ``burst``: see :func:`xrec.bench.timing.measure`.
    ``target_options``: ``options=`` of every xrec target's compile. ``parts``: also time the
    steps of a call apart where the target names them (:data:`.systems.PARTS`), as rows
    ``xrec-T:part`` of kind "part".
    """
    from xrec.config import knobs
    from xrec.model_arg import resolve

    variants = list(variants or ["fp32"])
    check_mode(mode, burst)
    burst = burst if mode == "warm" else 1
    monitor = LoadMonitor().start()
    machine = machine_info()
    settings = {"model": model, "variants": variants, "mode": mode, "burst": burst, "targets": targets, "baselines": baselines, "batches": batches,
                "threads": threads, "reps": reps, "warmup": warmup, "max_rows": max_rows, "seed": seed,
                "compile_budget_s": compile_budget_s, "gap_ms": gap_ms, "system_budget_s": system_budget_s,
                "max_call_s": max_call_s, "target_options": dict(target_options or {}), "parts": parts,
                "check": {"rtol": CHECK_RTOL, "atol": CHECK_ATOL, "against": "PyTorch eager",
                          "compressed": "the artifact's own tolerances (manifest: atol = 4x the calibration "
                                        "drift)"},
                "timed_region": "one call on ready torch inputs, returning torch outputs "
                                "(each system's input/output conversion included)"}
    if any(v != "fp32" for v in variants):
        settings["compression"] = {"budget_mb": budget_mb, "max_auc_drop": max_auc_drop,
                                   "calib_samples": calib_samples}
    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    base_dir = Path(knobs.cache_dir) / "bench"
    base_dir.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="work-", dir=base_dir))
    systems: list[System] = ([BASELINES[b] for b in baselines]
                             + [xrec_system(t, v) for t in targets for v in variants])
    sysinfo: dict[str, dict] = {}
    rows: list[dict] = []
    ceilings = None
    try:
        with knobs.override(threads=threads):
            _say(f"bench {model}: build the model (max_rows={max_rows})")
            src = resolve(model, max_rows=max_rows, seed=0)
            make = _input_maker(src, threads)
            example = src.example_inputs if src.example_inputs is not None else make(8, 0)
            ctx = ModelContext(name=src.name, module=src.module, example_inputs=tuple(example),
                               threads=threads, workdir=workdir, compile_budget_s=compile_budget_s,
                               exported=src.exported, source=src.source, calibration=src.make_inputs,
                               compression={"budget_mb": budget_mb, "max_auc_drop": max_auc_drop,
                                            "calib_samples": calib_samples},
                               target_options=dict(target_options or {}))
            if roofline:
                from .roofline import machine_ceilings
                _say("measure the machine's roofline (stream read, random gather, FMA peak)")
                try:
                    ceilings = machine_ceilings(threads)
                except Exception as e:          # no compiler: the benchmark still runs
                    ceilings = {"error": f"{type(e).__name__}: {e}"}
            prepared: dict[str, Prepared] = {}
            for s in systems:
                _say(f"prepare {s.name}")
                t0 = time.perf_counter()
                entry = {"label": s.label, "kind": s.kind, **({"variant": s.variant} if s.variant else {})}
                try:
                    with time_budget(compile_budget_s, f"preparing {s.name}"):
                        p = s.prepare(ctx)
                    prepared[s.name] = p
                    entry.update(status="ok", info=p.info)
                except (Unavailable, StageError, BudgetExceeded) as e:
                    entry.update(status="unavailable" if isinstance(e, Unavailable) else "failed", reason=str(e))
                except Exception as e:              # a bug in an adapter or a system: say so, go on
                    entry.update(status="failed", reason=f"prepare: {type(e).__name__}: {e}")
                entry["prepare_s"] = round(time.perf_counter() - t0, 2)
                if entry.get("reason"):
                    _say(f"  {s.name}: {entry['reason']}")
                sysinfo[s.name] = entry
            sizes = _sizes(systems, sysinfo)
            bounds = LowerBounds.for_run(ceilings=ceilings, machine=machine, src=src, example=example,
                                         systems=systems, prepared=prepared, roofline=roofline)
            if bounds.reason:
                _say(f"roofline %: {bounds.reason}")
            dead: dict[str, str] = {}
            too_slow: dict[str, tuple[int, str]] = {}
            for batch in batches:
                _say(f"batch {batch}: inputs, first calls and checks")
                args = make(batch, seed)
                work = model_work(src, args) if src.module is not None else {}
                with torch.inference_mode():
                    ref = outputs_to_tensor(src.module(*args))
                calls, firsts, errs, per_call = {}, {}, {}, {}
                for s in systems:
                    base = {"system": s.name, "label": s.label, "kind": s.kind, "model": src.name,
                            "target": s.target, "batch": batch,
                            "threads": threads, "cpu_model": machine["cpu_model"], "cores": machine["cores"],
                            "isa": machine["best_isa"], "variant": s.variant, **sizes.get(s.name, {})}
                    info = sysinfo[s.name]
                    if s.name not in prepared:
                        rows.append(_reason_row(base, info["status"], info["reason"]))
                        continue
                    if s.name in dead:
                        rows.append(_reason_row(base, "failed", dead[s.name]))
                        continue
                    if s.name in too_slow and batch >= too_slow[s.name][0]:
                        rows.append(_reason_row(base, "too slow", too_slow[s.name][1]))
                        continue
                    p = prepared[s.name]
                    slow_why = (f"one call at batch {batch} takes over --max-call-s {max_call_s:g} s: "
                                "not timed at this or larger batches")
                    budget = compile_budget_s if p.budget_first_call else max_call_s
                    what = f"{s.name} first call (compile) at batch {batch}" if p.budget_first_call \
                        else f"{s.name}'s first call at batch {batch}"
                    tb = time_budget(budget, what)
                    try:
                        t0 = time.perf_counter()
                        with tb, quiet():
                            out = outputs_to_tensor(p.fn(*args)).detach()
                        firsts[s.name] = time.perf_counter() - t0
                    except Exception as e:
                        if isinstance(e, BudgetExceeded) or tb.fired:     # (a library may re-wrap it)
                            if p.budget_first_call:
                                dead[s.name] = f"{what} did not finish within its budget of {budget:g} s"
                                rows.append(_reason_row(base, "failed", dead[s.name]))
                            else:
                                too_slow[s.name] = (batch, slow_why)
                                rows.append(_reason_row(base, "too slow", slow_why))
                        else:
                            msg = " ".join(str(e).split())
                            dead[s.name] = f"run at batch {batch}: {type(e).__name__}: {msg[:400]}"
                            rows.append(_reason_row(base, "failed", dead[s.name]))
                        _say(f"  {s.name}: {rows[-1]['reason']}")
                        continue
                    rtol, atol, tol_from = check_tolerance(s, info)
                    base["check_tol"] = {"rtol": rtol, "atol": atol, "from": tol_from}
                    if out.shape != ref.shape:
                        errs[s.name] = (float("inf"), f"output shape {tuple(out.shape)} != eager {tuple(ref.shape)}")
                    else:
                        d = (out.float() - ref.float()).abs()
                        ok = bool(torch.all(d <= atol + rtol * ref.float().abs()))
                        errs[s.name] = (float(d.max()) if d.numel() else 0.0, "" if ok else "mismatch")
                    calls[s.name] = (lambda f=p.fn: f(*args))
                    if firsts[s.name] > SLOW_CALL_S:        # maybe a simulator: how long is one call?
                        t0 = time.perf_counter()
                        calls[s.name]()
                        per_call[s.name] = time.perf_counter() - t0
                        if per_call[s.name] > max_call_s:
                            del calls[s.name], per_call[s.name]
                            too_slow[s.name] = (batch, slow_why)
                            rows.append(_reason_row(base, "too slow", slow_why))
                            continue
                    rows.append(base)                           # filled in after timing
                    if parts and s.target in PARTS:
                        _add_parts(rows, calls, base, s, p, args)
                how = (f"bursts of {burst}, first call untimed" if mode == "warm"
                       else "one call per turn")
                _say(f"batch {batch}: time {', '.join(calls)} ({warmup} warm-up + {reps} interleaved rounds, "
                     f"{mode}: {how})")
                per_turn = calls_per_turn(mode, burst)
                # a slow system (a simulator) gets as many turns as fit its budget, at least enough for
                # MIN_REPS samples; in warm mode without warm-up turns (each burst's first call warms it)
                min_turns = -(-MIN_REPS // samples_per_turn(mode, burst))
                reps_for = {k: min(reps, max(min_turns, int(system_budget_s / (t * per_turn))))
                            for k, t in per_call.items() if t * per_turn * reps > system_budget_s}
                warm_for = {k: 0 if mode == "warm" else min(warmup, 1) for k in reps_for}
                for k, n in reps_for.items():
                    _say(f"  {k}: {per_call[k]:.1f} s per call, {n} timed rounds instead of {reps} "
                         f"(--system-budget {system_budget_s:g} s)")
                samples = measure(calls, reps=reps, warmup=warmup, gap_s=gap_ms / 1e3, reps_for=reps_for,
                                  warmup_for=warm_for, mode=mode, burst=burst) if calls else {}
                bounds.compute(batch, args)         # after timing: nothing runs next to the samples
                for r in rows:
                    if r["batch"] != batch or r.get("status") or r["system"] not in samples:
                        continue
                    st = summarize(samples[r["system"]])
                    if r["kind"] == "part":
                        # a part has no output of its own to check
                        r.update(status="ok", reason="", **st.as_dict(), qps=batch / (st.median_ms / 1e3))
                        continue
                    err, mism = errs[r["system"]]
                    # the byte estimate counts fp32 embedding rows: it does not hold for compressed tables
                    w = work if r.get("variant") in (None, "fp32") else {"flops": work.get("flops")}
                    r.update(status="ok", reason="", **st.as_dict(), qps=batch / (st.median_ms / 1e3),
                             first_call_s=round(firsts[r["system"]], 4), max_abs_err=err,
                             max_abs_diff_vs_eager=err, check="ok" if not mism else mism, work=w)
                    if w.get("flops"):
                        r["gflops"] = w["flops"] / (st.median_ms / 1e3) / 1e9
                    if w.get("bytes"):
                        r["gbps"] = w["bytes"] / (st.median_ms / 1e3) / 1e9
                    if mism:
                        tol = r["check_tol"]
                        _say(f"  {r['system']}: output differs from eager at batch {batch} "
                             f"(max_abs_err {err:.3g}, allowed {tol['atol']:.3g} + {tol['rtol']:.3g}|eager|, "
                             f"{tol['from']}): {mism}")
                for r in rows:
                    if r["batch"] == batch:
                        bounds.fill(r)
                del calls, args
    finally:
        torch.set_num_threads(old_threads)
        shutil.rmtree(workdir, ignore_errors=True)
    return {
        "schema": SCHEMA,
        "kind": "model",
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": command if command is not None else sys.argv,
        "note": note,
        "settings": settings,
        "machine": machine,
        "load": monitor.stop(),
        "roofline": ceilings,
        "lower_bound": bounds.as_dict(),
        "systems": sysinfo,
        "rows": rows,
    }

