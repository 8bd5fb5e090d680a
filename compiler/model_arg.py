"""Resolve a MODEL argument: a zoo name, ``path/to/file.py:factory``, or a torch.export ``.pt2``."""
from __future__ import annotations

import importlib.util
import sys
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
        return ModelSource(name=p.stem, module=_reference_of(ep), example_inputs=None, make_inputs=None,
                           source={"kind": "pt2", "path": str(p.resolve())}, exported=ep)
    if ":" in spec:
        return _from_file(spec)
    raise ValueError(f"unknown MODEL {spec!r}: give a zoo name ({', '.join(zoo.list_models())}), "
                     "path/to/file.py:factory, or a .pt2 file")


def _reference_of(ep) -> torch.nn.Module:
    """The exported graph as the reference that ``xrec check`` and ``xrec bench`` compare with. Its guards and
    input ranges encode torch's 0/1 specialisation of the example sizes (batch != 1, batch >= 2 with
    ``Dim.AUTO``), which the xrec artifact compiled from the same graph does not have: a batch of 1 runs the
    same graph instead of failing with torch's bare "Guard failed: ... != 1"."""
    module = ep.module(check_guards=False)
    module.validate_inputs = False      # torch's switch for the input-range pre-hook of an unlifted module
    return module


def _from_file(spec: str) -> ModelSource:
    """``path/to/file.py:factory``: the factory returns ``(module, example_inputs)``, or a bare module that
    follows the zoo convention (an ``xrec_spec`` attribute, a :class:`xrec.zoo.ZooSpec`), whose example
    inputs are drawn from that spec. The model is named after the factory."""
    from . import zoo
    from .zoo.common import ZooSpec
    path, _, factory = spec.rpartition(":")
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"MODEL {spec!r}: no such file {path}")
    folder = str(p.resolve().parent)
    # the file's folder is on sys.path while it is imported and its factory runs, as for `python file.py`,
    # so it may import sibling modules
    added = folder not in sys.path
    if added:
        sys.path.insert(0, folder)
    try:
        mod_spec = importlib.util.spec_from_file_location(f"xrec_user_{p.stem}", p)
        mod = importlib.util.module_from_spec(mod_spec)
        mod_spec.loader.exec_module(mod)
        if not hasattr(mod, factory):
            raise AttributeError(f"MODEL {spec!r}: {path} defines no {factory!r}")
        made = getattr(mod, factory)()
    finally:
        if added and folder in sys.path:
            sys.path.remove(folder)
    model, example = (made if isinstance(made, tuple) else (made, None))
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"MODEL {spec!r}: {factory}() returned {type(model).__name__}, not a torch.nn.Module; "
                        "return a module or (module, example_inputs)")
    model = model.eval()
    zoo_convention = isinstance(getattr(model, "xrec_spec", None), ZooSpec)
    if example is None and zoo_convention:
        example = zoo.example_inputs(model)
    if example is None:
        raise ValueError(
            f"MODEL {spec!r}: {factory}() returned a bare {type(model).__name__} without example inputs. "
            "Return (module, example_inputs) with example_inputs a tuple of the forward's arguments (a batch "
            "of at least 2 and at least 2 ids per feature), or return a module following the zoo convention: "
            "forward(dense, indices, offsets) and an xrec_spec attribute (xrec.zoo.ZooSpec) describing its "
            "dense width and tables")
    make = (lambda batch, s=0: zoo.make_inputs(model, batch, seed=s)) if zoo_convention else None
    return ModelSource(name=factory, module=model, example_inputs=tuple(example), make_inputs=make,
                       source={"kind": "file", "spec": f"{p.resolve()}:{factory}"})


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
