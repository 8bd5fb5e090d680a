"""CPU feature detection: which of the cpu target's ISA paths this machine runs.

The paths, best first: ``avx512`` (x86-64-v4: AVX512F/BW/CD/DQ/VL), ``avx2``
(x86-64-v3: AVX2, FMA, BMI1/2, F16C, LZCNT, MOVBE), ``scalar`` (baseline x86-64).
The loader (csrc/xrec_dispatch.cpp) makes the same choice in C at load time;
Python needs it only to pick the library it packs weights with and to report
capabilities. ``XREC_FAKE_CPU_ISA`` pretends a lesser CPU (tests), as in C.
"""
from __future__ import annotations

import functools
import os
import platform

ISAS = ("avx512", "avx2", "scalar")          # best first
RANK = {"scalar": 0, "avx2": 1, "avx512": 2}
VECTOR_WIDTH = {"avx512": 16, "avx2": 8, "scalar": 4}

_V4 = {"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"}
_V3 = {"avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "xsave"}


@functools.lru_cache(maxsize=None)
def _cpu_flags() -> frozenset:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def is_x86_64() -> bool:
    return platform.machine().lower() in ("x86_64", "amd64")


def best_isa() -> str:
    """The best ISA path this CPU supports (honours XREC_FAKE_CPU_ISA)."""
    flags = _cpu_flags()
    best = "avx512" if _V4 <= flags and _V3 <= flags else "avx2" if _V3 <= flags else "scalar"
    fake = os.environ.get("XREC_FAKE_CPU_ISA", "")
    if fake in RANK and RANK[fake] < RANK[best]:
        best = fake
    return best


def supported(isa: str) -> bool:
    return RANK[isa] <= RANK[best_isa()]


def parse_isa_list(value: str) -> tuple[str, ...]:
    """Target option ``isa``: 'auto' (all three) or one or more of avx512, avx2, scalar."""
    if value in ("", "auto", None):
        return ISAS
    out = []
    for part in str(value).split(","):
        part = part.strip()
        if part not in RANK:
            raise ValueError(f"unknown ISA {part!r}; known: auto, {', '.join(ISAS)}")
        if part not in out:
            out.append(part)
    return tuple(sorted(out, key=lambda i: -RANK[i]))
