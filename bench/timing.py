"""Interleaved timing: every system sampled in turn, so drifts hit all alike.

A round calls each system once; round r starts at system r mod n (A B C,
B C A, C A B, ...), so no system always runs right after the same
neighbour. Warm-up rounds run first and are discarded. Timing uses
``time.perf_counter`` with the garbage collector paused.

Two modes (``MODES``):

* ``cold``: a turn of a system is one timed call, then the gap: every call
  starts on idle (not spinning) threads, caches and TLB partly flushed.
* ``warm``: a turn is a burst of ``burst`` calls back to back; the first is
  untimed (it wakes the threads and refills the caches), each later one is
  timed on its own (``burst - 1`` samples per turn), then the gap.

The gap after a turn lets thread pools that spin after a call (OpenMP, ONNX
Runtime) go idle before the next system's turn, so a system's spinning
workers never overlap another system's timed calls.
"""
from __future__ import annotations

import gc
import math
import time
from dataclasses import asdict, dataclass
from typing import Callable, Mapping, Sequence


def schedule(names: Sequence[str], rounds: int, rotate: bool = True) -> list[str]:
    """The call order of ``rounds`` interleaved rounds over ``names``."""
    names = list(names)
    n = len(names)
    order: list[str] = []
    for r in range(rounds):
        k = r % n if (rotate and n) else 0
        order.extend(names[k:] + names[:k])
    return order


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolation percentile (numpy's default), q in [0, 100]."""
    if not values:
        raise ValueError("percentile of no samples")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile q must be in [0, 100], got {q}")
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


@dataclass(frozen=True)
class Stats:
    n: int
    median_ms: float
    p10_ms: float
    p90_ms: float
    mean_ms: float
    min_ms: float
    max_ms: float

    def as_dict(self) -> dict:
        return asdict(self)


def summarize(samples_s: Sequence[float]) -> Stats:
    """Median, p10, p90, mean, min, max in milliseconds of samples in seconds."""
    ms = [s * 1e3 for s in samples_s]
    return Stats(n=len(ms), median_ms=percentile(ms, 50), p10_ms=percentile(ms, 10),
                 p90_ms=percentile(ms, 90), mean_ms=sum(ms) / len(ms), min_ms=min(ms), max_ms=max(ms))


MODES = ("warm", "cold")

CLOCKS: dict[str, Callable[[], float]] = {
    "wall": time.perf_counter,          # elapsed time
    "thread-cpu": time.thread_time,     # CPU time of the calling thread: blind to the time other processes
}                                       # took the core; for single-threaded systems only


def calls_per_turn(mode: str, burst: int) -> int:
    """How many calls one turn of a system makes: 1 (cold) or ``burst`` (warm)."""
    check_mode(mode, burst)
    return burst if mode == "warm" else 1


def samples_per_turn(mode: str, burst: int) -> int:
    """How many timed samples one turn gives: 1 (cold) or ``burst - 1`` (warm)."""
    return calls_per_turn(mode, burst) - (1 if mode == "warm" else 0)


def check_mode(mode: str, burst: int) -> None:
    if mode not in MODES:
        raise ValueError(f"timing mode must be one of {', '.join(MODES)}, got {mode!r}")
    if mode == "warm" and burst < 2:
        raise ValueError(f"warm mode needs a burst of at least 2 calls (the first is untimed), got {burst}")


def measure(calls: Mapping[str, Callable[[], object]], reps: int, warmup: int = 1, *,
            rotate: bool = True, gap_s: float = 0.0, timer: Callable[[], float] = time.perf_counter,
            sleep: Callable[[float], None] = time.sleep,
            on_call: Callable[[str, bool], None] | None = None,
            reps_for: Mapping[str, int] | None = None,
            warmup_for: Mapping[str, int] | None = None,
            mode: str = "cold", burst: int = 1) -> dict[str, list[float]]:
    """Give each system ``warmup`` then ``reps`` turns, interleaved; seconds per timed call.

    A turn is one timed call (``mode="cold"``) or ``burst`` calls back to back of which
    all but the first are timed, each on its own (``mode="warm"``); ``gap_s`` is slept
    after each turn. Warm-up turns make the same calls, untimed. A system gets
    ``reps`` (cold) or ``reps * (burst - 1)`` (warm) samples.
    ``reps_for`` / ``warmup_for`` give some systems fewer rounds (very slow ones: a
    simulator); they take part in the first rounds only, still interleaved.
    ``on_call(name, timed)`` (for tests) sees every call in order.
    """
    if reps < 1:
        raise ValueError(f"reps must be >= 1, got {reps}")
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0, got {warmup}")
    check_mode(mode, burst)
    per_turn = calls_per_turn(mode, burst)
    untimed_first = mode == "warm"
    names = list(calls)
    samples: dict[str, list[float]] = {k: [] for k in names}
    reps_for, warmup_for = dict(reps_for or {}), dict(warmup_for or {})
    done_warm = {k: 0 for k in names}
    for name in schedule(names, warmup, rotate):
        if done_warm[name] >= warmup_for.get(name, warmup):
            continue
        done_warm[name] += 1
        for _ in range(per_turn):
            if on_call:
                on_call(name, False)
            calls[name]()
        if gap_s:
            sleep(gap_s)
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    turns = {k: 0 for k in names}
    try:
        for name in schedule(names, reps, rotate):
            if turns[name] >= reps_for.get(name, reps):
                continue
            turns[name] += 1
            fn, out = calls[name], samples[name]
            for i in range(per_turn):
                timed = not (untimed_first and i == 0)
                if on_call:
                    on_call(name, timed)
                if timed:
                    t0 = timer()
                    fn()
                    out.append(timer() - t0)
                else:
                    fn()
            if gap_s:
                sleep(gap_s)
    finally:
        if was_enabled:
            gc.enable()
    return samples


class BudgetExceeded(Exception):
    """A step ran past its time budget (see :func:`time_budget`)."""


class time_budget:
    """``with time_budget(60): slow()`` raises BudgetExceeded after 60 s.

    Uses SIGALRM, so it only interrupts Python code in the main thread; off
    the main thread (or without SIGALRM) it does nothing and says so in
    ``self.enforced``.
    """

    def __init__(self, seconds: float | None, what: str = "step"):
        self.seconds, self.what = seconds, what
        self.enforced = False
        self.fired = False          # set when the alarm went off, even if a library re-wrapped the error
        self._old = None

    def _fire(self, signum, frame):
        self.fired = True
        raise BudgetExceeded(f"{self.what} did not finish within its budget of {self.seconds:g} s")

    def __enter__(self):
        import signal
        import threading
        if (self.seconds and self.seconds > 0 and hasattr(signal, "setitimer")
                and threading.current_thread() is threading.main_thread()):
            self._old = signal.signal(signal.SIGALRM, self._fire)
            signal.setitimer(signal.ITIMER_REAL, float(self.seconds))
            self.enforced = True
        return self

    def __exit__(self, *exc):
        if self.enforced:
            import signal
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self._old)
        return False
