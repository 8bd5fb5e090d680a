"""One small adapter per system: ``prepare(ctx) -> Prepared`` (a callable), or a reason.

Every prepared callable takes the model's own arguments (torch tensors:
``dense, indices, offsets`` for zoo models) and returns torch tensors, so the
timed region is the same for everyone: input conversion, the run, output
conversion. Optional systems (onnxruntime, tvm) are imported here, lazily,
inside their adapters.

A system that cannot run raises :class:`Unavailable` (missing package, not
applicable) or fails in a named stage (:class:`StageError`, e.g.
"tvm from_exported_program: Unsupported function types
['_embedding_bag.default']"); the harness turns either into a reason row.
"""
from __future__ import annotations

import contextlib
import io
import logging
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch.utils import _pytree as pytree


class Unavailable(Exception):
    """This system cannot run here or on this model; the message says why."""


class StageError(Exception):
    """A named stage of preparing a system failed; the message says which and how."""

    def __init__(self, stage: str, error: BaseException):
        self.stage, self.error = stage, error
        msg = str(error).strip().splitlines()
        first = next((ln for ln in msg if ln.strip()), "")
        if len(first) > 300:
            first = first[:297] + "..."
        super().__init__(f"{stage}: {type(error).__name__}: {first}")


@contextlib.contextmanager
def stage(name: str):
    """Name the stage an exception came from (Unavailable and budget overruns pass through)."""
    from .timing import BudgetExceeded
    try:
        yield
    except (Unavailable, StageError, BudgetExceeded, KeyboardInterrupt):
        raise
    except Exception as e:
        raise StageError(name, e) from e


@contextlib.contextmanager
def quiet(fds: bool = False):
    """Silence the chatter of exporters for the block: prints, warnings, INFO logs and, with
    ``fds``, what native code writes to file descriptors 1 and 2 (TVM's C++ warnings)."""
    import os
    import sys
    import tempfile
    out, err = io.StringIO(), io.StringIO()
    level = logging.root.manager.disable
    logging.disable(logging.WARNING)
    saved = []
    if fds:
        sys.stdout.flush()
        sys.stderr.flush()
        sink = tempfile.TemporaryFile()
        saved = [(fd, os.dup(fd)) for fd in (1, 2)]
        for fd, _ in saved:
            os.dup2(sink.fileno(), fd)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(level)
        for fd, copy in saved:
            os.dup2(copy, fd)
            os.close(copy)
        if saved:
            sink.close()


@dataclass
class ModelContext:
    """What an adapter gets: the model, how to call it, and the run's settings."""

    name: str
    module: Any                      # nn.Module (or an ExportedProgram's module())
    example_inputs: tuple            # for tracing/export (batch >= 2, >= 2 ids per feature)
    threads: int
    workdir: Path                    # scratch space for exported files (removed after the run)
    compile_budget_s: float = 600.0
    exported: Any = None             # an ExportedProgram when the model came as .pt2
    source: dict = field(default_factory=dict)
    calibration: Any = None          # make_inputs(batch, seed) for xrec.compile(quantize=...) calibration
    compression: dict = field(default_factory=dict)   # budget_mb, max_auc_drop, calib_samples
    target_options: dict = field(default_factory=dict)  # options= of every xrec.compile (xrec bench -O KEY=VALUE)


@dataclass
class Prepared:
    fn: Callable[..., Any]           # fn(*model_args) -> torch output(s)
    info: dict = field(default_factory=dict)
    budget_first_call: bool = False  # compiles on first call (torch.compile): budget it
    keep: Any = None                 # objects that must outlive fn (sessions, VMs)


@dataclass(frozen=True)
class System:
    name: str
    label: str                       # what exactly runs, for tables and pages
    kind: str                        # "baseline" | "xrec"
    prepare: Callable[[ModelContext], Prepared]
    target: str | None = None        # the xrec target (xrec systems only)
    variant: str | None = None       # the xrec compression variant: fp32, int8, int4, mixed, ... (xrec only)


def _needs_module(ctx: ModelContext, what: str):
    if ctx.module is None:
        raise Unavailable(f"{what} needs the PyTorch module")


# --------------------------------------------------------------------------- PyTorch
def _eager(ctx: ModelContext) -> Prepared:
    _needs_module(ctx, "eager")
    m = ctx.module

    def fn(*args):
        with torch.inference_mode():
            return m(*args)
    return Prepared(fn, {"mode": "torch.inference_mode"})


