"""fuse_embedding_bags: all embedding bags over one batch become one table-batched group.

The group computes every feature's pooled rows into one [B, sum(D)] tensor
(FBGEMM's table-batched-embedding layout); each old bag becomes a slice of it,
and canonicalize then merges the slices that a concat reassembles.
"""
from __future__ import annotations

from ..ir import Graph, GraphBuilder, GroupFeature, Op, TensorType
from ..ir.rules import embedding_row_dim
from ..ir.types import DType, dims_equal
from . import register_pass


def _groupable(g: Graph, n) -> bool:
    """f32 bags over f32 tables, or over tables a model brings already stored in a row format (TorchRec's
    quantized EBC: the ``dim`` and ``out_dtype`` attributes ``quantize_embeddings`` also sets)."""
    table = g.node(n.inputs[0]).type
    if n.type.dtype is not DType.F32:
        return False
    if table.dtype is DType.F32 and not table.layout:
        return True
    return n.attr("dim", None) is not None and n.attr("out_dtype", None) is DType.F32


@register_pass("fuse_embedding_bags", stage="recognize")
def fuse_embedding_bags(g: Graph) -> Graph:
    """Batch every embedding bag over the same batch into one EMBEDDING_BAG_GROUP."""
    bags = [n for n in g.nodes_of(Op.EMBEDDING_BAG) if _groupable(g, n)]
    groups: list[list] = []
    for n in bags:
        for grp in groups:
            if dims_equal(grp[0].type.shape[0], n.type.shape[0]):
                grp.append(n)
                break
        else:
            groups.append([n])
    groups = [grp for grp in groups if len(grp) >= 2]
    if not groups:
        return g

    b = GraphBuilder(g)
    first_of = {grp[0].name: grp for grp in groups}
    in_group = {n.name for grp in groups for n in grp}
    for n in g.nodes:
        if n.name in first_of:
            grp = first_of[n.name]
            feats, ins = [], []
            for bag in grp:
                table = g.node(bag.inputs[0]).type
                has_psw = bag.attr("has_psw", False)
                feats.append(GroupFeature(feature=bag.attr("feature", bag.name), mode=bag.attr("mode"),
                                          padding_idx=bag.attr("padding_idx", None), has_psw=has_psw,
                                          num_rows=int(table.shape[0]), dim=embedding_row_dim(bag, table)))
                ins.extend(bag.inputs)
            total = sum(f.dim for f in feats)
            batch = grp[0].type.shape[0]
            gname = b.emit(Op.EMBEDDING_BAG_GROUP, ins, TensorType((batch, total), DType.F32),
                           {"features": tuple(feats)}, hint="emb_group", loc=n.loc)
            start = 0
            for bag, f in zip(grp, feats):
                s = b.emit(Op.SLICE, (gname,), TensorType((batch, f.dim), DType.F32),
                           {"dim": 1, "start": start, "end": start + f.dim, "step": 1},
                           hint=bag.name, loc=bag.loc)
                b.replace(bag.name, s)
                start += f.dim
        elif n.name in in_group:
            continue
        else:
            b.copy(n)
    return b.finish()
