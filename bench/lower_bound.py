"""The model's lower-bound time on this machine, for the "roofline %" column of ``xrec bench``.

    roofline % of a row = lower bound / the row's measured median x 100

The lower bound is ``xrec.cost``'s roofline prediction at efficiency 1 (the default
:class:`xrec.cost.PerfParams`: no calibration profile) on the catalogue's ``host`` device whose
figures (fp32 FMA peak, stream-read and random-gather bandwidth) are the ceilings probed in the same
bench run (``xrec.bench.roofline.machine_ceilings``), never the on-disk probe cache of
``xrec cost --hardware host``. The work it times is that of an xrec-optimised IR at the batch and on
the very inputs the systems were timed with: pooling (ids per bag) measured on those inputs, ids
drawn as the input generator draws them (zoo: Zipf 1.05) for the cache-hit estimate.

Which IR: the lower bound is a property of the model's work, not of the system, so every baseline
row of a batch is divided by the same number: the fp32-table IR of an xrec target that compiled (cpu
preferred), or, when none did, the IR ``xrec.api.lower`` builds for cpu (reference where cpu is not
available). A compressed xrec variant (``--quantize int8``) does different work (fewer table
bytes), so its rows are divided by the lower bound of its own IR. The document records, per batch
and precision, which system's IR was costed.
"""
from __future__ import annotations

import inspect
from typing import Any, Sequence

import numpy as np

COST_TARGET = "cpu"             # the host device's target whose (uncalibrated) roofline is the bound
TARGET_PREFERENCE = ("cpu", "reference")      # whose IR stands for a precision when several compiled
WHAT = ("xrec.cost roofline at efficiency 1 (uncalibrated PerfParams): per stage max(FLOPs / probed fp32 "
        "FMA peak, main-memory bytes / probed stream bandwidth, gathered rows / probed gather bandwidth), "
        "stages summed")


class LowerBoundUnavailable(Exception):
    """No lower bound for this run; the message says why (shown in place of the column)."""


# ------------------------------------------------------------------ the device
def host_device(ceilings: dict, machine: dict):
    """The catalogue's ``host`` device with the ceilings this bench run probed."""
    from xrec.cost.catalogue import host_device as catalogue_host, host_figures
    if not ceilings:
        raise LowerBoundUnavailable("no roofline ceilings (run without --no-roofline)")
    if "error" in ceilings:
        raise LowerBoundUnavailable(f"the roofline probes failed: {ceilings['error']}")
    return catalogue_host(host_figures(ceilings, machine), "ceilings probed in this bench run")


def id_distribution(src) -> str:
    """How the bench's inputs draw ids: the zoo generator's Zipf exponent, else uniform."""
    if src.make_inputs is not None and getattr(src.module, "xrec_spec", None) is not None:
        from xrec.zoo.inputs import make_inputs
        a = float(inspect.signature(make_inputs).parameters["zipf_a"].default)
        return f"zipf:{a:g}" if a > 0 else "uniform"
    return "uniform"


def flat_inputs(args) -> list[np.ndarray]:
    import torch
    from torch.utils import _pytree as pytree
    return [x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
            for x in pytree.tree_leaves(tuple(args))]


def _stage_bounds(pred) -> tuple[str, dict]:
    """Overall bound (compute / memory / overhead, by the time of the stages of each kind) and per stage."""
    per_kind: dict[str, float] = {}
    stages = {}
    for s in pred.stages:
        if s.time_s <= 0:
            continue
        kind = s.bound.split(":")[0]
        per_kind[kind] = per_kind.get(kind, 0.0) + s.time_s
        stages[s.stage] = {"ms": s.time_s * 1e3, "bound": s.bound, "compute_ms": s.compute_s * 1e3,
                           "memory_ms": {t: v * 1e3 for t, v in s.memory_s.items()}}
    bound = max(per_kind, key=per_kind.get) if per_kind else "none"
    return bound, stages


def bound_of(graph, device, batch: int, args, ids: str) -> dict:
    """The lower bound of ``graph`` at ``batch`` on ``device``, pooling measured on ``args``."""
    from xrec.cost.graph import graph_work
    from xrec.cost.model import predict_work
    from xrec.ir.stats import measure_pooling
    flat = flat_inputs(args)
    notes = []
    pooling = None
    if len(flat) == len(graph.input_nodes):
        pooling = {f: s.mean for f, s in measure_pooling(graph, [flat]).items()}
    else:
        notes.append(f"the IR takes {len(graph.input_nodes)} inputs, the model {len(flat)}: pooling from the "
                     "statistics recorded at compile time, not from the timed inputs")
    gw = graph_work(graph, batch, cache_bytes=device.cache_bytes, ids=ids, pooling=pooling)
    pred = predict_work(gw, device, COST_TARGET)
    bound, stages = _stage_bounds(pred)
    tot = gw.total
    return {"ms": pred.total_s * 1e3, "bound": bound, "stages": stages,
            "gflop": tot.total_flops / 1e9, "mb": {t: b / 1e6 for t, b in tot.bytes.items()},
            "notes": notes + list(pred.notes)}


