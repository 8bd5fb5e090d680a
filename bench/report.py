"""Present a benchmark document: terminal table, speedups, JSON, markdown page.

A document (``run_model_bench`` / ``run_kernel_bench``) holds ``rows``: one per
system and batch (model) or per system and configuration (kernels), each
either timed (``status == "ok"``: median_ms, p10_ms, p90_ms, qps, ...) or
carrying the ``reason`` it could not run.
"""
from __future__ import annotations

import json
from pathlib import Path

from . import SCHEMA

REQUIRED_ROW_KEYS = ("system", "model", "target", "batch", "threads", "median_ms", "p10_ms", "p90_ms",
                     "qps", "status", "reason")


# ------------------------------------------------------------------ grouping
def group_key(row: dict):
    """What rows are compared within: the batch (model) or the configuration (kernels)."""
    return row.get("config") or row["batch"]


def _groups(doc: dict) -> list:
    seen = []
    for r in doc["rows"]:
        k = group_key(r)
        if k not in seen:
            seen.append(k)
    return seen


def _systems(doc: dict) -> list[str]:
    seen = []
    for r in doc["rows"]:
        if r["system"] not in seen:
            seen.append(r["system"])
    return seen


def _cell(doc: dict, system: str, key) -> dict | None:
    for r in doc["rows"]:
        if r["system"] == system and group_key(r) == key:
            return r
    return None


def speedups(doc: dict) -> list[dict]:
    """For each xrec row that ran: fastest baseline median / xrec median, per group."""
    out = []
    for key in _groups(doc):
        rows = [r for r in doc["rows"] if group_key(r) == key and r.get("status") == "ok"]
        base = [r for r in rows if r.get("kind") == "baseline"]
        if not base:
            continue
        best = min(base, key=lambda r: r["median_ms"])
        for r in rows:
            if r.get("kind") == "xrec":
                out.append({"group": key, "system": r["system"], "baseline": best["system"],
                            "baseline_ms": best["median_ms"], "xrec_ms": r["median_ms"],
                            "speedup": best["median_ms"] / r["median_ms"]})
    return out


def variants(doc: dict) -> list[dict]:
    """Size and speed of each xrec compression variant (model runs with --quantize): one entry per
    xrec system that compiled, with weights.bin bytes, % of the same target's fp32 variant, the
    largest |output - eager| over the batches, the tolerance it was checked with, and the median
    ms per batch. Empty for runs with only the fp32 variant (and for runs before --quantize)."""
    rows = [r for r in doc["rows"] if r.get("kind") == "xrec" and r.get("weights_bytes") is not None]
    if not any(r.get("variant") not in (None, "fp32") for r in rows):
        return []
    out: dict[str, dict] = {}
    for r in rows:
        e = out.setdefault(r["system"], {"system": r["system"], "target": r.get("target"),
                                         "variant": r.get("variant") or "fp32",
                                         "weights_bytes": r["weights_bytes"],
                                         "weights_frac_of_fp32": r.get("weights_frac_of_fp32"),
                                         "max_abs_diff_vs_eager": None, "atol": None, "rtol": None,
                                         "checks": [], "median_ms": {}})
        if r.get("status") != "ok":
            continue
        d = r.get("max_abs_diff_vs_eager", r.get("max_abs_err"))
        if d is not None:
            e["max_abs_diff_vs_eager"] = d if e["max_abs_diff_vs_eager"] is None else max(e["max_abs_diff_vs_eager"], d)
        tol = r.get("check_tol") or {}
        if tol:
            e["atol"], e["rtol"] = tol.get("atol"), tol.get("rtol")
        e["checks"].append(r.get("check") or "ok")
        e["median_ms"][r["batch"]] = r["median_ms"]
    return list(out.values())


