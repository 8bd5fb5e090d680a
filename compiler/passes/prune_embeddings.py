"""prune_embeddings: drop embedding rows, keeping a compact table and a remap.

For each pruned feature the table keeps only the chosen rows, and an int32
remap [logical rows] maps an id to its row in the compact table or to -1. A
pruned id reads a zero row (for sum this is FBGEMM's behaviour with
``compressed_indices_mapping``; mean divides by the full bag length, max sees 0).
Run it before quantize_embeddings so the compact table is what gets quantized.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Mapping

import numpy as np

from ..ir import Graph, GraphBuilder, Op, TensorType, feature_inputs
from ..ir.types import DType
from . import register_pass


def _remap(rows: int, kept: np.ndarray) -> np.ndarray:
    remap = np.full(rows, -1, np.int32)
    remap[kept] = np.arange(len(kept), dtype=np.int32)
    return remap


@register_pass("prune_embeddings", stage="compress")
def prune_embeddings(g: Graph, keep: Mapping[str, np.ndarray] | None = None) -> Graph:
    """Keep only the given rows of each listed feature's table (compact table + remap)."""
    keep = dict(keep or {})
    if not keep:
        return g
    b = GraphBuilder(g)
    done: dict[str, tuple[str, str]] = {}

    def compact(table_node: str, feature: str, rows: int, loc: str) -> tuple[str, str]:
        if table_node in done:
            return done[table_node]
        src = g.node(table_node)
        if src.op is not Op.PARAM or src.type.layout or src.type.dtype is not DType.F32:
            raise ValueError(f"feature {feature!r}: prune before quantizing (table is {src.type})")
        kept = np.unique(np.asarray(keep[feature], np.int64))
        if kept.size and (kept[0] < 0 or kept[-1] >= rows):
            raise ValueError(f"feature {feature!r}: rows to keep must lie in [0, {rows})")
        name = src.attr("name")
        t = b.add_param(f"{name}.pruned", np.ascontiguousarray(g.params[name][kept]), loc=loc)
        r = b.add_param(f"{name}.remap", _remap(rows, kept), loc=loc)
        done[table_node] = (t, r)
        return done[table_node]

    for n in g.nodes:
        if n.op is not Op.EMBEDDING_BAG_GROUP:
            b.copy(n)
            continue
        ins, feats = [], []
        for fi in feature_inputs(n):
            f = fi.feature
            if f.feature in keep and not f.has_remap:
                t, r = compact(fi.table, f.feature, f.num_rows, n.loc)
                ins += [t, fi.jagged] + ([fi.psw] if fi.psw else []) + [r]
                feats.append(replace(f, has_remap=True))
            else:
                ins += [fi.table, fi.jagged] + ([fi.psw] if fi.psw else []) + ([fi.remap] if fi.remap else [])
                feats.append(f)
        b.copy(n.with_(inputs=tuple(ins), attrs={**dict(n.attrs), "features": tuple(feats)}))
    return b.finish()
