"""Whole models through xrec.compile(target="triton") on CPU tensors (Triton's interpreter) vs PyTorch,
and what the lowering makes of them."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import xrec
from xrec import zoo
from xrec.runtime.validate import InputError
from xrec.targets import get_target
from xrec.targets.triton.program import Program
from xrec.testing import check_model, edge_case_inputs

from .conftest import compiled_zoo

TOL = get_target("triton").tolerances
ZOO = zoo.list_models()


def program(cm) -> Program:
    return Program.from_json((cm.path / "src" / "program.json").read_text())


@pytest.mark.parametrize("name", ZOO)
def test_zoo_model_matches_pytorch_in_the_interpreter_on_edge_cases(name):
    m, cm = compiled_zoo(name)
    # dlrm-v2's dense layers (3456-wide cross layers, 1024-wide MLP) are slow in the interpreter: one batch
    batches = (7,) if name == "dlrm-v2" else (1, 7)
    check_model(cm, m, edge_case_inputs(m, batches=batches), **TOL)


@pytest.mark.parametrize("name", ["dlrm-small", "deepfm", "two-tower"])
def test_zoo_model_matches_pytorch_with_the_gpu_tile_configs_in_the_interpreter(name):
    m, cm = compiled_zoo(name)
    model = cm._run.model
    model.interp_tiles = False
    try:
        for batch, seed in ((5, 1),):       # (the large-batch linear tiles are tested per kernel)
            dense, idx, off = zoo.make_inputs(m, batch, seed=seed, empty_bag_prob=0.2)
            with torch.no_grad():
                torch.testing.assert_close(model(dense, *idx, *off)[0], m(dense, idx, off), **TOL)
    finally:
        model.interp_tiles = True


@pytest.mark.parametrize("name", ZOO)
def test_zoo_model_runs_every_op_as_a_triton_kernel_with_one_embedding_launch(name):
    _, cm = compiled_zoo(name)
    prog = program(cm)
    assert not prog.torch_steps(), [s.note for s in prog.torch_steps()]
    kernels = [s.kernel for s in prog.launches()]
    assert kernels.count("embedding_bag_group_kernel") == 1          # every table, one launch
    elementwise = [k for k in kernels if k.startswith("ew_")]
    assert len(elementwise) <= 1                                    # the elementwise tail is one fused kernel


def test_dlrm_small_is_eight_launches_with_the_interaction_fused_into_its_concat():
    _, cm = compiled_zoo("dlrm-small")
    prog = program(cm)
    assert [s.kernel for s in prog.launches()] == ["linear_kernel"] * 3 + [
        "embedding_bag_group_kernel", "interaction_kernel"] + ["linear_kernel"] * 3
    inter = next(s for s in prog.launches() if s.kernel == "interaction_kernel")
    assert inter.variants[0].constexprs["PREFIX"] is True and inter.variants[0].constexprs["P"] == 351
    # the bottom MLP and the embeddings write straight into the interaction's input (no concat copy)
    bottom, bags = prog.launches()[2], prog.launches()[3]
    t_arg = next(a for a in inter.args if a.name == "T")
    y = next(a for a in bottom.args if a.name == "Y")
    out = next(a for a in bags.args if a.name == "OUT")
    assert y.view.buf == out.view.buf == t_arg.view.buf
    assert (y.view.offset, out.view.offset) == (0, 64)


def test_generated_sources_are_in_the_artifact_with_their_specialisation():
    _, cm = compiled_zoo("two-tower")
    src = (cm.path / "src" / "xrec_triton_kernels.py").read_text()
    prog = program(cm)
    ew = [s for s in prog.launches() if s.kernel.startswith("ew_")]
    assert len(ew) == 1 and f"def {ew[0].kernel}(" in src
    assert "norm" in ew[0].note and "sigmoid" in ew[0].note          # the whole normalize-dot-sigmoid tail
    meta = next(b for b in prog.buffers.values() if b.name.startswith("meta_"))
    maxes = [meta.data[k * 10 + 4] for k in range(meta.shape[0])]
    assert maxes.count(2) == 2                                      # two max-pooled features, as in the model


def test_compiled_model_is_a_callable_on_torch_tensors():
    m, cm = compiled_zoo("deepfm")
    model = cm._run.model
    dense, idx, off = zoo.make_inputs(m, 3, seed=2)
    flat = [dense] + list(idx) + list(off)
    out = model(*flat)
    assert isinstance(out[0], torch.Tensor) and out[0].shape == (3, 1)
    with torch.no_grad():
        torch.testing.assert_close(out[0], m(dense, idx, off), **TOL)


def test_out_of_range_ids_and_bad_offsets_are_input_errors_in_the_words_of_every_target():
    m, cm = compiled_zoo("dlrm-small")
    model = cm._run.model          # below CompiledModel's own host-side validation
    dense, idx, off = zoo.make_inputs(m, 4, seed=3)
    idx = [i.clone() for i in idx]
    idx[5][2] = 10_000
    with pytest.raises(InputError, match=r"feature 'indices\[5\]': index 10000 at position 2 is out of range for its "
                                         r"table of \d+ rows"):
        model(dense, *idx, *off)
    idx[5][2] = 0
    with pytest.raises(InputError, match=r"input 'offsets\[3\]': shape \(4,\), expected \[B \+ 1\] = \(5,\)"):
        model(dense, *idx, *off[:3], off[3][:-1], *off[4:])
    off = [o.clone() for o in off]
    off[7][2] = off[7][1] - 1 if off[7][1] > 0 else 5
    off[7][3] = max(int(off[7][3]), 0)
    with pytest.raises(InputError, match=r"feature 'indices\[7\]': offsets decrease at position 2"):
        model(dense, *idx, *off)
    off = [o.clone() for o in zoo.make_inputs(m, 4, seed=3)[2]]
    n = int(off[6][-1])
    off[6][-1] = n - 1                 # ends before len(indices): the last ids would be dropped silently
    with pytest.raises(InputError, match=rf"feature 'indices\[6\]': offsets end at {n - 1} but indices holds {n} "
                                         r"ids \(offsets\[-1\] must equal len\(indices\)\)"):
        model(dense, *idx, *off)
    off[6][-1] = n
    off[6][0] = 1
    with pytest.raises(InputError, match=r"feature 'indices\[6\]': offsets must start at 0, got 1"):
        model(dense, *idx, *off)


@pytest.mark.parametrize("plan", [
    {"indices[0]": "int8", "indices[1]": "int4", "indices[2]": "int2", "indices[3]": "fp16", "indices[4]": "bf16",
     "*": "fp32"},
    "int4",
])
def test_quantized_tables_match_the_reference_interpreter(plan):
    from xrec.passes import run_pipeline
    m, cm = compiled_zoo("dlrm-small")
    g = run_pipeline(cm.graph, ["quantize_embeddings"], options={"quantize_embeddings": {"precision": plan}})
    ct = xrec.compile(g, target="triton", options={"aot": False})
    ref = xrec.compile(g, target="reference")
    kinds = {s.variants[0].constexprs["KIND"] for s in program(ct).launches()
             if s.kernel == "embedding_bag_group_kernel"}
    assert kinds == ({0, 1, 2, 3, 4, 5} if isinstance(plan, dict) else {3})
    for args in edge_case_inputs(m, batches=(1, 6)):
        torch.testing.assert_close(ct(*args), ref(*args), **TOL)


def test_compile_with_quantize_goes_through_the_compression_pipeline():
    m = compiled_zoo("dlrm-small")[0]
    ct = xrec.compile(m, zoo.example_inputs(m), target="triton", options={"aot": False}, quantize="int8",
                      calib_samples=32)
    assert {s.variants[0].constexprs["KIND"] for s in program(ct).launches()
            if s.kernel == "embedding_bag_group_kernel"} == {2}
    args = zoo.make_inputs(m, 3, seed=9)
    torch.testing.assert_close(ct(*args), xrec.compile(ct.graph, target="reference")(*args), **TOL)


def test_pruned_and_pruned_quantized_tables_match_the_reference_interpreter():
    from xrec.passes import run_pipeline
    m, cm = compiled_zoo("dlrm-small")
    keep = {"indices[0]": np.arange(0, 100, 2), "indices[3]": np.array([1, 5, 7]), "indices[9]": np.arange(60)}
    g = run_pipeline(cm.graph, ["prune_embeddings"], options={"prune_embeddings": {"keep": keep}})
    g = run_pipeline(g, ["quantize_embeddings"], options={"quantize_embeddings": {
        "precision": {"indices[3]": "int8", "indices[9]": "int4", "*": "fp32"}}})
    ct = xrec.compile(g, target="triton", options={"aot": False})
    ref = xrec.compile(g, target="reference")
    assert sum(bool(s.variants[0].constexprs.get("HAS_REMAP")) for s in program(ct).launches()) == 3
    for args in edge_case_inputs(m, batches=(1, 6)):
        torch.testing.assert_close(ct(*args), ref(*args), **TOL)


class Tail(nn.Module):
    """Dense work the zoo does not use: every fusible elementwise op, row reductions, a bias vector,
    plus ops that stay in torch (layer norm, a batched matmul through a permute)."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(13, 12)
        self.scale = nn.Parameter(torch.randn(12))
        self.ln = nn.LayerNorm(12)

    def forward(self, x):
        h = self.lin(x)
        a = F.gelu(h) * self.scale + torch.tanh(h) - F.silu(h) + F.gelu(h, approximate="tanh")
        b = torch.clamp(torch.exp(-h.abs()), min=0.1, max=0.9) / torch.sqrt(1.0 + h * h)
        c = torch.maximum(a, b) + torch.minimum(a, b) ** 2 - torch.rsqrt(1.0 + h * h) + torch.log(1.0 + h.abs())
        s = c.mean(dim=1, keepdim=True) + c.amax(dim=-1, keepdim=True) - torch.linalg.vector_norm(c, dim=1,
                                                                                                 keepdim=True)
        g = self.ln(c) + torch.sigmoid(-s) - torch.relu(h).sum(1, keepdim=True) / 12
        p = g.reshape(-1, 3, 4)
        return torch.matmul(p, p.permute(0, 2, 1)).reshape(-1, 9) + s


