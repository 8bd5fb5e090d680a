"""``xrec bench``: the command line of the benchmark harness.

    xrec bench MODEL [--target cpu,...] [--baselines eager,inductor,...] [--batch 1,64,512,2048]
                     [--threads N] [--reps R] [--warmup W] [--max-rows N] [--json F] [--plot P.png]
                     [--quantize fp32,int8,int4] [--mode warm|cold] [--burst K]
    xrec bench --kernel embedding-bag [--dims 64,128] [--pooling 1,10,50,200] [--rows ...] [--formats fp32,int8,int4]
    xrec bench --kernel embedding-stage [--models dlrm-small] [--max-rows N] [--formats ...]
    xrec bench --kernel linear | interaction [--kernels-at REV,...] [--clock wall|thread-cpu]
    xrec bench --render F.json [--markdown PAGE.md] [--plot P.png]

Only stdlib at module level: torch and the optional systems load when a
benchmark runs, so a machine without onnxruntime/tvm/matplotlib/rich still
has a working ``xrec``.
"""
from __future__ import annotations

import argparse
import os
import sys

from xrec.passes.quantize_embeddings import QUANTIZE_CHOICES

from .timing import CLOCKS, MODES
from xrec.targets.options import option_arg

DEFAULT_BATCHES = "1,64,512,2048"
DEFAULT_BASELINES = ("eager,eager-onednn,torchscript,inductor,inductor-max-autotune,onnxruntime,onnxruntime-gather,"
                     "tvm,tvm-gather")
KERNELS = ("embedding-bag", "embedding-stage", "linear", "interaction")
KERNEL_FORMATS = ("fp32", "int8", "int4")       # --kernel embedding-bag row formats (xrec.ir.formats names)
DEFAULT_MODE, DEFAULT_BURST = "warm", 5
VARIANTS = ("fp32",) + QUANTIZE_CHOICES       # bench variants: uncompressed + every compile --quantize choice


def _ints(text: str) -> list[int]:
    try:
        out = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not out or min(out) < 1:
        raise argparse.ArgumentTypeError(f"expected integers >= 1, got {text!r}")
    return out


def _floats(text: str) -> list[float]:
    try:
        out = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if not out or min(out) <= 0:
        raise argparse.ArgumentTypeError(f"expected numbers > 0, got {text!r}")
    return out


def _formats(text: str) -> list[str]:
    out = [x.strip() for x in text.split(",") if x.strip()]
    bad = [x for x in out if x not in KERNEL_FORMATS]
    if bad or not out:
        raise argparse.ArgumentTypeError(f"formats are {', '.join(KERNEL_FORMATS)}, got {text!r}")
    return out


def _variants(text: str) -> list[str]:
    out = [x.strip() for x in text.split(",") if x.strip()]
    bad = [x for x in out if x not in VARIANTS]
    if bad or not out:
        raise argparse.ArgumentTypeError(f"--quantize takes a comma-separated list of {', '.join(VARIANTS)} "
                                         f"(fp32 = uncompressed), got {text!r}")
    return list(dict.fromkeys(out))


