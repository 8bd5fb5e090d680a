"""Load test of xrec-server on loopback: dynamic batching against batch-1 serving, same machine, same run.

    .venv/bin/python bench/serving/run.py                       # 2 x 30 s at concurrency 32 (dlrm-small)
    .venv/bin/python bench/serving/run.py --duration 3 --rounds 1 --configs batched   # a quick check

For each round and each configuration (interleaved: batched, batch1, batched, ...) it starts
a fresh server on 127.0.0.1 (a free port), drives it with loadgen (C++, closed loop: C
connections sending back to back for the round's seconds, bounded: it stops by itself), and
stops the server gracefully. Per run it records throughput, latency percentiles (client
side), the batch-size distribution (the server's /metrics), and the accounting that shows
every request was answered exactly once: requests the client sent = answers it got
(each carrying its own request id and its own rows' results) = requests the server counted
received = answers the server counted, per status code. Results: JSON and a markdown
table under --out (default bench/serving/results/).
"""
from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from xrec.serve.process import proc_cpu_s  # (re-exported: bruteforce.py reads it from here)

HERE = Path(__file__).resolve().parent

CONFIGS = {
    # name: server options
    "batched": lambda a: {"max_batch": a.max_batch, "max_delay_us": a.max_delay_us},
    "batch1": lambda a: {"max_batch": 1, "max_delay_us": 0},
}


def loadgen_binary() -> Path:
    """bench/serving/loadgen.cpp built with the system compiler, cached by source hash."""
    from xrec.config import knobs
    src = HERE / "loadgen.cpp"
    cxx = shlex.split(knobs.cxx or "g++")
    flags = ["-std=c++17", "-O2", "-pthread"]
    pc = subprocess.run(["pkg-config", "--cflags", "--libs", "cpp-httplib"], capture_output=True, text=True) \
        if shutil.which("pkg-config") else None
    if pc is not None and pc.returncode == 0:
        libs = pc.stdout.split()
    elif Path("/usr/include/httplib.h").is_file():   # Debian's build: OpenSSL, zlib and Brotli support
        libs = ["-DCPPHTTPLIB_OPENSSL_SUPPORT", "-DCPPHTTPLIB_ZLIB_SUPPORT", "-DCPPHTTPLIB_BROTLI_SUPPORT",
                "-lcpp-httplib"]
    else:
        raise SystemExit("loadgen needs cpp-httplib (apt-get install libcpp-httplib-dev pkg-config)")
    key = hashlib.sha256(src.read_bytes() + " ".join(cxx + flags + libs).encode()).hexdigest()[:20]
    exe = Path(knobs.cache_dir) / "serve" / f"loadgen-{key}"
    if not exe.is_file():
        exe.parent.mkdir(parents=True, exist_ok=True)
        tmp = exe.with_suffix(".tmp")
        out = subprocess.run(cxx + flags + [str(src), "-o", str(tmp)] + libs, capture_output=True, text=True)
        if out.returncode != 0:
            raise SystemExit(f"building loadgen failed:\n{out.stderr[-4000:]}")
        os.replace(tmp, exe)
    return exe


def compile_artifact(model: str, max_rows: int) -> Path:
    """A cpu artifact of a zoo model for the best ISA here, cached under the xrec cache."""
    import xrec
    from xrec import zoo
    from xrec.config import knobs
    from xrec.targets.cpu.isa import best_isa
    from xrec.testing import zoo_model
    out = Path(knobs.cache_dir) / "serve" / "bench" / f"{model}-{max_rows}-{best_isa()}.xrec"
    if not (out / "manifest.json").is_file():
        if out.exists():
            shutil.rmtree(out)
        m = zoo_model(model, max_rows)
        xrec.compile(m, zoo.example_inputs(m), target="cpu", options={"isa": best_isa()}, out=out,
                     source={"kind": "zoo", "name": model, "max_rows": max_rows, "seed": 0})
    return out


def make_requests(artifact: Path, rows: int, count: int, path: Path) -> None:
    """`count` distinct requests of `rows` rows, with the expected output (PyTorch for zoo models)."""
    import torch
    from xrec import zoo
    from xrec.testing import zoo_model
    manifest = json.loads((artifact / "manifest.json").read_text())
    src = manifest.get("source") or {}
    if src.get("kind") != "zoo":
        raise SystemExit(f"{artifact}: the load test makes inputs for zoo models only (source: {src})")
    model = zoo_model(src["name"], src.get("max_rows") or 300, src.get("seed", 0))
    with open(path, "w") as f:
        for k in range(count):
            dense, idx, off = zoo.make_inputs(model, rows, seed=1000 + k)
            with torch.no_grad():
                want = model(dense, idx, off).numpy().ravel()
            inputs = [{"name": "dense", "datatype": "FP32", "shape": list(dense.shape),
                       "data": dense.numpy().ravel().tolist()}]
            inputs += [{"name": f"indices[{i}]", "datatype": "INT64", "shape": [len(t)], "data": t.tolist()}
                       for i, t in enumerate(idx)]
            inputs += [{"name": f"offsets[{i}]", "datatype": "INT64", "shape": [len(t)], "data": t.tolist()}
                       for i, t in enumerate(off)]
            f.write(json.dumps({"inputs": inputs, "expected": want.tolist()}) + "\n")


