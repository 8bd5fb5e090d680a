"""The work an IR node implies: FLOPs by dtype, bytes by memory tier, calls, host-device transfers.

A :class:`Work` is a small immutable record that adds with ``+``; per-node
records sum into stages (:data:`STAGES`) and a graph total
(:class:`GraphWork`). Nothing here knows about a device's speed: the time
model (``xrec.cost.model``) turns work into seconds.

Memory tiers are named, not numbered: ``"main"`` (DRAM, HBM: the memory the
tables live in) and ``"cache"`` (on-chip: last-level cache, SRAM). A device's
catalogue file (``xrec.cost.hardware``) gives each tier's capacity and
bandwidth under the same names.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

STAGES: tuple[str, ...] = ("embedding", "dense", "interaction", "other")
"""The stages a graph's work sums into; every cost rule names one."""

MAIN, CACHE = "main", "cache"
TIERS: tuple[str, ...] = (MAIN, CACHE)
H2D, D2H = "h2d", "d2h"


def _add(a: Mapping[str, float], b: Mapping[str, float]) -> dict[str, float]:
    out = dict(a)
    for k, v in b.items():
        out[k] = out.get(k, 0.0) + v
    return out


def _clean(m: Mapping[str, float] | None) -> dict[str, float]:
    return {k: float(v) for k, v in (m or {}).items() if v}


@dataclass(frozen=True)
class Work:
    """What one node (or a sum of nodes) costs, independent of how fast a device is.

    ``flops``: dtype value ("f32", "bf16", "i8", ...) -> floating/integer operations (FLOP-equivalents
    for transcendental functions, see ``rules/elementwise.py``).
    ``bytes``: memory tier -> bytes read or written there (``gather_bytes`` included).
    ``gather_bytes``: tier -> the part of ``bytes`` read as scattered rows (embedding gathers); a device
    may have a lower bandwidth for those (the host's probed random-gather bandwidth).
    ``calls``: kernel launches or library calls.
    ``transfers``: "h2d" / "d2h" -> bytes crossing the host link (zero cost on a CPU).
    """

    flops: Mapping[str, float] = field(default_factory=dict)
    bytes: Mapping[str, float] = field(default_factory=dict)
    gather_bytes: Mapping[str, float] = field(default_factory=dict)
    calls: int = 0
    transfers: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self):
        for name in ("flops", "bytes", "gather_bytes", "transfers"):
            m = _clean(getattr(self, name))
            if any(v < 0 for v in m.values()):
                raise ValueError(f"Work.{name} must not be negative: {m}")
            object.__setattr__(self, name, m)
        if self.calls < 0:
            raise ValueError(f"Work.calls must not be negative: {self.calls}")
        for tier, g in self.gather_bytes.items():
            if g > self.bytes.get(tier, 0.0) * (1 + 1e-12):
                raise ValueError(f"Work.gather_bytes[{tier!r}] = {g} exceeds bytes[{tier!r}] = "
                                 f"{self.bytes.get(tier, 0.0)}")

    def __add__(self, other: "Work") -> "Work":
        if not isinstance(other, Work):
            return NotImplemented
        return Work(_add(self.flops, other.flops), _add(self.bytes, other.bytes),
                    _add(self.gather_bytes, other.gather_bytes), self.calls + other.calls,
                    _add(self.transfers, other.transfers))

    def __radd__(self, other):
        if other == 0:                     # sum() starts from 0
            return self
        return NotImplemented

    @property
    def total_flops(self) -> float:
        return float(sum(self.flops.values()))

    @property
    def total_bytes(self) -> float:
        return float(sum(self.bytes.values()))

    def as_dict(self) -> dict:
        return {"flops": dict(self.flops), "bytes": dict(self.bytes), "gather_bytes": dict(self.gather_bytes),
                "calls": self.calls, "transfers": dict(self.transfers)}


ZERO = Work()


@dataclass(frozen=True)
class NodeWork:
    """The work of one IR node (``node`` is its value name; ``op`` the Op's value)."""

    node: str
    op: str
    stage: str
    work: Work
    estimated: bool = False         # True: no cost rule, the conservative default was used


@dataclass(frozen=True)
class GraphWork:
    """Per-node work of a graph at one batch, and its sums per stage.

    ``bindings``: the value of every shape symbol used (``B`` and the id counts ``N_<feature>``);
    ``notes``: every assumption made (features without pooling statistics, ops costed by the default).
    """

    graph: str
    batch: int
    nodes: tuple[NodeWork, ...]
    bindings: Mapping[str, int]
    cache_bytes: int
    notes: tuple[str, ...] = ()
    dense_param_bytes: int = 0       # the graph's parameters other than embedding tables (dense weights)
    largest_param_bytes: int = 0     # the biggest of them (a layer's weight matrix)

    def stage(self, name: str) -> Work:
        if name not in STAGES:
            raise KeyError(f"unknown stage {name!r}; stages: {', '.join(STAGES)}")
        return sum((n.work for n in self.nodes if n.stage == name), ZERO)

    @property
    def stages(self) -> dict[str, Work]:
        return {s: self.stage(s) for s in STAGES}

    @property
    def total(self) -> Work:
        return sum((n.work for n in self.nodes), ZERO)

    @property
    def estimated(self) -> tuple[str, ...]:
        return tuple(n.node for n in self.nodes if n.estimated)

    def as_dict(self) -> dict:
        return {"graph": self.graph, "batch": self.batch, "bindings": dict(self.bindings),
                "cache_bytes": self.cache_bytes, "dense_param_bytes": self.dense_param_bytes,
                "largest_param_bytes": self.largest_param_bytes, "notes": list(self.notes),
                "stages": {s: w.as_dict() for s, w in self.stages.items()},
                "total": self.total.as_dict(),
                "nodes": [{"node": n.node, "op": n.op, "stage": n.stage, "estimated": n.estimated,
                           **n.work.as_dict()} for n in self.nodes]}
