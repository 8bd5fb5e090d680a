"""Models not in the zoo: user variants xrec must import as faithfully as the zoo.

Three hand-written recommendation models, each run at several batch sizes with
empty bags, duplicates, batch 1 and int32/int64 ids:
  * WeightedDLRM: mean pooling with padding_idx, per-sample weights, layer norm, GELU top
  * SequenceRec: nn.Embedding over a fixed-length history, masked mean, dot product scoring
  * MultiTask: keyword inputs in a dict, two heads returned as a dict, SiLU/tanh
"""
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import xrec
from xrec.frontend import import_model
from xrec.ir import Op, run_graph
from xrec.passes import run_pipeline
from xrec.testing import BagsOnly, bags_only_inputs

from conftest import flat


class WeightedDLRM(nn.Module):
    def __init__(self, rows=(50, 7, 100), dim=12):
        super().__init__()
        self.bags = nn.ModuleList([nn.EmbeddingBag(r, dim, mode="mean", include_last_offset=True, padding_idx=0)
                                   for r in rows[:2]])
        self.wbag = nn.EmbeddingBag(rows[2], dim, mode="sum", include_last_offset=True)
        self.bottom = nn.Sequential(nn.Linear(5, 24), nn.ReLU(), nn.Linear(24, dim))
        self.norm = nn.LayerNorm(4 * dim)
        self.top = nn.Sequential(nn.Linear(4 * dim, 16), nn.GELU(), nn.Linear(16, 1))

    def forward(self, dense, indices, offsets, weights):
        x = self.bottom(dense)
        pooled = [b(i, o) for b, i, o in zip(self.bags, indices[:2], offsets[:2])]
        pooled.append(self.wbag(indices[2], offsets[2], per_sample_weights=weights))
        return torch.sigmoid(self.top(self.norm(torch.cat([x] + pooled, dim=1))))


def weighted_inputs(batch, dtype=torch.int64, seed=0):
    rng = np.random.default_rng(seed)
    idx, off = [], []
    for rows in (50, 7, 100):
        lengths = rng.integers(0, 4, size=batch)
        if batch > 2:
            lengths[1] = 0
        o = np.concatenate([[0], np.cumsum(lengths)])
        i = rng.integers(0, rows, size=o[-1])
        if len(i) > 2:
            i[1] = i[0]
        idx.append(torch.tensor(i, dtype=dtype))
        off.append(torch.tensor(o, dtype=dtype))
    w = torch.tensor(rng.random(len(idx[2])), dtype=torch.float32)
    return (torch.tensor(rng.standard_normal((batch, 5)), dtype=torch.float32), idx, off, w)


class SequenceRec(nn.Module):
    def __init__(self, items=40, dim=8, hist=5):
        super().__init__()
        self.items = nn.Embedding(items, dim)
        self.user = nn.Linear(3, dim)

    def forward(self, history, mask, user):
        h = self.items(history)                                     # [B, H, D]
        m = mask.unsqueeze(-1)
        pooled = (h * m).sum(1) / m.sum(1).clamp_min(1.0)
        u = torch.tanh(self.user(user))
        return (pooled * u).sum(1, keepdim=True)


def sequence_inputs(batch, seed=0):
    rng = np.random.default_rng(seed)
    hist = torch.tensor(rng.integers(0, 40, size=(batch, 5)))
    mask = torch.tensor(rng.random((batch, 5)) < 0.7, dtype=torch.float32)
    return (hist, mask, torch.tensor(rng.standard_normal((batch, 3)), dtype=torch.float32))


class MultiTask(nn.Module):
    def __init__(self):
        super().__init__()
        self.bag = nn.EmbeddingBag(30, 6, mode="sum", include_last_offset=True)
        self.shared = nn.Sequential(nn.Linear(10, 16), nn.SiLU())
        self.ctr = nn.Linear(16, 1)
        self.cvr = nn.Linear(16, 1)

    def forward(self, feats):
        e = self.bag(feats["ids"], feats["offsets"])
        z = self.shared(torch.cat([feats["dense"], e], dim=1))
        return {"ctr": torch.sigmoid(self.ctr(z)), "cvr": torch.sigmoid(self.cvr(z))}


def multitask_inputs(batch, dtype=torch.int64, seed=0):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(0, 3, size=batch)
    o = np.concatenate([[0], np.cumsum(lengths)])
    return ({"dense": torch.tensor(rng.standard_normal((batch, 4)), dtype=torch.float32),
             "ids": torch.tensor(rng.integers(0, 30, size=o[-1]), dtype=dtype),
             "offsets": torch.tensor(o, dtype=dtype)},)


def _check(model, g, args):
    with torch.no_grad():
        want = [t.numpy() for t in torch.utils._pytree.tree_leaves(model(*args))]
    got = run_graph(g, flat(args))
    assert len(got) == len(want)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32])
def test_weighted_dlrm_with_mean_padding_and_sample_weights(dtype):
    torch.manual_seed(0)
    m = WeightedDLRM().eval()
    g = run_pipeline(import_model(m, weighted_inputs(6, dtype, seed=1)))
    assert g.nodes_of(Op.EMBEDDING_BAG_GROUP) and g.nodes_of(Op.LAYER_NORM)
    for batch in (1, 3, 50):
        _check(m, g, weighted_inputs(batch, dtype, seed=batch))


def test_sequence_model_with_embedding_and_masked_mean():
    torch.manual_seed(0)
    m = SequenceRec().eval()
    g = run_pipeline(import_model(m, sequence_inputs(4)))
    assert g.nodes_of(Op.EMBEDDING)
    for batch in (1, 9, 64):
        _check(m, g, sequence_inputs(batch, seed=batch))


def test_multitask_model_with_dict_inputs_and_dict_outputs_through_the_api():
    torch.manual_seed(0)
    m = MultiTask().eval()
    cm = xrec.compile(m, multitask_inputs(4), target="reference")
    for batch in (1, 5, 33):
        args = multitask_inputs(batch, dtype=torch.int32 if batch % 2 else torch.int64, seed=batch)
        out = cm(*args)
        with torch.no_grad():
            want = m(*args)
        assert set(out) == {"ctr", "cvr"}
        for k in want:
            torch.testing.assert_close(out[k], want[k], rtol=1e-5, atol=1e-6)


def test_model_without_dense_input_takes_its_batch_from_the_offsets():
    torch.manual_seed(0)
    m = BagsOnly().eval()
    g = run_pipeline(import_model(m, bags_only_inputs(4)))
    assert str(g.type_of(g.outputs[0]).shape[0]) == "B"
    offsets = [n for n in g.input_nodes if n.attr("kind") == "offsets"]
    assert all(str(n.type.shape[0]) == "B + 1" or str(n.type.shape[0]) == "B+1" for n in offsets)
    for batch in (1, 6, 40):
        _check(m, g, bags_only_inputs(batch, seed=batch))