def test_custom_dense_model_fuses_elementwise_work_and_runs_the_rest_in_torch():
    model = Tail().eval()
    x = torch.randn(6, 13)
    cm = xrec.compile(model, (x,), target="triton", options={"aot": False})
    prog = program(cm)
    ew = [s for s in prog.launches() if s.kernel.startswith("ew_")]
    sizes = sorted(len(s.note.split(": ")[-1].split(",")) for s in ew)
    assert len(ew) == 3 and sizes[-1] >= 30      # split only by the torch steps; the big tail is one kernel
    torch_ops = {cm.graph.node(s.node).op.value for s in prog.torch_steps() if s.node}
    assert "layer_norm" in torch_ops and "matmul" in torch_ops
    for batch in (1, 5, 33):
        xb = torch.randn(batch, 13)
        with torch.no_grad():
            torch.testing.assert_close(cm(xb), model(xb), **TOL)


class Lookup(nn.Module):
    def __init__(self):
        super().__init__()
        self.e = nn.Embedding(20, 6)
        self.lin = nn.Linear(6, 1)

    def forward(self, ids):
        return torch.sigmoid(self.lin(self.e(ids).sum(1)))


@pytest.mark.parametrize("precision", ["int8", "int4", "bf16", "fp16"])
def test_plain_lookups_of_quantized_tables_run_in_torch_with_the_irs_dequantization(precision):
    from xrec.passes import run_pipeline
    cm = _lookup_compiled()
    g = run_pipeline(cm.graph, ["quantize_embeddings"], options={"quantize_embeddings": {"precision": precision}})
    ct = xrec.compile(g, target="triton", options={"aot": False})
    ref = xrec.compile(g, target="reference")
    x = torch.randint(0, 20, (5, 3), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(ct(x), ref(x), **TOL)


_LOOKUP = []


def _lookup_compiled():
    if not _LOOKUP:
        torch.manual_seed(0)
        _LOOKUP.append(xrec.compile(Lookup().eval(), (torch.randint(0, 20, (4, 3)),), target="triton",
                                    options={"aot": False}))
    return _LOOKUP[0]


def test_target_options_are_validated_and_the_interpreter_is_chosen_without_a_gpu():
    t = get_target("triton")
    with pytest.raises(ValueError, match=r"(?s)unknown option\(s\) 'warps'.*precision.*cuda_graphs"):
        t.parse_options({"warps": 8})
    with pytest.raises(ValueError, match="choose one of tf32x3, ieee, tf32"):
        t.parse_options({"precision": "bf16"})
    assert t.parse_options({}).arch_list == [80, 90]
    from xrec.targets.triton.runtime import resolve_mode
    assert resolve_mode("interpret") is True
    if not torch.cuda.is_available():
        assert resolve_mode("auto") is True
        with pytest.raises(RuntimeError, match="no CUDA device"):
            resolve_mode("gpu")
