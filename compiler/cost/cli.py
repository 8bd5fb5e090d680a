"""``xrec cost MODEL --target T --batch 1,64,512,2048 [--hardware NAME|FILE] [--quantize P] [--json]``.

Builds the optimised IR as ``xrec ir`` does (the target's own passes included), costs it per stage at
each batch and prints the work (GFLOP, MB per memory tier, calls) and the predicted time on the device:
the target's performance model (``xrec.cost.perf``) with this machine's calibration profile when
``xrec calibrate`` wrote one (else ``--params``, else the uncalibrated roofline: a lower bound;
``--lower-bound`` asks for the plain roofline of the IR's work, whatever the target).
"""
from __future__ import annotations

import json
import sys


def add_arguments(sp) -> None:
    from xrec.cli import _batches
    from xrec.passes.quantize_embeddings import QUANTIZE_CHOICES
    from xrec.targets.options import option_arg
    sp.add_argument("model", help="a zoo name, path/to/file.py:factory or a .pt2 file")
    sp.add_argument("--target", "-t", default="cpu", help="the xrec target to cost for (default cpu)")
    sp.add_argument("--batch", type=_batches, default=[1, 64, 512, 2048], help="comma-separated batch sizes")
    sp.add_argument("--hardware", default="host",
                    help="a device of the catalogue (xrec.cost.device_names(); 'host' is probed here) or a JSON file")
    sp.add_argument("--quantize", choices=QUANTIZE_CHOICES, default=None, help="embedding-table precision")
    sp.add_argument("--ids", default="uniform",
                    help="id distribution for the cache-hit estimate: uniform | zipf[:ALPHA]")
    sp.add_argument("--params", default=None, metavar="PROFILE.json",
                    help="performance parameters (efficiency, overheads) from a calibration profile")
    sp.add_argument("--lower-bound", action="store_true",
                    help="the plain roofline of the IR's work at efficiency 1 (a lower bound): no calibration "
                         "profile, no target performance model")
    sp.add_argument("--max-rows", type=int, default=None, help="cap zoo tables at this many rows")
    sp.add_argument("--option", "-O", type=option_arg, action="append", metavar="KEY=VALUE", help="a target option")
    sp.add_argument("--calib-samples", type=int, default=1024, help="calibration samples for --quantize")
    sp.add_argument("--json", action="store_true", help="print one JSON object")


def optimized_graph(args):
    """The optimised IR of ``args.model`` for ``args.target`` (the reference pipeline if the target is not here)."""
    from xrec.api import lower
    from xrec.model_arg import resolve
    src = resolve(args.model, max_rows=args.max_rows)
    model = src.exported if src.exported is not None else src.module
    example = None if src.exported is not None else src.example_inputs
    opts = dict(args.option or []) or None
    kw = dict(name=src.name, options=opts, quantize=args.quantize,
              compression={"calibration": src.make_inputs, "calib_samples": args.calib_samples})
    notes = []
    try:
        g, *_ = lower(model, example, target=args.target, **kw)
    except RuntimeError as e:
        if "not available here" not in str(e):
            raise
        notes.append(f"{e}; costed the IR of the reference pipeline instead")
        g, *_ = lower(model, example, target="reference", **{**kw, "options": None})
    return g, notes


def report(g, device, target: str, batches, ids: str = "uniform", params=None, use_profile: bool = True,
           options: dict | None = None) -> dict:
    """Per batch: the graph's work and the predicted time (what ``--json`` prints)."""
    from .graph import graph_work
    from .model import predict_work
    from .perf import predict_target
    rows = []
    for b in batches:
        gw = graph_work(g, b, cache_bytes=device.cache_bytes, ids=ids)
        if use_profile:
            # the target models of xla/hls/triton compile or plan with the target's options (-O)
            extra = {"options": options} if options and target in ("xla", "hls", "triton") else {}
            p = predict_target(g, device, target, b, params, ids=ids, **extra)
        else:
            p = predict_work(gw, device, target, params)
        rows.append({"batch": b, "work": gw.as_dict(), "prediction": p.as_dict()})
    return {"model": g.name, "target": target, "hardware": device.name, "ids": ids, "device": device.as_dict(),
            "batches": rows}


def _fmt_s(s: float) -> str:
    return f"{s * 1e6:9.1f} us" if s < 1e-3 else f"{s * 1e3:9.3f} ms"


def print_report(rep: dict, out=None) -> None:
    out = out or sys.stdout
    dev = rep["device"]
    print(f"{rep['model']} on {dev['description']} ({rep['hardware']}), target {rep['target']}, "
          f"ids {rep['ids']}; {rep['batches'][0]['prediction']['params']['source']}", file=out)
    tiers = sorted({t for r in rep["batches"] for s in r["work"]["stages"].values() for t in s["bytes"]})
    for r in rep["batches"]:
        w, p = r["work"], r["prediction"]
        print(f"\nbatch {r['batch']}", file=out)
        head = f"  {'stage':12s} {'GFLOP':>10s} " + " ".join(f"{'MB ' + t:>10s}" for t in tiers) + \
            f" {'calls':>6s} {'time':>12s}  bound"
        print(head, file=out)
        for stage, sw in w["stages"].items():
            st = p["stages"][stage]
            print(f"  {stage:12s} {sum(sw['flops'].values()) / 1e9:10.4f} "
                  + " ".join(f"{sw['bytes'].get(t, 0) / 1e6:10.3f}" for t in tiers)
                  + f" {sw['calls']:6d} {_fmt_s(st['time_s']):>12s}  {st['bound']}", file=out)
        tot = w["total"]
        moved = sum(tot["transfers"].values())
        if p["transfer_s"]:
            print(f"  {'transfer':12s} {'':10s} " + " ".join(f"{'':10s}" for _ in tiers)
                  + f" {'':6s} {_fmt_s(p['transfer_s']):>12s}  {moved / 1e6:.3f} MB over the host link", file=out)
        print(f"  {'total':12s} {sum(tot['flops'].values()) / 1e9:10.4f} "
              + " ".join(f"{tot['bytes'].get(t, 0) / 1e6:10.3f}" for t in tiers)
              + f" {tot['calls']:6d} {_fmt_s(p['total_s']):>12s}", file=out)
    notes = sorted({n for r in rep["batches"] for n in r["prediction"]["notes"]})
    if notes:
        print("\nnotes:", file=out)
        for n in notes:
            print(f"  - {n}", file=out)


def run(args) -> int:
    from .catalogue import CatalogueError, load_device
    from .cache import IdDistribution
    from .model import PerfParams
    from .rules import CostError
    try:
        device = load_device(args.hardware)
        ids = str(IdDistribution.parse(args.ids))
        params = PerfParams.from_json(args.params) if args.params else None
        if args.target not in device.targets:
            raise CostError(f"target {args.target!r} does not run on {device.name} (its targets: "
                            f"{', '.join(device.targets)})")
    except (CatalogueError, CostError, ValueError) as e:
        print(f"xrec cost: {e}", file=sys.stderr)
        return 2
    g, notes = optimized_graph(args)
    try:
        rep = report(g, device, args.target, args.batch, ids, params, use_profile=not args.lower_bound,
                     options=dict(args.option or []) or None)
    except CostError as e:
        print(f"xrec cost: {e}", file=sys.stderr)
        return 2
    for r in rep["batches"]:
        r["prediction"]["notes"] = notes + r["prediction"]["notes"]
    if args.json:
        print(json.dumps(rep))
    else:
        print_report(rep)
    return 0
