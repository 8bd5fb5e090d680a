"""The rewrites applied before ONNX/TVM export compute exactly what the original modules compute."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from xrec.bench.kernel_bench import DotInteraction
from xrec.bench.rewrites import (GatherBag, RewriteError, dynamic_shapes_for, flatten_pair_index,
                                 replace_embedding_bags)


def _bag(mode, include_last_offset=True, rows=50, dim=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    return nn.EmbeddingBag(rows, dim, mode=mode, include_last_offset=include_last_offset,
                           _weight=torch.randn(rows, dim, generator=g))


def _cases(dtype, include_last_offset):
    # empty bags (first, middle, last), duplicate ids, ids 0 and rows-1, batch 1
    ids = torch.tensor([3, 3, 0, 49, 7, 7, 7, 12, 1], dtype=dtype)
    lens = [0, 2, 0, 3, 4, 0]
    off = torch.tensor([0] + list(torch.tensor(lens).cumsum(0)), dtype=dtype)
    one = (torch.tensor([5, 9], dtype=dtype), torch.tensor([0, 2], dtype=dtype))
    if not include_last_offset:
        return [(ids, off[:-1]), (one[0], one[1][:-1])]
    return [(ids, off), one]


@pytest.mark.parametrize("style", ["rows", "flat"])
@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
@pytest.mark.parametrize("dtype", [torch.int64, torch.int32])
@pytest.mark.parametrize("include_last_offset", [True, False])
def test_gather_bag_equals_embedding_bag(style, mode, dtype, include_last_offset):
    bag = _bag(mode, include_last_offset)
    gb = GatherBag(bag, style=style)
    for ids, off in _cases(dtype, include_last_offset):
        want = bag(ids, off)
        got = gb(ids, off)
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)


def test_gather_bag_refuses_what_it_does_not_cover():
    with pytest.raises(RewriteError, match="padding_idx"):
        GatherBag(nn.EmbeddingBag(10, 4, padding_idx=0))
    gb = GatherBag(_bag("sum"))
    with pytest.raises(RewriteError, match="per_sample_weights"):
        gb(torch.tensor([1, 2]), torch.tensor([0, 2]), torch.ones(2))


def test_replace_embedding_bags_swaps_every_bag_and_shares_the_weights():
    from xrec import zoo
    from xrec.testing import zoo_model
    m = zoo_model("dlrm-small", max_rows=100)
    r, n = replace_embedding_bags(m, "rows")
    assert n == 26
    assert not any(isinstance(x, nn.EmbeddingBag) for x in r.modules())
    assert any(isinstance(x, nn.EmbeddingBag) for x in m.modules())          # the original is untouched
    assert r.embeddings.bags[0].weight is m.embeddings.bags[0].weight
    args = zoo.make_inputs(m, 9, seed=3, empty_bag_prob=0.3, index_dtype=torch.int32)
    with torch.no_grad():
        torch.testing.assert_close(r(*args), m(*args), rtol=1e-5, atol=1e-6)


def test_flatten_pair_index_rewrites_dlrm_interaction_into_one_index():
    m = DotInteraction(5).eval()
    ex = (torch.randn(4, 3), [torch.randn(4, 3) for _ in range(4)])
    ep = torch.export.export(m, ex, dynamic_shapes=dynamic_shapes_for(ex))
    gm = ep.module()
    assert flatten_pair_index(gm) == 1
    idx_nodes = [n for n in gm.graph.nodes if n.target is torch.ops.aten.index.Tensor]
    assert len(idx_nodes) == 1 and sum(i is not None for i in idx_nodes[0].args[1]) == 1
    args = (torch.randn(6, 3), [torch.randn(6, 3) for _ in range(4)])
    torch.testing.assert_close(gm(*args), m(*args))


def test_dynamic_shapes_mark_dim0_of_every_tensor():
    auto = torch.export.Dim.AUTO
    ds = dynamic_shapes_for((torch.zeros(2, 3), [torch.zeros(4)], [torch.zeros(5)]))
    assert ds == ({0: auto}, [{0: auto}], [{0: auto}])
