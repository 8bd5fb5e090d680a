"""Analytic cycle model of the gather kernel, driven by trip counts from a real C simulation.

Nothing here is measured on an FPGA: the numbers are MODELLED. The trip
counts (bags, ids read, rows fetched, beats, vectors dequantized/pooled,
output beats) are counted by the C-simulation build of the generated kernel
(``-DXREC_CSIM_COUNTERS``) on a batch; the model turns them into cycles:

Per unit (seven processes in a DATAFLOW region, each one flattened loop),
cycles of each process for the batch (rows = rows fetched, bags/empty = bags
and bags with no row, from the C simulation):

    offsets   offsets read                      (II=1, one burst)
    ids       ids read                          (II=1, one burst)
    tokens    ids read + bags                   (II=1: one id per cycle, one flush per bag)
    remap     (units with pruned tables) per token of a pruned table
              max(1, L_mem / outstanding) (one 4-byte read of the remap, on-chip: 1),
              1 per token of the unit's other tables (pass through)
    fetch     rows * max(beats, L_mem / outstanding) + (empty + pruned) * beats
              (pruned: ids whose remap is -1, no burst, one II=beats iteration)
              (II=beats: a row is one burst of ``beats`` 64-byte beats, one per
              cycle; with ``outstanding`` bursts in flight a port sustains one row
              per L/outstanding cycles at best; on-chip RAM: ``beats`` cycles)
    dequant   (rows + pruned) * chunks + empty  (II=1: one 16-float vector per cycle; a pruned id
              gives zero vectors)
    pool      one lane:  II * (rows + pruned + empty) * chunks, II = ceil(fadd / chunks) if
                         chunks < fadd else 1 (the bag's result leaves with its last row)
              lanes:     (rows + pruned) * chunks + empty + bags * fadd   (II=1, a drain per bag)
    write     output beats                      (II=1: one 512-bit beat per cycle)

    unit cycles   = max(process cycles) + fill
    fill          = L_io (first ids) + L_mem (first row) [+ L_mem (first remap read)] + dequant
                    depth + pool depth (fadd latency + 2) + write depth + L_io (write response)
    channel bound = bytes moved on the channel / (peak GB/s / clock)  (+ fill); a remap read
                    moves ``remap_read_bytes`` (the channel's access granularity)
    kernel cycles = max(unit cycles, channel bounds)   -- the batch's latency in cycles

Per-query cycles = kernel cycles / batch (steady state); throughput = batch /
(kernel cycles / clock); the host's launch, PCIe transfers and the dense part
are not in these numbers.
"""
from __future__ import annotations

import json
from pathlib import Path

from .spec import pool_ii

MODELLED_LABEL = ("MODELLED (analytic cycle model over C-simulation trip counts; not measured on an FPGA)")

DEFAULT_ASSUMPTIONS = {
    "clock_mhz": 300.0,
    "axi_read_latency_hbm": 80,        # cycles from address to first beat (HBM pseudo-channel)
    "axi_read_latency_ddr": 100,       # cycles (DDR4 bank)
    "onchip_read_latency": 2,          # cycles (URAM/BRAM)
    "outstanding_reads": 32,           # per m_axi port (num_read_outstanding)
    "fadd_latency": 4,                 # fp32 add at the clock (sets the partial-sum lanes)
    "beat_bytes": 64,                  # 512-bit ports: one beat per cycle at most
    "dequant_depth": 4,
    "write_depth": 2,
    "remap_read_bytes": 32,            # a 4-byte remap read costs one HBM/DDR access of this size
}

