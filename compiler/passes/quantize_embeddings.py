"""quantize_embeddings: store embedding tables in fewer bits (row-wise, FBGEMM's formats).

Precision per table: "fp32" (unchanged), "fp16", "bf16", "int8", "int4", "int2"
(row-wise scale and bias; the formats are defined in xrec/ir/formats.py). Pooled outputs stay f32: the
kernels dequantize in registers. A table shared by several features is
quantized once.
"""
from __future__ import annotations

from typing import Mapping

from ..ir import Graph, GraphBuilder, Op, TensorType, feature_inputs
from ..ir import formats
from ..ir.quant import encode_rows
from ..ir.types import DType
from . import register_pass

# every row format, widest first (fp32, fp16, bf16, int8, int4, int2)
PRECISIONS = tuple(sorted(formats.FORMAT_NAMES, key=lambda name: -formats.by_name(name).bits))
QUANTIZE_CHOICES = PRECISIONS[1:] + ("mixed",)   # what `quantize=` / `--quantize` accept (fp32 = no compression)
BITS = {name: formats.by_name(name).bits for name in PRECISIONS}


def encode_table(table, precision: str):
    """(array, TensorType) of a float32 [rows, dim] table stored at ``precision`` (a row format name)."""
    fmt = formats.by_name(precision)
    if fmt.name == "fp32":
        return table, TensorType(table.shape, DType.F32)
    a = encode_rows(fmt, table)
    return a, TensorType(a.shape, fmt.dtype, fmt.layout)


def _plan_for(feature: str, precision) -> str:
    p = precision.get(feature, precision.get("*", "fp32")) if isinstance(precision, Mapping) else precision
    if p not in PRECISIONS:
        raise ValueError(f"feature {feature!r}: unknown precision {p!r}; choose one of {', '.join(PRECISIONS)}")
    return p


@register_pass("quantize_embeddings", stage="compress")
def quantize_embeddings(g: Graph, precision: str | Mapping[str, str] = "int8") -> Graph:
    """Re-encode embedding tables at the given per-feature precision (FBGEMM row-wise layouts)."""
    b = GraphBuilder(g)
    encoded: dict[tuple[str, str], str] = {}     # (param node, precision) -> new param node

    def table_for(param_node: str, prec: str, loc: str) -> str:
        key = (param_node, prec)
        if key not in encoded:
            src = g.node(param_node)
            if src.op is not Op.PARAM or src.type.dtype is not DType.F32 or src.type.layout:
                raise ValueError(f"%{param_node}: only f32 parameter tables can be quantized, got {src.type}")
            arr, t = encode_table(g.params[src.attr("name")], prec)
            name = f"{src.attr('name')}.{prec}"
            b.params[name] = arr
            encoded[key] = b.emit(Op.PARAM, (), t, {"name": name}, hint=f"{param_node}_{prec}", loc=loc)
        return encoded[key]

    for n in g.nodes:
        if n.op is Op.EMBEDDING_BAG_GROUP:
            ins, pos = list(n.inputs), 0
            for fi in feature_inputs(n):
                prec = _plan_for(fi.feature.feature, precision)
                if prec != "fp32":
                    ins[pos] = table_for(fi.table, prec, n.loc)
                pos += fi.feature.num_inputs
            b.copy(n.with_(inputs=tuple(ins)))
        elif n.op in (Op.EMBEDDING_BAG, Op.EMBEDDING):
            prec = _plan_for(n.attr("feature", n.name), precision)
            if prec == "fp32":
                b.copy(n)
                continue
            attrs = dict(n.attrs)
            attrs.update({"dim": int(n.type.shape[-1]), "out_dtype": n.type.dtype})
            b.copy(n.with_(inputs=(table_for(n.inputs[0], prec, n.loc),) + n.inputs[1:], attrs=attrs))
        else:
            b.copy(n)
    return b.finish()
