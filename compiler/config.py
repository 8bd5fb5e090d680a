"""Every xrec knob in one place: typed, environment-backed, with a scoped override.

    from xrec.config import knobs
    knobs.cache_dir            # reads XREC_CACHE_DIR, default ~/.cache/xrec
    with knobs.override(cpu_isa="avx2"): ...
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, fields
from pathlib import Path


@dataclass(frozen=True)
class _Knob:
    env: str
    default: object
    kind: type
    doc: str


_KNOBS = {
    "cache_dir": _Knob("XREC_CACHE_DIR", str(Path.home() / ".cache" / "xrec"), str,
                       "where built libraries and compiled artifacts are cached"),
    "verbose": _Knob("XREC_VERBOSE", False, bool, "print every step, not only those over a second"),
    "quiet": _Knob("XREC_QUIET", False, bool, "print no progress at all"),
    "cpu_isa": _Knob("XREC_CPU_ISA", "auto", str, "force the CPU path: auto | avx512 | avx2 | scalar"),
    "cxx": _Knob("CXX", "g++", str, "the C++ compiler the cpu and hls targets call"),
    "bounds_check": _Knob("XREC_BOUNDS_CHECK", True, bool, "generated code checks ids and offsets"),
    "threads": _Knob("XREC_THREADS", 0, int, "threads for generated CPU code (0 = all cores)"),
    "huge_pages": _Knob("XREC_HUGE_PAGES", "auto", str,
                        "cpu weights in transparent huge pages: auto (weights >= 64 MiB) | on | off"),
}


def _parse(kind: type, text: str):
    if kind is bool:
        return text.strip().lower() in ("1", "true", "yes", "on")
    return kind(text)


class Knobs:
    def __init__(self):
        object.__setattr__(self, "_overrides", [])

    def __getattr__(self, name: str):
        if name not in _KNOBS:
            raise AttributeError(f"no knob {name!r}; knobs: {', '.join(sorted(_KNOBS))}")
        for layer in reversed(self._overrides):
            if name in layer:
                return layer[name]
        k = _KNOBS[name]
        raw = os.environ.get(k.env)
        return k.default if raw is None or raw == "" else _parse(k.kind, raw)

    def __setattr__(self, name, value):
        raise AttributeError("knobs are read-only; use knobs.override(...) or the environment")

    @contextlib.contextmanager
    def override(self, **values):
        for k in values:
            if k not in _KNOBS:
                raise AttributeError(f"no knob {k!r}; knobs: {', '.join(sorted(_KNOBS))}")
        self._overrides.append(values)
        try:
            yield self
        finally:
            self._overrides.pop()

    def describe(self) -> str:
        return "\n".join(f"{k:14s} {v.env:20s} {getattr(self, k)!r:28} {v.doc}" for k, v in _KNOBS.items())


knobs = Knobs()