def _eager_onednn(ctx: ModelContext) -> Prepared:
    """Eager with every nn.Linear converted to oneDNN (torch.utils.mkldnn.to_mkldnn): on some CPUs (measured on a
    Zen 5 machine) this is the fastest stock PyTorch path for the dense layers, so it counts as a baseline."""
    _needs_module(ctx, "eager-onednn")
    if not torch.backends.mkldnn.is_available():
        raise Unavailable("eager-onednn needs a PyTorch built with oneDNN (torch.backends.mkldnn.is_available())")
    import copy
    from torch.utils import mkldnn as torch_mkldnn
    with stage("torch.utils.mkldnn.to_mkldnn"):
        m = copy.deepcopy(ctx.module).eval()
        linears = [n for n, x in m.named_modules() if isinstance(x, torch.nn.Linear)]
        if not linears:
            raise Unavailable("eager-onednn: the model has no nn.Linear layers to convert")
        m = torch_mkldnn.to_mkldnn(m)

    def fn(*args):
        with torch.inference_mode():
            return m(*args)
    return Prepared(fn, {"mode": "torch.inference_mode", "how": "torch.utils.mkldnn.to_mkldnn",
                         "converted_linears": len(linears)}, keep=m)


def _torchscript(ctx: ModelContext) -> Prepared:
    _needs_module(ctx, "torchscript")
    with quiet():
        with stage("torch.jit.trace"):
            traced = torch.jit.trace(ctx.module, ctx.example_inputs, check_trace=False, strict=False)
        with stage("torch.jit.freeze"):
            frozen = torch.jit.freeze(traced.eval())

    def fn(*args):
        with torch.inference_mode():
            return frozen(*args)
    return Prepared(fn, {"how": "torch.jit.trace + torch.jit.freeze"}, keep=frozen)


def _inductor(max_autotune: bool) -> Callable[[ModelContext], Prepared]:
    def prepare(ctx: ModelContext) -> Prepared:
        _needs_module(ctx, "torch.compile")
        options = {"freezing": True}
        if max_autotune:
            options["max_autotune"] = True
        with stage("torch.compile"):
            compiled = torch.compile(ctx.module, backend="inductor", options=options)

        def fn(*args):
            with torch.no_grad():
                return compiled(*args)
        return Prepared(fn, {"options": options, "compiles_on": "first call per new shape (outside timing)"},
                        budget_first_call=True, keep=compiled)
    return prepare


# --------------------------------------------------------------------------- export helpers
def _flat_args(args) -> list[torch.Tensor]:
    return [x for x in pytree.tree_leaves(tuple(args)) if isinstance(x, torch.Tensor)]


def _export(module, ctx: ModelContext, what: str):
    from .rewrites import dynamic_shapes_for
    with stage(f"torch.export ({what})"), quiet():
        return torch.export.export(module, ctx.example_inputs, dynamic_shapes=dynamic_shapes_for(ctx.example_inputs))


def _rewritten(ctx: ModelContext, style: str, what: str):
    from .rewrites import RewriteError, replace_embedding_bags
    if ctx.module is None or ctx.exported is not None:
        raise Unavailable("the gather rewrite swaps nn.EmbeddingBag modules, and a .pt2 has none")
    try:
        module, count = replace_embedding_bags(ctx.module, style=style)
    except RewriteError as e:
        raise Unavailable(f"gather rewrite: {e}") from None
    if count == 0:
        raise Unavailable("the model has no nn.EmbeddingBag to rewrite (use the plain variant)")
    return module, count


