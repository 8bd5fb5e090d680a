"""Layout decisions for TPUs: padding to (8 sublanes x 128 lanes) tiles, bf16, and weight transforms.

A TPU core works on [8, 128] tiles of 32-bit values (bf16 packs [16, 128]).
With ``pad=True`` the target pads

* the static batch to a multiple of 8 (sublanes),
* feature and hidden dims of dense layers (MLP, LINEAR, CROSS_LAYER) to a
  multiple of 128 (lanes): weights are zero-padded and stored transposed as
  ``[K, N]`` so every dense layer is one ``dot_general`` over full tiles;
  zero weights make the padding inert, and the outputs are sliced back.

Embedding tables keep their row length (padding a 64-wide table to 128 lanes
would double its memory, the scarce resource of recommendation models).

``dtype="bf16"`` stores dense weights and tables in bf16 and feeds bf16
operands to every ``dot_general`` with an f32 result (fp32 accumulation on
the MXU); pooling, biases, activations, the cross layer's Hadamard product
and FM stay in f32.

Weight transforms are described by small JSON-able dicts (recorded per
argument in the manifest, so a TPU host can lay out the weights from
weights.bin the same way) and applied by :func:`apply_transform`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LANES = 128
SUBLANES = 8

def round_up(n: int, m: int) -> int:
    return -(-int(n) // m) * m


@dataclass(frozen=True)
class Layout:
    pad: bool = True
    dtype: str = "f32"        # "f32" | "bf16": weights and matmul operands

    @property
    def compute_elem(self) -> str:
        """Element type of dot_general operands (and of stored dense weights and tables)."""
        return "bf16" if self.dtype == "bf16" else "f32"

    @property
    def precision(self) -> str:
        """Precision config of dot_general: f32 must ask for HIGHEST (TPUs default to bf16 passes)."""
        return "DEFAULT" if self.dtype == "bf16" else "HIGHEST"

    def lanes(self, n: int) -> int:
        """A feature/hidden dim as stored: rounded up to 128 lanes when padding."""
        return round_up(n, LANES) if self.pad else int(n)

    def batch(self, b: int) -> int:
        """The executable's static batch: rounded up to 8 sublanes when padding."""
        return round_up(b, SUBLANES) if self.pad else int(b)


def transform(transpose: bool = False, pad_to=None, dtype: str | None = None) -> dict:
    """A weight transform: optional 2-D transpose, then zero padding to ``pad_to``, then a cast."""
    t = {}
    if transpose:
        t["transpose"] = True
    if pad_to is not None:
        t["pad_to"] = [int(d) for d in pad_to]
    if dtype is not None and dtype != "f32":
        t["dtype"] = dtype
    return t


def transform_key(t: dict) -> tuple:
    return (bool(t.get("transpose")), tuple(t.get("pad_to") or ()), t.get("dtype", ""))


def transformed_shape(shape, t: dict) -> tuple[int, ...]:
    shape = tuple(int(d) for d in shape)
    if t.get("transpose"):
        shape = shape[::-1]
    if t.get("pad_to"):
        shape = tuple(t["pad_to"])
    return shape


def apply_transform(a: np.ndarray, t: dict) -> np.ndarray:
    """The array a ``transform`` describes (host side: device arguments and baked constants)."""
    a = np.asarray(a)
    if t.get("transpose"):
        a = a.T
    if t.get("pad_to"):
        want = tuple(t["pad_to"])
        if any(w < d for w, d in zip(want, a.shape)) or len(want) != a.ndim:
            raise ValueError(f"cannot pad an array of shape {a.shape} to {want}")
        if want != a.shape:
            out = np.zeros(want, a.dtype)
            out[tuple(slice(0, d) for d in a.shape)] = a
            a = out
    if t.get("dtype") == "bf16":
        import ml_dtypes
        # IR bf16 tables are uint16 bit patterns (numpy has no bfloat16): reinterpret, else round
        a = a.view(ml_dtypes.bfloat16) if a.dtype == np.uint16 else a.astype(ml_dtypes.bfloat16)
    elif t.get("dtype"):
        a = a.astype(np_dtype(t["dtype"]))
    return np.ascontiguousarray(a)


def np_dtype(elem: str):
    """The numpy dtype of an MLIR element type (bf16 via ml_dtypes)."""
    if elem == "bf16":
        import ml_dtypes
        return ml_dtypes.bfloat16
    return {"f32": np.float32, "f16": np.float16, "f64": np.float64, "i64": np.int64, "i32": np.int32,
            "i8": np.int8, "ui8": np.uint8, "i1": np.bool_}[elem]