def histogram_delta(before, after, name: str) -> dict[str, float]:
    """Per-bucket counts (not cumulative) of histogram `name` between two /metrics snapshots."""
    def cum(samples):
        return {lab["le"]: v for n, lab, v in samples if n == name + "_bucket"}
    b, a = cum(before), cum(after)
    out, prev = {}, 0.0
    for le in a:      # rendered in increasing order
        c = a[le] - b.get(le, 0.0)
        out[le] = c - prev
        prev = c
    return {k: v for k, v in out.items() if v}


def drive(srv, cmd: list[str], timeout: float):
    """Run loadgen ``cmd`` against the started server ``srv``: (its metrics before, after, server CPU
    seconds, loadgen CPU seconds) over the run."""
    before = srv.metrics()
    cpu0, ru0 = proc_cpu_s(srv.proc.pid), resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, timeout=timeout)
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_cpu = proc_cpu_s(srv.proc.pid) - cpu0
    loadgen_cpu = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
    return before, srv.metrics(), server_cpu, loadgen_cpu


def status_delta(srv, before, after) -> dict[str, int]:
    """Requests the server answered during a run, per HTTP status (non-zero ones)."""
    by = {lab["code"]: v - srv.metric("xrec_requests_total", before, code=lab["code"])
          for n, lab, v in after if n == "xrec_requests_total"}
    return {k: int(v) for k, v in by.items() if v}


def one_run(artifact: Path, config: str, args, reqs: Path, loadgen: Path, workdir: Path, tag: str) -> dict:
    from xrec.serve.process import ServerProcess
    opts = CONFIGS[config](args)
    srv = ServerProcess(artifact, host="127.0.0.1", port=0, workers=args.workers, threads=args.threads,
                        queue=args.queue, timeout_ms=args.timeout_ms, http_threads=max(128, 2 * args.concurrency),
                        **opts).start()
    try:
        name = json.loads((artifact / "manifest.json").read_text())["model"]
        out, lat = workdir / f"{tag}.json", workdir / f"{tag}.lat"
        cmd = [str(loadgen), "--host", "127.0.0.1", "--port", str(srv.port), "--model", name,
               "--requests", str(reqs), "--concurrency", str(args.concurrency), "--duration", str(args.duration),
               "--warmup", str(args.warmup), "--out", str(out), "--latencies", str(lat)]
        before, after, server_cpu, loadgen_cpu = drive(srv, cmd, args.duration + 300)
    finally:
        code = srv.stop()
    client = json.loads(out.read_text())
    d = lambda n, **lab: srv.metric(n, after, **lab) - srv.metric(n, before, **lab)  # noqa: E731
    server_by_status = status_delta(srv, before, after)
    batch_sizes = histogram_delta(before, after, "xrec_batch_size")
    n_batches = d("xrec_batch_size_count")
    run = {
        "config": config, "server_options": opts, "tag": tag,
        "client": client,
        "server": {
            "received": int(d("xrec_requests_received_total")),
            "answered": int(d("xrec_requests_total")),
            "by_status": server_by_status,
            "kernel_calls": int(n_batches),
            "mean_batch_requests": d("xrec_batch_size_sum") / n_batches if n_batches else 0.0,
            "mean_batch_rows": d("xrec_batch_rows_sum") / n_batches if n_batches else 0.0,
            "batch_size_hist": {k: int(v) for k, v in batch_sizes.items()},
            "mean_kernel_ms": 1e3 * d("xrec_batch_duration_seconds_sum") / n_batches if n_batches else 0.0,
            "cpu_s": server_cpu,
            "cpu_ms_per_request": 1e3 * server_cpu / max(1, client["answered"]),
            "exit_code": code,
        },
        "loadgen_cpu_s": loadgen_cpu,
        "latencies_s": np.fromfile(lat, dtype=np.float32) if lat.exists() else np.zeros(0, np.float32),
    }
    run["exactly_once"] = accounting(run)
    return run


