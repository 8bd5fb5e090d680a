"""The frontend's supported-op claim, measured by PyTorch's own OpInfo samples (issue 23).

Every OpInfo sample of every op README.md claims becomes a one-op module (``OneOp``), compiled for the
``reference`` target and, for a deterministic subset, for ``cpu``. Each sample either matches PyTorch within
the target's tolerance (the rtol/atol the target records in its artifacts) or is refused with a
``FrontendError`` / ``LoweringError`` that names what is unsupported. A wrong answer (value, shape or
dtype) or any other exception fails the test.

The per-op counts and refusal reasons are docs/COVERAGE.md's table; each op's test also checks its row
there, so the table cannot drift from the code. Regenerate it with

    .venv/bin/python tests/frontend/test_opinfo.py --regen

Budget: torch.export is ~0.1 s a sample and a cpu compile ~seconds a model, so long sample lists are
thinned deterministically (``MAX_SAMPLES`` evenly spaced samples per op) and cpu compiles the first
``CPU_SAMPLES`` samples that have a batch dim (a symbolic leading dim; the cpu target runs models over
a batch of rows) and that the reference target matched.
"""
from __future__ import annotations

import logging
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from torch.utils import _pytree as pytree

if __name__ == "__main__":          # --regen: same environment as under pytest
    os.environ.setdefault("XREC_CACHE_DIR", str(Path(__file__).resolve().parents[2] / ".xrec-test-cache"))
    os.environ.setdefault("XREC_QUIET", "1")

import xrec  # noqa: E402
from xrec.frontend import FrontendError  # noqa: E402
from xrec.lowering import LoweringError  # noqa: E402
from xrec.targets import get_target  # noqa: E402

expecttest = pytest.importorskip("expecttest", reason="torch.testing._internal needs expecttest "
                                 "(a test extra: pip install -e '.[test]')")
from torch.testing._internal.common_methods_invocations import op_db  # noqa: E402

logging.getLogger("torch._export.non_strict_utils").setLevel(logging.ERROR)   # "Dim.AUTO ... specialized"
ROOT = Path(__file__).resolve().parents[2]
COVERAGE = ROOT / "docs" / "COVERAGE.md"
MAX_SAMPLES = 12
CPU_SAMPLES = 3

# (OpInfo name, variant, which tensors are the module's parameters rather than its inputs)
# params: "input" (sample.input), an int (position in sample.args), or a kwarg name
OPS: list[tuple[str, str, tuple]] = [
    ("nn.functional.embedding", "", ("input",)),
    ("nn.functional.embedding_bag", "", ("input",)),
    ("nn.functional.linear", "", (0, 1, "bias")),
    ("matmul", "", ()), ("mm", "", ()), ("bmm", "", ()), ("addmm", "", ()),
    ("add", "", ()), ("sub", "", ()), ("mul", "", ()), ("div", "no_rounding_mode", ()), ("pow", "", ()),
    ("rsub", "", ()), ("maximum", "", ()), ("minimum", "", ()),
    ("nn.functional.relu", "", ()), ("sigmoid", "", ()), ("tanh", "", ()), ("nn.functional.gelu", "", ()),
    ("nn.functional.silu", "", ()), ("neg", "", ()), ("exp", "", ()), ("log", "", ()), ("sqrt", "", ()),
    ("rsqrt", "", ()), ("abs", "", ()), ("clamp", "", ()), ("clamp_min", "", ()), ("clamp_max", "", ()),
    ("nn.functional.hardtanh", "", ()), ("square", "", ()), ("reciprocal", "", ()),
    ("eq", "", ()), ("ne", "", ()), ("lt", "", ()), ("le", "", ()), ("gt", "", ()), ("ge", "", ()),
    ("logical_and", "", ()), ("logical_or", "", ()), ("logical_not", "", ()), ("where", "", ()),
    ("masked_fill", "", ()), ("softmax", "", ()), ("softmax", "with_dtype", ()),
    ("full_like", "", ()), ("zeros_like", "", ()), ("ones_like", "", ()),
    ("sum", "", ()), ("mean", "", ()), ("amax", "", ()), ("linalg.vector_norm", "", ()),
    ("nn.functional.normalize", "", ()), ("nn.functional.layer_norm", "", (1, 2, "weight", "bias")),
    ("cat", "", ()), ("stack", "", ()), ("view", "", ()), ("reshape", "", ()), ("flatten", "", ()),
    ("squeeze", "", ()), ("unsqueeze", "", ()), ("permute", "", ()), ("transpose", "", ()), ("t", "", ()),
    ("expand", "", ()), ("expand_as", "", ()), ("narrow", "", ()), ("select", "", ()),
    ("index_select", "", ()), ("nn.functional.dropout", "", ()), ("clone", "", ()), ("contiguous", "", ()),
]


