"""The timing part of ``xrec demo``: interleaved samples, their spread, and whether the machine was busy.

A demo run on a loaded machine once printed eager 8.7 ms in one run and 309 ms in the next, with medians
only. So each cell shows the median and the p10-p90 spread, and the run watches the machine (load average
against the cores, steal time from /proc/stat, CPU time of other processes: ``machine.LoadMonitor``) and says
plainly when the numbers are not to be trusted.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

from .machine import LoadMonitor, usable_cpus
from .timing import Stats, summarize

# thresholds for "busy": over these the timings of a demo are not representative
LOAD_PER_CPU = 0.75        # 1-minute load average per usable CPU, before timing started (we were idle then)
OTHER_BUSY_FRAC = 0.20     # share of all CPU time other processes used while we timed
STEAL_FRAC = 0.05          # share of CPU time the hypervisor gave to other guests
SPREAD = 1.5               # p90 / p10 of one cell above this: noisy


@dataclass
class DemoTimings:
    rows: list[dict]            # {"batch": b, name: Stats, ...}
    load: dict                  # LoadMonitor.stop()
    cpus: int


def time_systems(make_calls: Callable[[int], Mapping[str, Callable[[], object]]], batches: Sequence[int],
                 reps: int = 7, monitor: LoadMonitor | None = None) -> DemoTimings:
    """For each batch: ``make_calls(batch)`` -> {system: fn}; one warm-up call each, then ``reps`` rounds of
    samples interleaved across the systems (a slow spell hits all of them)."""
    monitor = monitor or LoadMonitor()
    monitor.start()
    rows = []
    for batch in batches:
        calls = make_calls(batch)
        times: dict[str, list[float]] = {k: [] for k in calls}
        for fn in calls.values():
            fn()
        for _ in range(reps):
            for k, fn in calls.items():
                t0 = time.perf_counter()
                fn()
                times[k].append(time.perf_counter() - t0)
        rows.append({"batch": batch, **{k: summarize(v) for k, v in times.items()}})
    return DemoTimings(rows, monitor.stop(), usable_cpus())


def busy_reasons(load: dict, cpus: int) -> list[str]:
    """Why the machine counts as busy (empty: it looked quiet), each with the number that says so."""
    out = []
    la = load.get("loadavg_start")
    if la and la[0] > LOAD_PER_CPU * cpus:
        out.append(f"load average {la[0]:.1f} on {cpus} CPU(s) before timing")
    other = load.get("other_busy_frac")
    if other is not None and other > OTHER_BUSY_FRAC:
        top = ", ".join(f"{name} {s:g} s" for name, s in (load.get("other_processes_cpu_s") or [])[:3] if s > 0)
        out.append(f"other processes used {other:.0%} of the CPU time while timing" + (f" ({top})" if top else ""))
    steal = load.get("steal_frac")
    if steal is not None and steal > STEAL_FRAC:
        out.append(f"steal time {steal:.0%} (the hypervisor ran other guests on these CPUs)")
    return out


def noisy_cells(rows: list[dict]) -> list[str]:
    """'name at batch b' for each cell whose p90/p10 spread exceeds SPREAD."""
    return [f"{k} at batch {r['batch']}" for r in rows for k, s in r.items()
            if isinstance(s, Stats) and s.p10_ms > 0 and s.p90_ms / s.p10_ms > SPREAD]


def format_speed(t: DemoTimings, indent: str = "           ") -> list[str]:
    """The demo's speed table: median and p10-p90 per system and batch, the median speedup of the last
    system over the first, then a line saying whether the machine was quiet or busy (and why)."""
    keys = [k for k in t.rows[0] if k != "batch"]
    lines = [f"speed      ms per batch: median (p10-p90) of {t.rows[0][keys[0]].n} interleaved samples"]
    lines.append(indent + f"{'batch':>6s}" + "".join(f"{k:>28s}" for k in keys) + f"{'speedup':>10s}")
    for r in t.rows:
        cells = "".join(f"{f'{r[k].median_ms:.3f} ({r[k].p10_ms:.3f}-{r[k].p90_ms:.3f})':>28s}" for k in keys)
        lines.append(indent + f"{r['batch']:6d}" + cells + f"{r[keys[0]].median_ms / r[keys[-1]].median_ms:9.2f}x")
    reasons = busy_reasons(t.load, t.cpus)
    if reasons:
        lines.append("machine    BUSY: " + "; ".join(reasons) + ". These timings are not representative: "
                     "rerun on a quiet machine, or use `xrec bench` (it records the load with every row).")
    else:
        la = t.load.get("loadavg_start")
        lines.append(f"machine    quiet ({t.cpus} CPU(s)" + (f", load average {la[0]:.1f}" if la else "")
                     + (f", others {t.load['other_busy_frac']:.0%} of CPU" if "other_busy_frac" in t.load else "")
                     + ")")
    noisy = noisy_cells(t.rows)
    if noisy:
        lines.append(f"spread     wide (p90 > {SPREAD:g} x p10) for " + ", ".join(noisy)
                     + ": compare medians with care")
    return lines
