"""The xla target's performance model: XLA's cost analysis of the compiled executable, on the roofline.

For a batch the model builds what the xla target builds (``targets/xla``: the optimised IR lowered to
one StableHLO module with a static batch, ``Plan`` and ``Layout`` from the target's options), compiles
it and reads the executable's ``cost_analysis()``: ``flops``, ``transcendentals`` and ``bytes
accessed``. The client that compiles it:

- a TPU device (catalogue kind ``tpu``) with libtpu installed: libtpu, for one chip of the device's
  topology (``targets/xla/tpu.py``), so the FLOPs and bytes are the TPU compiler's;
- otherwise JAX's CPU client (``targets/xla/runtime.compile_cpu``), with a note when the device is
  not this CPU (XLA's CPU and TPU pipelines fuse differently, so its bytes accessed are an estimate
  there; its FLOPs depend little on the backend).

Time (``xrec.cost.model``'s form)::

    per stage   max(flops / peak[dtype], bytes / bandwidth) / efficiency
    total       sum of stages + runs x call overhead + (inputs in + outputs out) / host link + fixed

XLA:CPU counts every operand of a fused gather in full, so each embedding table counts all its rows in
"bytes accessed" (dlrm-small at full size: 1.06 GB at batch 8, whatever the batch); those bytes are
replaced by the rows the gathers read (static batch x id budget x stored row bytes), with a note.

``flops`` = XLA's flops + 4 x transcendentals (the FLOP-equivalents ``xrec.cost.rules.elementwise``
gives exp, log, sigmoid, ...), in the executable's compute dtype (the ``dtype`` option). XLA's
analysis is one figure for the whole executable: it is split over the stages (embedding, dense,
interaction, other) in proportion to ``xrec.cost.graph_work``'s FLOPs and bytes per stage; the
embedding stage's bytes are timed at the gather bandwidth in the share graph_work gives gathers.

The executable has a static batch: with no ``batch`` option, one executable of ``Layout.batch(B)``
rows (B rounded up to 8 when padding) per call; with ``options={"batch": N}`` (as the target runs
an artifact compiled at N), ``ceil(B / N)`` runs of the N-row executable. Inputs (dense features,
bucketed ids and lengths: the executable's non-parameter arguments) and outputs cross the host link
once per run on an accelerator; the weights stay on the device.

Where XLA's FLOPs agree with ``graph_work``'s (tests/cost/test_target_models.py): a Linear or an MLP
exactly (2MKN + MN bias; padding off, a batch multiple of 8); not the dot interaction (XLA computes
the whole F x F Gram matrix then takes the pairs: F^2 / P times graph_work's), nor the embedding
bags (XLA gathers every slot of the static id budget, graph_work the mean ids per bag), nor padded
modules (dense dims padded to 128 lanes multiply the GEMM FLOPs).
"""
from __future__ import annotations

import hashlib
import json
import math
import threading

from ..catalogue import Device
from ..model import PerfParams, Prediction, call_overhead_for
from ..perf import register_perf_model
from ..rules import CostError
from ..work import STAGES, Work
from . import link_seconds, note, timed_stage

TRANSCENDENTAL_FLOPS = 4          # as rules/elementwise.py counts exp, log, sigmoid, tanh, ...
F32_BF16_PASSES = 6             # XLA:TPU runs an f32 dot at precision HIGHEST as 6 bf16 MXU passes
TPU_TOPOLOGY = {"tpu-v5e": "v5e:2x2", "tpu-v6e": "v6e:2x2"}

_ANALYSES: dict[tuple, dict] = {}
_LOCK = threading.Lock()


def _options(options):
    from xrec.targets.xla import XlaOptions
    return XlaOptions.parse(options or {})


def lower_for_batch(g, batch: int, options=None):
    """(Lowered module, its static batch, runs per call) of ``g`` for a call of ``batch`` rows."""
    from xrec.ir import Op
    from xrec.targets.xla import layout as L
    from xrec.targets.xla.bucketing import choose_budgets
    from xrec.targets.xla.emit import Plan, lower_graph
    opts = _options(options)
    lay = L.Layout(pad=opts.pad, dtype=opts.dtype)
    fixed = options is not None and "batch" in dict(options)
    exe_batch = lay.batch(opts.batch if fixed else batch)
    runs = math.ceil(batch / exe_batch) if fixed else 1
    features = [j.attr("feature") for j in g.nodes_of(Op.JAGGED)]
    budgets = choose_budgets(g, features, opts.max_ids_per_bag, opts.ids_multiplier)
    plan = Plan(batch=exe_batch, layout=lay, budgets={f: b.max_ids for f, b in budgets.items()},
                weights=opts.weights, strict=opts.strict)
    return lower_graph(g, plan), exe_batch, runs


