"""Rewrites a practitioner applies before handing a recommendation model to ONNX or TVM.

Both exporters choke on ``nn.EmbeddingBag``: ``torch.onnx.export`` turns each
bag into an ONNX ``Loop`` over bags (tens of times slower than eager at large
batch), and TVM's ``from_exported_program`` does not know
``aten._embedding_bag`` at all. The usual fix is to replace each bag by the
same sum written with ops the exporter handles well:

    rows = weight[ids]                                   # Gather
    seg  = cumsum(scatter_add(zeros(n+1), offsets[1:-1], 1))[:n]   # bag of each id
    out  = zeros(B, D).index_put_((seg,), rows, accumulate=True)    # ScatterND(add)

(max pooling: ``scatter_reduce(..., "amax", include_self=False)``, ONNX
ScatterElements(reduction=max)).

``style="rows"`` scatters whole rows (ONNX ScatterND with row indices);
``style="flat"`` scatters single elements through a 1-D index, because TVM's
``index_put`` needs one index tensor per data dimension.

:func:`flatten_pair_index` works around a TVM frontend bug: ``Z[:, li, lj]``
(two index tensors after a slice, DLRM's dot interaction) is translated as an
outer product. The rewrite flattens the indexed dims and uses one index
``li * F + lj``, which TVM translates correctly.
"""
from __future__ import annotations

import copy

import torch
from torch import nn


class RewriteError(Exception):
    """The model uses something the rewrite does not cover (says what and where)."""


class GatherBag(nn.Module):
    """``nn.EmbeddingBag`` (1-D ids + offsets) as Gather + scatter-add (sum, mean) or
    scatter-reduce amax (max; empty bags give 0 as EmbeddingBag does)."""

    def __init__(self, bag: nn.EmbeddingBag, style: str = "rows", where: str = ""):
        super().__init__()
        if style not in ("rows", "flat"):
            raise ValueError(f"style must be 'rows' or 'flat', got {style!r}")
        if bag.padding_idx is not None:
            raise RewriteError(f"{where or 'EmbeddingBag'}: padding_idx is not covered by the gather rewrite")
        if bag.max_norm is not None:
            raise RewriteError(f"{where or 'EmbeddingBag'}: max_norm is not covered by the gather rewrite")
        self.weight = bag.weight
        self.mode = bag.mode
        self.include_last_offset = bag.include_last_offset
        self.style = style

    def forward(self, input: torch.Tensor, offsets: torch.Tensor | None = None,
                per_sample_weights: torch.Tensor | None = None) -> torch.Tensor:
        if input.dim() != 1 or offsets is None or per_sample_weights is not None:
            raise RewriteError("GatherBag covers 1-D ids with offsets and no per_sample_weights")
        ids = input.long()
        off = offsets.long()
        n = ids.shape[0]
        if not self.include_last_offset:
            off = torch.cat([off, torch.full((1,), n, dtype=torch.long)])
        b = off.shape[0] - 1
        rows = self.weight.index_select(0, ids)
        inner = off[1:-1]
        mark = torch.zeros(n + 1, dtype=torch.long).index_put((inner,), torch.ones_like(inner), accumulate=True)
        seg = torch.cumsum(mark, 0)[:n]
        d = rows.shape[1]
        if self.mode == "max":
            idx = seg.unsqueeze(1).expand(n, d)
            return torch.zeros(b, d, dtype=rows.dtype).scatter_reduce(0, idx, rows, "amax", include_self=False)
        if self.style == "rows":
            out = torch.zeros(b, d, dtype=rows.dtype).index_put((seg,), rows, accumulate=True)
        else:
            flat = (seg.unsqueeze(1) * d + torch.arange(d).unsqueeze(0)).reshape(-1)
            out = torch.zeros(b * d, dtype=rows.dtype).index_put(
                (flat,), rows.reshape(-1), accumulate=True).view(b, d)
        if self.mode == "mean":
            counts = (off[1:] - off[:-1]).clamp(min=1).to(out.dtype)
            out = out / counts.unsqueeze(1)
        return out


def replace_embedding_bags(model: nn.Module, style: str = "rows") -> tuple[nn.Module, int]:
    """A copy of ``model`` (sharing weights) with every EmbeddingBag replaced; and how many."""
    if not isinstance(model, nn.Module):
        raise RewriteError(f"the gather rewrite needs an nn.Module, got {type(model).__name__} "
                           "(a .pt2 holds no EmbeddingBag modules to swap)")
    memo = {id(p): p for p in model.parameters()}            # share weights, copy structure
    memo.update({id(b): b for b in model.buffers()})
    out = copy.deepcopy(model, memo)
    count = 0
    for parent_name, parent in list(out.named_modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.EmbeddingBag):
                where = f"{parent_name}.{name}" if parent_name else name
                setattr(parent, name, GatherBag(child, style=style, where=where))
                count += 1
    return out.eval(), count


def flatten_pair_index(gm: torch.fx.GraphModule) -> int:
    """Rewrite ``x[:, i, j]`` (aten.index.Tensor, k leading slices then >= 2 index tensors)
    into ``x.flatten(k, k+m-1)[:, lin]`` in place; returns the number of rewrites."""
    aten = torch.ops.aten
    count = 0
    for node in list(gm.graph.nodes):
        if node.op != "call_function" or node.target is not aten.index.Tensor:
            continue
        x, indices = node.args[0], list(node.args[1])
        k = 0
        while k < len(indices) and indices[k] is None:
            k += 1
        tail = indices[k:]
        if k == 0 or len(tail) < 2 or any(t is None for t in tail):
            continue
        xval = x.meta.get("val") if hasattr(x, "meta") else None
        if xval is None:
            continue
        sizes = list(xval.shape[k:k + len(tail)])
        if not all(isinstance(s, int) for s in sizes):
            continue
        if any(t.meta.get("val") is None or t.meta["val"].dim() != 1 for t in tail):
            continue
        with gm.graph.inserting_before(node):
            lin = tail[0]
            for t, size in zip(tail[1:], sizes[1:]):
                lin = gm.graph.call_function(aten.mul.Tensor, (lin, size))
                lin = gm.graph.call_function(aten.add.Tensor, (lin, t))
            xf = gm.graph.call_function(aten.flatten.using_ints, (x, k, k + len(tail) - 1))
            new = gm.graph.call_function(aten.index.Tensor, (xf, [None] * k + [lin]))
        node.replace_all_uses_with(new)
        gm.graph.erase_node(node)
        count += 1
    if count:
        gm.graph.lint()
        gm.recompile()
    return count


def dynamic_shapes_for(example_inputs: tuple) -> tuple:
    """``Dim.AUTO`` on dim 0 of every tensor in the example inputs (batch, id counts)."""
    from torch.utils import _pytree as pytree
    auto = torch.export.Dim.AUTO

    def one(x):
        return {0: auto} if isinstance(x, torch.Tensor) and x.dim() >= 1 else None
    return tuple(pytree.tree_map(one, a) for a in example_inputs)
