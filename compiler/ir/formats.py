"""The one definition of embedding row formats, activation codes and pooling-mode codes.

Every target reads its numeric codes from here: C-family targets write
:func:`c_header` into their artifact (or ``static_assert`` their own enums
against it, see :func:`c_static_asserts`), Triton kernels take
:func:`triton_constants` as ``tl.constexpr`` values, Python code asks
:func:`of_type` / :func:`by_name`.

Row formats follow FBGEMM's ``SparseType`` (fbgemm_gpu
``split_embedding_configs.py``), codes included::

  name  code  bits  IR table type          row layout (bytes)                         row_bytes(dim)
  fp32  0     32    f32 [rows, dim]        dim x f32                                  4*dim
  fp16  1     16    f16 [rows, dim]        dim x f16                                  2*dim
  int8  2     8     u8 [rows, rb]#rowwise_i8  dim x u8, scale f32, bias f32           dim + 8
  int4  3     4     u8 [rows, rb]#rowwise_i4  ceil(dim/2) B (low nibble first),        ceil(dim/2) + 4
                                              scale f16, bias f16
  int2  4     2     u8 [rows, rb]#rowwise_i2  ceil(dim/4) B (low bits first),          ceil(dim/4) + 4
                                              scale f16, bias f16
  bf16  5     16    bf16 [rows, dim]       dim x bf16 (uint16 bit patterns in numpy)  2*dim

A quantized value decodes as ``q * scale + bias``; scale and bias follow the
packed values in every row (FBGEMM's fused row-wise layout). The numpy
encode/decode of each format lives in :mod:`xrec.ir.quant`.

Adding a format (say fp8) is one :class:`RowFormat` entry below, one branch in
``quant.encode_rows``/``quant.decode_rows``, and one decode per kernel; the
codes reach every target through the generated header / constants.

Activation codes are the positions in :data:`ACTIVATIONS`; pooling-mode codes
the positions in :data:`POOL_MODES`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from .types import DType, TensorType


@dataclass(frozen=True)
class RowFormat:
    """How one embedding row is stored."""

    name: str                 # "fp32", "int8", ... (what --quantize and the options say)
    code: int                 # FBGEMM SparseType value; the number every kernel switches on
    bits: int                 # bits per stored value
    dtype: DType              # element type of the table PARAM in the IR
    layout: str               # TensorType.layout tag of the table ("" for plain [rows, dim])
    scale_bias: DType | None  # element type of the per-row scale and bias after the values (None: no scale)
    fbgemm_prepack: str       # FBGEMM op that builds such rows from f32 ("" for plain float tables)
    fbgemm_op: str            # FBGEMM/PyTorch op that pools such rows (the reference kernels compare with)
    doc: str

    @property
    def quantized(self) -> bool:
        return self.scale_bias is not None

    @property
    def macro(self) -> str:
        """The C name of this format's code (``XREC_ROW_INT8``)."""
        return f"XREC_ROW_{self.name.upper()}"

    def value_bytes(self, dim: int) -> int:
        """Bytes of the packed values of one row (values padded to whole bytes)."""
        return (dim * self.bits + 7) // 8

    def scale_offset(self, dim: int) -> int:
        """Byte offset of the row's scale (the bias follows it); only for quantized formats."""
        if not self.quantized:
            raise ValueError(f"{self.name} rows have no scale")
        return self.value_bytes(dim)

    def row_bytes(self, dim: int) -> int:
        """Bytes one row of ``dim`` values takes (the table's row stride)."""
        extra = 2 * self.scale_bias.itemsize if self.quantized else 0
        return self.value_bytes(dim) + extra

    def table_type(self, rows: int, dim: int) -> TensorType:
        """The IR type of a [rows, dim] table stored in this format."""
        width = self.row_bytes(dim) if self.quantized else dim
        return TensorType((rows, width), self.dtype, self.layout)


_POOL = "aten::embedding_bag"
FORMATS: tuple[RowFormat, ...] = (
    RowFormat("fp32", 0, 32, DType.F32, "", None, "", _POOL, "float32 values"),
    RowFormat("fp16", 1, 16, DType.F16, "", None, "", _POOL, "float16 values"),
    RowFormat("int8", 2, 8, DType.U8, "rowwise_i8", DType.F32, "quantized::embedding_bag_byte_prepack",
              "quantized::embedding_bag_byte_rowwise_offsets", "uint8 values, fp32 scale and bias per row"),
    RowFormat("int4", 3, 4, DType.U8, "rowwise_i4", DType.F16, "quantized::embedding_bag_4bit_prepack",
              "quantized::embedding_bag_4bit_rowwise_offsets",
              "two 4-bit values per byte (low nibble first), fp16 scale and bias per row"),
    RowFormat("int2", 4, 2, DType.U8, "rowwise_i2", DType.F16, "quantized::embedding_bag_2bit_prepack",
              "quantized::embedding_bag_2bit_rowwise_offsets",
              "four 2-bit values per byte (low bits first), fp16 scale and bias per row"),
    RowFormat("bf16", 5, 16, DType.BF16, "", None, "", _POOL,
              "bfloat16 values (uint16 bit patterns in numpy)"),
)

