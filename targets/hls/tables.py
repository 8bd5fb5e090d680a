"""Table images: the bytes each embedding table occupies in HBM/DDR/on-chip RAM.

Every row is padded with zeros to whole 512-bit beats (64 bytes), so one row
is one burst. Row formats (byte-compatible with FBGEMM, defined in xrec/ir/formats.py):

* ``fp32``: dim float32; ``fp16``: dim IEEE half; ``bf16``: dim bfloat16.
* ``int8``: FBGEMM's fused 8-bit row-wise layout: dim uint8 values, then an
  fp32 scale and an fp32 bias; value = q * scale + bias, ``bias = min(row)``,
  ``scale = (max(row) - min(row)) / 255``,
  ``q = lrint((x - bias) * 255 / (max - min + 1e-8))``.
  Error bound per element: ``|x - deq(x)| <= scale / 2`` plus float rounding;
  for a pooled bag ``sum_i |w_i| * scale_i / 2`` (mean: divided by the count).
* ``int4`` / ``int2``: packed values (low bits first), then fp16 scale and bias.

Tables the graph already stores compressed (xrec's quantize_embeddings pass)
are written as they are; fp32 tables are encoded here when the hls option
``quantize_rows`` asks for fp16 or int8.
"""
from __future__ import annotations

import numpy as np

from xrec.ir import formats
from xrec.ir.interpreter import gather_rows
from xrec.ir.types import TensorType
from .placement import BEAT_BYTES
from xrec.passes.quantize_embeddings import encode_table



def source_format(ttype: TensorType) -> str:
    """The row format the graph stores the table in."""
    return formats.of_type(ttype).name


def encode(table: np.ndarray, ttype: TensorType, fmt: str) -> tuple[np.ndarray, TensorType]:
    """The table's rows in ``fmt`` (uint8/float16/uint16 array) and its IR type."""
    src = source_format(ttype)
    if src == fmt:
        return np.asarray(table), ttype
    if src != "fp32":
        raise ValueError(f"a {src} table cannot be re-encoded as {fmt}; compress from the fp32 model instead")
    return encode_table(np.asarray(table, np.float32), fmt)


def effective_table(table: np.ndarray, ttype: TensorType, fmt: str, dim: int) -> np.ndarray:
    """The float32 [rows, dim] values the kernel sees after dequantization."""
    arr, t = encode(table, ttype, fmt)
    return gather_rows(arr, t, dim, np.arange(arr.shape[0]))


def int8_error_bound(table: np.ndarray) -> np.ndarray:
    """Per-row bound on |x - deq(x)| for int8 rows of an fp32 table: half a step plus float rounding."""
    x = np.asarray(table, np.float32)
    lo, hi = x.min(axis=1), x.max(axis=1)
    scale = ((hi - lo) / np.float32(255.0)).astype(np.float32)
    mag = np.abs(x).max(axis=1) + np.abs(lo) + 255 * scale
    return scale * 0.5 + 4 * np.finfo(np.float32).eps * mag


def image(table: np.ndarray, ttype: TensorType, fmt: str, dim: int, beats: int) -> np.ndarray:
    """The table as stored on the card: uint8 [rows, beats * 64].

    A table without rows (a pruned table that keeps none) is stored as one zero row, so that no memory
    port or on-chip array of the kernel is empty; its remap sends every id to -1, so the row is never read.
    """
    arr, _ = encode(table, ttype, fmt)
    rows = arr.shape[0]
    if rows == 0:
        return np.zeros((1, beats * BEAT_BYTES), np.uint8)
    body = np.ascontiguousarray(arr).view(np.uint8).reshape(rows, -1)
    want = formats.by_name(fmt).row_bytes(dim)
    if body.shape[1] != want:
        raise ValueError(f"{fmt} rows of dim {dim} should be {want} bytes, got {body.shape[1]}")
    width = beats * BEAT_BYTES
    if body.shape[1] > width:
        raise ValueError(f"row of {body.shape[1]} bytes does not fit {beats} beats")
    out = np.zeros((rows, width), np.uint8)
    out[:, :body.shape[1]] = body
    return out


def is_raw_image(table: np.ndarray, ttype: TensorType, fmt: str, beats: int) -> bool:
    """Whether the parameter's own bytes already are its image (same format, rows of whole beats)."""
    t = np.asarray(table)
    return (source_format(ttype) == fmt and t.ndim == 2 and t.shape[0] > 0 and t.flags.c_contiguous
            and t.shape[1] * t.itemsize == beats * BEAT_BYTES)
