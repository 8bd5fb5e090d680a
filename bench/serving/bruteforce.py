"""Brute-force serving sweep on this CPU: every (precision, threads, max batch) measured with the real server at a
target QPS, so that `xrec plan`'s pick can be checked against the measured best (issue 14, item 8).

    .venv/bin/python bench/serving/bruteforce.py --sla 1000:10 --sla 3500:10       # the full sweep, 2 targets
    .venv/bin/python bench/serving/bruteforce.py --sla 1000:20 --precisions fp32,int8 --threads 1 --batches 1,16,256
    .venv/bin/python bench/serving/bruteforce.py --from results/bruteforce-X.json --pick int8,1,32   # check a pick
    .venv/bin/python bench/serving/bruteforce.py --from results/bruteforce-X.json --plan a.json --plan b.json

Per configuration ~5.2 s with the defaults (1 s warmup + 4 s measured + server start/stop ~0.2 s), so 72
configurations take ~6.3 min per target (more where a run is re-measured, see --retries), plus ~40 s once to
compile the four artifacts.

Configuration space: {cpu target} x precision {fp32, fp16, int8, int4} (embedding tables; one artifact per
precision, `xrec compile MODEL --target cpu --max-rows R [--quantize P]`, cached) x threads {1, 2} x max batch
{1, 2, 4, ..., 256} = 72 configurations per SLA target.

One measurement (one configuration at one (QPS, p99) target):
  - a fresh xrec-server (ServerProcess, 127.0.0.1, free port) with --max-batch B --max-delay-us D (default 500,
    the `xrec serve` default) and T threads: by default --workers T --threads 1 (T kernel calls at once, one
    thread each: the layout `xrec serve` uses on 2 cores; --thread-layout intra gives --workers 1 --threads T);
  - pinning (default on): the whole server process (kernel workers AND its HTTP threads) runs under
    `taskset -c` on the first T CPUs this process may use, so "T threads" really is T cores; loadgen runs on the
    CPUs left over. On a 2-core machine that is honest for T = 1 (server core 0, loadgen core 1) but not for
    T = 2: there is no spare core, so loadgen shares both cores with the server (recorded per measurement as
    loadgen_shares_server_cpus, with loadgen's CPU seconds). --no-pin turns all pinning off;
  - load: loadgen (bench/serving/loadgen.cpp) in OPEN loop: requests arrive at the times of a Poisson process of
    rate QPS (--qps Q --poisson, seeded) for warmup + duration seconds (default 1 + 4), sent whatever the server
    does (up to --connections in flight), latency measured from each request's arrival (queueing in the server
    and, if every connection is busy, in the client, both count);
  - recorded: offered QPS (this run's arrivals after the warmup, per second), achieved QPS (200s completed in
    the window, per second), p50/p90/p99/max latency, errors (non-200 answers, transport errors, wrong ids or
    values), late sends split by cause (backlog: every connection busy, the server is behind; client lag: a
    connection was free but loadgen itself ran late), server CPU ms per request (/proc of the server), mean
    requests per kernel call, mean kernel ms, and the exactly-once accounting of bench/serving/run.py (client
    sent = answered = server received = server answered per status; every answer has its own id and its own
    rows' values, checked against the SAME artifact run in-process (xrec.load), so quantized artifacts are
    checked exactly; server exit 0).

A run whose CLIENT lag p99 exceeds --max-client-lag-ms (2 ms) says more about the machine than the server
(loadgen did not get the CPU in time): it is measured again, up to --retries (1) times, the attempt with the least
client lag is kept (every attempt stays in the JSON) and the row is marked suspect if it stays above. --repeats N
measures every configuration N times (each pass shuffled) and keeps the median of each figure.

A configuration MEETS the target (QPS, p99) when: exactly once holds, every answer is 200, achieved QPS >=
(1 - --qps-tol) x offered QPS (default 3 %: it keeps up with the arrivals), and p99 <= the bound.

What "best" means on one machine (--objective; default `cpu`):

  cpu    among the configurations that meet the target, the lowest measured SERVER CPU TIME PER REQUEST
         (ms of CPU per answered request). Why this one: at a fixed offered QPS every configuration that meets
         the SLA delivers the same thing (the same requests, within the same p99), so what distinguishes them
         is what they consume. CPU time per request is that consumption: core-seconds per query (what one pays
         for, and how many such servers or other jobs fit on the machine: cores needed = QPS x CPU/request),
         and the utilisation term of the power model (the energy objective). It is continuous, so "the plan's
         pick is within 10 % of the best" is a real comparison, and it is measured from /proc, which moves
         much less with the machine's other load than latency or throughput do. Each knob shows in it:
         bigger batches cut per-call work, smaller tables cut bytes, a second worker adds hand-offs.
  cores  the fewest threads (reserved cores) that meet the target, then the lowest CPU per request: the
         "how many devices" view. Threads are 1 or 2, so alone they rank nothing (all ties at low QPS) and a
         10 % test on them is yes/no; within the same thread count it compares CPU per request.
  p99    the lowest p99 that meets the target (the latency objective). Far below capacity p99 is set by noise
         and --max-delay-us, so this ranks many configurations by chance: use it for the tight target.

Not chosen: "the max QPS under the p99 bound per thread" needs a rate search per configuration (5+
measurements each), 5x the sweep time, and answers a different question from a (QPS, p99) target.

Comparing a plan with the sweep: compare_pick() (and --pick PRECISION,THREADS,MAX_BATCH, or --plan PLAN.json
written by `xrec plan MODEL --qps Q --p99-ms S --hardware host --targets cpu --max-devices 2 --max-delay-us 500
--max-batch 1,2,4,...,256 --json F -o PLAN.json`: precision = compile.quantize, threads = serve.replicas (T
workers of one server stand for the plan's T replicas), max batch = serve.max_batch) looks the pick up in
the measured table: it passes when the pick met the target when measured and its objective value is within
--tolerance (10 %) of the best's (for `cores`: same thread count, CPU/request within 10 %). The output also lists
every configuration within the tolerance of the best, so a reader sees how flat the optimum is.

Output: --out DIR (default bench/serving/results/) bruteforce-STAMP.json (meta, every measurement with its
client and server counts, per target the best and the near-best set) and bruteforce-STAMP.md (a table per
target). Configurations are measured in a shuffled order (--seed) so the machine's drifting load does not line
up with one knob.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import run as serving  # noqa: E402  (bench/serving/run.py: loadgen build, /proc CPU, accounting)

PRECISIONS = ("fp32", "fp16", "int8", "int4")
THREADS = (1, 2)
BATCHES = tuple(2 ** k for k in range(9))          # 1, 2, 4, ..., 256
OBJECTIVES = ("cpu", "cores", "p99")


@dataclasses.dataclass(frozen=True, order=True)
class Config:
    precision: str
    threads: int
    max_batch: int

    @property
    def key(self) -> str:
        return f"{self.precision}/t{self.threads}/b{self.max_batch}"


def enumerate_configs(precisions=PRECISIONS, threads=THREADS, batches=BATCHES) -> list[Config]:
    """The configuration space, in a fixed order (precision, threads, max batch)."""
    for p in precisions:
        if p not in PRECISIONS:
            raise ValueError(f"unknown precision {p!r}; known: {', '.join(PRECISIONS)}")
    for t in threads:
        if int(t) < 1:
            raise ValueError(f"threads must be >= 1, not {t}")
    for b in batches:
        if int(b) < 1:
            raise ValueError(f"max batch must be >= 1, not {b}")
    return [Config(p, int(t), int(b)) for p in precisions for t in threads for b in batches]


def parse_sla(text: str) -> tuple[float, float]:
    """'QPS:P99_MS' -> (qps, p99_ms); both > 0."""
    try:
        q, s = text.split(":")
        qps, p99 = float(q), float(s)
    except ValueError:
        raise ValueError(f"an SLA target is QPS:P99_MS (e.g. 2000:10), not {text!r}") from None
    if not (qps > 0 and p99 > 0):
        raise ValueError(f"QPS and p99 must be > 0: {text!r}")
    return qps, p99


# ------------------------------------------------------------------ judging a table of measurements
def meets(m: dict, p99_ms: float, qps_tol: float = 0.03) -> tuple[bool, list[str]]:
    """Whether measurement `m` meets the target, and the reasons it does not.

    `m` needs: exactly_once (bool), errors (int: non-200 + transport + wrong), offered_qps, achieved_qps,
    p99_ms."""
    why = []
    if not m.get("exactly_once", False):
        why.append("not exactly once")
    if m.get("errors", 0):
        why.append(f"{m['errors']} errors")
    if m["achieved_qps"] < (1 - qps_tol) * m["offered_qps"]:
        why.append(f"QPS {m['achieved_qps']:.0f} < offered {m['offered_qps']:.0f}")
    if m["p99_ms"] > p99_ms:
        why.append(f"p99 {m['p99_ms']:.2f} ms > {p99_ms:g} ms")
    return not why, why


def objective_key(m: dict, objective: str):
    """Smaller is better."""
    if objective == "cpu":
        return (m["cpu_ms_per_request"],)
    if objective == "cores":
        return (m["threads"], m["cpu_ms_per_request"])
    if objective == "p99":
        return (m["p99_ms"],)
    raise ValueError(f"unknown objective {objective!r}; known: {', '.join(OBJECTIVES)}")


def objective_value(m: dict, objective: str) -> float:
    """The continuous quantity the 10 % comparison is made on."""
    return m["p99_ms"] if objective == "p99" else m["cpu_ms_per_request"]


def rank(measurements: list[dict], objective: str = "cpu") -> list[dict]:
    """The measurements that meet their target (m['meets']), best first (ties: the configuration order)."""
    ok = [m for m in measurements if m["meets"]]
    return sorted(ok, key=lambda m: (objective_key(m, objective), m["precision"], m["threads"], m["max_batch"]))


def best(measurements: list[dict], objective: str = "cpu") -> dict | None:
    r = rank(measurements, objective)
    return r[0] if r else None


def within(m: dict, b: dict, objective: str, tolerance: float = 0.10) -> bool:
    """m is as good as b to within `tolerance` (relative) on the objective."""
    if objective == "cores" and m["threads"] != b["threads"]:
        return False
    return objective_value(m, objective) <= (1 + tolerance) * objective_value(b, objective)


def near_best(measurements: list[dict], objective: str = "cpu", tolerance: float = 0.10) -> list[dict]:
    b = best(measurements, objective)
    return [] if b is None else [m for m in rank(measurements, objective) if within(m, b, objective, tolerance)]


def compare_pick(measurements: list[dict], pick: Config, objective: str = "cpu", tolerance: float = 0.10) -> dict:
    """Judge a plan's pick against the measured table of one target."""
    found = [m for m in measurements
             if (m["precision"], m["threads"], m["max_batch"]) == (pick.precision, pick.threads, pick.max_batch)]
    b = best(measurements, objective)
    out = {"pick": pick.key, "objective": objective, "tolerance": tolerance,
           "best": b["key"] if b else None, "best_value": objective_value(b, objective) if b else None}
    if not found:
        return out | {"ok": False, "why": "the pick was not measured"}
    m = found[0]
    out["pick_value"] = objective_value(m, objective)
    if b is None:
        return out | {"ok": False, "why": "no configuration met the target when measured"}
    if not m["meets"]:
        return out | {"ok": False, "why": "the pick did not meet the target when measured: " + "; ".join(m["why"])}
    out["ratio"] = out["pick_value"] / out["best_value"] if out["best_value"] else float("inf")
    ok = within(m, b, objective, tolerance)
    why = ""
    if not ok:
        why = (f"threads {m['threads']} vs {b['threads']}" if objective == "cores" and m["threads"] != b["threads"]
               else f"more than {tolerance:.0%} above the best")
    return out | {"ok": ok, "why": why}


