"""Build and run the C simulation of the generated kernel with g++.

    g++ -std=c++17 -O2 -ffp-contract=off -Wno-unknown-pragmas -DXREC_CSIM_COUNTERS
        -I<xrec._hls/sim> -I<ap_types> -I<src> kernel.cpp tb.cpp -o csim

(``-ffp-contract=off``: no fused multiply-adds, so sums round like PyTorch's.)
Binaries are cached under ``<cache_dir>/hls_csim/<sha256 of sources, flags,
compiler and headers>`` so rebuilding an unchanged kernel costs nothing.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from xrec.config import knobs

from .headers import ap_types_dir, shim_dir

CXXFLAGS = ["-std=c++17", "-O2", "-ffp-contract=off", "-Wno-unknown-pragmas", "-DXREC_CSIM_COUNTERS"]


class CSimError(RuntimeError):
    """The C simulation failed to build or to run (deadlock, out-of-range id, crash)."""


def _compiler_id(cxx: str) -> str:
    try:
        return subprocess.run([cxx, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired) as e:
        raise CSimError(f"C++ compiler {cxx!r} does not run ({e}); install g++ or set CXX") from None


def _dir_digest(p: Path, h) -> None:
    for f in sorted(p.rglob("*")):
        if f.is_file():
            st = f.stat()
            h.update(f"{f.relative_to(p)}:{st.st_size}:{int(st.st_mtime)}\n".encode())


PCH_HEADER = "#include <ap_int.h>\n#include <hls_stream.h>\n#include <stdint.h>\n#include <string.h>\n#include <math.h>\n"


def _pch(cxx: str, shim: Path, ap: Path, key: str) -> list[str]:
    """Flags using a precompiled ap_int.h/hls_stream.h (halves each compile); built once per key."""
    d = Path(knobs.cache_dir) / "hls_csim" / f"pch-{key}"
    gch = d / "xrec_hls_pch.h.gch"
    if not gch.is_file():
        d.mkdir(parents=True, exist_ok=True)
        (d / "xrec_hls_pch.h").write_text(PCH_HEADER)
        tmp = d / f"xrec_hls_pch.h.gch.{os.getpid()}"
        r = subprocess.run([cxx, *CXXFLAGS, f"-I{shim}", f"-I{ap}", "-x", "c++-header", str(d / "xrec_hls_pch.h"),
                            "-o", str(tmp)], capture_output=True, text=True)
        if r.returncode != 0:
            tmp.unlink(missing_ok=True)
            return []          # compile without it
        os.replace(tmp, gch)
    return [f"-I{d}", "-include", "xrec_hls_pch.h"]


def build_csim(sources: dict[str, str], out: Path, include_dir: str | None = None) -> dict:
    """Compile ``sources`` ({file name: text}; .cpp files are compiled) into the binary ``out``.

    Returns {"cached": bool, "key": sha, "command": [...]}.
    """
    cxx = knobs.cxx
    ap = ap_types_dir(include_dir)
    shim = shim_dir()
    h = hashlib.sha256()
    h.update(" ".join(CXXFLAGS).encode())
    h.update(_compiler_id(cxx).encode())
    h.update(str(ap).encode())
    _dir_digest(ap, h)
    _dir_digest(shim, h)
    base_key = h.hexdigest()
    for name in sorted(sources):
        h.update(name.encode() + b"\0" + sources[name].encode() + b"\0")
    key = h.hexdigest()
    cache = Path(knobs.cache_dir) / "hls_csim" / key
    binary = cache / "csim"
    cmd_show = [cxx, *CXXFLAGS, f"-I{shim}", f"-I{ap}", "-I.",
                *sorted(n for n in sources if n.endswith(".cpp")), "-o", "csim"]
    cached = binary.is_file()
    if not cached:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix="build-", dir=cache.parent))
        try:
            for name, text in sources.items():
                (tmp / name).write_text(text)
            cpps = sorted(n for n in sources if n.endswith(".cpp"))
            pch = _pch(cxx, shim, ap, base_key[:16])

            def compile_one(name):
                cmd = [cxx, *CXXFLAGS, *pch, f"-I{shim}", f"-I{ap}", f"-I{tmp}", "-c", str(tmp / name),
                       "-o", str(tmp / (name + ".o"))]
                return name, subprocess.run(cmd, capture_output=True, text=True)

            with ThreadPoolExecutor(max_workers=min(len(cpps), os.cpu_count() or 1)) as ex:
                results = list(ex.map(compile_one, cpps))
            for name, r in results:
                if r.returncode != 0:
                    raise CSimError(f"g++ failed on generated {name} (this is an xrec bug; please report it "
                                    f"with the model):\n{r.stderr[-4000:]}")
            r = subprocess.run([cxx, *[str(tmp / (n + ".o")) for n in cpps], "-o", str(tmp / "csim")],
                               capture_output=True, text=True)
            if r.returncode != 0:
                raise CSimError(f"linking the C simulation failed:\n{r.stderr[-4000:]}")
            tmp_final = tmp / "final"
            tmp_final.mkdir()
            shutil.move(str(tmp / "csim"), tmp_final / "csim")
            try:
                os.replace(tmp_final, cache)     # atomic publish; a concurrent builder may have won
            except OSError:
                pass
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(binary, out)
    return {"cached": cached, "key": key, "command": cmd_show}


def run_csim(binary: Path, artifact_dir: Path, io_dir: Path, timeout_s: float = 600) -> str:
    """Run the C simulation on the inputs in ``io_dir``; raise CSimError with its message on failure."""
    try:
        r = subprocess.run([str(binary), str(artifact_dir), str(io_dir)], capture_output=True, text=True,
                           timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise CSimError(f"C simulation did not finish within {timeout_s:.0f} s ({binary}); "
                        "raise the hls option csim_timeout_s for very large batches") from None
    if r.returncode != 0:
        msg = (r.stderr.strip() or r.stdout.strip())[-3000:]
        raise CSimError(f"C simulation failed (exit {r.returncode}): {msg}")
    return r.stdout
