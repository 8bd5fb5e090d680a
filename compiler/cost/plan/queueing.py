"""Latency of dynamic batching on one device: an analytic model and a discrete-event simulation.

The server (``csrc/server/batcher.cpp``, one worker per device): requests wait in one FIFO queue;
when the worker is free it takes the oldest request and keeps taking requests until the batch has
``max_batch`` (B) rows or the oldest has waited ``max_delay`` (D); it then runs the batch as one call
of ``service(b)`` seconds and is free again.

Assumptions (the model's and the simulation's):

* Poisson arrivals of rate ``lam`` per device: a load balancer that splits the traffic at random over
  ``n`` identical devices gives each a Poisson stream of rate Q/n (thinning); no join-shortest-queue
  (so the prediction is conservative for a smarter balancer).
* One query = one row; one worker per device; no time-outs, no queue limit, no network time.
* ``service(b)`` is deterministic, non-decreasing in b (the performance model's time per batch).

Analytic model (closed form, no simulation):

* Stability: the device must serve more than it receives with full batches, ``lam < B / S(B)``
  (else the queue grows without bound: p99 = inf).
* Formation window from an idle server: ``F = min(D, (B-1)/lam)`` (the deadline of the oldest, or the
  mean time until B-1 more requests have come).
* Mean batch: ``b = max(1 + lam*F, fixed point of b = lam*max(S(b), F))``, at most B (the requests
  that come while the previous batch runs or forms).
* Utilisation ``rho = lam * S(b) / b`` (fraction of time the worker is busy).
* 99th-percentile batch ``b99 = min(B, 1 + Poisson 0.99-quantile of lam*max(F, S(b)))``.
* Formation wait at the 99th percentile: ``F99 = min(D, Gamma(B-1, lam) 0.99-quantile)`` (the time
  until B-1 more Poisson arrivals, Wilson-Hilferty), taken for every request (conservative: only the
  first request of a batch waits that long).
* Wait before the batch starts, at the 99th percentile: ``F99`` when fewer than 1 % of requests find
  the worker busy (``rho < 0.01``), else ``max(F99, S(b99))`` (a whole running batch, then its own
  formation).
* Backlog of full batches (only when ``b99 == B``): with full batches the queue after each batch is
  the random walk ``Q' = max(Q - B, 0) + Poisson(lam*S(B))``; its heavy-traffic (Kingman) tail
  ``P(Q > x) ~ exp(-2 x (B - a) / a)``, ``a = lam*S(B)``, gives ``Q99 = a ln(100) / (2 (B - a))``
  requests ahead, i.e. ``Q99 / B`` extra batch times ``S(B)``.
* ``p99 = wait + backlog + S(b99)``.

:func:`simulate` runs the same server event by event; ``tests/cost/test_plan_queueing.py`` checks the
model against it (where the model says the bound is met, the simulation agrees).
"""
from __future__ import annotations

import math
from bisect import bisect_left
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

ServiceFn = Callable[[float], float]


@dataclass(frozen=True)
class Policy:
    """A dynamic-batching policy: at most ``max_batch`` rows per call, the oldest waits at most
    ``max_delay_s`` (the flags ``xrec serve --max-batch --max-delay-us``)."""

    max_batch: int
    max_delay_s: float

    def __post_init__(self):
        if self.max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {self.max_batch}")
        if self.max_delay_s < 0:
            raise ValueError(f"max_delay_s must be >= 0, got {self.max_delay_s}")

    @property
    def max_delay_us(self) -> int:
        return int(round(self.max_delay_s * 1e6))

    def as_dict(self) -> dict:
        return {"max_batch": self.max_batch, "max_delay_us": self.max_delay_us}


class ServiceCurve:
    """``S(b)``: seconds per batch of b rows, from the time model at a few batch sizes, linear between
    them (the roofline is piecewise linear in b) and non-decreasing."""

    def __init__(self, points: dict[int, float]):
        if not points:
            raise ValueError("a service curve needs at least one point")
        bs = sorted(points)
        ts, best = [], 0.0
        for b in bs:
            t = float(points[b])
            if not math.isfinite(t) or t < 0:
                raise ValueError(f"service time at batch {b} must be a finite number >= 0, got {t}")
            best = max(best, t)
            ts.append(best)
        self.batches, self.times = bs, ts

    @classmethod
    def of(cls, fn: Callable[[int], float], batches: Sequence[int]) -> "ServiceCurve":
        return cls({int(b): fn(int(b)) for b in sorted(set(batches))})

    def __call__(self, b: float) -> float:
        bs, ts = self.batches, self.times
        if b <= bs[0]:
            return ts[0]
        if b >= bs[-1]:
            if len(bs) == 1:
                return ts[-1]
            slope = (ts[-1] - ts[-2]) / (bs[-1] - bs[-2])
            return ts[-1] + slope * (b - bs[-1])
        i = bisect_left(bs, b)
        b0, b1, t0, t1 = bs[i - 1], bs[i], ts[i - 1], ts[i]
        return t0 + (t1 - t0) * (b - b0) / (b1 - b0)


def poisson_quantile(mean: float, q: float = 0.99) -> int:
    """The smallest k with P(Poisson(mean) <= k) >= q."""
    if mean <= 0:
        return 0
    if mean > 500:                                   # normal approximation
        return int(math.ceil(mean + 2.3263478740408408 * math.sqrt(mean)))
    p = math.exp(-mean)
    cdf, k = p, 0
    while cdf < q:
        k += 1
        p *= mean / k
        cdf += p
    return k


