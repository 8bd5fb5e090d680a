"""weights.bin for a cpu artifact: the slots the code reads, Linear weights packed at compile time.

Packing calls the kernels' own ``pack_linear`` through the freshly built
library (``xrec_impl_pack_linear``, via ctypes), so the packed layout is
whatever the kernels that will read it expect. The original parameters stay
in weights.bin too (the IR in ir.json names them), next to the packed copies.
"""
from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np

from .plan import Program


def pack_weights(prog: Program, arrays: dict[str, np.ndarray], lib_path: Path) -> dict[str, np.ndarray]:
    """Packed arrays for every packed slot of ``prog``, keyed by their weights.bin name."""
    packed_slots = [s for s in prog.weights if s.kind == "packed"]
    if not packed_slots:
        return {}
    lib = ctypes.CDLL(str(lib_path), mode=ctypes.RTLD_LOCAL)
    size = lib.xrec_impl_linear_packed_floats
    size.restype, size.argtypes = ctypes.c_size_t, [ctypes.c_int, ctypes.c_int]
    pack = lib.xrec_impl_pack_linear
    fp = ctypes.POINTER(ctypes.c_float)
    pack.restype, pack.argtypes = None, [fp, ctypes.c_int, ctypes.c_int, fp]
    out = {}
    for s in packed_slots:
        w = np.ascontiguousarray(arrays[s.source], dtype=np.float32)
        assert w.shape == (s.N, s.K), (s.name, w.shape, s.N, s.K)
        p = np.zeros(int(size(s.N, s.K)), np.float32)
        pack(w.ctypes.data_as(fp), s.N, s.K, p.ctypes.data_as(fp))
        out[s.name] = p
    return out


def checksum64(path: Path, chunk_words: int = 1 << 22) -> int:
    """Sum of w_i * (2i + 1) mod 2^64 over the file's little-endian 64-bit words (zero-padded).

    The C loader (csrc/xrec_dispatch.cpp) computes the same to refuse a corrupt weights.bin.
    """
    size = Path(path).stat().st_size
    if size == 0:
        return 0
    mm = np.memmap(path, dtype=np.uint8, mode="r")
    acc = np.uint64(0)
    nwords = (size + 7) // 8
    with np.errstate(over="ignore"):
        for w0 in range(0, nwords, chunk_words):
            w1 = min(nwords, w0 + chunk_words)
            raw = np.asarray(mm[w0 * 8: min(size, w1 * 8)])
            if raw.size % 8:
                raw = np.concatenate([raw, np.zeros(8 - raw.size % 8, np.uint8)])
            words = raw.view("<u8").astype(np.uint64)
            coef = np.arange(w0, w1, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
            acc = acc + np.sum(words * coef, dtype=np.uint64)
    return int(acc)
