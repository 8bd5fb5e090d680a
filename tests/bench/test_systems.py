"""System adapters on a tiny model: each runs and matches eager, or gives a reason naming the stage."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from xrec.bench import systems
from xrec.bench.systems import ModelContext, StageError, Unavailable


class Tiny(nn.Module):
    """One sum-pooled EmbeddingBag, one mean-pooled, a Linear on the concat: the zoo's call convention."""

    def __init__(self, second_mode="mean"):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.a = nn.EmbeddingBag(30, 4, mode="sum", include_last_offset=True, _weight=torch.randn(30, 4, generator=g))
        self.b = nn.EmbeddingBag(20, 4, mode=second_mode, include_last_offset=True,
                                 _weight=torch.randn(20, 4, generator=g))
        self.lin = nn.Linear(10, 1)

    def forward(self, dense, indices: list[torch.Tensor], offsets: list[torch.Tensor]):
        x = torch.cat([dense, self.a(indices[0], offsets[0]), self.b(indices[1], offsets[1])], dim=1)
        return torch.sigmoid(self.lin(x))


def _args(batch, seed):
    g = torch.Generator().manual_seed(seed)
    lens = torch.randint(0, 4, (2, batch), generator=g)
    lens[:, 0] = 2
    offs = [torch.cat([torch.zeros(1, dtype=torch.long), lens[f].cumsum(0)]) for f in range(2)]
    idx = [torch.randint(0, n, (int(offs[f][-1]),), generator=g) for f, n in enumerate((30, 20))]
    return torch.randn(batch, 2, generator=g), idx, offs


@pytest.fixture
def ctx(tmp_path):
    return ModelContext(name="tiny", module=Tiny().eval(), example_inputs=_args(4, 0), threads=1, workdir=tmp_path)


def _check(prepared, module):
    for batch in (1, 7):
        args = _args(batch, batch)
        with torch.inference_mode():
            want = module(*args)
        got = systems.outputs_to_tensor(prepared.fn(*args))
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["eager", "torchscript"])
def test_pytorch_systems_match_eager(name, ctx):
    _check(systems.BASELINES[name].prepare(ctx), ctx.module)


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="this PyTorch has no oneDNN")
def test_eager_onednn_runs_every_linear_on_onednn_and_matches_eager(ctx):
    prepared = systems.BASELINES["eager-onednn"].prepare(ctx)
    _check(prepared, ctx.module)
    kinds = {type(m).__name__ for m in prepared.keep.modules()}
    assert "MkldnnLinear" in kinds and "Linear" not in kinds, kinds
    assert isinstance(ctx.module.lin, nn.Linear), "the baseline must convert a copy, not the caller's module"


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="this PyTorch has no oneDNN")
def test_eager_onednn_matches_eager_on_a_zoo_mlp_model(tmp_path):
    from xrec import zoo
    from xrec.testing import zoo_model
    model = zoo_model("dcn-v2", 300).eval()
    c = ModelContext(name="dcn-v2", module=model, example_inputs=zoo.example_inputs(model), threads=1,
                     workdir=tmp_path)
    prepared = systems.BASELINES["eager-onednn"].prepare(c)
    assert prepared.info["converted_linears"] >= 3
    for batch in (1, 33):
        args = zoo.make_inputs(model, batch, seed=batch)
        with torch.inference_mode():
            want = model(*args)
        torch.testing.assert_close(systems.outputs_to_tensor(prepared.fn(*args)), want, rtol=1e-4, atol=1e-5)


def test_eager_onednn_counts_among_the_fastest_baseline_candidates():
    assert systems.BASELINES["eager-onednn"].kind == "baseline"
    assert "eager-onednn" in systems.parse_baselines("all")
    assert systems.parse_baselines("eager,eager-onednn") == ["eager", "eager-onednn"]


@pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None or importlib.util.find_spec("onnxscript") is None,
                    reason="onnxruntime/onnxscript not installed (bench extra)")
def test_onnxruntime_gather_rewrite_exports_without_loops_and_matches_eager(ctx):
    p = systems.BASELINES["onnxruntime-gather"].prepare(ctx)
    assert "Loop" not in p.info["onnx_ops"] and p.info["spinning"] is False
    _check(p, ctx.module)


@pytest.mark.skipif(importlib.util.find_spec("tvm") is None, reason="apache-tvm not installed (bench extra)")
def test_tvm_plain_export_fails_at_embedding_bag_and_the_gather_rewrite_runs(ctx):
    with pytest.raises(StageError, match="from_exported_program.*_embedding_bag"):
        systems.BASELINES["tvm"].prepare(ctx)
    # sum pooling only: TVM 0.27 leaves the mean rewrite's broadcast division un-legalized (relax.build fails)
    ctx.module = Tiny(second_mode="sum").eval()
    _check(systems.BASELINES["tvm-gather"].prepare(ctx), ctx.module)


def test_missing_package_is_a_reason_not_a_crash(ctx, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(Unavailable, match="not installed.*pip install"):
        systems.BASELINES["onnxruntime"].prepare(ctx)


def test_unavailable_xrec_target_gives_the_targets_own_reason(ctx, monkeypatch):
    import xrec.targets
    monkeypatch.setattr(xrec.targets, "available_targets", lambda: {"reference": "", "cpu": "no g++"})
    with pytest.raises(Unavailable, match="^target cpu not available: no g\\+\\+$"):
        systems.xrec_system("cpu").prepare(ctx)


def test_xrec_reference_target_runs_like_eager(ctx):
    _check(systems.xrec_system("reference").prepare(ctx), ctx.module)


def test_stage_names_where_a_failure_happened():
    with pytest.raises(StageError, match=r"^torch.onnx.export \(dynamo\): ValueError: bad shape$"):
        with systems.stage("torch.onnx.export (dynamo)"):
            raise ValueError("bad shape\nmore detail")


def test_parse_baselines_and_targets():
    assert systems.parse_baselines("eager,tvm") == ["eager", "tvm"]
    assert systems.parse_baselines("none") == []
    assert systems.parse_baselines("all") == list(systems.BASELINES)
    with pytest.raises(ValueError, match="unknown baseline.*known"):
        systems.parse_baselines("eager,mxnet")
    from xrec.targets import known_targets
    assert systems.parse_targets("all") == known_targets()
    assert systems.parse_targets("reference") == ["reference"]
    with pytest.raises(ValueError, match="unknown target"):
        systems.parse_targets("tpu9")
