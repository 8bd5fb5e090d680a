"""The dynamic-batching latency model (xrec.cost.plan.queueing) against an event-by-event simulation
of the same batcher: Poisson arrivals, one worker, max batch B, max delay D, service a + c*b."""
import math

import pytest

from xrec.cost.plan.queueing import (Policy, ServiceCurve, max_rate, poisson_quantile, predict_latency,
                                     simulate)

SERVICE = ServiceCurve.of(lambda b: 200e-6 + 5e-6 * b, [1, 2, 4, 8, 16, 32, 64, 128, 256])
POLICIES = [Policy(1, 0.0), Policy(16, 0.0), Policy(16, 1e-3), Policy(64, 200e-6), Policy(64, 4e-3),
            Policy(256, 0.0), Policy(256, 1e-3)]
LOADS = (0.05, 0.3, 0.6, 0.8, 0.9)        # fraction of the device's full-batch capacity B / S(B)


def test_service_curve_interpolates_the_affine_time_exactly():
    for b in (1, 3, 17, 100, 255):
        assert SERVICE(b) == pytest.approx(200e-6 + 5e-6 * b)


def test_poisson_quantile():
    assert poisson_quantile(0.0) == 0
    # P(Poisson(1) <= 3) = 0.981, <= 4 = 0.996
    assert poisson_quantile(1.0) == 4
    assert poisson_quantile(10.0) == 18        # P(<=17) = 0.9857, P(<=18) = 0.9928


@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: f"B{p.max_batch}-D{p.max_delay_us}us")
def test_model_p99_is_within_the_simulation_band(policy):
    """Never more than 10 % optimistic (the plan relies on 'meets the bound'), at most 2x pessimistic."""
    cap = policy.max_batch / SERVICE(policy.max_batch)
    for load in LOADS:
        lam = load * cap
        m = predict_latency(lam, policy, SERVICE)
        s = simulate(lam, policy, SERVICE, requests=20000, seed=3)
        ratio = m.p99_s / s.p99_s
        assert 0.9 <= ratio <= 2.0, (policy, load, m.p99_s, s.p99_s)
        assert m.mean_batch == pytest.approx(s.mean_batch, rel=0.15, abs=0.5), (policy, load)


def test_past_capacity_the_queue_is_unstable():
    p = Policy(16, 0.0)
    lam = 1.01 * 16 / SERVICE(16)
    m = predict_latency(lam, p, SERVICE)
    assert not m.stable and math.isinf(m.p99_s)
    # the simulation's latency grows with the run's length (no steady state)
    short = simulate(lam, p, SERVICE, requests=5000, seed=1).p99_s
    long = simulate(lam, p, SERVICE, requests=40000, seed=1).p99_s
    assert long > 2 * short


def test_max_rate_meets_the_bound_in_the_simulation():
    p, bound = Policy(64, 500e-6), 1.5e-3
    lam = max_rate(p, SERVICE, bound)
    assert 0 < lam < 64 / SERVICE(64)
    assert predict_latency(lam, p, SERVICE).p99_s <= bound
    assert simulate(lam, p, SERVICE, requests=20000, seed=5).p99_s <= bound * 1.05
    assert predict_latency(lam * 1.05, p, SERVICE).p99_s > bound


def test_a_bound_below_one_service_time_is_never_met():
    assert max_rate(Policy(8, 0.0), SERVICE, 0.5 * SERVICE(1)) == 0.0


def test_bad_policies_and_rates_are_refused():
    with pytest.raises(ValueError, match="max_batch"):
        Policy(0, 0.0)
    with pytest.raises(ValueError, match="max_delay"):
        Policy(4, -1.0)
    with pytest.raises(ValueError, match="arrival rate"):
        predict_latency(0.0, Policy(4, 0.0), SERVICE)