def _variant_table(doc: dict, vs: list[dict]) -> tuple[list[str], list[list[str]]]:
    groups = _groups(doc)
    header = ["system", "variant", "weights.bin", "% of fp32", "max |diff| vs eager", "allowed"] + \
             [f"batch {g} ms" for g in groups]
    body = []
    for v in vs:
        frac = v["weights_frac_of_fp32"]
        diff = "-" if v["max_abs_diff_vs_eager"] is None else f"{v['max_abs_diff_vs_eager']:.2e}"
        if any(c != "ok" for c in v["checks"]):
            diff += " !"
        allowed = "-" if v["atol"] is None else f"{v['atol']:.1e} + {v['rtol']:.0e}|eager|"
        body.append([v["system"], v["variant"], _fmt_bytes(v["weights_bytes"]),
                     "-" if frac is None else f"{100 * frac:.1f}%", diff, allowed]
                    + [_fmt_ms(v["median_ms"].get(g)) if g in v["median_ms"] else "n/a" for g in groups])
    return header, body


def _fmt_bytes(n: int) -> str:
    return f"{n / 2**20:.2f} MiB" if n < 100 * 2**20 else f"{n / 2**20:.0f} MiB"


def timing_mode(st: dict) -> str:
    """How a turn was timed, in words (runs before --mode were cold)."""
    gap = st.get("gap_ms", 0)
    if st.get("mode", "cold") == "warm":
        b = st.get("burst", 2)
        return (f"warm: each turn {b} calls back to back, the first untimed, the other {b - 1} timed one by one; "
                f"{gap:g} ms gap after each turn")
    return f"cold: each turn one timed call, {gap:g} ms gap after it"


def reasons(doc: dict) -> dict[str, list[tuple]]:
    """system -> [(group, reason)] for rows that did not run (same reason listed once)."""
    out: dict[str, list[tuple]] = {}
    for r in doc["rows"]:
        if r.get("status") != "ok":
            lst = out.setdefault(r["system"], [])
            if not any(reason == r.get("reason") for _, reason in lst):
                lst.append((group_key(r), r.get("reason", "")))
    return out


# ------------------------------------------------------------------ roofline %
def _fmt_pct(p: float) -> str:
    return f"{p:.0f}%" if p >= 10 else f"{p:.1f}%" if p >= 0.1 else f"{p:.2g}%"


def _fmt_pct_cell(r: dict | None) -> str:
    if r is None:
        return ""
    if r.get("status") != "ok":
        return "n/a"
    p = r.get("roofline_pct")
    if p is None:
        return "-"
    return _fmt_pct(p) + (" ^" if p > 100 else "")


ABOVE_BOUND = ("^ = faster than the lower bound: the ceilings probed in this run are below what the system reached "
               "(probes slowed by other load on the machine, or work the cost model over-counts)")


def above_bound(doc: dict) -> list[dict]:
    """Timed rows whose median beats the lower bound (roofline % > 100)."""
    return [r for r in doc["rows"] if r.get("roofline_pct") is not None and r["roofline_pct"] > 100]


def _time_and_pct(r: dict | None) -> tuple[str, str]:
    return _fmt_cell(r), _fmt_pct_cell(r)


def _lb_cells(e: dict | None) -> tuple[str, str]:
    if e is None:
        return "", ""
    if e.get("ms") is None:
        return "n/a", "-"
    return _fmt_ms(e["ms"]), e.get("bound", "?")


def lower_bound_variants(doc: dict) -> list[str]:
    """Table precisions the document has a lower bound for, fp32 first."""
    lb = doc.get("lower_bound") or {}
    seen = []
    for e in lb.get("entries") or []:
        if e["variant"] not in seen:
            seen.append(e["variant"])
    return sorted(seen, key=lambda v: v != "fp32")


def _stages_text(e: dict) -> str:
    return ", ".join(f"{st} {_fmt_ms(x['ms'])} ms {x['bound']}" for st, x in (e.get("stages") or {}).items())


