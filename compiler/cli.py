"""The ``xrec`` command line (also ``python -m xrec``)."""
from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

from .passes.quantize_embeddings import QUANTIZE_CHOICES
from .progress import say, step
from xrec.targets.options import option_arg


def _batches(text: str) -> list[int]:
    try:
        out = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated batch sizes, got {text!r}") from None
    if not out or min(out) < 1:
        raise argparse.ArgumentTypeError("batch sizes must be >= 1")
    return out


def _target_options(args) -> dict | None:
    opts = dict(getattr(args, "option", None) or [])
    return opts or None


def _is_artifact(arg: str) -> bool:
    return Path(arg).is_dir() and (Path(arg) / "manifest.json").is_file()


def cmd_models(args) -> int:
    from . import zoo
    for name in zoo.list_models():
        mb = zoo.param_bytes(name) / 2**20
        print(f"{name:12s} {mb:9.1f} MiB  {zoo.describe(name)}")
    return 0


def cmd_targets(args) -> int:
    from xrec.targets import available_targets, get_target
    if args.options:
        try:
            tgt = get_target(args.options)
        except KeyError as e:
            print(f"xrec: {e.args[0]}", file=sys.stderr)
            return 2
        opts = tgt.typed_options()
        if opts is None:
            print(f"target {tgt.name!r} still validates its options as a plain dict (no typed options yet); "
                  f"see its module docstring")
            return 0
        print(f"options of target {tgt.name!r} (-O KEY=VALUE, or options={{...}} in xrec.compile):")
        print(opts.help_text())
        return 0
    for name, why in available_targets().items():
        try:
            desc = get_target(name).description
        except (KeyError, ImportError):
            desc = ""
        state = "available" if not why else f"unavailable: {why}"
        print(f"{name:10s} {state:40s} {desc}")
    return 0


def cmd_ir(args) -> int:
    from .api import lower
    from .ir.printer import print_graph
    from .model_arg import resolve
    src = resolve(args.model, max_rows=args.max_rows)
    if src.exported is not None:
        g, *_ = lower(src.exported, target=args.target, name=src.name, stop_after=args.after,
                      options=_target_options(args))
    else:
        g, *_ = lower(src.module, src.example_inputs, target=args.target, name=src.name,
                      stop_after=args.after, options=_target_options(args))
    print(print_graph(g, show_params=args.params))
    return 0


def _compile(args, model_spec: str, out=None):
    from .api import compile as xcompile
    from .model_arg import resolve
    with step(f"build model {model_spec}"):
        src = resolve(model_spec, max_rows=args.max_rows)
    model = src.exported if src.exported is not None else src.module
    cm = xcompile(model, src.example_inputs, target=args.target, name=getattr(args, "name", None) or src.name,
                  out=out,
                  options=_target_options(args),
                  source=src.source, quantize=getattr(args, "quantize", None),
                  calibration=src.make_inputs, budget_mb=getattr(args, "budget_mb", None),
                  max_auc_drop=getattr(args, "max_auc_drop", None),
                  calib_samples=getattr(args, "calib_samples", 4096),
                  prune=(args.prune, args.prune_keep) if getattr(args, "prune", None) else None)
    return cm, src


def _apply_plan(args) -> dict | None:
    """``xrec compile --plan plan.json``: the model, target, precision and table cap that ``xrec plan`` chose
    (xrec.cost.plan.cli); a MODEL, --target or --quantize given as well must agree with it."""
    if not getattr(args, "plan", None):
        if args.model is None:
            raise ValueError("give MODEL (or --plan plan.json from `xrec plan`)")
        return None
    from xrec.cost.plan.cli import read_plan
    plan = read_plan(args.plan)
    c = plan["compile"]
    for flag, mine, theirs in (("MODEL", args.model, c["model"]), ("--target", args.target, c["target"]),
                               ("--quantize", args.quantize, c["quantize"])):
        if mine is not None and mine != theirs:
            raise ValueError(f"{flag} {mine!r} disagrees with {args.plan}, which chose {theirs!r}; "
                             "drop the flag or re-run `xrec plan`")
    args.model, args.target, args.quantize = c["model"], c["target"], c["quantize"]
    if args.max_rows is None:
        args.max_rows = c.get("max_rows")
    if c.get("options") and not args.option:
        args.option = list(c["options"].items())
    return plan