def op_id(name: str, variant: str) -> str:
    return name + (f".{variant}" if variant else "")


def _opinfo(name: str, variant: str):
    for op in op_db:
        if op.name == name and op.variant_test_name == variant:
            return op
    raise KeyError(op_id(name, variant))


class OneOp(nn.Module):
    """``op(sample.input, *sample.args, **sample.kwargs)`` with the sample's tensors as inputs or parameters."""

    def __init__(self, op, sample, params: tuple):
        super().__init__()
        self.op = op
        tree = (sample.input, list(sample.args), dict(sample.kwargs))
        leaves, self.spec = pytree.tree_flatten(tree)
        keys = [self._key(p) for p, _ in pytree.tree_flatten_with_path(tree)[0]]
        self.slots = []                           # per leaf: ("input", k) | ("param", name) | ("const", value)
        self.inputs = []
        for key, leaf in zip(keys, leaves):
            if not isinstance(leaf, torch.Tensor):
                self.slots.append(("const", leaf))
            elif key in params:
                name = f"p{len(self.slots)}"
                t = leaf.detach().clone()
                if t.is_floating_point():
                    self.register_parameter(name, nn.Parameter(t, requires_grad=False))
                else:
                    self.register_buffer(name, t)
                self.slots.append(("param", name))
            else:
                self.slots.append(("input", len(self.inputs)))
                self.inputs.append(leaf.detach().clone())

    @staticmethod
    def _key(path):
        head = path[0].idx if hasattr(path[0], "idx") else None
        if head == 0:
            return "input"
        if head == 1:
            return path[1].idx
        return path[1].key

    def forward(self, *xs):
        leaves = [xs[v] if kind == "input" else getattr(self, v) if kind == "param" else v
                  for kind, v in self.slots]
        x, args, kwargs = pytree.tree_unflatten(leaves, self.spec)
        return self.op(x, *args, **kwargs)


@dataclass
class Outcome:
    status: str                 # "match" | "refused" | "wrong" | "error"
    detail: str = ""


@dataclass
class OpResult:
    op: str
    samples: int
    ref: list = field(default_factory=list)      # (sample index, Outcome)
    cpu: list = field(default_factory=list)


def _samples(name: str, variant: str):
    op = _opinfo(name, variant)
    torch.manual_seed(0)
    ss = [s for s in op.sample_inputs("cpu", torch.float32, requires_grad=False)]
    n = len(ss)
    if n > MAX_SAMPLES:                           # evenly spaced, deterministic
        keep = sorted({round(k * (n - 1) / (MAX_SAMPLES - 1)) for k in range(MAX_SAMPLES)})
        ss = [ss[k] for k in keep]
    return op, ss, n


_LOC = re.compile(r" at \S+\.py:\d+(: return self\.op\(x, \*args, \*\*kwargs\))?")


