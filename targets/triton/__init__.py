"""The triton target: generated Triton GPU kernels, AOT cubin for sm_80/sm_90, and a C launcher.

    cm = xrec.compile(model, example_inputs, target="triton")
    cm(*inputs)                      # GPU if torch sees one, else Triton's CPU interpreter

What it builds (``build``), into the artifact:

* ``src/program.json``: the lowered model, an ordered list of kernel launches
  (embedding bags over every table in one launch, fused linear layers, the DLRM
  interaction fused with its concat, DCN cross layers, FM, fused elementwise
  clusters) and the few torch steps for ops without a kernel;
* ``src/xrec_triton_kernels.py``: the kernel templates plus the kernels
  generated for this model (all constexpr-specialised at launch);
* ``lib/<kernel>.<cfg>.sm80.cubin`` / ``.sm90.cubin`` (+ PTX), compiled ahead of
  time without a GPU, with registers / shared memory / spills in the manifest;
* ``src/xrec_model_cuda.c`` + ``include/xrec_model.h``: a C launcher per kernel
  and the model-level C ABI (``xrec_model_load/run/free``, ``xrec_last_error``)
  over the CUDA driver API, loaded at run time with dlopen (no -lcuda needed).

Options (``xrec.compile(..., options={...})``):
  mode          auto | gpu | interpret   where ``load`` runs the kernels (auto: GPU if present)
  precision     tf32x3 | ieee | tf32     fp32 tl.dot products. tf32x3 (the default): three TF32
                                         tensor-core passes (hi*hi + hi*lo + lo*hi), fp32-level error
                                         (on an H200 every zoo model matched PyTorch's fp32 as closely
                                         as ieee did) at 2.3-3.7x ieee's speed on dlrm-v2; ieee: exact
                                         fp32 products on the FMA units; tf32: one pass, ~1e-3
                                         relative, looser than the target's tolerance. The
                                         interpreter computes fp32 either way
  bounds_check  bool                     kernels record out-of-range ids / bad offsets (default: knob)
  aot           bool                     compile cubins + C launcher at build (default True)
  archs         list of int              SM versions for the cubins (default [80, 90])
  cuda_graphs   bool                     on a GPU, replay the whole program as one CUDA graph per batch
                                         size (captured on first use; ids and offsets of any length
                                         reach the kernels through pointer tables, so id counts do not
                                         re-capture); default True
"""
from __future__ import annotations

from .. import Capabilities, Target, register_target

DEFAULT_ARCHS = (80, 90)


def _bool(v) -> bool:
    """An option value given as a bool or as text (-O cuda_graphs=false)."""
    if isinstance(v, str):
        if v.lower() not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
            raise ValueError(f"target 'triton': expected a boolean (true/false), got {v!r}")
        return v.lower() in ("1", "true", "yes", "on")
    return bool(v)


class TritonTarget(Target):
    name = "triton"
    description = "Triton GPU kernels + AOT cubin (sm_80/sm_90) + C launcher; CPU interpreter without a GPU"
    tolerances = {"rtol": 1e-4, "atol": 1e-6}

    def available(self):
        try:
            import triton  # noqa: F401  (availability check)
        except ImportError as e:
            return False, f"needs the triton package (pip install 'xrec[triton]'): {e}"
        return True, ""

    def capabilities(self, options):
        return Capabilities(vector_width=32, has_shared_memory=True, memory_channels=1,
                            supports_int4=True, supports_fp16=True, supports_pruning=True,
                            checks_inputs=bool((options or {}).get("bounds_check", True)))

    def parse_options(self, options):
        from xrec.config import knobs
        opts = dict(options or {})
        out = {"mode": opts.pop("mode", "auto"), "precision": opts.pop("precision", "tf32x3"),
               "bounds_check": bool(opts.pop("bounds_check", knobs.bounds_check)),
               "aot": bool(opts.pop("aot", True)),
               "archs": [int(a) for a in opts.pop("archs", DEFAULT_ARCHS)],
               "cuda_graphs": _bool(opts.pop("cuda_graphs", True))}
        if opts:
            raise ValueError(f"target 'triton' got unknown options {sorted(opts)}; it takes mode, precision, "
                             "bounds_check, aot, archs, cuda_graphs")
        if out["mode"] not in ("auto", "gpu", "interpret"):
            raise ValueError(f"target 'triton': mode must be auto, gpu or interpret, got {out['mode']!r}")
        if out["precision"] not in ("ieee", "tf32x3", "tf32"):
            raise ValueError(f"target 'triton': precision must be ieee, tf32x3 or tf32, got {out['precision']!r}")
        bad = [a for a in out["archs"] if a < 80]
        if bad:
            raise ValueError(f"target 'triton': archs {bad} are below sm_80, which the kernels need")
        return out

    def build(self, graph, options, writer) -> None:
        from xrec.progress import step
        from .lower import lower
        from .loader import TEMPLATE

        layout = writer.write_weights()
        with step("triton: lower the IR to kernel launches"):
            prog, generated = lower(graph, layout, options)
        src = TEMPLATE.read_text() + "".join(f"\n\n{s}" for s in generated.values())
        writer.write_text(f"src/{prog.kernels_file}", src)
        writer.write_text("src/program.json", prog.to_json() + "\n")
        info = writer.target_info
        info["kernels_file"] = f"src/{prog.kernels_file}"
        info["launches"] = len(prog.launches())
        info["torch_steps"] = [s.note for s in prog.torch_steps()]
        if options.get("aot", True):
            from .aot import compile_program
            from .launcher import write_launcher
            with step("triton: AOT-compile the kernels to cubin"):
                kernels = compile_program(writer.path, prog, options["archs"])
            info["archs"] = [f"sm_{a}" for a in options["archs"]]
            info["kernels"] = kernels
            with step("triton: generate and compile the C launcher"):
                info["c_abi"] = write_launcher(writer.path, prog, kernels, options["archs"], graph)

    def load(self, artifact, options):
        from .runtime import load_model
        import numpy as np
        import torch
        model = load_model(artifact, mode=options.get("mode", "auto"),
                           cuda_graphs=_bool(options.get("cuda_graphs", True)))

        def run(flat):
            outs = model(*[torch.from_numpy(np.ascontiguousarray(a)) for a in flat])
            return [o.detach().cpu().numpy() for o in outs]
        run.model = model
        return run


register_target(TritonTarget())
