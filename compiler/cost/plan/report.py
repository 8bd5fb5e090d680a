"""The ranked table, the Pareto front (p99 latency, $ per million queries, joules per query) and its plot."""
from __future__ import annotations

import math
import sys

from .score import Row


def _f(v, fmt, none="n/a"):
    return none if v is None or (isinstance(v, float) and math.isinf(v)) else format(v, fmt)


HEAD = (f"{'#':>3s} {'device':14s} {'target':7s} {'prec':5s} {'n':>3s} {'maxB':>5s} {'delay':>7s} "
        f"{'p99 ms':>8s} {'q/s/dev@p99':>11s} {'util':>5s} {'$/Mq':>9s} {'J/query':>10s} {'samples/J':>10s} "
        f"{'mem GiB':>8s}  accuracy")


def row_line(i, r: Row) -> str:
    mem = "" if r.memory_bytes is None else f"{r.memory_bytes / 2**30:.3f}"
    return (f"{i:>3} {r.device:14s} {r.target:7s} {r.precision:5s} {_f(r.count, 'd', '-'):>3s} "
            f"{r.policy.max_batch:5d} {r.policy.max_delay_us:5d}us "
            f"{_f(r.p99_s * 1e3 if r.latency else None, '.3f'):>8s} {_f(r.rate_at_sla, '.4g'):>11s} "
            f"{_f(r.latency.utilisation if r.latency else None, '.2f'):>5s} {_f(r.usd_per_mq, '.4g'):>9s} "
            f"{_f(r.joules_per_query, '.3e'):>10s} {_f(r.samples_per_J, '.4g'):>10s} {mem:>8s}  {r.accuracy}")


def print_table(plan: dict, ranked: list[Row], rows: list[Row], show: int = 10, out=None) -> None:
    out = out or sys.stdout
    req = plan["request"]
    print(f"xrec plan {req['model']}: {req['qps']:g} queries/s, p99 <= {req['p99_ms']:g} ms"
          + (f", AUC drop <= {req['max_auc_drop']:g}" if req.get("max_auc_drop") is not None else "")
          + f", objective {req['objective']}; {len(rows)} configurations "
          f"({len(ranked)} meet every bound)", file=out)
    best = _first_per_group(ranked)
    print(f"\nranked by {req['objective']}, the best batching policy of each device/target/precision "
          f"(n = devices, each a full replica; every policy in --json):", file=out)
    print(HEAD, file=out)
    for i, r in enumerate(best[:show], 1):
        print(row_line(i, r), file=out)
    if len(best) > show:
        print(f"    ... {len(best) - show} more in --json", file=out)
    rej = [r for r in rows if not r.feasible]
    if rej:
        counts: dict[str, int] = {}
        for r in rej:
            for why in {w.split(":")[0] for w in r.reasons}:
                counts[why] = counts.get(why, 0) + 1
        from .score import closest
        print(f"\nrejected: {len(rej)} configurations ("
              + ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1])) + ")", file=out)
        # meeting every bound but lacking the objective's figure: one line per device
        unranked: dict[str, list[Row]] = {}
        for r in rej:
            if all(w.split(":")[0] in ("no price", "no power") for w in r.reasons):
                unranked.setdefault(r.device, []).append(r)
        for dev, rs in unranked.items():
            best = min(rs, key=lambda r: r.p99_s)
            n = f"{best.count} device{'s' if best.count != 1 else ''}"
            print(f"    {dev}: {len(rs)} configurations meet every bound (best p99 {best.p99_s * 1e3:.3g} ms with "
                  f"{n}) but cannot be ranked: {best.reasons[0].split(': ', 1)[1]}", file=out)
        others = [r for r in rej if r.device not in unranked or r not in unranked[r.device]]
        near = _first_per_group(closest(others, req["p99_ms"] / 1e3, len(others)))
        if near:
            print("  per device/target/precision, its policy nearest to the bounds:", file=out)
        for r in near[:show]:
            print(f"    {r.key:40s} n={r.count or '-'}: " + "; ".join(r.reasons), file=out)
        if len(near) > show:
            print(f"    ... {len(near) - show} more in --json", file=out)
    ce = plan.get("cost_vs_energy")
    if ce is not None:
        print(f"\ncost vs energy: {ce['why']}", file=out)
    if plan.get("time_models"):
        print("\ntime models (xrec.cost.perf.predict_target; an uncalibrated one is a lower bound, its p99 "
              "optimistic):", file=out)
        for k, src in plan["time_models"].items():
            print(f"  {k}: {src}", file=out)
    print("\nenergy and price sources:", file=out)
    for d, s in plan["sources"].items():
        print(f"  {d}: price {s['price']}; power {s['power']}", file=out)
    if plan["unchecked_precisions"]:
        print(f"\nnot accuracy-checked: {', '.join(plan['unchecked_precisions'])}", file=out)
    notes = plan.get("notes", [])
    if notes:
        print("\nnotes:", file=out)
        for n in notes:
            print(f"  - {n}", file=out)


