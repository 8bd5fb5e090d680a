"""The triton target's performance model: the catalogue's roofline plus a launch overhead per kernel.

Work: ``xrec.cost.graph_work`` per stage (FLOPs, bytes, transfers). Kernels: counted from the triton
target's own program (``targets/triton/lower.py`` builds it from the IR without compiling anything:
one ``Launch`` per kernel, e.g. dlrm-small: 6 GEMM layers, 1 embedding-group kernel, 1 interaction
kernel fused with its concatenation = 8, where graph_work counts 10 calls), each attributed to the
stage of the IR node it runs; a torch-fallback step counts as one launch (a note says so). Per stage::

    time = max(flops / peak, bytes / bandwidth) / efficiency + kernels x launch overhead

- fp32 GEMMs (``linear_kernel``: dense stage) run ``tl.dot`` at the target's ``precision``: tf32x3 is
  three TF32 tensor-core passes (timed as 3 x the FLOPs at the tf32 peak), tf32 one, ieee the f32 peak;
- the device's "cache" tier (L2) has no bandwidth in the catalogue for the GPUs: its bytes are timed
  at the main (HBM) bandwidth (a note says so; L2 is faster, so that part is an upper bound);
- inputs and outputs cross PCIe (graph_work's transfers) unless ``inputs_on_device=True`` (tensors
  already on the GPU, as the GPU suite measured).

Calibration from measurement (``calibrate``): ``targets/triton/calibration/<device>.json`` holds what
the GPU suite measured on a real GPU (nvidia-h200.json: H200, 2026-12-04). From it:

- the embedding kernel timed alone by CUDA-graph replay at four batches (fp32 rows, uniform ids): a
  least-squares line ``time = c + bytes / bw`` gives the per-kernel floor ``c`` (used as every
  kernel's launch overhead: the only per-kernel figure measured) and the embedding stage's
  efficiency ``bw / HBM bandwidth``;
- the whole model (``xrec-graphs-<precision>``) at its smallest measured batch gives the fixed
  per-call overhead: measured minus the model's prediction without it (the host side of a
  replay: input checks, pointer tables, copies);
- the other measured batches are held out: ``calibrate`` returns predicted vs measured there.

What the H200 file cannot give, and the GPU suite should measure next: the launch gap of a kernel
inside a CUDA graph apart from the embedding kernel's floor (an empty-kernel graph; here the embedding
kernel's intercept stands for every kernel, which overstates a small GEMM's); each kernel of the
whole-model program timed alone by graph replay (per-stage efficiencies for the GEMMs and the
interaction, not only the embedding kernel); the host side of a replay timed apart from the GPU
time (here it is the fixed overhead, fitted at one batch); batch 1; an L2 bandwidth probe (the
catalogue's cache tier). With those, every term above is measured instead of fitted.

``calibrate(..., write=True)`` stores the result as the device's triton calibration profile
(``xrec.cost.perf.profile_path``), which ``predict_target`` then uses. Without one, the model uses
the measured embedding fit and launch floor alone when the device has a calibration file (no fixed
overhead), else the plain roofline with the catalogue's per-call figure.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

from ..catalogue import Device
from ..model import PerfParams, Prediction
from ..perf import register_perf_model
from ..rules import CostError, rule_for
from ..work import CACHE, MAIN, STAGES, Work
from . import link_seconds, note, timed_stage

CALIBRATION_FILES = {"h200": "nvidia-h200.json"}
"""catalogue device -> the GPU suite's measured file in targets/triton/calibration."""

DOT_PASSES = {"tf32x3": ("tf32", 3), "tf32": ("tf32", 1), "ieee": ("f32", 1)}


def calibration_dir() -> Path:
    import xrec.targets.triton as t
    return Path(t.__file__).with_name("calibration")


def measured(device: Device) -> dict | None:
    """The GPU suite's measurements for ``device`` (targets/triton/calibration), or None."""
    name = CALIBRATION_FILES.get(device.name)
    p = calibration_dir() / name if name else None
    if p is None or not p.is_file():
        return None
    d = json.loads(p.read_text())
    d["file"] = str(p)
    return d


def _options(options):
    from xrec.targets.triton.options import TritonOptions
    return TritonOptions.parse(options or {})


def kernel_launches(g, options=None) -> dict[str, int]:
    """Kernels the triton target launches per call of ``g``, per stage (and ``"torch"``: fallback steps).

    From the target's program (``xrec.targets.triton.lower.lower``: planning only, no compile); a launch
    belongs to the stage of the IR node its note names (``%node ...``), ``other`` when it names none.
    """
    from xrec.targets.triton.lower import lower, weights_layout
    from xrec.targets.triton.program import Launch, TorchStep
    opts = {k: v for k, v in dict(options or {}).items()}
    prog, _ = lower(g, weights_layout(g), opts)
    out = {s: 0 for s in STAGES}
    out["torch"] = 0
    for step in prog.steps:
        if isinstance(step, TorchStep):
            name = step.node
            out["torch"] += 1
        elif isinstance(step, Launch):
            m = re.match(r"%([^\s:,]+)", step.note or "")
            name = m.group(1) if m else None
        else:
            continue
        stage = "other"
        if name is not None:
            try:
                stage = rule_for(g.node(name).op).stage
            except (KeyError, CostError):
                stage = "other"
        out[stage] += 1
    return out