# --------------------------------------------------------------------------- ONNX Runtime
def _onnxruntime(gather: bool) -> Callable[[ModelContext], Prepared]:
    what = "onnxruntime-gather" if gather else "onnxruntime"

    def prepare(ctx: ModelContext) -> Prepared:
        try:
            import onnx  # noqa: F401  (torch.onnx needs it)
            import onnxruntime as ort
        except ImportError as e:
            raise Unavailable(f"not installed ({e.name}); pip install onnx onnxscript onnxruntime") from None
        info: dict = {}
        if gather:
            module, n = _rewritten(ctx, "rows", what)
            info["rewrite"] = (f"{n} EmbeddingBag -> Gather + CumSum + ScatterND(add) "
                               "(max pooling: ScatterElements(max))")
        else:
            module = ctx.exported if ctx.exported is not None else ctx.module
        from .rewrites import dynamic_shapes_for
        path = ctx.workdir / f"{ctx.name}-{what}.onnx"
        with stage("torch.onnx.export (dynamo)"), quiet():
            torch.onnx.export(module, ctx.example_inputs, str(path), dynamo=True,
                              dynamic_shapes=None if ctx.exported is not None
                              else dynamic_shapes_for(ctx.example_inputs),
                              external_data=True)
        with stage("onnx.load"):
            import collections
            model_proto = onnx.load(str(path), load_external_data=False)
            ops = collections.Counter(n.op_type for n in model_proto.graph.node)
            info["onnx_ops"] = dict(ops.most_common(8))
            del model_proto
        if not gather and ops.get("Loop"):
            info["note"] = f"torch.onnx exports each EmbeddingBag as an ONNX Loop over bags ({ops['Loop']} Loops)"
        so = ort.SessionOptions()
        so.intra_op_num_threads = ctx.threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # idle ORT threads otherwise spin for a long time after each run and steal the
        # CPU from the next system's sample in an interleaved run (measured: 10x on eager)
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        with stage("onnxruntime.InferenceSession"), quiet():
            sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        names = [i.name for i in sess.get_inputs()]
        n_in = len(_flat_args(ctx.example_inputs))
        if len(names) != n_in:
            raise Unavailable(f"the ONNX graph takes {len(names)} inputs, the model {n_in}")
        info.update(ort_version=ort.__version__, intra_op_threads=ctx.threads, spinning=False)

        def fn(*args):
            feed = {k: x.numpy() for k, x in zip(names, _flat_args(args))}
            outs = sess.run(None, feed)
            res = [torch.from_numpy(o) for o in outs]
            return res[0] if len(res) == 1 else tuple(res)
        return Prepared(fn, info, keep=sess)
    return prepare


# --------------------------------------------------------------------------- TVM
def _tvm_pipeline(tvm, target):
    """TVM's default CPU build pipeline (relax.build 'default') with dlight CPU schedules."""
    from tvm.relax import backend
    from tvm.relax import transform as T
    try:
        from tvm.s_tir import dlight as dl
    except ImportError:  # older layout
        import tvm.dlight as dl  # type: ignore

    @tvm.transform.module_pass(opt_level=0)
    def pipeline(mod, _ctx):
        passes = [backend.DispatchSampling(), backend.DispatchSortScan(), T.LegalizeOps(),
                  dl.ApplyDefaultSchedule(dl.cpu.GEMV(), dl.cpu.Reduction()),
                  T.RewriteDataflowReshape(), T.ToNonDataflow(), T.RemovePurityChecking(),
                  T.CallTIRRewrite(), T.StaticPlanBlockMemory(), T.LowerAllocTensor(),
                  T.KillAfterLastUse(), T.LowerRuntimeBuiltin(), T.ComputePrimValue(),
                  T.VMShapeLower(), T.AttachGlobalSymbol()]
        with target:
            return tvm.transform.Sequential(passes)(mod)
    return pipeline


def _tvm(gather: bool) -> Callable[[ModelContext], Prepared]:
    what = "tvm-gather" if gather else "tvm"

    def prepare(ctx: ModelContext) -> Prepared:
        try:
            import tvm
            from tvm import relax
            from tvm.relax.frontend.torch import from_exported_program
        except ImportError as e:
            raise Unavailable(f"apache-tvm not installed ({e}); pip install apache-tvm") from None
        info: dict = {"tvm_version": tvm.__version__}
        if gather:
            from .rewrites import flatten_pair_index
            module, n = _rewritten(ctx, "flat", what)
            ep = _export(module, ctx, what)
            gm = ep.module()
            fixed = flatten_pair_index(gm)
            if fixed:
                ep = _export(gm, ctx, what)
            info["rewrite"] = (f"{n} EmbeddingBag -> take + cumsum + index_put(accumulate); "
                               f"{fixed} x[:, i, j] -> flattened take (TVM translates x[:, i, j] "
                               "as an outer product)")
        else:
            ep = ctx.exported if ctx.exported is not None else _export(ctx.module, ctx, what)
        with stage("tvm from_exported_program"), quiet():
            mod = from_exported_program(ep, keep_params_as_input=True)
            mod, params = relax.frontend.detach_params(mod)
        with stage("tvm relax.build (llvm)"), quiet(fds=True):
            mcpu = tvm.target.codegen.llvm_get_system_cpu()
            target = tvm.target.Target({"kind": "llvm", "mcpu": mcpu, "num-cores": ctx.threads})
            exe = relax.build(mod, target=target, relax_pipeline=_tvm_pipeline(tvm, target))
            vm = relax.VirtualMachine(exe, tvm.cpu())
        weights = list(params.get("main", []))
        main = vm["main"]
        info.update(target=f"llvm -mcpu={mcpu}", schedule="untuned: default pipeline + dlight CPU "
                    "(GEMV, Reduction); no MetaSchedule, no BLAS in the PyPI wheel")

        def to_tvm(x: torch.Tensor):
            # zero-copy where TVM accepts it: contiguous, 64-byte aligned (its generated code assumes
            # that), and no size-1 dims (TVM rejects their arbitrary strides); else one copy
            if x.is_contiguous() and x.data_ptr() % 64 == 0 and min(x.shape, default=2) > 1:
                return tvm.runtime.from_dlpack(x)
            return tvm.runtime.tensor(np.ascontiguousarray(x.numpy()))

        def fn(*args):
            out = main(*[to_tvm(x) for x in _flat_args(args)], *weights)
            leaves = list(out) if not hasattr(out, "numpy") else [out]
            res = [torch.from_numpy(o.numpy()) for o in leaves]
            return res[0] if len(res) == 1 else tuple(res)
        return Prepared(fn, info, keep=(vm, exe, weights))
    return prepare


