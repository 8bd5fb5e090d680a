"""The refusals issue 23 closed, checked directly on rec-model shapes (test_opinfo.py checks OpInfo's samples).

2-D embedding_bag input (fixed-size bags, no offsets: F.embedding_bag makes its offsets with arange),
arange position ids, max_norm on embedding / embedding_bag (bit-exact with PyTorch for a parameter table,
PyTorch's in-place renorm left untouched on the model), sparse / scale_grad_by_freq accepted,
reductions with dtype=, rsub's alpha, reductions of 0-d tensors and ops on empty tensors; reference
on every case, cpu on a batch of models compiled once.
"""
import copy

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import xrec
from xrec.frontend import FrontendError, import_model
from xrec.ir import Op
from xrec.targets import get_target


class Bag2D(nn.Module):
    def __init__(self, **kw):
        super().__init__()
        torch.manual_seed(0)
        self.w = nn.Parameter(torch.randn(12, 4) * 2)
        self.kw = kw

    def forward(self, ids, psw=None):
        return F.embedding_bag(ids, self.w, per_sample_weights=psw, **self.kw)


class ArangeOffsets(nn.Module):
    """Flat ids with offsets the model makes itself: fixed bags of 3."""
    def __init__(self):
        super().__init__()
        self.bag = nn.EmbeddingBag(12, 4, mode="sum")

    def forward(self, flat):
        return self.bag(flat, torch.arange(0, flat.shape[0], 3))


class MaxNorm(nn.Module):
    def __init__(self, bag=False, **kw):
        super().__init__()
        torch.manual_seed(1)
        self.emb = (nn.EmbeddingBag(12, 4, mode="mean", **kw) if bag else nn.Embedding(12, 4, **kw))
        with torch.no_grad():
            self.emb.weight.mul_(3)

    def forward(self, ids):
        return self.emb(ids)


