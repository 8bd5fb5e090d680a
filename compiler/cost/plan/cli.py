"""``xrec plan MODEL --qps Q --p99-ms S [--max-auc-drop D] [--objective cost|energy|latency]
[--hardware NAMES|FILE] [--json F] [--plot F.png] [-o plan.json]``.

Enumerates device type x target x embedding precision x batching policy (and, per point, the smallest
device count that meets the bound), predicts each with ``xrec.cost.perf.predict_target`` and the
queueing model of ``queueing.py``, prints the ranked table with why each rejected configuration fails,
and writes plan.json, which ``xrec compile --plan plan.json`` builds.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

PLAN_FORMAT = 1


def _csv_ints(text: str) -> list[int]:
    import argparse
    try:
        out = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not out:
        raise argparse.ArgumentTypeError("expected at least one value")
    return out


def add_arguments(sp) -> None:
    from xrec.targets.options import option_arg
    from .score import OBJECTIVES
    from .space import MAX_BATCHES, MAX_DELAYS_US, PRECISIONS, SERVING_TARGETS
    sp.add_argument("model", help="a zoo name, path/to/file.py:factory or a .pt2 file")
    sp.add_argument("--qps", type=float, required=True, help="queries per second to serve (one query = one row)")
    sp.add_argument("--p99-ms", type=float, required=True, help="the 99th-percentile latency bound in ms")
    sp.add_argument("--max-auc-drop", type=float, default=None,
                    help="reject precisions whose calibration AUC drops more (precisions without an AUC are "
                         "then rejected too)")
    sp.add_argument("--objective", choices=OBJECTIVES, default="cost", help="what to minimise (default cost)")
    sp.add_argument("--hardware", default=None,
                    help="comma-separated catalogue names and/or JSON files in the catalogue's schema "
                         "(default: every catalogue device)")
    sp.add_argument("--targets", default=",".join(SERVING_TARGETS),
                    help=f"xrec targets to consider (default {','.join(SERVING_TARGETS)}; each device runs those "
                         "of its catalogue 'targets')")
    sp.add_argument("--precisions", default=",".join(PRECISIONS),
                    help=f"embedding precisions (default {','.join(PRECISIONS)})")
    sp.add_argument("--max-batch", type=_csv_ints, default=list(MAX_BATCHES),
                    help=f"max batch sizes to try (default {','.join(map(str, MAX_BATCHES))})")
    sp.add_argument("--max-delay-us", type=_csv_ints, default=list(MAX_DELAYS_US),
                    help=f"max delays to try in us (default {','.join(map(str, MAX_DELAYS_US))})")
    sp.add_argument("--max-devices", type=int, default=64, help="most devices of one type (default 64)")
    sp.add_argument("--price", action="append", default=[], metavar="NAME=USD_PER_HOUR",
                    help="a device's on-demand price (overrides the catalogue's; repeatable)")
    sp.add_argument("--power", action="append", default=[], metavar="NAME=IDLE_W:MAX_W",
                    help="a device's idle and max power (overrides the catalogue's; repeatable)")
    sp.add_argument("--max-rows", type=int, default=None, help="cap zoo tables at this many rows")
    sp.add_argument("--calib-samples", type=int, default=512, help="calibration samples per precision's report")
    sp.add_argument("--option", "-O", type=option_arg, action="append", metavar="TARGET.KEY=VALUE",
                    help="a target option for one target, e.g. -O cpu.isa=avx2")
    sp.add_argument("--show", type=int, default=10, help="rows of each table to print (default 10)")
    sp.add_argument("--json", default=None, metavar="F", help="write every configuration's prediction to F")
    sp.add_argument("--plot", default=None, metavar="F.png", help="draw the Pareto front (matplotlib)")
    sp.add_argument("-o", "--output", default="plan.json", help="where to write the chosen plan (default plan.json)")


class PlanError(ValueError):
    """Bad input to xrec plan: the message names it and what to do."""


def _overrides(items, what, parse) -> dict:
    out = {}
    for text in items:
        name, *vals = parse(text)
        out[name] = vals[0] if len(vals) == 1 else tuple(vals)
    return out


def _parse_price(text: str):
    name, sep, v = text.partition("=")
    try:
        if not sep or not name:
            raise ValueError
        p = float(v)
    except ValueError:
        raise PlanError(f"--price {text!r}: expected NAME=USD_PER_HOUR, e.g. h100-sxm=3.9") from None
    if not p >= 0:
        raise PlanError(f"--price {text!r}: the price must be >= 0")
    return name, p


def _check(args) -> None:
    if not args.qps > 0:
        raise PlanError(f"--qps must be > 0, got {args.qps:g}: give the queries per second to serve")
    if not args.p99_ms > 0:
        raise PlanError(f"--p99-ms must be > 0, got {args.p99_ms:g}: give the latency bound in milliseconds")
    if args.max_auc_drop is not None and args.max_auc_drop < 0:
        raise PlanError(f"--max-auc-drop must be >= 0, got {args.max_auc_drop:g}")
    if args.max_devices < 1:
        raise PlanError(f"--max-devices must be >= 1, got {args.max_devices}")
    if min(args.max_batch) < 1:
        raise PlanError("--max-batch values must be >= 1")
    if min(args.max_delay_us) < 0:
        raise PlanError("--max-delay-us values must be >= 0")
    from xrec.passes.quantize_embeddings import PRECISIONS
    for p in args.precisions.split(","):
        if p not in PRECISIONS:
            raise PlanError(f"--precisions: unknown precision {p!r}; known: {', '.join(PRECISIONS)}")


def load_devices(spec: str | None):
    from ..catalogue import device_names, load_device
    names = [s.strip() for s in spec.split(",") if s.strip()] if spec else device_names()
    if not names:
        raise PlanError("--hardware names no device")
    return [load_device(n) for n in names]


def make_plan(args, out=None) -> tuple[int, dict]:
    """Run the plan: (exit code, the plan dict). Raises PlanError / CatalogueError on bad input."""
    from ..energy import parse_power
    from .report import pareto
    from .score import closest, device_power, device_price, rank, score
    from .space import build_variants, policies

    _check(args)
    devices = load_devices(args.hardware)
    prices = _overrides(args.price, "price", _parse_price)
    try:
        powers = _overrides(args.power, "power", parse_power)
    except ValueError as e:
        raise PlanError(str(e)) from None
    known = {d.name for d in devices}
    for name in list(prices) + list(powers):
        if name not in known:
            raise PlanError(f"--price/--power name {name!r} is not among the planned devices "
                            f"({', '.join(sorted(known))})")
    wanted = [t.strip() for t in args.targets.split(",") if t.strip()]
    from xrec.targets import available_targets
    unknown = [t for t in wanted if t not in available_targets()]
    if unknown:
        raise PlanError(f"--targets: unknown target {unknown[0]!r}; targets: {', '.join(available_targets())}")
    per_device = {d.name: [t for t in d.targets if t in wanted] for d in devices}
    targets = sorted({t for ts in per_device.values() for t in ts})
    if not targets:
        raise PlanError(f"no planned device runs any of the targets {', '.join(wanted)}")
    precisions = [p for p in args.precisions.split(",") if p]
    options: dict = {}
    for k, v in (args.option or []):
        t, dot, key = k.partition(".")
        if not dot:
            raise PlanError(f"-O {k}={v}: name the target, e.g. -O cpu.{k}={v}")
        options.setdefault(t, {})[key] = v
    pols = policies(args.max_batch, args.max_delay_us)
    variants = build_variants(args.model, targets, precisions, max_rows=args.max_rows,
                              calib_samples=args.calib_samples, options=options)
    p99_s = args.p99_ms / 1e3
    rows, sources = [], {}
    for d in devices:
        price = device_price(d, prices.get(d.name))
        pm, perr = device_power(d, powers.get(d.name))
        sources[d.name] = {
            "price": (f"{price:g} USD/h " + ("(--price)" if d.name in prices else f"[{d.price_per_hour.source}]"))
            if price is not None else f"none ({d.price_per_hour.reason or 'unknown'})",
            "power": pm.source if pm else f"energy cannot be computed: {perr}"}
        for t in per_device[d.name]:
            for prec in precisions:
                rows += score(variants[t, prec], d, pols, qps=args.qps, p99_s=p99_s, max_devices=args.max_devices,
                              max_auc_drop=args.max_auc_drop, objective=args.objective, price=price,
                              power=pm, power_error=perr)
    ranked = rank(rows, args.objective)
    unchecked = sorted({f"{v.precision} ({v.accuracy_note})" for v in variants.values()
                        if v.graph is not None and v.auc_drop is None})
    front = pareto(rows)
    chosen = ranked[0] if ranked else None
    tradeoff = cost_vs_energy(rows)
    notes = sorted({n for v in variants.values() for n in v.notes})
    time_models = {}
    for r in rows:
        for n in r.notes:
            if n.startswith("time model: "):
                time_models.setdefault(f"{r.device}/{r.target}", n[len("time model: "):])
    plan = {
        "format": PLAN_FORMAT,
        "request": {"model": args.model, "max_rows": args.max_rows, "qps": args.qps, "p99_ms": args.p99_ms,
                    "max_auc_drop": args.max_auc_drop, "objective": args.objective,
                    "hardware": [d.name for d in devices], "options": options},
        "chosen": chosen.as_dict() if chosen else None,
        "compile": None if chosen is None else {
            "model": args.model, "target": chosen.target, "max_rows": args.max_rows,
            "quantize": None if chosen.precision == "fp32" else chosen.precision,
            "options": options.get(chosen.target) or None},
        "serve": None if chosen is None else {
            "replicas": chosen.count, "device": chosen.device, "max_batch": chosen.policy.max_batch,
            "max_delay_us": chosen.policy.max_delay_us},
        "ranked": [r.as_dict() for r in ranked[:max(args.show, 20)]],
        "pareto": [r.as_dict() for r in front],
        "cost_vs_energy": tradeoff,
        "time_models": time_models,
        "sources": sources,
        "unchecked_precisions": unchecked,
        "notes": notes,
        "queueing_model": "xrec.cost.plan.queueing (Poisson arrivals, one worker per device, random split)",
    }
    if chosen is None:
        return 1, {**plan, "closest": [r.as_dict() for r in closest(rows, p99_s, 5)], "_rows": rows,
                   "_ranked": ranked, "_front": front}
    return 0, {**plan, "_rows": rows, "_ranked": ranked, "_front": front}


def _describe(r) -> str:
    return (f"{r.count} x {r.device} ({r.target}, {r.precision}, max batch {r.policy.max_batch}, delay "
            f"{r.policy.max_delay_us} us): {r.usd_per_mq:.4g} $/Mq, {r.joules_per_query:.4g} J/query "
            f"({r.count} x {r.power_W:.0f} W at utilisation {r.latency.utilisation:.2f})")


def cost_vs_energy(rows) -> dict | None:
    """Among configurations that meet every bound and have both a price and power figures: the cheapest
    and the most frugal, and why they differ (None when no configuration has both figures)."""
    from .score import rank
    both = [r for r in rows if r.usd_per_mq is not None and r.joules_per_query is not None
            and all(w.split(":")[0] not in ("SLA", "memory", "accuracy", "build") for w in r.reasons)]
    if not both:
        return None
    for r in both:
        r_reasons, r.reasons = r.reasons, []
        r._saved = r_reasons
    try:
        c, e = rank(both, "cost")[0], rank(both, "energy")[0]
    finally:
        for r in both:
            r.reasons = r._saved
            del r._saved
    same = (c.device, c.target, c.precision, c.count) == (e.device, e.target, e.precision, e.count)
    if same:
        why = "the cheapest configuration also uses the least energy"
    else:
        why = (f"the cost objective picks {_describe(c)}; the energy objective picks {_describe(e)}: "
               + ("the cheaper one draws more power per query" if c.joules_per_query > e.joules_per_query
                  else "they tie on one figure"))
    return {"same": same, "cost_pick": c.key + f" x{c.count}", "energy_pick": e.key + f" x{e.count}", "why": why}


def _public(plan: dict) -> dict:
    return {k: v for k, v in plan.items() if not k.startswith("_")}


def run(args) -> int:
    from ..catalogue import CatalogueError
    from ..rules import CostError
    from .report import plot, print_table
    try:
        rc, plan = make_plan(args)
    except (PlanError, CatalogueError, CostError, ValueError, FileNotFoundError) as e:
        print(f"xrec plan: {e}", file=sys.stderr)
        return 2
    rows, ranked, front = plan["_rows"], plan["_ranked"], plan["_front"]
    print_table(plan, ranked, rows, args.show)
    if args.json:
        Path(args.json).write_text(json.dumps({**_public(plan), "rows": [r.as_dict() for r in rows]}, indent=1))
        print(f"\nwrote every configuration to {args.json}")
    if args.plot:
        chosen = ranked[0] if ranked else None
        req = plan["request"]
        plot(rows, front, chosen, args.plot, f"{req['model']}: {req['qps']:g} q/s, p99 <= {req['p99_ms']:g} ms")
        print(f"wrote the Pareto plot to {args.plot}")
    if rc != 0:
        req = plan["request"]
        print(f"\nxrec plan: no configuration meets {req['qps']:g} queries/s at p99 <= {req['p99_ms']:g} ms"
              + (f" with AUC drop <= {req['max_auc_drop']:g}" if req.get("max_auc_drop") is not None else "")
              + (" and a known price (objective cost)" if req["objective"] == "cost" else "")
              + (" and known power figures (objective energy)" if req["objective"] == "energy" else "")
              + "; the closest:", file=sys.stderr)
        for r in plan["closest"]:
            print(f"  {r['device']}/{r['target']}/{r['precision']} max batch {r['policy']['max_batch']} delay "
                  f"{r['policy']['max_delay_us']} us, {r['count']} devices: " + "; ".join(r["reasons"]),
                  file=sys.stderr)
        print("  (raise --p99-ms or --max-devices, lower --qps, allow more precisions, or give --price/--power)",
              file=sys.stderr)
        return 1
    Path(args.output).write_text(json.dumps(_public(plan), indent=1))
    c = plan["chosen"]
    print(f"\nchosen: {c['count']} x {c['device']}, target {c['target']}, {c['precision']} tables, max batch "
          f"{c['policy']['max_batch']}, max delay {c['policy']['max_delay_us']} us (p99 {c['p99_ms']:.3f} ms)")
    print(f"wrote {args.output}; build it with `xrec compile --plan {args.output}`")
    return 0


def read_plan(path) -> dict:
    """plan.json as ``xrec plan`` wrote it, checked; PlanError (a ValueError) naming what is wrong."""
    try:
        plan = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise PlanError(f"cannot read the plan {path}: {e}") from None
    if not isinstance(plan, dict) or plan.get("format") != PLAN_FORMAT:
        raise PlanError(f"{path} is not a plan.json of `xrec plan` (format {PLAN_FORMAT})")
    c = plan.get("compile")
    if not isinstance(c, dict) or not all(k in c for k in ("model", "target", "quantize")) \
            or not isinstance(plan.get("serve"), dict):
        raise PlanError(f"{path} chose no configuration (its 'compile'/'serve' fields are "
                         "missing): re-run `xrec plan` with bounds some configuration meets")
    return plan