ASSUMPTION_TEXT = {
    "clock_mhz": "kernel clock",
    "axi_read_latency_hbm": "AXI read latency of an HBM pseudo-channel, cycles (typ. 64-100)",
    "axi_read_latency_ddr": "AXI read latency of a DDR4 bank, cycles",
    "onchip_read_latency": "URAM/BRAM read latency, cycles",
    "outstanding_reads": "outstanding read bursts per m_axi port",
    "fadd_latency": "fp32 adder latency, cycles (partial-sum lanes = ceil(latency / chunks))",
    "beat_bytes": "bytes per AXI beat (512-bit ports, at most one beat per cycle)",
    "dequant_depth": "pipeline depth of the dequant process, cycles",
    "write_depth": "pipeline depth of the write process, cycles",
    "remap_read_bytes": "channel bytes one 4-byte remap read of a pruned table costs (access granularity)",
}


def _latency(memory: str, a: dict) -> float:
    return {"hbm": a["axi_read_latency_hbm"], "ddr": a["axi_read_latency_ddr"],
            "onchip": a["onchip_read_latency"]}[memory]


def model(ks, counters: dict, assumptions: dict | None = None) -> dict:
    """The report for kernel spec ``ks`` given the C-sim ``counters`` (counters.json of one run)."""
    a = dict(DEFAULT_ASSUMPTIONS)
    a.update(assumptions or {})
    f_hz = a["clock_mhz"] * 1e6
    B = int(counters["batch"])
    tc, uc = counters["tables"], counters["units"]
    chan_bytes: dict[str, float] = {}
    chan_peak: dict[str, float] = {}
    for c in ks.plan.channels:
        chan_peak[f"{c.memory}{c.index}"] = c.mbps * 1e6

    units = []
    for u in ks.units:
        k = uc[u.plan.id]
        io_mem = u.plan.io_memory
        L_io = _latency(io_mem, a)
        L_mem = _latency(u.plan.memory, a)
        tok = remap = fetch = deq = pool = 0.0
        tables = []
        for t in u.tables:
            c = tc[t.id]
            rows, bags, beats, empty = c["rows"], c["bags"], c["beats"], c["empty_bags"]
            pruned, lookups = c.get("ids_pruned", 0), c.get("remap_reads", 0)
            ch = t.plan.chunks
            tokens = c["ids_read"] - c["ids_padding"] + empty
            per_lookup = 1.0 if t.onchip else max(1.0, L_mem / a["outstanding_reads"])
            if t.onchip:
                per_row = t.plan.beats
            else:
                per_row = max(t.plan.beats, L_mem / a["outstanding_reads"])
                key = f"{t.plan.memory}{t.plan.channel}"
                chan_bytes[key] = chan_bytes.get(key, 0.0) + beats * a["beat_bytes"] \
                    + lookups * a["remap_read_bytes"]
            tok += c["ids_read"] + bags
            if u.has_remap:
                remap += (lookups * per_lookup + empty) if t.pruned else tokens
            fetch += rows * per_row + (empty + pruned) * t.plan.beats
            deq += (rows + pruned) * ch + empty
            if t.lanes == 1:
                pool += pool_ii(ch, 1, a["fadd_latency"]) * (rows + pruned + empty) * ch
            else:
                pool += (rows + pruned) * ch + empty + bags * a["fadd_latency"]
            tables.append({"table": t.id, "feature": t.plan.feature, "memory": t.plan.memory,
                           "channel": t.plan.channel, "format": t.plan.fmt, "beats_per_row": t.plan.beats,
                           "chunks_per_row": ch, "lanes": t.lanes,
                           "pool_ii": pool_ii(ch, t.lanes, a["fadd_latency"]), "bags": bags,
                           "empty_bags": empty, "ids_read": c["ids_read"],
                           "ids_padding": c["ids_padding"], "rows_fetched": rows, "beats_fetched": beats,
                           "bytes_read": beats * a["beat_bytes"], "fetch_cycles_per_row": per_row,
                           **({"pruned": {"logical_rows": t.plan.rows, "stored_rows": t.phys_rows,
                                          "remap_reads": lookups, "ids_pruned": pruned,
                                          "remap_bytes_read": 0 if t.onchip else lookups * a["remap_read_bytes"],
                                          "lookup_cycles_per_id": per_lookup}} if t.pruned else {})})
        write = float(k["out_beats"])
        io_bytes = 4 * (k["offsets_read"] + k["ids_read"] * (2 if u.has_psw else 1)) + k["out_beats"] * a["beat_bytes"]
        io_key = f"{io_mem}{u.plan.io_channel}"
        chan_bytes[io_key] = chan_bytes.get(io_key, 0.0) + io_bytes
        stages = {"offsets": float(k["offsets_read"]), "ids": float(k["ids_read"]), "tokens": tok,
                  **({"remap": remap} if u.has_remap else {}),
                  "fetch": fetch, "dequant": deq, "pool": pool, "write": write}
        fill = L_io + L_mem + a["dequant_depth"] + (a["fadd_latency"] + 2) + a["write_depth"] + L_io \
            + (L_mem if u.has_remap else 0)
        bottleneck = max(stages, key=stages.get)
        cycles = stages[bottleneck] + fill
        units.append({"unit": u.name, "memory": u.plan.memory, "channel": u.plan.channel,
                      "io": f"{io_mem.upper()}[{u.plan.io_channel}]", "tables": tables,
                      "stage_cycles": stages, "fill_cycles": fill, "bottleneck": bottleneck,
                      "cycles_per_batch": cycles, "cycles_per_query": cycles / B,
                      "io_bytes": io_bytes,
                      "trip_counts": {kk: k[kk] for kk in ("bags", "ids_read", "offsets_read", "out_beats",
                                                           "chunks_dequant", "chunks_pooled")}})
    min_fill = min((u["fill_cycles"] for u in units), default=0.0)
    channels = []
    for key in sorted(chan_bytes, key=lambda s: (s[:3], int(s[3:]))):
        peak = chan_peak[key]
        cyc = chan_bytes[key] / (peak / f_hz)
        channels.append({"channel": key, "bytes": chan_bytes[key], "peak_gbps": peak / 1e9,
                         "bound_cycles": cyc + min_fill})
    cand = [(u["cycles_per_batch"], f"unit {u['unit']} ({u['bottleneck']})") for u in units] + \
        [(c["bound_cycles"], f"bandwidth of {c['channel']}") for c in channels]
    kernel_cycles, limiter = max(cand) if cand else (0.0, "nothing to gather")
    t_s = kernel_cycles / f_hz if kernel_cycles else 0.0
    for c in channels:
        c["achieved_gbps"] = c["bytes"] / t_s / 1e9 if t_s else 0.0
        c["utilization"] = c["achieved_gbps"] / c["peak_gbps"] if c["peak_gbps"] else 0.0
    summary = {
        "label": MODELLED_LABEL,
        "batch": B,
        "clock_mhz": a["clock_mhz"],
        "kernel_cycles_per_batch": kernel_cycles,
        "cycles_per_query": kernel_cycles / B if B else 0.0,
        "batch_latency_us": t_s * 1e6,
        "queries_per_s": B / t_s if t_s else 0.0,
        "limited_by": limiter,
        "units": len(units),
        "bytes_per_query": sum(chan_bytes.values()) / B if B else 0.0,
    }
    return {"summary": summary, "assumptions": a, "assumption_notes": ASSUMPTION_TEXT,
            "model": __doc__.strip(), "units": units, "channels": channels,
            "placement_pooling_source": ks.plan.pooling_source}