def cmd_compile(args) -> int:
    try:
        plan = _apply_plan(args)
    except ValueError as e:
        print(f"xrec compile: {e}", file=sys.stderr)
        return 2
    default = args.name or (Path(args.model).stem if ':' not in args.model else args.model.split(':')[-1])
    out = Path(args.output or f"{default}.xrec")
    cm, _ = _compile(args, args.model, out=out)
    m = cm.manifest
    say(f"wrote {out} (target {m['target']}, weights {m['weights']['bytes'] / 2**20:.1f} MiB, "
        f"{len(m['files'])} generated files)")
    if "compression" in m:
        c = m["compression"]
        counts = {}
        for p in c["plan"].values():
            counts[p] = counts.get(p, 0) + 1
        print("precision   " + ", ".join(f"{n} tables {p}" for p, n in sorted(counts.items())))
        if "prune" in c:
            pr = c["prune"]
            print(f"pruned      {len(pr['rows_kept'])} tables by {pr['method']}, keeping {pr['keep_fraction']:.0%} "
                  "of their rows")
        print(f"size        {c['bytes_before'] / 2**20:.1f} MiB -> {c['bytes_after'] / 2**20:.1f} MiB "
              f"({c['bytes_after'] / max(c['bytes_before'], 1):.1%})")
        print(f"drift       max {c['max_abs_err']:.3e}, mean {c['mean_abs_err']:.3e} "
              f"(predicted probability, {c['samples']} samples)")
        if c.get("labels"):
            print(f"labels      {c['labels']}")
        if c["auc"] is None:
            print("AUC         n/a (the model's output is not a probability)")
        else:
            print(f"AUC         {c['auc_fp32']:.5f} -> {c['auc']:.5f} ({c['auc_change']:+.5f})")
            print(f"log-loss    {c['logloss_fp32']:.5f} -> {c['logloss']:.5f} ({c['logloss_change']:+.5f})")
            if c.get("auc_ratio") is not None:
                met = lambda ok: "met" if ok else "NOT met"  # noqa: E731
                print(f"MLPerf      AUC {c['auc_ratio']:.2%} of fp32: 99 % target {met(c['meets_99'])}, "
                      f"99.9 % target {met(c['meets_99_9'])}")
        print(f"ranking AUC {c['ranking_auc']:.5f} (vs fp32 above its median; 1.0 = same ranking)")
    if plan is not None:
        sv = plan["serve"]
        print(f"plan        {sv['replicas']} x {sv['device']}: xrec serve {out} --max-batch {sv['max_batch']} "
              f"--max-delay-us {sv['max_delay_us']} --workers 1 (one server per device, as xrec plan modelled)")
    print(out)
    return 0


def _check_report(cm, src, batches, seed) -> dict:
    from .check import check
    from .runtime.inputs import random_args
    make = src.make_inputs or random_args(cm)
    tol = cm.manifest.get("tolerances", {})
    rep = check(cm, src.module, make, batches=batches, rtol=tol.get("rtol", 1e-4), atol=tol.get("atol", 1e-6),
                seed=seed)
    rep.update({"model": src.name, "target": cm.manifest["target"], "artifact": str(cm.path)})
    return rep


def cmd_check(args) -> int:
    from .api import load
    from .model_arg import from_source
    if _is_artifact(args.model):
        cm = load(args.model)
        src = from_source(cm.manifest.get("source", {}))
        if src is None:
            print(f"error: {args.model} does not record which model it was compiled from; "
                  "check it with `xrec check MODEL --target T`", file=sys.stderr)
            return 2
    else:
        cm, src = _compile(args, args.model)
    with step("compare with PyTorch eager"):
        rep = _check_report(cm, src, args.batches, args.seed)
    if args.json:
        print(json.dumps(rep))
    else:
        for r in rep["batches"]:
            print(f"batch {r['batch']:5d}: max_abs_err {r['max_abs_err']:.3e}  max_rel_err {r['max_rel_err']:.3e}")
        print(f"{rep['model']} on {rep['target']}: {'OK' if rep['ok'] else 'MISMATCH'} "
              f"(max_rel_err {rep['max_rel_err']:.3e}, rtol {rep['rtol']:.0e})")
    return 0 if rep["ok"] else 1