def _stage_work(stage: str, w: Work, device: Device, precision: str, kernels: int, notes: list[str]) -> Work:
    flops = dict(w.flops)
    if stage == "dense" and flops.get("f32"):
        dt, passes = DOT_PASSES[precision]
        if dt != "f32":
            flops[dt] = flops.get(dt, 0.0) + passes * flops.pop("f32")
            note(notes, f"dense fp32 GEMMs at precision {precision}: timed as {passes} x their FLOPs at the "
                        f"{dt} peak")
    byts, gath = dict(w.bytes), dict(w.gather_bytes)
    cache = device.memory.get(CACHE)
    if byts.get(CACHE) and (cache is None or not cache.bandwidth_Bps.known):
        byts[MAIN] = byts.get(MAIN, 0.0) + byts.pop(CACHE)
        gath[MAIN] = gath.get(MAIN, 0.0) + gath.pop(CACHE, 0.0)
        note(notes, f"{device.name} has no cache-tier (L2) bandwidth: cache-hit bytes timed at the main memory's "
                    "(an upper bound for them)")
    return Work(flops, byts, gath, kernels, w.transfers)


def _predict(g, device: Device, target: str, batch: int, params: PerfParams, notes: list[str], *,
             options=None, inputs_on_device: bool = False, **work_kw) -> Prediction:
    from ..graph import graph_work
    from ..model import call_overhead_for
    opts = _options(options)
    work_kw.setdefault("cache_bytes", device.cache_bytes)
    gw = graph_work(g, batch, **work_kw)
    notes.extend(n for n in gw.notes if n not in notes)
    launches = kernel_launches(g, options)
    if launches["torch"]:
        note(notes, f"{launches['torch']} IR node(s) run as torch fallback steps: each counted as one launch")
    over = call_overhead_for(device, target, params, notes)
    stages = tuple(timed_stage(s, _stage_work(s, gw.stage(s), device, opts.precision, launches[s], notes),
                               device, params, over, notes, batch) for s in STAGES)
    n = sum(launches[s] for s in STAGES)
    note(notes, f"{n} kernel launches per call (the triton target's program), "
                f"{over * 1e6:.3g} us each")
    transfer = 0.0
    if inputs_on_device:
        note(notes, "inputs and outputs already on the GPU: no PCIe transfer")
    else:
        transfer = link_seconds(device, sum(gw.total.transfers.values()), notes)
    total = sum(st.time_s for st in stages) + transfer + params.fixed_overhead_s
    return Prediction(device.name, target, batch, stages, transfer, params.fixed_overhead_s, total, params,
                      tuple(notes))


def _line_fit(xs, ys) -> tuple[float, float]:
    """Least-squares ``y = a + b x``: (a, b)."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if n < 2 or sxx == 0:
        raise CostError("a line fit needs two or more distinct points")
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    return my - b * mx, b


def embedding_fit(device: Device, data: dict, rows: str = "fp32", ids: str = "uniform") -> dict:
    """The measured embedding kernel's ``time = c + bytes / bw`` (least squares over its batches)."""
    pts = sorted((int(b), v["bytes"], v["kernel_us"] * 1e-6)
                 for b, v in data.get("embedding", {}).get(rows, {}).get(ids, {}).items())
    if len(pts) < 2:
        raise CostError(f"{data.get('file')}: fewer than two {rows}/{ids} embedding measurements")
    c, slope = _line_fit([p[1] for p in pts], [p[2] for p in pts])
    if slope <= 0:
        raise CostError(f"{data.get('file')}: embedding time does not grow with bytes; cannot fit a bandwidth")
    bw = 1.0 / slope
    hbm = device.memory[MAIN].bandwidth_Bps.value
    fitted = [(b, nb, t, c + nb / bw) for b, nb, t in pts]
    return {"launch_floor_s": max(c, 0.0), "bandwidth_Bps": bw, "efficiency": min(1.0, bw / hbm),
            "points": [{"batch": b, "bytes": nb, "measured_s": t, "fit_s": f, "error": f / t - 1}
                       for b, nb, t, f in fitted]}


def fit_ids(ids) -> str:
    """The measured id distribution ("zipf" or "uniform") matching graph_work's ``ids`` argument."""
    return "zipf" if str(ids or "uniform").startswith("zipf") else "uniform"


def measured_params(device: Device, data: dict | None = None, fixed_overhead_s: float = 0.0,
                    source: str = "", ids=None) -> PerfParams | None:
    """PerfParams from the embedding fit of ``device``'s calibration file (None without one); ``ids``:
    graph_work's id distribution, which picks the measurements fitted (zipf or uniform ids)."""
    data = data if data is not None else measured(device)
    if data is None:
        return None
    fit = embedding_fit(device, data, ids=fit_ids(ids))
    return PerfParams(efficiency={"embedding": fit["efficiency"]}, call_overhead_s=fit["launch_floor_s"],
                      fixed_overhead_s=fixed_overhead_s, device=device.name, target="triton",
                      source=source or f"measured: {Path(data['file']).name} (embedding kernel fit: "
                                       f"{fit['launch_floor_s'] * 1e6:.1f} us floor, "
                                       f"{fit['bandwidth_Bps'] / 1e9:.0f} GB/s)")


