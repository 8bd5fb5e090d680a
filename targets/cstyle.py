"""A table-driven base for the generators that emit C-family code (cpu C++, Vitis HLS C++).

Each dialect subclasses ``CStyle`` and overrides only what differs: type
names, function prefixes, qualifiers, pragmas. Expressions for elementwise ops
and activations come from the tables here so every C-like target computes the
same formulas. (Design after tinygrad's renderer/cstyle.py and TVM's codegen_c.)
"""
from __future__ import annotations

import math

from xrec.ir import Op
from xrec.ir.types import DType


def cstr(s: str) -> str:
    """``s`` as a C string literal (backslashes, quotes and newlines escaped): the one escaper of the
    C-family generators."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


class CodeWriter:
    """Indented line-by-line source emission."""

    def __init__(self, indent: str = "  "):
        self.lines: list[str] = []
        self.level = 0
        self.indent = indent

    def line(self, text: str = "") -> "CodeWriter":
        self.lines.append((self.indent * self.level + text) if text else "")
        return self

    def block(self, header: str):
        """``with w.block("for (...)"):`` emits ``header {`` ... ``}``."""
        w = self

        class _Block:
            def __enter__(self_inner):
                w.line(header + " {")
                w.level += 1
                return w

            def __exit__(self_inner, *exc):
                w.level -= 1
                w.line("}")
        return _Block()

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


class CStyle:
    """Op-to-string tables shared by the C-family dialects."""

    # dtype -> C type
    types: dict[DType, str] = {
        DType.F32: "float", DType.F64: "double", DType.I64: "int64_t", DType.I32: "int32_t",
        DType.I8: "int8_t", DType.U8: "uint8_t", DType.BOOL: "bool", DType.F16: "uint16_t",
        DType.BF16: "uint16_t", DType.I4X2: "uint8_t",
    }
    # function prefix for kernels (``static inline``, ``extern "C"``, ...)
    kernel_prefix = "static inline"
    restrict = "__restrict__"

    # unary op -> format string over {x}
    unary: dict[Op, str] = {
        Op.RELU: "({x} < 0.0f ? 0.0f : {x})",  # NaN propagates (as torch.relu)
        Op.SIGMOID: "(1.0f / (1.0f + expf(-({x}))))",
        Op.TANH: "tanhf({x})",
        Op.NEG: "(-({x}))",
        Op.EXP: "expf({x})",
        Op.LOG: "logf({x})",
        Op.SQRT: "sqrtf({x})",
        Op.RSQRT: "(1.0f / sqrtf({x}))",
        Op.ABS: "fabsf({x})",
        Op.SILU: "(({x}) / (1.0f + expf(-({x}))))",
    }
    # binary op -> format string over {a}, {b}
    binary: dict[Op, str] = {
        Op.ADD: "({a} + {b})", Op.SUB: "({a} - {b})", Op.MUL: "({a} * {b})", Op.DIV: "({a} / {b})",
        Op.POW: "powf({a}, {b})", 
        # torch.maximum/minimum propagate NaN; fmaxf/fminf return the other operand
        Op.MAXIMUM: "(({a}) != ({a}) || ({b}) != ({b}) ? ({a}) + ({b}) : fmaxf({a}, {b}))",
        Op.MINIMUM: "(({a}) != ({a}) || ({b}) != ({b}) ? ({a}) + ({b}) : fminf({a}, {b}))",
    }
    # activation name (MLP attrs) -> format string over {x}
    activations: dict[str, str] = {
        "none": "{x}",
        "relu": "({x} < 0.0f ? 0.0f : {x})",
        "sigmoid": "(1.0f / (1.0f + expf(-({x}))))",
        "tanh": "tanhf({x})",
        "silu": "(({x}) / (1.0f + expf(-({x}))))",
        "gelu": "(0.5f * ({x}) * (1.0f + erff(({x}) * 0.70710678118654752f)))",
        "gelu_tanh": "(0.5f * ({x}) * (1.0f + tanhf(0.79788456080286536f * (({x}) + 0.044715f * ({x}) * ({x}) * ({x})))))",
    }

    def ctype(self, dt: DType) -> str:
        if dt not in self.types:
            raise KeyError(f"{type(self).__name__} has no C type for {dt.value}")
        return self.types[dt]

    def literal(self, value, dt: DType = DType.F32) -> str:
        if dt.is_float:
            v = float(value)
            if math.isinf(v):
                return "INFINITY" if v > 0 else "-INFINITY"
            if math.isnan(v):
                return "NAN"
            return f"{v!r}f" if dt is DType.F32 else repr(v)
        return f"{int(value)}" + ("LL" if dt is DType.I64 else "")

    def unary_expr(self, op: Op, x: str, attrs: dict | None = None) -> str:
        attrs = attrs or {}
        if op is Op.CLAMP:
            lo, hi = attrs.get("min"), attrs.get("max")
            if lo is None and hi is None:
                return x
            nan = x  # torch.clamp keeps NaN; fmaxf/fminf would return the bound
            if lo is not None:
                x = f"fmaxf({x}, {self.literal(lo)})"
            if hi is not None:
                x = f"fminf({x}, {self.literal(hi)})"
            return f"(({nan}) != ({nan}) ? ({nan}) : {x})"
        if op is Op.GELU:
            return self.act_expr("gelu_tanh" if attrs.get("approximate") == "tanh" else "gelu", x)
        if op not in self.unary:
            raise KeyError(f"{type(self).__name__} cannot render unary op {op.value}")
        return self.unary[op].format(x=x)

    def binary_expr(self, op: Op, a: str, b: str) -> str:
        if op not in self.binary:
            raise KeyError(f"{type(self).__name__} cannot render binary op {op.value}")
        return self.binary[op].format(a=a, b=b)

    def act_expr(self, act: str, x: str) -> str:
        if act not in self.activations:
            raise KeyError(f"unknown activation {act!r}; known: {', '.join(self.activations)}")
        return self.activations[act].format(x=x)

    def header_comment(self, title: str, lines: list[str]) -> str:
        body = "\n".join(f"// {l}" if l else "//" for l in lines)
        return f"// {title}\n{body}\n"
