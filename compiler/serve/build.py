"""Build the C++ server (csrc/server, CMake) once per source hash, under ``knobs.cache_dir/serve/``."""
from __future__ import annotations

import fcntl
import hashlib
import os
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

EXE = "xrec-server"


class ServeBuildError(RuntimeError):
    """The server could not be built (no cmake / compiler / libraries, or a compile error)."""


def csrc_dir() -> Path:
    """csrc/ (the package data xrec._csrc): the runtime sources and csrc/server."""
    try:
        import xrec._csrc as pkg
        for p in getattr(pkg, "__path__", []):
            if (Path(p) / "server" / "CMakeLists.txt").is_file():
                return Path(p)
    except ImportError:
        pass
    p = Path(__file__).resolve().parents[2] / "csrc"
    if (p / "server" / "CMakeLists.txt").is_file():
        return p
    raise ServeBuildError("cannot find the server sources (csrc/server of xrec, package data xrec._csrc)")


def source_files() -> list[Path]:
    """Every file the server build reads from xrec (its hash names the cached build)."""
    c = csrc_dir()
    files = sorted(p for p in (c / "server").iterdir() if p.is_file() and p.suffix in (".cpp", ".h", ".txt"))
    return files + [c / "xrec_runtime.cpp", c / "xrec_runtime.h", c / "xrec_model.h", c / "xrec_json.h"]


def _tool(name: str) -> str:
    path = shutil.which(name)
    if not path:
        raise ServeBuildError(f"`xrec serve` builds the server with {name}, which is not on PATH; install it "
                              f"(apt-get install cmake pkg-config g++ libcpp-httplib-dev nlohmann-json3-dev, "
                              f"or run scripts/setup.sh)")
    return path


def _version(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd + ["--version"], capture_output=True, text=True, timeout=60)
        return (out.stdout or out.stderr).splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return cmd[0]


def build_key() -> str:
    from xrec.config import knobs
    cmake = _tool("cmake")
    cxx = shlex.split(knobs.cxx or "g++")
    h = hashlib.sha256()
    for part in (_version([cmake]), " ".join(cxx), _version(cxx)):
        h.update(part.encode() + b"\0")
    for p in source_files():
        h.update(p.name.encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()[:24]


def server_binary(jobs: int | None = None) -> Path:
    """The path of the built server, building it first when this source hash has no build yet."""
    from xrec.config import knobs
    from xrec.progress import step
    root = Path(knobs.cache_dir) / "serve"
    root.mkdir(parents=True, exist_ok=True)
    key = build_key()
    exe = root / key / EXE
    if exe.is_file():
        return exe
    with open(root / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)      # a concurrent `xrec serve` / test waits for this build
        if exe.is_file():
            return exe
        cmake = _tool("cmake")
        cxx = shlex.split(knobs.cxx or "g++")
        build = Path(tempfile.mkdtemp(prefix=f"{key}.build-", dir=root))
        configure = [cmake, "-S", str(csrc_dir() / "server"), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release"]
        if len(cxx) == 1 and shutil.which(cxx[0]):
            configure.append(f"-DCMAKE_CXX_COMPILER={shutil.which(cxx[0])}")
        compile_ = [cmake, "--build", str(build), "-j", str(jobs or os.cpu_count() or 2)]
        try:
            with step("build the inference server (cmake, once per source hash)"):
                for cmd in (configure, compile_):
                    out = subprocess.run(cmd, capture_output=True, text=True)
                    if out.returncode != 0:
                        raise ServeBuildError(f"building the server failed: {' '.join(cmd)}\n"
                                              f"{(out.stdout + out.stderr)[-6000:]}")
            exe.parent.mkdir(parents=True, exist_ok=True)
            tmp = exe.with_suffix(".tmp")
            shutil.copy2(build / EXE, tmp)
            os.replace(tmp, exe)
        finally:
            shutil.rmtree(build, ignore_errors=True)
    return exe