def lower_bound_lines(doc: dict) -> list[str]:
    """The roofline lower bound of each batch and precision, in words (empty for old documents)."""
    lb = doc.get("lower_bound")
    if lb is None or doc.get("kind") != "model":
        return []
    if lb.get("status") != "ok":
        return [f"roofline %: absent: {lb.get('reason')}"]
    d = lb.get("device") or {}
    lines = [f"roofline lower bound ({lb.get('what')}; host: fp32 peak {d.get('fma_peak_GFLOPs', 0):.0f} GFLOP/s, "
             f"stream {d.get('stream_read_GBps', 0):.1f} GB/s, gather {d.get('gather_GBps') or 0:.1f} GB/s, "
             f"cache {d.get('cache_bytes', 0) / 2**20:.0f} MiB; ids {lb.get('ids')}, pooling measured on the timed "
             "inputs):"]
    for e in lb["entries"]:
        head = f"  batch {e['batch']:>5}  {e['variant']:5s}"
        if e.get("ms") is None:
            lines.append(f"{head} no lower bound: {e.get('reason')}")
            continue
        mb = e.get("mb") or {}
        lines.append(f"{head} {_fmt_ms(e['ms'])} ms {e['bound']}-bound (IR of {e['graph_of']}; {_stages_text(e)}; "
                     f"{e.get('gflop', 0):.3g} GFLOP, " + ", ".join(f"{v:.3g} MB {t}" for t, v in mb.items()) + ")")
    notes = sorted({n for e in lb["entries"] for n in e.get("notes") or []})
    lines += [f"  note: {n}" for n in notes]
    for r in above_bound(doc):
        lines.append(f"  {r['system']} at batch {r['batch']}: {_fmt_ms(r['median_ms'])} ms is below the lower bound "
                     f"{_fmt_ms(r['lower_bound_ms'])} ms ({_fmt_pct(r['roofline_pct'])}): the probed ceilings are "
                     "not this machine's limit in this run (see the load line)")
    return lines


# ------------------------------------------------------------------ JSON
def validate(doc: dict) -> None:
    """Raise ValueError naming the first thing wrong with a benchmark document."""
    if doc.get("schema") != SCHEMA:
        raise ValueError(f"not an xrec bench document (schema {doc.get('schema')!r}, want {SCHEMA!r})")
    for k in ("kind", "created", "machine", "settings", "rows"):
        if k not in doc:
            raise ValueError(f"bench document lacks {k!r}")
    for i, r in enumerate(doc["rows"]):
        missing = [k for k in REQUIRED_ROW_KEYS if k not in r]
        if missing:
            raise ValueError(f"row {i} ({r.get('system')}) lacks {', '.join(missing)}")
        if r["status"] == "ok" and not (r["p10_ms"] <= r["median_ms"] <= r["p90_ms"]):
            raise ValueError(f"row {i} ({r['system']}): p10 <= median <= p90 does not hold")
        if r["status"] != "ok" and not r["reason"]:
            raise ValueError(f"row {i} ({r['system']}) did not run and gives no reason")


def write_json(doc: dict, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1, default=str) + "\n")
    return path


def read_json(path) -> dict:
    doc = json.loads(Path(path).read_text())
    validate(doc)
    return doc


# ------------------------------------------------------------------ text
def _fmt_ms(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.3f}" if v < 10 else f"{v:.1f}" if v < 1000 else f"{v:.0f}"


def _fmt_cell(r: dict | None, extra: str | None = None) -> str:
    if r is None:
        return ""
    if r.get("status") != "ok":
        return "n/a"
    s = f"{_fmt_ms(r['median_ms'])} ({_fmt_ms(r['p10_ms'])}-{_fmt_ms(r['p90_ms'])})"
    if r.get("check") not in (None, "ok"):
        s += " !"
    if extra and r.get(extra) is not None:
        s += f" {100 * r[extra]:.0f}%"
    return s


