"""The hls target's performance model: its own cycle report for the card, the cpu model for the host.

The hls target runs the embedding gathers on the FPGA and the dense part on the host (``targets/hls``).
For a batch the model

1. compiles ``g`` for hls (or takes a compiled hls ``artifact``) with the card's memories taken from
   the catalogue device: 32 HBM pseudo-channels of ``memory.main`` capacity / 32 and bandwidth / 32,
   the ``memory.ddr`` tier (if any) as 2 banks; the target's placement puts each table in a channel,
   a bank or on-chip RAM;
2. runs the kernel's C simulation on a synthetic batch of that size (``targets/hls/build.py``:
   bag lengths from the recorded pooling, ids uniform) for its trip counts, and turns them into
   cycles with the target's analytic report (``targets/hls/report.py``: per unit the slowest of its
   DATAFLOW processes plus the pipeline fill, per channel its bytes at its peak); the kernel's
   cycles at the kernel clock are the embedding stage (``compute_s``: the slowest unit's pipeline,
   ``memory_s``: each channel's bandwidth bound);
3. predicts the dense part (the host artifact's graph) with ``xrec.cost.perf.predict_target`` on the
   host device (``host``: probed here, with the cpu calibration profile when ``xrec calibrate``
   wrote one): its dense, interaction and other stages;
4. adds the ids and offsets to the card and the pooled rows back (the bytes the kernel reads and writes
   in its I/O memory, from the same trip counts) over the device's PCIe link.

Gathers, transfers and the dense part run one after the other (no overlap across batches is
modelled). The card's numbers are MODELLED (the report's assumptions: 300 MHz, AXI latencies,
outstanding reads), not measured on an FPGA; an XRT launch overhead is not in the catalogue (a note
says so; ``PerfParams.call_overhead_s`` sets it).
"""
from __future__ import annotations

import json
import threading
from pathlib import Path

from ..catalogue import Device
from ..model import PerfParams, Prediction, StageTime, call_overhead_for
from ..perf import register_perf_model
from ..rules import CostError
from . import link_seconds, note

HBM_CHANNELS = 32
DDR_BANKS = 2

_COMPILED: dict = {}
_LOCK = threading.Lock()