# --------------------------------------------------------------------------- xrec


def xrec_system_name(target: str, variant: str | None = None) -> str:
    """xrec-cpu for the fp32 variant (as in runs without --quantize), xrec-cpu-int8 for others."""
    return f"xrec-{target}" + (f"-{variant}" if variant and variant != "fp32" else "")


def xrec_system(target: str, quantize: str | None = None) -> System:
    """xrec compiled for ``target`` (with ``quantize``, e.g. "int8" embedding tables; None or
    "fp32": uncompressed)."""
    quantize = None if quantize == "fp32" else quantize

    def prepare(ctx: ModelContext) -> Prepared:
        import xrec
        from xrec.targets import available_targets
        why = available_targets().get(target)
        if why is None:
            raise Unavailable(f"unknown xrec target {target!r}")
        if why:
            raise Unavailable(f"target {target} not available: {why}")
        model = ctx.exported if ctx.exported is not None else ctx.module
        q = f", quantize={quantize!r}" if quantize else ""
        kw: dict = {}
        if quantize:
            comp = ctx.compression or {}
            if quantize == "mixed" and comp.get("budget_mb") is None and comp.get("max_auc_drop") is None:
                raise Unavailable("--quantize mixed picks a precision per table under a budget: give "
                                  "--budget-mb MB or --max-auc-drop D")
            kw = {"quantize": quantize, **{k: v for k, v in comp.items() if v is not None}}
            if ctx.calibration is not None:
                kw["calibration"] = ctx.calibration
        with stage(f"xrec.compile(target={target!r}{q})"), quiet():
            t0 = time.perf_counter()
            cm = xrec.compile(model, ctx.example_inputs, target=target, name=ctx.name, source=ctx.source,
                              options=dict(ctx.target_options) or None, **kw)
            dt = time.perf_counter() - t0
        mf = cm.manifest
        info = {"compile_s": round(dt, 2), "validate_inputs": cm.validate, "variant": quantize or "fp32",
                **({"options": dict(ctx.target_options)} if ctx.target_options else {}),
                "weights_bytes": int(mf["weights"]["bytes"]), "tolerances": dict(mf.get("tolerances", {}))}
        ti = mf.get("target_info", {})
        for k in ("isa", "arch", "threads"):
            if k in ti:
                info[k] = ti[k]
        c = mf.get("compression")
        if c:
            counts: dict[str, int] = {}
            for p in c.get("plan", {}).values():
                counts[p] = counts.get(p, 0) + 1
            info["compression"] = {"tables": counts, "calibration_samples": c.get("samples"),
                                   "calibration_max_abs_err": c.get("max_abs_err"),
                                   "auc_change": c.get("auc_change"), "ranking_auc": c.get("ranking_auc"),
                                   "param_bytes_fp32": c.get("bytes_before"),
                                   "param_bytes": c.get("bytes_after")}
        return Prepared(cm, info, keep=cm)
    desc = {"reference": "xrec reference target (numpy interpreter of the optimized IR)",
            "cpu": "xrec cpu target (generated C++, OpenMP)",
            "xla": "xrec xla target (StableHLO; here on JAX's CPU client, not a TPU)",
            "triton": ("xrec triton target" + ("" if torch.cuda.is_available() else
                       " (no GPU here: Triton's CPU interpreter, a functional simulation, not a speed number)")),
            "hls": "xrec hls target (FPGA gather units C-simulated here, dense part on the host: not a speed number)"}
    label = desc.get(target, f"xrec {target} target") + (f", {quantize} tables" if quantize else "")
    return System(xrec_system_name(target, quantize), label, "xrec", prepare, target, quantize or "fp32")