def accounting(run: dict) -> dict:
    """Every request answered exactly once: the client's and the server's counts agree, nothing lost or doubled."""
    c, s = run["client"], run["server"]
    checks = {
        "client_sent == client_answered": c["sent"] == c["answered"],
        "no transport errors": c["transport_errors"] == 0,
        "every answer carries its own request id": c["id_mismatch"] == 0,
        "every 200 has its own rows' values": c["wrong_values"] == 0,
        "server received == client sent": s["received"] == c["sent"],
        "server answered == server received": s["answered"] == s["received"],
        "server by status == client by status": s["by_status"] == {k: int(v) for k, v in c["by_status"].items()},
        "server exited 0 (graceful)": s["exit_code"] == 0,
    }
    return {"ok": all(checks.values()), "checks": checks}


def summarize(runs: list[dict], config: str) -> dict:
    rs = [r for r in runs if r["config"] == config]
    lat = np.concatenate([r["latencies_s"] for r in rs]) * 1e3 if rs else np.zeros(0)
    ok = sum(r["client"]["window_ok"] for r in rs)
    window = sum(r["client"]["duration_s"] - r["client"]["warmup_s"] for r in rs)
    hist: dict[str, int] = {}
    for r in rs:
        for k, v in r["server"]["batch_size_hist"].items():
            hist[k] = hist.get(k, 0) + v
    calls = sum(r["server"]["kernel_calls"] for r in rs)
    return {
        "config": config, "runs": len(rs),
        "throughput_rps": ok / window if window else 0.0,
        "per_run_rps": [round(r["client"]["throughput_rps"], 1) for r in rs],
        "latency_ms": {p: float(np.percentile(lat, q)) if lat.size else 0.0
                       for p, q in (("p50", 50), ("p90", 90), ("p99", 99))} | {"max": float(lat.max()) if lat.size else 0.0},
        "requests": sum(r["client"]["sent"] for r in rs),
        "answered": sum(r["client"]["answered"] for r in rs),
        "by_status": {k: sum(int(r["client"]["by_status"].get(k, 0)) for r in rs)
                      for k in sorted({k for r in rs for k in r["client"]["by_status"]})},
        "kernel_calls": calls,
        "mean_batch_requests": sum(r["server"]["mean_batch_requests"] * r["server"]["kernel_calls"] for r in rs) / calls
        if calls else 0.0,
        "batch_size_hist": hist,
        "mean_kernel_ms": sum(r["server"]["mean_kernel_ms"] * r["server"]["kernel_calls"] for r in rs) / calls
        if calls else 0.0,
        "server_cpu_ms_per_request": 1e3 * sum(r["server"]["cpu_s"] for r in rs) / max(1, sum(
            r["client"]["answered"] for r in rs)),
        "loadgen_cpu_s": sum(r["loadgen_cpu_s"] for r in rs),
        "server_cpu_s": sum(r["server"]["cpu_s"] for r in rs),
        "exactly_once": all(r["exactly_once"]["ok"] for r in rs),
    }