def _plain(cost) -> dict:
    if isinstance(cost, list):
        cost = cost[0] if cost else {}
    return {k: float(v) for k, v in (cost or {}).items() if isinstance(v, (int, float))}


def cost_analysis(g, batch: int, device: Device | None = None, options=None) -> dict:
    """XLA's cost analysis of ``g``'s executable for ``batch`` (one run of the static batch).

    Returns {"flops", "transcendentals", "bytes_accessed", "optimal_seconds" (libtpu only, else None),
    "client": "libtpu <topology>" | "cpu", "exe_batch", "runs", "h2d_bytes", "d2h_bytes", "notes"}.
    """
    from xrec.targets.xla import tpu
    from xrec.targets.xla.layout import np_dtype
    from xrec.ir import Op
    from xrec.ir.graph import feature_inputs
    from xrec.targets.xla.runtime import check_jax
    import numpy as np
    ok, why = check_jax()
    if not ok:
        raise CostError(f"the xla performance model compiles the module with JAX: {why}")
    low, exe_batch, runs = lower_for_batch(g, batch, options)
    notes: list[str] = []
    client = "cpu"
    if device is not None and device.kind == "tpu":
        ok, why = tpu.available()
        if ok:
            client = f"libtpu {TPU_TOPOLOGY.get(device.name, tpu.DEFAULT_TOPOLOGY)}"
        else:
            notes.append(f"{device.name}: {why}; FLOPs and bytes from JAX's CPU client's cost analysis instead "
                         "(XLA:CPU fuses differently from XLA:TPU: bytes accessed are an estimate for the TPU)")
    elif device is not None and device.kind != "cpu":
        notes.append(f"{device.name} ({device.kind}): FLOPs and bytes from JAX's CPU client's cost analysis of "
                     "the module (no compiler for that device here)")
    key = (hashlib.sha256(low.text.encode()).hexdigest(), client)
    with _LOCK:
        cached = _ANALYSES.get(key)
    if cached is None:
        if client == "cpu":
            from xrec.targets.xla.runtime import compile_cpu
            exe, _ = compile_cpu(low.text)
            cost = _plain(exe.cost_analysis())
        else:
            cost = _plain(tpu.compile_for_tpu(low.text, client.split(" ", 1)[1]).cost)
        cached = {"flops": cost.get("flops", 0.0), "transcendentals": cost.get("transcendentals", 0.0),
                  "bytes_accessed": cost.get("bytes accessed", 0.0),
                  "optimal_seconds": cost.get("optimal_seconds")}
        with _LOCK:
            _ANALYSES[key] = cached

    def nbytes(shape, dtype) -> int:
        return int(np.prod(shape)) * np.dtype(np_dtype(dtype)).itemsize
    # XLA counts every operand of a (fused) gather in full: a table read by an embedding bag counts all
    # its rows. Replace those by the rows the gathers read: batch x id budget x the row as stored.
    slots: dict[str, int] = {}
    budget = {f.feature: f.max_ids for f in low.features}
    for n in g.nodes_of(Op.EMBEDDING_BAG, Op.EMBEDDING_BAG_GROUP):
        for fi in feature_inputs(n):
            name = g.node(fi.table).attr("name")
            slots[name] = slots.get(name, 0) + budget.get(fi.feature.feature, 0)
    full = gathered = 0.0
    for a in low.args:
        if a["role"] == "param" and a.get("param") in slots:
            full += nbytes(a["shape"], a["dtype"])
            gathered += exe_batch * slots[a["param"]] * nbytes(a["shape"][1:], a["dtype"])   # XLA's count for
            # an unfused gather: its output
    raw = cached["bytes_accessed"]
    fixed_bytes = raw
    if full and raw >= full:
        fixed_bytes = raw - full + gathered
        notes.append(f"XLA's bytes accessed ({raw:.4g}) count each embedding table a gather reads in full "
                     f"({full:.4g} bytes of tables): replaced by the rows the gathers read (batch x id budget x "
                     f"row bytes: {gathered:.4g})")
    h2d = sum(nbytes(a["shape"], a["dtype"]) for a in low.args if a["role"] != "param")
    d2h = sum(nbytes(o["shape"], o["dtype"]) for o in low.outputs)
    return {**cached, "bytes_accessed": fixed_bytes, "bytes_accessed_raw": raw, "table_bytes": full,
            "gathered_bytes": gathered, "client": client, "exe_batch": exe_batch, "runs": runs, "h2d_bytes": h2d,
            "d2h_bytes": d2h, "notes": notes}


