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
    """One compiler invocation producing ``name_out`` from sources in ``src_dir``, cached by content.

    ``sources`` are file names in ``src_dir`` or other Jobs (their cached outputs, e.g. objects);
    ``hash_files`` are the files whose content keys the cache (default: all of ``src_dir``);
    ``out`` is where the result is copied (None: it stays in the cache, e.g. an object file).
    """

    def __init__(self, name: str, flags: list[str], sources: list, src_dir: Path, out_name: str,
                 out: Path | None = None, libs: list[str] = (), hash_files: list[Path] | None = None):
        self.name, self.flags, self.sources, self.src_dir, self.out = name, flags, sources, src_dir, out
        self.out_name = out_name
        self.libs = list(libs)
        cmd = compiler()
        files = sorted(hash_files if hash_files is not None else (p for p in src_dir.iterdir() if p.is_file()))
        deps = [s.key for s in sources if isinstance(s, Job)]
        names = [s for s in sources if isinstance(s, str)]
        self.key = _key([compiler_version(), " ".join(cmd), " ".join(flags), " ".join(names), " ".join(self.libs)]
                        + deps + [p.name.encode() + b"\0" + p.read_bytes() for p in files])
        self.cached = cache_root() / self.key / out_name
        self.proc = None
        self.tmp = None

    def command(self, out: str, src_prefix: str = "", script: bool = False) -> list[str]:
        srcs = []
        for s in self.sources:
            if isinstance(s, Job):
                srcs.append(f"build/{s.out_name}" if script else str(s.cached))
            else:
                srcs.append(os.path.join(src_prefix, s) if src_prefix else s)
        return compiler() + self.flags + [f"-I{src_prefix or '.'}"] + srcs + ["-o", out] + self.libs

    def start(self):
        if self.cached.is_file():
            return
        self.cached.parent.mkdir(parents=True, exist_ok=True)
        fd, self.tmp = tempfile.mkstemp(dir=self.cached.parent, suffix=".tmp")
        os.close(fd)
        self.proc = subprocess.Popen(self.command(self.tmp, str(self.src_dir)), stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)

    def finish(self):
        if self.proc is not None:
            out, _ = self.proc.communicate()
            if self.proc.returncode != 0:
                os.unlink(self.tmp)
                raise CompilerError(f"compiling {self.name} failed ({' '.join(self.command(self.out_name))}):\n"
                                    f"{out[-6000:]}")
            os.replace(self.tmp, self.cached)
            self.proc = None
        if self.out is not None:
            shutil.copyfile(self.cached, self.out)


def run_jobs(jobs: list[Job]) -> None:
    """Start every compile whose inputs are ready (cached ones copy), then wait; repeat until done."""
    pending = list(jobs)
    errors = []
    while pending:
        ready = [j for j in pending if all(not isinstance(s, Job) or s.cached.is_file() for s in j.sources)]
        if not ready:
            break
        for j in ready:
            j.start()
        for j in ready:
            try:
                j.finish()
            except CompilerError as e:
                errors.append(str(e))
        pending = [j for j in pending if j not in ready]
        if errors:
            break
    if errors:
        raise CompilerError("\n".join(errors))


KERNEL_SUFFIXES = (".h", ".hpp", ".inc", ".cpp")
MODEL_RUNTIME_HEADER = "xrec_gen.h"     # in kernels/cpu, but compiled with each model, not into the kernel object


def kernel_object_job(isa: str, src_dir: Path) -> Job:
    """The kernels compiled once for ``isa``: keyed by the files of kernels/cpu only (as copied into
    ``src_dir``) and the flags, so every model (and any change outside kernels/cpu) reuses the object."""
    from xrec.kernels import cpu_include_dir
    names = {p.name for p in cpu_include_dir().iterdir() if p.suffix in KERNEL_SUFFIXES} - {MODEL_RUNTIME_HEADER}
    files = [p for p in src_dir.iterdir() if p.name in names]
    flags = [f for f in COMMON if f != "-shared"] + ["-c"] + ISA_FLAGS[isa] + [f"-DXREC_ISA_NS={isa}"]
    return Job(f"the {isa} kernels", flags, ["xrec_kernel_entry.cpp"], src_dir, f"kernels_{isa}.o",
               hash_files=files)


def isa_job(isa: str, src_dir: Path, lib_dir: Path, fingerprint: str) -> Job:
    flags = COMMON + ISA_FLAGS[isa] + [f"-DXREC_ISA_NS={isa}", f'-DXREC_FINGERPRINT="{fingerprint}"']
    return Job(f"the {isa} build", flags, ["model.cpp", kernel_object_job(isa, src_dir)], src_dir,
               f"xrec_model_{isa}.so", out=lib_dir / f"xrec_model_{isa}.so")


def dispatch_job(src_dir: Path, lib_dir: Path, format_version: int) -> Job:
    flags = DISPATCH_FLAGS + [f"-DXREC_FORMAT_VERSION={format_version}"]
    files = [src_dir / n for n in ("xrec_dispatch.cpp", "xrec_model.h", "xrec_impl.h", "xrec_json.h")]
    return Job("the dispatcher", flags, ["xrec_dispatch.cpp"], src_dir, "libxrec_model.so",
               out=lib_dir / "libxrec_model.so", libs=["-ldl"], hash_files=files)


def all_jobs(jobs: list[Job]) -> list[Job]:
    """``jobs`` and the jobs they depend on, dependencies first."""
    out: list[Job] = []
    for j in jobs:
        for s in j.sources:
            if isinstance(s, Job) and s not in out:
                out.append(s)
        out.append(j)
    return out


def build_script(jobs: list[Job]) -> str:
    """src/build.sh: the exact commands, runnable from the artifact directory."""
    lines = ["#!/bin/sh", "# How lib/ was built from src/ (run from the artifact directory).", "set -e",
             "mkdir -p build"]
    for j in all_jobs(jobs):
        out = f"lib/{j.out.name}" if j.out is not None else f"build/{j.out_name}"
        lines.append(" ".join(shlex.quote(a) for a in j.command(out, "src", script=True)))
    return "\n".join(lines) + "\n"
