"""Targets: one folder per kind of hardware, each implementing the small ``Target`` interface.

A target declares capabilities (facts passes read: vector width, shared
memory, memory channels, int4 support), the extra passes it wants after the
default pipeline, how to build an artifact, and how to load one to run. It is
found by name through ``get_target``; adding a target adds a folder and one
line in ``_KNOWN`` below, nothing else.
"""
from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from .options import TargetOptions


@dataclass(frozen=True)
class Capabilities:
    """Facts about a target that passes query instead of branching on target names."""

    vector_width: int = 1            # fp32 lanes of the widest vector unit
    has_shared_memory: bool = False  # GPU-style on-chip scratchpad
    memory_channels: int = 1         # independent memory channels (HBM pseudo-channels)
    supports_int4: bool = False
    supports_fp16: bool = False
    static_shapes: bool = False      # needs fixed shapes (XLA/TPU): jagged inputs get bucketed
    supports_pruning: bool = False   # embedding kernels consult a pruned table's remap
    checks_inputs: bool = False      # the generated code itself rejects bad ids/offsets with a clear error,
                                     # so the Python runtime skips its own per-id scan


Runner = Callable[[Sequence[np.ndarray]], list[np.ndarray]]


class Target(ABC):
    name: str = ""
    description: str = ""
    # the target's typed options (targets/options.py); a target that still overrides parse_options with
    # its own dict validation may leave this as the base (which only knows ``strict``)
    Options: type[TargetOptions] = TargetOptions

    def available(self) -> tuple[bool, str]:
        """Whether this machine can build and run the target, and if not, why."""
        return True, ""

    def capabilities(self, options: dict) -> Capabilities:
        return Capabilities()

    def parse_options(self, options: dict | None) -> TargetOptions:
        """Validate and complete target options: ``self.Options.parse`` (unknown or invalid options are a
        ValueError listing the valid ones). The result is a frozen dataclass that also reads as a mapping;
        write ``.as_dict()`` into the manifest."""
        return self.Options.parse(options)

    def typed_options(self) -> type[TargetOptions] | None:
        """The options dataclass this target parses with, or None while it still validates a plain dict."""
        if type(self).parse_options is not Target.parse_options:
            return None
        return self.Options

    tolerances: dict = {"rtol": 1e-4, "atol": 1e-6}

    def tolerances_for(self, options: dict) -> dict:
        """The rtol/atol an artifact built with ``options`` records (a bf16 build may be looser)."""
        return dict(self.tolerances)

    def passes(self, options: dict) -> list:
        """Extra passes, run after the default pipeline (e.g. layout for this target): names, or
        (name, kwargs) pairs to run a pass with this target's options."""
        return []

    @abstractmethod
    def build(self, graph, options: dict, writer) -> None:
        """Lower ``graph`` and write sources and binaries through ``writer`` (an ArtifactWriter)."""

    @abstractmethod
    def load(self, artifact, options: dict) -> Runner:
        """A function running the artifact on flat numpy inputs, returning flat outputs."""


# name -> module that defines it (imported lazily, so a missing optional dependency
# only affects its own target)
_KNOWN = {
    "reference": "xrec.targets.reference",
    "cpu": "xrec.targets.cpu",
    "triton": "xrec.targets.triton",
    "xla": "xrec.targets.xla",
    "hls": "xrec.targets.hls",
}
_TARGETS: dict[str, Target] = {}


def register_target(t: Target) -> Target:
    _TARGETS[t.name] = t
    return t


def known_targets() -> list[str]:
    return list(_KNOWN)


def get_target(name: str) -> Target:
    if name not in _KNOWN:
        raise KeyError(f"unknown target {name!r}; known targets: {', '.join(_KNOWN)}")
    if name not in _TARGETS:
        try:
            importlib.import_module(_KNOWN[name])
        except ModuleNotFoundError as e:
            if e.name and e.name.startswith(_KNOWN[name]):
                raise KeyError(f"target {name!r} is not built into this xrec yet") from None
            raise
    return _TARGETS[name]


def available_targets() -> dict[str, str]:
    """Every known target and '' if usable here, else the reason it is not."""
    out = {}
    for name in _KNOWN:
        try:
            ok, why = get_target(name).available()
        except KeyError as e:
            ok, why = False, str(e).strip("'\"")
        except ImportError as e:
            ok, why = False, f"missing dependency: {e}"
        out[name] = "" if ok else why
    return out
