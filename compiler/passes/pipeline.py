"""The ordered pipeline of passes, run with the verifier after each and dumpable at any stage."""
from __future__ import annotations

from typing import Callable, Sequence

from ..ir import Graph, verify

DEFAULT_PIPELINE: tuple[str, ...] = (
    "canonicalize",
    "fuse_embedding_bags",
    "canonicalize",
    "recognize_interaction",
    "recognize_cross",
    "recognize_fm",
    "fuse_mlp",
    "canonicalize",
)


def run_pipeline(g: Graph, passes: Sequence[str] = DEFAULT_PIPELINE, *, stop_after: str | None = None,
                 on_pass: Callable[[str, Graph], None] | None = None) -> Graph:
    """Run ``passes`` in order, verifying after each; stop after the first ``stop_after``."""
    from . import get_pass
    if stop_after is not None and stop_after not in passes and stop_after != "import":
        raise KeyError(f"--after {stop_after!r} is not a stage of this pipeline; stages: "
                       f"import, {', '.join(dict.fromkeys(passes))}")
    if stop_after == "import":
        return g
    for name in passes:
        g = verify(get_pass(name).fn(g), where=name)
        if on_pass:
            on_pass(name, g)
        if name == stop_after:
            break
    return g
