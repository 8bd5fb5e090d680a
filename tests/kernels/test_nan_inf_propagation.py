"""NaN and +-inf pass through every activation and every max/min/clamp exactly as in PyTorch, on every target
and (cpu) every ISA path: in the fused linear epilogue (vector lanes and the tail columns), in elementwise code,
and through a whole zoo model given a NaN in ``dense``.

One documented exception: PyTorch's CPU ``gelu`` (erf form) returns NaN for +inf (an artefact of its vectorized
erf); xrec returns the limit, +inf. That single value is checked to be +inf; everything else must equal PyTorch
bit-for-bit in its NaN/inf positions and to 1e-5 elsewhere."""
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import xrec
from xrec.targets import get_target

NAN, INF = float("nan"), float("inf")
BIG = 3.0e38   # finite; 2 * BIG overflows to +-inf inside the linear layer (so inf reaches the epilogue)

ACTS = {
    "relu": F.relu,
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "gelu": F.gelu,
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "silu": F.silu,
    "hardtanh": F.hardtanh,
    "clamp": lambda x: x.clamp(-0.5, 2.0),
    "clamp_min": lambda x: x.clamp(min=0.25),
    "maximum": lambda x, c: torch.maximum(x, c),
    "maximum_rev": lambda x, c: torch.maximum(c, x),
    "minimum": lambda x, c: torch.minimum(x, c),
    "minimum_rev": lambda x, c: torch.minimum(c, x),
    "amax": lambda x: torch.amax(x, dim=-1, keepdim=True),
}
BINARY = ("maximum", "maximum_rev", "minimum", "minimum_rev")
EPILOGUE_ACTS = ("relu", "sigmoid", "tanh", "gelu", "gelu_tanh", "silu")
WIDTH = 24   # one full AVX-512 vector + an 8-column tail (three AVX2 vectors; scalar path: any)


def _targets():
    out = []
    for name in ("reference", "xla", "triton"):
        ok, why = get_target(name).available()
        out.append(pytest.param(name, None, marks=pytest.mark.skipif(not ok, reason=f"{name}: {why}"), id=name))
    ok, why = get_target("cpu").available()
    if ok:
        from xrec.targets.cpu.isa import ISAS, best_isa, RANK
        isas = [i for i in ISAS if RANK[i] <= RANK[best_isa()]]
    else:
        isas = ["scalar"]
    for isa in isas:
        out.append(pytest.param("cpu", isa, marks=pytest.mark.skipif(not ok, reason=f"cpu: {why}"), id=f"cpu-{isa}"))
    return out


TARGETS = _targets()


class Elementwise(nn.Module):
    """Each activation applied directly to the input (elementwise code, no linear layer); max/min against a
    constant row holding NaN, +-inf and ordinary values, in both operand orders."""

    def __init__(self):
        super().__init__()
        c = torch.linspace(-2, 2, WIDTH)
        c[0], c[5], c[9], c[16], c[20] = NAN, INF, -INF, NAN, 0.0
        self.register_buffer("c", c)

    def forward(self, x):
        return tuple(f(x, self.c) if name in BINARY else f(x) for name, f in ACTS.items())


class Epilogues(nn.Module):
    """Linear(2*I) followed by each activation: the activation runs in the linear layer's epilogue."""

    def __init__(self):
        super().__init__()
        self.lins = nn.ModuleList(nn.Linear(WIDTH, WIDTH) for _ in EPILOGUE_ACTS)
        with torch.no_grad():
            for lin in self.lins:
                lin.weight.copy_(2.0 * torch.eye(WIDTH))
                lin.bias.zero_()

    def forward(self, x):
        return tuple(ACTS[a](lin(x)) for a, lin in zip(EPILOGUE_ACTS, self.lins))


