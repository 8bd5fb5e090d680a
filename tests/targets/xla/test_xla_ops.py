"""Op coverage beyond the zoo: bag modes, padding_idx, per-sample weights, activations, layout ops,
quantized tables, and the error for what cannot be lowered."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import xrec
from xrec.ir import Graph, Op, run_graph, verify
from xrec.ir.quant import bf16_bits, quantize_rows
from xrec.ir.types import DType, TensorType
from xrec.targets.xla.emit import LoweringError
from xrec.testing import check_model

from conftest import flat, imported_zoo

pytestmark = pytest.mark.usefixtures("compile_zoo")      # skips without a usable jax


def _gen(seed):
    return torch.Generator().manual_seed(seed)


class Bags(nn.Module):
    """sum with padding_idx, mean with padding_idx, max, and sum with per-sample weights."""

    def __init__(self):
        super().__init__()
        self.a = nn.EmbeddingBag(50, 12, mode="sum", include_last_offset=True, padding_idx=3)
        self.b = nn.EmbeddingBag(40, 12, mode="mean", include_last_offset=True, padding_idx=0)
        self.c = nn.EmbeddingBag(30, 12, mode="max", include_last_offset=True)
        self.d = nn.EmbeddingBag(20, 12, mode="sum", include_last_offset=True)
        with torch.no_grad():
            for k, e in enumerate((self.a, self.b, self.c, self.d)):
                e.weight.copy_(torch.randn(e.weight.shape, generator=_gen(k)))
        self.lin = nn.Linear(13 + 48, 7)

    def forward(self, dense, indices, offsets, psw):
        pooled = [self.a(indices[0], offsets[0]), self.b(indices[1], offsets[1]), self.c(indices[2], offsets[2]),
                  self.d(indices[3], offsets[3], per_sample_weights=psw)]
        return self.lin(torch.cat([dense] + pooled, 1))


def bag_inputs(batch, seed=0, dtype=torch.int64):
    rng = np.random.default_rng(seed)
    idx, off = [], []
    for rows in (50, 40, 30, 20):
        lengths = rng.integers(0, 6, size=batch)
        lengths[rng.random(batch) < 0.25] = 0
        o = np.concatenate([[0], np.cumsum(lengths)])
        i = rng.integers(0, rows, size=int(o[-1]))
        if len(i) > 3:
            i[1], i[2], i[3] = 3, 0, i[0]          # padding ids of a and b, a duplicate
        idx.append(torch.from_numpy(i).to(dtype))
        off.append(torch.from_numpy(o).to(dtype))
    psw = torch.from_numpy(rng.standard_normal(len(idx[3])).astype(np.float32))
    dense = torch.from_numpy(rng.standard_normal((batch, 13)).astype(np.float32))
    return dense, idx, off, psw


def test_bag_modes_padding_idx_and_per_sample_weights_match_pytorch():
    model = Bags().eval()
    cm = xrec.compile(model, bag_inputs(8), target="xla", options={"tpu": None, "batch": 8})
    feats = cm.graph.nodes_of(Op.EMBEDDING_BAG_GROUP)[0].attr("features")
    assert [(f.mode, f.padding_idx, f.has_psw) for f in feats] == \
        [("sum", 3, False), ("mean", 0, False), ("max", None, False), ("sum", None, True)]
    roles = [a["role"] for a in cm.manifest["target_info"]["module"]["args"]]
    assert roles.count("weights") == 1
    check_model(cm, model, [bag_inputs(1, 1), bag_inputs(8, 2, torch.int32), bag_inputs(19, 3),
                            bag_inputs(5, 4, torch.int32)], rtol=1e-4, atol=1e-6)


class Misc(nn.Module):
    """LayerNorm, GELU (erf and tanh), tanh, SiLU, sigmoid, bmm, permute, reshape, reductions, norm,
    clamp, exp/log/sqrt/rsqrt/pow, slices with a step, expand, advanced indexing, an unfused bag."""

    def __init__(self):
        super().__init__()
        self.ln = nn.LayerNorm(13)
        self.l1 = nn.Linear(13, 24)
        self.l2 = nn.Linear(24, 24, bias=False)
        self.emb = nn.EmbeddingBag(10, 6, mode="sum", include_last_offset=True)
        self.w = nn.Parameter(torch.randn(6, 4, generator=_gen(5)))
        self.register_buffer("pick", torch.tensor([0, 5, 5, 23]))
        with torch.no_grad():
            self.ln.weight.uniform_(0.5, 1.5, generator=_gen(6))
            self.ln.bias.uniform_(-0.1, 0.1, generator=_gen(7))

    def forward(self, dense, indices, offsets):
        h = F.gelu(self.l1(self.ln(dense)))
        t = torch.tanh(self.l2(h)) + F.silu(h) * torch.sigmoid(h) - F.gelu(h, approximate="tanh")
        t3 = t.reshape(-1, 4, 6)
        z = torch.bmm(t3, t3.permute(0, 2, 1))
        m = self.emb(indices[0], offsets[0]) @ self.w
        s = z.sum(dim=2) + m.abs().sqrt() + torch.exp(-m.clamp(min=0.0, max=3.0))
        n = torch.linalg.vector_norm(t, dim=1, keepdim=True).clamp(min=1e-6)
        mean = t3.mean(dim=(1, 2), keepdim=True).squeeze(-1)
        return torch.cat([torch.log(s.abs() + 1.0), t[:, 2:20:3] / n, t3.amax(dim=1), mean.expand(-1, 3),
                          torch.rsqrt(n + 1.0), (t * t).pow(1.5)[:, :2], t[:, self.pick]], 1)


def misc_inputs(batch, seed=0, dtype=torch.int64):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(0, 4, size=batch)
    o = np.concatenate([[0], np.cumsum(lengths)])
    return (torch.from_numpy(rng.standard_normal((batch, 13)).astype(np.float32)),
            [torch.from_numpy(rng.integers(0, 10, size=int(o[-1]))).to(dtype)], [torch.from_numpy(o).to(dtype)])


def test_activations_layout_and_reduction_ops_match_pytorch():
    model = Misc().eval()
    cm = xrec.compile(model, misc_inputs(8), target="xla", options={"tpu": None, "batch": 8})
    ops = {n.op for n in cm.graph.nodes}
    assert {Op.LAYER_NORM, Op.GELU, Op.MATMUL, Op.PERMUTE, Op.NORM, Op.AMAX, Op.MEAN, Op.POW, Op.SLICE,
            Op.EXPAND, Op.INDEX, Op.EMBEDDING_BAG} <= ops
    check_model(cm, model, [misc_inputs(1, 1), misc_inputs(8, 2, torch.int32), misc_inputs(13, 3)],
                rtol=1e-4, atol=1e-6)


def with_tables(g: Graph, encode) -> Graph:
    """``g`` with every embedding table re-encoded by ``encode(array) -> (array, TensorType)``."""
    group = g.nodes_of(Op.EMBEDDING_BAG_GROUP)[0]
    tables = {group.inputs[p] for p in range(len(group.inputs)) if g.node(group.inputs[p]).op is Op.PARAM}
    params = dict(g.params)
    nodes = []
    for n in g.nodes:
        if n.name in tables:
            key = n.attr("name")
            arr, t = encode(params[key])
            params[key] = arr
            n = n.with_(type=t)
        nodes.append(n)
    return verify(g.with_(nodes=tuple(nodes), params=params))


ENCODINGS = {
    "int8": lambda a: (quantize_rows(a, "rowwise_i8"), "rowwise_i8"),
    "int4": lambda a: (quantize_rows(a, "rowwise_i4"), "rowwise_i4"),
    "int2": lambda a: (quantize_rows(a, "rowwise_i2"), "rowwise_i2"),
}


@pytest.mark.parametrize("precision", ["int8", "int4", "int2", "fp16", "bf16"])
def test_quantized_tables_are_dequantized_in_the_graph_as_the_interpreter_does(compile_zoo, precision):
    model, _ = compile_zoo("two-tower", batch=8)      # the optimized graph (sum and max pooling, dim 64)
    _, g0 = imported_zoo("two-tower")
    g = xrec.api.lower(g0, target="xla")[0]

    def encode(a):
        if precision == "fp16":
            return a.astype(np.float16), TensorType(a.shape, DType.F16)
        if precision == "bf16":
            return bf16_bits(a), TensorType(a.shape, DType.BF16)
        q, layout = ENCODINGS[precision](a)
        return q, TensorType(q.shape, DType.U8, layout)
    gq = with_tables(g, encode)
    cm = xrec.compile(gq, target="xla", options={"tpu": None, "batch": 8})
    table_args = [a for a in cm.manifest["target_info"]["module"]["args"] if a["role"] == "param"
                  and "embeddings" in a["param"]]
    want_elem = {"fp16": "f16", "bf16": "bf16"}.get(precision, "ui8")
    assert table_args and all(a["dtype"] == want_elem for a in table_args)
    from xrec import zoo
    for args in (zoo.make_inputs(model, 8, seed=1), zoo.make_inputs(model, 3, seed=2, index_dtype=torch.int32)):
        want = run_graph(gq, flat(args))
        got = cm(*args)
        np.testing.assert_allclose(got.numpy(), want[0], rtol=1e-4, atol=1e-6)


class BatchMean(nn.Module):
    def forward(self, dense):
        return dense - dense.mean(dim=0, keepdim=True)


def test_op_that_cannot_be_lowered_is_an_error_naming_op_and_source():
    x = torch.randn(4, 13)
    with pytest.raises(LoweringError) as e:
        xrec.compile(BatchMean(), (x,), target="xla", options={"tpu": None})
    msg = str(e.value)
    assert "mean" in msg and "reduces over the batch" in msg and "test_xla_ops.py" in msg


def test_pruned_tables_read_zero_rows_through_the_remap(compile_zoo):
    from xrec.passes import get_pass
    from xrec import zoo
    model, _ = compile_zoo("wide-deep", batch=8)       # has mean pooling: pruned ids still count
    _, g0 = imported_zoo("wide-deep")
    g = xrec.api.lower(g0, target="xla")[0]
    rng = np.random.default_rng(0)
    keep = {f"indices[{k}]": np.sort(rng.choice(300, 120, replace=False)) for k in (0, 3, 15)}
    gp = verify(get_pass("prune_embeddings").fn(g, keep=keep))
    assert any(f.has_remap for n in gp.nodes_of(Op.EMBEDDING_BAG_GROUP) for f in n.attr("features"))
    cm = xrec.compile(gp, target="xla", options={"tpu": None, "batch": 8})
    for args in (zoo.make_inputs(model, 8, seed=1), zoo.make_inputs(model, 11, seed=2)):
        got = cm(*args).numpy()
        np.testing.assert_allclose(got, run_graph(gp, flat(args))[0], rtol=1e-4, atol=1e-6)
        assert not np.allclose(got, run_graph(g, flat(args))[0], rtol=1e-4)     # pruning changed the result