BASELINES: dict[str, System] = {s.name: s for s in (
    System("eager", "PyTorch eager (inference_mode)", "baseline", _eager),
    System("eager-onednn", "PyTorch eager, nn.Linear layers on oneDNN (torch.utils.mkldnn.to_mkldnn)", "baseline",
           _eager_onednn),
    System("torchscript", "TorchScript (torch.jit.trace + freeze)", "baseline", _torchscript),
    System("inductor", "torch.compile inductor (freezing)", "baseline", _inductor(False)),
    System("inductor-max-autotune", "torch.compile inductor max-autotune (freezing)", "baseline",
           _inductor(True)),
    System("onnxruntime", "ONNX Runtime CPU, plain torch.onnx export (EmbeddingBag -> ONNX Loop)",
           "baseline", _onnxruntime(False)),
    System("onnxruntime-gather", "ONNX Runtime CPU, EmbeddingBag rewritten to Gather + ScatterND(add)",
           "baseline", _onnxruntime(True)),
    System("tvm", "Apache TVM Relax from_exported_program, llvm, untuned", "baseline", _tvm(False)),
    System("tvm-gather", "Apache TVM Relax, EmbeddingBag rewritten to take + index_put, llvm, untuned",
           "baseline", _tvm(True)),
)}


def parse_baselines(text: str) -> list[str]:
    """'eager,inductor' | 'all' | 'none' -> names, checked against BASELINES."""
    text = (text or "").strip()
    if text in ("", "none"):
        return []
    if text == "all":
        return list(BASELINES)
    names = [x.strip() for x in text.split(",") if x.strip()]
    bad = [n for n in names if n not in BASELINES]
    if bad:
        raise ValueError(f"unknown baseline(s) {', '.join(bad)}; known: {', '.join(BASELINES)}, all, none")
    return names


def parse_targets(text: str | None) -> list[str]:
    """'cpu,reference' | 'all' (every known target) | 'available' | 'none' -> target names."""
    from xrec.targets import available_targets, known_targets
    text = (text or "all").strip()
    if text == "none":
        return []
    if text == "all":
        return known_targets()
    if text == "available":
        return [t for t, why in available_targets().items() if not why]
    names = [x.strip() for x in text.split(",") if x.strip()]
    bad = [n for n in names if n not in known_targets()]
    if bad:
        raise ValueError(f"unknown target(s) {', '.join(bad)}; known: {', '.join(known_targets())}, "
                         "all, available, none")
    return names


# --------------------------------------------------------------------------- parts of one call
def xla_parts(cm, args: tuple) -> dict[str, Callable[[], Any]]:
    """The steps of one xla call, to time next to the whole call: ``host`` (the runtime's bucketing
    and batch padding of the flat inputs) and ``executable`` (the compiled executable(s) on arguments
    already on the device). The rest of a call is input validation and host->device transfers."""
    import jax
    from xrec.targets.xla.runtime import execute
    flat, _ = cm.flatten_inputs(args, {})
    run = cm._run                       # the xla Runner (CompiledModel has no public accessor)
    _, chunks = run.chunks(flat)
    on_device = [[run.weights[a["name"]] if h is None else jax.device_put(h, run.dev) for a, h in zip(run.args, c)]
                 for c in chunks]
    return {"host": lambda: run.chunks(flat), "executable": lambda: [execute(run.exe, d) for d in on_device]}


PARTS: dict[str, Callable[[Any, tuple], dict[str, Callable[[], Any]]]] = {"xla": xla_parts}
"""target -> parts(compiled model, model args) -> {part: call}: what ``xrec bench --parts`` times apart."""


def outputs_to_tensor(out) -> torch.Tensor:
    """The first tensor of a system's output (models here return one tensor)."""
    leaves = [x for x in pytree.tree_leaves(out) if isinstance(x, torch.Tensor)]
    if not leaves:
        raise TypeError(f"system returned no tensor ({type(out).__name__})")
    return leaves[0]
