"""The hls target's options: one frozen, typed dataclass (see ``targets/options.py``).

``xrec targets --options hls`` prints them; ``-O key=value`` on the command
line or ``options={...}`` in ``xrec.compile`` sets them. An unknown or invalid
option is a ValueError listing every valid one.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from ..options import TargetOptions, at_least, option, positive_finite
from .placement import ROW_FORMATS, MemoryConfig

HOSTS = ("cpu", "reference")


def _host_known(v):
    return None if v is None or v in HOSTS else f"must be one of {', '.join(HOSTS)} (or None: cpu when available)"


def _pooling_positive(v):
    vals = list(v.values()) if isinstance(v, dict) else ([] if v is None else [v])
    ok = all(x > 0 and math.isfinite(x) for x in vals)
    return None if ok else "needs ids per bag > 0"


@dataclass(frozen=True)
class HlsOptions(TargetOptions):
    target: ClassVar[str] = "hls"

    host: str | None = option(None, "target for the dense part: 'cpu' | 'reference' (None: cpu when available)",
                              check=_host_known)
    host_options: dict[str, str | bool | int | float | None] = option(
        doc="options for the host target", default_factory=dict)
    quantize_rows: str = option("none", "rows on the card: 'none' (as the model: fp32, fp16 tables stay fp16) | "
                                        "'fp16' | 'int8' (FBGEMM row-wise uint8 + fp32 scale/bias)",
                                choices=("none",) + tuple(f for f in ROW_FORMATS if f != "fp32"))
    pooling: float | dict[str, float] | None = option(
        None, "ids per bag for placement: one number, or {feature: number} ('indices[3]'); features not given "
              "use the pooling statistics recorded in the graph (frontend: example inputs), else 1", check=_pooling_positive)
    hbm_channels: int = option(32, "HBM pseudo-channels", check=at_least(0))
    hbm_channel_bytes: int = option(256 * 2**20, "bytes per HBM pseudo-channel", check=at_least(0))
    hbm_gbps: float = option(14.4, "peak GB/s per HBM pseudo-channel", check=positive_finite)
    ddr_banks: int = option(2, "DDR banks", check=at_least(0))
    ddr_bank_bytes: int = option(16 * 2**30, "bytes per DDR bank", check=at_least(0))
    ddr_gbps: float = option(19.2, "peak GB/s per DDR bank", check=positive_finite)
    uram_bytes: int = option(9_100_000, "on-chip URAM budget for tables, bytes", check=at_least(0))
    bram_bytes: int = option(4_500_000, "on-chip BRAM budget for tables, bytes", check=at_least(0))
    onchip_units: int = option(4, "gather units sharing the on-chip tables (0: nothing on chip)", check=at_least(0))
    clock_mhz: float = option(300.0, "kernel clock for the report and v++", check=positive_finite)
    axi_read_latency_hbm: int = option(80, "report: HBM read latency, cycles", check=at_least(0))
    axi_read_latency_ddr: int = option(100, "report: DDR read latency, cycles", check=at_least(0))
    outstanding_reads: int = option(32, "num_read_outstanding of each m_axi port (and the report)",
                                    check=at_least(1))
    fadd_latency: int = option(4, "fp32 add latency in cycles: partial-sum lanes of the pooling loop",
                               check=at_least(1))
    report_batch: int = option(256, "batch of synthetic queries C-simulated at build time for the report",
                               check=at_least(1))
    include_dir: str | None = option(None, "folder with ap_int.h (default: the hls4ml wheel's ap_types)")
    platform: str = option("xilinx_u280_gen3x16_xdma_1_202211_1", "Vitis platform for the v++ config and Makefile")
    part: str = option("xcu280-fsvh2892-2L-e", "FPGA part for run_hls.tcl")
    runtime: str = option("csim", "how the artifact runs the gathers: C simulation, or lib/host on a card (XRT)",
                          choices=("csim", "xrt"))
    xclbin: str | None = option(None, "path of the xclbin for runtime='xrt'")
    build_host: bool = option(False, "also compile and link lib/host against XRT (needs libxrt-dev)")
    csim_timeout_s: int = option(600, "seconds one C-simulation run may take", check=at_least(1))

    def memory_config(self) -> MemoryConfig:
        """The placement stage's inputs: the card's memories, the row format and the pooling option."""
        return MemoryConfig(
            hbm_channels=self.hbm_channels, hbm_channel_bytes=self.hbm_channel_bytes, hbm_gbps=self.hbm_gbps,
            ddr_banks=self.ddr_banks, ddr_bank_bytes=self.ddr_bank_bytes, ddr_gbps=self.ddr_gbps,
            uram_bytes=self.uram_bytes, bram_bytes=self.bram_bytes, onchip_units=self.onchip_units,
            row_format="fp32" if self.quantize_rows == "none" else self.quantize_rows,
            pooling=dict(self.pooling) if isinstance(self.pooling, dict) else self.pooling)

    def check(self) -> str | None:
        try:
            self.memory_config()
        except ValueError as e:
            return str(e)
        return None
