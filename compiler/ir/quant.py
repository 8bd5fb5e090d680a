"""Numpy encode/decode of embedding rows, byte-compatible with FBGEMM.

The formats themselves (bits, row bytes, scale/bias layout, codes) are defined
once in :mod:`xrec.ir.formats`; this module holds their numpy encoders and
decoders. A quantized table is a PARAM of dtype u8 and shape [rows, row_bytes]
with a layout tag; each row holds the quantized values followed by that row's
scale and bias (value = q * scale + bias):

  layout        values                         scale, bias     row_bytes
  rowwise_i8    dim x uint8                    fp32, fp32      dim + 8       (embedding_bag_byte_prepack)
  rowwise_i4    ceil(dim/2) bytes, low nibble  fp16, fp16      ceil(dim/2)+4 (embedding_bag_4bit_prepack)
                first
  rowwise_i2    ceil(dim/4) bytes, low bits    fp16, fp16      ceil(dim/4)+4 (embedding_bag_2bit_prepack)
                first

fp16 tables are plain f16 [rows, dim]; bf16 tables are bf16 [rows, dim]
stored as uint16 bit patterns (numpy has no bfloat16).

``encode_rows(fmt, table)`` / ``decode_rows(fmt, rows, dim)`` cover every
format; adding a format adds one branch to each.
"""
from __future__ import annotations

import numpy as np

from . import formats
from .formats import RowFormat

LAYOUT_BITS = {f.layout: f.bits for f in formats.FORMATS if f.layout}
_EPS = 1e-8


def row_bytes(layout: str, dim: int) -> int:
    """Bytes of one row of a quantized table with layout tag ``layout`` (see formats.RowFormat.row_bytes)."""
    return formats.by_layout(layout).row_bytes(dim)


def encode_rows(fmt: RowFormat | str, table: np.ndarray) -> np.ndarray:
    """A float32 [rows, dim] table stored in row format ``fmt`` (the PARAM array of ``fmt.table_type``)."""
    fmt = formats.by_name(fmt) if isinstance(fmt, str) else fmt
    if fmt.name == "fp32":
        return np.ascontiguousarray(table, dtype=np.float32)
    if fmt.name == "fp16":
        return np.ascontiguousarray(table, dtype=np.float16)
    if fmt.name == "bf16":
        return bf16_bits(table)
    if fmt.quantized:
        return quantize_rows(table, fmt.layout)
    raise NotImplementedError(f"no numpy encoder for row format {fmt.name}")


def decode_rows(fmt: RowFormat | str, rows: np.ndarray, dim: int) -> np.ndarray:
    """float32 [n, dim] values of ``rows`` (any subset of a table's rows) stored in format ``fmt``."""
    fmt = formats.by_name(fmt) if isinstance(fmt, str) else fmt
    if fmt.quantized:
        return dequantize_rows(rows, fmt.layout, dim)
    if fmt.name == "bf16":
        return bf16_to_f32(rows)
    if fmt.name in ("fp32", "fp16"):
        return np.asarray(rows).astype(np.float32)
    raise NotImplementedError(f"no numpy decoder for row format {fmt.name}")


def quantize_rows(table: np.ndarray, layout: str) -> np.ndarray:
    """FBGEMM's row-wise quantization of a float32 [rows, dim] table."""
    t = np.ascontiguousarray(table, dtype=np.float32)
    rows, dim = t.shape
    bits = LAYOUT_BITS[layout]
    out = np.zeros((rows, row_bytes(layout, dim)), np.uint8)
    if rows == 0:
        return out
    mn = t.min(axis=1) if dim else np.zeros(rows, np.float32)
    mx = t.max(axis=1) if dim else np.zeros(rows, np.float32)
    if bits == 8:
        rng = (mx - mn).astype(np.float32)
        scale = (rng / np.float32(255.0)).astype(np.float32)
        inv = (np.float32(255.0) / (rng + np.float32(_EPS))).astype(np.float32)
        q = np.rint((t - mn[:, None]) * inv[:, None]).astype(np.int64)
        out[:, :dim] = np.clip(q, 0, 255).astype(np.uint8)
        out[:, dim:dim + 4] = scale.view(np.uint8).reshape(rows, 4)
        out[:, dim + 4:dim + 8] = mn.astype(np.float32).view(np.uint8).reshape(rows, 4)
        return out
    levels = (1 << bits) - 1
    mn = mn.astype(np.float16).astype(np.float32)
    rng = (mx - mn).astype(np.float32)
    scale = np.where(rng == 0, np.float32(1.0), rng / np.float32(levels)).astype(np.float32)
    scale = scale.astype(np.float16).astype(np.float32)
    scale = np.where(scale == 0, np.float32(1.0), scale)
    with np.errstate(divide="ignore"):
        inv = (np.float32(1.0) / scale).astype(np.float32)
    bad = np.isinf(inv)
    scale = np.where(bad, np.float32(1.0), scale)
    inv = np.where(bad, np.float32(1.0), inv)
    q = np.clip(np.rint((t - mn[:, None]) * inv[:, None]), 0, levels).astype(np.uint8)
    per_byte = 8 // bits
    nbytes = (dim + per_byte - 1) // per_byte
    padded = np.zeros((rows, nbytes * per_byte), np.uint8)
    padded[:, :dim] = q
    packed = np.zeros((rows, nbytes), np.uint8)
    for k in range(per_byte):
        packed |= (padded[:, k::per_byte] << (k * bits)).astype(np.uint8)
    out[:, :nbytes] = packed
    out[:, nbytes:nbytes + 2] = scale.astype(np.float16).view(np.uint8).reshape(rows, 2)
    out[:, nbytes + 2:nbytes + 4] = mn.astype(np.float16).view(np.uint8).reshape(rows, 2)
    return out


def dequantize_rows(rows: np.ndarray, layout: str, dim: int) -> np.ndarray:
    """float32 [n, dim] values of quantized rows [n, row_bytes] (any subset of a table's rows)."""
    r = np.ascontiguousarray(rows, dtype=np.uint8)
    n = r.shape[0]
    bits = LAYOUT_BITS[layout]
    if bits == 8:
        q = r[:, :dim].astype(np.float32)
        scale = r[:, dim:dim + 4].copy().view(np.float32).reshape(n)
        bias = r[:, dim + 4:dim + 8].copy().view(np.float32).reshape(n)
    else:
        per_byte = 8 // bits
        nbytes = (dim + per_byte - 1) // per_byte
        packed = r[:, :nbytes]
        mask = (1 << bits) - 1
        q = np.stack([(packed >> (k * bits)) & mask for k in range(per_byte)], axis=2)
        q = q.reshape(n, nbytes * per_byte)[:, :dim].astype(np.float32)
        scale = r[:, nbytes:nbytes + 2].copy().view(np.float16).reshape(n).astype(np.float32)
        bias = r[:, nbytes + 2:nbytes + 4].copy().view(np.float16).reshape(n).astype(np.float32)
    return q * scale[:, None] + bias[:, None]


def bf16_bits(table: np.ndarray) -> np.ndarray:
    """Round-to-nearest-even bfloat16 bit patterns (uint16) of a float32 array."""
    u = np.ascontiguousarray(table, dtype=np.float32).view(np.uint32)
    rounded = u + np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1))
    return (rounded >> np.uint32(16)).astype(np.uint16)


def bf16_to_f32(bits: np.ndarray) -> np.ndarray:
    return (np.asarray(bits, np.uint16).astype(np.uint32) << np.uint32(16)).view(np.float32)
