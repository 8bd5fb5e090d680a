"""Resolve a MODEL argument: a zoo name, ``path/to/file.py:factory``, or a torch.export ``.pt2``."""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch


@dataclass
class ModelSource:
    name: str
    module: Any                                   # nn.Module or the .pt2's module(); None if unknown
    example_inputs: tuple | None                  # for tracing (batch >= 2, >= 2 ids per feature)
    make_inputs: Callable[[int, int], tuple] | None   # (batch, seed) -> args, or None: use the IR
    source: dict = field(default_factory=dict)    # how to rebuild it (goes into the manifest)
    exported: Any = None                          # an ExportedProgram when given a .pt2


def resolve(spec: str, *, max_rows: int | None = None, seed: int = 0) -> ModelSource:
    from . import zoo
    if spec in zoo.list_models():
        model = zoo.build(spec, max_rows=max_rows, seed=seed)
        return ModelSource(
            name=spec, module=model, example_inputs=zoo.example_inputs(model),
            make_inputs=lambda batch, s=0: zoo.make_inputs(model, batch, seed=s),
            source={"kind": "zoo", "name": spec, "max_rows": max_rows, "seed": seed})
    if spec.endswith(".pt2"):
        p = Path(spec)
        if not p.is_file():
            raise FileNotFoundError(f"no such exported program: {spec}")
        ep = torch.export.load(str(p))
        return ModelSource(name=p.stem, module=ep.module(), example_inputs=None, make_inputs=None,
                           source={"kind": "pt2", "path": str(p.resolve())}, exported=ep)
    if ":" in spec:
        path, _, factory = spec.rpartition(":")
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"MODEL {spec!r}: no such file {path}")
        mod_spec = importlib.util.spec_from_file_location(f"xrec_user_{p.stem}", p)
        mod = importlib.util.module_from_spec(mod_spec)
        mod_spec.loader.exec_module(mod)
        if not hasattr(mod, factory):
            raise AttributeError(f"MODEL {spec!r}: {path} defines no {factory!r}")
        made = getattr(mod, factory)()
        model, example = (made if isinstance(made, tuple) else (made, None))
        model = model.eval()
        if example is None and hasattr(model, "xrec_spec"):
            example = zoo.example_inputs(model)
        if example is None:
            raise ValueError(f"MODEL {spec!r}: {factory}() returned a module without example inputs; "
                             "return (module, example_inputs) or give the module an xrec_spec")
        make = (lambda batch, s=0: zoo.make_inputs(model, batch, seed=s)) if hasattr(model, "xrec_spec") \
            else None
        return ModelSource(name=p.stem, module=model, example_inputs=tuple(example), make_inputs=make,
                           source={"kind": "file", "spec": f"{p.resolve()}:{factory}"})
    raise ValueError(f"unknown MODEL {spec!r}: give a zoo name ({', '.join(zoo.list_models())}), "
                     "path/to/file.py:factory, or a .pt2 file")


def from_source(source: dict) -> ModelSource | None:
    """Rebuild the PyTorch model an artifact was compiled from (for `xrec check ARTIFACT`)."""
    kind = source.get("kind")
    if kind == "zoo":
        return resolve(source["name"], max_rows=source.get("max_rows"), seed=source.get("seed", 0))
    if kind == "file":
        return resolve(source["spec"])
    if kind == "pt2":
        return resolve(source["path"])
    return None