FORMAT_NAMES: tuple[str, ...] = tuple(f.name for f in FORMATS)
_BY_NAME = {f.name: f for f in FORMATS}
_BY_CODE = {f.code: f for f in FORMATS}
_BY_LAYOUT = {f.layout: f for f in FORMATS if f.layout}
_BY_DTYPE = {f.dtype: f for f in FORMATS if not f.layout}
QUANTIZED_LAYOUTS: tuple[str, ...] = tuple(_BY_LAYOUT)

# activation after a layer (MLP attr ``acts``); the code is the position
ACTIVATIONS: tuple[str, ...] = ("none", "relu", "sigmoid", "tanh", "gelu", "gelu_tanh", "silu")
ACT_CODES: dict[str, int] = {a: i for i, a in enumerate(ACTIVATIONS)}
# embedding-bag pooling modes; the code is the position
POOL_MODES: tuple[str, ...] = ("sum", "mean", "max")
POOL_CODES: dict[str, int] = {m: i for i, m in enumerate(POOL_MODES)}

assert len(_BY_CODE) == len(FORMATS) and len(_BY_NAME) == len(FORMATS), "row format names and codes must be unique"


def by_name(name: str) -> RowFormat:
    """The format called ``name`` ("fp32", "int4", ...)."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ValueError(f"unknown row format {name!r}; formats: {', '.join(FORMAT_NAMES)}") from None


def by_code(code: int) -> RowFormat:
    try:
        return _BY_CODE[code]
    except KeyError:
        raise ValueError(f"unknown row format code {code!r}; codes: "
                         + ", ".join(f"{f.code}={f.name}" for f in FORMATS)) from None


def by_layout(layout: str) -> RowFormat:
    """The quantized format a table's layout tag names ("rowwise_i8", ...)."""
    try:
        return _BY_LAYOUT[layout]
    except KeyError:
        raise ValueError(f"unknown table layout {layout!r}; layouts: {', '.join(QUANTIZED_LAYOUTS)}") from None


def of_type(ttype: TensorType) -> RowFormat:
    """The row format of an embedding table of IR type ``ttype``."""
    if ttype.layout:
        return by_layout(ttype.layout)
    if ttype.dtype in _BY_DTYPE:
        return _BY_DTYPE[ttype.dtype]
    raise ValueError(f"embedding tables of type {ttype} have no row format; tables are "
                     + ", ".join(f"{f.dtype.value}[rows, {'row_bytes' if f.quantized else 'dim'}]"
                                 + (f"#{f.layout}" if f.layout else "") + f" ({f.name})" for f in FORMATS))


def c_header(guard: str = "XREC_FORMATS_H") -> str:
    """A C/C++/HLS header with one ``#define`` per row format, activation and pooling mode."""
    lines = [
        "// Generated by xrec from xrec/ir/formats.py (the one definition of these codes): do not edit.",
        "// Row formats are FBGEMM's SparseType codes; row layouts are described in formats.py.",
        f"#ifndef {guard}",
        f"#define {guard}",
        "",
    ]
    for f in FORMATS:
        lines.append(f"#define {f.macro} {f.code}  // {f.doc}")
    lines.append(f"#define XREC_ROW_FORMAT_COUNT {len(FORMATS)}")
    lines.append("")
    for a, c in ACT_CODES.items():
        lines.append(f"#define XREC_ACT_{a.upper()} {c}")
    lines.append("")
    for m, c in POOL_CODES.items():
        lines.append(f"#define XREC_POOL_{m.upper()} {c}")
    lines += ["", f"#endif  // {guard}", ""]
    return "\n".join(lines)


def c_static_asserts(symbols: Mapping[str, str]) -> str:
    """``static_assert`` lines pinning a target's own C constants to these codes.

    ``symbols`` maps a C expression (``"kc::ROW_I8"``) to what it must equal: a row
    format name (``"int8"``), ``"act:<activation>"`` or ``"pool:<mode>"``.
    """
    out = []
    for expr, what in symbols.items():
        if what.startswith("act:"):
            code = ACT_CODES[what[4:]]
        elif what.startswith("pool:"):
            code = POOL_CODES[what[5:]]
        else:
            code = by_name(what).code
        out.append(f'static_assert((int)({expr}) == {code}, "{expr} must be xrec\'s code for {what} ({code})");')
    return "\n".join(out) + ("\n" if out else "")


def triton_constants() -> dict[str, int]:
    """Codes as plain ints for Triton ``tl.constexpr`` globals / kernel arguments.

    Keys: ``ROW_<FORMAT>`` (``ROW_INT8``), ``ACT_<ACT>`` (``ACT_GELU_TANH``), ``POOL_<MODE>``.
    """
    out = {f"ROW_{f.name.upper()}": f.code for f in FORMATS}
    out.update({f"ACT_{a.upper()}": c for a, c in ACT_CODES.items()})
    out.update({f"POOL_{m.upper()}": c for m, c in POOL_CODES.items()})
    return out