def reason_of(e: BaseException) -> str:
    """The refusal's reason in a few words: the first line, without source locations, node names or sizes."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    text = _LOC.sub("", text)
    text = re.sub(r"^\S+\.py:\d+: return self\.op\(x, \*args, \*\*kwargs\): ", "", text)
    text = re.sub(r"%\w+ = ", "", text)
    text = re.sub(r"^\S*: ", "", text) if text.startswith(("OneOp", "one_op")) else text
    text = re.sub(r"\bs\d+\b", "s", text)
    text = re.sub(r"\s+", " ", text).strip(" :")
    return text[:150]


def _leaves(x):
    return [t for t in pytree.tree_leaves(x) if isinstance(t, torch.Tensor)]


def _compare(want, got, tol, exact=None) -> str:
    """'' when ``got`` matches torch's ``want`` within ``tol``, else what differs. ``exact`` (torch's answer
    computed in float64) forgives a float output that is at least as close to it as torch's float32 answer
    (within ``tol``): torch's own rounding is not xrec's error."""
    want, got = _leaves(want), _leaves(got)
    if len(want) != len(got):
        return f"{len(got)} outputs, torch gives {len(want)}"
    for k, (w, g) in enumerate(zip(want, got)):
        if w.shape != g.shape or w.dtype != g.dtype:
            return f"output {k}: {g.dtype}{list(g.shape)}, torch gives {w.dtype}{list(w.shape)}"
        try:
            torch.testing.assert_close(g, w, rtol=tol["rtol"], atol=tol["atol"], equal_nan=True)
        except AssertionError as e:
            x = exact() if exact is not None else None
            if x is not None and k < len(x) and x[k].shape == w.shape and w.is_floating_point():
                x64, w64, g64 = x[k].double(), w.double(), g.double()
                slack = (w64 - x64).abs().nan_to_num(0.0) + tol["atol"] + tol["rtol"] * x64.abs()
                ok = ((g64 - x64).abs() <= slack) | (torch.isnan(g64) & torch.isnan(w64)) | (g64 == w64)
                if bool(ok.all()):
                    continue
            return f"output {k}: " + " ".join(str(e).split())[:300]
    return ""


def _exact(op, sample, params):
    """torch's answer with every float tensor of the sample in float64 (None where the op refuses it)."""
    def run():
        s64 = sample.transform(lambda t: t.double() if isinstance(t, torch.Tensor) and t.is_floating_point()
                               else t)
        try:
            with torch.no_grad():
                m = OneOp(op.op, s64, params)
                return _leaves(m(*m.inputs))
        except Exception:  # noqa: BLE001
            return None
    return run


def run_sample(op, sample, params, target: str) -> Outcome:
    m = OneOp(op.op, sample, params).eval()
    args = tuple(m.inputs)
    with torch.no_grad():
        want = OneOp(op.op, sample, params).eval()(*[a.clone() for a in args])   # fresh params (max_norm renorms in place)
    try:
        cm = xrec.compile(m, args, target=target)
        # the artifact's own outputs (compiler/api.py's torch wrapping is tested at the end of this module)
        got = [torch.from_numpy(np.array(o)) for o in cm.run_flat(cm.flatten_inputs(args, {})[0])]
    except (FrontendError, LoweringError) as e:
        if not str(e).strip():
            return Outcome("error", f"{type(e).__name__} without a message")
        return Outcome("refused", reason_of(e))
    except Exception as e:  # noqa: BLE001: any other exception is an unclear refusal, a failure
        return Outcome("error", f"{type(e).__name__}: {str(e).strip()[:300]}")
    bad = _compare(want, got, get_target(target).tolerances_for({}), _exact(op, sample, params))
    return Outcome("wrong", bad) if bad else Outcome("match")


def _batch_like(sample, params) -> int:
    """The shared leading size (>= 2) of every module input when they all have one rank, else 0: a sample
    the cpu target can run over a batch of rows (it runs models whose inputs all lead with the batch dim)."""
    m = OneOp(lambda *a, **k: None, sample, params)
    lead = {(t.dim(), t.shape[0] if t.dim() >= 1 else 0) for t in m.inputs}
    return lead.pop()[1] if len(lead) == 1 and min(lead)[1] >= 2 else 0


