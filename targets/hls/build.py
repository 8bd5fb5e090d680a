"""``HlsTarget.build``: tables -> images, plan -> HLS sources, C-sim binary, host part, report."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np

from xrec.artifact import ArtifactWriter
from xrec.config import knobs
from xrec.lowering import LoweringError
from xrec.passes import run_pipeline
from .placement import plan_of
from xrec.progress import step

from .. import get_target
from . import csim, emit_host, emit_kernel, emit_testbench, report, tables, vpp_config
from .headers import ap_types_dir, licence_note, xrt_include_dir
from .options import HOSTS, HlsOptions
from .spec import KERNEL, check_capacity, kernel_spec, memory_use
from .split import dense_graph

HOST_DIR = "lib/host.xrec"


def host_target(opts: HlsOptions) -> str:
    """The target the dense part is built for: the ``host`` option, else cpu when it is available here."""
    if opts.host:
        return opts.host
    try:
        cpu_ok = bool(get_target("cpu").available()[0])
    except (KeyError, ImportError):
        cpu_ok = False
    return "cpu" if cpu_ok else "reference"


def build(target, g, opts: HlsOptions, writer) -> None:
    plan = plan_of(g)
    info = writer.target_info
    info["options"] = opts.as_dict()
    info["placement"] = plan.to_json()

    # ---- the host (dense) part: an artifact of the host target inside this one
    host = host_target(opts)
    with step(f"build the dense part for host target {host}"):
        host_info = _build_host(g, host, opts, writer.path / HOST_DIR)
    info["host"] = host_info

    if not plan.tables:
        info["gather"] = "none (the model has no embedding bags)"
        return

    # ---- table images
    layout = writer.write_weights()
    ks = kernel_spec(g, plan, fadd_latency=opts.fadd_latency, outstanding=opts.outstanding_reads)
    for t in ks.tables:
        pname = g.node(t.table_value).attr("name")
        arr, ttype = g.params[pname], g.type_of(t.table_value)
        if tables.is_raw_image(arr, ttype, t.plan.fmt, t.plan.beats):
            e = layout[pname]
            t.image = ("weights.bin", e["offset"], e["nbytes"])
        else:
            rel = f"lib/tables/t{t.id}.bin"
            img = tables.image(arr, ttype, t.plan.fmt, t.plan.dim, t.plan.beats)
            p = writer.path / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            img.tofile(p)
            t.image = (rel, 0, int(img.nbytes))
        if t.pruned:           # the int32 remap is a parameter: its bytes in weights.bin are its image
            e = layout[g.node(t.remap_value).attr("name")]
            t.remap_image = ("weights.bin", e["offset"], e["nbytes"])
    check_capacity(ks)

    # ---- sources
    clock = opts.clock_mhz
    srcs = {
        emit_kernel.FORMATS_HEADER: emit_kernel.formats_header(),
        f"{KERNEL}.h": emit_kernel.emit_header(ks),
        f"{KERNEL}.cpp": emit_kernel.emit_kernel(ks),
        "tb.cpp": emit_testbench.emit_testbench(ks),
    }
    for name, text in srcs.items():
        writer.write_text(f"src/{name}", text)
    writer.write_text("src/host.cpp", emit_host.emit_host(ks))
    writer.write_text(f"src/{KERNEL}.cfg", vpp_config.emit_vpp_config(ks, clock, opts.platform))
    writer.write_text("src/run_hls.tcl", vpp_config.emit_hls_tcl(ks, clock, opts.part))
    writer.write_text("src/Makefile", vpp_config.emit_makefile(ks, opts.platform))

    # ---- C simulation binary
    with step("compile the C simulation (g++)"):
        b = csim.build_csim(srcs, writer.path / "lib" / "csim", opts.include_dir)
    info["csim"] = {"command": " ".join(b["command"]), "cache_key": b["key"], "cached": b["cached"],
                    "ap_types": str(ap_types_dir(opts.include_dir))}
    if opts.build_host:
        info["xrt_host"] = _build_xrt_host(writer.path)

    # rows stored narrower than the model's fp32 tables: the artifact is compared with the fp32 model
    # within 4x the drift that change causes on synthetic inputs (as xrec's compression does)
    drift = quantization_drift(g, ks)
    if drift is not None:
        tol = writer.widen_tolerances(atol=4 * drift)
        info["quantization_drift"] = {"max_abs": drift, "row_formats": sorted({t.plan.fmt for t in ks.tables}),
                                      "tolerances": tol}

    # ---- self-check and report: one synthetic batch through the C simulation
    with step(f"C-simulate a batch of {opts.report_batch} for the report"):
        rep = _report(g, ks, opts, writer.path)
    rep["row_formats"] = {
        "formats": sorted({t.plan.fmt for t in ks.tables}),
        "int8_bound": "per element |x - (q*scale + bias)| <= scale/2 = (max(row) - min(row))/510, plus fp32 "
                      "rounding; a pooled bag: sum_i |w_i| * scale_i / 2 (mean: divided by the count)",
        "model_drift_vs_fp32": info.get("quantization_drift")}
    writer.write_text("report.json", json.dumps(rep, indent=1))
    writer.write_text("report.md", report.markdown(rep))
    info["report"] = rep["summary"]
    info["self_check"] = rep["self_check"]
    info["tables"] = [{"table": t.id, "feature": t.plan.feature, "image": list(t.image),
                       **({"pruned": {"logical_rows": t.plan.rows, "stored_rows": t.phys_rows,
                                      "remap": list(t.remap_image)}} if t.pruned else {})} for t in ks.tables]
    info["stored_bytes"] = memory_use(ks)
    writer.write_text("src/README.md", _readme(ks, opts, b, g))


def _build_host(g, host_name: str, opts: HlsOptions, path: Path) -> dict:
    dg = dense_graph(g)
    host = get_target(host_name)
    ok, why = host.available()
    if not ok:
        raise RuntimeError(f"hls target: host target {host_name!r} is not available here: {why}")
    hopts = host.parse_options(opts.host_options)
    dg = run_pipeline(dg, host.passes(hopts))
    w = ArtifactWriter(path, dg, host.name, target_info={"options": dict(hopts)},
                      tolerances=host.tolerances_for(hopts))
    try:
        host.build(dg, hopts, w)
    except LoweringError as e:       # the dense part is the host target's to lower: say so, keep its error
        others = [h for h in HOSTS if h != host.name]
        e.add_note(f"hls target: the model's dense part (everything but the embedding gathers) runs on the host "
                   f"target {host.name!r}; choose another host with -O host={others[0]} (or compile for a "
                   "target that lowers this op)")
        raise
    w.finish()
    return {"target": host.name, "artifact": str(path.name), "inputs": [n.attr("name") for n in dg.input_nodes]}


def _build_xrt_host(root: Path) -> dict:
    inc = xrt_include_dir()
    if inc is None:
        raise RuntimeError("hls option build_host=True needs XRT's headers (apt-get install libxrt-dev, or "
                           "/opt/xilinx/xrt from a Xilinx XRT install)")
    cmd = [knobs.cxx, "-std=c++17", "-O2", "-DXREC_HOST_MAIN", f"-I{inc}", str(root / "src" / "host.cpp"),
           "-o", str(root / "lib" / "host"), "-lxrt_coreutil", "-luuid", "-pthread"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"building the XRT host program failed:\n{r.stderr[-3000:]}")
    return {"command": " ".join(cmd)}


def synthetic_flat_inputs(g, ks, batch: int, seed: int = 0) -> list[np.ndarray]:
    """Model inputs for a batch: gathered features follow the plan's pooling (bag lengths 1+Poisson(p-1),
    exactly 1 for p=1, Poisson(p) for p<1; ids uniform over the table), other inputs are random."""
    from xrec.artifact import signature_of
    from xrec.runtime.inputs import random_flat_inputs
    from .split import feature_sources
    flat = random_flat_inputs(g, signature_of(g)["features"], batch, seed=seed)
    ins = g.input_nodes
    rng = np.random.default_rng(seed + 7919)
    rows_of: dict[int, int] = {}
    for t in ks.tables:
        i_idx = feature_sources(g, t.jagged_value, t.psw_value)[0]
        rows_of[i_idx] = min(rows_of.get(i_idx, t.plan.rows), t.plan.rows)
    done = set()
    for t in ks.tables:
        i_idx, i_off, last, i_w = feature_sources(g, t.jagged_value, t.psw_value)
        if i_idx in done:
            continue
        done.add(i_idx)
        p = t.plan.pooling
        if p == 1.0:
            lengths = np.ones(batch, np.int64)
        elif p > 1.0:
            lengths = 1 + rng.poisson(p - 1.0, batch)
        else:
            lengths = rng.poisson(p, batch)
        off = np.zeros(batch + 1, np.int64)
        np.cumsum(lengths, out=off[1:])
        nnz = int(off[-1])
        flat[i_idx] = rng.integers(0, rows_of[i_idx], nnz).astype(ins[i_idx].type.dtype.to_numpy())
        flat[i_off] = (off if last else off[:-1]).astype(ins[i_off].type.dtype.to_numpy())
        if i_w is not None:
            flat[i_w] = rng.standard_normal(nnz).astype(ins[i_w].type.dtype.to_numpy())
    return flat


def _report(g, ks, opts: HlsOptions, root: Path) -> dict:
    from .runtime import Gatherer, reference_pooled
    batch = opts.report_batch
    flat = synthetic_flat_inputs(g, ks, batch)
    gat = Gatherer(ks, g, root, opts)
    feats, b = gat.features_from_inputs(flat)
    pooled, counters = gat.run_features(feats, b)
    want = reference_pooled(g, ks, feats, b)
    worst = 0.0
    for name, arr in pooled.items():
        # tables may hold NaN/inf rows: those must come out where the reference has them (equal_nan; an inf
        # is close only to the same inf), and the error is measured over the finite entries
        fin = np.isfinite(want[name]) & np.isfinite(arr)
        d = np.abs(arr.astype(np.float64)[fin] - want[name][fin])
        worst = max(worst, float(d.max()) if d.size else 0.0)
        if not np.allclose(arr, want[name], rtol=1e-5, atol=1e-5, equal_nan=True):
            how = (f"by up to {worst:.3g}" if worst else "in its NaN/inf positions")
            raise RuntimeError(f"hls build self-check: C-simulated gather of %{name} differs from the reference "
                               f"{how} (this is an xrec bug; please report it with the model)")
    a = {"clock_mhz": opts.clock_mhz, "axi_read_latency_hbm": opts.axi_read_latency_hbm,
         "axi_read_latency_ddr": opts.axi_read_latency_ddr, "outstanding_reads": opts.outstanding_reads,
         "fadd_latency": opts.fadd_latency}
    rep = report.model(ks, counters, a)
    rep["input_note"] = (f"synthetic batch of {batch}: bag lengths 1+Poisson(pooling-1) (exactly 1 when "
                         "pooling is 1), ids uniform over each table, seed 0")
    rep["self_check"] = {"max_abs_err_vs_reference": worst, "batch": batch}
    rep["counters"] = counters
    return rep


def quantization_drift(g, ks, batch: int = 256, seeds=(0, 1)) -> float | None:
    """Largest |model output change| from storing fp32 tables in a narrower row format (fp16/int8),
    measured with the IR interpreter on synthetic inputs that follow the plan's pooling; None if no
    table was re-encoded by this target."""
    from xrec.ir import run_graph
    conv = [t for t in ks.tables if tables.source_format(g.type_of(t.table_value)) != t.plan.fmt]
    if not conv:
        return None
    params = dict(g.params)
    for t in conv:
        name = g.node(t.table_value).attr("name")
        params[name] = tables.effective_table(g.params[name], g.type_of(t.table_value), t.plan.fmt, t.plan.dim)
    gq = g.with_(params=params)
    drift = 0.0
    for seed in seeds:
        flat = synthetic_flat_inputs(g, ks, batch, seed=seed)
        for a, b in zip(run_graph(g, flat), run_graph(gq, flat)):
            d = np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))
            drift = max(drift, float(d.max()) if d.size else 0.0)
    return drift


def _readme(ks, opts: HlsOptions, b: dict, g) -> str:
    lines = [
        f"# {g.name}: FPGA gather kernel (xrec hls target)", "",
        f"{len(ks.units)} gather units over {len(ks.tables)} tables. Placement policy: {ks.plan.policy} "
        f"(tables larger than an HBM pseudo-channel go to a DDR bank, none is split); pooling: "
        f"{ks.plan.pooling_source}.", "",
        "| file | what |", "|---|---|",
        f"| {KERNEL}.h / {KERNEL}.cpp | the HLS kernel (top function `{KERNEL}`) |",
        f"| {emit_kernel.FORMATS_HEADER} | row-format and pooling-mode codes, generated from xrec/ir/formats.py |",
        "| tb.cpp | C-simulation testbench: `csim ARTIFACT_DIR IO_DIR` |",
        "| host.cpp | XRT host code (`-DXREC_HOST_MAIN` for a program with the same file protocol) |",
        f"| {KERNEL}.cfg | v++ link config: `sp=` bank per argument, `nk=` |",
        "| run_hls.tcl | Vitis HLS synthesis script |",
        "| Makefile | v++ compile/link and the host program |", "",
        "C simulation (what xrec ran here):", "", "```", " ".join(b["command"]), "```", "",
        licence_note(opts.include_dir), "",
        "hls_stream.h on that include path is xrec's own C-sim model (aborts on a read from an empty stream).",
        ""]
    pruned = [t for t in ks.tables if t.pruned]
    if pruned:
        lines += [f"Pruned tables ({len(pruned)}): each stores its kept rows and an int32 remap (logical id -> "
                  "row, -1 = pruned) next to them (argument `remap_<table>`, same bank; on-chip tables: "
                  "`xrec_remap_<table>`, loaded with the rows); a remap stage looks ids up before the row burst, "
                  "pruned ids fetch nothing and pool as zero rows.", ""]
    return "\n".join(lines)
