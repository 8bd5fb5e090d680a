"""Types of IR values: dense tensors with symbolic dims, and jagged sparse features.

A dim is an ``int`` or a sympy expression over named symbols: ``B`` is the
batch, ``N_<feature>`` the number of ids of a sparse feature. Shapes stay
symbolic through every pass, so one compiled model serves every batch size.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Union

import numpy as np
import sympy

Dim = Union[int, sympy.Expr]

BATCH = sympy.Symbol("B", integer=True, positive=True)


def sym(name: str) -> sympy.Symbol:
    """The symbol called ``name`` (all IR symbols are positive integers)."""
    return sympy.Symbol(name, integer=True, positive=True)


def canon_dim(d) -> Dim:
    """Normalise a dim: python/numpy ints and integer-valued expressions become int."""
    if isinstance(d, (int, np.integer)):
        return int(d)
    d = sympy.sympify(d, locals={s: sym(s) for s in _names_in(d)})
    d = sympy.expand(d)
    if d.is_Integer:
        return int(d)
    return d


def _names_in(d) -> list[str]:
    if isinstance(d, str):
        import re
        return re.findall(r"[A-Za-z_][A-Za-z_0-9]*", d)
    return []


def dim_str(d: Dim) -> str:
    return str(d).replace(" ", "")


def parse_dim(text: str) -> Dim:
    return canon_dim(text)


def dims_equal(a: Dim, b: Dim) -> bool:
    if isinstance(a, int) and isinstance(b, int):
        return a == b
    return sympy.expand(sympy.sympify(a) - sympy.sympify(b)) == 0


def eval_dim(d: Dim, bindings: dict[str, int]) -> int:
    """Concrete value of ``d`` once its symbols are bound."""
    if isinstance(d, int):
        return d
    subs = {s: bindings[s.name] for s in d.free_symbols if s.name in bindings}
    v = d.subs(subs)
    if not v.is_Integer:
        missing = sorted(s.name for s in d.free_symbols if s.name not in bindings)
        raise ValueError(f"cannot evaluate dim {d}: unbound symbols {missing}")
    return int(v)


def numel(shape: tuple[Dim, ...]) -> Dim:
    n: Dim = 1
    for d in shape:
        n = n * d
    return canon_dim(n) if not isinstance(n, int) else n


class DType(enum.Enum):
    """Element types. ``I4X2`` packs two signed int4 values per byte (low nibble first)."""

    F32 = "f32"
    F16 = "f16"
    BF16 = "bf16"
    F64 = "f64"
    I64 = "i64"
    I32 = "i32"
    I8 = "i8"
    U8 = "u8"
    I4X2 = "i4x2"
    BOOL = "bool"

    @property
    def is_float(self) -> bool:
        return self in (DType.F32, DType.F16, DType.BF16, DType.F64)

    @property
    def itemsize(self) -> int:
        return {"f32": 4, "f16": 2, "bf16": 2, "f64": 8, "i64": 8, "i32": 4,
                "i8": 1, "u8": 1, "i4x2": 1, "bool": 1}[self.value]

    def to_numpy(self) -> np.dtype:
        if self is DType.BF16:
            raise TypeError("numpy has no bfloat16: keep bf16 data as uint16 bit patterns")
        table = {"f32": np.float32, "f16": np.float16, "f64": np.float64, "i64": np.int64,
                 "i32": np.int32, "i8": np.int8, "u8": np.uint8, "i4x2": np.uint8, "bool": np.bool_}
        return np.dtype(table[self.value])

    @staticmethod
    def from_numpy(dt) -> "DType":
        dt = np.dtype(dt)
        table = {np.dtype(np.float32): DType.F32, np.dtype(np.float16): DType.F16,
                 np.dtype(np.float64): DType.F64, np.dtype(np.int64): DType.I64,
                 np.dtype(np.int32): DType.I32, np.dtype(np.int8): DType.I8,
                 np.dtype(np.uint8): DType.U8, np.dtype(np.bool_): DType.BOOL}
        if dt not in table:
            raise TypeError(f"no xrec dtype for numpy dtype {dt}")
        return table[dt]

    @staticmethod
    def from_torch(dt) -> "DType":
        import torch
        table = {torch.float32: DType.F32, torch.float16: DType.F16, torch.bfloat16: DType.BF16,
                 torch.float64: DType.F64, torch.int64: DType.I64, torch.int32: DType.I32,
                 torch.int8: DType.I8, torch.uint8: DType.U8, torch.bool: DType.BOOL}
        if dt not in table:
            raise TypeError(f"xrec does not support torch dtype {dt}")
        return table[dt]


@dataclass(frozen=True, slots=True)
class TensorType:
    """A dense tensor: symbolic shape, element type, and a layout tag.

    ``layout`` is "" for plain row-major; layout passes may set target layouts
    (e.g. "rowwise_q" for row-wise quantized tables) that codegens understand.
    """

    shape: tuple
    dtype: DType
    layout: str = ""

    def __post_init__(self):
        object.__setattr__(self, "shape", tuple(canon_dim(d) for d in self.shape))

    @property
    def rank(self) -> int:
        return len(self.shape)

    def __str__(self) -> str:
        lay = f"#{self.layout}" if self.layout else ""
        return f"{self.dtype.value}[{','.join(dim_str(d) for d in self.shape)}]{lay}"

    def same_as(self, other) -> bool:
        return (isinstance(other, TensorType) and self.dtype == other.dtype
                and self.layout == other.layout and len(self.shape) == len(other.shape)
                and all(dims_equal(a, b) for a, b in zip(self.shape, other.shape)))


@dataclass(frozen=True, slots=True)
class JaggedType:
    """A sparse feature in KeyedJaggedTensor form: ``batch`` bags over ``nnz`` ids.

    Bag b holds ``indices[offsets[b]:offsets[b+1]]``; offsets has batch+1
    entries when ``include_last_offset`` (TorchRec's meaning) else batch.
    """

    batch: Dim
    nnz: Dim
    index_dtype: DType
    offset_dtype: DType
    include_last_offset: bool = True

    def __post_init__(self):
        object.__setattr__(self, "batch", canon_dim(self.batch))
        object.__setattr__(self, "nnz", canon_dim(self.nnz))

    def __str__(self) -> str:
        last = "" if self.include_last_offset else ",no_last_offset"
        return (f"jagged<{self.index_dtype.value}/{self.offset_dtype.value}>"
                f"[{dim_str(self.batch)};{dim_str(self.nnz)}{last}]")

    def same_as(self, other) -> bool:
        return (isinstance(other, JaggedType) and dims_equal(self.batch, other.batch)
                and dims_equal(self.nnz, other.nnz) and self.index_dtype == other.index_dtype
                and self.offset_dtype == other.offset_dtype
                and self.include_last_offset == other.include_last_offset)


Type = Union[TensorType, JaggedType]