def gamma_quantile(k: int, lam: float, q: float = 0.99) -> float:
    """Seconds until ``k`` Poisson(lam) arrivals, its ``q``-quantile (Wilson-Hilferty; 0 for k = 0)."""
    if k <= 0:
        return 0.0
    z = {0.99: 2.3263478740408408}.get(q)
    if z is None:
        from statistics import NormalDist
        z = NormalDist().inv_cdf(q)
    return k * (1 - 1 / (9 * k) + z / (3 * math.sqrt(k))) ** 3 / lam


@dataclass(frozen=True)
class Latency:
    """What the model predicts for one device at arrival rate ``lam``."""

    lam: float
    stable: bool
    mean_batch: float
    p99_batch: int
    utilisation: float              # fraction of time the worker runs a batch
    p99_s: float
    mean_s: float

    def as_dict(self) -> dict:
        return {"qps_per_device": self.lam, "stable": self.stable, "mean_batch": self.mean_batch,
                "p99_batch": self.p99_batch, "utilisation": self.utilisation, "p99_s": self.p99_s,
                "mean_s": self.mean_s}


def predict_latency(lam: float, policy: Policy, service: ServiceFn) -> Latency:
    """The analytic model of the module docstring, for arrival rate ``lam`` (requests/s) on one device."""
    if lam <= 0:
        raise ValueError(f"arrival rate must be > 0, got {lam}")
    B, D = policy.max_batch, policy.max_delay_s
    sB = service(B)
    if lam * sB >= B:
        return Latency(lam, False, float(B), B, 1.0, math.inf, math.inf)
    F = min(D, (B - 1) / lam)
    b_idle = min(float(B), 1.0 + lam * F)
    b = b_idle
    for _ in range(100):                            # fixed point of b = lam * max(S(b), F)
        nb = min(float(B), max(b_idle, lam * max(service(b), F)))
        if abs(nb - b) < 1e-9 * max(1.0, b):
            b = nb
            break
        b = nb
    rho = min(1.0, lam * service(b) / b)
    b99 = min(B, 1 + poisson_quantile(lam * max(F, service(b))))
    F99 = min(D, gamma_quantile(B - 1, lam))
    wait = F99 if rho < 0.01 else max(F99, service(b99))
    backlog = 0.0
    if b99 == B:
        a = lam * sB
        q99 = a * math.log(100.0) / (2.0 * (B - a))
        backlog = q99 / B * sB
    p99 = wait + backlog + service(b99)
    mean = rho * service(b) / 2 + (1 - rho) * F / 2 + service(b)
    return Latency(lam, True, b, b99, rho, p99, mean)


def max_rate(policy: Policy, service: ServiceFn, p99_s: float, *, lo: float = 1e-3, points: int = 200) -> float:
    """The largest arrival rate (requests/s, one device) the model says meets ``p99_s`` (0 if none):
    a log-spaced scan of ``points`` rates below the stability limit, then bisection of the last
    feasible step."""
    hi = policy.max_batch / service(policy.max_batch) if service(policy.max_batch) > 0 else 1e12
    grid = np.geomspace(lo, hi * (1 - 1e-9), points)
    ok = [predict_latency(float(x), policy, service).p99_s <= p99_s for x in grid]
    if not any(ok):
        return 0.0
    i = max(j for j, v in enumerate(ok) if v)
    if i == len(grid) - 1:
        return float(grid[i])
    a, b = float(grid[i]), float(grid[i + 1])
    for _ in range(40):
        m = (a + b) / 2
        if predict_latency(m, policy, service).p99_s <= p99_s:
            a = m
        else:
            b = m
    return a


@dataclass(frozen=True)
class Simulated:
    p99_s: float
    mean_s: float
    mean_batch: float
    utilisation: float
    requests: int


def simulate(lam: float, policy: Policy, service: ServiceFn, *, requests: int = 20000, seed: int = 0,
             warmup: float = 0.1) -> Simulated:
    """Event-by-event run of the batcher of the module docstring (Poisson arrivals, one worker)."""
    rng = np.random.default_rng(seed)
    arr = np.cumsum(rng.exponential(1.0 / lam, requests))
    B, D = policy.max_batch, policy.max_delay_s
    lat = np.empty(requests)
    free, i, busy, batches = 0.0, 0, 0.0, []
    while i < requests:
        oldest = arr[i]
        t = max(free, oldest)                       # the worker takes the oldest request
        deadline = oldest + D
        j_full = i + B - 1                          # the B-th request from the oldest
        t_full = arr[j_full] if j_full < requests else math.inf
        start = max(t, min(deadline, t_full))
        # every request that has arrived by `start`, at most B
        j = min(i + B, int(np.searchsorted(arr, start, side="right")), requests)
        b = j - i
        s = service(b)
        end = start + s
        lat[i:j] = end - arr[i:j]
        busy += s
        batches.append(b)
        free, i = end, j
    k = int(requests * warmup)
    kept = lat[k:]
    span = free - arr[0]
    return Simulated(float(np.quantile(kept, 0.99)), float(kept.mean()), float(np.mean(batches)),
                     float(busy / span) if span > 0 else 1.0, requests)
