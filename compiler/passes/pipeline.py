"""The ordered pipeline of passes, run with the verifier after each and dumpable at any stage."""
from __future__ import annotations

from typing import Callable, Sequence

from ..ir import Graph, verify

RECOGNIZE = ("canonicalize", "fuse_embedding_bags", "canonicalize", "recognize_interaction",
             "recognize_cross", "recognize_fm")
FUSE = ("fuse_mlp", "canonicalize")
DEFAULT_PIPELINE: tuple[str, ...] = RECOGNIZE + FUSE


def build_pipeline(compress: Sequence[str] = (), target: Sequence[str] = ()) -> list[str]:
    """canonicalize -> recognize -> compress -> fuse -> the target's own (layout) passes."""
    return list(RECOGNIZE) + list(compress) + list(FUSE) + list(target)


def run_pipeline(g: Graph, passes: Sequence[str] = DEFAULT_PIPELINE, *, stop_after: str | None = None,
                 on_pass: Callable[[str, Graph], None] | None = None,
                 options: dict[str, dict] | None = None) -> Graph:
    """Run ``passes`` in order, verifying after each; stop after the first ``stop_after``.

    ``options`` maps a pass name to keyword arguments for it (e.g. the quantization plan).
    """
    from . import get_pass
    if stop_after is not None and stop_after not in passes and stop_after != "import":
        raise KeyError(f"--after {stop_after!r} is not a stage of this pipeline; stages: "
                       f"import, {', '.join(dict.fromkeys(passes))}")
    if stop_after == "import":
        return g
    for name in passes:
        g = verify(get_pass(name).fn(g, **(options or {}).get(name, {})), where=name)
        if on_pass:
            on_pass(name, g)
        if name == stop_after:
            break
    return g
