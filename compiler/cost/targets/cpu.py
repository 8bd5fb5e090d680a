"""The cpu target's performance model: the calibrated roofline, with the dense weights streamed the way
the generated code reads them.

Everything but the dense weights is ``xrec.cost.model`` with the calibration profile (``xrec
calibrate``). The weights are different: at a small batch a layer is a GEMV whose time is its weight
bytes over the bandwidth of whatever holds them, and which core reads which layer is the cpu target's
decision, read here from the target itself:

- the layers are the ``LinearStep``s of the target's own lowering (``targets/cpu/lower.py``: MLP
  layers, linears, cross layers; no compile), K x N fp32 weights each;
- a batch of one tile (``targets/cpu/plan.py: tiles``; at most 16 rows) runs on the calling thread,
  and a layer that ``splits_columns`` (``targets/cpu/codegen.py``) shares its columns among all the
  threads; the other layers run on one core. A batch of several tiles runs tiles in parallel, and every
  tile streams every layer.
- what one core streams per call (its "working set": the unsplit layers + its share of the split ones,
  or all the layers per tile) sets the bandwidth it gets: calibration (``weight_stream.points``, a
  sweep of MLPs from 0.35 to 2.2 x one core's L2) measured one core's stream bandwidth against its
  working set; it is read off that curve (interpolated in log bytes, made non-increasing). The edge is
  not sharp: conflict misses make it bimodal from one compile to the next near the L2 size;
- a split layer streams at ``threads x`` that, less the same fraction of the way down to
  ``all_slow_Bps`` (all cores at once from beyond L2: the calibration's big MLP at batch 1) as the
  single core has gone down its curve; so do parallel tiles, which each stream every layer
  (``all_slow_Bps / threads`` each beyond L2).

Without ``weight_stream`` in the profile (an old profile, or none), this is ``xrec.cost.model.predict``.
"""
from __future__ import annotations

import math

from ..model import Prediction, predict_work
from ..perf import register_perf_model

KEYS = ("threads", "all_slow_Bps", "points")
_LAYERS: dict = {}


def layers_of(g) -> list[tuple[str, int, int]]:
    """(IR node, K, N) of every GEMM layer the cpu target runs for ``g``, in order (cached per graph)."""
    key = id(g)
    hit = _LAYERS.get(key)
    if hit is not None and hit[0] is g:
        return hit[1]
    from xrec.targets.cpu.lower import lower
    from xrec.targets.cpu.plan import LinearStep
    prog, _ = lower(g)
    out = [(s.node, int(s.K), int(s.N)) for s in prog.steps if isinstance(s, LinearStep)]
    if len(_LAYERS) > 64:
        _LAYERS.clear()
    _LAYERS[key] = (g, out)
    return out


def _mix(a: float, b: float, t: float) -> float:
    """Geometric interpolation (bandwidths are ratios): a at t = 0, b at t = 1."""
    return math.exp((1 - t) * math.log(a) + t * math.log(b))


def core_stream_Bps(working_set: float, points) -> float:
    """One core's weight-stream bandwidth for ``working_set`` bytes: the calibrated (bytes, B/s) curve,
    made non-increasing (the largest bandwidth at this size or beyond), interpolated in log bytes and
    clamped to its ends."""
    pts = sorted((float(b), float(v)) for b, v in points)
    xs = [b for b, _ in pts]
    ys, best = [], 0.0
    for _, v in reversed(pts):
        best = max(best, v)
        ys.append(best)
    ys.reverse()
    if working_set <= xs[0]:
        return ys[0]
    if working_set >= xs[-1]:
        return ys[-1]
    i = next(k for k in range(1, len(xs)) if xs[k] >= working_set)
    t = math.log(working_set / xs[i - 1]) / math.log(xs[i] / xs[i - 1])
    return _mix(ys[i - 1], ys[i], t)


def weight_seconds(layers, batch: int, ws) -> tuple[dict[str, tuple[str, float, float]], dict]:
    """node -> ("cache", weight bytes, seconds) for ``layers`` at ``batch`` under the profile's
    ``weight_stream`` ``ws``; and what was decided (working set, spill fraction, tiles), for notes."""
    from xrec.targets.cpu.codegen import splits_columns
    from xrec.targets.cpu.plan import tiles
    threads = max(1, int(ws["threads"]))
    ntiles = tiles(batch, threads)
    one_tile = ntiles == 1
    sizes = [(node, 4.0 * K * N, one_tile and threads > 1 and splits_columns(K, N)) for node, K, N in layers]
    if one_tile:
        per_core = sum(b / threads if split else b for _, b, split in sizes)
    else:
        per_core = sum(b for _, b, _ in sizes)
    pts = ws["points"]
    fast, slow = core_stream_Bps(0.0, pts), core_stream_Bps(math.inf, pts)
    core = core_stream_Bps(per_core, pts)
    t = math.log(fast / core) / math.log(fast / slow) if fast > slow else 0.0    # how far down the curve
    per_thread_tiles = 1 if one_tile else math.ceil(ntiles / threads)
    out: dict[str, list] = {}
    for node, b, split in sizes:
        if split:                                    # all cores at once, each on its share of the columns
            bw = _mix(threads * fast, ws["all_slow_Bps"], t)
        elif one_tile:                               # one core alone
            bw = core
        else:                                        # every thread streams the layer for each of its tiles
            bw = _mix(fast, ws["all_slow_Bps"] / min(threads, ntiles), t)
        secs = per_thread_tiles * b / bw
        acc = out.setdefault(node, ["cache", 0.0, 0.0])
        acc[1] += b
        acc[2] += secs
    return {k: tuple(v) for k, v in out.items()}, {"working_set_bytes": per_core, "core_Bps": core, "tiles": ntiles}


@register_perf_model("cpu")
def predict_cpu(g, device, target: str, batch: int, params=None, **work_kw) -> Prediction:
    from ..graph import graph_work
    work_kw.setdefault("cache_bytes", device.cache_bytes)
    gw = graph_work(g, batch, **work_kw)
    ws = dict(params.weight_stream) if params is not None and params.per_node else {}
    if not ws or any(k not in ws for k in KEYS):
        return predict_work(gw, device, target, params)
    weight_s, how = weight_seconds(layers_of(g), batch, ws)
    p = predict_work(gw, device, target, params, weight_s=weight_s)
    msg = (f"dense weights: {how['working_set_bytes'] / 2**20:.2f} MiB streamed per core per call over "
           f"{how['tiles']} tile(s); one core streams them at {how['core_Bps'] / 1e9:.1f} GB/s")
    return Prediction(p.device, p.target, p.batch, p.stages, p.transfer_s, p.fixed_s, p.total_s, p.params,
                      p.notes + (msg,))