def fallback_graph(src, example) -> tuple[Any, str]:
    """The fp32 IR when no fp32 xrec system compiled: ``xrec.api.lower`` for cpu, else reference."""
    from xrec.api import lower
    from xrec.targets import available_targets
    from .systems import quiet
    target = "cpu" if not available_targets().get("cpu") else "reference"
    model = src.exported if src.exported is not None else src.module
    with quiet():
        g, *_ = lower(model, None if src.exported is not None else example, target=target, name=src.name)
    return g, f"xrec.api.lower(target={target!r})"


# ------------------------------------------------------------------ per run
class LowerBounds:
    """Collects, per batch and table precision, the lower bound of the run's model.

    ``graphs``: precision ("fp32", "int8", ...) -> (IR, whose IR it is). ``reason``: why there is no
    lower bound at all (no ceilings, probes failed): every row's column then says so.
    """

    def __init__(self, device=None, graphs: dict | None = None, ids: str = "uniform", reason: str = ""):
        self.device, self.graphs, self.ids, self.reason = device, dict(graphs or {}), ids, reason
        self.entries: list[dict] = []

    @classmethod
    def for_run(cls, *, ceilings, machine, src, example, systems: Sequence, prepared: dict,
                roofline: bool) -> "LowerBounds":
        if not roofline:
            return cls(reason="--no-roofline: the machine's ceilings were not probed in this run")
        try:
            device = host_device(ceilings, machine)
        except LowerBoundUnavailable as e:
            return cls(reason=str(e))
        except Exception as e:                      # a catalogue that changed under us: say so, go on
            return cls(reason=f"building the host device failed: {type(e).__name__}: {e}")
        graphs: dict[str, tuple] = {}
        rank = {t: i for i, t in enumerate(TARGET_PREFERENCE)}
        for s in sorted((s for s in systems if s.kind == "xrec" and s.name in prepared),
                        key=lambda s: rank.get(s.target, len(rank))):
            g = getattr(prepared[s.name].keep, "graph", None)
            if g is not None and (s.variant or "fp32") not in graphs:
                graphs[s.variant or "fp32"] = (g, s.name)
        if "fp32" not in graphs and any(s.kind == "baseline" and s.name in prepared for s in systems):
            try:
                graphs["fp32"] = fallback_graph(src, example)
            except Exception as e:
                graphs["fp32"] = (None, f"lowering the model for its lower bound failed: {type(e).__name__}: "
                                        f"{' '.join(str(e).split())[:300]}")
        return cls(device, graphs, id_distribution(src))

    def compute(self, batch: int, args) -> None:
        """The bounds of every precision at ``batch`` on the timed inputs ``args``."""
        if self.device is None:
            return
        for variant, (g, of) in self.graphs.items():
            e = {"batch": batch, "variant": variant, "graph_of": of if g is not None else None}
            if g is None:
                e.update(ms=None, reason=of)
            else:
                try:
                    e.update(bound_of(g, self.device, batch, args, self.ids))
                except Exception as ex:         # an op without a cost rule, ...: no number, a reason
                    e.update(ms=None, reason=f"{type(ex).__name__}: {' '.join(str(ex).split())[:300]}")
            self.entries.append(e)

    def entry(self, batch: int, variant: str) -> dict | None:
        return next((e for e in self.entries if e["batch"] == batch and e["variant"] == variant), None)

    def fill(self, row: dict) -> None:
        """Set ``lower_bound_ms`` / ``roofline_pct`` (None with ``roofline_reason`` when absent) on a row."""
        variant = "fp32" if row.get("kind") == "baseline" else (row.get("variant") or "fp32")
        row["lower_bound_variant"] = variant
        why = self.reason
        if not why and row.get("kind") == "part":
            why = "a part of a call, not the whole model"
        e = None if why else self.entry(row["batch"], variant)
        if not why and e is None:
            why = f"no lower bound for {variant} tables (no system with them compiled)"
        elif e is not None and e.get("ms") is None:
            why = e["reason"]
        if why or row.get("status") != "ok" or not row.get("median_ms"):
            row.update(lower_bound_ms=None if e is None else e.get("ms"), roofline_pct=None)
            if why:
                row["roofline_reason"] = why
            return
        row.update(lower_bound_ms=e["ms"], roofline_pct=100.0 * e["ms"] / row["median_ms"])

    def as_dict(self) -> dict:
        d = self.device
        out: dict = {"status": "ok" if d is not None else "absent", "reason": self.reason, "what": WHAT,
                     "target": COST_TARGET, "ids": self.ids,
                     "graphs": {v: of for v, (g, of) in self.graphs.items() if g is not None},
                     "entries": self.entries}
        if d is not None:
            main = d.memory["main"]
            out["device"] = {"name": d.name, "description": d.description,
                             "fma_peak_GFLOPs": d.peak_flops["f32"].value / 1e9,
                             "stream_read_GBps": main.bandwidth_Bps.value / 1e9,
                             "gather_GBps": (main.gather_bandwidth_Bps.value / 1e9
                                             if main.gather_bandwidth_Bps and main.gather_bandwidth_Bps.known
                                             else None),
                             "cache_bytes": d.cache_bytes}
        return out