def _share(part: float, whole: float, n: int) -> float:
    return part / whole if whole else 1.0 / n


@register_perf_model("xla")
def predict_xla(g, device: Device, target: str, batch: int, params: PerfParams | None = None, *,
                options=None, **work_kw) -> Prediction:
    """Time of ``g`` at ``batch`` on ``device`` from XLA's cost analysis (module docstring).

    ``options``: xla target options (``XlaOptions``: batch, pad, dtype, max_ids_per_bag, ...);
    ``work_kw`` go to ``graph_work`` (ids, pooling), which sets the split over the stages.
    """
    from ..graph import graph_work
    if target not in device.targets:
        raise CostError(f"target {target!r} does not run on {device.name} (its targets: {', '.join(device.targets)})")
    if batch < 1:
        raise CostError(f"batch must be >= 1, got {batch}")
    params = params or PerfParams(device=device.name, target=target)
    ca = cost_analysis(g, batch, device, options)
    runs = ca["runs"]
    work_kw.setdefault("cache_bytes", device.cache_bytes)
    gw = graph_work(g, batch, **work_kw)
    notes = list(gw.notes) + list(ca["notes"])
    dtype = "bf16" if _options(options).dtype == "bf16" else "f32"
    flops = runs * (ca["flops"] + TRANSCENDENTAL_FLOPS * ca["transcendentals"])
    f32 = device.peak_flops.get("f32")
    bf16 = device.peak_flops.get("bf16")
    if dtype == "f32" and device.kind == "tpu" and not (f32 is not None and f32.known) and \
            bf16 is not None and bf16.known:
        # the module asks f32 dots for precision HIGHEST: 6 bf16 passes on the MXU (targets/xla/layout.py)
        dtype, flops = "bf16", flops * F32_BF16_PASSES
        note(notes, f"{device.name} has no f32 peak: f32 FLOPs timed as {F32_BF16_PASSES} bf16 passes each "
                    "(precision HIGHEST), an upper bound for the elementwise part (the VPU runs it in f32)")
    nbytes = runs * ca["bytes_accessed"]
    stages = gw.stages
    gf, gb = gw.total.total_flops, gw.total.total_bytes
    n = len(STAGES)
    over = call_overhead_for(device, target, params, notes)
    timed = []
    for s in STAGES:
        w = stages[s]
        b = nbytes * _share(w.total_bytes, gb, n)
        gfrac = sum(w.gather_bytes.values()) / w.total_bytes if w.total_bytes else 0.0
        work = Work({dtype: flops * _share(w.total_flops, gf, n)}, {"main": b}, {"main": b * gfrac},
                    calls=runs if s == "other" else 0)
        timed.append(timed_stage(s, work, device, params, over, notes, batch))
    note(notes, f"XLA cost analysis ({ca['client']} client) of the executable at static batch {ca['exe_batch']}"
                f"{f', {runs} runs' if runs > 1 else ''}: {flops:.4g} FLOPs (incl. 4 per transcendental), "
                f"{nbytes:.4g} bytes accessed, timed on {device.name}'s roofline; split over stages in "
                "proportion to xrec.cost.graph_work's FLOPs and bytes")
    if ca["optimal_seconds"] is not None:
        note(notes, f"libtpu's own estimate of one run: {ca['optimal_seconds']:.4g} s")
    transfer = link_seconds(device, runs * (ca["h2d_bytes"] + ca["d2h_bytes"]), notes)
    total = sum(st.time_s for st in timed) + transfer + params.fixed_overhead_s
    return Prediction(device.name, target, batch, tuple(timed), transfer, params.fixed_overhead_s, total, params,
                      tuple(notes))


