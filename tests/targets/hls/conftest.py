"""Fixtures for the hls target: small hand-built embedding graphs and their inputs.

Graphs are built directly in the IR (fast: no torch.export), with every
feature a table of its own shape, pooling mode, padding id, weights, index
dtype and storage dtype, so one compiled kernel covers many cases.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from xrec.ir import BATCH, DType, Graph, GraphBuilder, GroupFeature, JaggedType, Op, TensorType, sym, verify

from xrec.targets import get_target

HAS_HLS = get_target("hls").available()[0]
needs_hls = pytest.mark.skipif(not HAS_HLS, reason=f"hls target unavailable: {get_target('hls').available()[1]}")

# tests always run the dense part on the reference interpreter (cpu builds are slow); one zoo test uses cpu
FAST = {"host": "reference", "report_batch": 16}


@dataclass(frozen=True)
class T:
    rows: int
    dim: int
    mode: str = "sum"
    pad: int | None = None
    psw: bool = False
    dtype: object = np.float32
    index: DType = DType.I64
    pooling: float = 3.0


def bag_graph(tables: list[T], name: str = "bags", group: bool = True, seed: int = 0) -> Graph:
    """One EMBEDDING_BAG_GROUP over ``tables`` (or one EMBEDDING_BAG per table), returned as the output(s)."""
    rng = np.random.default_rng(seed)
    b = GraphBuilder(Graph(name=name, nodes=(), outputs=()))
    ins, feats = [], []
    for k, t in enumerate(tables):
        n = sym(f"N_indices_{k}")
        idx = b.emit(Op.INPUT, (), TensorType((n,), t.index), {"name": f"indices[{k}]", "kind": "indices"},
                     hint=f"indices_{k}")
        off = b.emit(Op.INPUT, (), TensorType((BATCH + 1,), t.index), {"name": f"offsets[{k}]", "kind": "offsets"},
                     hint=f"offsets_{k}")
        w = None
        if t.psw:
            w = b.emit(Op.INPUT, (), TensorType((n,), DType.F32), {"name": f"weights[{k}]", "kind": "weights"},
                       hint=f"weights_{k}")
        jag = b.emit(Op.JAGGED, (idx, off), JaggedType(BATCH, n, t.index, t.index, True),
                     {"feature": f"indices[{k}]", "include_last_offset": True}, hint=f"jag_{k}")
        table = (rng.standard_normal((t.rows, t.dim)) * 0.5).astype(t.dtype)
        tab = b.add_param(f"table_{k}", table)
        ins.append((tab, jag, w))
        feats.append(GroupFeature(feature=f"indices[{k}]", mode=t.mode, padding_idx=t.pad, has_psw=t.psw,
                                  num_rows=t.rows, dim=t.dim))
    outs = []
    if group:
        flat_ins = [v for tab, jag, w in ins for v in ((tab, jag, w) if w else (tab, jag))]
        outs.append(b.emit(Op.EMBEDDING_BAG_GROUP, flat_ins, TensorType((BATCH, sum(t.dim for t in tables)),
                                                                       DType.F32),
                           {"features": tuple(feats)}, hint="emb_group"))
    else:
        for k, ((tab, jag, w), f, t) in enumerate(zip(ins, feats, tables)):
            out_dt = DType.F16 if t.dtype == np.float16 else DType.F32
            outs.append(b.emit(Op.EMBEDDING_BAG, (tab, jag, w) if w else (tab, jag),
                               TensorType((BATCH, t.dim), out_dt),
                               {"mode": t.mode, "padding_idx": t.pad, "has_psw": t.psw, "feature": f.feature},
                               hint=f"bag_{k}"))
    return verify(b.finish(outputs=outs))


def make_flat(g: Graph, tables: list[T], batch: int, seed: int = 0, empty_prob: float = 0.25) -> list[np.ndarray]:
    """Inputs in ``g``'s input order: bags of 1+Poisson(pooling-1) ids, some empty, ids 0 and rows-1,
    duplicates, padding ids, and normal weights."""
    rng = np.random.default_rng(seed)
    by_name = {}
    for k, t in enumerate(tables):
        lengths = 1 + rng.poisson(max(t.pooling - 1, 0), batch)
        lengths[rng.random(batch) < empty_prob] = 0
        off = np.zeros(batch + 1, np.int64)
        np.cumsum(lengths, out=off[1:])
        ids = rng.integers(0, t.rows, int(off[-1]))
        if len(ids) >= 4:
            ids[0], ids[1] = t.rows - 1, 0
            ids[3] = ids[2]
        if t.pad is not None and len(ids) >= 6:
            ids[4] = t.pad % t.rows
            ids[rng.random(len(ids)) < 0.1] = t.pad % t.rows
        npd = t.index.to_numpy()
        by_name[f"indices[{k}]"] = ids.astype(npd)
        by_name[f"offsets[{k}]"] = off.astype(npd)
        by_name[f"weights[{k}]"] = rng.standard_normal(len(ids)).astype(np.float32)
    return [by_name[n.attr("name")] for n in g.input_nodes]


@pytest.fixture
def build_graph():
    return bag_graph


@pytest.fixture
def flat_inputs():
    return make_flat
