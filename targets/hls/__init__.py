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

Target options (``xrec.compile(..., target="hls", options={...})``):
see ``OPTIONS`` below.
"""
from __future__ import annotations

from dataclasses import asdict

import shutil

from xrec.config import knobs

from xrec.passes import register_pass

from .. import Capabilities, Target, get_target, register_target
from .placement import MemoryConfig, place, plan_of

OPTIONS: dict[str, tuple[object, str]] = {
    "host": (None, "target for the dense part: 'cpu' | 'reference' (default: cpu when available)"),
    "host_options": ({}, "options for the host target"),
    "quantize_rows": ("none", "rows on the card: 'none' (as the model: fp32, fp16 tables stay fp16) | "
                              "'fp16' | 'int8' (FBGEMM row-wise uint8 + fp32 scale/bias)"),
    "pooling": (None, "ids per bag for placement: number | {feature: number} | [number per table]; "
                      "default: the zoo spec for zoo models, else 1"),
    "hbm_channels": (32, "HBM pseudo-channels"),
    "hbm_channel_bytes": (256 * 2**20, "bytes per HBM pseudo-channel"),
    "hbm_gbps": (14.4, "peak GB/s per HBM pseudo-channel"),
    "ddr_banks": (2, "DDR banks"),
    "ddr_bank_bytes": (16 * 2**30, "bytes per DDR bank"),
    "ddr_gbps": (19.2, "peak GB/s per DDR bank"),
    "uram_bytes": (9_100_000, "on-chip URAM budget for tables, bytes"),
    "bram_bytes": (4_500_000, "on-chip BRAM budget for tables, bytes"),
    "onchip_units": (4, "gather units sharing the on-chip tables (0: nothing on chip)"),
    "clock_mhz": (300.0, "kernel clock for the report and v++"),
    "axi_read_latency_hbm": (80, "report: HBM read latency, cycles"),
    "axi_read_latency_ddr": (100, "report: DDR read latency, cycles"),
    "outstanding_reads": (32, "num_read_outstanding of each m_axi port (and the report)"),
    "fadd_latency": (4, "fp32 add latency in cycles: partial-sum lanes of the pooling loop"),
    "report_batch": (256, "batch of synthetic queries C-simulated at build time for the report"),
    "include_dir": (None, "folder with ap_int.h (default: the hls4ml wheel's ap_types)"),
    "platform": ("xilinx_u280_gen3x16_xdma_1_202211_1", "Vitis platform for the v++ config and Makefile"),
    "part": ("xcu280-fsvh2892-2L-e", "FPGA part for run_hls.tcl"),
    "runtime": ("csim", "how the artifact runs the gathers: 'csim' (C simulation) | 'xrt' (lib/host on a card)"),
    "xclbin": (None, "path of the xclbin for runtime='xrt'"),
    "build_host": (False, "also compile and link lib/host against XRT (needs libxrt-dev)"),
    "csim_timeout_s": (600, "seconds one C-simulation run may take"),
}

_INT = ("hbm_channels", "hbm_channel_bytes", "ddr_banks", "ddr_bank_bytes", "uram_bytes", "bram_bytes",
        "onchip_units", "axi_read_latency_hbm", "axi_read_latency_ddr", "outstanding_reads", "fadd_latency",
        "report_batch", "csim_timeout_s")
_FLOAT = ("hbm_gbps", "ddr_gbps", "clock_mhz")


def _cpu_available() -> bool:
    try:
        return bool(get_target("cpu").available()[0])
    except (KeyError, ImportError):
        return False


def memory_config(opts: dict) -> MemoryConfig:
    return MemoryConfig(
        hbm_channels=opts["hbm_channels"], hbm_channel_bytes=opts["hbm_channel_bytes"], hbm_gbps=opts["hbm_gbps"],
        ddr_banks=opts["ddr_banks"], ddr_bank_bytes=opts["ddr_bank_bytes"], ddr_gbps=opts["ddr_gbps"],
        uram_bytes=opts["uram_bytes"], bram_bytes=opts["bram_bytes"], onchip_units=opts["onchip_units"],
        row_format="fp32" if opts["quantize_rows"] == "none" else opts["quantize_rows"],
        pooling=opts["pooling"])


class HlsTarget(Target):
    name = "hls"
    description = ("FPGA via Vitis HLS: embedding gathers in HBM/DDR/on-chip gather units (C-simulated here), "
                   "dense part on the host target")
    tolerances = {"rtol": 1e-4, "atol": 1e-6}   # fp32 rows; narrower rows: see build.quantization_drift

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
        return Capabilities(vector_width=16, memory_channels=opts["hbm_channels"] + opts["ddr_banks"],
                            supports_fp16=True, supports_pruning=True)

    def parse_options(self, options: dict | None) -> dict:
        options = dict(options or {})
        unknown = sorted(set(options) - set(OPTIONS))
        if unknown:
            raise ValueError(f"hls target: unknown option(s) {unknown}; options: {', '.join(OPTIONS)}")
        opts = {k: (dict(v) if isinstance(v, dict) else v) for k, (v, _) in OPTIONS.items()}
        opts.update(options)
        for k in _INT:
            if not isinstance(opts[k], int) or isinstance(opts[k], bool) or opts[k] < 0:
                raise ValueError(f"hls target: option {k} must be a non-negative int, got {opts[k]!r}")
        for k in _FLOAT:
            if not isinstance(opts[k], (int, float)) or opts[k] <= 0:
                raise ValueError(f"hls target: option {k} must be a positive number, got {opts[k]!r}")
            opts[k] = float(opts[k])
        if opts["quantize_rows"] not in ("none", "fp16", "int8"):
            raise ValueError(f"hls target: quantize_rows must be 'none', 'fp16' or 'int8', got "
                             f"{opts['quantize_rows']!r}")
        if opts["host"] is None:
            opts["host"] = "cpu" if _cpu_available() else "reference"
        if opts["host"] not in ("cpu", "reference"):
            raise ValueError(f"hls target: host must be 'cpu' or 'reference', got {opts['host']!r}")
        if opts["runtime"] not in ("csim", "xrt"):
            raise ValueError(f"hls target: runtime must be 'csim' or 'xrt', got {opts['runtime']!r}")
        if opts["report_batch"] < 1 or opts["outstanding_reads"] < 1 or opts["fadd_latency"] < 1:
            raise ValueError("hls target: report_batch, outstanding_reads and fadd_latency must be >= 1")
        if not isinstance(opts["host_options"], dict):
            raise ValueError("hls target: host_options must be a dict")
        if isinstance(opts["pooling"], tuple):
            opts["pooling"] = list(opts["pooling"])
        memory_config(opts)          # validates the memory options
        return opts

    def passes(self, options: dict) -> list:
        return [("place_tables", asdict(memory_config(options)))]

    def build(self, graph, options, writer) -> None:
        from .build import build
        if graph.meta_get("hls.placement") is None or plan_of(graph).config_key != memory_config(options).key():
            graph = place(graph, memory_config(options))
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