def _special_rows(values) -> torch.Tensor:
    """Rows over WIDTH columns: ordinary values with the given specials spread over vector lanes and the tail."""
    rng = np.random.default_rng(0)
    rows = []
    for k, v in enumerate(values):
        r = rng.uniform(-3, 3, WIDTH).astype(np.float32)
        for col in (k % 5, 7 + k % 3, 15, 16 + k % 8, WIDTH - 1):
            r[col] = v
        rows.append(r)
    rows.append(np.float32([-100, 100, -90, 90, 0, -0.0, 1e-30, -1e-30] * 3))   # exp over/underflow, zeros
    return torch.from_numpy(np.stack(rows))


def _compile(model, x, target, isa, tmp_path):
    opts = {"isa": isa} if isa else None
    return xrec.compile(model.eval(), (x,), target=target, options=opts, out=tmp_path / "m.xrec")


def _assert_like_torch(got, want, name, gelu_pos_inf_ok=None):
    got = np.asarray(got, dtype=np.float32)
    want = want.numpy()
    if gelu_pos_inf_ok is not None:   # the one documented exception (see module docstring)
        sel = gelu_pos_inf_ok & np.isnan(want)
        assert np.all(np.isposinf(got[sel])), f"{name}: gelu(+inf) should be +inf, got {got[sel]}"
        want = np.where(sel, np.float32(INF), want)
    for what, fn in (("NaN", np.isnan), ("+inf", np.isposinf), ("-inf", np.isneginf)):
        bad = np.argwhere(fn(got) != fn(want))
        assert bad.size == 0, (f"{name}: {what} positions differ from PyTorch at {bad[:5].tolist()}: "
                               f"got {got[tuple(bad[0])]}, torch {want[tuple(bad[0])]}")
    fin = np.isfinite(want)
    np.testing.assert_allclose(got[fin], want[fin], rtol=1e-5, atol=1e-5, err_msg=name)


@pytest.mark.parametrize("target,isa", TARGETS)
def test_elementwise_activations_and_max_min_clamp_propagate_nan_and_inf_like_torch(target, isa, tmp_path):
    x = _special_rows([NAN, INF, -INF, NAN])
    model = Elementwise()
    cm = _compile(model, x, target, isa, tmp_path)
    with torch.no_grad():
        want = model(x)
    got = cm(x)
    for name, g, w in zip(ACTS, got, want):
        _assert_like_torch(g, w, f"{target}/{isa} {name}",
                           gelu_pos_inf_ok=np.isposinf(x.numpy()) if name == "gelu" else None)


@pytest.mark.parametrize("target,isa", TARGETS)
def test_linear_epilogue_activations_propagate_nan_and_inf_like_torch(target, isa, tmp_path):
    x = _special_rows([NAN, BIG, -BIG, NAN])   # 2 * +-BIG = +-inf after the linear layer
    model = Epilogues()
    cm = _compile(model, x, target, isa, tmp_path)
    with torch.no_grad():
        want = model(x)
        pre = model.lins[0](x).numpy()
    got = cm(x)
    for name, g, w in zip(EPILOGUE_ACTS, got, want):
        _assert_like_torch(g, w, f"{target}/{isa} linear+{name}",
                           gelu_pos_inf_ok=np.isposinf(pre) if name == "gelu" else None)


@pytest.mark.parametrize("target,isa", TARGETS)
def test_zoo_model_with_nan_in_dense_gives_nan_scores_where_torch_does(target, isa, tmp_path):
    from xrec import zoo
    from xrec.testing import zoo_model
    model = zoo_model("dlrm-small", 300).eval()
    dense, idx, offs = zoo.make_inputs(model, 5, seed=1)
    dense = dense.clone()
    dense[1, 3] = NAN
    dense[3, 0] = INF
    opts = {"isa": isa} if isa else None
    cm = xrec.compile(model, zoo.example_inputs(model), target=target, options=opts, out=tmp_path / "z.xrec")
    with torch.no_grad():
        want = model(dense, idx, offs)
    got = np.asarray(cm(dense, idx, offs)).reshape(want.shape)
    assert np.isnan(want.numpy()).any(), "the NaN row must give NaN in PyTorch (test premise)"
    _assert_like_torch(got, want, f"{target}/{isa} dlrm-small")


