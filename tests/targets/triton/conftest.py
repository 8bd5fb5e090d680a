"""Fixtures for the triton target's tests: its kernels in Triton's CPU interpreter, and helpers
that launch the embedding-bag kernel the way the lowering does (metadata + pointer tables)."""
from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from xrec.ir.formats import POOL_CODES, by_name
from xrec.targets.triton.loader import load_kernels

INT32_MAX = 2 ** 31 - 1


@pytest.fixture(scope="session")
def K():
    """The kernel templates, decorated for Triton's interpreter (works whether or not a GPU exists)."""
    return load_kernels(interpret=True)


@functools.lru_cache(maxsize=None)
def compiled_zoo(name: str, max_rows: int = 100, **kw):
    """(model, triton CompiledModel) for a zoo model, compiled once per test session (no AOT)."""
    import xrec
    from xrec import zoo
    from xrec.testing import zoo_model
    m = zoo_model(name, max_rows=max_rows)
    opts = {"aot": False, **dict(kw.pop("options", ()))}
    cm = xrec.compile(m, zoo.example_inputs(m), target="triton", options=opts, **kw)
    return m, cm


def jagged(batch: int, max_len: int, rows: int, gen: torch.Generator, dtype=torch.int64, empty_every: int = 3,
           long_bag: int = 0):
    """(indices, offsets[batch+1]) with empty bags, duplicate ids, ids 0 and rows-1, and optionally one long bag."""
    lens = torch.randint(0, max_len + 1, (batch,), generator=gen)
    lens[::empty_every] = 0
    if long_bag and batch > 1:
        lens[1] = long_bag
    off = torch.zeros(batch + 1, dtype=torch.int64)
    off[1:] = torch.cumsum(lens, 0)
    idx = torch.randint(0, rows, (int(off[-1]),), generator=gen)
    if len(idx) >= 4:
        idx[0], idx[1], idx[3] = rows - 1, 0, idx[2]
    return idx.to(dtype), off.to(dtype)


def run_bags(K, blob: torch.Tensor, feats: list[dict], B: int, *, kind: int = by_name("fp32").code,
             include_last: bool = True,
             block_b: int = 4, L: int = 4, check: bool = True, remap_blob: torch.Tensor | None = None):
    """Launch embedding_bag_group_kernel over ``feats`` (dicts: base, rows, dim, mode, pad, row_stride,
    idx, off, psw, remap) and return (out [B, sum dim], err flags)."""
    total = sum(f["dim"] for f in feats)
    out = torch.full((B, total), float("nan"))
    meta, ptrs, col = [], [], 0
    for s, f in enumerate(feats):
        meta.append([f["base"], f["rows"], f["dim"], col, POOL_CODES[f["mode"]],
                     -1 if f.get("pad") is None else f["pad"], f["row_stride"], s, f.get("remap", -1), 0])
        ptrs.append([f["idx"].data_ptr(), f["off"].data_ptr(), f["psw"].data_ptr() if f.get("psw") is not None else 0,
                     len(f["idx"])])
        col += f["dim"]
    meta = torch.tensor(meta, dtype=torch.int64)
    ptrs = torch.tensor(ptrs, dtype=torch.int64)
    err = torch.full((2 * len(feats),), INT32_MAX, dtype=torch.int32)
    bd = 1 << max(0, (max(f["dim"] for f in feats) - 1).bit_length())
    remap = remap_blob if remap_blob is not None else torch.zeros(1, dtype=torch.int32)
    K.embedding_bag_group_kernel[(len(feats), -(-B // block_b))](
        blob, remap, meta, ptrs, out, err, B, total, KIND=kind, IDX_64=feats[0]["idx"].dtype == torch.int64,
        OFF_64=feats[0]["off"].dtype == torch.int64, INCLUDE_LAST=include_last,
        HAS_PSW=any(f.get("psw") is not None for f in feats), HAS_PAD=any(f.get("pad") is not None for f in feats),
        HAS_MEAN=any(f["mode"] == "mean" for f in feats), HAS_MAX=any(f["mode"] == "max" for f in feats),
        HAS_REMAP=any(f.get("remap", -1) >= 0 for f in feats), CHECK=check, BLOCK_B=block_b, L=L, BLOCK_D=bd)
    return out, err


def pack_tables(tables: list[np.ndarray]) -> tuple[np.ndarray, list[int]]:
    """One 64-byte aligned byte blob holding ``tables`` (as weights.bin does), and each one's byte offset."""
    parts, offs, pos = [], [], 0
    for t in tables:
        pad = (-pos) % 64
        parts.append(np.zeros(pad, np.uint8))
        pos += pad
        offs.append(pos)
        b = np.ascontiguousarray(t).view(np.uint8).reshape(-1)
        parts.append(b)
        pos += len(b)
    parts.append(np.zeros((-pos) % 64, np.uint8))
    return np.concatenate(parts), offs


def optimized_graph(model, inputs, **kw):
    """The IR the triton target lowers for ``model`` (imported and optimized with the target's passes)."""
    from xrec.api import lower
    return lower(model, inputs, target="triton", **kw)[0]


def lowered(g, until: str | None = None, options: dict | None = None, strict: bool = False):
    """The LowerContext after the triton planning steps up to ``until`` (all of them by default)."""
    from xrec.lowering import TargetLowering
    from xrec.targets import get_target
    from xrec.targets.triton.lower import context, run_stages
    from xrec.targets.triton.signature import weights_layout
    opts = get_target("triton").parse_options({"aot": False, **(options or {})})
    ctx = context(g, weights_layout(g), opts, TargetLowering("triton", strict=strict, say=lambda m: None))
    return run_stages(ctx, until)
