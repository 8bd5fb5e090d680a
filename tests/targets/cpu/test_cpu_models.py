"""Numerical equality of cpu-compiled models with PyTorch eager (fp32, rtol 1e-4)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import xrec
from xrec import zoo
from xrec.config import knobs
from xrec.targets.cpu.isa import best_isa
from xrec.testing import check_model, edge_case_inputs

from .conftest import needs_cpu

pytestmark = needs_cpu
ZOO = ["dlrm-small", "dlrm-v2", "dcn-v2", "deepfm", "wide-deep", "two-tower"]
TOL = {"rtol": 1e-4, "atol": 1e-6}


@pytest.mark.parametrize("name", ZOO)
def test_zoo_model_matches_pytorch(compiled_zoo, name):
    """Batches 1, 7, 64 with int64 and int32 ids, empty bags, duplicates, ids 0 and rows-1, an all-empty feature."""
    cm, model = compiled_zoo(name)
    check_model(cm, model, edge_case_inputs(model), **TOL)


@pytest.mark.parametrize("name", ["dlrm-small", "dcn-v2"])
def test_large_batches(compiled_zoo, name):
    cm, model = compiled_zoo(name)
    cases = [zoo.make_inputs(model, b, seed=b, index_dtype=dt, empty_bag_prob=0.1)
             for b, dt in ((512, torch.int64), (2048, torch.int32))]
    check_model(cm, model, cases, **TOL)


@pytest.mark.parametrize("isa", ["avx512", "avx2", "scalar"])
def test_every_isa_path(compiled_zoo, tmp_path, isa):
    """One artifact with all three builds; each path forced through the knob must give the same answers."""
    from xrec.targets.cpu.isa import supported
    if not supported(isa):
        pytest.skip(f"this CPU cannot run {isa}")
    cm, model = compiled_zoo("dlrm-small", "auto")
    assert cm.manifest["target_info"]["isas"] == ["avx512", "avx2", "scalar"]
    with knobs.override(cpu_isa=isa):
        forced = xrec.load(cm.path)
    assert forced._run.isa == isa
    check_model(forced, model, edge_case_inputs(model, batches=(1, 7, 64)), **TOL)
    check_model(forced, model, [zoo.make_inputs(model, 300, seed=3)], **TOL)


# ---------------------------------------------------------------- hand-written models with odd dims
class OddModel(nn.Module):
    """dim 13 tables (sum with per-sample weights, mean with padding_idx, max), hidden 37, layer norm,
    gelu/tanh/silu, a reduction and broadcasts: every remainder path of the vector loops."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.e_sum = nn.EmbeddingBag(50, 13, mode="sum", include_last_offset=True)
        self.e_mean = nn.EmbeddingBag(40, 13, mode="mean", include_last_offset=True, padding_idx=3)
        self.e_max = nn.EmbeddingBag(30, 13, mode="max", include_last_offset=True)
        self.bottom = nn.Sequential(nn.Linear(7, 37), nn.GELU(), nn.Linear(37, 13), nn.Tanh())
        self.norm = nn.LayerNorm(52)
        self.top = nn.Sequential(nn.Linear(52, 37), nn.SiLU(), nn.Linear(37, 3))
        self.scale = nn.Parameter(torch.randn(3, generator=g))
        for p in self.parameters():
            with torch.no_grad():
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)

    def forward(self, dense, i0, o0, w0, i1, o1, i2, o2):
        x = self.bottom(dense)
        a = self.e_sum(i0, o0, per_sample_weights=w0)
        b = self.e_mean(i1, o1)
        c = self.e_max(i2, o2)
        h = self.norm(torch.cat([x, a, b, c], dim=1))
        y = self.top(h) * self.scale
        return torch.sigmoid(y - y.mean(dim=1, keepdim=True)), h.abs().amax(dim=1)


def _odd_inputs(batch: int, seed: int, dtype=torch.int64):
    g = torch.Generator().manual_seed(seed)
    out = [torch.randn(batch, 7, generator=g)]
    for rows, with_w in ((50, True), (40, False), (30, False)):
        lengths = torch.randint(0, 5, (batch,), generator=g)
        lengths[::3] = 0 if batch > 2 else lengths[::3]
        off = torch.zeros(batch + 1, dtype=torch.int64)
        off[1:] = torch.cumsum(lengths, 0)
        ids = torch.randint(0, rows, (int(off[-1]),), generator=g)
        if rows == 40 and len(ids) > 2:
            ids[:2] = 3                      # padding ids
        out += [ids.to(dtype), off.to(dtype)]
        if with_w:
            out.append(torch.rand(len(ids), generator=g))
    return tuple(out)


@pytest.fixture(scope="module")
def odd_compiled(tmp_path_factory):
    model = OddModel().eval()
    cm = xrec.compile(model, _odd_inputs(8, 0), target="cpu", options={"isa": best_isa()},
                      out=tmp_path_factory.mktemp("odd") / "odd.xrec")
    return cm, model


def test_odd_dims(odd_compiled):
    cm, model = odd_compiled
    cases = [_odd_inputs(b, s, dt) for b, s, dt in ((1, 1, torch.int64), (7, 2, torch.int32), (64, 3, torch.int64),
                                                     (130, 4, torch.int32))]
    check_model(cm, model, cases, **TOL)


def test_odd_dims_source_is_readable(odd_compiled):
    cm, _ = odd_compiled
    src = (cm.path / "src" / "model.cpp").read_text()
    assert src.startswith("// OddModel: model code")
    assert "layer_norm" in src and "xk::linear(" in src and "gen::pool_feature(" in src    # the bag kernel, per tile
    assert "kc::POOL_MAX" in src and "kc::POOL_MEAN" in src


