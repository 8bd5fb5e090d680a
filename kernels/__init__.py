"""Hand-written kernel templates that the target code generators specialise.

    kernels/cpu/   header-only C++17 kernels (GEMM with fused epilogue, table-batched
                   embedding bag, interaction), their out-of-line entry points
                   (xrec_kernel_entry.cpp: compiled once per ISA and cached, linked into
                   every cpu model), the codes of xrec_formats.h (generated from
                   xrec/ir/formats.py) and xrec_gen.h (the model-independent part of
                   the generated model code); all copied into each cpu artifact's src/
"""
from pathlib import Path

KERNELS_DIR = Path(__file__).resolve().parent


def cpu_include_dir() -> Path:
    """Folder holding the CPU kernel headers (copied into each artifact's src/)."""
    return KERNELS_DIR / "cpu"
