"""Score one configuration: p99 at the traffic, devices needed, memory fit, $ per million queries,
joules per query, accuracy; and the reasons a configuration is rejected.

Per (device, target, precision) the time per batch ``S(b)`` comes from ``xrec.cost.perf.predict_target``
(the target's calibrated model where there is one); per batching policy the device count is the
smallest ``n <= max_devices`` whose per-device traffic ``Q/n`` meets the p99 bound in the queueing model
(``queueing.predict_latency``; every device holds a full replica of the model and gets ``Q/n`` at
random). More devices of the same configuration only add cost and idle power, so the smallest count is
the one ranked.

* throughput at the latency bound: the largest per-device rate whose p99 meets the bound
  (``queueing.max_rate``).
* memory: the model's parameters (tables at the precision + dense weights) against the device's memory
  tiers other than "cache" (HBM and DDR of an FPGA card both hold tables); activations are not counted.
* $ per million queries: ``n * price_per_hour / (3600 * Q) * 1e6``; a device without a price cannot be
  ranked by cost (no price is invented).
* joules per query: ``n * P(u) / Q`` with the power model ``P(u) = idle + u (max - idle)``
  (``xrec.cost.energy``) and ``u`` the queueing model's utilisation; samples/J = 1 / J per query
  (one query = one sample). Only the planned device's power: the host that feeds an accelerator, the
  network and cooling are not counted.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..energy import EnergyUnavailable, PowerModel, power_model
from .queueing import Latency, Policy, ServiceCurve, max_rate, predict_latency

OBJECTIVES = ("cost", "energy", "latency")


@dataclass
class Row:
    device: str
    target: str
    precision: str
    policy: Policy
    count: int | None = None
    latency: Latency | None = None
    rate_at_sla: float | None = None                    # queries/s one device serves within the p99 bound
    service_s: dict = field(default_factory=dict)       # batch -> predicted seconds
    memory_bytes: int | None = None
    capacity_bytes: float | None = None
    usd_per_mq: float | None = None
    joules_per_query: float | None = None
    power_W: float | None = None
    energy_source: str = ""
    auc_drop: float | None = None
    accuracy: str = ""
    reasons: list[str] = field(default_factory=list)    # why rejected (empty: feasible)
    notes: list[str] = field(default_factory=list)

    @property
    def feasible(self) -> bool:
        return not self.reasons

    @property
    def p99_s(self) -> float:
        return self.latency.p99_s if self.latency else math.inf

    @property
    def samples_per_J(self) -> float | None:
        return None if not self.joules_per_query else 1.0 / self.joules_per_query

    @property
    def key(self) -> str:
        return (f"{self.device}/{self.target}/{self.precision}/B{self.policy.max_batch}"
                f"/D{self.policy.max_delay_us}us")

    def as_dict(self) -> dict:
        return {"device": self.device, "target": self.target, "precision": self.precision,
                "policy": self.policy.as_dict(), "count": self.count,
                "latency": self.latency.as_dict() if self.latency else None,
                "p99_ms": None if math.isinf(self.p99_s) else self.p99_s * 1e3,
                "qps_per_device_at_p99_bound": self.rate_at_sla,
                "service_s": {str(k): v for k, v in self.service_s.items()},
                "memory_bytes": self.memory_bytes, "capacity_bytes": self.capacity_bytes,
                "usd_per_million_queries": self.usd_per_mq, "joules_per_query": self.joules_per_query,
                "samples_per_joule": self.samples_per_J, "power_W": self.power_W,
                "energy_source": self.energy_source, "auc_drop": self.auc_drop, "accuracy": self.accuracy,
                "feasible": self.feasible, "reasons": list(self.reasons), "notes": list(self.notes)}


def _size(n: float) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.2f} MiB"


def capacity_bytes(device) -> float | None:
    """Bytes the model's tables and weights can live in: every known non-cache tier (None if main is unknown)."""
    main = device.memory["main"].capacity_bytes
    if not main.known:
        return None
    return float(sum(t.capacity_bytes.value for k, t in device.memory.items()
                     if k != "cache" and t.capacity_bytes.known))


def service_curve(variant, device, batches, params=None) -> tuple[ServiceCurve, dict, list[str]]:
    from ..perf import predict_target
    pts, notes = {}, []
    per_request = 0.0
    for b in sorted(set(batches)):
        p = predict_target(variant.graph, device, variant.target, int(b), params)
        if device.kind == "cpu" and hasattr(p.params, "request_cpu_s"):
            # xrec-server's CPU per request outside the kernel (HTTP, JSON; calibrated) shares the cores
            per_request = float(p.params.request_cpu_s(len(variant.graph.input_nodes)))
        pts[int(b)] = p.total_s + int(b) * per_request
        for n in p.notes:
            if n not in notes:
                notes.append(n)
        src = p.params.source
    notes.insert(0, f"time model: {src}")
    if per_request:
        notes.insert(1, f"service time includes xrec-server's CPU per request outside the kernel: "
                        f"{per_request * 1e6:.1f} us x rows (calibrated; it shares the device's cores)")
    return ServiceCurve(pts), pts, notes