class _MaxBags(nn.Module):
    """Two max-pooled bags over tables holding NaN and +-inf rows: ``a`` (dim 16, long bags) and ``b`` (dim 64)."""

    def __init__(self):
        super().__init__()
        self.a = nn.EmbeddingBag(12, 16, mode="max")
        self.b = nn.EmbeddingBag(12, 64, mode="max")
        with torch.no_grad():
            for bag in (self.a, self.b):
                w = bag.weight
                w.uniform_(-2, 2)
                w[1] = NAN                          # a NaN row
                w[2] = INF
                w[3] = -INF
                w[4, ::3] = NAN                     # NaN in some columns only
                w[5, 1::4] = INF
                w[5, 2::4] = -INF

    def forward(self, ia, oa, ib, ob):
        return torch.cat([self.a(ia, oa), self.b(ib, ob)], dim=1)


def _max_bag_inputs():
    # NaN first, last and in the middle of a bag (every partial-sum lane of the long bags), NaN with +-inf,
    # +inf and -inf with finite rows, finite only; never a bag of -inf rows only (see the report in the test)
    a = [[1, 6, 7, 8, 9, 10, 11, 0], [6, 7, 8, 9, 10, 11, 0, 1], [6, 7, 8, 1, 9, 10, 11, 0],
         [6, 7, 4, 8, 9, 10, 11, 0], [2, 1, 3, 6, 7, 8, 9, 10], [3, 6, 5, 7, 8, 9, 10, 11],
         [6, 7, 8, 9, 10, 11, 0, 2], [6, 7, 8, 9, 10, 11, 0, 8]]
    b = [[1, 6, 7], [6, 7, 1], [6, 1, 7], [4, 6, 0], [2, 1, 3], [3, 6, 5], [7, 2, 0], [6, 7, 8]]

    def jag(bags):
        ids = torch.tensor([i for bag in bags for i in bag], dtype=torch.int64)
        off = torch.tensor([0] + list(np.cumsum([len(bag) for bag in bags])[:-1]), dtype=torch.int64)
        return ids, off
    return (*jag(a), *jag(b))


@pytest.mark.skipif(not get_target("hls").available()[0], reason=f"hls: {get_target('hls').available()[1]}")
def test_hls_max_pooling_propagates_nan_and_inf_like_torch_maximum(tmp_path):
    """The hls gather kernel's max pooling (C simulation; one-accumulator and partial-sum-lane loops) keeps a NaN
    wherever it is in the bag, as torch.maximum / torch.amax over the bag's rows and the IR interpreter do.
    (PyTorch's own CPU embedding_bag max keeps a NaN only when it comes first in the bag; xrec's definition, the
    interpreter, propagates it.)"""
    from xrec.ir import run_graph
    from xrec.targets.hls.placement import plan_of
    from xrec.targets.hls.spec import kernel_spec
    model = _MaxBags().eval()
    args = _max_bag_inputs()
    cm = xrec.compile(model, args, target="hls", options={"host": "reference", "report_batch": 16},
                      out=tmp_path / "bags.xrec")
    lanes = sorted(t.lanes for t in kernel_spec(cm.graph, plan_of(cm.graph)).tables)
    assert lanes[0] == 1 and lanes[-1] > 1, f"both pooling loops must run (lanes {lanes})"
    got = np.asarray(cm(*args), np.float32)
    want = []
    for bag, (ids, off) in ((model.a, args[:2]), (model.b, args[2:])):
        ends = off.tolist() + [len(ids)]
        want.append(torch.stack([torch.amax(bag.weight.detach()[ids[s:e]], dim=0) for s, e in zip(ends, ends[1:])]))
    want = torch.cat(want, dim=1)
    _assert_like_torch(got, want, "hls max pooling")
    flat = [a.numpy() for a in args]
    _assert_like_torch(got, torch.from_numpy(np.asarray(run_graph(cm.graph, flat)[0], np.float32)),
                       "hls max pooling vs the interpreter")
