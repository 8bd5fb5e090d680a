"""The ordered pipeline of passes, run with the verifier after each and dumpable at any stage."""
from __future__ import annotations

from typing import Callable, Sequence, Union

from ..ir import Graph, verify

RECOGNIZE = ("canonicalize", "fuse_embedding_bags", "canonicalize", "recognize_interaction",
             "recognize_cross", "recognize_fm")
FUSE = ("fuse_mlp", "canonicalize")
DEFAULT_PIPELINE: tuple[str, ...] = RECOGNIZE + FUSE


PassEntry = Union[str, tuple[str, dict]]     # a pass name, or (name, options for this run of it)


def build_pipeline(compress: Sequence[PassEntry] = (), target: Sequence[PassEntry] = ()) -> list[PassEntry]:
    """canonicalize -> recognize -> compress -> fuse -> the target's own (layout) passes."""
    return list(RECOGNIZE) + list(compress) + list(FUSE) + list(target)


def run_pipeline(g: Graph, passes: Sequence[PassEntry] = DEFAULT_PIPELINE, *, stop_after: str | None = None,
                 on_pass: Callable[[str, Graph], None] | None = None,
                 options: dict[str, dict] | None = None) -> Graph:
    """Run ``passes`` in order, verifying after each; stop after the first ``stop_after``.

    ``options`` maps a pass name to keyword arguments for it (e.g. the quantization plan); an entry
    ``(name, kwargs)`` in ``passes`` gives that run of the pass its own keyword arguments (a target's
    layout pass with the target's options).
    """
    from . import get_pass
    entries = [(p, {}) if isinstance(p, str) else (p[0], dict(p[1])) for p in passes]
    names = [n for n, _ in entries]
    if stop_after is not None and stop_after not in names and stop_after != "import":
        raise KeyError(f"--after {stop_after!r} is not a stage of this pipeline; stages: "
                       f"import, {', '.join(dict.fromkeys(names))}")
    if stop_after == "import":
        return g
    for name, kwargs in entries:
        kwargs = {**(options or {}).get(name, {}), **kwargs}
        g = verify(get_pass(name).fn(g, **kwargs), where=name)
        if on_pass:
            on_pass(name, g)
        if name == stop_after:
            break
    return g
