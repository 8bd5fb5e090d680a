"""PNG charts of a benchmark document (matplotlib, Agg backend, imported lazily).

Model runs: latency and throughput against batch size per system, and the
roofline with each system's achieved GFLOP/s at the model's arithmetic
intensity. Kernel runs: achieved bandwidth or GFLOP/s per configuration per
system, and the roofline.
"""
from __future__ import annotations

from pathlib import Path

MARKERS = "osD^vP*Xhp<>"


def _style(systems: list[str]) -> dict[str, dict]:
    import matplotlib
    cmap = matplotlib.colormaps["tab10" if len(systems) <= 10 else "tab20"]
    n = 10 if len(systems) <= 10 else 20
    out = {}
    for i, s in enumerate(systems):
        xrec = s.startswith("xrec-")
        out[s] = {"color": cmap(i % n), "marker": MARKERS[i % len(MARKERS)],
                  "linewidth": 2.6 if xrec else 1.4, "linestyle": "-" if xrec or s.startswith("roofline")
                  else "--"}
    return out


def _roofline_axes(ax, roof: dict | None, points: list[tuple[str, float, float]], style: dict,
                   label_points: bool = True) -> None:
    """Ceilings (stream, gather, FMA peak) and (label, ai, gflops) points on log-log axes."""
    import numpy as np
    ais = [p[1] for p in points if p[1] > 0] or [0.1, 10.0]
    lo, hi = min(ais + [0.05]) / 2, max(ais + [50.0]) * 2
    x = np.logspace(np.log10(lo), np.log10(hi), 200)
    if roof and "error" not in roof:
        peak = roof["fma_peak_GFLOPs"]
        for key, name, ls in (("stream_read_GBps", "stream read", "-"), ("gather_GBps", "random-row gather", ":")):
            bw = roof[key]
            ax.plot(x, np.minimum(peak, x * bw), color="black", linestyle=ls, linewidth=1.2,
                    label=f"{name} {bw:.1f} GB/s")
        ax.axhline(peak, color="gray", linewidth=0.8)
        ax.text(lo * 1.1, peak * 1.08, f"FMA peak {peak:.0f} GFLOP/s", fontsize=8)
    seen = set()
    for label, ai, gf in points:
        st = style.get(label, {})
        ax.scatter([ai], [gf], color=st.get("color"), marker=st.get("marker", "o"), s=36, zorder=3,
                   label=label if label_points and label not in seen else None)
        seen.add(label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOP / byte)")
    ax.set_ylabel("GFLOP/s")
    ax.set_title("roofline (threads=%s)" % (roof or {}).get("threads", "?"))
    ax.grid(True, which="both", alpha=0.3)
    if not roof or "error" in roof:
        ax.text(0.02, 0.95, "roofline probes not run" if not roof else f"roofline probes failed: {roof['error'][:60]}",
                transform=ax.transAxes, fontsize=8, color="gray", va="top")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="lower right")