def cmd_demo(args) -> int:
    from xrec.bench import demo as demo_timing
    from .api import default_target
    from .ir import Op
    args.target = args.target or default_target()
    say(f"demo: compile the built-in dlrm-small for target {args.target!r}, check it, time it")
    cm, src = _compile(args, "dlrm-small")
    g = cm.graph
    groups = g.nodes_of(Op.EMBEDDING_BAG_GROUP)
    print(f"model      dlrm-small ({sum(a.nbytes for a in g.params.values()) / 2**20:.0f} MiB of weights)")
    # the artifact lives in a temporary folder removed on exit: no path to print
    print(f"target     {args.target} (artifact removed on exit; `xrec compile dlrm-small -t {args.target} "
          f"-o dlrm-small.xrec` writes one to keep)")
    print(f"optimized  {len(groups)} table-batched embedding group(s) over "
          f"{sum(len(n.attr('features')) for n in groups)} tables, "
          f"{len(g.nodes_of(Op.DOT_INTERACTION))} dot interaction, {len(g.nodes_of(Op.MLP))} fused MLPs")
    with step("compare with PyTorch eager"):
        rep = _check_report(cm, src, [1, 7, 64], seed=1)
    print(f"check      {'OK' if rep['ok'] else 'MISMATCH'}: max_rel_err {rep['max_rel_err']:.2e} "
          f"(rtol {rep['rtol']:.0e}) at batch 1, 7, 64")
    import torch

    def calls(batch):
        a = src.make_inputs(batch, 123)
        return {"pytorch-eager": lambda: src.module(*a), f"xrec-{cm.manifest['target']}": lambda: cm(*a)}
    with torch.no_grad(), step("time PyTorch eager and xrec"):
        timings = demo_timing.time_systems(calls, [1, 64, 512])
    for line in demo_timing.format_speed(timings):
        print(line)
    return 0 if rep["ok"] else 1


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="xrec", description="Ahead-of-time compiler for recommendation-model "
                                "inference. MODEL is a zoo name (see `xrec models`), path/to/file.py:factory, "
                                "or a torch.export .pt2 file.")
    sub = p.add_subparsers(dest="cmd", required=True)

    def model_opts(sp, target_default=None):
        sp.add_argument("--target", "-t", default=target_default,
                        help="reference | cpu | triton | xla | hls (see `xrec targets`)")
        sp.add_argument("--max-rows", type=int, default=None, help="cap zoo tables at this many rows")
        sp.add_argument("--option", "-O", type=option_arg, action="append", metavar="KEY=VALUE",
                        help="a target option (repeatable), e.g. -O isa=avx2 for cpu, -O batch=256 for xla")

    sp = sub.add_parser("models", help="list the built-in model zoo")
    sp.set_defaults(fn=cmd_models)
    sp = sub.add_parser("targets", help="list targets and whether they work on this machine")
    sp.add_argument("--options", metavar="TARGET", default=None,
                    help="list the options of TARGET: name, type, default, choices, what it does")
    sp.set_defaults(fn=cmd_targets)

    sp = sub.add_parser("ir", help="print the IR of a model (optimized, or after a given pass)")
    sp.add_argument("model")
    model_opts(sp, "reference")
    sp.add_argument("--after", default=None, help="stop after this pass ('import' for the raw import)")
    sp.add_argument("--params", action="store_true", help="also print parameter nodes")
    sp.set_defaults(fn=cmd_ir)

    sp = sub.add_parser("compile", help="compile a model into an artifact directory")
    sp.add_argument("model", nargs="?", default=None, help="MODEL (optional with --plan)")
    model_opts(sp)
    sp.add_argument("--plan", default=None, metavar="plan.json",
                    help="build what `xrec plan` chose: its model, target, precision and table cap")
    sp.add_argument("-o", "--output", default=None, help="artifact directory (default NAME.xrec)")
    sp.add_argument("--name", default=None,
                    help="the model's name in the artifact and when served (default: the zoo name, the factory "
                         "of file.py:factory, or the .pt2 file's stem)")
    sp.add_argument("--quantize", choices=QUANTIZE_CHOICES, default=None,
                    help="embedding-table precision (row-wise, FBGEMM layouts); 'mixed' picks per table")
    sp.add_argument("--budget-mb", type=float, default=None, help="memory budget for --quantize mixed")
    sp.add_argument("--max-auc-drop", type=float, default=None,
                    help="fail (or, with mixed, stop lowering bits) when the calibration AUC drops more")
    sp.add_argument("--calib-samples", type=int, default=4096, help="calibration samples for the report")
    sp.add_argument("--prune", choices=["frequency", "norm"], default=None,
                    help="drop embedding rows of big tables: least read on the calibration set, or smallest norm")
    sp.add_argument("--prune-keep", type=float, default=0.5, help="fraction of rows --prune keeps")
    sp.set_defaults(fn=cmd_compile)

    sp = sub.add_parser("check", help="compare a model or artifact with PyTorch on fresh inputs")
    sp.add_argument("model", help="MODEL or an artifact directory")
    model_opts(sp)
    sp.add_argument("--batches", type=_batches, default=[1, 7, 64])
    sp.add_argument("--seed", type=int, default=1)
    sp.add_argument("--json", action="store_true", help="print one JSON object")
    sp.set_defaults(fn=cmd_check)

    sp = sub.add_parser("demo", help="the main job: compile dlrm-small, check it, time it")
    model_opts(sp)
    sp.set_defaults(fn=cmd_demo)

    # subcommands owned by their own packages: each exposes add_arguments(parser) and run(args)
    for cmd, module, help_text in (
            ("bench", "xrec.bench.cli", "measure a model or kernel against PyTorch and other systems"),
            ("serve", "xrec.serve.cli", "serve an artifact over HTTP (KServe v2 protocol)"),
            ("cost", "xrec.cost.cli", "predict a model's work and time per stage on catalogued hardware"),
            ("calibrate", "xrec.cost.calibrate", "measure this machine's efficiencies and overheads for the cost model"),
            ("plan", "xrec.cost.plan.cli", "pick hardware, precision and batching for a QPS and latency bound")):
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name and module.startswith(e.name):
                continue        # that package is not part of this build
            raise
        sp = sub.add_parser(cmd, help=help_text)
        mod.add_arguments(sp)
        sp.set_defaults(fn=mod.run)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # one clear line for the user; XREC_VERBOSE=1 shows the traceback
        from .config import knobs
        if knobs.verbose:
            raise
        print(f"error: {type(e).__name__}: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