def _grid(doc: dict) -> tuple[list[str], list[list[str]], str]:
    """header, rows of cells, caption: model -> system x batch; kernels -> config x system."""
    groups, systems = _groups(doc), _systems(doc)
    if doc.get("kind") != "model":      # columns only for systems that ran somewhere
        systems = [s for s in systems if any(r["system"] == s and r.get("status") == "ok" for r in doc["rows"])]
    if doc.get("kind") == "model":
        cap = ("median ms (p10-p90); n/a = did not run (reason below); ! = output differs from eager beyond "
               "its tolerance")
        lb = doc.get("lower_bound")
        if lb is None:              # a document from before the roofline % column
            header = ["system"] + [f"batch {g}" for g in groups]
            body = [[s] + [_fmt_cell(_cell(doc, s, g)) for g in groups] for s in systems]
            return header, body, cap
        header = ["system"] + [h for g in groups for h in (f"batch {g}", "roofline %")]
        body = [[s] + [c for g in groups for c in _time_and_pct(_cell(doc, s, g))] for s in systems]
        if lb.get("status") != "ok":
            body.append(["lower bound"] + ["absent", "-"] * len(groups))
            return header, body, cap + f"; roofline % absent: {lb.get('reason')}"
        for variant in lower_bound_variants(doc):
            ents = {e["batch"]: e for e in lb["entries"] if e["variant"] == variant}
            of = next((e["graph_of"] for e in ents.values() if e.get("graph_of")), None)
            body.append([f"lower bound ({variant} IR" + (f" of {of})" if of else ")")]
                        + [c for g in groups for c in _lb_cells(ents.get(g))])
        cap += ("; roofline % = lower bound / median, the lower bound being xrec.cost's roofline (efficiency 1) "
                "on the ceilings probed in this run: baselines against the fp32 IR, a compressed xrec variant "
                "against its own IR (rows 'lower bound': ms and what bounds it)")
        if above_bound(doc):
            cap += "; " + ABOVE_BOUND
    else:
        frac = doc.get("fraction_key")
        header = ["config"] + systems
        body = [[str(g)] + [_fmt_cell(_cell(doc, s, g), frac) for s in systems] for g in groups]
        cap = "median ms (p10-p90)" + (f", then % of {doc.get('fraction_of', 'the roofline')}" if frac else "")
    return header, body, cap


def _title(doc: dict) -> str:
    st = doc["settings"]
    what = doc.get("settings", {}).get("model") if doc["kind"] == "model" else f"kernel {st.get('kernel')}"
    return (f"xrec bench {what}: threads={st['threads']}, {st['reps']} interleaved reps after "
            f"{st['warmup']} warm-up, {_short_mode(st)}, {doc['machine'].get('cpu_model')}")


def _short_mode(st: dict) -> str:
    if st.get("mode", "cold") == "warm":
        return f"warm (bursts of {st.get('burst', 2)}, first untimed)"
    return f"cold (1 call per turn, {st.get('gap_ms', 0):g} ms gap)"


