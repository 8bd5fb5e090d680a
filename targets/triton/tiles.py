"""Tile configurations of the triton target's kernels: which ``Variant`` (grid, constexprs, warps) a launch gets.

These are choices, not semantics: the kernels compute the same values for every
tile. The GPU tiles come from measurements on an H200
(bench/results/2026-12-04-gpu-h200.md); the interpreter tiles keep Triton's CPU
interpreter fast (few, large programs).
"""
from __future__ import annotations

from xrec.ir.formats import by_name
from xrec.ir.types import canon_dim

from .program import Variant

_FP32, _FP16, _INT8 = (by_name(n).code for n in ("fp32", "fp16", "int8"))


def np2(n: int) -> int:
    """The smallest power of two >= ``n`` (1 for n <= 1)."""
    return 1 << max(0, (int(n) - 1).bit_length())


def cdiv_grid(expr, block: int):
    """One grid axis: ``ceil(expr / block)`` programs (expr may be a symbolic dim)."""
    return (canon_dim(expr), int(block))


def linear_variants(M, N: int, K: int, precision: str) -> list[Variant]:
    """Tile configs for Y[M, N] = X[M, K] W^T, picked by batch at run time (two per shape, so AOT
    compiles stay few): skinny tiles while the batch is small (the layer streams its weights; many
    programs along N keep every SM busy), square ones after. fp32 with exact (ieee) products runs
    on the FMA units: moderate tiles; tf32/fp16 on tensor cores: larger. tl.dot needs dims >= 16.
    """
    bn = min(64, max(16, np2(N)))
    bk_small = min(64, max(16, np2(K)))
    bk = min(32, max(16, np2(K)))
    small = Variant(64, (cdiv_grid(M, 16), cdiv_grid(N, bn), (1, 1)),
                    dict(BLOCK_M=16, BLOCK_N=bn, BLOCK_K=bk_small), num_warps=4, num_stages=2)
    if precision == "ieee":
        bm, bn_l, warps = 64, bn, 4
    else:
        bm, bn_l, warps = 128, min(128, max(16, np2(N))), 8
    large = Variant(None, (cdiv_grid(M, bm), cdiv_grid(N, bn_l), (1, 1)),
                    dict(BLOCK_M=bm, BLOCK_N=bn_l, BLOCK_K=bk), num_warps=warps, num_stages=3)
    return [small, large]


def linear_interp_variants(M, N: int, K: int) -> list[Variant]:
    """Tiles for Triton's CPU interpreter. It pays ~0.1 ms per op and program and runs tl.dot as a
    numpy matmul (no minimum tile there), so: few programs, and the batch tile only as tall as
    the batch (work grows with the padded rows)."""
    bn, bk = min(256, max(16, np2(N))), min(512, max(16, np2(K)))
    return [Variant(bm if bm < 64 else None, (cdiv_grid(M, bm), cdiv_grid(N, bn), (1, 1)),
                    dict(BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk)) for bm in (1, 2, 4, 8, 16, 32, 64)]


def embedding_tiles(kind: int, block_d: int) -> tuple[int, int, int]:
    """(L ids per step, BLOCK_B bags per program, warps) of the table-batched embedding kernel for rows
    of format code ``kind`` (xrec.ir.formats) padded to ``block_d`` columns.

    Measured on an H200 (bench/results/2026-12-04-gpu-h200.md: dlrm-small's 26 tables, dim 64,
    batch 2048 and 8192, 14 configs): the kernel is bound by the latency of its dependent loads
    (offsets -> ids -> rows), so many small programs beat big tiles. For 64-wide rows: fp32/fp16
    rows one bag per one-warp program, 8 ids a step (46 us vs 100 us for 8 bags x 8 ids on 4 warps
    at batch 2048); int8 rows 16 bags x 2 ids on 4 warps (70 vs 216 us). Other widths and row
    formats keep the tile that was not measured against them: BLOCK_B x L x BLOCK_D = 4096.
    """
    if block_d == 64 and kind in (_FP32, _FP16):
        return 8, 1, 1
    if block_d == 64 and kind == _INT8:
        return 2, 16, 4
    L = 8
    return L, max(1, min(32, 4096 // (L * block_d))), 4