def _count(qps: float, policy: Policy, service, p99_s: float, max_devices: int) -> tuple[int, Latency]:
    """The smallest device count (<= max_devices) meeting p99_s, else the count with the lowest p99."""
    cap = policy.max_batch / service(policy.max_batch) if service(policy.max_batch) > 0 else math.inf
    n0 = max(1, math.ceil(qps / cap * (1 + 1e-9))) if math.isfinite(cap) else 1
    if n0 > max_devices:
        n = max_devices
        return n, predict_latency(qps / n, policy, service)
    lat = {}

    def ok(n):
        lat[n] = predict_latency(qps / n, policy, service)
        return lat[n].p99_s <= p99_s
    if ok(n0):
        return n0, lat[n0]
    hi = n0
    while hi < max_devices:                       # exponential search, then bisection
        hi = min(max_devices, hi * 2)
        if ok(hi):
            lo = n0
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if ok(mid):
                    hi = mid
                else:
                    lo = mid
            return hi, lat[hi]
    best = min(lat, key=lambda n: lat[n].p99_s)
    return best, lat[best]


def score(variant, device, policies, *, qps: float, p99_s: float, max_devices: int = 64,
          max_auc_drop: float | None = None, objective: str = "cost", price: float | None = None,
          power: PowerModel | None = None, power_error: str = "", params=None) -> list[Row]:
    """One :class:`Row` per policy for ``variant`` (a space.Variant) on ``device``."""
    rows = []
    base = dict(device=device.name, target=variant.target, precision=variant.precision)
    if variant.graph is None:
        return [Row(**base, policy=p, reasons=[f"build: {variant.error}"]) for p in policies]
    # the time model at batch 1 and at each max batch, linear between (a model call can be costly:
    # the xla model compiles the executable per batch)
    batches = {1, *(p.max_batch for p in policies)}
    try:
        curve, pts, notes = service_curve(variant, device, batches, params)
    except Exception as e:        # the target's time model cannot time this IR on this device: say so, go on
        return [Row(**base, policy=p, reasons=[f"build: {variant.target}'s time model failed on {device.name}: "
                                               f"{type(e).__name__}: {e}"]) for p in policies]
    mem = int(variant.graph.param_bytes())
    cap = capacity_bytes(device)
    acc_drop = variant.auc_drop
    for pol in policies:
        r = Row(**base, policy=pol, service_s=pts, memory_bytes=mem, capacity_bytes=cap, auc_drop=acc_drop,
                accuracy=variant.accuracy_note, notes=list(variant.notes) + notes)
        if cap is None:
            r.notes.append(f"{device.name}'s memory capacity is unknown: the fit is not checked")
        elif mem > cap:
            r.reasons.append(f"memory: the model needs {_size(mem)}, {device.name} holds {_size(cap)}")
        if max_auc_drop is not None:
            if acc_drop is None:
                r.reasons.append(f"accuracy: {variant.precision} {variant.accuracy_note}")
            elif acc_drop > max_auc_drop:
                r.reasons.append(f"accuracy: AUC drops {acc_drop:.5f} > {max_auc_drop}")
        n, lat = _count(qps, pol, curve, p99_s, max_devices)
        r.count, r.latency = n, lat
        r.rate_at_sla = max_rate(pol, curve, p99_s, lo=max(1e-3, qps / max_devices / 100), points=60)
        if not lat.stable:
            most = max_devices * pol.max_batch / curve(pol.max_batch)
            r.reasons.append(f"SLA: {max_devices} devices serve at most {most:.4g} queries/s with max batch "
                             f"{pol.max_batch} (S({pol.max_batch}) = {curve(pol.max_batch) * 1e3:.3g} ms)")
        elif lat.p99_s > p99_s:
            r.reasons.append(f"SLA: p99 {lat.p99_s * 1e3:.3g} ms > {p99_s * 1e3:g} ms at best ({n} devices)")
        if price is not None:
            r.usd_per_mq = n * price / (3600.0 * qps) * 1e6
        elif objective == "cost":
            r.reasons.append(f"no price: {device.name} has no price_per_hour (give --price {device.name}=USD "
                             "or a catalogue file with it): the cost objective cannot rank it")
        if power is not None and lat.stable:
            r.power_W = power.power(lat.utilisation)
            r.joules_per_query = n * r.power_W / qps
            r.energy_source = power.source
        else:
            r.energy_source = f"energy cannot be computed: {power_error}" if power is None else ""
            if objective == "energy" and power is None:
                r.reasons.append(f"no power: {power_error}")
        rows.append(r)
    return rows


def device_price(device, override: float | None = None) -> float | None:
    if override is not None:
        return override
    return device.price_per_hour.value if device.price_per_hour.known else None


def device_power(device, override=None) -> tuple[PowerModel | None, str]:
    try:
        return power_model(device, override), ""
    except EnergyUnavailable as e:
        return None, str(e)


def rank(rows: list[Row], objective: str) -> list[Row]:
    """Feasible rows best first for ``objective``; ties: cost -> p99 -> energy, energy -> cost -> p99,
    latency -> cost -> energy; then fewer devices."""
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    inf = math.inf

    def k(r: Row):
        c = r.usd_per_mq if r.usd_per_mq is not None else inf
        e = r.joules_per_query if r.joules_per_query is not None else inf
        lat = r.p99_s
        first = {"cost": (c, lat, e), "energy": (e, c, lat), "latency": (lat, c, e)}[objective]
        return (*first, r.count or 0, r.key)
    return sorted((r for r in rows if r.feasible), key=k)


def closest(rows: list[Row], p99_s: float, n: int = 5) -> list[Row]:
    """The rejected rows nearest to being accepted: fewest reasons, then the lowest p99."""
    rej = [r for r in rows if not r.feasible]
    return sorted(rej, key=lambda r: (len(r.reasons), r.p99_s / p99_s, r.key))[:n]
