"""The frontend lowers each supported aten op; the IR interpreter then matches PyTorch.

Each case is a tiny module built around one op family, traced at batch 4 and
run at batch 1, 7 and 33 (the batch dim is dynamic).
"""
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from xrec.frontend import FrontendError, import_model
from xrec.ir import Op, run_graph

from conftest import flat, torch_out


class Dense(nn.Module):
    """A module on one dense input x [B, 6]."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn
        self.lin = nn.Linear(6, 5)
        self.lin2 = nn.Linear(5, 6, bias=False)
        self.ln = nn.LayerNorm(5)
        self.register_buffer("idx", torch.tensor([4, 0, 2]))

    def forward(self, x):
        return self.fn(self, x)


DENSE_CASES = {
    "linear_relu": lambda m, x: F.relu(m.lin(x)),
    "linear_no_bias_sigmoid": lambda m, x: torch.sigmoid(m.lin2(m.lin(x))),
    "tanh_gelu_silu": lambda m, x: torch.tanh(x) + F.gelu(x) + F.silu(x) + F.gelu(x, approximate="tanh"),
    "arith_scalars": lambda m, x: (x * 2.5 - 1) / 3 + (1 - x) + x ** 2 + torch.pow(x.abs() + 1, 0.5),
    "exp_log_sqrt_rsqrt_neg": lambda m, x: torch.exp(-x.abs()) + torch.log(x.abs() + 1) + torch.sqrt(x.abs())
    + torch.rsqrt(x.abs() + 1) - x,
    "clamp_max_min": lambda m, x: torch.clamp(x, -0.5, 0.7) + torch.maximum(x, x * 0.5) + torch.minimum(x, -x),
    "reductions": lambda m, x: x.sum(1, keepdim=True) + x.mean(dim=1, keepdim=True) + x.amax(1, keepdim=True),
    "layer_norm": lambda m, x: m.ln(m.lin(x)),
    "normalize": lambda m, x: F.normalize(m.lin(x), dim=1),
    "views": lambda m, x: x.view(-1, 2, 3).transpose(1, 2).reshape(x.shape[0], 6).flatten(1),
    "squeeze_unsqueeze_permute": lambda m, x: x.unsqueeze(1).permute(0, 2, 1).squeeze(2),
    "cat_stack": lambda m, x: torch.cat([x, torch.stack([x[:, 0], x[:, 1]], dim=1)], dim=1),
    "slice_select": lambda m, x: x[:, 1:4] * x[:, 2:3] + x.select(1, 5).unsqueeze(1),
    "index_const": lambda m, x: x[:, m.idx] + torch.index_select(x, 1, m.idx),
    "matmul_bmm_mm": lambda m, x: torch.bmm(x.view(-1, 2, 3), x.view(-1, 3, 2)).flatten(1)
    + (x @ m.lin.weight.t())[:, :4],
    "expand": lambda m, x: x[:, :1].expand(-1, 6) * x,
    "addmm": lambda m, x: torch.addmm(m.lin.bias, x, m.lin.weight.t()),
}


@pytest.mark.parametrize("case", sorted(DENSE_CASES))
def test_dense_op_family_matches_pytorch_at_other_batch_sizes(case):
    torch.manual_seed(0)
    m = Dense(DENSE_CASES[case]).eval()
    g = import_model(m, (torch.randn(4, 6),))
    for batch in (1, 7, 33):
        x = torch.randn(batch, 6)
        got = run_graph(g, [x.numpy()])[0]
        np.testing.assert_allclose(got, torch_out(m, (x,)), rtol=2e-5, atol=1e-6, err_msg=f"batch {batch}")


class Bags(nn.Module):
    """Embedding bags in every mode, with per-sample weights and padding_idx, plus nn.Embedding."""

    def __init__(self):
        super().__init__()
        self.sum = nn.EmbeddingBag(20, 5, mode="sum", include_last_offset=True)
        self.mean = nn.EmbeddingBag(20, 5, mode="mean", include_last_offset=True, padding_idx=3)
        self.max = nn.EmbeddingBag(20, 5, mode="max", include_last_offset=True)
        self.wsum = nn.EmbeddingBag(20, 5, mode="sum", include_last_offset=True)
        self.emb = nn.Embedding(20, 5)

    def forward(self, idx, off, psw, ids):
        return torch.cat([self.sum(idx, off), self.mean(idx, off), self.max(idx, off),
                          self.wsum(idx, off, per_sample_weights=psw), self.emb(ids).sum(1)], dim=1)


def _bag_inputs(batch, dtype, rng):
    lengths = rng.integers(0, 5, size=batch)
    lengths[0] = 0                                     # an empty bag
    off = np.concatenate([[0], np.cumsum(lengths)])
    idx = rng.integers(0, 20, size=off[-1])
    if len(idx) > 3:
        idx[1] = idx[0]                                # duplicates
        idx[2] = 3                                     # the padding row
    ids = rng.integers(0, 20, size=(batch, 2))
    return (torch.tensor(idx, dtype=dtype), torch.tensor(off, dtype=dtype),
            torch.tensor(rng.random(len(idx)), dtype=torch.float32), torch.tensor(ids))


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32])
def test_embedding_bag_modes_weights_padding_and_empty_bags_match_pytorch(dtype):
    torch.manual_seed(0)
    m = Bags().eval()
    rng = np.random.default_rng(0)
    g = import_model(m, _bag_inputs(4, dtype, np.random.default_rng(1)))
    assert len(g.nodes_of(Op.EMBEDDING_BAG)) == 4 and len(g.nodes_of(Op.EMBEDDING)) == 1
    for batch in (1, 6, 40):
        args = _bag_inputs(batch, dtype, rng)
        got = run_graph(g, flat(args))[0]
        np.testing.assert_allclose(got, torch_out(m, args), rtol=1e-5, atol=1e-6)


class Unsupported(nn.Module):
    def forward(self, x):
        return torch.cumsum(x, dim=1)


def test_unsupported_op_error_names_the_op_and_the_source_line():
    with pytest.raises(FrontendError) as e:
        import_model(Unsupported(), (torch.randn(4, 3),))
    msg = str(e.value)
    assert "aten::cumsum" in msg
    assert "test_import_ops.py" in msg and "torch.cumsum(x, dim=1)" in msg


def test_tracing_with_batch_one_is_refused_with_advice():
    m = Bags().eval()
    args = _bag_inputs(1, torch.int64, np.random.default_rng(0))
    with pytest.raises(FrontendError, match="at least 2"):
        import_model(m, args)
