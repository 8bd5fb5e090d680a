"""Performance models of the cpu, xla, hls and triton targets, registered with ``xrec.cost.perf``.

``xrec.cost.perf.predict_target(g, device, target, batch)`` imports ``xrec.cost.targets.<target>``
lazily; each module registers ``fn(g, device, target, batch, params, **work_kw) -> Prediction``
with :func:`xrec.cost.perf.register_perf_model`. Every model keeps the shape of
``xrec.cost.model``: per stage ``roofline term / efficiency + calls x call overhead``, then
host-link transfers and a fixed per-inference overhead; what differs is where the work comes from:

  cpu     graph_work and the calibration profile, with the dense weights streamed per layer as the
          cpu target schedules them, at the calibrated per-core stream bandwidth (``cpu.py``)

  xla     the compiled executable's own cost analysis (XLA's FLOPs and bytes accessed; libtpu's
          for a TPU device when libtpu is installed, else JAX's CPU client, with a note), split
          over the stages in proportion to ``xrec.cost.graph_work`` (``xla.py``)
  hls     the hls target's analytic cycle report (``targets/hls/report.py``) for the embedding
          gathers on the card, over trip counts of a C simulation of that batch; the dense part
          with the cpu model on the host; the ids in and pooled rows out over the card's PCIe
          link (``hls.py``)
  triton  the catalogue's roofline of ``graph_work`` plus a launch overhead per kernel, the
          kernels counted from the triton target's own program (``targets/triton/lower.py``,
          no compile); calibrated from the H200 run in ``targets/triton/calibration``
          (``triton.py``)

Helpers shared by the three are below.
"""
from __future__ import annotations

import inspect

from ..model import PerfParams, StageTime, stage_time
from ..work import Work

_STAGE_TIME_TAKES_BATCH = "batch" in inspect.signature(stage_time).parameters


def timed_stage(stage: str, work: Work, device, params: PerfParams, call_overhead: float, notes: list[str],
                batch: int | None = None) -> StageTime:
    """``xrec.cost.model.stage_time`` (with the batch when that version of the model takes one)."""
    if _STAGE_TIME_TAKES_BATCH:
        return stage_time(stage, work, device, params, call_overhead, notes, batch)
    return stage_time(stage, work, device, params, call_overhead, notes)


def note(notes: list[str], text: str) -> None:
    if text not in notes:
        notes.append(text)


def link_seconds(device, nbytes: float, notes: list[str]) -> float:
    """Seconds ``nbytes`` take over ``device``'s host link (0 on a CPU; a note when the link is unknown)."""
    link = device.host_link
    if link is None or not nbytes:
        return 0.0
    if link.known and link.value:
        return nbytes / link.value
    note(notes, f"{device.name} has no known host-link bandwidth: transfers are not timed")
    return 0.0