def card_options(device: Device, options: dict | None = None) -> dict:
    """hls target options for ``device``'s memories (catalogue), under the user's ``options``."""
    out: dict = {}
    main = device.memory["main"]
    if main.capacity_bytes.known:
        out["hbm_channels"] = HBM_CHANNELS
        out["hbm_channel_bytes"] = int(main.capacity_bytes.value // HBM_CHANNELS)
    if main.bandwidth_Bps.known:
        out["hbm_gbps"] = main.bandwidth_Bps.value / HBM_CHANNELS / 1e9
    ddr = device.memory.get("ddr")
    if ddr is None:
        out["ddr_banks"] = 0
    else:
        out["ddr_banks"] = DDR_BANKS
        if ddr.capacity_bytes.known:
            out["ddr_bank_bytes"] = int(ddr.capacity_bytes.value // DDR_BANKS)
        if ddr.bandwidth_Bps.known:
            out["ddr_gbps"] = ddr.bandwidth_Bps.value / DDR_BANKS / 1e9
    out.update(options or {})
    return out


def compiled_for(g, device: Device, options: dict | None = None):
    """The hls artifact of ``g`` for ``device`` (compiled once per graph and options in this process)."""
    import xrec
    opts = card_options(device, options)
    key = (id(g), json.dumps(opts, sort_keys=True, default=str))
    with _LOCK:
        hit = _COMPILED.get(key)
    if hit is not None and hit[0] is g:
        return hit[1]
    cm = xrec.compile(g, target="hls", options=opts)
    with _LOCK:
        _COMPILED[key] = (g, cm)          # the graph is kept so that its id stays its own
    return cm


def gather_report(artifact, batch: int, seed: int = 0) -> dict:
    """The hls report (``targets/hls/report.model``) of a C-simulated synthetic batch of ``batch`` rows.

    ``artifact``: a compiled hls CompiledModel, Artifact or artifact folder.
    """
    from xrec.artifact import open_artifact
    from xrec.targets.hls import report
    from xrec.targets.hls.build import synthetic_flat_inputs
    from xrec.targets.hls.options import HlsOptions
    from xrec.targets.hls.placement import plan_of
    from xrec.targets.hls.runtime import Gatherer
    from xrec.targets.hls.spec import kernel_spec
    path = Path(getattr(getattr(artifact, "artifact", artifact), "path", artifact))
    art = open_artifact(path, verify_checksums=False)
    if art.target != "hls":
        raise CostError(f"{path}: an artifact of target {art.target!r}, not hls")
    info = art.manifest["target_info"]
    opts = HlsOptions.parse({**info.get("options", {}), "runtime": "csim"})
    g = art.graph
    plan = plan_of(g)
    if not plan.tables:
        return {"summary": {"kernel_cycles_per_batch": 0.0, "clock_mhz": opts.clock_mhz,
                            "limited_by": "nothing to gather", "batch": batch},
                "units": [], "channels": [], "h2d_bytes": 0.0, "d2h_bytes": 0.0, "graph": g, "path": path}
    ks = kernel_spec(g, plan, fadd_latency=opts.fadd_latency, outstanding=opts.outstanding_reads)
    gat = Gatherer(ks, g, path, opts)
    feats, b = gat.features_from_inputs(synthetic_flat_inputs(g, ks, batch, seed=seed))
    _, counters = gat.run_features(feats, b)
    if counters is None:
        raise CostError(f"{path}: the C simulation wrote no counters.json; recompile the artifact")
    a = {"clock_mhz": opts.clock_mhz, "axi_read_latency_hbm": opts.axi_read_latency_hbm,
         "axi_read_latency_ddr": opts.axi_read_latency_ddr, "outstanding_reads": opts.outstanding_reads,
         "fadd_latency": opts.fadd_latency}
    rep = report.model(ks, counters, a)
    beat = rep["assumptions"]["beat_bytes"]
    d2h = sum(u["trip_counts"]["out_beats"] * beat for u in rep["units"])
    rep["h2d_bytes"] = float(sum(u["io_bytes"] for u in rep["units"]) - d2h)
    rep["d2h_bytes"] = float(d2h)
    rep["graph"], rep["path"] = g, path
    return rep


def _fpga_stage(rep: dict, calls: int, over: float, eff: float) -> StageTime:
    f_hz = rep["summary"]["clock_mhz"] * 1e6
    units = [u["cycles_per_batch"] for u in rep["units"]]
    compute = max(units, default=0.0) / f_hz
    mem = {c["channel"]: c["bound_cycles"] / f_hz for c in rep["channels"]}
    roof = max([compute, *mem.values()])
    o = calls * over
    if roof == 0 and o == 0:
        bound = "none"
    elif o > roof / eff:
        bound = "overhead"
    elif mem and max(mem.values()) > compute:
        bound = f"memory:{max(mem, key=mem.get)}"
    else:
        bound = "compute"
    return StageTime("embedding", compute, mem, o, eff, roof / eff + o, bound)


@register_perf_model("hls")
def predict_hls(g, device: Device, target: str, batch: int, params: PerfParams | None = None, *,
                artifact=None, options: dict | None = None, host_device: Device | str = "host",
                host_target: str | None = None, host_params: PerfParams | None = None, seed: int = 0,
                **work_kw) -> Prediction:
    """Time of ``g`` at ``batch`` on the FPGA card ``device`` and the host (module docstring).

    ``artifact``: a compiled hls artifact to use instead of compiling ``g`` (its options then hold);
    ``options``: hls target options over the card's (``card_options``); ``host_device``: where the
    dense part runs (catalogue name or Device; default this machine); ``host_target``: the host
    artifact's target (default: the one the hls build chose); ``host_params``: its performance
    parameters (default: its calibration profile); ``work_kw``: graph_work's (ids, pooling) for the
    dense part.
    """
    from ..catalogue import load_device
    from ..perf import predict_target
    from xrec.artifact import open_artifact
    if target not in device.targets:
        raise CostError(f"target {target!r} does not run on {device.name} (its targets: {', '.join(device.targets)})")
    if device.kind != "fpga":
        raise CostError(f"the hls model times a gather kernel on an FPGA card; {device.name} is a {device.kind}")
    if batch < 1:
        raise CostError(f"batch must be >= 1, got {batch}")
    params = params or PerfParams(device=device.name, target=target)
    notes: list[str] = []
    art = artifact if artifact is not None else compiled_for(g, device, options)
    rep = gather_report(art, batch, seed=seed)
    over = call_overhead_for(device, target, params, notes)
    calls = 1 if rep["units"] else 0
    fpga = _fpga_stage(rep, calls, over, params.efficiency_of("embedding"))
    s = rep["summary"]
    if rep["units"]:
        note(notes, f"embedding gathers on {device.name}: {s['kernel_cycles_per_batch']:.0f} cycles at "
                    f"{s['clock_mhz']:g} MHz for a C-simulated batch of {batch}, limited by {s['limited_by']} "
                    "(MODELLED by targets/hls/report.py, not measured on an FPGA)")
    # the dense part, on the host
    hdev = load_device(host_device) if isinstance(host_device, str) else host_device
    host_art = open_artifact(Path(rep["path"]) / "lib" / "host.xrec", verify_checksums=False)
    htarget = host_target or host_art.target
    hp = predict_target(host_art.graph, hdev, htarget, batch, host_params, **work_kw)
    for n in hp.notes:
        note(notes, f"host ({hdev.name}, {htarget}): {n}")
    host_emb = hp.stage("embedding")
    if host_emb.time_s:
        note(notes, f"the host part has embedding work ({host_emb.time_s:.3g} s) the card does not do: "
                    "added to the embedding stage")
        fpga = StageTime("embedding", fpga.compute_s + host_emb.compute_s,
                         {**dict(fpga.memory_s), **{f"host:{k}": v for k, v in host_emb.memory_s.items()}},
                         fpga.overhead_s + host_emb.overhead_s, fpga.efficiency, fpga.time_s + host_emb.time_s,
                         fpga.bound)
    stages = (fpga, *(st for st in hp.stages if st.stage != "embedding"))
    moved = rep["h2d_bytes"] + rep["d2h_bytes"]
    transfer = link_seconds(device, moved, notes)
    if moved:
        note(notes, f"{rep['h2d_bytes']:.0f} bytes of ids and offsets to the card, {rep['d2h_bytes']:.0f} bytes of "
                    f"pooled rows back, over {device.name}'s PCIe link")
    fixed = params.fixed_overhead_s + hp.fixed_s
    total = sum(st.time_s for st in stages) + transfer + hp.transfer_s + fixed
    return Prediction(device.name, target, batch, stages, transfer + hp.transfer_s, fixed, total, params,
                      tuple(notes))
