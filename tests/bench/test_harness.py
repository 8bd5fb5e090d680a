"""The timing harness: interleaving order, statistics, budgets. No timing asserts."""
from __future__ import annotations

import time

import numpy as np
import pytest

from xrec.bench.harness import BudgetExceeded, measure, percentile, schedule, summarize, time_budget


def test_schedule_rotates_the_first_system_every_round():
    assert schedule(["A", "B", "C"], 3) == ["A", "B", "C", "B", "C", "A", "C", "A", "B"]


def test_schedule_without_rotation_repeats_the_same_order():
    assert schedule(["A", "B"], 3, rotate=False) == ["A", "B"] * 3


def test_schedule_gives_every_system_one_call_per_round():
    order = schedule(list("ABCDE"), 7)
    for r in range(7):
        assert sorted(order[5 * r:5 * r + 5]) == list("ABCDE")


def test_measure_interleaves_warmup_then_timed_calls_and_discards_warmup():
    seen = []
    calls = {name: (lambda: None) for name in ("eager", "xrec")}
    samples = measure(calls, reps=3, warmup=2, on_call=lambda name, timed: seen.append((name, timed)))
    assert seen == [("eager", False), ("xrec", False), ("xrec", False), ("eager", False),
                    ("eager", True), ("xrec", True), ("xrec", True), ("eager", True),
                    ("eager", True), ("xrec", True)]
    assert {k: len(v) for k, v in samples.items()} == {"eager": 3, "xrec": 3}


def test_measure_records_the_timer_difference_around_each_call():
    # a fake clock that each call advances by a known amount: samples are exactly those amounts
    clock = [0.0]
    cost = {"fast": 0.001, "slow": 0.004}

    def make(name):
        def f():
            clock[0] += cost[name]
        return f
    samples = measure({k: make(k) for k in cost}, reps=4, warmup=1, timer=lambda: clock[0],
                      sleep=lambda s: None)
    assert samples["fast"] == pytest.approx([0.001] * 4)
    assert samples["slow"] == pytest.approx([0.004] * 4)


def test_measure_sleeps_the_gap_after_every_call():
    slept = []
    measure({"a": lambda: None, "b": lambda: None}, reps=2, warmup=1, gap_s=0.01, sleep=slept.append)
    assert slept == [0.01] * 6


def test_measure_rejects_zero_reps_and_negative_warmup():
    with pytest.raises(ValueError, match="reps"):
        measure({"a": lambda: None}, reps=0)
    with pytest.raises(ValueError, match="warmup"):
        measure({"a": lambda: None}, reps=1, warmup=-1)


@pytest.mark.parametrize("q", [0, 10, 50, 90, 100, 37.5])
def test_percentile_matches_numpy_linear_interpolation(q):
    xs = [5.0, 1.0, 4.0, 2.0, 3.0, 10.0, 7.5]
    assert percentile(xs, q) == pytest.approx(float(np.percentile(xs, q)))


def test_percentile_of_nothing_is_an_error():
    with pytest.raises(ValueError, match="no samples"):
        percentile([], 50)


def test_summarize_reports_milliseconds():
    st = summarize([0.001, 0.002, 0.003, 0.004, 0.010])
    assert st.n == 5
    assert st.median_ms == pytest.approx(3.0)
    assert st.p10_ms == pytest.approx(1.4)
    assert st.p90_ms == pytest.approx(7.6)
    assert st.min_ms == pytest.approx(1.0) and st.max_ms == pytest.approx(10.0)
    assert st.mean_ms == pytest.approx(4.0)
    assert st.p10_ms <= st.median_ms <= st.p90_ms


def test_time_budget_interrupts_a_step_that_runs_too_long():
    t0 = time.monotonic()
    with pytest.raises(BudgetExceeded, match="compile.*0.2 s"):
        with time_budget(0.2, "compile"):
            while time.monotonic() - t0 < 5:
                pass
    assert time.monotonic() - t0 < 4


def test_time_budget_leaves_a_fast_step_alone():
    with time_budget(5, "quick") as b:
        x = sum(range(1000))
    assert b.enforced and x == 499500


def test_measure_gives_slow_systems_fewer_rounds_still_interleaved():
    seen = []
    samples = measure({"fast": lambda: None, "sim": lambda: None}, reps=4, warmup=2,
                      reps_for={"sim": 2}, warmup_for={"sim": 1},
                      on_call=lambda name, timed: seen.append((name, timed)))
    assert {k: len(v) for k, v in samples.items()} == {"fast": 4, "sim": 2}
    assert seen == [("fast", False), ("sim", False), ("fast", False),
                    ("fast", True), ("sim", True), ("sim", True), ("fast", True), ("fast", True), ("fast", True)]