def markdown(rep: dict) -> str:
    s = rep["summary"]
    L = [f"# Gather kernel report ({s['label']})", "",
         f"Batch {s['batch']} at {s['clock_mhz']:g} MHz: **{s['kernel_cycles_per_batch']:.0f} cycles per batch**, "
         f"{s['cycles_per_query']:.1f} cycles per query, batch latency {s['batch_latency_us']:.2f} us, "
         f"{s['queries_per_s']:,.0f} queries/s; limited by {s['limited_by']}.", "",
         f"Trip counts come from the C simulation of this batch ({rep.get('input_note', '')}); pooling "
         f"for placement: {rep['placement_pooling_source']}.", "",
         "## Assumptions", "", "| parameter | value | meaning |", "|---|---|---|"]
    for k, v in rep["assumptions"].items():
        L.append(f"| {k} | {v} | {rep['assumption_notes'].get(k, '')} |")
    L += ["", "## Units", "",
          "| unit | tables on | I/O on | offsets | ids | tokens | remap | fetch | dequant | pool | write | fill | "
          "cycles/batch | cycles/query | bottleneck |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for u in rep["units"]:
        st = u["stage_cycles"]
        where = "on-chip" if u["memory"] == "onchip" else f"{u['memory'].upper()}[{u['channel']}]"
        remap = f"{st['remap']:.0f}" if "remap" in st else "-"
        L.append(f"| {u['unit']} | {where} | {u['io']} | {st['offsets']:.0f} | {st['ids']:.0f} | "
                 f"{st['tokens']:.0f} | {remap} | {st['fetch']:.0f} | "
                 f"{st['dequant']:.0f} | {st['pool']:.0f} | {st['write']:.0f} | {u['fill_cycles']:.0f} | "
                 f"{u['cycles_per_batch']:.0f} | {u['cycles_per_query']:.1f} | {u['bottleneck']} |")
    L += ["", "## Tables", "", "| table | feature | unit | memory | format | beats/row | rows fetched | "
          "padding ids | pruned ids (rows stored) | row bytes read | fetch cycles/row |",
          "|---|---|---|---|---|---|---|---|---|---|---|"]
    for u in rep["units"]:
        for t in u["tables"]:
            mem = "on-chip" if t["memory"] == "onchip" else f"{t['memory'].upper()}[{t['channel']}]"
            pr = t.get("pruned")
            pruned = f"{pr['ids_pruned']} ({pr['stored_rows']} of {pr['logical_rows']})" if pr else "-"
            L.append(f"| {t['table']} | {t['feature']} | {u['unit']} | {mem} | {t['format']} | "
                     f"{t['beats_per_row']} | {t['rows_fetched']} | {t['ids_padding']} | {pruned} | "
                     f"{t['bytes_read']} | "
                     f"{t['fetch_cycles_per_row']:.2f} |")
    L += ["", "## Channels", "", "| channel | bytes | achieved GB/s | peak GB/s | utilization | bound cycles |",
          "|---|---|---|---|---|---|"]
    for c in rep["channels"]:
        L.append(f"| {c['channel']} | {c['bytes']:.0f} | {c['achieved_gbps']:.2f} | {c['peak_gbps']:.1f} | "
                 f"{100 * c['utilization']:.1f}% | {c['bound_cycles']:.0f} |")
    rf = rep.get("row_formats")
    if rf:
        L += ["", "## Row formats", "", f"Formats on the card: {', '.join(rf['formats'])}.", "",
              f"int8 (FBGEMM row-wise) error bound: {rf['int8_bound']}."]
        d = rf.get("model_drift_vs_fp32")
        if d:
            L += ["", f"Model output drift vs the fp32 tables (IR interpreter, synthetic inputs): max abs "
                      f"{d['max_abs']:.3g}; artifact tolerances {d['tolerances']}."]
    L += ["", "## Model", "", "```", rep["model"], "```", ""]
    return "\n".join(L)


def modelled_numbers(artifact) -> dict:
    """The report's headline numbers for ``xrec bench``, labelled as modelled.

    ``artifact``: an Artifact, a CompiledModel, or a path to an artifact directory.
    """
    path = Path(getattr(getattr(artifact, "artifact", artifact), "path", artifact))
    p = path / "report.json"
    if not p.is_file():
        raise FileNotFoundError(f"{path}: no report.json; it is written by `xrec compile --target hls`")
    rep = json.loads(p.read_text())
    s = dict(rep["summary"])
    s["per_unit_cycles_per_query"] = {u["unit"]: u["cycles_per_query"] for u in rep["units"]}
    s["channel_utilization"] = {c["channel"]: c["utilization"] for c in rep["channels"]}
    return s
