"""Fixtures for the CPU kernel tests: compile a small C++ driver per kernel family
with g++ for each ISA build (cached by content hash in the temp dir) and load it
with ctypes.

The three ISA builds are those the cpu target compiles:
    avx512: -march=x86-64-v4 -DXREC_ISA_NS=avx512
    avx2:   -march=x86-64-v3 -DXREC_ISA_NS=avx2
    scalar: -march=x86-64    -DXREC_ISA_NS=scalar
A build whose instructions this machine lacks is skipped (with the reason).
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from xrec.kernels import cpu_include_dir

HERE = Path(__file__).resolve().parent
DRIVERS = HERE / "drivers"
KERNEL_DIR = cpu_include_dir()
CACHE = Path(tempfile.gettempdir()) / "xrec-kernel-tests"

ISA_FLAGS = {
    "avx512": ["-march=x86-64-v4", "-DXREC_ISA_NS=avx512"],
    "avx2": ["-march=x86-64-v3", "-DXREC_ISA_NS=avx2"],
    "scalar": ["-march=x86-64", "-DXREC_ISA_NS=scalar"],
}
ISA_NEEDS = {"avx512": {"avx512f", "avx512bw", "avx512vl", "avx512dq"}, "avx2": {"avx2", "fma", "f16c"},
             "scalar": set()}
BASE_FLAGS = ["-std=c++17", "-O3", "-Wall", "-Wextra", "-Werror", f"-I{KERNEL_DIR}"]


def _cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


CPU_FLAGS = _cpu_flags()


def isa_supported(isa: str) -> bool:
    return ISA_NEEDS[isa] <= CPU_FLAGS


def _kernel_sources_digest() -> str:
    h = hashlib.sha256()
    for p in sorted(KERNEL_DIR.glob("*.h")):
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def compile_cpp(sources: list[Path], flags: list[str], kind: str = "shared") -> Path:
    """g++ ``sources`` with ``flags`` into a cached .so (kind='shared'), object file
    (kind='object') or executable (kind='exe')."""
    if shutil.which("g++") is None:
        pytest.fail("g++ not found: the cpu kernel tests need g++ (C++17) on PATH")
    h = hashlib.sha256()
    h.update(_kernel_sources_digest().encode())
    for s in sources:
        h.update(Path(s).read_bytes())
    h.update(" ".join(flags + [kind]).encode())
    CACHE.mkdir(parents=True, exist_ok=True)
    out = CACHE / (h.hexdigest()[:24] + {"shared": ".so", "object": ".o", "exe": ".exe"}[kind])
    if out.exists():
        return out
    tmp = out.with_suffix(f".tmp{os.getpid()}")
    cmd = ["g++", *BASE_FLAGS, *flags, *{"shared": ["-shared", "-fPIC"], "object": ["-c"], "exe": []}[kind],
           *map(str, sources), "-o", str(tmp)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        pytest.fail(f"compiling {[Path(s).name for s in sources]} failed:\n{' '.join(cmd)}\n{r.stderr}")
    os.replace(tmp, out)
    return out


_LIBS: dict[tuple[str, str], ctypes.CDLL] = {}


def load_driver(name: str, isa: str) -> ctypes.CDLL:
    """The ctypes library of drivers/<name>_driver.cpp built for ``isa``."""
    if not isa_supported(isa):
        pytest.skip(f"this CPU lacks {sorted(ISA_NEEDS[isa] - CPU_FLAGS)} needed by the {isa} build")
    key = (name, isa)
    if key not in _LIBS:
        path = compile_cpp([DRIVERS / f"{name}_driver.cpp"], ISA_FLAGS[isa])
        _LIBS[key] = ctypes.CDLL(str(path))
    return _LIBS[key]


@pytest.fixture(params=list(ISA_FLAGS), scope="module")
def isa(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def linear_lib(isa) -> ctypes.CDLL:
    return load_driver("linear", isa)


@pytest.fixture(scope="module")
def bag_lib(isa) -> ctypes.CDLL:
    return load_driver("bag", isa)


@pytest.fixture(scope="module")
def interaction_lib(isa) -> ctypes.CDLL:
    return load_driver("interaction", isa)


@pytest.fixture(scope="session")
def cpp_build():
    """Namespace with compile_cpp, ISA_FLAGS, DRIVERS and isa_supported for custom builds."""
    class _B:
        pass
    b = _B()
    b.compile = staticmethod(compile_cpp)
    b.ISA_FLAGS = ISA_FLAGS
    b.DRIVERS = DRIVERS
    b.isa_supported = staticmethod(isa_supported)
    return b