def run_reference(name: str, variant: str, params: tuple) -> OpResult:
    op, samples, total = _samples(name, variant)
    res = OpResult(op_id(name, variant), total)
    for k, s in enumerate(samples):
        res.ref.append((k, run_sample(op, s, params, "reference")))
    return res


class Several(nn.Module):
    """Several samples' one-op modules as one model (one cpu compile): inputs and outputs concatenated."""

    def __init__(self, mods):
        super().__init__()
        self.mods = nn.ModuleList(mods)
        self.counts = [len(m.inputs) for m in mods]

    def forward(self, *xs):
        outs, at = [], 0
        for m, n in zip(self.mods, self.counts):
            outs += [o for o in pytree.tree_leaves(m(*xs[at:at + n])) if isinstance(o, torch.Tensor)]
            at += n
        return tuple(outs)


def _export_batched(m, args):
    """``m`` exported with dim 0 of every input one shared batch dim (None where torch cannot)."""
    batch = torch.export.Dim("batch", min=2)
    try:
        with torch.no_grad():
            return torch.export.export(m, args, dynamic_shapes=(tuple({0: batch} for _ in args),), strict=False)
    except Exception:  # noqa: BLE001: the op ties dim 0 to a constant; xrec's own tracing is used then
        return None


def run_cpu(ops=OPS) -> dict[str, list]:
    """cpu outcomes per op: the first ``CPU_SAMPLES`` batch-like samples of each op, each lowered on its own
    (a refusal names its reason), then every lowered sample of one batch size compiled in ONE model."""
    from xrec.api import lower
    from xrec.targets.cpu.lower import lower as cpu_lower
    tol = get_target("cpu").tolerances_for({})
    out: dict[str, list] = {}
    groups: dict[int, list] = {}
    for name, variant, params in ops:
        op, samples, _ = _samples(name, variant)
        key = op_id(name, variant)
        out[key] = []
        picked = [k for k, s in enumerate(samples) if _batch_like(s, params)][:CPU_SAMPLES]
        for k in picked:
            s = samples[k]
            m = OneOp(op.op, s, params).eval()
            args = tuple(m.inputs)
            try:
                g, _, opts, _ = lower(_export_batched(m, args) or m, args, target="cpu")
                cpu_lower(g, bounds_check=True)
            except (FrontendError, LoweringError) as e:
                out[key].append((k, Outcome("refused", reason_of(e)) if str(e).strip()
                                 else Outcome("error", f"{type(e).__name__} without a message")))
                continue
            except Exception as e:  # noqa: BLE001
                out[key].append((k, Outcome("error", f"{type(e).__name__}: {str(e).strip()[:300]}")))
                continue
            with torch.no_grad():
                want = OneOp(op.op, s, params).eval()(*[a.clone() for a in args])
            slot = len(out[key])
            out[key].append((k, None))
            groups.setdefault(args[0].shape[0], []).append((key, slot, m, (want, _exact(op, s, params))))
    for lead, items in sorted(groups.items()):
        _run_group(items, out, tol)
    return out


