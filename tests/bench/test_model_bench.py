"""run_model_bench: reason rows for systems that fail, are too slow, or differ from eager."""
from __future__ import annotations

import time

import pytest
import torch

from xrec.bench import model_bench, report, systems
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
    monkeypatch.setattr(model_bench, "BASELINES", systems.BASELINES)


def test_every_system_and_batch_gets_a_row_or_a_reason(extra_systems):
    doc = model_bench.run_model_bench("two-tower", baselines=["eager", "sleepy", "wrong", "broken", "refuses",
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
    from xrec.model_arg import resolve
    from xrec import zoo
    src = resolve("dlrm-small", max_rows=50)
    args = zoo.make_inputs(src.module, 4, seed=0)
    w = model_bench.model_work(src, args)
    mlp = [(13, 512), (512, 256), (256, 64), (415, 512), (512, 256), (256, 1)]
    bmm = 27 * 27 * 64
    assert w["flops"] == 2 * 4 * (sum(k * n for k, n in mlp) + bmm)
    assert w["embedding_bytes"] == sum(len(i) for i in args[1]) * 64 * 4


# ------------------------------------------------------------------ compression variants
def test_each_variant_is_its_own_system_with_its_size_and_checked_against_its_own_tolerance():
    doc = model_bench.run_model_bench("dlrm-small", targets=["reference"], baselines=["eager"], batches=[1, 3],
                                     threads=1, reps=2, warmup=0, max_rows=50, gap_ms=0.0, roofline=False,
                                     variants=["fp32", "int8", "int4"], calib_samples=256, mode="cold")
    report.validate(doc)
    rows = {(r["system"], r["batch"]): r for r in doc["rows"]}
    names = ("xrec-reference", "xrec-reference-int8", "xrec-reference-int4")
    assert set(rows) == {(s, b) for s in ("eager",) + names for b in (1, 3)}
    assert doc["settings"]["variants"] == ["fp32", "int8", "int4"]
    size = {}
    for s, variant in zip(names, ("fp32", "int8", "int4")):
        r = rows[(s, 3)]
        assert r["status"] == "ok" and r["check"] == "ok" and r["variant"] == variant
        assert r["max_abs_diff_vs_eager"] == r["max_abs_err"]
        size[variant] = r["weights_bytes"]
        info = doc["systems"][s]["info"]
        assert r["weights_bytes"] == info["weights_bytes"]
    assert size["int4"] < size["int8"] < size["fp32"]
    assert rows[("xrec-reference-int8", 1)]["weights_frac_of_fp32"] == pytest.approx(size["int8"] / size["fp32"])
    assert rows[("eager", 1)]["variant"] is None and rows[("eager", 1)].get("weights_bytes") is None
    # fp32 keeps the bench tolerance; int4 differs from eager by more than it, by design, and is
    # checked against the drift its artifact declares instead
    assert rows[("xrec-reference", 3)]["check_tol"]["atol"] == model_bench.CHECK_ATOL
    int4 = rows[("xrec-reference-int4", 3)]
    assert int4["max_abs_diff_vs_eager"] > model_bench.CHECK_ATOL
    assert int4["check_tol"]["atol"] == doc["systems"]["xrec-reference-int4"]["info"]["tolerances"]["atol"]
    assert "int4" in int4["check_tol"]["from"]
    table = report.format_text(doc)
    assert "size and speed by variant" in table and "xrec-reference-int4" in table


@pytest.fixture
def fake_variants(monkeypatch):
    """xrec 'variants' that add a fixed error to eager's output and declare an artifact atol of 0.01."""
    def fake_xrec_system(target, variant=None):
        def prepare(ctx):
            m = ctx.module
            err = {"fp32": 0.0, "int8": 0.005, "int4": 0.5}[variant or "fp32"]
            return Prepared(lambda *args: m(*args) + err,
                            {"weights_bytes": {"fp32": 4000, "int8": 1000, "int4": 500}[variant or "fp32"],
                             "tolerances": {"rtol": 1e-5, "atol": 0.01}})
        return System(systems.xrec_system_name(target, variant), f"fake {variant}", "xrec", prepare, target,
                      variant or "fp32")
    monkeypatch.setattr(model_bench, "xrec_system", fake_xrec_system)


def test_a_compressed_variant_is_a_mismatch_only_beyond_its_artifact_tolerance(fake_variants):
    doc = model_bench.run_model_bench("two-tower", baselines=[], variants=["fp32", "int8", "int4"],
                                     **{**FAST, "targets": ["cpu"], "mode": "cold"})
    rows = {(r["system"], r["batch"]): r for r in doc["rows"]}
    assert rows[("xrec-cpu-int8", 1)]["check"] == "ok"              # 0.005 > fp32 atol, < its own 0.01
    assert rows[("xrec-cpu-int8", 1)]["max_abs_diff_vs_eager"] == pytest.approx(0.005, rel=1e-3)
    assert rows[("xrec-cpu-int4", 1)]["check"] == "mismatch"        # 0.5 > 0.01
    assert rows[("xrec-cpu-int4", 1)]["weights_frac_of_fp32"] == pytest.approx(0.125)
    vs = {v["system"]: v for v in report.variants(doc)}
    assert vs["xrec-cpu-int4"]["checks"] == ["mismatch", "mismatch"]
    line = next(ln for ln in report.format_text(doc).splitlines() if ln.strip().startswith("xrec-cpu-int4  int4"))
    assert "5.00e-01 !" in line and "12.5%" in line


def test_warm_mode_gives_reps_times_burst_minus_one_samples_and_is_recorded():
    doc = model_bench.run_model_bench("two-tower", baselines=["eager"], **{**FAST, "mode": "warm", "burst": 3})
    assert doc["settings"]["mode"] == "warm" and doc["settings"]["burst"] == 3
    assert {r["n"] for r in doc["rows"]} == {2 * 2}
    assert "warm (bursts of 3, first untimed)" in report.format_text(doc)


def test_a_slow_system_in_warm_mode_gets_just_enough_bursts_for_three_samples_and_no_warmup_turns(monkeypatch):
    calls = []

    def slow(ctx):
        m = ctx.module

        def fn(*args):
            calls.append(time.perf_counter())
            time.sleep(model_bench.SLOW_CALL_S + 0.05)
            return m(*args)
        return Prepared(fn)
    monkeypatch.setitem(systems.BASELINES, "slow", System("slow", "slow", "baseline", slow))
    monkeypatch.setattr(model_bench, "BASELINES", systems.BASELINES)
    doc = model_bench.run_model_bench("two-tower", baselines=["slow"], system_budget_s=0.1,
                                     **{**FAST, "batches": [1], "reps": 5, "warmup": 2, "mode": "warm",
                                        "burst": 3})
    row = doc["rows"][0]
    assert row["status"] == "ok" and row["n"] == 4          # 2 bursts of 3, first of each untimed
    # first call + cost estimate + 2 bursts; no warm-up bursts
    assert len(calls) == 1 + 1 + 2 * 3


def test_target_options_reach_every_xrec_compile_and_a_rejected_one_is_a_reason_row():
    doc = model_bench.run_model_bench("two-tower", baselines=[], variants=["fp32"],
                                      **{**FAST, "targets": ["reference"], "batches": [2]},
                                      target_options={"no_such_option": 1})
    (row,) = doc["rows"]
    assert row["system"] == "xrec-reference" and row["status"] == "failed"
    assert "no_such_option" in row["reason"] and "xrec.compile" in row["reason"]
    assert doc["settings"]["target_options"] == {"no_such_option": 1}


def test_parts_time_the_steps_of_an_xla_call_as_rows_of_their_own():
    from xrec.targets import available_targets
    why = available_targets().get("xla")
    if why:
        pytest.skip(f"xla target not available: {why}")
    doc = model_bench.run_model_bench("two-tower", baselines=["eager"], parts=True,
                                      **{**FAST, "targets": ["xla"], "batches": [2, 5]},
                                      target_options={"batch": 2, "large_batch": "split"})
    report.validate(doc)
    rows = {(r["system"], r["batch"]): r for r in doc["rows"]}
    assert set(rows) == {(s, b) for s in ("eager", "xrec-xla", "xrec-xla:host", "xrec-xla:executable")
                         for b in (2, 5)}
    for b in (2, 5):
        assert rows[("xrec-xla", b)]["status"] == "ok" and rows[("xrec-xla", b)]["check"] == "ok"
        for part in ("host", "executable"):
            r = rows[(f"xrec-xla:{part}", b)]
            assert r["status"] == "ok" and r["kind"] == "part" and r["part_of"] == "xrec-xla" and r["n"] >= 2
            assert "check" not in r
    assert doc["systems"]["xrec-xla"]["info"]["options"] == {"batch": 2, "large_batch": "split"}
    assert {s["system"] for s in report.speedups(doc)} == {"xrec-xla"}       # parts are no contenders
