"""Splitting a model between the FPGA (embedding gathers) and the host (everything dense).

``dense_graph(g)`` replaces every gathered embedding node by a new graph
input named ``pooled:<node>`` of the same type [B, sum D], and drops the
sparse inputs that only fed the gathers. The host target compiles that
graph; at run time its inputs are the model's remaining inputs (same order)
followed by the pooled outputs of the gather kernel, in graph order.

``pack_unit_inputs`` turns the model's jagged features into each unit's
query-major stream: ``bag_off`` (int32, batch*F+1) and ``ids`` (int32) with
the bags of query b, feature 0..F-1 of the unit, then query b+1, ...
"""
from __future__ import annotations

import numpy as np

from xrec.ir import Graph, Node, Op, make_attrs
from xrec.ir.graph import dead_code_eliminate
from .placement import META_KEY, gather_nodes

POOLED_PREFIX = "pooled:"


def dense_graph(g: Graph) -> Graph:
    gathered = {n.name for n in gather_nodes(g)}
    nodes = []
    for n in g.nodes:
        if n.name in gathered:
            n = Node(name=n.name, op=Op.INPUT, inputs=(), type=n.type,
                     attrs=make_attrs({"name": POOLED_PREFIX + n.name, "kind": "dense"}), loc=n.loc)
        nodes.append(n)
    live = dead_code_eliminate(nodes, g.outputs)
    used = {i for n in live for i in n.inputs} | set(g.outputs)
    # keep the model's inputs the dense part reads, and every pooled input
    live = [n for n in live if n.op is not Op.INPUT or n.name in used
            or n.attr("name").startswith(POOLED_PREFIX)]
    keep = {n.attr("name") for n in live if n.op is Op.PARAM}
    params = {k: v for k, v in g.params.items() if k in keep}
    return Graph(name=g.name + ".dense", nodes=tuple(live), outputs=g.outputs, params=params,
                 in_spec="", out_spec=g.out_spec, meta=tuple((k, v) for k, v in g.meta if k != META_KEY))


def dense_input_sources(g: Graph, dense: Graph) -> list[tuple[str, object]]:
    """For each input of the dense graph: ("model", position in the model's inputs) or ("pooled", node)."""
    pos = {n.name: k for k, n in enumerate(g.input_nodes)}
    out = []
    for n in dense.input_nodes:
        name = n.attr("name")
        if name.startswith(POOLED_PREFIX):
            out.append(("pooled", name[len(POOLED_PREFIX):]))
        else:
            if n.name not in pos:
                raise ValueError(f"dense input %{n.name} is not an input of the model")
            out.append(("model", pos[n.name]))
    return out


def feature_sources(g: Graph, jagged_value: str, psw_value: str | None) -> tuple[int, int, bool, int | None]:
    """(indices input position, offsets input position, include_last_offset, weights input position)."""
    pos = {n.name: k for k, n in enumerate(g.input_nodes)}
    j = g.node(jagged_value)
    if j.op is not Op.JAGGED:
        raise ValueError(f"%{jagged_value} is not a jagged feature")
    idx, off = j.inputs
    for v, what in ((idx, "indices"), (off, "offsets")):
        if v not in pos:
            raise ValueError(f"the hls target gathers on the FPGA only features whose {what} are model inputs; "
                             f"%{v} (feature {j.attr('feature')!r}) is computed in the model")
    w = None
    if psw_value is not None:
        if psw_value not in pos:
            raise ValueError(f"per-sample weights %{psw_value} must be a model input for the hls target")
        w = pos[psw_value]
    return pos[idx], pos[off], bool(j.attr("include_last_offset", True)), w


def full_offsets(off: np.ndarray, nnz: int, include_last: bool) -> np.ndarray:
    off = np.asarray(off).astype(np.int64, copy=False)
    if not include_last:
        off = np.concatenate([off, [nnz]])
    return off


def pack_unit_inputs(feats: list[tuple[np.ndarray, np.ndarray, np.ndarray | None]], batch: int
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Interleave a unit's features query-major: (bag_off int32 [batch*F+1], ids int32, psw f32 or None).

    ``feats``: per feature (ids, full offsets [batch+1], weights or None).
    """
    F = len(feats)
    lengths = np.zeros((batch, F), np.int64)
    for k, (ids, off, _) in enumerate(feats):
        lengths[:, k] = np.diff(off)
    flat_len = lengths.reshape(-1)
    bag_off = np.zeros(batch * F + 1, np.int64)
    np.cumsum(flat_len, out=bag_off[1:])
    nnz = int(bag_off[-1])
    if nnz >= 2**31:
        raise ValueError(f"a gather unit would read {nnz} ids in one batch; the kernel's offsets are int32: "
                         "run smaller batches")
    ids_out = np.zeros(nnz, np.int32)
    any_w = any(w is not None for _, _, w in feats)
    psw_out = np.ones(nnz, np.float32) if any_w else None
    starts = bag_off[:-1].reshape(batch, F)
    for k, (ids, off, w) in enumerate(feats):
        j = np.arange(off[0], off[-1])
        if len(j) == 0:
            continue
        seg = np.repeat(np.arange(batch), lengths[:, k])
        pos = starts[seg, k] + (j - off[:-1][seg])
        ids_out[pos] = ids[j]
        if w is not None:
            psw_out[pos] = w[j]
    return bag_off.astype(np.int32), ids_out, psw_out