# ---------------------------------------------------------------- quantized and fp16 tables
@pytest.mark.parametrize("fmt", ["rowwise_i8", "rowwise_i4", "rowwise_i2", "f16", "bf16"])
def test_table_row_formats(tmp_path, fmt):
    """The bag kernel's row formats, through an IR whose tables are quantized (vs the IR interpreter)."""
    from xrec.api import lower
    from xrec.ir import Op, TensorType
    from xrec.ir.interpreter import run_graph
    from xrec.ir.quant import quantize_rows
    from xrec.ir.types import DType
    from xrec.runtime.inputs import random_flat_inputs
    from xrec.testing import zoo_model
    model = zoo_model("dlrm-small", 300)
    g = lower(model, zoo.example_inputs(model), target="reference")[0]
    group = g.nodes_of(Op.EMBEDDING_BAG_GROUP)[0]
    tables = {group.inputs[p] for p in range(0, len(group.inputs), 2)}
    params = dict(g.params)
    nodes = []
    for n in g.nodes:
        if n.name in tables:
            arr = params[n.attr("name")]
            if fmt == "f16":
                params[n.attr("name")] = arr.astype(np.float16)
                n = n.with_(type=TensorType(arr.shape, DType.F16))
            elif fmt == "bf16":
                from xrec.ir.quant import bf16_bits
                params[n.attr("name")] = bf16_bits(arr)
                n = n.with_(type=TensorType(arr.shape, DType.BF16))
            else:
                q = quantize_rows(arr, fmt)
                params[n.attr("name")] = q
                n = n.with_(type=TensorType(q.shape, DType.U8, fmt))
        nodes.append(n)
    gq = g.with_(nodes=tuple(nodes), params=params)
    cm = xrec.compile(gq, target="cpu", options={"isa": best_isa()}, out=tmp_path / "q.xrec")
    for batch in (1, 33):
        flat = random_flat_inputs(gq, cm.manifest["signature"]["features"], batch, seed=batch)
        want = run_graph(gq, flat)
        got = cm.run_flat(flat)
        np.testing.assert_allclose(got[0], want[0], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("quantize", ["int8", "int4", "int2", "fp16", "bf16"])
def test_quantized_tables_from_the_compression_pipeline(tmp_path, quantize):
    """xrec.compile(..., quantize=...) on cpu: the generated code equals the IR interpreter on the same IR."""
    from xrec.ir.interpreter import run_graph
    from xrec.testing import zoo_model
    model = zoo_model("dlrm-small", 300)
    cm = xrec.compile(model, zoo.example_inputs(model), target="cpu", quantize=quantize,
                      options={"isa": best_isa()}, out=tmp_path / "q.xrec")
    for batch in (1, 40):
        flat = cm._validator(cm.flatten_inputs(zoo.make_inputs(model, batch, seed=batch), {})[0])
        np.testing.assert_allclose(cm.run_flat(flat)[0], run_graph(cm.graph, flat)[0], rtol=1e-4, atol=1e-6)


# ---------------------------------------------------------------- the generic loops
class Generic(nn.Module):
    """Offsets without the last entry, nn.Embedding, bmm, x @ W, permute/reshape/strided slice, clamp."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(1)
        self.bag = nn.EmbeddingBag(20, 6, mode="sum")
        self.emb = nn.Embedding(15, 6)
        self.w = nn.Parameter(torch.randn(6, 5, generator=g))
        self.v = nn.Parameter(torch.randn(3, 6, generator=g))

    def forward(self, ids, off, tok):
        a = self.bag(ids, off)
        t = self.emb(tok)
        s = torch.bmm(t, t.transpose(1, 2))
        y = (t.sum(dim=1) + a) @ self.w
        z = t.permute(0, 2, 1).reshape(t.shape[0], -1)[:, ::2]
        return torch.cat([y, s.flatten(1), z, (a * self.v[1]).clamp(min=-0.5)], dim=1)


def _generic_inputs(batch: int, seed: int, dtype=torch.int64):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(0, 4, (batch,), generator=g)
    off = torch.zeros(batch, dtype=torch.int64)
    off[1:] = torch.cumsum(lengths, 0)[:-1]
    ids = torch.randint(0, 20, (int(lengths.sum()),), generator=g)
    return ids.to(dtype), off.to(dtype), torch.randint(0, 15, (batch, 4), generator=g)


def test_generic_ops(tmp_path):
    model = Generic().eval()
    cm = xrec.compile(model, _generic_inputs(6, 0), target="cpu", options={"isa": best_isa()},
                      out=tmp_path / "g.xrec")
    check_model(cm, model, [_generic_inputs(b, b, dt) for b, dt in ((1, torch.int64), (7, torch.int32),
                                                                   (100, torch.int64))], **TOL)
    bad = list(_generic_inputs(3, 1))
    bad[2][1, 2] = 15
    with pytest.raises(xrec.runtime.validate.InputError, match=r"input '.*': index 15 in row 1 is out of range for a table of 15 rows"):
        xrec.load(cm.path, validate=False)(*bad)


class ViewOutput(nn.Module):
    """An output that is a view of an early value, read only by the final copy: its buffer must stay live."""

    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = nn.Linear(8, 24), nn.Linear(24, 40), nn.Linear(40, 24)

    def forward(self, x):
        h = torch.relu(self.a(x))
        late = self.c(torch.relu(self.b(h)))
        return h.reshape(h.shape[0], 4, 6)[:, 1:], late * 2.0


def test_view_outputs_keep_their_buffer(tmp_path):
    model = ViewOutput().eval()
    cm = xrec.compile(model, (torch.randn(4, 8),), target="cpu", options={"isa": best_isa()}, out=tmp_path / "v.xrec")
    check_model(cm, model, [(torch.randn(b, 8),) for b in (1, 9, 70)], **TOL)