def _models(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def _default_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = ("Measure a model (or one kernel) on xrec targets and on PyTorch eager, TorchScript, "
                     "torch.compile, ONNX Runtime and TVM, samples interleaved, same inputs for all.")
    p.add_argument("model", nargs="?", help="zoo name, path/to/file.py:factory or .pt2 (not with --kernel)")
    p.add_argument("--target", "-t", default="all",
                   help="xrec targets, comma-separated; 'all' (default: every known target, a reason row "
                        "for those not available), 'available' or 'none'")
    p.add_argument("--baselines", default=DEFAULT_BASELINES,
                   help=f"comma-separated, or 'all' / 'none' (default {DEFAULT_BASELINES})")
    p.add_argument("--batch", type=_ints, default=None,
                   help=f"batch sizes (default {DEFAULT_BATCHES} for models, 512 for kernels)")
    p.add_argument("--threads", type=int, default=None, help="threads for every system (default: all cores)")
    p.add_argument("--reps", type=int, default=20, help="timed rounds (one sample per system per round)")
    p.add_argument("--warmup", type=int, default=3, help="untimed rounds before timing")
    p.add_argument("--max-rows", type=int, default=None, help="cap zoo tables at this many rows")
    p.add_argument("--seed", type=int, default=123, help="seed of the benchmark inputs")
    p.add_argument("--gap-ms", type=float, default=10.0,
                   help="sleep after each system's turn (one call, or a burst in warm mode) so OpenMP workers "
                        "stop spinning before the next system's turn (they spin ~5 ms of CPU after each "
                        "parallel region; default 10)")
    p.add_argument("--mode", choices=list(MODES), default=DEFAULT_MODE,
                   help="warm: each turn is --burst calls back to back, all but the first timed (a busy "
                        "server); cold: each turn is one timed call after the gap (idle threads, cold caches) "
                        f"(default {DEFAULT_MODE})")
    p.add_argument("--burst", type=int, default=DEFAULT_BURST,
                   help=f"--mode warm: calls per turn, the first untimed (default {DEFAULT_BURST}: 4 samples "
                        "per round)")
    p.add_argument("--quantize", type=_variants, default=None, metavar="LIST",
                   help="compile each xrec target once per variant, each its own row: fp32 (uncompressed, "
                        "xrec-T), fp16, bf16, int8, int4, int2, mixed (xrec-T-int8, ...); e.g. fp32,int8,int4 "
                        "(default fp32)")
    p.add_argument("--budget-mb", type=float, default=None, help="memory budget for --quantize mixed")
    p.add_argument("--max-auc-drop", type=float, default=None,
                   help="for compressed variants: fail the compile (mixed: stop lowering bits) past this AUC drop")
    p.add_argument("--calib-samples", type=int, default=4096,
                   help="calibration samples of compressed variants' accuracy report (default 4096)")
    p.add_argument("--compile-budget", type=float, default=600.0,
                   help="seconds allowed to prepare a system or for torch.compile's first call (default 600)")
    p.add_argument("--system-budget", type=float, default=60.0,
                   help="seconds of timed calls per system and batch; a slower system (a simulator) gets "
                        "fewer rounds, at least 3 (default 60)")
    p.add_argument("--max-call-s", type=float, default=30.0,
                   help="a system whose single call takes longer (a simulator at a large batch) gets a reason "
                        "row at that batch and larger ones instead of timings (default 30)")
    p.add_argument("--option", "-O", type=option_arg, action="append", default=[], metavar="KEY=VALUE",
                   help="a target option for every xrec target's compile, as `xrec compile -O` (e.g. -O batch=64 "
                        "-O large_batch=split for xla); a target that rejects it gets a reason row")
    p.add_argument("--parts", action="store_true",
                   help="also time the steps of an xrec call apart where the target names them (xla: host "
                        "bucketing, executable on device-resident arguments): rows xrec-T:part")
    p.add_argument("--no-roofline", action="store_true",
                   help="skip the roofline probes, and with them the 'roofline %%' column (the model's lower "
                        "bound on this machine / each row's median), which then says it is absent")
    p.add_argument("--json", default=None, metavar="F", help="write the rows and machine info to F")
    p.add_argument("--plot", default=None, metavar="P.png", help="write latency/throughput and roofline charts")
    p.add_argument("--markdown", default=None, metavar="PAGE.md", help="write a results page")
    p.add_argument("--note", default="", help="a note for the results page (e.g. what else ran on the machine); "
                                              "with --render it replaces the saved note")
    p.add_argument("--render", default=None, metavar="F.json",
                   help="no benchmark: print/plot/page an earlier --json file")
    k = p.add_argument_group("kernel benchmarks (--kernel)")
    k.add_argument("--kernel", choices=KERNELS, default=None, help="measure one kernel instead of a model")
    k.add_argument("--dims", type=_ints, default=[64, 128], help="embedding dims (default 64,128)")
    k.add_argument("--pooling", type=_floats, default=[1, 10, 50, 200], help="mean ids per bag (default 1,10,50,200)")
    k.add_argument("--rows", type=_ints, default=[1_000_000], help="rows per table (default 1000000)")
    k.add_argument("--tables", type=int, default=4, help="tables per embedding-bag module (default 4)")
    k.add_argument("--formats", type=_formats, default=["fp32", "int8"],
                   help=f"row formats, of {','.join(KERNEL_FORMATS)}; int8/int4 against FBGEMM's ops (default fp32,int8)")
    k.add_argument("--models", default="dlrm-small",
                   help="--kernel linear: zoo models whose Linear shapes to measure; --kernel embedding-stage: "
                        "zoo models whose tables and ids to pool (with --max-rows) (default dlrm-small)")
    k.add_argument("--vectors", type=int, default=27,
                   help="--kernel interaction: vectors interacting (default 27, dlrm-small)")
    k.add_argument("--zipf", type=float, default=1.05,
                   help="Zipf exponent of the ids (0 = uniform; default 1.05 as the zoo)")
    k.add_argument("--kernels-at", type=_models, default=[], metavar="REV,...",
                   help="with --target cpu: also time the kernels/cpu template as of these git revisions "
                        "(systems kernels-cpu@REV), interleaved with this checkout's (kernels-cpu)")
    k.add_argument("--clock", choices=list(CLOCKS), default="wall",
                   help="wall (default) or thread-cpu: the calling thread's CPU time, blind to other processes "
                        "taking the core (--threads 1 only)")


def _outputs(doc: dict, args) -> None:
    from . import report
    report.print_report(doc)
    json_name = None
    if args.json:
        p = report.write_json(doc, args.json)
        json_name = os.path.basename(p)
        print(f"wrote {p}", file=sys.stderr)
    plot_rel = None
    if args.plot:
        from .plot import plot
        p = plot(doc, args.plot)
        print(f"wrote {p}", file=sys.stderr)
        if args.markdown:
            plot_rel = os.path.relpath(os.path.abspath(p), os.path.dirname(os.path.abspath(args.markdown)))
    if args.markdown:
        from pathlib import Path
        md = Path(args.markdown)
        md.parent.mkdir(parents=True, exist_ok=True)
        if json_name and os.path.dirname(os.path.abspath(args.json)) != os.path.dirname(os.path.abspath(md)):
            json_name = os.path.relpath(os.path.abspath(args.json), os.path.dirname(os.path.abspath(md)))
        md.write_text(report.markdown_page(doc, plot=plot_rel, json_name=json_name))
        print(f"wrote {md}", file=sys.stderr)


def run(args) -> int:
    if args.render:
        from . import report
        if args.model or args.kernel:
            print("error: --render F.json takes no MODEL or --kernel (it re-presents an earlier run)",
                  file=sys.stderr)
            return 2
        doc = report.read_json(args.render)
        if args.note:
            doc["note"] = args.note
        if args.json:
            args.json = None            # never overwrite the source
        _outputs(doc, args)
        return 0
    if args.reps < 1 or args.warmup < 0:
        print("error: --reps must be >= 1 and --warmup >= 0", file=sys.stderr)
        return 2
    if args.mode == "warm" and args.burst < 2:
        print(f"error: --mode warm needs --burst >= 2 (the first call of a burst is untimed), got {args.burst}",
              file=sys.stderr)
        return 2
    variants = args.quantize or ["fp32"]
    if "mixed" in variants and args.budget_mb is None and args.max_auc_drop is None:
        print("error: --quantize mixed picks a precision per table: give --budget-mb MB or --max-auc-drop D",
              file=sys.stderr)
        return 2
    if args.quantize and args.kernel:
        print("error: --quantize is for models; --kernel embedding-bag has --formats fp32,int8", file=sys.stderr)
        return 2
    if args.kernel and (args.option or args.parts):
        print("error: -O/--option and --parts are for models, not --kernel", file=sys.stderr)
        return 2
    threads = args.threads or _default_threads()
    if threads < 1:
        print("error: --threads must be >= 1", file=sys.stderr)
        return 2
    from .systems import parse_baselines, parse_targets
    try:
        targets = parse_targets(args.target)
        baselines = parse_baselines(args.baselines)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    command = ["xrec", "bench", *sys.argv[2:]] if len(sys.argv) > 1 and sys.argv[1] == "bench" else None
    if args.kernel:
        if args.model:
            print(f"error: give MODEL or --kernel, not both (got {args.model!r} and --kernel {args.kernel})",
                  file=sys.stderr)
            return 2
        from .kernel_bench import run_kernel_bench
        doc = run_kernel_bench(args.kernel, targets=targets, batches=args.batch or [512], threads=threads,
                               reps=args.reps, warmup=args.warmup, seed=args.seed, gap_ms=args.gap_ms,
                               dims=args.dims, pooling=args.pooling, table_rows=args.rows, tables=args.tables,
                               formats=args.formats, zipf=args.zipf, models=_models(args.models),
                               num_vectors=args.vectors, roofline=not args.no_roofline, note=args.note,
                               command=command, mode=args.mode, burst=args.burst,
                               kernels_at=tuple(args.kernels_at), clock=args.clock, max_rows=args.max_rows)
    else:
        if not args.model:
            print("error: xrec bench needs a MODEL (see `xrec models`) or --kernel NAME or --render F.json",
                  file=sys.stderr)
            return 2
        from .model_bench import run_model_bench
        doc = run_model_bench(args.model, targets=targets, baselines=baselines,
                              batches=args.batch or _ints(DEFAULT_BATCHES), threads=threads, reps=args.reps,
                              warmup=args.warmup, max_rows=args.max_rows, seed=args.seed,
                              compile_budget_s=args.compile_budget, gap_ms=args.gap_ms,
                              roofline=not args.no_roofline, note=args.note, command=command,
                              system_budget_s=args.system_budget, max_call_s=args.max_call_s,
                              variants=variants, mode=args.mode, burst=args.burst, budget_mb=args.budget_mb,
                              max_auc_drop=args.max_auc_drop, calib_samples=args.calib_samples,
                              target_options=dict(args.option), parts=args.parts)
    _outputs(doc, args)
    return 0
