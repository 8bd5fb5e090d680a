"""Compile the generated C++ with the system compiler, cached by content hash.

One shared library per ISA (``lib/xrec_model_<isa>.so``) plus the dispatcher
(``lib/libxrec_model.so``, the C ABI). A library is cached under
``knobs.cache_dir/cpu/<hash>/`` keyed by the compiler's version, the flags and
every source file's content, so rebuilding an unchanged model copies files.
"""
from __future__ import annotations

import functools
import hashlib
import os
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

from xrec.config import knobs

COMMON = ["-std=c++17", "-O3", "-fPIC", "-shared", "-fopenmp", "-fno-math-errno", "-ffp-contract=fast",
          "-fvisibility=hidden", "-fno-plt"]
ISA_FLAGS = {
    "avx512": ["-march=x86-64-v4", "-mtune=generic", "-mprefer-vector-width=512"],
    "avx2": ["-march=x86-64-v3", "-mtune=generic"],
    "scalar": ["-march=x86-64", "-mtune=generic"],
}
DISPATCH_FLAGS = ["-std=c++17", "-O2", "-fPIC", "-shared", "-march=x86-64"]


class CompilerError(RuntimeError):
    """No usable C++ compiler, or the generated code did not compile."""


def compiler() -> list[str]:
    """The C++ compiler command (knobs.cxx, env CXX), or a clear error."""
    cmd = shlex.split(knobs.cxx or "g++")
    if not cmd or shutil.which(cmd[0]) is None:
        raise CompilerError(f"no C++ compiler: {knobs.cxx!r} (knob cxx, env CXX) is not on PATH; install g++ "
                            "(apt-get install g++) or point CXX at a C++17 compiler with OpenMP")
    return cmd


@functools.lru_cache(maxsize=None)
def _compiler_version(cmd: tuple) -> str:
    try:
        out = subprocess.run(list(cmd) + ["--version"], capture_output=True, text=True, timeout=30)
    except OSError as e:
        raise CompilerError(f"cannot run {cmd[0]}: {e}") from None
    return (out.stdout or out.stderr).splitlines()[0] if (out.stdout or out.stderr) else cmd[0]


def compiler_version() -> str:
    return _compiler_version(tuple(compiler()))


def cache_root() -> Path:
    p = Path(knobs.cache_dir) / "cpu"
    p.mkdir(parents=True, exist_ok=True)
    return p


def _key(parts: list) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p if isinstance(p, bytes) else str(p).encode())
        h.update(b"\0")
    return h.hexdigest()[:32]


class Job:
    """One compiler invocation producing ``out`` from sources in ``src_dir``."""

    def __init__(self, name: str, flags: list[str], sources: list[str], src_dir: Path, out: Path,
                 libs: list[str] = ()):
        self.name, self.flags, self.sources, self.src_dir, self.out = name, flags, sources, src_dir, out
        self.libs = list(libs)
        cmd = compiler()
        files = sorted(p for p in src_dir.iterdir() if p.is_file())
        self.key = _key([compiler_version(), " ".join(cmd), " ".join(flags), " ".join(sources), " ".join(self.libs)]
                        + [p.name.encode() + b"\0" + p.read_bytes() for p in files])
        self.cached = cache_root() / self.key / out.name
        self.proc = None
        self.tmp = None

    def command(self, out: str, src_prefix: str = "") -> list[str]:
        return compiler() + self.flags + [f"-I{src_prefix or '.'}"] + \
            [os.path.join(src_prefix, s) if src_prefix else s for s in self.sources] + ["-o", out] + self.libs

    def start(self):
        if self.cached.is_file():
            return
        self.cached.parent.mkdir(parents=True, exist_ok=True)
        fd, self.tmp = tempfile.mkstemp(dir=self.cached.parent, suffix=".so.tmp")
        os.close(fd)
        self.proc = subprocess.Popen(self.command(self.tmp, str(self.src_dir)), stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)

    def finish(self):
        if self.proc is not None:
            out, _ = self.proc.communicate()
            if self.proc.returncode != 0:
                os.unlink(self.tmp)
                raise CompilerError(f"compiling {self.name} failed ({' '.join(self.command(self.out.name))}):\n"
                                    f"{out[-6000:]}")
            os.replace(self.tmp, self.cached)
        shutil.copyfile(self.cached, self.out)


def run_jobs(jobs: list[Job]) -> None:
    """Start every compile at once (cached ones copy), then wait for all."""
    for j in jobs:
        j.start()
    errors = []
    for j in jobs:
        try:
            j.finish()
        except CompilerError as e:
            errors.append(str(e))
    if errors:
        raise CompilerError("\n".join(errors))


def isa_job(isa: str, src_dir: Path, lib_dir: Path, fingerprint: str) -> Job:
    flags = COMMON + ISA_FLAGS[isa] + [f"-DXREC_ISA_NS={isa}", f'-DXREC_FINGERPRINT="{fingerprint}"']
    return Job(f"the {isa} build", flags, ["model.cpp"], src_dir, lib_dir / f"xrec_model_{isa}.so")


def dispatch_job(src_dir: Path, lib_dir: Path, format_version: int) -> Job:
    flags = DISPATCH_FLAGS + [f"-DXREC_FORMAT_VERSION={format_version}"]
    return Job("the dispatcher", flags, ["xrec_dispatch.cpp"], src_dir, lib_dir / "libxrec_model.so", ["-ldl"])


def build_script(jobs: list[Job]) -> str:
    """src/build.sh: the exact commands, runnable from the artifact directory."""
    lines = ["#!/bin/sh", "# How lib/ was built from src/ (run from the artifact directory).", "set -e"]
    for j in jobs:
        lines.append(" ".join(shlex.quote(a) for a in j.command(f"lib/{j.out.name}", "src")))
    return "\n".join(lines) + "\n"