def markdown(meta: dict, summaries: list[dict]) -> str:
    lines = [f"# xrec-server load test, {meta['date']}", "",
             f"- model: {meta['model']} ({meta['artifact']}), {meta['rows']} row(s) per request, "
             f"{meta['distinct_requests']} distinct requests",
             f"- load: loadgen (C++), concurrency {meta['concurrency']}, {meta['rounds']} round(s) x "
             f"{meta['duration_s']} s per configuration, interleaved, warmup {meta['warmup_s']} s per run; "
             f"127.0.0.1 only",
             f"- server: {meta['workers']} worker(s), threads {meta['threads'] or 'cores/workers'}, "
             f"queue {meta['queue']}; batched = --max-batch {meta['max_batch']} --max-delay-us "
             f"{meta['max_delay_us']}, batch1 = --max-batch 1",
             f"- machine: {meta['machine']}, {meta['cpus']} CPUs, load average at start {meta['loadavg_start']}, "
             f"at end {meta['loadavg_end']} (shared with other engineers' jobs: numbers are noisy)", "",
             "| config | req/s | p50 ms | p90 ms | p99 ms | requests | by status | kernel calls | "
             "mean requests/call | mean kernel ms | server CPU ms/request | exactly once |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in summaries:
        lines.append(f"| {s['config']} | {s['throughput_rps']:.0f} ({', '.join(map(str, s['per_run_rps']))}) | "
                     f"{s['latency_ms']['p50']:.2f} | {s['latency_ms']['p90']:.2f} | {s['latency_ms']['p99']:.2f} | "
                     f"{s['requests']} | {s['by_status']} | {s['kernel_calls']} | {s['mean_batch_requests']:.2f} | "
                     f"{s['mean_kernel_ms']:.3f} | {s['server_cpu_ms_per_request']:.3f} | "
                     f"{'yes' if s['exactly_once'] else 'NO'} |")
    names = [s["config"] for s in summaries]
    if "batched" in names and "batch1" in names:
        b, one = summaries[names.index("batched")], summaries[names.index("batch1")]
        if one["throughput_rps"]:
            lines += ["", f"Dynamic batching over batch-1 serving at concurrency {meta['concurrency']}: "
                      f"**{b['throughput_rps'] / one['throughput_rps']:.2f}x** throughput, p99 "
                      f"{b['latency_ms']['p99']:.2f} ms vs {one['latency_ms']['p99']:.2f} ms."]
    for s in summaries:
        lines += ["", f"Batch sizes (requests per kernel call), {s['config']}: "
                  + ", ".join(f"<= {k}: {v}" for k, v in s["batch_size_hist"].items())]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--artifact", type=Path, default=None, help="a cpu artifact (default: compile --model)")
    p.add_argument("--model", default="dlrm-small")
    p.add_argument("--max-rows", type=int, default=1000)
    p.add_argument("--rows", type=int, default=1, help="rows per request")
    p.add_argument("--distinct", type=int, default=64, help="distinct requests cycled through")
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--duration", type=float, default=30.0, help="seconds per run")
    p.add_argument("--warmup", type=float, default=1.0, help="seconds at the start of a run left out of latency")
    p.add_argument("--rounds", type=int, default=2, help="runs per configuration, interleaved")
    p.add_argument("--configs", default="batched,batch1")
    p.add_argument("--max-batch", type=int, default=64)
    p.add_argument("--max-delay-us", type=int, default=500)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--queue", type=int, default=1024)
    p.add_argument("--timeout-ms", type=int, default=30000)
    p.add_argument("--out", type=Path, default=HERE / "results")
    p.add_argument("--json", type=Path, default=None, help="also write the summary JSON here")
    args = p.parse_args(argv)
    configs = [c for c in args.configs.split(",") if c]
    for c in configs:
        if c not in CONFIGS:
            p.error(f"unknown config {c!r}; known: {', '.join(CONFIGS)}")

    from xrec.serve.build import server_binary
    artifact = args.artifact or compile_artifact(args.model, args.max_rows)
    server_binary()
    loadgen = loadgen_binary()
    load0 = " ".join(f"{x:.1f}" for x in os.getloadavg())
    runs = []
    with tempfile.TemporaryDirectory(prefix="xrec-serving-") as tmp:
        work = Path(tmp)
        reqs = work / "requests.jsonl"
        make_requests(artifact, args.rows, args.distinct, reqs)
        for r in range(args.rounds):
            for c in configs:
                t0 = time.time()
                run = one_run(artifact, c, args, reqs, loadgen, work, f"{c}-{r}")
                cl = run["client"]
                print(f"[{c} round {r}] {cl['throughput_rps']:.0f} req/s, p50 {cl['latency_ms']['p50']:.2f} ms, "
                      f"p99 {cl['latency_ms']['p99']:.2f} ms, mean {run['server']['mean_batch_requests']:.2f} "
                      f"requests/call, exactly once: {run['exactly_once']['ok']} ({time.time() - t0:.0f} s)",
                      flush=True)
                if not run["exactly_once"]["ok"]:
                    print("  " + json.dumps(run["exactly_once"]["checks"]) + " " + cl.get("first_problem", ""),
                          flush=True)
                runs.append(run)
    summaries = [summarize(runs, c) for c in configs]
    manifest = json.loads((artifact / "manifest.json").read_text())
    meta = {
        "date": dt.datetime.now().strftime("%Y-%m-%d %H:%M"), "model": manifest["model"], "artifact": str(artifact),
        "rows": args.rows, "distinct_requests": args.distinct, "concurrency": args.concurrency,
        "duration_s": args.duration, "warmup_s": args.warmup, "rounds": args.rounds, "workers": args.workers,
        "threads": args.threads, "queue": args.queue, "max_batch": args.max_batch, "max_delay_us": args.max_delay_us,
        "machine": f"{platform.node()} {platform.processor() or platform.machine()}", "cpus": os.cpu_count(),
        "loadavg_start": load0, "loadavg_end": " ".join(f"{x:.1f}" for x in os.getloadavg()),
    }
    result = {"meta": meta, "summary": summaries,
              "runs": [{k: v for k, v in r.items() if k != "latencies_s"} for r in runs]}
    md = markdown(meta, summaries)
    print(md)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        (args.out / f"serving-{stamp}.json").write_text(json.dumps(result, indent=1) + "\n")
        (args.out / f"serving-{stamp}.md").write_text(md)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0 if all(s["exactly_once"] for s in summaries) else 1


if __name__ == "__main__":
    sys.exit(main())