@register_perf_model("triton")
def predict_triton(g, device: Device, target: str, batch: int, params: PerfParams | None = None, *,
                   options=None, inputs_on_device: bool = False, **work_kw) -> Prediction:
    """Time of ``g`` at ``batch`` on ``device`` for the triton target (module docstring).

    ``options``: triton target options (``precision`` sets how fp32 GEMMs are timed); ``params``
    None: the measured embedding fit and launch floor of the device's calibration file when it has one
    (no fixed overhead), else the uncalibrated roofline.
    """
    if target not in device.targets:
        raise CostError(f"target {target!r} does not run on {device.name} (its targets: {', '.join(device.targets)})")
    if batch < 1:
        raise CostError(f"batch must be >= 1, got {batch}")
    notes: list[str] = []
    if params is None:
        params = measured_params(device, ids=work_kw.get("ids"))
        if params is not None:
            note(notes, f"partly calibrated ({params.source}); no fixed per-call overhead: "
                        "xrec.cost.targets.triton.calibrate(write=True) measures it from the whole-model run")
        else:
            params = PerfParams(device=device.name, target=target)
    return _predict(g, device, target, batch, params, notes, options=options, inputs_on_device=inputs_on_device,
                    **work_kw)


def calibrate(device: Device, graph=None, *, options=None, write: bool = False, **work_kw) -> dict:
    """Fit the triton model to ``device``'s GPU-suite measurements and check it on the held-out batches.

    ``graph``: the optimised triton IR of the model the suite timed whole (``whole_model_ms``; default:
    dlrm-small at full size, built here, ~10 s); ``work_kw`` go to graph_work (default ids zipf:1.05, the
    zoo input generator's). Returns {"params", "embedding", "fixed_from_batch", "checks": [{batch,
    predicted_s, measured_s, error, held_out}]}; ``write`` stores the params as the device's profile.
    """
    from ..perf import profile_path
    data = measured(device)
    if data is None:
        raise CostError(f"no GPU-suite measurements for {device.name} in {calibration_dir()} "
                        f"(known: {', '.join(CALIBRATION_FILES)}); run tests/targets/triton/gpu_suite.py there")
    opts = _options(options)
    if graph is None:
        graph = _full_size("dlrm-small")
    whole = data.get("whole_model_ms", {}).get(graph.name, {}).get(f"xrec-graphs-{opts.precision}")
    if not whole:
        raise CostError(f"{data['file']}: no whole-model times of {graph.name!r} with CUDA graphs and precision "
                        f"{opts.precision}")
    work_kw.setdefault("ids", "zipf:1.05")
    fit = embedding_fit(device, data, ids=fit_ids(work_kw["ids"]))
    base = measured_params(device, data, ids=work_kw["ids"])
    batches = sorted(int(b) for b in whole)
    b0 = batches[0]
    gpu0 = _predict(graph, device, "triton", b0, base, [], options=options, inputs_on_device=True,
                    **work_kw).total_s
    fixed = max(0.0, whole[str(b0)] * 1e-3 - gpu0)
    params = measured_params(device, data, fixed, ids=work_kw["ids"], source=(
        f"measured: {Path(data['file']).name} ({data.get('source', '')}): embedding kernel fit "
        f"({fit_ids(work_kw['ids'])} ids) {fit['launch_floor_s'] * 1e6:.1f} us per kernel, "
        f"{fit['bandwidth_Bps'] / 1e9:.0f} GB/s; fixed "
        f"{fixed * 1e6:.0f} us from {graph.name} at batch {b0}"))
    checks = []
    for b in batches:
        p = _predict(graph, device, "triton", b, params, [], options=options, inputs_on_device=True, **work_kw)
        m = whole[str(b)] * 1e-3
        checks.append({"batch": b, "predicted_s": p.total_s, "measured_s": m, "error": p.total_s / m - 1,
                       "held_out": b != b0, "stages_s": {s.stage: s.time_s for s in p.stages}})
    if write:
        path = profile_path(device, "triton")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(params.as_dict(), indent=1) + "\n")
    return {"params": params, "embedding": fit, "fixed_from_batch": b0, "checks": checks,
            "median_abs_error_held_out": _median([abs(c["error"]) for c in checks if c["held_out"]])}


def _median(xs):
    xs = sorted(xs)
    if not xs:
        return math.nan
    k = len(xs) // 2
    return xs[k] if len(xs) % 2 else (xs[k - 1] + xs[k]) / 2


def _full_size(name: str):
    from xrec import zoo
    from xrec.api import lower
    from xrec.frontend import import_model
    m = zoo.build(name, max_rows=None).eval()
    g, *_ = lower(import_model(m, zoo.example_inputs(m), name=name), target="triton")
    return g
