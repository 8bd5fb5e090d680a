"""A first roofline time model: work on a catalogued device -> lower-bound seconds per stage.

Per stage::

    time = max(sum over dtypes flops / peak[dtype],  max over tiers bytes_t / bandwidth_t) / efficiency
           + calls x call_overhead

(scattered-row bytes of a tier at its gather bandwidth when the device gives one). Stages run one after
the other, so the total is their sum, plus inputs/outputs over the host link (accelerators only),
plus a fixed per-inference overhead. ``efficiency`` and the overheads are a :class:`PerfParams`, the
object a calibration profile (JSON, written by the later ``xrec calibrate``) fills; uncalibrated it is
efficiency 1.0 and the device's catalogued per-call overhead for the target, which makes the time a
lower bound.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from .catalogue import Device
from .rules import CostError
from .work import STAGES, GraphWork, Work


@dataclass(frozen=True)
class PerfParams:
    """How far from the roofline a target runs on a device; what calibration measures.

    ``efficiency``: stage -> fraction of the roofline reached (0 < e <= 1) at large batch,
    ``default_efficiency`` for the stages not listed; ``batch_half``: stage -> the batch at which the
    stage reaches half of that (small GEMMs and short gather loops run further from the roofline):
    efficiency at batch B is ``e * B / (B + batch_half)`` (no entry: constant); ``bandwidth_Bps`` /
    ``gather_bandwidth_Bps``: memory tier -> bytes/s measured by calibration, used in place of the
    device's figures (the host's "cache" tier has none in the catalogue); ``call_overhead_s``: seconds per call (None: the device's catalogued figure
    for the target, else 0); ``fixed_overhead_s``: seconds per inference call (runtime entry, input
    checks); ``input_overhead_s``: seconds per input tensor per call (conversion, validation);
    ``request_overhead_s`` + ``request_input_overhead_s`` x input tensors: server CPU per request
    beyond the kernel call (HTTP, JSON, hand-offs; not part of a prediction's time, used by ``xrec plan``
    to size a server: :meth:`request_cpu_s`); ``per_node``: a stage's nodes run one after another, so its roofline term is the sum over nodes
    of max(compute, memory) (a forecast; calibration sets it) rather than max(sum of compute, sum of
    memory) (a lower bound, the default); ``large_weights``: ``efficiency`` / ``batch_half`` /
    ``bandwidth_Bps`` measured on a graph with big dense weights, and ``weight_points`` =
    {"largest": (small, large), "total": (small, large)}: the largest weight matrix and the total dense
    weight bytes of the two calibration graphs. Efficiencies follow the graph's largest matrix (how a
    GEMM tiles), interpolated in log bytes between the two and clamped to them; the cache tier's stream
    bandwidth (what a batch-1 GEMV reaches) steps to the large graph's once the graph's dense weights
    exceed ``weight_cache_bytes`` (the cores' L2: a capacity, so a step, not a slope);
    ``weight_stream``: how a small batch streams dense weights, per layer, on a target that knows
    which core reads which layer (the cpu target's model, ``xrec.cost.targets.cpu``: see there for
    the keys); when given, ``for_weights`` leaves the cache bandwidth alone and the target's model
    times the weights itself (``predict_work(weight_s=...)``);
    ``source``: where the numbers come from.
    """

    efficiency: Mapping[str, float] = field(default_factory=dict)
    default_efficiency: float = 1.0
    batch_half: Mapping[str, float] = field(default_factory=dict)
    bandwidth_Bps: Mapping[str, float] = field(default_factory=dict)
    gather_bandwidth_Bps: Mapping[str, float] = field(default_factory=dict)
    call_overhead_s: float | None = None
    fixed_overhead_s: float = 0.0
    input_overhead_s: float = 0.0
    request_overhead_s: float = 0.0
    request_input_overhead_s: float = 0.0
    per_node: bool = False
    large_weights: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    weight_points: Mapping[str, tuple] = field(default_factory=dict)
    weight_cache_bytes: float = 0.0
    weight_stream: Mapping[str, object] = field(default_factory=dict)
    device: str = ""
    target: str = ""
    source: str = "uncalibrated roofline (efficiency 1.0, a lower bound; xrec calibrate measures this machine)"

    def __post_init__(self):
        eff = dict(self.efficiency)
        for stage, e in {**eff, "default": self.default_efficiency}.items():
            if stage != "default" and stage not in STAGES:
                raise CostError(f"PerfParams.efficiency: unknown stage {stage!r}; stages: {', '.join(STAGES)}")
            if not isinstance(e, (int, float)) or not 0 < e <= 1:
                raise CostError(f"PerfParams.efficiency[{stage!r}] must be in (0, 1], got {e!r}")
        for name in ("call_overhead_s", "fixed_overhead_s", "input_overhead_s", "request_overhead_s",
                     "request_input_overhead_s"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, (int, float)) or v < 0):
                raise CostError(f"PerfParams.{name} must be >= 0, got {v!r}")
        half = dict(self.batch_half)
        for stage, h in half.items():
            if stage != "default" and stage not in STAGES:
                raise CostError(f"PerfParams.batch_half: unknown stage {stage!r}; stages: default, {', '.join(STAGES)}")
            if isinstance(h, bool) or not isinstance(h, (int, float)) or not h >= 0:
                raise CostError(f"PerfParams.batch_half[{stage!r}] must be >= 0, got {h!r}")
        for name in ("bandwidth_Bps", "gather_bandwidth_Bps"):
            bw = dict(getattr(self, name))
            for tier, v in bw.items():
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
                    raise CostError(f"PerfParams.{name}[{tier!r}] must be > 0 bytes/s, got {v!r}")
            object.__setattr__(self, name, bw)
        object.__setattr__(self, "efficiency", eff)
        object.__setattr__(self, "batch_half", half)
        large = {k: dict(v) for k, v in dict(self.large_weights).items()}
        extra = set(large) - {"efficiency", "batch_half", "bandwidth_Bps"}
        if extra:
            raise CostError(f"PerfParams.large_weights: unknown keys {sorted(extra)} "
                            "(allowed: efficiency, batch_half, bandwidth_Bps)")
        pts = {k: tuple(v) for k, v in dict(self.weight_points).items()}
        if large and (set(pts) != {"largest", "total"} or
                      not all(len(v) == 2 and 0 < v[0] < v[1] for v in pts.values())):
            raise CostError("PerfParams.weight_points must be {\"largest\": (small, large), \"total\": (small, large)} "
                            f"with 0 < small < large bytes when large_weights is given, got {dict(self.weight_points)!r}")
        if isinstance(self.weight_cache_bytes, bool) or not isinstance(self.weight_cache_bytes, (int, float)) \
                or self.weight_cache_bytes < 0:
            raise CostError(f"PerfParams.weight_cache_bytes must be >= 0, got {self.weight_cache_bytes!r}")
        ws = dict(self.weight_stream)
        for k, v in ws.items():
            vals = [x for pt in v for x in pt] if k == "points" and isinstance(v, (list, tuple)) else [v]
            if not vals or any(isinstance(x, bool) or not isinstance(x, (int, float)) or not x > 0 for x in vals):
                raise CostError(f"PerfParams.weight_stream[{k!r}] must be > 0 (points: [[bytes, bytes/s], ...]), "
                                f"got {v!r}")
        object.__setattr__(self, "weight_stream", ws)
        object.__setattr__(self, "large_weights", large)
        object.__setattr__(self, "weight_points", pts)
        if large:
            self.for_weights(math.inf, math.inf)      # the replaced fields are checked like the others

    def for_weights(self, total_bytes: float, largest_bytes: float) -> "PerfParams":
        """These parameters for a graph with ``total_bytes`` of dense weights, the largest matrix
        ``largest_bytes``: interpolated towards ``large_weights`` (see the class docstring)."""
        if not self.large_weights:
            return self

        def pos(x, key):
            lo, hi = self.weight_points[key]
            if x <= lo:
                return 0.0
            return 1.0 if x >= hi else math.log(x / lo) / math.log(hi / lo)

        def mix(a, b, t):                      # geometric: efficiencies and bandwidths are ratios
            return a if t == 0 else b if t == 1 else math.exp((1 - t) * math.log(a) + t * math.log(b))

        t_eff = pos(largest_bytes, "largest")
        t_bw = 1.0 if self.weight_cache_bytes and total_bytes > self.weight_cache_bytes \
            and not self.weight_stream else 0.0
        if t_eff == 0 and t_bw == 0:
            return self
        d = self.as_dict()
        lw = self.large_weights
        for st, e in lw.get("efficiency", {}).items():
            d["efficiency"][st] = mix(self.efficiency_of(st), e, t_eff)
        for st, h in lw.get("batch_half", {}).items():
            h0 = self.batch_half.get(st, self.batch_half.get("default", 0.0))
            d["batch_half"][st] = (1 - t_eff) * h0 + t_eff * h
        for tier, bw in lw.get("bandwidth_Bps", {}).items():
            if tier in self.bandwidth_Bps:
                d["bandwidth_Bps"][tier] = mix(self.bandwidth_Bps[tier], bw, t_bw)
        d["large_weights"], d["weight_points"], d["weight_cache_bytes"] = {}, {}, 0.0
        return PerfParams.from_dict(d)

    def request_cpu_s(self, input_tensors: int) -> float:
        """Server CPU seconds per request outside the kernel call, for a model of ``input_tensors`` inputs."""
        return self.request_overhead_s + self.request_input_overhead_s * input_tensors

    def efficiency_of(self, stage: str, batch: int | None = None) -> float:
        """Fraction of the roofline ``stage`` reaches (at ``batch`` when the stage has a batch_half)."""
        e = float(self.efficiency.get(stage, self.default_efficiency))
        h = self.batch_half.get(stage, self.batch_half.get("default"))
        if batch is not None and h:
            e *= batch / (batch + float(h))
        return e

    def as_dict(self) -> dict:
        return {"device": self.device, "target": self.target, "source": self.source,
                "efficiency": dict(self.efficiency), "default_efficiency": self.default_efficiency,
                "batch_half": dict(self.batch_half), "bandwidth_Bps": dict(self.bandwidth_Bps),
                "gather_bandwidth_Bps": dict(self.gather_bandwidth_Bps), "call_overhead_s": self.call_overhead_s, "fixed_overhead_s": self.fixed_overhead_s,
                "input_overhead_s": self.input_overhead_s, "request_overhead_s": self.request_overhead_s,
                "request_input_overhead_s": self.request_input_overhead_s, "per_node": self.per_node,
                "large_weights": {k: dict(v) for k, v in self.large_weights.items()},
                "weight_points": {k: list(v) for k, v in self.weight_points.items()},
                "weight_cache_bytes": self.weight_cache_bytes, "weight_stream": dict(self.weight_stream)}

    @classmethod
    def from_dict(cls, d: Mapping, where: str = "performance parameters") -> "PerfParams":
        known = {"device", "target", "source", "efficiency", "default_efficiency", "batch_half", "bandwidth_Bps",
                 "gather_bandwidth_Bps", "call_overhead_s",
                 "fixed_overhead_s", "input_overhead_s", "request_overhead_s",
                 "request_input_overhead_s", "per_node", "large_weights", "weight_points", "weight_cache_bytes",
                 "weight_stream", "measured"}
        extra = set(d) - known
        if extra:
            raise CostError(f"{where}: unknown fields {sorted(extra)}; fields: {', '.join(sorted(known))}")
        d = {k: v for k, v in d.items() if k != "measured"}      # a profile's raw samples: for the reader
        try:
            return cls(**dict(d))
        except TypeError as e:
            raise CostError(f"{where}: {e}") from None

    @classmethod
    def from_json(cls, path) -> "PerfParams":
        try:
            d = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise CostError(f"cannot read performance parameters from {path}: {e}") from None
        if not isinstance(d, dict):
            raise CostError(f"{path}: expected one JSON object")
        return cls.from_dict(d, str(path))


@dataclass(frozen=True)
class StageTime:
    stage: str
    compute_s: float
    memory_s: Mapping[str, float]        # tier -> seconds
    overhead_s: float                    # calls x per-call overhead
    efficiency: float
    time_s: float
    bound: str                           # "compute", "memory:<tier>", "overhead" or "none"

    def as_dict(self) -> dict:
        return {"stage": self.stage, "compute_s": self.compute_s, "memory_s": dict(self.memory_s),
                "overhead_s": self.overhead_s, "efficiency": self.efficiency, "time_s": self.time_s,
                "bound": self.bound}


@dataclass(frozen=True)
class Prediction:
    device: str
    target: str
    batch: int
    stages: tuple[StageTime, ...]
    transfer_s: float
    fixed_s: float
    total_s: float
    params: PerfParams
    notes: tuple[str, ...] = ()

    def stage(self, name: str) -> StageTime:
        return next(s for s in self.stages if s.stage == name)

    def as_dict(self) -> dict:
        return {"device": self.device, "target": self.target, "batch": self.batch,
                "stages": {s.stage: s.as_dict() for s in self.stages}, "transfer_s": self.transfer_s,
                "fixed_s": self.fixed_s, "total_s": self.total_s, "params": self.params.as_dict(),
                "notes": list(self.notes)}


def _peak(device: Device, dtype: str, notes: list[str]) -> float:
    f = device.peak_flops.get(dtype)
    if f is not None and f.known and f.value > 0:
        return f.value
    for alt in ("f32", *sorted(device.peak_flops, key=lambda k: -(device.peak_flops[k].value or 0))):
        g = device.peak_flops.get(alt)
        if g is not None and g.known and g.value > 0:
            msg = (f"{device.name} has no {dtype} peak"
                   + (f" ({f.reason})" if f is not None and f.reason else "")
                   + f": {dtype} FLOPs timed at its {alt} peak")
            if msg not in notes:
                notes.append(msg)
            return g.value
    raise CostError(f"{device.path or device.name}: no known peak FLOP/s to time {dtype} work with")


def _memory_seconds(device: Device, work: Work, notes: list[str], params: PerfParams | None = None,
                    weights: tuple[str, float, float] | None = None) -> dict[str, float]:
    """Seconds per memory tier; ``weights`` = (tier, bytes, seconds): that many of the tier's bytes are
    dense weights whose streaming time the target's model worked out itself (``predict_work(weight_s=)``)."""
    out = {}
    for tier, nbytes in work.bytes.items():
        t = device.memory.get(tier)
        if weights is not None and weights[0] == tier:
            wb = min(weights[1], nbytes)
            rest = Work(bytes={tier: nbytes - wb}, gather_bytes={tier: min(work.gather_bytes.get(tier, 0.0),
                                                                            nbytes - wb)})
            out[tier] = weights[2] + _memory_seconds(device, rest, notes, params).get(tier, 0.0)
            continue
        if params is not None and tier in params.bandwidth_Bps:
            bw = params.bandwidth_Bps[tier]
            gbw = params.gather_bandwidth_Bps.get(tier, bw)
            gather = work.gather_bytes.get(tier, 0.0)
            out[tier] = (nbytes - gather) / bw + gather / gbw
            continue
        if t is None or not t.bandwidth_Bps.known or not t.bandwidth_Bps.value:
            msg = f"{device.name} has no known bandwidth for memory tier {tier!r}: its bytes are not timed"
            if msg not in notes:
                notes.append(msg)
            continue
        gather = work.gather_bytes.get(tier, 0.0)
        gbw = t.gather_bandwidth_Bps.value if t.gather_bandwidth_Bps is not None and \
            t.gather_bandwidth_Bps.known and t.gather_bandwidth_Bps.value else t.bandwidth_Bps.value
        out[tier] = (nbytes - gather) / t.bandwidth_Bps.value + gather / gbw
    return out


def _roof(work: Work, device: Device, params: PerfParams, notes: list[str], weights=None) -> float:
    return max([sum(f / _peak(device, dt, notes) for dt, f in work.flops.items()),
                *_memory_seconds(device, work, notes, params, weights).values()])


def stage_time(stage: str, work: Work, device: Device, params: PerfParams, call_overhead: float,
               notes: list[str], batch: int | None = None, parts=None, weight_s=None) -> StageTime:
    """``work`` is the stage's sum; ``parts`` its nodes' works (used when ``params.per_node``), as Works
    or NodeWorks; ``weight_s``: node name -> (tier, weight bytes, seconds) (see ``predict_work``)."""
    compute = sum(f / _peak(device, dt, notes) for dt, f in work.flops.items())
    mem = _memory_seconds(device, work, notes, params)
    eff = params.efficiency_of(stage, batch)
    worst_tier = max(mem, key=mem.get) if mem else None
    roof = max([compute, *mem.values()])
    if params.per_node and parts:
        roof = 0.0
        for w in parts:
            ws = (weight_s or {}).get(getattr(w, "node", None))
            if ws is not None:          # measured stream seconds: not divided by the GEMM efficiency
                ws = (ws[0], ws[1], ws[2] * eff)
            roof += _roof(getattr(w, "work", w), device, params, notes, ws)
    over = work.calls * call_overhead
    if roof == 0 and over == 0:
        bound = "none"
    elif over > roof / eff:
        bound = "overhead"
    else:
        bound = "compute" if worst_tier is None or compute >= mem[worst_tier] else f"memory:{worst_tier}"
    return StageTime(stage, compute, mem, over, eff, roof / eff + over, bound)


def call_overhead_for(device: Device, target: str, params: PerfParams, notes: list[str]) -> float:
    if params.call_overhead_s is not None:
        return float(params.call_overhead_s)
    f = device.call_overhead_s.get(target)
    if f is not None and f.known:
        return f.value
    notes.append(f"{device.name} lists no per-call overhead for target {target!r}: calls are not timed "
                 "(xrec calibrate will measure it)")
    return 0.0


def predict_work(gw: GraphWork, device: Device, target: str, params: PerfParams | None = None,
                 weight_s=None) -> Prediction:
    """Lower-bound time of the work ``gw`` (xrec.cost.graph_work) for ``target`` on ``device``.

    ``weight_s``: node name -> (tier, bytes, seconds): the dense weights of those nodes stream in that
    many seconds (a target's own model of who reads which layer, ``xrec.cost.targets.cpu``); their
    bytes are taken out of the tier's bandwidth term. Used with ``params.per_node`` only."""
    if target not in device.targets:
        raise CostError(f"target {target!r} does not run on {device.name} (its targets: "
                        f"{', '.join(device.targets)})")
    params = (params or PerfParams(device=device.name, target=target)).for_weights(gw.dense_param_bytes,
                                                                                  gw.largest_param_bytes)
    notes = list(gw.notes)
    over = call_overhead_for(device, target, params, notes)
    stages = tuple(stage_time(s, w, device, params, over, notes, gw.batch,
                              [n for n in gw.nodes if n.stage == s], weight_s) for s, w in gw.stages.items())
    transfer = 0.0
    link = device.host_link
    moved = sum(gw.total.transfers.values())
    if link is not None and moved:
        if link.known and link.value:
            transfer = moved / link.value
        else:
            notes.append(f"{device.name} has no known host-link bandwidth: transfers are not timed")
    fixed = params.fixed_overhead_s + params.input_overhead_s * sum(1 for n in gw.nodes if n.op == "input")
    total = sum(s.time_s for s in stages) + transfer + fixed
    return Prediction(device.name, target, gw.batch, stages, transfer, fixed, total, params, tuple(notes))


def predict(g, device: Device, target: str, batch: int, params: PerfParams | None = None, **work_kw) -> Prediction:
    """Cost ``g`` at ``batch`` with the device's cache size, then time it (``work_kw`` go to graph_work)."""
    from .graph import graph_work
    work_kw.setdefault("cache_bytes", device.cache_bytes)
    return predict_work(graph_work(g, batch, **work_kw), device, target, params)
