"""Ahead-of-time compilation of a program's kernels to cubin (and PTX), without a GPU.

Every (kernel, tile variant) of the program is compiled for each SM version
with ``triton.compile(ASTSource(...), target=GPUTarget("cuda", sm, 32))``.
The work runs in a child process (``python -m xrec.targets.triton.aot``):
Triton fixes interpreter-vs-GPU mode when kernels are decorated, and the
building process may well be running the same kernels in the interpreter.

Outputs, under the artifact: ``lib/<kernel>.<key>.sm_<N>.cubin`` (and ``.ptx``
for the lowest SM, which the CUDA driver can JIT for newer GPUs), and
``lib/kernels.json``: per compiled kernel its argument signature, constexprs,
launch facts (warps, shared memory) and resource usage per SM from the cubin
(``cuobjdump --dump-resource-usage``: registers, stack, local memory = spills).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from .program import Launch, Program

_PTR_TYPES = {"f32": "*fp32", "f16": "*fp16", "i64": "*i64", "i32": "*i32", "u8": "*u8", "i16": "*i16",
              "i8": "*i8", "f64": "*fp64", "bool": "*i1"}


def kernel_specs(prog: Program) -> list[dict]:
    """The distinct compilations the program needs: one per (kernel, signature, tile variant)."""
    specs: dict[str, dict] = {}
    for s in prog.launches():
        sig = {a.name: (_PTR_TYPES[a.view.dtype] if a.kind == "ptr" else "i32") for a in s.args}
        for v in s.variants:
            spec = {"kernel": s.kernel, "signature": sig, "constexprs": v.constexprs, "num_warps": v.num_warps,
                    "num_stages": v.num_stages}
            key = spec_key(spec)
            specs.setdefault(key, {**spec, "key": key})
    return list(specs.values())


def spec_key(spec: dict) -> str:
    text = json.dumps([spec["kernel"], spec["signature"], spec["constexprs"], spec["num_warps"],
                       spec["num_stages"]], sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:10]


def launch_keys(s: Launch) -> list[str]:
    """The spec key of each GPU variant of a launch (same order as ``s.variants``)."""
    sig = {a.name: (_PTR_TYPES[a.view.dtype] if a.kind == "ptr" else "i32") for a in s.args}
    return [spec_key({"kernel": s.kernel, "signature": sig, "constexprs": v.constexprs, "num_warps": v.num_warps,
                      "num_stages": v.num_stages}) for v in s.variants]


def nvidia_bin(tool: str) -> Path:
    import triton
    return Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / tool


def cuda_include() -> Path:
    import triton
    return Path(triton.__file__).parent / "backends" / "nvidia" / "include"


def resource_usage(cubin: Path) -> dict:
    """Registers, stack, shared and local (spill) bytes of the kernel in ``cubin`` (cuobjdump)."""
    out = subprocess.run([str(nvidia_bin("cuobjdump")), "--dump-resource-usage", str(cubin)],
                         capture_output=True, text=True, check=True).stdout
    m = re.search(r"REG:(\d+)\s+STACK:(\d+)\s+SHARED:(\d+)\s+LOCAL:(\d+)", out)
    if not m:
        raise RuntimeError(f"cuobjdump gave no resource usage for {cubin}:\n{out}")
    regs, stack, shared, local = (int(x) for x in m.groups())
    return {"registers": regs, "stack_bytes": stack, "static_shared_bytes": shared, "local_bytes": local}


def compile_program(artifact_dir: Path, prog: Program, archs: list[int], workers: int | None = None) -> list[dict]:
    """Compile every kernel of ``prog`` for ``archs`` in a child process; return the kernels.json entries."""
    artifact_dir = Path(artifact_dir)
    specs = kernel_specs(prog)
    job = artifact_dir / "lib" / "aot_job.json"
    job.write_text(json.dumps({"kernels_file": str(artifact_dir / "src" / prog.kernels_file), "specs": specs,
                               "archs": list(archs)}))
    env = dict(os.environ)
    env.pop("TRITON_INTERPRET", None)
    env.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
    cmd = [sys.executable, "-m", "xrec.targets.triton.aot", str(artifact_dir), "--workers",
           str(workers or min(2, os.cpu_count() or 1))]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    job.unlink()
    if r.returncode != 0:
        raise RuntimeError(f"triton AOT compilation failed (exit {r.returncode}):\n{r.stderr[-4000:]}")
    return json.loads((artifact_dir / "lib" / "kernels.json").read_text())


# ---------------------------------------------------------------------------------------- child process
def _compile_one(args) -> dict:
    kernels_file, spec, archs, lib = args
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from xrec.targets.triton.loader import load_kernels

    mod = load_kernels(kernels_file, interpret=False)
    fn = getattr(mod, spec["kernel"])
    sig = dict(spec["signature"])
    for k in spec["constexprs"]:
        sig[k] = "constexpr"
    out = {k: spec[k] for k in ("kernel", "key", "signature", "constexprs", "num_warps", "num_stages")}
    out["params"] = [n for n in fn.arg_names if n not in spec["constexprs"]]
    out["archs"] = {}
    for sm in archs:
        t0 = time.perf_counter()
        src = ASTSource(fn=fn, signature=sig, constexprs=dict(spec["constexprs"]))
        ck = triton.compile(src, target=GPUTarget("cuda", sm, 32),
                            options={"num_warps": spec["num_warps"], "num_stages": spec["num_stages"]})
        md = ck.metadata
        if getattr(md, "global_scratch_size", 0) or getattr(md, "profile_scratch_size", 0):
            raise RuntimeError(f"{spec['kernel']}: needs global scratch memory, which the C launcher does not provide")
        base = f"{spec['kernel']}.{spec['key']}.sm_{sm}"
        cubin = lib / f"{base}.cubin"
        cubin.write_bytes(ck.asm["cubin"])
        entry = {"cubin": f"lib/{cubin.name}", "symbol": md.name, "shared_bytes": int(md.shared),
                 "num_warps": int(md.num_warps), "compile_s": round(time.perf_counter() - t0, 3),
                 **resource_usage(cubin)}
        if sm == min(archs):
            ptx = lib / f"{base}.ptx"
            ptx.write_text(ck.asm["ptx"])
            entry["ptx"] = f"lib/{ptx.name}"
        out["archs"][f"sm_{sm}"] = entry
    return out


def main(argv=None) -> int:
    import argparse
    from concurrent.futures import ProcessPoolExecutor

    p = argparse.ArgumentParser(description="compile an artifact's Triton kernels to cubin (child of xrec build)")
    p.add_argument("artifact")
    p.add_argument("--workers", type=int, default=1)
    a = p.parse_args(argv)
    lib = Path(a.artifact) / "lib"
    job = json.loads((lib / "aot_job.json").read_text())
    tasks = [(job["kernels_file"], s, job["archs"], lib) for s in job["specs"]]
    if a.workers > 1 and len(tasks) > 1:
        with ProcessPoolExecutor(a.workers) as ex:
            results = list(ex.map(_compile_one, tasks))
    else:
        results = [_compile_one(t) for t in tasks]
    (lib / "kernels.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