# ------------------------------------------------------------------ artifacts and requests
def compile_precision(model: str, max_rows: int, precision: str) -> Path:
    """`xrec compile MODEL --target cpu --max-rows R [--quantize P]` once per (model, rows, precision), cached."""
    from xrec.config import knobs
    out = Path(knobs.cache_dir) / "serve" / "bruteforce" / f"{model}-{max_rows}-{precision}.xrec"
    if (out / "manifest.json").is_file():
        return out
    if out.exists():
        shutil.rmtree(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    xrec_cli = Path(sys.executable).with_name("xrec")
    cmd = [str(xrec_cli)] if xrec_cli.is_file() else [sys.executable, "-m", "xrec"]
    cmd += ["compile", model, "--target", "cpu", "--max-rows", str(max_rows), "-o", str(out)]
    if precision != "fp32":
        cmd += ["--quantize", precision]
    t0 = time.time()
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0 or not (out / "manifest.json").is_file():
        raise SystemExit(f"{' '.join(cmd)} failed:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    print(f"compiled {out.name} in {time.time() - t0:.0f} s", flush=True)
    return out


def make_requests(artifact: Path, rows: int, count: int, path: Path) -> dict:
    """`count` distinct requests of `rows` rows; expected = the artifact itself run in-process (xrec.load), so a
    quantized artifact is checked exactly. Returns the artifact's drift from the fp32 PyTorch model on them."""
    import numpy as np
    import torch

    import xrec
    from xrec import zoo
    from xrec.testing import zoo_model
    manifest = json.loads((artifact / "manifest.json").read_text())
    src = manifest.get("source") or {}
    if src.get("kind") != "zoo":
        raise SystemExit(f"{artifact}: the sweep makes inputs for zoo models only (source: {src})")
    model = zoo_model(src["name"], src.get("max_rows") or 300, src.get("seed", 0))
    cm = xrec.load(artifact)
    drift = 0.0
    with open(path, "w") as f:
        for k in range(count):
            dense, idx, off = zoo.make_inputs(model, rows, seed=1000 + k)
            with torch.no_grad():
                want = np.asarray(cm(dense, idx, off)).ravel()
                ref = model(dense, idx, off).numpy().ravel()
            drift = max(drift, float(np.abs(want - ref).max()))
            inputs = [{"name": "dense", "datatype": "FP32", "shape": list(dense.shape),
                       "data": dense.numpy().ravel().tolist()}]
            inputs += [{"name": f"indices[{i}]", "datatype": "INT64", "shape": [len(t)], "data": t.tolist()}
                       for i, t in enumerate(idx)]
            inputs += [{"name": f"offsets[{i}]", "datatype": "INT64", "shape": [len(t)], "data": t.tolist()}
                       for i, t in enumerate(off)]
            f.write(json.dumps({"inputs": inputs, "expected": want.tolist()}) + "\n")
    return {"max_abs_vs_fp32_torch": drift}


# ------------------------------------------------------------------ one measurement
def cpu_split(threads: int, pin: bool) -> tuple[list[int] | None, list[int] | None, bool]:
    """(server CPUs, loadgen CPUs, whether loadgen shares the server's CPUs); None = not pinned."""
    if not pin:
        return None, None, True
    allowed = sorted(os.sched_getaffinity(0))
    if threads > len(allowed):
        raise SystemExit(f"{threads} threads asked, but this process may use {len(allowed)} CPU(s): {allowed}")
    server = allowed[:threads]
    rest = allowed[threads:]
    return server, (rest or allowed), not rest


def _taskset(cpus: list[int] | None) -> list[str]:
    return ["taskset", "-c", ",".join(map(str, cpus))] if cpus else []


def server_options(cfg: Config, args) -> dict:
    workers, threads = (cfg.threads, 1) if args.thread_layout == "workers" else (1, cfg.threads)
    return {"max_batch": cfg.max_batch, "max_delay_us": args.max_delay_us if cfg.max_batch > 1 else 0,
            "workers": workers, "threads": threads, "queue": args.queue, "timeout_ms": args.timeout_ms,
            "http_threads": max(128, 2 * args.connections), "keep_alive_timeout_ms": 120000,
            "keep_alive_max": 1 << 30}


def measure(artifact: Path, cfg: Config, qps: float, p99_ms: float, args, reqs: Path, loadgen: Path,
            workdir: Path, seed: int) -> dict:
    from xrec.serve.process import ServerProcess
    server_cpus, loadgen_cpus, shared = cpu_split(cfg.threads, args.pin)

    class Pinned(ServerProcess):
        def command(self):
            return _taskset(server_cpus) + super().command()

    opts = server_options(cfg, args)
    t_start = time.time()
    srv = Pinned(artifact, host="127.0.0.1", port=0, **opts).start()
    try:
        name = json.loads((artifact / "manifest.json").read_text())["model"]
        tag = cfg.key.replace("/", "-") + f"-{qps:g}"
        out, lat = workdir / f"{tag}.json", workdir / f"{tag}.lat"
        cmd = _taskset(loadgen_cpus) + [
            str(loadgen), "--host", "127.0.0.1", "--port", str(srv.port), "--model", name, "--requests", str(reqs),
            "--concurrency", str(args.connections), "--duration", str(args.warmup + args.duration),
            "--warmup", str(args.warmup), "--qps", f"{qps:g}", "--poisson", "--seed", str(seed),
            "--out", str(out), "--latencies", str(lat)]
        before, after, server_cpu, loadgen_cpu = serving.drive(srv, cmd, args.warmup + args.duration + 300)
    finally:
        code = srv.stop()
    client = json.loads(out.read_text())
    d = lambda n, **lab: srv.metric(n, after, **lab) - srv.metric(n, before, **lab)  # noqa: E731
    by_status = serving.status_delta(srv, before, after)
    calls = d("xrec_batch_size_count")
    run = {"client": client,
           "server": {"received": int(d("xrec_requests_received_total")), "answered": int(d("xrec_requests_total")),
                      "by_status": by_status, "exit_code": code}}
    acc = serving.accounting(run)
    answered = max(1, client["answered"])
    errors = (client["sent"] - client["by_status"].get("200", 0)) + client["id_mismatch"] + client["wrong_values"]
    m = {
        "key": cfg.key, "precision": cfg.precision, "threads": cfg.threads, "max_batch": cfg.max_batch,
        "target_qps": qps, "target_p99_ms": p99_ms, "server_options": opts,
        "server_cpus": server_cpus, "loadgen_cpus": loadgen_cpus, "loadgen_shares_server_cpus": shared,
        "offered_qps": client["offered_qps"], "achieved_qps": client["achieved_qps"],
        "p50_ms": client["latency_ms"]["p50"], "p90_ms": client["latency_ms"]["p90"],
        "p99_ms": client["latency_ms"]["p99"], "max_ms": client["latency_ms"]["max"],
        "service_p99_ms": client["service_latency_ms"]["p99"],
        "sent": client["sent"], "answered": client["answered"], "errors": int(errors),
        "late_sends": client["late_sends"], "send_lag_p99_ms": client["send_lag_ms"]["p99"],
        "backlog_sends": client["backlog_sends"], "client_lag_p99_ms": client["client_lag_ms"]["p99"],
        "cpu_ms_per_request": 1e3 * server_cpu / answered, "server_cpu_s": server_cpu,
        "loadgen_cpu_ms_per_request": 1e3 * loadgen_cpu / answered,
        "kernel_calls": int(calls), "mean_batch_requests": d("xrec_batch_size_sum") / calls if calls else 0.0,
        "mean_kernel_ms": 1e3 * d("xrec_batch_duration_seconds_sum") / calls if calls else 0.0,
        "exactly_once": acc["ok"], "accounting": acc["checks"], "first_problem": client.get("first_problem", ""),
        "seed": seed, "wall_s": time.time() - t_start, "client": client, "server": run["server"],
    }
    m["meets"], m["why"] = meets(m, p99_ms, args.qps_tol)
    m["suspect"] = m["client_lag_p99_ms"] > args.max_client_lag_ms
    return m


def measure_retrying(artifact: Path, cfg: Config, qps: float, p99_ms: float, args, reqs: Path, loadgen: Path,
                     workdir: Path, seed: int) -> dict:
    """measure(), again (up to --retries times) while the CLIENT ran late: its client-lag p99 (sends late
    although a connection was free) above --max-client-lag-ms means the machine did not give loadgen the
    CPU, so the latencies are the machine's as much as the server's. Keeps the attempt with the least client
    lag; every attempt is in the row's "attempts"."""
    attempts = []
    for k in range(1 + max(0, args.retries)):
        m = measure(artifact, cfg, qps, p99_ms, args, reqs, loadgen, workdir, seed=seed + 7919 * k)
        attempts.append(m)
        if not m["suspect"]:
            break
    m = dict(min(attempts, key=lambda a: a["client_lag_p99_ms"]))
    if len(attempts) > 1:
        m["attempts"] = [{k: v for k, v in a.items() if k not in ("client", "server")} for a in attempts]
    return m


MEDIAN_KEYS = ("offered_qps", "achieved_qps", "p50_ms", "p90_ms", "p99_ms", "max_ms", "service_p99_ms",
               "send_lag_p99_ms", "client_lag_p99_ms", "cpu_ms_per_request", "loadgen_cpu_ms_per_request",
               "mean_batch_requests",
               "mean_kernel_ms")
SUM_KEYS = ("sent", "answered", "errors", "late_sends", "backlog_sends", "kernel_calls", "server_cpu_s", "wall_s")


def combine(runs: list[dict], p99_ms: float, qps_tol: float = 0.03) -> dict:
    """One row from repeated measurements of one configuration: the median of each rate, latency and CPU
    figure, the sum of the counts, exactly once only if every run was; judged again on the medians."""
    if len(runs) == 1:
        return runs[0]
    import statistics
    out = {k: v for k, v in runs[0].items() if k not in ("client", "server")}
    out.update({k: statistics.median(r[k] for r in runs) for k in MEDIAN_KEYS})
    out.update({k: sum(r[k] for r in runs) for k in SUM_KEYS})
    out["exactly_once"] = all(r["exactly_once"] for r in runs)
    out["accounting"] = {k: all(r["accounting"][k] for r in runs) for k in runs[0]["accounting"]}
    out["first_problem"] = next((r["first_problem"] for r in runs if r["first_problem"]), "")
    out["repeats"] = runs
    out["meets"], out["why"] = meets(out, p99_ms, qps_tol)
    out["meets_per_run"] = [r["meets"] for r in runs]
    out["suspect"] = any(r.get("suspect", False) for r in runs)
    return out


# ------------------------------------------------------------------ report
def markdown(meta: dict, targets: list[dict]) -> str:
    lines = [f"# xrec-server brute-force sweep, {meta['date']}", "",
             f"- model: {meta['model']} (tables capped at {meta['max_rows']} rows), {meta['rows']} row(s) per "
             f"request, {meta['distinct']} distinct requests; artifacts: `xrec compile --target cpu [--quantize P]`",
             f"- load: loadgen open loop, Poisson arrivals at the target QPS, {meta['warmup_s']} s warmup + "
             f"{meta['duration_s']} s measured per configuration, {meta.get('repeats', 1)} run(s) each (median), "
             f"up to {meta['connections']} requests in flight; latency from arrival; 127.0.0.1",
             f"- server: T threads = {meta['thread_layout_text']}, --max-delay-us {meta['max_delay_us']}; "
             f"pinning: {meta['pinning']}",
             f"- meets = exactly once, all 200, achieved >= {1 - meta['qps_tol']:.0%} of offered QPS, p99 <= bound; "
             f"best = objective `{meta['objective']}` ({meta['objective_text']}); "
             f"**bold** = best, * = within {meta['tolerance']:.0%} of the best",
             f"- late sends (> 1 ms after arrival): how many; of them `backlog` = every connection was busy (the "
             f"server is behind); client lag p99 = lateness with a free connection (loadgen did not get the CPU); "
             f"above {meta.get('max_client_lag_ms', 2.0):g} ms a run is re-measured (up to {meta.get('retries', 0)} "
             f"times, the least-lag attempt kept) and marked suspect if it stays above",
             f"- machine: {meta['machine']}, {meta['cpus']} CPUs, load average {meta['loadavg_start']} at start, "
             f"{meta['loadavg_end']} at end", ""]
    for t in targets:
        ms = sorted(t["measurements"], key=lambda m: (PRECISIONS.index(m["precision"]), m["threads"], m["max_batch"]))
        near = set(t["near_best"])
        n_ok = len([m for m in ms if m["meets"]])
        lines += [f"## {t['qps']:g} QPS, p99 <= {t['p99_ms']:g} ms: best "
                  f"{t['best'] or 'none (no configuration meets)'} ({n_ok}/{len(ms)} meet, {t['wall_s']:.0f} s)", "",
                  "| precision | threads | max batch | offered QPS | achieved QPS | p50 ms | p99 ms | errors | "
                  "late sends: backlog, client lag p99 ms | requests/call | kernel ms | server CPU ms/req | meets |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for m in ms:
            mark = "**" if m["key"] == t["best"] else ""
            star = " *" if m["key"] in near else ""
            verdict = "yes" if m["meets"] else "no: " + "; ".join(m["why"])
            if "meets_per_run" in m:
                verdict += " (runs: " + "".join("y" if x else "n" for x in m["meets_per_run"]) + ")"
            if m.get("suspect"):
                verdict += " [suspect: client lag]"
            if m.get("attempts"):
                verdict += f" [{len(m['attempts'])} attempts]"
            lines.append(
                f"| {mark}{m['precision']}{mark} | {m['threads']} | {m['max_batch']} | {m['offered_qps']:.0f} | "
                f"{m['achieved_qps']:.0f} | {m['p50_ms']:.2f} | {m['p99_ms']:.2f} | {m['errors']} | "
                f"{m['late_sends']}: {m['backlog_sends']}, {m['client_lag_p99_ms']:.1f} | "
                f"{m['mean_batch_requests']:.2f} | "
                f"{m['mean_kernel_ms']:.3f} | {mark}{m['cpu_ms_per_request']:.3f}{mark}{star} | {verdict} |")
        lines.append("")
        if t["best"]:
            lines.append(f"Within {meta['tolerance']:.0%} of the best: {', '.join(t['near_best'])}.")
        else:
            lines.append(f"No configuration meets; closest (lowest p99): {', '.join(t['closest_failing'])}.")
        if t.get("pick"):
            c = t["pick"]
            val = f"{c['pick_value']:.4g}" if c.get("pick_value") is not None else "n/a"
            bval = f"{c['best_value']:.4g}" if c.get("best_value") is not None else "n/a"
            lines.append(f"Pick {c['pick']}: {'OK' if c['ok'] else 'NOT OK'}, {c['objective']} {val} vs best "
                         f"{c['best']} {bval}" + (f" ({c['ratio']:.3f}x)" if "ratio" in c else "")
                         + (f": {c['why']}" if c["why"] else ""))
        lines.append("")
    return "\n".join(lines)


def judge(targets: list[dict], objective: str, tolerance: float, pick: Config | None,
          plan_picks: dict | None = None) -> None:
    """Best and near-best per target; `pick` is judged on every target, plan_picks[(qps, p99_ms)] on its own."""
    for t in targets:
        b = best(t["measurements"], objective)
        t["best"] = b["key"] if b else None
        t["near_best"] = [m["key"] for m in near_best(t["measurements"], objective, tolerance)]
        t["closest_failing"] = [m["key"] for m in sorted((m for m in t["measurements"] if not m["meets"]),
                                                         key=lambda m: m["p99_ms"])[:3]]
        mine = next((c for (q, s), c in (plan_picks or {}).items()
                     if abs(q - t["qps"]) < 1e-9 * max(1.0, q) and abs(s - t["p99_ms"]) < 1e-9 * max(1.0, s)), None)
        if mine is not None or pick is not None:
            t["pick"] = compare_pick(t["measurements"], mine or pick, objective, tolerance)
            t["pick"]["from"] = "xrec plan" if mine is not None else "--pick"


OBJECTIVE_TEXT = {"cpu": "lowest server CPU ms per request among configurations that meet the target",
                  "cores": "fewest threads, then lowest server CPU ms per request, among those that meet",
                  "p99": "lowest p99 among those that meet"}


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def pick_from_plan(plan: dict, max_delay_us: int | None = None) -> tuple[Config, list[str]]:
    """The configuration an `xrec plan --json` file chose, as a sweep Config: precision from compile.quantize,
    threads from serve.replicas (T workers of one server stand for T replicas of the plan's queueing model),
    max batch from serve.max_batch. Also returns warnings (another target or max delay than the sweep's)."""
    comp, serve = plan.get("compile"), plan.get("serve")
    if not comp or not serve:
        raise ValueError("the plan chose nothing (no configuration met its target): nothing to check")
    warn = []
    if comp.get("target") != "cpu":
        warn.append(f"the plan chose target {comp.get('target')!r}; the sweep measures cpu only")
    if max_delay_us is not None and serve.get("max_delay_us") not in (None, max_delay_us):
        warn.append(f"the plan chose max delay {serve['max_delay_us']} us; the sweep ran {max_delay_us} us "
                    "(run the plan with --max-delay-us " + str(max_delay_us) + ")")
    return Config(comp.get("quantize") or "fp32", int(serve["replicas"]), int(serve["max_batch"])), warn


def parse_pick(text: str) -> Config:
    try:
        p, t, b = text.split(",")
        return Config(p, int(t), int(b))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--pick is PRECISION,THREADS,MAX_BATCH (e.g. int8,1,32), not {text!r}")


def _progress(qps, p99, where, cfg, m) -> None:
    print(f"[{qps:g} QPS, {p99:g} ms] {where} {cfg.key}: {m['achieved_qps']:.0f}/{m['offered_qps']:.0f} QPS, "
          f"p50 {m['p50_ms']:.2f} p99 {m['p99_ms']:.2f} ms, CPU {m['cpu_ms_per_request']:.3f} ms/req, "
          f"{m['mean_batch_requests']:.1f} req/call, late sends {m['late_sends']} (backlog {m['backlog_sends']}, "
          f"client lag p99 {m['client_lag_p99_ms']:.2f} ms), "
          f"{'meets' if m['meets'] else 'fails: ' + '; '.join(m['why'])} ({m['wall_s']:.1f} s"
          + (f", {len(m['attempts'])} attempts" if m.get("attempts") else "") + ")"
          + (" SUSPECT: the client ran late" if m.get("suspect") else ""), flush=True)
    if not m["exactly_once"]:
        print("  " + json.dumps(m["accounting"]) + " " + m["first_problem"], flush=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sla", action="append", default=[], metavar="QPS:P99_MS", help="a target (repeatable)")
    p.add_argument("--model", default="dlrm-small")
    p.add_argument("--max-rows", type=int, default=1000, help="cap the zoo tables at this many rows")
    p.add_argument("--precisions", default=",".join(PRECISIONS))
    p.add_argument("--threads", default=",".join(map(str, THREADS)))
    p.add_argument("--batches", default=",".join(map(str, BATCHES)))
    p.add_argument("--duration", type=float, default=4.0, help="measured seconds per configuration")
    p.add_argument("--warmup", type=float, default=1.0, help="seconds before that, left out")
    p.add_argument("--repeats", type=int, default=1,
                   help="measure every configuration this many times (each pass in its own shuffled order); "
                        "a row is the median of its runs")
    p.add_argument("--max-delay-us", type=int, default=500)
    p.add_argument("--thread-layout", choices=("workers", "intra"), default="workers",
                   help="T threads = --workers T --threads 1 (default) or --workers 1 --threads T")
    p.add_argument("--connections", type=int, default=128, help="loadgen: most requests in flight")
    p.add_argument("--rows", type=int, default=1, help="rows per request")
    p.add_argument("--distinct", type=int, default=64, help="distinct requests cycled through")
    p.add_argument("--queue", type=int, default=1024)
    p.add_argument("--timeout-ms", type=int, default=30000)
    p.add_argument("--qps-tol", type=float, default=0.03)
    p.add_argument("--max-client-lag-ms", type=float, default=2.0,
                   help="client-lag p99 above this marks a run suspect (the client, not the server, ran late)")
    p.add_argument("--retries", type=int, default=1, help="re-measure a suspect run up to this many times")
    p.add_argument("--objective", choices=OBJECTIVES, default="cpu")
    p.add_argument("--tolerance", type=float, default=0.10, help="'within' for the near-best set and --pick")
    p.add_argument("--pick", type=parse_pick, default=None, help="PRECISION,THREADS,MAX_BATCH to judge")
    p.add_argument("--plan", type=Path, action="append", default=[],
                   help="an `xrec plan --json` file: judge its pick against the target with its QPS and p99 "
                        "(repeatable, one per target)")
    p.add_argument("--from", dest="from_json", type=Path, default=None,
                   help="judge an earlier sweep's JSON (measures nothing)")
    p.add_argument("--no-pin", dest="pin", action="store_false")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", type=Path, default=HERE / "results")
    p.add_argument("--json", type=Path, default=None, help="also write the JSON here")
    args = p.parse_args(argv)

    saved = json.loads(args.from_json.read_text()) if args.from_json else None
    plan_picks: dict[tuple[float, float], Config] = {}
    for f in args.plan:
        delay = saved["meta"].get("max_delay_us") if saved else args.max_delay_us
        try:
            plan = json.loads(f.read_text())
            cfg, warnings = pick_from_plan(plan, delay)
            plan_picks[float(plan["request"]["qps"]), float(plan["request"]["p99_ms"])] = cfg
        except (OSError, ValueError, KeyError, TypeError) as e:
            p.error(f"--plan {f}: {e}")
        for w in warnings:
            print(f"warning: {f}: {w}", file=sys.stderr)
    if saved is not None:
        result = saved
        judge(result["targets"], args.objective, args.tolerance, args.pick, plan_picks)
        result["meta"].update(objective=args.objective, objective_text=OBJECTIVE_TEXT[args.objective],
                              tolerance=args.tolerance)
        print(markdown(result["meta"], result["targets"]))
        ok = all(t.get("pick", {}).get("ok", True) for t in result["targets"])
        return 0 if ok else 1

    try:
        slas = [parse_sla(s) for s in args.sla]
        configs = enumerate_configs(args.precisions.split(","), _ints(args.threads), _ints(args.batches))
    except ValueError as e:
        p.error(str(e))
    if not slas:
        p.error("give at least one --sla QPS:P99_MS")
    if args.repeats < 1 or args.duration <= 0 or args.warmup < 0:
        p.error("--repeats >= 1, --duration > 0 and --warmup >= 0")
    if args.pin and not shutil.which("taskset"):
        p.error("taskset (util-linux) not found; install it or pass --no-pin")

    from xrec.serve.build import server_binary
    server_binary()
    loadgen = serving.loadgen_binary()
    artifacts = {prec: compile_precision(args.model, args.max_rows, prec) for prec in dict.fromkeys(
        c.precision for c in configs)}
    load0 = " ".join(f"{x:.1f}" for x in os.getloadavg())
    rng = random.Random(args.seed)
    targets, t_all = [], time.time()
    with tempfile.TemporaryDirectory(prefix="xrec-bruteforce-") as tmp:
        work = Path(tmp)
        reqs, drift = {}, {}
        for prec, art in artifacts.items():
            reqs[prec] = work / f"requests-{prec}.jsonl"
            drift[prec] = make_requests(art, args.rows, args.distinct, reqs[prec])
        for qps, p99 in slas:
            t0, runs, orders = time.time(), {c.key: [] for c in configs}, []
            for rep in range(args.repeats):
                order = list(configs)
                rng.shuffle(order)
                orders.append([c.key for c in order])
                for i, cfg in enumerate(order):
                    m = measure_retrying(artifacts[cfg.precision], cfg, qps, p99, args, reqs[cfg.precision],
                                         loadgen, work, seed=args.seed * 100000 + rep * 1000 + i)
                    runs[cfg.key].append(m)
                    _progress(qps, p99, f"{rep + 1}.{i + 1}/{len(order)}", cfg, m)
            ms = [combine(runs[c.key], p99, args.qps_tol) for c in configs]
            targets.append({"qps": qps, "p99_ms": p99, "measurements": ms, "order": orders,
                            "wall_s": time.time() - t0})
    judge(targets, args.objective, args.tolerance, args.pick, plan_picks)
    server_cpus, loadgen_cpus, shared = cpu_split(max(c.threads for c in configs), args.pin)
    layout = ("--workers T --threads 1" if args.thread_layout == "workers" else "--workers 1 --threads T")
    meta = {
        "date": dt.datetime.now().strftime("%Y-%m-%d %H:%M"), "model": args.model, "max_rows": args.max_rows,
        "artifacts": {k: str(v) for k, v in artifacts.items()}, "drift": drift,
        "repeats": args.repeats, "retries": args.retries, "max_client_lag_ms": args.max_client_lag_ms,
        "rows": args.rows, "distinct": args.distinct, "duration_s": args.duration,
        "warmup_s": args.warmup,
        "connections": args.connections, "max_delay_us": args.max_delay_us, "thread_layout": args.thread_layout,
        "thread_layout_text": layout, "qps_tol": args.qps_tol, "objective": args.objective,
        "objective_text": OBJECTIVE_TEXT[args.objective], "tolerance": args.tolerance, "seed": args.seed,
        "pinning": ("off" if not args.pin else
                    f"server on the first T of CPUs {sorted(os.sched_getaffinity(0))} (taskset), loadgen on the "
                    "rest" + (" (none left at T = max: loadgen shares the server's CPUs)" if shared else "")),
        "configs": [c.key for c in configs], "slas": [{"qps": q, "p99_ms": s} for q, s in slas],
        "machine": f"{platform.node()} {platform.processor() or platform.machine()}", "cpus": os.cpu_count(),
        "loadavg_start": load0, "loadavg_end": " ".join(f"{x:.1f}" for x in os.getloadavg()),
        "wall_s": time.time() - t_all,
    }
    result = {"meta": meta, "targets": targets}
    md = markdown(meta, targets)
    print(md)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        (args.out / f"bruteforce-{stamp}.json").write_text(json.dumps(result, indent=1) + "\n")
        (args.out / f"bruteforce-{stamp}.md").write_text(md)
        print(f"wrote {args.out / f'bruteforce-{stamp}'}.json/.md")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    ok = all(m["exactly_once"] for t in targets for m in t["measurements"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
