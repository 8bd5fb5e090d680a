"""Predicted vs measured: the cost model's time for every xrec row of ``xrec bench`` JSON files.

    python -m xrec.cost.accuracy BENCH.json [...] [--md PAGE.md] [--json F] [--plot F.png]
                                 [--params PROFILE.json] [--target cpu]

Measurement is ``xrec bench``'s (its median, its thread count, its machine); prediction is
``xrec.cost.perf.predict_target`` on the optimised IR of the same model and precision (built here
as ``xrec cost`` builds it), on the host probed at the bench's thread count, with the calibration
profile of that thread count (``xrec calibrate``) unless ``--params`` names one. Nothing is fitted
to these measurements: calibration runs only synthetic programs.

Error is ``predicted / measured - 1``; the summary gives the median and worst absolute error.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path


def rows_of(bench_docs, target: str = "cpu"):
    """(model, variant, batch, threads, measured_s, row) of every timed xrec row of ``target``."""
    for doc in bench_docs:
        for r in doc.get("rows", []):
            if r.get("kind") != "xrec" or r.get("target") != target or r.get("status") != "ok":
                continue
            yield (r["model"], r.get("variant", "fp32"), int(r["batch"]), int(r["threads"]),
                   r["median_ms"] / 1e3, r)


def _graph(model: str, variant: str, target: str, max_rows):
    from types import SimpleNamespace
    from .cli import optimized_graph
    args = SimpleNamespace(model=model, max_rows=max_rows, target=target, option=None,
                           quantize=None if variant == "fp32" else variant, calib_samples=256)
    g, _ = optimized_graph(args)
    return g


def compare(bench_docs, *, target: str = "cpu", params_path: str | None = None) -> dict:
    import os
    from .catalogue import load_device
    from .model import PerfParams
    from .perf import load_profile, predict_target
    graphs, devices, out = {}, {}, []
    params_fixed = PerfParams.from_json(params_path) if params_path else None
    max_rows = {id(d): d.get("settings", {}).get("max_rows") for d in bench_docs}
    for doc in bench_docs:
        for model, variant, batch, threads, measured, row in rows_of([doc], target):
            key = (model, variant, max_rows[id(doc)])
            if key not in graphs:
                print(f"[accuracy] building the IR of {model} ({variant})", file=sys.stderr, flush=True)
                graphs[key] = _graph(model, variant, target, max_rows[id(doc)])
            if threads not in devices:
                os.environ["XREC_THREADS"] = str(threads)
                dev = load_device("host", threads=threads)
                devices[threads] = (dev, params_fixed or load_profile(dev, target))
            dev, params = devices[threads]
            p = predict_target(graphs[key], dev, target, batch, params, use_profile=False)
            out.append({"model": model, "variant": variant, "batch": batch, "threads": threads,
                        "measured_s": measured, "predicted_s": p.total_s,
                        "error": p.total_s / measured - 1.0,
                        "stages": {s.stage: s.time_s for s in p.stages}, "fixed_s": p.fixed_s,
                        "bound": max(p.stages, key=lambda s: s.time_s).bound,
                        "params": p.params.source})
    errs = [abs(r["error"]) for r in out]
    summary = {"n": len(out), "median_abs_error": statistics.median(errs) if errs else None,
               "worst_abs_error": max(errs) if errs else None,
               "worst": max(out, key=lambda r: abs(r["error"])) if out else None}
    return {"target": target, "rows": out, "summary": summary,
            "profiles": sorted({r["params"] for r in out})}


def markdown(rep: dict, title: str = "Cost model accuracy") -> str:
    s = rep["summary"]
    lines = [f"# {title}", "",
             f"{s['n']} (model, precision, batch) points; median |error| **{100 * s['median_abs_error']:.1f} %**, "
             f"worst **{100 * s['worst_abs_error']:.1f} %** "
             f"({s['worst']['model']} {s['worst']['variant']} batch {s['worst']['batch']}).", "",
             "Error = predicted / measured - 1. Profiles: " + "; ".join(rep["profiles"]), "",
             "| model | precision | threads | batch | measured ms | predicted ms | error | embedding | dense | "
             "interaction | other | fixed | bound |", "|" + "---|" * 13]
    for r in rep["rows"]:
        st = r["stages"]
        lines.append(f"| {r['model']} | {r['variant']} | {r['threads']} | {r['batch']} | {r['measured_s'] * 1e3:.3f} "
                     f"| {r['predicted_s'] * 1e3:.3f} | {100 * r['error']:+.1f} % | "
                     + " | ".join(f"{st.get(k, 0) * 1e3:.3f}" for k in ("embedding", "dense", "interaction", "other"))
                     + f" | {r['fixed_s'] * 1e3:.3f} | {r['bound']} |")
    lines.append("")
    lines.append("Stage columns: predicted ms per stage (xrec.cost.work.STAGES); fixed: per-inference overhead.")
    return "\n".join(lines) + "\n"


def plot(rep: dict, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6.5, 6))
    markers = {"fp32": "o", "int8": "s", "fp16": "^", "int4": "D"}
    models = sorted({r["model"] for r in rep["rows"]})
    cmap = plt.get_cmap("tab10")
    for i, m in enumerate(models):
        for v in sorted({r["variant"] for r in rep["rows"] if r["model"] == m}):
            pts = [r for r in rep["rows"] if r["model"] == m and r["variant"] == v]
            ax.scatter([r["measured_s"] * 1e3 for r in pts], [r["predicted_s"] * 1e3 for r in pts],
                       marker=markers.get(v, "x"), color=cmap(i % 10), label=f"{m} {v}", s=28)
    lo = min(min(r["measured_s"], r["predicted_s"]) for r in rep["rows"]) * 1e3 / 1.5
    hi = max(max(r["measured_s"], r["predicted_s"]) for r in rep["rows"]) * 1e3 * 1.5
    ax.plot([lo, hi], [lo, hi], "k-", lw=0.8)
    for f in (0.85, 1.15):
        ax.plot([lo, hi], [lo * f, hi * f], "k:", lw=0.6)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("measured ms (xrec bench median)")
    ax.set_ylabel("predicted ms (xrec.cost, calibrated)")
    s = rep["summary"]
    ax.set_title(f"cost model, cpu target: median |err| {100 * s['median_abs_error']:.1f} %, "
                 f"worst {100 * s['worst_abs_error']:.1f} %", fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m xrec.cost.accuracy", description=__doc__.split("\n\n")[0])
    ap.add_argument("bench_json", nargs="+", help="xrec bench --json outputs")
    ap.add_argument("--target", default="cpu")
    ap.add_argument("--params", default=None, help="a calibration profile (default: the stored one per thread count)")
    ap.add_argument("--md", default=None)
    ap.add_argument("--json", default=None)
    ap.add_argument("--plot", default=None)
    ap.add_argument("--title", default="Cost model accuracy: predicted vs measured (cpu target)")
    args = ap.parse_args(argv)
    docs = []
    for f in args.bench_json:
        try:
            docs.append(json.loads(Path(f).read_text()))
        except (OSError, json.JSONDecodeError) as e:
            print(f"error: cannot read bench JSON {f}: {e}", file=sys.stderr)
            return 2
    rep = compare(docs, target=args.target, params_path=args.params)
    if not rep["rows"]:
        print(f"error: no timed xrec {args.target} rows in {', '.join(args.bench_json)}", file=sys.stderr)
        return 2
    rep["bench_files"] = list(args.bench_json)
    md = markdown(rep, args.title)
    print(md)
    if args.md:
        Path(args.md).write_text(md)
    if args.json:
        Path(args.json).write_text(json.dumps(rep, indent=1))
    if args.plot:
        plot(rep, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
