"""run_model_bench: reason rows for systems that fail, are too slow, or differ from eager."""
from __future__ import annotations

import time

import pytest
import torch

from xrec.bench import modelbench, report, systems
from xrec.bench.systems import Prepared, System

FAST = dict(targets=[], batches=[1, 3], threads=1, reps=2, warmup=1, max_rows=50, gap_ms=0.0, roofline=False)


@pytest.fixture
def extra_systems(monkeypatch):
    def sleepy(ctx):
        m = ctx.module

        def fn(*args):
            time.sleep(0.05 if args[0].shape[0] == 1 else 2.0)      # batch 1 fine, batch 3 too slow
            return m(*args)
        return Prepared(fn)

    def wrong(ctx):
        m = ctx.module
        return Prepared(lambda *args: m(*args) + 0.5)

    def broken_at_3(ctx):
        m = ctx.module

        def fn(*args):
            if args[0].shape[0] == 3:
                raise RuntimeError("kernel crashed\nwith details")
            return m(*args)
        return Prepared(fn)

    def rewraps(ctx):                     # like Triton's interpreter: wraps whatever its kernels raise
        m = ctx.module

        def fn(*args):
            try:
                time.sleep(0.05 if args[0].shape[0] == 1 else 2.0)
            except Exception as e:
                raise RuntimeError(f"interpreter error: {e!r}") from e
            return m(*args)
        return Prepared(fn)

    def refuses(ctx):
        raise systems.Unavailable("needs a GPU")
    new = {"sleepy": System("sleepy", "sleeps", "baseline", sleepy),
           "wrong": System("wrong", "adds 0.5", "baseline", wrong),
           "broken": System("broken", "fails at batch 3", "baseline", broken_at_3),
           "refuses": System("refuses", "unavailable", "baseline", refuses),
           "rewraps": System("rewraps", "re-wraps errors", "baseline", rewraps)}
    monkeypatch.setattr(systems, "BASELINES", {**systems.BASELINES, **new})
    monkeypatch.setattr(modelbench, "BASELINES", systems.BASELINES)


def test_every_system_and_batch_gets_a_row_or_a_reason(extra_systems):
    doc = modelbench.run_model_bench("two-tower", baselines=["eager", "sleepy", "wrong", "broken", "refuses",
                                                                   "rewraps"],
                                     max_call_s=0.5, **FAST)
    report.validate(doc)
    rows = {(r["system"], r["batch"]): r for r in doc["rows"]}
    assert set(rows) == {(s, b) for s in ("eager", "sleepy", "wrong", "broken", "refuses", "rewraps")
                         for b in (1, 3)}
    assert rows[("eager", 1)]["status"] == rows[("eager", 3)]["status"] == "ok"
    assert rows[("sleepy", 1)]["status"] == "ok"
    assert rows[("sleepy", 3)]["status"] == "too slow" and "--max-call-s 0.5" in rows[("sleepy", 3)]["reason"]
    assert rows[("rewraps", 3)]["status"] == "too slow"             # the alarm fired, whatever was raised
    assert rows[("wrong", 1)]["check"] == "mismatch" and rows[("wrong", 1)]["max_abs_err"] == pytest.approx(0.5)
    assert rows[("broken", 1)]["status"] == "ok"
    assert rows[("broken", 3)]["reason"] == "run at batch 3: RuntimeError: kernel crashed with details"
    assert rows[("refuses", 1)]["reason"] == rows[("refuses", 3)]["reason"] == "needs a GPU"
    assert rows[("refuses", 1)]["status"] == "unavailable"
    assert " !" in next(ln for ln in report.format_text(doc).splitlines() if ln.startswith("wrong"))


def test_model_work_counts_matmul_flops_and_embedding_bytes():
    from xrec.models import resolve
    from xrec import zoo
    src = resolve("dlrm-small", max_rows=50)
    args = zoo.make_inputs(src.module, 4, seed=0)
    w = modelbench.model_work(src, args)
    mlp = [(13, 512), (512, 256), (256, 64), (415, 512), (512, 256), (256, 1)]
    bmm = 27 * 27 * 64
    assert w["flops"] == 2 * 4 * (sum(k * n for k, n in mlp) + bmm)
    assert w["embedding_bytes"] == sum(len(i) for i in args[1]) * 64 * 4