def _first_per_group(rows: list[Row]) -> list[Row]:
    seen, out = set(), []
    for r in rows:
        g = (r.device, r.target, r.precision)
        if g not in seen:
            seen.add(g)
            out.append(r)
    return out


def pareto(rows: list[Row]) -> list[Row]:
    """Feasible rows not dominated in (p99, $/Mq, J/query); a missing cost or energy counts as worst."""
    inf = math.inf
    pts = [(r, (r.p99_s, r.usd_per_mq if r.usd_per_mq is not None else inf,
                r.joules_per_query if r.joules_per_query is not None else inf)) for r in rows if r.feasible]
    front = []
    for r, a in pts:
        dominated = any(all(x <= y for x, y in zip(b, a)) and any(x < y for x, y in zip(b, a)) for _, b in pts)
        if not dominated:
            front.append(r)
    return sorted(front, key=lambda r: r.p99_s)


def plot(rows: list[Row], front: list[Row], chosen: Row | None, path: str, title: str) -> None:
    import matplotlib
    import matplotlib.ticker
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    feas = [r for r in rows if r.feasible]
    axes_def = [("p99 latency (ms)", lambda r: r.p99_s * 1e3, "$ per million queries", lambda r: r.usd_per_mq),
                ("p99 latency (ms)", lambda r: r.p99_s * 1e3, "joules per query", lambda r: r.joules_per_query),
                ("$ per million queries", lambda r: r.usd_per_mq, "joules per query", lambda r: r.joules_per_query)]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    devices = sorted({r.device for r in feas})
    colours = {d: plt.cm.tab10(i % 10) for i, d in enumerate(devices)}
    for ax, (xl, fx, yl, fy) in zip(axes, axes_def):
        have = [r for r in feas if fx(r) is not None and fy(r) is not None]
        for d in devices:
            pts = [(fx(r), fy(r)) for r in have if r.device == d]
            if pts:
                ax.scatter(*zip(*pts), s=12, alpha=0.5, color=colours[d], label=d)
        fr = [(fx(r), fy(r)) for r in front if r in have]
        if fr:
            ax.scatter(*zip(*fr), s=40, facecolors="none", edgecolors="k", label="Pareto front (3-D)")
        pts2 = sorted((fx(r), fy(r)) for r in have)
        stair, best = [], math.inf
        for x, y in pts2:                        # this panel's 2-D front: lower-left staircase
            if y < best:
                stair.append((x, y))
                best = y
        if stair:
            ax.step(*zip(*stair), where="post", color="k", lw=0.8, label="front of these two")
        if chosen is not None and chosen in have:
            ax.scatter([fx(chosen)], [fy(chosen)], marker="*", s=200, color="red", label="chosen")
        if not have:
            ax.text(0.5, 0.5, "no configuration has both figures\n(missing price or power)",
                    ha="center", va="center", transform=ax.transAxes)
        ax.set_xlabel(xl)
        ax.set_ylabel(yl)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