# ---------------------------------------------------------------------------------------- calibration here
def _flat_inputs(g, low, batch: int, seed: int = 0) -> list:
    """Model inputs of ``batch`` rows the executable accepts: bag lengths 1 + Poisson(pooling - 1) (the
    recorded mean ids per bag, at most the feature's id budget), ids uniform over the table."""
    import numpy as np
    from xrec.artifact import signature_of
    from xrec.runtime.inputs import random_flat_inputs
    from ..graph import graph_work
    flat = random_flat_inputs(g, signature_of(g)["features"], batch, seed=seed)
    rng = np.random.default_rng(seed + 1)
    binds = graph_work(g, batch).bindings
    ins = g.input_nodes
    for f in low.features:
        nnz_sym = g.type_of(f.jagged).nnz
        pool = binds.get(str(nnz_sym), batch) / batch
        lengths = np.ones(batch, np.int64) if pool <= 1 else 1 + rng.poisson(pool - 1, batch)
        lengths = np.minimum(lengths, f.max_ids)
        off = np.zeros(batch + 1, np.int64)
        np.cumsum(lengths, out=off[1:])
        rows = f.num_rows or 1
        flat[f.indices] = rng.integers(0, rows, int(off[-1])).astype(ins[f.indices].type.dtype.to_numpy())
        flat[f.offsets] = (off if f.include_last_offset else off[:-1]).astype(ins[f.offsets].type.dtype.to_numpy())
        if f.weights is not None:
            flat[f.weights] = rng.standard_normal(int(off[-1])).astype(np.float32)
    return flat


def measure_here(g, batch: int, options=None, reps: int = 5, seed: int = 0) -> float:
    """Median seconds of the xla target's runner (bucketing, the executable, unpadding) on this machine."""
    import statistics
    import time
    from xrec.targets.xla.runtime import Runner
    low, exe_batch, _ = lower_for_batch(g, batch, options)
    opts = _options(options)
    info = {"batch": low.batch, "requested_batch": batch, "overflow": opts.overflow, "large_batch": opts.large_batch,
            "args": low.args, "features": [f.__dict__ for f in low.features], "outputs": low.outputs}
    run = Runner(low.text, info, dict(g.params))
    flat = _flat_inputs(g, low, batch, seed)
    run(flat)
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        run(flat)
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def calibrate(device: Device, g, *, batches=(8, 64, 512, 2048), fit=(8, 512), options=None, reps: int = 5,
              write: bool = False, **work_kw) -> dict:
    """Fit the xla model to the runner measured on this machine, and check it on the other batches.

    ``device`` must be this machine (catalogue ``host``). The fixed per-call overhead (bucketing, argument
    transfer, dispatch) is measured minus the roofline at the smaller ``fit`` batch; one efficiency for
    every stage is roofline / (measured - fixed) at the larger (both solved together, as the efficiency
    scales only the roofline term). Returns {"params", "measured_s": {batch: s}, "checks": [{batch,
    predicted_s, measured_s, error, held_out}], "median_abs_error_held_out"}; ``write`` stores the params
    as the device's xla profile (``xrec.cost.perf.profile_path``).
    """
    from ..perf import profile_path
    if device.name != "host":
        raise CostError(f"xla calibration measures the executable on this machine (device 'host'), not {device.name}")
    lo, hi = sorted(fit)
    meas = {b: measure_here(g, b, options, reps) for b in sorted(set(batches) | {lo, hi})}
    base = PerfParams(call_overhead_s=0.0, device=device.name, target="xla")
    roof = {b: predict_xla(g, device, "xla", b, base, options=options, **work_kw).total_s for b in meas}
    # measured(b) = fixed + roof(b) / e at lo and hi
    if roof[hi] <= roof[lo] or meas[hi] <= meas[lo]:
        raise CostError(f"xla calibration: time does not grow from batch {lo} to {hi} (measured {meas[lo]:.3g} s, "
                        f"{meas[hi]:.3g} s): cannot separate the fixed overhead from the roofline term")
    e = min(1.0, (roof[hi] - roof[lo]) / (meas[hi] - meas[lo]))
    fixed = max(0.0, meas[lo] - roof[lo] / e)
    params = PerfParams(default_efficiency=e, call_overhead_s=0.0, fixed_overhead_s=fixed, device=device.name,
                        target="xla", source=f"measured here: the xla runner at batches {lo} and {hi} "
                                             f"(efficiency {e:.3g} of the roofline, {fixed * 1e6:.0f} us per call)")
    checks = []
    for b, m in meas.items():
        p = predict_xla(g, device, "xla", b, params, options=options, **work_kw).total_s
        checks.append({"batch": b, "predicted_s": p, "measured_s": m, "error": p / m - 1, "held_out": b not in fit})
    if write:
        path = profile_path(device, "xla")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(params.as_dict(), indent=1) + "\n")
    held = sorted(abs(c["error"]) for c in checks if c["held_out"])
    med = (held[len(held) // 2] if len(held) % 2 else sum(held[len(held) // 2 - 1: len(held) // 2 + 1]) / 2) \
        if held else math.nan
    return {"params": params, "measured_s": meas, "checks": checks, "median_abs_error_held_out": med}
