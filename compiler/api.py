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
from .progress import step
from .runtime.validate import InputValidator


class CompiledModel:
    """A compiled model: call it like the original module; ``save`` it; ``xrec.load`` it back."""

    def __init__(self, artifact: Artifact, validate: bool = True, owns_dir: bool = False):
        from xrec.targets import get_target
        self.artifact = artifact
        self.graph: Graph = artifact.graph
        self.target = get_target(artifact.target)
        self.options = artifact.manifest.get("target_info", {}).get("options", {})
        self._run = self.target.load(artifact, self.options)
        self.validate = validate
        self._validator = InputValidator(self.graph, artifact.manifest["signature"]["features"])
        self._in_spec = pytree.treespec_loads(self.graph.in_spec) if self.graph.in_spec else None
        self._out_spec = pytree.treespec_loads(self.graph.out_spec) if self.graph.out_spec else None
        if owns_dir:   # compiled into the cache and never saved: remove when collected
            weakref.finalize(self, shutil.rmtree, str(artifact.path), True)

    @property
    def path(self) -> Path:
        return self.artifact.path

    @property
    def manifest(self) -> dict:
        return self.artifact.manifest

    def flatten_inputs(self, args: tuple, kwargs: dict) -> tuple[list[np.ndarray], bool]:
        leaves, spec = pytree.tree_flatten((tuple(args), dict(kwargs)))
        if self._in_spec is not None and spec != self._in_spec:
            n_want = self._in_spec.num_leaves
            if len(leaves) != n_want:
                raise TypeError(f"{self.graph.name}: called with {len(leaves)} tensors but compiled with "
                                f"{n_want} (same structure as the example inputs, e.g. (dense, indices, "
                                "offsets) lists of one tensor per feature)")
        as_torch = any(isinstance(x, torch.Tensor) for x in leaves)
        flat = [x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x) for x in leaves]
        return flat, as_torch

    def run_flat(self, flat: Sequence[np.ndarray]) -> list[np.ndarray]:
        if self.validate:
            flat = self._validator(flat, check_values=True)
        return self._run(flat)

    def __call__(self, *args, **kwargs):
        flat, as_torch = self.flatten_inputs(args, kwargs)
        outs = self.run_flat(flat)
        if as_torch:
            outs = [torch.from_numpy(np.ascontiguousarray(o)) for o in outs]
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


def default_target() -> str:
    from xrec.targets import available_targets
    avail = available_targets()
    for t in ("cpu", "reference"):
        if avail.get(t) == "":
            return t
    return "reference"


def lower(model_or_graph, example_inputs=None, *, target: str = "reference", options: dict | None = None,
          name: str | None = None, stop_after: str | None = None, quantize: str | None = None):
    """Import and optimize: returns (graph, target object, parsed options)."""
    from xrec.frontend import import_model
    from xrec.passes import DEFAULT_PIPELINE, run_pipeline
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
    if quantize:
        raise NotImplementedError("quantization is not available yet (see the compression issue)")
    passes = list(DEFAULT_PIPELINE) + tgt.passes(opts)
    with step("optimize IR"):
        g = run_pipeline(g, passes, stop_after=stop_after)
    return g, tgt, opts


def compile(model, example_inputs: Sequence[Any] | None = None, target: str | None = None, *,
            quantize: str | None = None, options: dict | None = None, name: str | None = None,
            out: str | Path | None = None, source: dict | None = None,
            tolerances: dict | None = None) -> CompiledModel:
    """Compile ``model`` (an nn.Module traced on ``example_inputs``, or an ExportedProgram).

    The result is called exactly like ``model`` and works at any batch size.
    ``out`` writes the artifact there (else into xrec's cache, see ``save``).
    """
    target = target or default_target()
    g, tgt, opts = lower(model, example_inputs, target=target, options=options, name=name, quantize=quantize)
    owns = out is None
    if out is None:
        base = Path(knobs.cache_dir) / "artifacts"
        base.mkdir(parents=True, exist_ok=True)
        out = Path(tempfile.mkdtemp(prefix=f"{g.name}-{target}-", suffix=".xrec", dir=base))
    writer = ArtifactWriter(Path(out), g, target, target_info={"options": opts})
    with step(f"build for target {target}"):
        tgt.build(g, opts, writer)
        writer.finish(tolerances=tolerances or getattr(tgt, "tolerances", None), source=source)
    return CompiledModel(open_artifact(out), owns_dir=owns)


def load(path, validate: bool = True) -> CompiledModel:
    """Load an artifact written by ``CompiledModel.save`` or ``xrec compile -o``."""
    with step(f"load {path}"):
        return CompiledModel(open_artifact(path), validate=validate)
