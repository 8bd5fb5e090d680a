"""The timing core: interleaving order, statistics, budgets. No timing asserts."""
from __future__ import annotations

import time

import numpy as np
import pytest

from xrec.bench.timing import BudgetExceeded, measure, percentile, schedule, summarize, time_budget


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


# ------------------------------------------------------------------ warm (burst) mode
def test_warm_mode_calls_each_system_in_bursts_with_the_first_call_of_each_burst_untimed():
    seen = []
    samples = measure({"a": lambda: None, "b": lambda: None}, reps=2, warmup=1, mode="warm", burst=3,
                      on_call=lambda name, timed: seen.append((name, timed)))
    burst = lambda n, timed: [(n, False)] + [(n, timed)] * 2      # noqa: E731
    assert seen == (burst("a", False) + burst("b", False)                         # warm-up round, untimed
                    + burst("a", True) + burst("b", True)                          # round 0
                    + burst("b", True) + burst("a", True))                         # round 1 rotated
    assert {k: len(v) for k, v in samples.items()} == {"a": 4, "b": 4}             # reps * (burst - 1)


def test_warm_mode_times_each_call_after_the_first_on_its_own():
    # the first call of a burst is slow (cold caches), later ones fast: only the fast ones are samples
    clock, calls = [0.0], {"a": 0, "b": 0}
    cost = {"a": (0.050, 0.001), "b": (0.080, 0.002)}
    timer_reads = []

    def make(name):
        def f():
            first = calls[name] % 4 == 0
            calls[name] += 1
            clock[0] += cost[name][0] if first else cost[name][1]
        return f

    def timer():
        timer_reads.append(clock[0])
        return clock[0]
    samples = measure({k: make(k) for k in cost}, reps=3, warmup=1, mode="warm", burst=4, timer=timer,
                      sleep=lambda s: None)
    assert samples["a"] == pytest.approx([0.001] * 9)
    assert samples["b"] == pytest.approx([0.002] * 9)
    assert len(timer_reads) == 2 * 18                  # read only around the timed calls


def test_warm_mode_sleeps_the_gap_after_each_burst_never_inside_one():
    events = []
    measure({"a": lambda: events.append("a"), "b": lambda: events.append("b")}, reps=2, warmup=1, gap_s=0.01,
            mode="warm", burst=3, sleep=lambda s: events.append(f"sleep {s}"))
    turns = "".join(e if len(e) == 1 else "|" for e in events).split("|")
    assert turns == ["aaa", "bbb", "aaa", "bbb", "bbb", "aaa", ""]      # a sleep after every burst
    assert events.count("sleep 0.01") == 6


def test_cold_mode_times_every_call_and_sleeps_after_each():
    events, clock = [], [0.0]

    def f():
        clock[0] += 0.003
        events.append("call")
    samples = measure({"a": f}, reps=3, warmup=1, gap_s=0.01, mode="cold", timer=lambda: clock[0],
                      sleep=lambda s: events.append("sleep"))
    assert events == ["call", "sleep"] * 4
    assert samples["a"] == pytest.approx([0.003] * 3)


def test_warm_mode_gives_slow_systems_fewer_bursts():
    seen = []
    samples = measure({"fast": lambda: None, "sim": lambda: None}, reps=3, warmup=0, mode="warm", burst=2,
                      reps_for={"sim": 1}, on_call=lambda name, timed: seen.append((name, timed)))
    assert {k: len(v) for k, v in samples.items()} == {"fast": 3, "sim": 1}
    assert seen == [("fast", False), ("fast", True), ("sim", False), ("sim", True),
                    ("fast", False), ("fast", True), ("fast", False), ("fast", True)]


@pytest.mark.parametrize("mode,burst,message", [("warm", 1, "burst of at least 2"), ("hot", 3, "one of warm, cold")])
def test_measure_rejects_a_bad_mode_or_burst(mode, burst, message):
    with pytest.raises(ValueError, match=message):
        measure({"a": lambda: None}, reps=1, mode=mode, burst=burst)
