"""``xrec calibrate [--target cpu]``: measure how far xrec's generated code runs from this machine's
roofline, and write the profile (``PerfParams`` as JSON) that ``xrec cost`` / ``xrec plan`` then use.

Nothing here is fitted on the models it will predict. Calibration compiles a few synthetic
single-stage programs with the target itself, times them at several batch sizes, and fits:

  fixed_overhead_s   one call of a 4->1 linear at batch 1 (runtime entry, input checks, outputs)
  input_overhead_s   (time of 8 one-id bags over 16-row tables (16 input tensors: ids, offsets) - time
                     of the 1-input linear) / 15, at batch 1: conversion and validation of sparse inputs
  call_overhead_s    (time of a 9-layer 4x4 chain - time of the 1-layer) / (extra calls), at batch 1
  request_overhead_s, request_input_overhead_s
                     xrec-server's CPU per 1-row request beyond the kernel call (HTTP, JSON, hand-offs),
                     from /proc while serving the 1-input and the 16-input probe: a + b x input tensors
                     (what xrec plan adds per query when it sizes a server)
  dense              an MLP 512-512-256 (ReLU; 1.5 MiB of weights) at batch 1..2048: efficiency e and
                     batch_half h of ``e * B / (B + h)``, by weighted least squares on 1/eff = 1/e + (h/e)/B;
                     the same for an MLP 2048-2048-2048-1024 (40 MiB, 16 MiB matrices): ``large_weights``;
                     a graph in between is interpolated in log bytes of its largest matrix, and
                     streams its weights at the large graph's rate once they exceed L2 x threads
                     (``PerfParams.for_weights``)
  weight stream      MLPs of layers too small to split over the threads (one core streams them all),
                     0.35 .. 2.2 x one core's L2 of weights, at batch 1: the per-core stream bandwidth
                     in L2 and beyond, and where it drops (``weight_stream``, used by the cpu target's
                     model, ``xrec.cost.targets.cpu``); the dense efficiency curves are fitted on their
                     compute-bound batches only (the memory-bound ones are this stream's)
  embedding          8 sum-pooled bags of 20 ids over tables bigger than the last-level cache, and
                     the same over cache-sized tables, fp32 and int8 rows: the same fit
  cache tier         stream bandwidth: the dense probe's weight bytes / its time at batch 1 less the
                     overheads (what the cache tier streams is dense weights and activations; a GEMV
                     reaches far less than a 1 MiB stream probe, which is recorded too); random-row
                     gather bandwidth over a 32 MiB table (what it gathers is embedding rows of tables
                     that fit the LLC); the catalogue has no cache bandwidth for the host

Efficiencies are per stage (xrec.cost.work.STAGES); "interaction" and "other" use the dense fit
(``default_efficiency``). The profile records every raw sample under "measured", so a reader can
redo the fit. Accuracy of the result on the zoo models: bench/results (the cost-accuracy page).
"""
from __future__ import annotations

import json
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np

BATCHES = (1, 8, 64, 256, 1024, 2048)
QUICK_BATCHES = (1, 64, 512)


