"""Progress output for long steps: a line on stderr when a step takes over a second."""
from __future__ import annotations

import contextlib
import sys
import time

from .config import knobs


def say(msg: str) -> None:
    if not knobs.quiet:
        print(f"[xrec] {msg}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def step(what: str, threshold_s: float = 1.0):
    """Time a step; report it when it is slow (or always with XREC_VERBOSE=1)."""
    if knobs.verbose:
        say(f"{what} ...")
    t0 = time.perf_counter()
    yield
    dt = time.perf_counter() - t0
    if knobs.verbose or dt >= threshold_s:
        say(f"{what}: {dt:.1f} s")
