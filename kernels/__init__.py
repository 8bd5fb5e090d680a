"""Hand-written kernel templates that the target code generators specialise.

    kernels/cpu/   header-only C++17 kernels (GEMM with fused epilogue, table-batched
                   embedding bag, interaction) compiled into every cpu artifact
"""
from pathlib import Path

KERNELS_DIR = Path(__file__).resolve().parent


def cpu_include_dir() -> Path:
    """Folder holding the CPU kernel headers (copied into each artifact's src/)."""
    return KERNELS_DIR / "cpu"