def plot_model(doc: dict, path) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = [r for r in doc["rows"] if r.get("status") == "ok"]
    systems = []
    for r in doc["rows"]:
        if r["system"] not in systems:
            systems.append(r["system"])
    style = _style(systems)
    fig, axes = plt.subplots(1, 3, figsize=(18, 6.4))
    for s in systems:
        rs = sorted((r for r in rows if r["system"] == s), key=lambda r: r["batch"])
        if not rs:
            continue
        b = [r["batch"] for r in rs]
        st = style[s]
        kw = dict(color=st["color"], marker=st["marker"], linewidth=st["linewidth"], linestyle=st["linestyle"])
        med = [r["median_ms"] for r in rs]
        axes[0].plot(b, med, label=s, **kw)
        axes[0].fill_between(b, [r["p10_ms"] for r in rs], [r["p90_ms"] for r in rs], color=st["color"], alpha=0.07)
        axes[1].plot(b, [r["qps"] for r in rs], label=s, **kw)
    missing = [s for s in systems if not any(r["system"] == s for r in rows)]
    batches = sorted({r["batch"] for r in doc["rows"]})
    for ax, ylabel, title in ((axes[0], "latency, median ms (band: p10-p90)", "latency"),
                              (axes[1], "throughput, samples/s", "throughput")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(batches)
        ax.set_xticklabels([str(b) for b in batches])
        ax.set_xlabel("batch size")
        ax.set_ylabel(ylabel)
        ax.set_title(f"{doc['settings'].get('model')}: {title}")
        ax.grid(True, which="both", alpha=0.3)
    if missing:
        axes[0].text(0.01, 0.01, "did not run: " + ", ".join(missing), transform=axes[0].transAxes,
                     fontsize=7, color="gray", va="bottom", wrap=True)
    points = [(r["system"], r["work"]["flops"] / r["work"]["bytes"], r["gflops"]) for r in rows
              if r.get("gflops") and (r.get("work") or {}).get("bytes")]
    _roofline_axes(axes[2], doc.get("roofline"), points, style, label_points=False)
    axes[2].set_title(axes[2].get_title() + ": one point per system and batch")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(7, max(1, len(labels))), fontsize=9, frameon=False)
    m = doc["machine"]
    load = doc.get("load") or {}
    busy = f", others busy {100 * load['other_busy_frac']:.0f}%" if "other_busy_frac" in load else ""
    fig.suptitle(f"{m.get('cpu_model')} ({m.get('cores')} cores, {m.get('best_isa')}), "
                 f"threads={doc['settings']['threads']}, {doc['created'][:10]}{busy}", fontsize=10)
    rows_of_legend = (len(labels) + 6) // 7
    fig.tight_layout(rect=(0, 0.045 * rows_of_legend + 0.01, 1, 1))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_kernel(doc: dict, path) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    rows = [r for r in doc["rows"] if r.get("status") == "ok"]
    systems, configs = [], []
    for r in doc["rows"]:
        if r["system"] not in systems and r.get("status") == "ok":     # bars only for systems that ran
            systems.append(r["system"])
        if r["config"] not in configs:
            configs.append(r["config"])
    style = _style(systems)
    metric, unit = (("gbps", "GB/s of rows touched") if doc["settings"].get("kernel") == "embedding-bag"
                    else ("gflops", "GFLOP/s"))
    fig, axes = plt.subplots(1, 2, figsize=(18, 6), gridspec_kw={"width_ratios": [2, 1]})
    width = 0.8 / max(1, len(systems))
    x = np.arange(len(configs))
    for i, s in enumerate(systems):
        vals = []
        for c in configs:
            r = next((r for r in rows if r["system"] == s and r["config"] == c), None)
            vals.append(r.get(metric) or 0.0 if r else 0.0)
        axes[0].bar(x + (i - (len(systems) - 1) / 2) * width, vals, width, label=s, color=style[s]["color"])
    axes[0].set_xticks(x)
    axes[0].set_xticklabels(configs, rotation=35, ha="right", fontsize=7)
    axes[0].set_ylabel(unit)
    axes[0].set_title(f"kernel {doc['settings'].get('kernel')}: achieved {unit} (median)")
    axes[0].grid(True, axis="y", alpha=0.3)
    axes[0].legend(fontsize=8)
    points = [(r["system"], r["flops"] / r["bytes"], r["flops"] / (r["median_ms"] / 1e3) / 1e9)
              for r in rows if r.get("flops") and r.get("bytes")]
    _roofline_axes(axes[1], doc.get("roofline"), points, style)
    m = doc["machine"]
    load = doc.get("load") or {}
    busy = f", others busy {100 * load['other_busy_frac']:.0f}%" if "other_busy_frac" in load else ""
    fig.suptitle(f"{m.get('cpu_model')} ({m.get('cores')} cores, {m.get('best_isa')}), "
                 f"threads={doc['settings']['threads']}, {doc['created'][:10]}{busy}", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot(doc: dict, path) -> Path:
    return plot_model(doc, path) if doc["kind"] == "model" else plot_kernel(doc, path)
