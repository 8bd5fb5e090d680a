"""The hls target: embedding gathers on an FPGA (Vitis HLS), the dense part on the host.

As in MicroRec/FleetRec, the FPGA does the memory-bound part: every
embedding table is placed in an HBM pseudo-channel, a DDR bank or on-chip
RAM (this target's stage ``place_tables``, placement.py), and one gather-pool unit per channel reads ids,
fetches rows in 512-bit bursts, dequantizes and pools them. A pruned table
(pass ``prune_embeddings``: compact table + int32 remap) is gathered through
its remap: a lookup stage before the row burst, pruned ids fetch nothing and
pool as zero rows. Everything else
(MLPs, interactions) runs on a host target (``cpu`` when it is available,
else ``reference``).

``xrec compile --target hls`` writes into the artifact::

    src/xrec_gather.{h,cpp}  the HLS kernel (synthesizable; pragmas for Vitis HLS)
    src/tb.cpp               C-simulation testbench (file in, file out)
    src/host.cpp             XRT host code (xrt::device / xrt::kernel / xrt::bo)
    src/xrec_gather.cfg      v++ connectivity: sp= per table argument, nk=
    src/run_hls.tcl, src/Makefile, src/README.md
    lib/csim                 the C simulation, built with g++ against ap_types
    lib/tables/*.bin         table images that differ from the fp32 weights
    lib/host.xrec/           the dense part, an artifact of the host target
    report.json, report.md   the analytic cycle report (modelled numbers)

Running the artifact here runs the C simulation of the kernel for the
embeddings (every call), then the dense part on the host target.

Target options (``xrec.compile(..., target="hls", options={...})``, ``-O key=value``,
``xrec targets --options hls``): :class:`~xrec.targets.hls.options.HlsOptions`.
"""
from __future__ import annotations

import shutil
from dataclasses import asdict

from xrec.config import knobs
from xrec.passes import register_pass

from .. import Capabilities, Target, register_target
from .options import HlsOptions
from .placement import META_KEY, MemoryConfig, place, plan_of


class HlsTarget(Target):
    name = "hls"
    description = ("FPGA via Vitis HLS: embedding gathers in HBM/DDR/on-chip gather units (C-simulated here), "
                   "dense part on the host target")
    tolerances = {"rtol": 1e-4, "atol": 1e-6}   # fp32 rows; narrower rows: see build.quantization_drift
    Options = HlsOptions

    def available(self) -> tuple[bool, str]:
        from .headers import HeadersNotFound, ap_types_dir
        if shutil.which(knobs.cxx) is None:
            return False, f"no C++ compiler {knobs.cxx!r} for the C simulation (install g++ or set CXX)"
        try:
            ap_types_dir()
        except HeadersNotFound as e:
            return False, str(e)
        return True, ""

    def capabilities(self, options):
        opts = self.parse_options(options)
        return Capabilities(vector_width=16, memory_channels=opts.hbm_channels + opts.ddr_banks,
                            supports_fp16=True, supports_pruning=True)

    def passes(self, options) -> list:
        return [("place_tables", asdict(self.parse_options(options).memory_config()))]

    def build(self, graph, options, writer) -> None:
        from .build import build
        options = self.parse_options(options)
        cfg = options.memory_config()
        if graph.meta_get(META_KEY) is None or plan_of(graph).config_key != cfg.key():
            graph = place(graph, cfg)
            writer.graph = graph
        build(self, graph, options, writer)

    def load(self, artifact, options):
        from .runtime import make_runner
        return make_runner(self, artifact, self.parse_options(options))


@register_pass("place_tables", stage="layout")
def place_tables(g, **config):
    """Assign embedding tables to HBM/DDR channels and on-chip RAM, balancing bytes read per query (hls stage)."""
    return place(g, MemoryConfig(**config))


register_target(HlsTarget())
