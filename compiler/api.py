"""The Python API: ``xrec.compile``, ``xrec.load`` and the ``CompiledModel`` they return."""
from __future__ import annotations

import shutil
import tempfile
import weakref
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils import _pytree as pytree

from .artifact import Artifact, ArtifactWriter, open_artifact
from .config import knobs
from .ir import Graph
from .progress import say, step
from .runtime.validate import InputError, InputValidator


class CompiledModel:
    """A compiled model: call it like the original module; ``save`` it; ``xrec.load`` it back."""

    def __init__(self, artifact: Artifact, validate: bool = True, owns_dir: bool = False, lazy: bool = False):
        from xrec.targets import get_target
        self.artifact = artifact
        self.graph: Graph = artifact.graph
        self.target = get_target(artifact.target)
        self.options = artifact.manifest.get("target_info", {}).get("options", {})
        self._runner = None
        if not lazy:          # xrec.load: a broken artifact fails here; xrec.compile loads on first call
            self._load()
        self.validate = validate
        # ids and offsets are scanned here only where the generated code does not check them itself
        self._check_values = not self.target.capabilities(self.options).checks_inputs
        self._validator = InputValidator(self.graph, artifact.manifest["signature"]["features"])
        # a TorchRec model: called with KeyedJaggedTensors, which become per-feature (values, offsets)
        self._kjt_meta = self.graph.meta_get("torchrec_kjt")
        if self._kjt_meta or "KeyedTensor" in (self.graph.out_spec or ""):
            from .frontend.torchrec_models import ensure_pytree_types
            ensure_pytree_types(self.graph.out_spec)
        self._in_spec = pytree.treespec_loads(self.graph.in_spec) if self.graph.in_spec else None
        self._out_spec = pytree.treespec_loads(self.graph.out_spec) if self.graph.out_spec else None
        self._out_is_leaf = self._out_spec is not None and self._out_spec.is_leaf()
        if owns_dir:   # compiled into the cache and never saved: remove when collected
            weakref.finalize(self, shutil.rmtree, str(artifact.path), True)

    def _load(self):
        self._runner = self.target.load(self.artifact, self.options)
        # the native fast path: torch tensors straight into generated code that checks every input itself
        self._fast_fn = getattr(self._runner, "call_torch", None) if not self._check_values_of() else None
        return self._runner

    def _check_values_of(self) -> bool:
        return not self.target.capabilities(self.options).checks_inputs

    @property
    def _run(self):
        """The target's runner (loaded on first use for a freshly compiled model)."""
        return self._runner if self._runner is not None else self._load()

    @property
    def _fast(self):
        if self._runner is None:
            self._load()
        return self._fast_fn

    @property
    def path(self) -> Path:
        return self.artifact.path

    @property
    def manifest(self) -> dict:
        return self.artifact.manifest

    def _from_kjt(self, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        if not self._kjt_meta:
            return args, kwargs
        from .frontend.torchrec_models import flatten_call
        return flatten_call(args, kwargs, self._kjt_meta, InputError)

    def flatten_inputs(self, args: tuple, kwargs: dict) -> tuple[list[np.ndarray], bool]:
        args, kwargs = self._from_kjt(args, kwargs)
        leaves = None if kwargs else _flat_tensors(args)
        if leaves is None:
            leaves, _ = pytree.tree_flatten((tuple(args), dict(kwargs)))
        if self._in_spec is not None and len(leaves) != self._in_spec.num_leaves:
            raise InputError(f"{self.graph.name}: called with {len(leaves)} tensors but compiled with "
                            f"{self._in_spec.num_leaves} (same structure as the example inputs, e.g. (dense, "
                            "indices, offsets) lists of one tensor per feature)")
        as_torch = False
        flat = []
        for x in leaves:
            if isinstance(x, torch.Tensor):
                as_torch = True
                try:
                    flat.append(x.numpy())                  # zero-copy view of a CPU tensor
                except (RuntimeError, TypeError):           # requires grad, or not on the CPU
                    flat.append(x.detach().cpu().numpy())
            else:
                flat.append(np.asarray(x))
        return flat, as_torch

    def run_flat(self, flat: Sequence[np.ndarray]) -> list[np.ndarray]:
        if self.validate:
            flat = self._validator(flat, check_values=self._check_values)
        return self._run(flat)

    def __call__(self, *args, **kwargs):
        if self._kjt_meta:
            args, kwargs = self._from_kjt(args, kwargs)
        if self._fast is not None and not kwargs:
            try:
                outs = self._fast(args)
            except InputError:
                outs = NotImplemented       # the general path below raises the error with Python's wording
            if outs is not NotImplemented:
                return self._unflatten_outputs(outs)
        flat, as_torch = self.flatten_inputs(args, kwargs)
        outs = self.run_flat(flat)
        if as_torch:
            outs = [torch.from_numpy(np.ascontiguousarray(o)) for o in outs]
        return self._unflatten_outputs(outs)

    def _unflatten_outputs(self, outs: list):
        if self._out_is_leaf:
            return outs[0]
        if self._out_spec is not None:
            return pytree.tree_unflatten(outs, self._out_spec)
        return outs[0] if len(outs) == 1 else tuple(outs)

    def save(self, path) -> Path:
        """Copy the artifact directory to ``path`` (conventionally NAME.xrec)."""
        path = Path(path)
        if path.resolve() == self.path.resolve():
            return path
        if path.exists():
            shutil.rmtree(path)
        shutil.copytree(self.path, path)
        return path

    def __repr__(self) -> str:
        return f"CompiledModel({self.graph.name!r}, target={self.artifact.target!r}, path={str(self.path)!r})"


def _flat_tensors(obj, out=None) -> list | None:
    """Leaves of nested tuples/lists of tensors, in pytree order; None for anything else
    (dicts, custom containers), which then go through torch's pytree. A fast path: pytree costs
    ~100 us for the 53 tensors of a DLRM call."""
    out = [] if out is None else out
    for x in obj:
        if isinstance(x, torch.Tensor):
            out.append(x)
        elif isinstance(x, (list, tuple)):
            if _flat_tensors(x, out) is None:
                return None
        else:
            return None
    return out


def default_target() -> str:
    from xrec.targets import available_targets
    avail = available_targets()
    for t in ("cpu", "reference"):
        if avail.get(t) == "":
            return t
    return "reference"


def _calibration_batches(g: Graph, calibration, samples: int, batch: int = 512) -> list[list[np.ndarray]]:
    """Flat calibration inputs: from ``calibration(batch, seed) -> args`` or random over the signature."""
    from .artifact import signature_of
    from .runtime.inputs import random_flat_inputs
    out, seed = [], 1000
    while samples > 0:
        b = min(batch, samples)
        if calibration is not None:
            leaves = pytree.tree_leaves(calibration(b, seed))
            out.append([x.detach().numpy() if isinstance(x, torch.Tensor) else np.asarray(x) for x in leaves])
        else:
            out.append(random_flat_inputs(g, signature_of(g)["features"], b, seed=seed))
        samples -= b
        seed += 1
    return out


def _compress(g: Graph, quantize, *, calibration=None, budget_mb: float | None = None,
              max_auc_drop: float | None = None, calib_samples: int = 4096, prune: tuple | None = None,
              model=None):
    """Prune and quantize embedding tables; return the new graph and the accuracy report (a dict).

    ``prune`` is (method, keep_fraction) with method "frequency" or "norm". A ``model`` with
    ``xrec_data`` (xrec.data) is measured on its real splits (see xrec.compress.evaluation_sets).
    """
    from .compress import CompressionError, evaluation_sets, measure, plan_precision, table_stats
    from .compress.accuracy import is_probability
    from .compress.prune import prune_plan
    from .passes import run_pipeline
    with step("calibration inputs"):
        sets = evaluation_sets(model, lambda: _calibration_batches(g, calibration, calib_samples))
        batches = sets.calib
        p0 = sets.report.scored(g).p_fp32
    stats = table_stats(g, batches)
    fp32 = g
    pruned: dict = {}
    if prune:
        method, fraction = prune
        with step(f"prune embedding rows ({method}, keep {fraction:.0%})"):
            keep = prune_plan(g, batches, method=method, keep_fraction=fraction)
            g = run_pipeline(g, ["prune_embeddings"], options={"prune_embeddings": {"keep": keep}})
            pruned = {"method": method, "keep_fraction": fraction,
                      "rows_kept": {f: int(len(k)) for f, k in keep.items()}}

    def apply(plan):
        if not quantize:
            return g
        return run_pipeline(g, ["quantize_embeddings"], options={"quantize_embeddings": {"precision": plan}})

    def auc_change(plan):
        return measure(fp32, apply(plan), sets.decide.scored(fp32)).auc_change

    if max_auc_drop is not None and not is_probability(p0):
        raise CompressionError("--max-auc-drop needs a model whose first output is a probability (a CTR "
                               "model with a sigmoid); this model's outputs fall outside [0, 1]")
    plan = {s.feature: "fp32" for s in stats}
    if quantize:
        with step(f"choose precision per table ({quantize if isinstance(quantize, str) else 'given'})"):
            plan = plan_precision(stats, quantize,
                                  budget_bytes=None if budget_mb is None else int(budget_mb * 2**20),
                                  evaluate=auc_change, max_auc_drop=max_auc_drop)
    with step("quantize tables and measure accuracy"):
        q = apply(plan)
        rep = measure(fp32, q, sets.report)
    say(f"compression: {rep.summary()}")
    if max_auc_drop is not None and -rep.auc_change > max_auc_drop:
        raise CompressionError(f"AUC drops by {-rep.auc_change:.5f} (labels {rep.labels}), more than the allowed "
                               f"{max_auc_drop}; use more bits (e.g. --quantize int8) or raise --max-auc-drop")
    return q, {"plan": plan, **({"prune": pruned} if pruned else {}), **rep.as_dict()}


def _refuse_quantizing_stored_tables(g: Graph, quantize) -> None:
    """A model whose tables come already stored in a row format (TorchRec's quantized EBC) is compiled as it
    is: ``quantize=`` re-encodes f32 tables only."""
    from .frontend.errors import FrontendError
    from .ir import Op
    if not quantize:
        return
    tables = [g.node(name) for name in dict.fromkeys(n.inputs[0] for n in g.nodes_of(Op.EMBEDDING_BAG))]
    stored = sorted(t.attr("name") for t in tables
                    if t.op is Op.PARAM and (t.type.layout or t.type.dtype.value != "f32"))
    if stored:
        raise FrontendError(
            f"quantize={quantize!r}: the model's embedding tables {stored} are already stored in fewer bits "
            "(TorchRec's quantized EmbeddingBagCollection, or fp16 tables); xrec compiles them as they are. "
            "Compile without quantize=, or "
            "compile the fp32 model (before quantize_inference_model) with quantize=.")


def lower(model_or_graph, example_inputs=None, *, target: str = "reference", options: dict | None = None,
          name: str | None = None, stop_after: str | None = None, quantize=None,
          compression: dict | None = None, prune: tuple | None = None):
    """Import and optimize: returns (graph, target object, parsed options, compression report or None).

    ``compression`` holds the options of ``_compress`` (calibration, budget_mb, max_auc_drop, calib_samples).
    """
    from xrec.frontend import import_model
    from xrec.passes.pipeline import FUSE, RECOGNIZE, build_pipeline, run_pipeline
    from xrec.targets import get_target

    tgt = get_target(target)
    ok, why = tgt.available()
    if not ok:
        raise RuntimeError(f"target {target!r} is not available here: {why}")
    opts = tgt.parse_options(options)
    if isinstance(model_or_graph, Graph):
        g = model_or_graph
    elif hasattr(model_or_graph, "graph_signature"):        # an ExportedProgram
        from xrec.frontend import import_exported
        with step("import exported program"):
            g = import_exported(model_or_graph, name or "model")
    else:
        if example_inputs is None:
            raise TypeError("xrec.compile needs example_inputs to trace the model")
        with step(f"trace {name or type(model_or_graph).__name__} with torch.export"):
            g = import_model(model_or_graph, tuple(example_inputs), name=name)
    report = None
    if prune and not tgt.capabilities(opts).supports_pruning:
        raise RuntimeError(f"target {target!r} cannot run pruned embedding tables yet; compile without --prune "
                           "or for a target that supports it (see Capabilities.supports_pruning)")
    if not quantize and not prune:
        with step("optimize IR"):
            g = run_pipeline(g, build_pipeline(target=tgt.passes(opts)), stop_after=stop_after)
        return g, tgt, opts, report
    _refuse_quantizing_stored_tables(g, quantize)
    with step("optimize IR"):
        g = run_pipeline(g, RECOGNIZE)
    g, report = _compress(g, quantize, prune=prune, model=model_or_graph, **(compression or {}))
    with step("optimize IR after compression"):
        g = run_pipeline(g, list(FUSE) + tgt.passes(opts), stop_after=stop_after)
    return g, tgt, opts, report


def compile(model, example_inputs: Sequence[Any] | None = None, target: str | None = None, *,
            quantize=None, options: dict | None = None, name: str | None = None,
            out: str | Path | None = None, source: dict | None = None, tolerances: dict | None = None,
            calibration=None, budget_mb: float | None = None, max_auc_drop: float | None = None,
            calib_samples: int = 4096, prune: tuple | None = None) -> CompiledModel:
    """Compile ``model`` (an nn.Module traced on ``example_inputs``, or an ExportedProgram).

    The result is called exactly like ``model`` and works at any batch size.
    ``out`` writes the artifact there (else into xrec's cache, see ``save``).
    ``quantize``: None, a precision for every embedding table ("fp16", "bf16", "int8", "int4", "int2"),
    "mixed" (automatic, needs ``budget_mb`` or ``max_auc_drop``), or a mapping feature -> precision.
    ``calibration(batch, seed) -> args`` draws calibration inputs (default: zoo generator for zoo models,
    random inputs over the signature otherwise); ``max_auc_drop`` fails the compile when exceeded.
    ``prune=(method, keep_fraction)`` drops embedding rows ("frequency" on the calibration set, or "norm").
    """
    target = target or default_target()
    if calibration is None and hasattr(model, "xrec_spec"):
        from . import zoo
        calibration = lambda batch, seed: zoo.make_inputs(model, batch, seed=seed)  # noqa: E731
    comp = {"calibration": calibration, "budget_mb": budget_mb, "max_auc_drop": max_auc_drop,
            "calib_samples": calib_samples}
    g, tgt, opts, report = lower(model, example_inputs, target=target, options=options, name=name,
                                 quantize=quantize, compression=comp, prune=prune)
    owns = out is None
    if out is None:
        base = Path(knobs.cache_dir) / "artifacts"
        base.mkdir(parents=True, exist_ok=True)
        out = Path(tempfile.mkdtemp(prefix=f"{g.name}-{target}-", suffix=".xrec", dir=base))
    tol = dict(tolerances or tgt.tolerances_for(opts))
    extra = {}
    if report is not None:
        extra["compression"] = report
        # a compressed model is compared with the fp32 PyTorch model: allow the drift measured on the
        # calibration set (with a margin for inputs it did not see)
        tol["atol"] = max(tol.get("atol", 0.0), 4 * report["max_abs_err"])
    recorded = opts.as_dict() if hasattr(opts, "as_dict") else opts      # typed options are not JSON
    writer = ArtifactWriter(Path(out), g, target, target_info={"options": recorded}, extra=extra, tolerances=tol)
    with step(f"build for target {target}"):
        tgt.build(g, opts, writer)
        writer.finish(source=source)
    return CompiledModel(open_artifact(out), owns_dir=owns, lazy=True)


def load(path, validate: bool = True) -> CompiledModel:
    """Load an artifact written by ``CompiledModel.save`` or ``xrec compile -o``."""
    with step(f"load {path}"):
        return CompiledModel(open_artifact(path), validate=validate)