def _run_group(items, out, tol):
    """Compile the samples of ``items`` as one model for cpu; on a failure, each sample on its own."""
    model = Several([m for _, _, m, _ in items]).eval()
    args = tuple(a for _, _, m, _ in items for a in m.inputs)
    ep = _export_batched(model, args)
    try:
        if ep is None or len(items) == 1:
            raise LoweringError("compile each sample on its own")
        cm = xrec.compile(ep, target="cpu")
        flat = [torch.from_numpy(np.array(o)) for o in cm.run_flat([a.numpy() for a in args])]
    except Exception as e:  # noqa: BLE001
        if len(items) > 1:
            for it in items:
                _run_group([it], out, tol)
            return
        key, slot, m, want = items[0]
        try:
            sm = _export_batched(m, tuple(m.inputs)) or m
            cm = xrec.compile(sm, tuple(m.inputs), target="cpu")
            got = [torch.from_numpy(np.array(o)) for o in cm.run_flat([a.numpy() for a in m.inputs])]
        except (FrontendError, LoweringError) as e:
            out[key][slot] = (out[key][slot][0], Outcome("refused", reason_of(e)))
            return
        except Exception as e:  # noqa: BLE001
            out[key][slot] = (out[key][slot][0], Outcome("error", f"{type(e).__name__}: {str(e).strip()[:300]}"))
            return
        bad = _compare(want[0], got, tol, want[1])
        out[key][slot] = (out[key][slot][0], Outcome("wrong", bad) if bad else Outcome("match"))
        return
    at = 0
    for key, slot, m, want in items:
        n = len(_leaves(want[0]))
        bad = _compare(want[0], flat[at:at + n], tol, want[1])
        at += n
        out[key][slot] = (out[key][slot][0], Outcome("wrong", bad) if bad else Outcome("match"))


# ---------------------------------------------------------------- the coverage table

def _count(outs, status):
    return sum(o.status == status for _, o in outs)


def _reasons(outs) -> str:
    seen: dict[str, int] = {}
    for _, o in outs:
        if o.status != "match":
            seen[o.detail] = seen.get(o.detail, 0) + 1
    text = "; ".join(f"{r} (x{n})" if n > 1 else r for r, n in seen.items()).replace("|", "\\|")
    return text or "-"


def ref_cells(res: OpResult) -> list[str]:
    return [f"`{res.op}`", str(res.samples), f"{_count(res.ref, 'match')}/{len(res.ref)}",
            str(_count(res.ref, "refused")), _reasons(res.ref)]


def cpu_cells(outs: list) -> list[str]:
    return [f"{_count(outs, 'match')}/{len(outs)}", str(_count(outs, "refused")), _reasons(outs)]


def table_row(res: OpResult) -> str:
    return "| " + " | ".join(ref_cells(res) + cpu_cells(res.cpu)) + " |"


