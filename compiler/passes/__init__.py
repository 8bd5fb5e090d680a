"""The pass registry: every pass is a pure function Graph -> Graph, registered by name.

Passes are looked up by name (``get_pass``); the ordered default pipeline
lives in ``pipeline.py``. Importing this package registers all passes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..ir import Graph


@dataclass(frozen=True)
class PassInfo:
    name: str
    fn: Callable[..., Graph]          # fn(graph, **options) -> graph
    stage: str            # canonicalize | recognize | compress | fuse | layout
    doc: str


_REGISTRY: dict[str, PassInfo] = {}


def register_pass(name: str, stage: str):
    def deco(fn):
        if name in _REGISTRY:
            raise ValueError(f"pass {name!r} registered twice")
        _REGISTRY[name] = PassInfo(name, fn, stage, (fn.__doc__ or "").strip().splitlines()[0])
        return fn
    return deco


def get_pass(name: str) -> PassInfo:
    if name not in _REGISTRY:
        raise KeyError(f"unknown pass {name!r}; known passes: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def all_passes() -> dict[str, PassInfo]:
    return dict(_REGISTRY)


# registration happens on import, one pass per module
from . import canonicalize, fuse_embedding_bags, recognize_interaction, recognize_cross  # noqa: E402,F401
from . import recognize_fm, fuse_mlp, quantize_embeddings, prune_embeddings  # noqa: E402,F401
from .pipeline import DEFAULT_PIPELINE, build_pipeline, run_pipeline  # noqa: E402,F401