# ---- the synthetic programs ----
def _mlp(dims, seed=0):
    import torch
    from torch import nn
    torch.manual_seed(seed)
    layers = []
    for a, b in zip(dims[:-1], dims[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers[:-1]).eval()


class _Bags:
    """``n`` sum-pooled EmbeddingBags of ``rows`` x ``dim`` fp32, ``pooling`` ids per bag."""

    def __init__(self, n: int, rows: int, dim: int, pooling: int):
        self.n, self.rows, self.dim, self.pooling = n, rows, dim, pooling

    def module(self):
        import torch
        from torch import nn

        class Bags(nn.Module):
            def __init__(s):
                super().__init__()
                s.bags = nn.ModuleList(nn.EmbeddingBag(self.rows, self.dim, mode="sum") for _ in range(self.n))
                with torch.no_grad():
                    for b in s.bags:
                        b.weight.uniform_(-0.05, 0.05)

            def forward(s, *args):
                outs = [b(args[2 * i], args[2 * i + 1]) for i, b in enumerate(s.bags)]
                return torch.cat(outs, dim=1)
        return Bags().eval()

    def inputs(self, batch: int, seed: int = 0):
        import torch
        g = torch.Generator().manual_seed(seed)
        out = []
        for _ in range(self.n):
            out.append(torch.randint(0, self.rows, (batch * self.pooling,), generator=g))
            out.append(torch.arange(0, batch * self.pooling, self.pooling))
        return out


def _time(fn, reps: int) -> float:
    """Median seconds of ``fn()`` over warm calls (bench.timing.measure, warm mode)."""
    from xrec.bench.timing import measure
    samples = measure({"x": fn}, reps=reps, warmup=2, mode="warm", burst=4)["x"]
    return statistics.median(samples)


def _say(msg: str, quiet: bool) -> None:
    if not quiet:
        print(f"[calibrate] {msg}", file=sys.stderr, flush=True)


# ---- fitting ----
def fit_efficiency(points) -> tuple[float, float]:
    """``points``: (batch, observed efficiency) -> (e, batch_half) of ``e * B / (B + batch_half)``.

    Weighted least squares on ``1/eff = a + c/B`` (weights eff^2: relative errors count alike),
    ``e = 1/a`` capped at 1 (then ``c`` refitted with ``a = 1``), ``batch_half = c/a >= 0``.
    """
    pts = [(float(b), float(e)) for b, e in points if e > 0 and math.isfinite(e)]
    if not pts:
        raise ValueError("no usable efficiency samples to fit")
    x = np.array([1.0 / b for b, _ in pts])
    y = np.array([1.0 / e for _, e in pts])
    w = np.array([e * e for _, e in pts])
    if len(pts) == 1 or np.ptp(x) == 0:
        a, c = float(np.average(y, weights=w)), 0.0
    else:
        A = np.stack([np.ones_like(x), x], axis=1) * np.sqrt(w)[:, None]
        a, c = np.linalg.lstsq(A, y * np.sqrt(w), rcond=None)[0]
    if c < 0:                                   # efficiency falling with batch: fit a constant
        a, c = float(np.average(y, weights=w)), 0.0
    if a < 1.0:
        a = 1.0
        c = max(0.0, float(np.sum(w * x * (y - a)) / max(np.sum(w * x * x), 1e-30)))
    return 1.0 / a, c / a


# ---- calibration ----
def calibrate_cpu(*, quick: bool = False, threads: int | None = None, quiet: bool = False, reps: int = 0,
                  serving: bool = True):
    """Measure and fit; returns (PerfParams, device). ``quick``: smaller programs and fewer batches."""
    import torch
    import xrec
    from xrec.bench.machine import usable_cpus
    from xrec.bench.roofline import random_gather_gbps, stream_read_gbps
    from .catalogue import load_device
    from .graph import graph_work
    from .model import PerfParams, predict_work
    from .perf import device_key

    import os
    from xrec.config import knobs
    threads = threads or (knobs.threads if knobs.threads > 0 else usable_cpus())
    os.environ["XREC_THREADS"] = str(threads)       # the compiled probes run at this many threads
    reps = reps or (3 if quick else 8)
    batches = QUICK_BATCHES if quick else BATCHES
    t_start = time.perf_counter()
    _say(f"probing this machine's ceilings ({threads} threads)", quiet)
    device = load_device("host", probe_quick=quick, threads=threads)
    cache_mib = 1
    # best of many passes: a pass over a cache-sized buffer is ~0.1 ms, so one descheduled thread spoils it
    cache_bw = stream_read_gbps(threads, mib=cache_mib, reps=100) * 1e9
    cache_gather = random_gather_gbps(threads, table_mib=16 if quick else 32, batch=2048, reps=30) * 1e9
    measured: dict = {"threads": threads, "device": device.description,
                      "cache_stream_Bps": cache_bw, "cache_gather_Bps": cache_gather}
    base = PerfParams(device=device.name, target="cpu", per_node=True, bandwidth_Bps={"cache": cache_bw},
                      gather_bandwidth_Bps={"cache": cache_gather})

    def compile_(model, example, what, **kw):
        t0 = time.perf_counter()
        _say(f"compiling {what}", quiet)
        cm = xrec.compile(model, example, target="cpu", **kw)
        _say(f"compiled {what} in {time.perf_counter() - t0:.1f} s", quiet)
        return cm

    def graph_of(cm):
        return cm.graph

    # overheads, at batch 1
    x1, x2 = torch.randn(1, 4), torch.randn(2, 4)    # traced at batch 2: batch 1 would specialise
    one = compile_(_mlp([4, 1]), (x2,), "the overhead probe (4->1 linear)")
    chain = compile_(_mlp([4] * 10), (x2,), "the call probe (9 x 4->4 linear)")
    tiny = _Bags(8, 16, 1, 1)
    wide = compile_(tiny.module(), tuple(tiny.inputs(2)), "the input probe (8 features, 16 input tensors)",
                    calibration=lambda batch, seed: tiny.inputs(batch, seed))
    xs = tuple(tiny.inputs(1))
    t_one = _time(lambda: one(x1), reps * 4)
    t_chain = _time(lambda: chain(x1), reps * 4)
    t_wide = _time(lambda: wide(*xs), reps * 4)
    per_input = max(0.0, (t_wide - t_one) / 15)
    calls_one = graph_work(graph_of(one), 1).total.calls
    calls_chain = graph_work(graph_of(chain), 1).total.calls
    call_over = max(0.0, (t_chain - t_one) / max(1, calls_chain - calls_one))
    fixed = max(0.0, t_one - calls_one * call_over - per_input)
    measured["overhead"] = {"t_one_s": t_one, "t_chain_s": t_chain, "t_16_inputs_s": t_wide, "calls_one": calls_one,
                            "calls_chain": calls_chain}
    _say(f"fixed overhead {fixed * 1e6:.1f} us per inference, {per_input * 1e9:.0f} ns per input tensor, "
         f"{call_over * 1e9:.0f} ns per call", quiet)
    base = PerfParams(**{**base.as_dict(), "call_overhead_s": call_over, "fixed_overhead_s": fixed,
                         "input_overhead_s": per_input})
    serve = {"request_overhead_s": 0.0, "request_input_overhead_s": 0.0}
    if serving:
        from xrec.serve.build import ServeBuildError
        try:
            serve = calibrate_serving([("the overhead probe", one, 1, t_one), ("the input probe", wide, 16, t_wide)],
                                      quiet=quiet, requests=1000 if quick else 4000)
            measured["serving"] = serve["samples"]
        except ServeBuildError as e:
            measured["serving"] = f"not measured: {e}"
            _say(f"serving overhead not measured (xrec-server does not build here: {e})", quiet)
    del one, chain, wide

    def timings(cm, make_inputs, what):
        out = {}
        for b in batches:
            args = make_inputs(b)
            out[b] = _time(lambda: cm(*args), reps)
            _say(f"{what} batch {b}: {out[b] * 1e3:.3f} ms", quiet)
        return out

    def efficiency_points(g, times, stage, what, params=None, compute_only=False):
        """(batch, efficiency) samples; ``compute_only``: only the batches where the stage is
        compute-bound (when two or more are): the memory-bound small batches are the weight stream's
        business (``weight_stream``), and would pull a GEMM's efficiency curve towards them."""
        pts, raw = [], []
        for b, t in times.items():
            p = predict_work(graph_work(g, b, cache_bytes=device.cache_bytes), device, "cpu", params or base)
            st = p.stage(stage)
            roof = st.time_s - st.overhead_s                 # at efficiency 1
            rest = p.total_s - st.time_s + st.overhead_s     # everything but this stage's roofline term
            eff = roof / (t - rest) if t > rest and roof > 0 else float("nan")
            pts.append((b, min(eff, 1.0), st.bound))
            raw.append({"batch": b, "measured_s": t, "roofline_s": roof, "rest_s": rest, "efficiency": eff,
                        "bound": st.bound})
            _say(f"{what} batch {b}: roofline {roof * 1e3:.3f} ms ({st.bound}), efficiency {eff:.2f}", quiet)
        if compute_only and sum(1 for *_, bound in pts if bound == "compute") >= 2:
            pts = [pt for pt in pts if pt[2] == "compute"]
        return [(b, e) for b, e, _ in pts], raw

    # dense, twice: an MLP whose weights fit the cores' L2 and one whose weights do not (GEMMs tile
    # differently, a batch-1 GEMV streams from the LLC or DRAM). At batch 1 an MLP streams its weights:
    # what the generated code reaches there is the cache tier's stream bandwidth for that kind of graph
    # (a 1 MiB stream probe is far faster than a GEMV achieves; it is kept in the raw samples).
    measured["cache_stream_Bps_probe_1MiB"] = measured.pop("cache_stream_Bps")

    def dense_probe(dims, label):
        mlp = compile_(_mlp(dims), (torch.randn(8, dims[0]),), f"the {label} (MLP {'-'.join(map(str, dims))})")
        times = timings(mlp, lambda b: (torch.randn(b, dims[0]),), label)
        gw1 = graph_work(mlp.graph, 1, cache_bytes=device.cache_bytes)
        p1 = predict_work(gw1, device, "cpu", base)
        streamed = gw1.stage("dense").bytes.get("cache", 0.0)
        rest1 = p1.total_s - p1.stage("dense").time_s + p1.stage("dense").overhead_s
        bw = streamed / (times[1] - rest1) if streamed and times[1] > rest1 else cache_bw
        _say(f"{label}: weights ({gw1.dense_param_bytes / 2**20:.1f} MiB) streamed at batch 1 at {bw / 1e9:.1f} GB/s",
             quiet)
        with_bw = PerfParams(**{**base.as_dict(), "bandwidth_Bps": {"cache": bw}})
        pts, raw = efficiency_points(mlp.graph, times, "dense", label, with_bw, compute_only=True)
        e, h = fit_efficiency(pts)
        return bw, e, h, {"dims": dims, "weight_bytes": gw1.dense_param_bytes,
                          "largest_weight_bytes": gw1.largest_param_bytes, "stream_Bps": bw, "samples": raw}

    from xrec.bench.machine import machine_info
    from .catalogue import _size_bytes
    l2 = _size_bytes(machine_info().get("caches", {}).get("L2", "")) or (1 << 20)
    small = [128, 128, 64] if quick else [512, 512, 256]                # 1.5 MiB of weights
    large = [512, 1024, 512] if quick else [2048, 2048, 2048, 1024]     # 40 MiB
    cache_bw, e_d, h_d, measured["dense"] = dense_probe(small, "dense probe (weights in L2)")
    big_bw, e_b, h_b, measured["dense_large_weights"] = dense_probe(large, "dense probe (weights over L2)")
    measured["cache_stream_Bps"] = cache_bw
    base = PerfParams(**{**base.as_dict(), "bandwidth_Bps": {"cache": cache_bw}})
    stream, measured["weight_stream"] = weight_stream_probe(
        compile_, l2=l2, threads=threads, overhead_s=fixed + per_input, call_s=call_over, all_slow_Bps=big_bw,
        quick=quick, reps=reps, quiet=quiet)

    # embedding: over the last-level cache (main) and within it (cache), fp32 and int8 rows
    llc = device.cache_bytes or (32 << 20)
    big_rows = max(1 << 16, int(2 * llc / (8 * 64 * 4))) if not quick else 1 << 15
    epts, eraw = [], []
    for label, rows, quant in (("embedding (tables over the LLC)", big_rows, None),
                               ("embedding (cache-sized tables)", 1 << 14, None),
                               ("embedding (int8 rows)", big_rows, "int8")):
        bags = _Bags(8, rows, 64, 20)
        mod = bags.module()
        cm = compile_(mod, tuple(bags.inputs(4)), f"the {label} probe, 8 x {rows} x 64", quantize=quant,
                      calibration=lambda batch, seed: bags.inputs(batch, seed), calib_samples=256)
        del mod
        pts, raw = efficiency_points(cm.graph, timings(cm, lambda b: bags.inputs(b, seed=b), label), "embedding",
                                     label)
        epts += pts
        eraw.append({"probe": label, "rows": rows, "quantize": quant, "samples": raw})
        del cm
    e_e, h_e = fit_efficiency(epts)
    measured["embedding"] = eraw

    src = (f"xrec calibrate --target cpu on {device.description}, {time.strftime('%Y-%m-%d %H:%M')}"
           f"{' (quick)' if quick else ''}")
    params = PerfParams(efficiency={"dense": e_d, "embedding": e_e}, default_efficiency=e_d,
                        batch_half={"dense": h_d, "embedding": h_e, "default": h_d},
                        bandwidth_Bps={"cache": cache_bw}, gather_bandwidth_Bps={"cache": cache_gather},
                        call_overhead_s=call_over, fixed_overhead_s=fixed, input_overhead_s=per_input,
                        request_overhead_s=serve["request_overhead_s"],
                        request_input_overhead_s=serve["request_input_overhead_s"],
                        per_node=True,
                        weight_points={"largest": (measured["dense"]["largest_weight_bytes"],
                                                   measured["dense_large_weights"]["largest_weight_bytes"]),
                                       "total": (measured["dense"]["weight_bytes"],
                                                 measured["dense_large_weights"]["weight_bytes"])},
                        weight_cache_bytes=l2,     # one core's: a batch-1 GEMV is not split over threads
                        weight_stream=stream,
                        large_weights={"efficiency": {"dense": e_b, "interaction": e_b, "other": e_b},
                                       "batch_half": {"dense": h_b, "interaction": h_b, "other": h_b},
                                       "bandwidth_Bps": {"cache": big_bw}},
                        device=device.name, target="cpu", source=src)
    measured["seconds"] = time.perf_counter() - t_start
    measured["device_key"] = device_key(device)
    return params, device, measured


# ---- the weight stream at batch 1 ----
SWEEP_FRACTIONS = (0.35, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.15, 1.4, 1.8, 2.2)
QUICK_SWEEP_FRACTIONS = (0.5, 1.0, 2.2)


def weight_stream_probe(compile_, *, l2: float, threads: int, overhead_s: float, call_s: float,
                        all_slow_Bps: float, quick: bool, reps: int, quiet: bool):
    """Time MLPs of layers too small to split over the threads (so one core streams them all), whose
    weights total 0.35 .. 2.2 x one core's L2, at batch 1: where does the stream drop out of L2, and at
    which bandwidths. Returns (``PerfParams.weight_stream``, the raw samples)."""
    import torch
    from xrec.targets.cpu.codegen import SPLIT_COLUMNS_BYTES
    fracs = QUICK_SWEEP_FRACTIONS if quick else SWEEP_FRACTIONS
    n = max(4, math.ceil(max(fracs) * l2 / (0.9 * SPLIT_COLUMNS_BYTES)))     # layers per MLP
    raw, pts = [], []
    for f in fracs:
        w = int(math.sqrt(f * l2 / (4 * n)))
        cm = compile_(_mlp([w] * (n + 1)), (torch.randn(8, w),), f"the weight-stream probe ({n} x {w}x{w}, "
                      f"{f:.2f} x L2)")
        x = torch.randn(1, w)
        t = _time(lambda: cm(x), reps * 5)
        nbytes = 4.0 * n * w * w
        net = t - overhead_s - n * call_s
        bw = nbytes / net if net > 0 else float("nan")
        pts.append((nbytes, bw))
        raw.append({"fraction_of_l2": f, "layers": n, "width": w, "weight_bytes": nbytes, "measured_s": t,
                    "stream_Bps": bw})
        _say(f"weight stream, {nbytes / 2**20:.2f} MiB on one core: {t * 1e6:.1f} us, {bw / 1e9:.1f} GB/s", quiet)
        del cm
    pts = [[b, v] for b, v in pts if math.isfinite(v) and v > 0]
    if len(pts) < 2:
        from .rules import CostError
        raise CostError("the weight-stream sweep gave fewer than two usable timings (is the machine busy?)")
    return {"threads": threads, "all_slow_Bps": all_slow_Bps, "points": pts}, {"l2_bytes": l2, "samples": raw}


# ---- serving ----
def server_cpu_per_request(cm, requests: int = 1500, warmup: int = 100) -> float:
    """Server CPU seconds per 1-row request of ``cm``'s artifact served by xrec-server (1 worker, 1 thread,
    no batching), sent one after another over one keep-alive connection: /proc of the server process."""
    import http.client
    from xrec.serve.cli import example_request
    from xrec.serve.process import ServerProcess, proc_cpu_s
    path = cm.artifact.path
    body = json.dumps(example_request(path, 1)).encode()
    srv = ServerProcess(path, host="127.0.0.1", port=0, workers=1, threads=1, max_batch=1, max_delay_us=0).start()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
        url = f"/v2/models/{cm.graph.name}/infer"

        def send(n):
            for _ in range(n):
                conn.request("POST", url, body, {"Content-Type": "application/json"})
                r = conn.getresponse()
                r.read()
                if r.status != 200:
                    raise RuntimeError(f"xrec-server answered {r.status} to the calibration request")
        send(warmup)
        c0 = proc_cpu_s(srv.proc.pid)
        send(requests)
        return (proc_cpu_s(srv.proc.pid) - c0) / requests
    finally:
        srv.stop()


def calibrate_serving(probes, *, quiet: bool = False, requests: int = 1500) -> dict:
    """``probes``: (label, CompiledModel, input tensors, in-process seconds per call at batch 1). Fits the
    server's CPU per request outside the kernel call: ``a + b x input tensors`` (HTTP, JSON, hand-offs)."""
    pts = []
    for label, cm, n, kernel_s in probes:
        cpu = server_cpu_per_request(cm, requests)
        pts.append({"probe": label, "inputs": n, "server_cpu_s": cpu, "kernel_s": kernel_s,
                    "overhead_s": max(0.0, cpu - kernel_s)})
        _say(f"served {label}: {cpu * 1e6:.1f} us of server CPU per request ({n} input tensors)", quiet)
    (n0, o0), (n1, o1) = [(p["inputs"], p["overhead_s"]) for p in pts[:2]]
    b = max(0.0, (o1 - o0) / (n1 - n0)) if n1 != n0 else 0.0
    a = max(0.0, o0 - b * n0)
    return {"request_overhead_s": a, "request_input_overhead_s": b, "samples": pts}


def add_arguments(sp) -> None:
    sp.add_argument("--target", "-t", default="cpu", choices=("cpu", "xla", "triton"),
                    help="cpu: synthetic probes compiled with the target (default); xla: the xla runner on "
                         "--model at two batches, checked on two more; triton: the GPU suite's measurements "
                         "(targets/triton/calibration/) for --hardware")
    sp.add_argument("--quick", action="store_true",
                    help="small probes and 3 batches (under a minute; checks the machinery, not a profile to trust)")
    sp.add_argument("--threads", type=int, default=None, help="threads to calibrate for (default: all usable)")
    sp.add_argument("--model", default="dlrm-small", help="xla: the model whose executable is measured")
    sp.add_argument("--max-rows", type=int, default=100_000, help="xla: cap the model's tables at this many rows")
    sp.add_argument("--hardware", default="h200", help="triton: the catalogued GPU the suite ran on")
    sp.add_argument("-o", "--output", default=None,
                    help="write the profile here (default: the profile store, where xrec cost/plan find it)")
    sp.add_argument("--json", action="store_true", help="print the profile as one JSON object")


def _other_target(args) -> int:
    """xla / triton: their own calibrations (xrec.cost.targets), stored where predict_target finds them."""
    from types import SimpleNamespace
    from .catalogue import CatalogueError, load_device
    from .perf import profile_path
    from .rules import CostError
    try:
        if args.target == "xla":
            from .cli import optimized_graph
            from .targets import xla
            device = load_device("host", threads=args.threads)
            g, _ = optimized_graph(SimpleNamespace(model=args.model, max_rows=args.max_rows, target="xla",
                                                   option=None, quantize=None, calib_samples=256))
            res = xla.calibrate(device, g, write=args.output is None)
        else:
            from .targets import triton
            device = load_device(args.hardware)
            res = triton.calibrate(device, write=args.output is None)
    except (CatalogueError, CostError) as e:
        print(f"xrec calibrate: {e}", file=sys.stderr)
        return 2
    params = res["params"]
    out = Path(args.output) if args.output else profile_path(device, args.target)
    if args.output:
        out.write_text(json.dumps({**params.as_dict(), "measured": {"checks": res.get("checks", [])}}, indent=1))
    if args.json:
        print(json.dumps({**params.as_dict(), "checks": res.get("checks", [])}))
        return 0
    print(f"{args.target} on {device.description}: efficiency {params.default_efficiency:.3f}, "
          f"fixed overhead {params.fixed_overhead_s * 1e6:.1f} us; {params.source}")
    for c in res.get("checks", []):
        print(f"  batch {c['batch']:5d}: predicted {c['predicted_s'] * 1e3:9.3f} ms, measured "
              f"{c['measured_s'] * 1e3:9.3f} ms, error {100 * c['error']:+6.1f} %"
              f"{'  (held out)' if c.get('held_out') else '  (fitted)'}")
    print(f"wrote {out}")
    return 0


def run(args) -> int:
    from .perf import profile_path
    from .rules import CostError
    if args.threads is not None and args.threads < 1:
        print(f"xrec calibrate: --threads must be >= 1, got {args.threads}", file=sys.stderr)
        return 2
    if args.target != "cpu":
        return _other_target(args)
    try:
        params, device, measured = calibrate_cpu(quick=args.quick, threads=args.threads)
    except CostError as e:
        print(f"xrec calibrate: {e}", file=sys.stderr)
        return 2
    out = Path(args.output) if args.output else profile_path(device, "cpu")
    doc = {**params.as_dict(), "measured": measured}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1))
    if args.json:
        print(json.dumps(doc))
    else:
        e, h = params.efficiency, params.batch_half
        print(f"cpu on {device.description}:")
        print(f"  fixed overhead   {params.fixed_overhead_s * 1e6:8.1f} us per inference")
        print(f"  input overhead   {params.input_overhead_s * 1e9:8.0f} ns per input tensor")
        print(f"  call overhead    {params.call_overhead_s * 1e9:8.0f} ns per call")
        print(f"  serving          {params.request_overhead_s * 1e6:8.1f} us of server CPU per request + "
              f"{params.request_input_overhead_s * 1e9:.0f} ns per input tensor")
        for s in ("dense", "embedding"):
            print(f"  {s:16s} efficiency {e[s]:.2f} at large batch, half of it at batch {h[s]:.0f}")
        lw = params.large_weights
        print(f"  dense, {params.weight_points['total'][1] / 2**20:.0f} MiB of weights: efficiency "
              f"{lw['efficiency']['dense']:.2f}, half of it at batch {lw['batch_half']['dense']:.0f}, "
              f"batch-1 weight stream {lw['bandwidth_Bps']['cache'] / 1e9:.1f} GB/s")
        ws = params.weight_stream
        print("  weight stream    one core, batch 1: " + ", ".join(f"{b / 2**20:.1f} MiB {v / 1e9:.0f} GB/s"
                                                           for b, v in ws["points"][::2])
              + f"; all cores beyond L2 {ws['all_slow_Bps'] / 1e9:.1f} GB/s")
        print(f"  cache tier       stream {params.bandwidth_Bps['cache'] / 1e9:.1f} GB/s, "
              f"gather {params.gather_bandwidth_Bps['cache'] / 1e9:.1f} GB/s")
        print(f"wrote {out} ({measured['seconds']:.0f} s); xrec cost and xrec plan use it on this machine")
    return 0