def committed_cells(op: str) -> list[str] | None:
    if not COVERAGE.exists():
        return None
    for line in COVERAGE.read_text().splitlines():
        if line.startswith(f"| `{op}` |"):
            return [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
    return None


HEADER = """# Frontend coverage by PyTorch's OpInfo samples

Generated by `.venv/bin/python tests/frontend/test_opinfo.py --regen` (do not edit by hand);
`tests/frontend/test_opinfo.py` checks every row. Each OpInfo sample
(`torch.testing._internal.common_methods_invocations.op_db`, float32, seeded) of each op README.md claims
runs as a one-op module through xrec (sample lists longer than {max} are thinned to {max} evenly spaced
samples). **reference**: samples matched / run, refused, and why. **cpu**: the first {cpu} samples of the op
whose inputs all have one rank and lead with one batch dim (size >= 2; the cpu target runs models over a batch of rows),
traced with that dim shared, all of one batch size compiled as one model. A wrong answer or an exception
other than FrontendError/LoweringError fails the test, so neither appears here. Tolerances are the targets'
own (reference rtol 1e-5, cpu rtol 1e-4); a float output outside them still matches when it is as close to
PyTorch's answer computed in float64 as PyTorch's float32 answer is (PyTorch's rounding is not xrec's error).

| op | OpInfo samples | reference matched | refused | reference refusals | cpu matched | refused | cpu refusals |
|---|---|---|---|---|---|---|---|
"""


def coverage_markdown(results: list[OpResult]) -> str:
    body = "\n".join(table_row(r) for r in results)
    tot = lambda f: sum(f(r) for r in results)  # noqa: E731
    summary = (f"\nTotal: reference {tot(lambda r: _count(r.ref, 'match'))}/{tot(lambda r: len(r.ref))} matched, "
               f"{tot(lambda r: _count(r.ref, 'refused'))} refused; cpu {tot(lambda r: _count(r.cpu, 'match'))}"
               f"/{tot(lambda r: len(r.cpu))} matched, {tot(lambda r: _count(r.cpu, 'refused'))} refused; "
               "0 wrong answers.\n")
    return HEADER.format(max=MAX_SAMPLES, cpu=CPU_SAMPLES) + body + "\n" + summary


def _failures(outs, target, op):
    return [f"{op} sample {k} on {target}: {o.status}: {o.detail}" for k, o in outs if o.status in ("wrong", "error")]


# ---------------------------------------------------------------- the tests

@pytest.mark.parametrize("name,variant,params", OPS, ids=[op_id(n, v) for n, v, _ in OPS])
def test_opinfo_samples_match_torch_or_are_refused_clearly_on_reference(name, variant, params):
    res = run_reference(name, variant, params)
    bad = _failures(res.ref, "reference", res.op)
    assert not bad, "\n".join(bad)
    row = committed_cells(res.op)
    assert row is not None and row[:5] == ref_cells(res), \
        f"docs/COVERAGE.md is stale for {res.op}; regenerate: python tests/frontend/test_opinfo.py --regen"


@pytest.mark.skipif(not get_target("cpu").available()[0], reason="cpu target unavailable")
def test_opinfo_batched_samples_match_torch_or_are_refused_clearly_on_cpu():
    outs = run_cpu()
    bad = [b for op, o in outs.items() for b in _failures(o, "cpu", op)]
    assert not bad, "\n".join(bad)
    stale = [op for op, o in outs.items() if (committed_cells(op) or [None] * 8)[5:] != cpu_cells(o)]
    assert not stale, f"docs/COVERAGE.md's cpu columns are stale for {stale}; regenerate with --regen"


def test_readme_supported_operators_link_the_coverage_table():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### Supported PyTorch operators", 1)[1].split("\n## ", 1)[0]
    assert "docs/COVERAGE.md" in section


@pytest.mark.xfail(strict=True, reason="compiler/api.py turns a 0-d output into shape [1] "
                   "(np.ascontiguousarray returns ndim >= 1); the artifact's own output is 0-d")
def test_zero_d_output_keeps_its_shape_through_the_python_api():
    class Add(nn.Module):
        def forward(self, x, y):
            return x + y

    args = (torch.tensor(1.0), torch.tensor(2.0))
    cm = xrec.compile(Add(), args, target="reference")
    assert np.array(cm.run_flat([a.numpy() for a in args])[0]).shape == ()
    assert cm(*args).shape == torch.Size([])


if __name__ == "__main__":
    import argparse
    import time
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--regen", action="store_true", help="rewrite docs/COVERAGE.md")
    ap.add_argument("--ops", nargs="*", help="only these ops (print their rows)")
    ns = ap.parse_args()
    chosen = [o for o in OPS if not ns.ops or op_id(o[0], o[1]) in ns.ops]
    if ns.regen and ns.ops:
        ap.error("--regen runs every op")
    t0 = time.time()
    results = [run_reference(n, v, p) for n, v, p in chosen]
    print(f"reference: {time.time() - t0:.1f} s", flush=True)
    t0 = time.time()
    cpu = run_cpu(chosen) if get_target("cpu").available()[0] else {}
    print(f"cpu: {time.time() - t0:.1f} s", flush=True)
    for r in results:
        r.cpu = cpu.get(r.op, [])
        print(table_row(r))
        for line in _failures(r.ref, "reference", r.op) + _failures(r.cpu, "cpu", r.op):
            print("    !!", line)
    if ns.regen:
        COVERAGE.write_text(coverage_markdown(results))
        print(f"wrote {COVERAGE}")