class Positions(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(2)
        self.tok, self.pos = nn.Embedding(12, 4), nn.Embedding(5, 4)

    def forward(self, ids):
        return self.tok(ids) + self.pos(torch.arange(ids.shape[1]))


class Reductions(nn.Module):
    def forward(self, x, ids):
        return (x.sum(1, dtype=torch.float64), x.mean(-1, dtype=torch.float64), ids.sum(1), (x > 0).sum(-1),
                torch.rsub(x, 2.0, alpha=3.0), torch.sub(x, x[:, :1], alpha=2))


def _ids(b, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 12, (b, 5), generator=g)
    ids[0] = 2                       # a bag of only padding ids
    if b > 1:
        ids[1, :3] = 2
    return ids


CASES = {
    "bag2d_sum_psw_pad": (Bag2D(mode="sum", padding_idx=2), lambda b: (_ids(b), torch.rand(b, 5))),
    "bag2d_mean_pad": (Bag2D(mode="mean", padding_idx=2), lambda b: (_ids(b),)),
    "bag2d_max_pad": (Bag2D(mode="max", padding_idx=2), lambda b: (_ids(b),)),
    "bag2d_max": (Bag2D(mode="max"), lambda b: (_ids(b),)),
    "bag2d_mean_maxnorm_sparse": (Bag2D(mode="mean", max_norm=1.5, sparse=True, scale_grad_by_freq=True),
                                  lambda b: (_ids(b),)),
    "embedding_maxnorm": (MaxNorm(max_norm=1.0), lambda b: (_ids(b),)),
    "embedding_maxnorm_l1": (MaxNorm(max_norm=2.0, norm_type=1.0), lambda b: (_ids(b),)),
    "bag_maxnorm": (MaxNorm(bag=True, max_norm=1.0), lambda b: (_ids(b),)),
    "positions": (Positions(), lambda b: (_ids(b),)),
    "reductions": (Reductions(), lambda b: (torch.randn(b, 5), _ids(b).int())),
}


def _run_torch(model, args):
    with torch.no_grad():
        out = copy.deepcopy(model).eval()(*args)         # max_norm renormalises the weight in place
    return out if isinstance(out, tuple) else (out,)


def _check(cm, model, args, rtol, atol, exact=False):
    got = cm(*args)
    got = got if isinstance(got, tuple) else (got,)
    for k, (g, w) in enumerate(zip(got, _run_torch(model, args))):
        assert g.dtype == w.dtype and g.shape == w.shape, (k, g.dtype, w.dtype, g.shape, w.shape)
        if exact:
            assert torch.equal(g, w), k
        torch.testing.assert_close(g, w, rtol=rtol, atol=atol, msg=f"output {k}")


@pytest.mark.parametrize("name", list(CASES))
def test_closed_refusals_match_torch_on_reference(name):
    model, make = CASES[name]
    cm = xrec.compile(copy.deepcopy(model), make(4), target="reference")
    for b in (2, 7):
        _check(cm, model, make(b), 1e-5, 1e-6, exact=name.startswith("embedding_maxnorm"))


def test_max_norm_table_is_renormalised_at_compile_time_and_the_model_is_untouched():
    model = MaxNorm(max_norm=1.0)
    before = model.emb.weight.detach().clone()
    g = import_model(model, (_ids(4),))
    assert torch.equal(model.emb.weight, before)                  # tracing does not renormalise the model
    (table,) = [n for n in g.nodes if n.op is Op.PARAM]
    want = before.clone()
    torch.embedding_renorm_(want, torch.arange(12), 1.0, 2.0)
    np.testing.assert_array_equal(g.params[table.attr("name")], want.numpy())
    assert len(g.outputs) == 1                                    # the mutated weight is not an output


def test_max_norm_on_a_table_computed_at_run_time_matches_torch_with_ir_ops():
    class TableInput(nn.Module):
        def forward(self, ids, table):
            return F.embedding(ids, table * 1.0, max_norm=1.0), F.embedding_bag(ids, table * 2.0, max_norm=1.5)

    torch.manual_seed(3)
    table = torch.randn(12, 4) * 2
    g = import_model(TableInput(), (_ids(4), table))
    assert Op.NORM in {n.op for n in g.nodes}
    cm = xrec.compile(TableInput(), (_ids(4), table), target="reference")
    for b in (2, 5):
        args = (_ids(b, seed=b), table.clone())
        with torch.no_grad():
            want = TableInput()(_ids(b, seed=b), table.clone())
        for got, w in zip(cm(*args), want):
            torch.testing.assert_close(got, w, rtol=1e-5, atol=1e-6)


def test_2d_bags_are_lookups_pooled_over_the_bag_dim_and_batch_is_the_ids_leading_dim():
    g = import_model(Bag2D(mode="sum"), (_ids(4),))
    assert {n.op for n in g.nodes} >= {Op.EMBEDDING, Op.SUM} and Op.JAGGED not in {n.op for n in g.nodes}
    assert str(g.input_nodes[0].type.shape[0]) == "B"


def test_arange_offsets_over_a_dynamic_id_count_are_a_clear_frontend_error():
    # bags of 3 need the id count to be a multiple of 3, which a dynamic count does not promise
    with pytest.raises(FrontendError, match="multiple of 3.*2-D"):
        import_model(ArangeOffsets(), (_ids(4).reshape(-1)[:12],))


def test_arange_over_the_batch_outside_offsets_is_a_clear_frontend_error():
    class RowIds(nn.Module):
        def forward(self, x):
            return x + torch.arange(x.shape[0]).unsqueeze(1)

    with pytest.raises(FrontendError, match="arange.*depends on an input's size"):
        import_model(RowIds(), (torch.randn(4, 3),))


@pytest.mark.skipif(not get_target("cpu").available()[0], reason="cpu target unavailable")
def test_closed_refusals_match_torch_on_cpu_in_one_compile():
    names = list(CASES)

    class All(nn.Module):
        def __init__(self):
            super().__init__()
            self.ms = nn.ModuleList([copy.deepcopy(CASES[n][0]) for n in names])
            self.counts = [len(CASES[n][1](2)) for n in names]

        def forward(self, *xs):
            outs, at = [], 0
            for k, m in zip(self.counts, self.ms):
                o = m(*xs[at:at + k])
                outs += list(o) if isinstance(o, tuple) else [o]
                at += k
            return tuple(outs)

    make = lambda b: tuple(a for n in names for a in CASES[n][1](b))  # noqa: E731
    batch = torch.export.Dim("batch", min=2)
    args = make(4)
    ep = torch.export.export(All().eval(), args, dynamic_shapes=(tuple({0: batch} for _ in args),), strict=False)
    cm = xrec.compile(ep, target="cpu")
    for b in (2, 9):
        _check(cm, All(), make(b), 1e-4, 1e-6)
