"""IR <-> JSON (the artifact's ir.json). Parameters are stored separately (weights.bin)."""
from __future__ import annotations

import json
from typing import Any

import sympy

from .graph import Graph, GroupFeature, Node
from .ops import Op
from .types import DType, JaggedType, TensorType, dim_str, parse_dim

FORMAT = 1


def _enc_dim(d):
    return d if isinstance(d, int) else {"sym": dim_str(d)}


def _dec_dim(d):
    return parse_dim(d["sym"]) if isinstance(d, dict) else d


def _enc_type(t) -> dict:
    if isinstance(t, TensorType):
        return {"tensor": [_enc_dim(d) for d in t.shape], "dtype": t.dtype.value, "layout": t.layout}
    return {"jagged": [_enc_dim(t.batch), _enc_dim(t.nnz)], "index_dtype": t.index_dtype.value,
            "offset_dtype": t.offset_dtype.value, "include_last_offset": t.include_last_offset}


def _dec_type(d: dict):
    if "tensor" in d:
        return TensorType(tuple(_dec_dim(x) for x in d["tensor"]), DType(d["dtype"]), d.get("layout", ""))
    b, n = d["jagged"]
    return JaggedType(_dec_dim(b), _dec_dim(n), DType(d["index_dtype"]), DType(d["offset_dtype"]),
                      d["include_last_offset"])


def _enc_val(v) -> Any:
    if isinstance(v, GroupFeature):
        return {"__feature__": [v.feature, v.mode, v.padding_idx, v.has_psw, v.num_rows, v.dim, v.has_remap]}
    if isinstance(v, DType):
        return {"__dtype__": v.value}
    if isinstance(v, tuple):
        return {"__tuple__": [_enc_val(x) for x in v]}
    if isinstance(v, sympy.Expr):
        return {"__dim__": dim_str(v)}
    return v


def _dec_val(v) -> Any:
    if isinstance(v, dict):
        if "__feature__" in v:
            return GroupFeature(*v["__feature__"])
        if "__dtype__" in v:
            return DType(v["__dtype__"])
        if "__tuple__" in v:
            return tuple(_dec_val(x) for x in v["__tuple__"])
        if "__dim__" in v:
            return parse_dim(v["__dim__"])
    if isinstance(v, list):
        return tuple(_dec_val(x) for x in v)
    return v


def graph_to_json(g: Graph) -> dict:
    return {
        "format": FORMAT,
        "name": g.name,
        "in_spec": g.in_spec,
        "out_spec": g.out_spec,
        "meta": [[k, _enc_val(v)] for k, v in g.meta],
        "outputs": list(g.outputs),
        "nodes": [{"name": n.name, "op": n.op.value, "inputs": list(n.inputs), "type": _enc_type(n.type),
                   "attrs": [[k, _enc_val(v)] for k, v in n.attrs], "loc": n.loc} for n in g.nodes],
    }


def graph_from_json(d: dict, params) -> Graph:
    if d.get("format") != FORMAT:
        raise ValueError(f"IR format {d.get('format')} is not {FORMAT}; recompile the model")
    nodes = tuple(Node(name=n["name"], op=Op(n["op"]), inputs=tuple(n["inputs"]), type=_dec_type(n["type"]),
                       attrs=tuple((k, _dec_val(v)) for k, v in n["attrs"]), loc=n.get("loc", ""))
                  for n in d["nodes"])
    return Graph(name=d["name"], nodes=nodes, outputs=tuple(d["outputs"]), params=params,
                 in_spec=d.get("in_spec", ""), out_spec=d.get("out_spec", ""),
                 meta=tuple((k, _dec_val(v)) for k, v in d.get("meta", [])))


def dumps(g: Graph) -> str:
    return json.dumps(graph_to_json(g), indent=1)
