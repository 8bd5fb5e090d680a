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

Options: ``TritonOptions`` in options.py (``xrec targets --options triton`` lists them): mode,
precision (tf32x3 by default: fp32-level error at 2.3-3.7x ieee's speed on dlrm-v2 on an H200),
bounds_check, aot, archs, cuda_graphs, strict (refuse the listed torch fallback, rules/fallback.py).
"""
from __future__ import annotations

from .. import Capabilities, Target, register_target
from .options import TritonOptions


class TritonTarget(Target):
    name = "triton"
    description = "Triton GPU kernels + AOT cubin (sm_80/sm_90) + C launcher; CPU interpreter without a GPU"
    tolerances = {"rtol": 1e-4, "atol": 1e-6}
    Options = TritonOptions

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

    def build(self, graph, options, writer) -> None:
        options = TritonOptions.parse(options)
        from xrec.lowering import lowering_for
        from xrec.progress import step
        from .lower import lower
        from .loader import TEMPLATE

        layout = writer.write_weights()
        lowering = lowering_for(self.name, strict=bool(options.get("strict", False)))
        with step("triton: lower the IR to kernel launches"):
            prog, generated = lower(graph, layout, options, lowering)
        src = TEMPLATE.read_text() + "".join(f"\n\n{s}" for s in generated.values())
        writer.write_text(f"src/{prog.kernels_file}", src)
        writer.write_text("src/program.json", prog.to_json() + "\n")
        info = writer.target_info
        info["kernels_file"] = f"src/{prog.kernels_file}"
        info["launches"] = len(prog.launches())
        info["torch_steps"] = [s.note for s in prog.torch_steps()]
        info["fallbacks"] = lowering.fallbacks_used()
        if options.get("aot", True):
            from .aot import compile_program
            from .launcher import write_launcher
            with step("triton: AOT-compile the kernels to cubin"):
                kernels = compile_program(writer.path, prog, options.arch_list)
            info["archs"] = [f"sm_{a}" for a in options.arch_list]
            info["kernels"] = kernels
            with step("triton: generate and compile the C launcher"):
                info["c_abi"] = write_launcher(writer.path, prog, kernels, options.arch_list, graph)

    def load(self, artifact, options):
        from .runtime import load_model
        import numpy as np
        import torch
        opts = TritonOptions.parse(options)          # the manifest's recorded dict, parsed again
        model = load_model(artifact, mode=opts.mode, cuda_graphs=opts.cuda_graphs)

        def run(flat):
            outs = model(*[torch.from_numpy(np.ascontiguousarray(a)) for a in flat])
            return [o.detach().cpu().numpy() for o in outs]
        run.model = model
        return run


register_target(TritonTarget())