def format_text(doc: dict) -> str:
    """The plain-text report: table, speedups, reasons, machine load."""
    header, body, cap = _grid(doc)
    widths = [max(len(h), *(len(row[i]) for row in body)) if body else len(h) for i, h in enumerate(header)]
    lines = [_title(doc), cap, ""]
    lines.append("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in body]
    vs = variants(doc)
    if vs:
        vh, vb = _variant_table(doc, vs)
        vw = [max(len(h), *(len(row[i]) for row in vb)) for i, h in enumerate(vh)]
        lines += ["", "size and speed by variant (! = beyond the variant's own tolerance):",
                  "  " + "  ".join(h.ljust(w) for h, w in zip(vh, vw)),
                  "  " + "  ".join("-" * w for w in vw)]
        lines += ["  " + "  ".join(c.ljust(w) for c, w in zip(row, vw)) for row in vb]
    lbl = lower_bound_lines(doc)
    if lbl:
        lines += [""] + lbl
    sp = speedups(doc)
    if sp:
        lines += ["", "xrec vs the fastest baseline (speedup > 1: xrec faster):"]
        w = max(16, *(len(s["system"]) for s in sp))
        for s in sp:
            lines.append(f"  {str(s['group']):>8}  {s['system']:{w}s} {s['speedup']:7.2f}x  "
                         f"({_fmt_ms(s['xrec_ms'])} ms vs {s['baseline']} {_fmt_ms(s['baseline_ms'])} ms)")
    rs = reasons(doc)
    if rs:
        lines += ["", "did not run:"]
        for system, items in rs.items():
            for _g, why in items:
                lines.append(f"  {system}: {why}")
    load = doc.get("load") or {}
    if "other_busy_frac" in load:
        lines += ["", f"other processes used {100 * load['other_busy_frac']:.0f}% of the CPUs during the run "
                  f"(load average {load.get('loadavg_start', ['?'])[0]:.2f} -> {load.get('loadavg_end', ['?'])[0]:.2f})"]
    return "\n".join(lines)


def print_report(doc: dict, file=None) -> None:
    """Print with rich if it is installed, else plain text."""
    import sys
    file = file or sys.stdout
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        print(format_text(doc), file=file)
        return
    header, body, cap = _grid(doc)
    con = Console(file=file, width=max(100, _table_width(header, body)))
    con.print(_title(doc), highlight=False, markup=False, soft_wrap=True)
    t = Table(caption=cap)
    for h in header:
        t.add_column(h, no_wrap=True)
    for row in body:
        t.add_row(*row)
    con.print(t)
    vs = variants(doc)
    if vs:
        vh, vb = _variant_table(doc, vs)
        con.width = max(100, _table_width(vh, vb))
        vt = Table(title="size and speed by variant", caption="! = beyond the variant's own tolerance")
        for h in vh:
            vt.add_column(h, no_wrap=True)
        for row in vb:
            vt.add_row(*row)
        con.print(vt)
    rest = format_text(doc).split("\n")
    tail_start = next((i for i, ln in enumerate(rest) if ln.startswith(("roofline lower bound", "roofline %", "xrec vs", "did not",
                                                          "other processes"))),
                      len(rest))
    for ln in rest[tail_start:]:
        con.print(ln, highlight=False, markup=False, soft_wrap=True)


def _table_width(header: list[str], body: list[list[str]]) -> int:
    return sum(max(len(h), *(len(row[i]) for row in body)) + 3 if body else len(h) + 3
               for i, h in enumerate(header)) + 4


# ------------------------------------------------------------------ markdown
def _md_table(header: list[str], body: list[list[str]]) -> str:
    esc = [[c.replace("|", "\\|") for c in row] for row in body]
    out = ["| " + " | ".join(h.replace("|", "\\|") for h in header) + " |",
           "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(row) + " |" for row in esc]
    return "\n".join(out)


def _lower_bound_md(doc: dict) -> list[str]:
    lb = doc.get("lower_bound")
    if lb is None or doc.get("kind") != "model":
        return []
    if lb.get("status") != "ok":
        return ["### Roofline lower bound", "", f"roofline %: absent: {lb.get('reason')}.", ""]
    d = lb.get("device") or {}
    body = []
    for e in lb["entries"]:
        if e.get("ms") is None:
            body.append([str(e["batch"]), e["variant"], e.get("graph_of") or "-", "n/a", "-", e.get("reason", "")])
            continue
        body.append([str(e["batch"]), e["variant"], e["graph_of"], _fmt_ms(e["ms"]), e["bound"], _stages_text(e)])
    out = ["### Roofline lower bound", "",
           f"What each row's roofline % divides by its median: {lb.get('what')}. Hardware: the catalogue's "
           f"`host` device with this run's probes (fp32 FMA peak {d.get('fma_peak_GFLOPs', 0):.0f} GFLOP/s, stream "
           f"read {d.get('stream_read_GBps', 0):.1f} GB/s, random-row gather {d.get('gather_GBps') or 0:.1f} GB/s, "
           f"last-level cache {d.get('cache_bytes', 0) / 2**20:.0f} MiB), target `{lb.get('target')}`. Work: the "
           f"optimised IR named below at each batch, pooling measured on the timed inputs, ids "
           f"{lb.get('ids')} for the cache-hit estimate. Baselines and fp32 xrec rows are divided by the fp32 "
           "IR's bound (the model's work does not depend on who runs it); a compressed xrec variant reads fewer "
           "table bytes and is divided by its own IR's bound.", "",
           _md_table(["batch", "tables", "IR of", "lower bound ms", "bound", "per stage"], body), ""]
    notes = sorted({n for e in lb["entries"] for n in e.get("notes") or []})
    if notes:
        out += ["Cost-model notes:", ""] + [f"- {n}" for n in notes] + [""]
    above = above_bound(doc)
    if above:
        out += ["Faster than the lower bound (`^`): "
                + "; ".join(f"`{r['system']}` at batch {r['batch']} ({_fmt_ms(r['median_ms'])} ms, bound "
                            f"{_fmt_ms(r['lower_bound_ms'])} ms)" for r in above)
                + ". A lower bound cannot be beaten: the ceilings probed in this run are below this machine's "
                  "limit (probes slowed by other load, see Machine), or the cost model over-counts this work.", ""]
    return out


def markdown_page(doc: dict, plot: str | None = None, json_name: str | None = None) -> str:
    """A results page: what ran, where, how busy the machine was, the numbers, the reasons."""
    from .machine import describe
    m, st, load = doc["machine"], doc["settings"], doc.get("load") or {}
    date = doc["created"][:10]
    what = st.get("model") if doc["kind"] == "model" else f"kernel {st.get('kernel')}"
    lines = [f"# xrec bench: {what} ({date})", ""]
    if doc.get("note"):
        lines += [f"> {doc['note']}", ""]
    lines += ["## Machine", "",
              f"- {describe(m)}",
              f"- ISA extensions: {', '.join(m.get('isa', []))}",
              f"- caches: " + "; ".join(f"{k} {v}" for k, v in (m.get("caches") or {}).items()),
              f"- kernel {m.get('kernel')}, {m.get('cxx')}",
              "- software: " + ", ".join(f"{k} {v}" for k, v in (m.get("versions") or {}).items())]
    if "other_busy_frac" in load:
        lines.append(f"- **background load**: other processes used {100 * load['other_busy_frac']:.0f}% of "
                     f"the CPUs during this {load.get('elapsed_s', 0):.0f} s run (steal "
                     f"{100 * load.get('steal_frac', 0):.0f}%); load average "
                     f"{load['loadavg_start'][0]:.2f} at the start, {load['loadavg_end'][0]:.2f} at the end")
    if load.get("other_processes_cpu_s"):
        lines.append("- busiest other commands during the run (CPU seconds): "
                     + ", ".join(f"`{c}` {t:g}" for c, t in load["other_processes_cpu_s"]))
    roof = doc.get("roofline")
    if roof and "error" not in roof:
        lines.append(f"- roofline ({roof['threads']} threads, probes.c): stream read "
                     f"{roof['stream_read_GBps']:.1f} GB/s, random-row gather {roof['gather_GBps']:.1f} GB/s, "
                     f"fp32 FMA peak {roof['fma_peak_GFLOPs']:.0f} GFLOP/s")
    elif roof:
        lines.append(f"- roofline probes failed: {roof['error']}")
    cmd = [str(c) for c in doc.get("command", [])]
    for i in range(len(cmd) - 1):
        if cmd[i] == "--note":
            cmd[i + 1] = "'(the note above)'"
    lines += ["", "## Settings", "",
              f"- command: `{' '.join(cmd)}`",
              f"- threads {st['threads']}, {st['warmup']} warm-up rounds, {st['reps']} timed rounds, "
              f"samples interleaved (round r starts at system r mod n), timing mode {timing_mode(st)}, "
              "garbage collector paused while timing"
              + (f"; a system whose calls would take over {st['system_budget_s']:g} s per batch gets fewer "
                 "timed rounds (at least 3; the row's n)" if st.get("system_budget_s") else "")
              + (f"; a system whose single call takes over {st['max_call_s']:g} s is not timed at that batch "
                 "or larger ones" if st.get("max_call_s") else "")]
    if st.get("timed_region"):
        lines.append(f"- timed region: {st['timed_region']}")
    if st.get("check"):
        c = st["check"]
        lines.append(f"- every system's output is checked against {c['against']} first "
                     f"(|diff| <= {c['atol']:g} + {c['rtol']:g}|eager|"
                     + (f"; compressed xrec variants: {c['compressed']}" if c.get("compressed") else "")
                     + "); `!` marks a mismatch")
    if st.get("variants") and st["variants"] != ["fp32"]:
        comp = {k: v for k, v in (st.get("compression") or {}).items() if v is not None}
        lines.append(f"- xrec compression variants: {', '.join(st['variants'])}"
                     + (f" ({', '.join(f'{k} {v}' for k, v in comp.items())})" if comp else ""))
    lines += ["", "## Results", ""]
    if plot:
        lines += [f"![latency and throughput]({plot})", ""]
    header, body, cap = _grid(doc)
    lines += [_md_table(header, body), "", f"{cap}.", ""]
    if doc["kind"] == "model":
        qps_header = ["system"] + [f"batch {g}" for g in _groups(doc)]
        qps_body = [[s] + [("n/a" if (r := _cell(doc, s, g)) is None or r.get("status") != "ok"
                            else f"{r['qps']:,.0f}") for g in _groups(doc)] for s in _systems(doc)]
        lines += ["Throughput (samples/s at the median):", "", _md_table(qps_header, qps_body), ""]
    vs = variants(doc)
    if vs:
        vh, vb = _variant_table(doc, vs)
        lines += ["### Size and speed by variant", "", _md_table(vh, vb), "",
                  "weights.bin of each artifact and its share of the same target's fp32 artifact; max |diff| vs "
                  "eager over all batches, and the tolerance it was checked with (a compressed variant: its "
                  "artifact's own, 4x the output drift measured at compile time); median ms per batch.", ""]
    lines += _lower_bound_md(doc)
    sp = speedups(doc)
    if sp:
        lines += ["### xrec against the fastest baseline", "",
                  _md_table(["group", "xrec", "speedup", "xrec ms", "fastest baseline", "baseline ms"],
                            [[str(s["group"]), s["system"], f"{s['speedup']:.2f}x", _fmt_ms(s["xrec_ms"]),
                              s["baseline"], _fmt_ms(s["baseline_ms"])] for s in sp]), ""]
    lines += ["## Systems", ""]
    for name, info in (doc.get("systems") or {}).items():
        extra = info.get("info") or {}
        detail = "; ".join(f"{k}: {v}" for k, v in extra.items() if k not in ("artifact",))
        state = "" if info.get("status") == "ok" else f" **did not run**: {info.get('reason')}"
        lines.append(f"- `{name}`: {info.get('label', '')}"
                     + (f" (prepared in {info['prepare_s']:.1f} s)" if info.get("prepare_s") is not None else "")
                     + state + (f". {detail}" if detail else ""))
    rs = reasons(doc)
    later = {s: items for s, items in rs.items() if (doc.get("systems") or {}).get(s, {}).get("status") == "ok"}
    if later:
        lines += ["", "Failures while running:", ""]
        for s, items in later.items():
            for g, why in items:
                lines.append(f"- `{s}` at {g}: {why}")
    if json_name:
        lines += ["", f"Raw rows: [{json_name}]({json_name}). Regenerate this page with "
                  f"`xrec bench --render {json_name} --markdown PAGE.md --plot PLOT.png`."]
    return "\n".join(lines) + "\n"
