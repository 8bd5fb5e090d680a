"""The cpu target: readable C++17 for the whole model, built per ISA, loaded through a C ABI.

    lower.py     optimized IR -> Program (kernel calls, fused loops, buffer plan)   plan.py: its records;
                 the driver of the planning steps fold.py, inline.py, signature.py, concat.py, rules/ (one
                 rule per Op, in xrec.lowering's registry), arena.py, on one context.py LowerContext
    codegen.py   Program -> src/model.cpp (C++ dialect of targets/cstyle.py)
    build.py     system C++ compiler, one .so per ISA + the C ABI dispatcher, cached by content hash
    weights.py   weights.bin: Linear weights packed at compile time by the kernels' pack_linear
    binding.py   Python -> C (ctypes for control, a tiny extension for the per-call path)
    isa.py       CPU feature detection (avx512 / avx2 / scalar)
    kernels/cpu/ (xrec.kernels) holds every model-independent C++ file copied into src/: the kernels, their
                 out-of-line entry points (compiled once per ISA and cached), xrec_gen.h (run-time helpers)

Options (options.py, ``xrec targets --options cpu``): ``isa`` (auto = all three builds, or e.g. "avx2" /
"avx2,scalar") and ``bounds_check`` (default knobs.bounds_check).
"""
from __future__ import annotations

import hashlib
import shutil

from .. import Capabilities, Target, register_target
from . import isa as isa_mod
from .options import CpuOptions
from .plan import TILE_MAX

RUNTIME_FILES = ("xrec_model.h", "xrec_impl.h", "xrec_json.h", "xrec_dispatch.cpp")


class CpuTarget(Target):
    name = "cpu"
    description = "C++17 + OpenMP for AVX-512 / AVX2 / scalar CPUs, C ABI (system C++ compiler)"
    tolerances = {"rtol": 1e-4, "atol": 1e-6}
    Options = CpuOptions

    def available(self) -> tuple[bool, str]:
        if not isa_mod.is_x86_64():
            return False, "the cpu target emits x86-64 code (AVX-512 / AVX2 / baseline)"
        from .build import CompilerError, compiler
        try:
            compiler()
        except CompilerError as e:
            return False, str(e)
        return True, ""

    def capabilities(self, options: dict) -> Capabilities:
        best = isa_mod.best_isa()
        return Capabilities(vector_width=isa_mod.VECTOR_WIDTH[best], memory_channels=1, supports_int4=True,
                            supports_fp16=True, supports_pruning=True,
                            checks_inputs=bool((options or {}).get("bounds_check", True)))

    # ------------------------------------------------------------ build
    def build(self, graph, options: dict, writer) -> None:
        from xrec.artifact import FORMAT_VERSION
        from xrec.kernels import cpu_include_dir
        from xrec.progress import step

        from . import build as B
        from .binding import csrc_dir
        from .codegen import generate
        from .lower import lower
        from .weights import checksum64, pack_weights

        options = self.parse_options(options)
        isas = isa_mod.parse_isa_list(options["isa"])
        with step("lower to C++"):
            prog, extra = lower(graph, bounds_check=options["bounds_check"])
            source = generate(prog)
        src, lib = writer.path / "src", writer.path / "lib"
        (src / "model.cpp").write_text(source)
        kdir = cpu_include_dir()
        for p in sorted(kdir.rglob("*")):
            if p.is_file() and p.suffix in B.KERNEL_SUFFIXES:
                dst = src / p.relative_to(kdir)
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(p, dst)
        for name in RUNTIME_FILES:
            shutil.copyfile(csrc_dir() / name, src / name)
        shutil.copyfile(csrc_dir() / "xrec_model.h", writer.path / "include" / "xrec_model.h")

        h = hashlib.sha256()
        for p in sorted(src.iterdir()):
            if p.name not in ("xrec_dispatch.cpp", "xrec_json.h"):
                h.update(p.name.encode() + b"\0" + p.read_bytes())
        fingerprint = h.hexdigest()[:24]
        jobs = [B.isa_job(i, src, lib, fingerprint) for i in isas] + \
            [B.dispatch_job(src, lib, FORMAT_VERSION)]
        with step(f"compile C++ ({', '.join(isas)})"):
            B.run_jobs(B.all_jobs(jobs))
        (src / "build.sh").write_text(B.build_script(jobs))

        with step("pack and write weights"):
            runnable = [i for i in isas if isa_mod.supported(i)]
            if runnable:
                packer = lib / f"xrec_model_{runnable[0]}.so"
            else:   # cross-build for a better CPU: pack with a scalar build kept out of the artifact
                tmp = B.cache_root() / "packers"
                tmp.mkdir(parents=True, exist_ok=True)
                job = B.isa_job("scalar", src, tmp, fingerprint)
                B.run_jobs(B.all_jobs([job]))
                packer = job.out
            arrays = {**graph.params, **extra}
            packed = pack_weights(prog, arrays, packer)
            writer.graph = graph.with_(params={**arrays, **packed})
            writer.write_weights(list(graph.params) + list(extra) + list(packed))
            checksum = checksum64(writer.path / "weights.bin")
        writer.target_info.update({
            "options": options.as_dict(),
            "isas": list(isas),
            "fingerprint": fingerprint,
            "weights_checksum64": str(checksum),
            "compiler": B.compiler_version(),
            "flags": {i: " ".join(B.COMMON + B.ISA_FLAGS[i]) for i in isas},
            "libs": {i: f"lib/xrec_model_{i}.so" for i in isas},
            "abi": {"library": "lib/libxrec_model.so", "header": "include/xrec_model.h"},
            "tile_rows": TILE_MAX,
            "arena_bytes_per_thread": prog.arena_bytes,
            "bounds_check": options["bounds_check"],
        })

    # ------------------------------------------------------------ load
    def load(self, artifact, options: dict):
        from .binding import CpuModel
        # open_artifact already verified every checksum (sha256) in Python
        return CpuModel(artifact.path, verify_weights=False)


register_target(CpuTarget())
