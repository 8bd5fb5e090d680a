"""The triton target's checks and benchmarks on a real GPU, in one run that fits a short device lease.

    python tests/targets/triton/gpu_suite.py --out DIR [--budget-s 480] [--server BIN] [--steps ...]

Steps (each isolated and timed; a failing step does not stop the others; DIR/gpu_suite.json is
rewritten after every step, so a run cut short still brings back what it measured):

  probe      the device, clocks, and the copy bandwidth (device-to-device copy of 2 GiB, bytes
             read + written over time): the ceiling the embedding kernel is held against
  tests      the GPU-marked tests of tests/targets/triton (the C library on the real driver
             running the AOT cubins, with device and host memory; the Python runtime on CUDA
             tensors; CUDA graph replay)
  check      every zoo model (tables capped at 100k rows) at batch 1, 64, 2048 against PyTorch
             eager, through the Python runtime (CUDA graphs on; dlrm-small also with them off)
  server     xrec-server (built on the CPU machine, --server) serving a triton artifact through
             its C library: one KServe v2 request, answer compared with PyTorch
  embedding  the table-batched embedding kernel alone on dlrm-small's 26 full-size tables
             (1M-row tables, 0.98 GiB fp32), fp32/fp16/int8/int4 rows, batch 64..8192:
             bytes moved / time vs the copy bandwidth, next to F.embedding_bag per table
  bench      dlrm-small and dlrm-v2 (full size) at batch 64/512/2048/8192: xrec (CUDA graphs;
             ieee and tf32x3 dots; and without graphs) against eager, torch.compile default and
             max-autotune, samples interleaved round by round, CUDA-event timed

Without a CUDA device it says so and exits 2: nothing here is simulated.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
STEPS = ("probe", "tests", "check", "server", "embedding", "bench")
T0 = time.perf_counter()
SMOKE = False          # --cpu-smoke: the same code on tiny models in Triton's interpreter (no numbers)
DEV = "cuda"
MODE = "gpu"


def rows(n: int | None) -> int | None:
    return 300 if SMOKE else n


def left(budget: float) -> float:
    return budget - (time.perf_counter() - T0)


def log(msg: str) -> None:
    print(f"[gpu_suite {time.perf_counter() - T0:6.1f}s] {msg}", flush=True)


# ------------------------------------------------------------------------------------------- timing
def cuda_time(fn, reps: int, warmup: int = 2) -> list[float]:
    """Seconds per call of ``fn`` over ``reps`` calls each timed by CUDA events (after warm-up)."""
    import torch
    if SMOKE:
        fn()
        t = time.perf_counter()
        fn()
        return [time.perf_counter() - t] * max(1, min(reps, 2))
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    out = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        out.append(a.elapsed_time(b) * 1e-3)
    return out


def graph_time(fn, k: int = 20, reps: int = 10) -> float:
    """GPU seconds per call of ``fn``: ``k`` calls captured in one CUDA graph, replayed ``reps`` times
    (the host's launch cost left out: what the kernels themselves take)."""
    import torch
    if SMOKE:
        return statistics.median(cuda_time(fn, reps=1))
    fn()
    torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for _ in range(k):
            fn()
    g.replay()
    torch.cuda.synchronize()
    return statistics.median(cuda_time(g.replay, reps=reps, warmup=1)) / k


SWEEP = [(1, 8, 1), (1, 16, 2), (2, 8, 2), (4, 8, 2), (4, 8, 4), (8, 8, 4), (8, 4, 4), (16, 4, 4), (16, 8, 8),
         (32, 4, 8), (4, 16, 4), (2, 16, 4), (8, 16, 8), (16, 2, 4)]     # (BLOCK_B, L, num_warps)


def sweep_embedding(model, step, env, binds, moved: int, copy) -> list[dict]:
    """The embedding kernel under other tile configs (same inputs; output checked against the default)."""
    import torch

    from xrec.targets.triton.program import ev
    args = [model._tensor(env, binds, a.view) if a.kind == "ptr" else int(ev(a.expr, binds)) for a in step.args]
    out_i = next(i for i, a in enumerate(step.args) if a.name == "OUT")
    base_cx = dict(step.variants[0].constexprs)
    B = int(ev(step.batch, binds))
    nf = step.variants[0].grid[0][0]
    nf = int(ev(nf, binds))
    model._launch(step, env, binds)
    want = args[out_i].clone()
    rows = []
    for bb, L, w in SWEEP:
        cx = {**base_cx, "BLOCK_B": bb, "L": L}
        grid = (nf, -(-B // bb), 1)
        fn = lambda: model.fns[step.kernel][grid](*args, **cx, num_warps=w, num_stages=1)  # noqa: E731
        try:
            args[out_i].zero_()
            fn()
            if not SMOKE:
                torch.cuda.synchronize()
            diff = float((args[out_i] - want).abs().max())
            t = graph_time(fn)
            rows.append({"BLOCK_B": bb, "L": L, "num_warps": w, "us": t * 1e6, "GBps": moved / t / 1e9,
                         "frac_copy": moved / t / 1e9 / copy if copy else None, "max_diff_vs_default": diff})
        except Exception as e:
            rows.append({"BLOCK_B": bb, "L": L, "num_warps": w, "error": f"{type(e).__name__}: {e}"[:300]})
    return rows


def summary(ts: list[float]) -> dict:
    ts = sorted(ts)
    q = lambda f: ts[min(len(ts) - 1, int(f * len(ts)))]  # noqa: E731
    return {"median_ms": statistics.median(ts) * 1e3, "p10_ms": q(0.1) * 1e3, "p90_ms": q(0.9) * 1e3, "n": len(ts)}


# ------------------------------------------------------------------------------------------- steps
def step_probe(res: dict) -> dict:
    import torch
    out = {"device": torch.cuda.get_device_name(0), "capability": list(torch.cuda.get_device_capability(0)),
           "sms": torch.cuda.get_device_properties(0).multi_processor_count,
           "memory_gib": round(torch.cuda.get_device_properties(0).total_memory / 2 ** 30, 1),
           "torch": torch.__version__}
    import triton
    out["triton"] = triton.__version__
    try:
        out["nvidia_smi"] = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,clocks.sm,clocks.mem,"
                                            "power.draw,power.limit", "--format=csv"], capture_output=True,
                                           text=True, timeout=20).stdout.strip()
    except Exception as e:
        out["nvidia_smi"] = f"unavailable: {e}"
    n = 2 ** 31
    a = torch.empty(n, dtype=torch.uint8, device="cuda")
    b = torch.empty_like(a)
    ts = cuda_time(lambda: b.copy_(a), reps=20, warmup=3)
    out["copy_bytes"] = 2 * n
    out["copy_GBps"] = 2 * n / statistics.median(ts) / 1e9
    out["copy_GBps_best"] = 2 * n / min(ts) / 1e9
    del a, b
    torch.cuda.empty_cache()
    return out


def step_tests(res: dict, budget: float) -> dict:
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider", "tests/targets/triton"]
    t0 = time.perf_counter()
    try:
        r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=max(30.0, budget))
        rc, text = r.returncode, r.stdout + r.stderr
    except subprocess.TimeoutExpired as e:
        rc, text = "timeout", f"{e.stdout or ''}{e.stderr or ''}"
    return {"cmd": " ".join(cmd), "rc": rc, "wall_s": round(time.perf_counter() - t0, 1), "tail": str(text)[-6000:]}


def step_check(res: dict, deadline: float) -> dict:
    import torch

    import xrec
    from xrec import zoo
    from xrec.check import check
    out = {}
    for name in zoo.list_models():
        if left(deadline) < 20:
            out[name] = {"skipped": "out of time"}
            continue
        t0 = time.perf_counter()
        try:
            m = zoo.build(name, max_rows=rows(100_000))
            runs = [("graphs", True)] + ([("no_graphs", False)] if name == "dlrm-small" else [])
            row = {}
            for label, graphs in runs:
                cm = xrec.compile(m, zoo.example_inputs(m), target="triton",
                                  options={"aot": False, "mode": MODE, "cuda_graphs": graphs})
                tol = cm.manifest.get("tolerances", {"rtol": 1e-4, "atol": 1e-6})
                row[label] = check(cm, m, lambda b, s: zoo.make_inputs(m, b, seed=s),
                                   batches=(1, 3) if SMOKE else (1, 64, 2048),
                                   rtol=tol["rtol"], atol=tol["atol"])
            row["wall_s"] = round(time.perf_counter() - t0, 1)
            row["ok"] = all(v["ok"] for k, v in row.items() if isinstance(v, dict))
            out[name] = row
        except Exception as e:
            out[name] = {"ok": False, "error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()[-3000:]}
        log(f"check {name}: {out[name].get('ok')}")
        torch.cuda.empty_cache()
    return out


def step_server(res: dict, server: str | None) -> dict:
    import tempfile
    import urllib.request

    import numpy as np
    import torch

    import xrec
    from xrec import zoo
    from xrec.serve.cli import example_request
    if not server or not Path(server).is_file():
        return {"skipped": f"no server binary ({server}); build it on the CPU machine with `xrec serve --build-only`"}
    m = zoo.build("dlrm-small", max_rows=rows(100_000))
    art = Path(tempfile.mkdtemp()) / "dlrm-small.xrec"
    xrec.compile(m, zoo.example_inputs(m), target="triton", out=art)
    body = example_request(art, 4, seed=3)
    port = 18123
    env = dict(os.environ)
    libdir = Path(server).parent / "lib"
    if libdir.is_dir():
        env["LD_LIBRARY_PATH"] = f"{libdir}:{env.get('LD_LIBRARY_PATH', '')}"
    proc = subprocess.Popen([server, str(art), "--port", str(port)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)
    out: dict = {}
    try:
        url = f"http://127.0.0.1:{port}/v2/models/dlrm-small/infer"
        for _ in range(200):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready", timeout=1) as r:
                    if r.status == 200:
                        break
            except Exception:
                if proc.poll() is not None:
                    break
                time.sleep(0.1)
        req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
        t0 = time.perf_counter()
        with urllib.request.urlopen(req, timeout=30) as r:
            answer = json.loads(r.read())
        out["latency_ms"] = (time.perf_counter() - t0) * 1e3
        got = np.array(answer["outputs"][0]["data"], np.float32)
        # the same request through PyTorch
        ins = {i["name"]: np.array(i["data"]).reshape(i["shape"]) for i in body["inputs"]}
        np_dt = {"f32": np.float32, "i64": np.int64, "i32": np.int32}
        flat = [torch.from_numpy(np.ascontiguousarray(ins[s["name"]]).astype(np_dt.get(s["dtype"], s["dtype"])))
                for s in json.loads((art / "manifest.json").read_text())["signature"]["inputs"]]
        nf = (len(flat) - 1) // 2
        with torch.no_grad():
            want = m(flat[0], flat[1:1 + nf], flat[1 + nf:]).numpy().reshape(-1)
        out["max_abs_err"] = float(np.abs(got - want).max())
        out["ok"] = bool(np.allclose(got, want, rtol=1e-4, atol=1e-6))
        out["answer"] = answer
    except Exception as e:
        out["ok"] = False
        out["error"] = f"{type(e).__name__}: {e}"
    finally:
        proc.terminate()
        try:
            out["server_log"] = proc.communicate(timeout=10)[0][-3000:]
        except subprocess.TimeoutExpired:
            proc.kill()
    return out


def step_embedding(res: dict, deadline: float, batches=(64, 512, 2048, 8192)) -> dict:
    import torch
    import torch.nn.functional as F

    import xrec
    from xrec import zoo
    from xrec.targets.triton.program import Launch
    copy = (res.get("probe") or {}).get("copy_GBps")
    from xrec.ir import formats
    m = zoo.build("dlrm-small", max_rows=rows(None))
    batches = (4,) if SMOKE else batches
    tables = [bag.weight.detach() for bag in m.embeddings.bags]
    rows_out = []
    inputs = {b: zoo.make_inputs(m, b, seed=7) for b in batches}
    uniform = {}
    for b in batches:                      # the same bag sizes, ids uniform over each table (no hot rows)
        dense, idx, off = inputs[b]
        g = torch.Generator().manual_seed(b)
        uniform[b] = (dense, [torch.randint(0, t.shape[0], (len(i),), generator=g) for i, t in zip(idx, tables)], off)
    gpu_tables = {"fp32": [t.to(DEV) for t in tables], "fp16": [t.half().to(DEV) for t in tables]}
    for prec in ("fp32", "fp16", "int8", "int4"):
        if left(deadline) < 25:
            rows_out.append({"precision": prec, "skipped": "out of time"})
            continue
        cm = xrec.compile(m, zoo.example_inputs(m), target="triton", quantize=None if prec == "fp32" else prec,
                          calib_samples=256, options={"aot": False, "mode": MODE, "bounds_check": False})
        model = cm._run.model
        step = next(s for s in model.program.steps if isinstance(s, Launch) and s.kernel == "embedding_bag_group_kernel")
        rb = formats.by_name(prec).row_bytes(tables[0].shape[1])
        for b in batches:
            for ids_kind, (dense, idx, off) in (("zipf", inputs[b]), ("uniform", uniform[b])):
                flat = [dense.to(DEV)] + [i.to(DEV) for i in idx] + [o.to(DEV) for o in off]
                env, binds = model._inputs(flat)
                model._ptrtables(env, binds)
                nnz = sum(len(i) for i in idx)
                moved = nnz * rb + nnz * 8 + sum(o.numel() * 8 for o in off) + b * 64 * len(tables) * 4
                t_call = statistics.median(cuda_time(lambda: model._launch(step, env, binds), reps=20))
                t_x = graph_time(lambda: model._launch(step, env, binds))
                row = {"precision": prec, "batch": b, "ids": ids_kind, "nnz": nnz, "row_bytes": rb, "bytes": moved,
                       "xrec_us": t_x * 1e6, "xrec_GBps": moved / t_x / 1e9, "python_launch_us": t_call * 1e6,
                       "xrec_frac_copy": (moved / t_x / 1e9) / copy if copy else None,
                       "variant": {k: v for k, v in step.variants[0].constexprs.items()
                                   if k in ("BLOCK_B", "L", "BLOCK_D")}}
                if prec in gpu_tables and not (SMOKE and prec == "fp16"):   # no fp16 bags on the CPU
                    gi, go = flat[1:27], flat[27:]
                    tt = gpu_tables[prec]
                    t_t = graph_time(lambda: [F.embedding_bag(i, t, o, mode="sum", include_last_offset=True)
                                              for i, o, t in zip(gi, go, tt)], k=5)
                    row.update({"torch_per_table_us": t_t * 1e6, "torch_GBps": moved / t_t / 1e9,
                                "speedup_vs_torch": t_t / t_x})
                if prec in ("fp32", "int8") and ids_kind == "zipf" and (b in (2048, 8192) or SMOKE) \
                        and left(deadline) > 30:
                    row["sweep"] = sweep_embedding(model, step, env, binds, moved, copy)
                rows_out.append(row)
        log(f"embedding {prec} done")
        del cm, model
        torch.cuda.empty_cache()
    return {"copy_GBps": copy, "rows": rows_out}


def step_bench(res: dict, deadline: float, save, models=("dlrm-small", "dlrm-v2"), batches=(64, 512, 2048, 8192),
               rounds: int = 5, per_round: int = 10) -> dict:
    import torch

    import xrec
    from xrec import zoo
    out = res["bench"] = {}
    for name in models:
        if left(deadline) < 40:
            out[name] = {"skipped": "out of time"}
            continue
        t0 = time.perf_counter()
        m = zoo.build(name, max_rows=rows(None)).eval()
        mc = _cuda_copy(m)
        systems: dict = {}
        prep: dict = {}

        def add(label, make):
            t = time.perf_counter()
            try:
                systems[label] = make()
                prep[label] = {"prepare_s": round(time.perf_counter() - t, 1)}
            except Exception as e:
                prep[label] = {"error": f"{type(e).__name__}: {e}"[:600]}

        def xrec_sys(graphs: bool, precision: str):
            cm = xrec.compile(m, zoo.example_inputs(m), target="triton",
                              options={"aot": False, "mode": MODE, "cuda_graphs": graphs, "precision": precision})
            model = cm._run.model
            return lambda dense, idx, off: model(dense, *idx, *off)[0]

        def eager():
            def fn(dense, idx, off):
                with torch.inference_mode():
                    return mc(dense, idx, off)
            return fn

        def inductor(mode):
            compiled = torch.compile(mc, mode=mode)

            def fn(dense, idx, off):
                with torch.inference_mode():
                    return compiled(dense, idx, off)
            return fn

        add("xrec-graphs-ieee", lambda: xrec_sys(True, "ieee"))
        add("xrec-graphs-tf32x3", lambda: xrec_sys(True, "tf32x3"))
        if name == "dlrm-small":
            add("xrec-nographs-ieee", lambda: xrec_sys(False, "ieee"))
        add("eager", eager)
        if not SMOKE:
            add("inductor", lambda: inductor(None))
            add("inductor-max-autotune", lambda: inductor("max-autotune"))
        rows_ = []
        for b in ((4,) if SMOKE else batches):
            if left(deadline) < 15:
                rows_.append({"batch": b, "skipped": "out of time"})
                continue
            dense, idx, off = zoo.make_inputs(m, b, seed=b)
            gin = (dense.to(DEV), [i.to(DEV) for i in idx], [o.to(DEV) for o in off])
            with torch.no_grad():
                want = m(dense, idx, off)
            times: dict = {k: [] for k in systems}
            errs: dict = {}
            live = dict(systems)
            for label, fn in list(systems.items()):       # first calls: compile / capture, then check
                if label == "inductor-max-autotune" and (b < 2048 or left(deadline) < 90):
                    why = "below batch 2048 (the goal batches)" if b < 2048 else "too little time left"
                    errs[label] = {"error": f"not run: {why}, to fit the device lease"}
                    live.pop(label)
                    continue
                t = time.perf_counter()
                try:
                    got = fn(*gin)
                    if not SMOKE:
                        torch.cuda.synchronize()
                    errs[label] = {"first_call_s": round(time.perf_counter() - t, 2),
                                   "max_abs_err": float((got.float().cpu() - want).abs().max())}
                except Exception as e:
                    errs[label] = {"error": f"{type(e).__name__}: {e}"[:600]}
                    live.pop(label)
            for _ in range(1 if SMOKE else rounds):       # interleaved: every system once per round
                for label, fn in live.items():
                    times[label] += cuda_time(lambda: fn(*gin), reps=per_round, warmup=1)
            row = {"batch": b, "systems": {k: {**summary(v), **errs.get(k, {})} for k, v in times.items() if v},
                   "failed": {k: v for k, v in errs.items() if "error" in v}}
            base = [row["systems"][k]["median_ms"] for k in ("inductor", "inductor-max-autotune") if k in row["systems"]]
            if base:
                fastest = min(base)
                for k, v in row["systems"].items():
                    v["vs_fastest_torch_compile"] = fastest / v["median_ms"]
            rows_.append(row)
            out[name] = {"prepare": prep, "rows": rows_}
            save()
            log(f"bench {name} batch {b}: " + ", ".join(f"{k} {v['median_ms']:.3f}" for k, v in row["systems"].items()))
        out[name] = {"prepare": prep, "rows": rows_, "wall_s": round(time.perf_counter() - t0, 1)}
        del systems, mc
        torch.cuda.empty_cache()
    return out


def _cuda_copy(m):
    import copy
    return copy.deepcopy(m).to(DEV)


# ------------------------------------------------------------------------------------------- main
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="gpu_out", help="output folder (gpu_suite.json and logs)")
    p.add_argument("--budget-s", type=float, default=480.0, help="stop starting new work after this many seconds")
    p.add_argument("--steps", default=",".join(STEPS), help=f"comma-separated subset of {','.join(STEPS)}")
    p.add_argument("--server", default=None, help="an xrec-server binary (with its libraries in lib/ beside it)")
    p.add_argument("--cpu-smoke", action="store_true",
                   help="without a GPU: run check, embedding and bench on tiny models in Triton's interpreter "
                        "(exercises this script's code; its numbers mean nothing)")
    a = p.parse_args(argv)
    import torch
    global SMOKE, DEV, MODE
    if a.cpu_smoke:
        SMOKE, DEV, MODE = True, "cpu", "auto"
    elif not torch.cuda.is_available():
        print("gpu_suite: torch sees no CUDA device here; nothing was run (this suite needs a real GPU)")
        return 2
    outdir = Path(a.out)
    outdir.mkdir(parents=True, exist_ok=True)
    steps = [s for s in a.steps.split(",") if s]
    res: dict = {"command": " ".join([sys.executable, *sys.argv]), "budget_s": a.budget_s}
    # fractions of the budget at which each step must have ended (a step may finish earlier)
    ends = {"probe": 0.02, "tests": 0.20, "check": 0.37, "server": 0.41, "embedding": 0.60, "bench": 1.0}

    def save():
        (outdir / "gpu_suite.json").write_text(json.dumps(res, indent=1, default=str))

    for name in steps:
        deadline = a.budget_s * ends[name]
        log(f"step {name} (until {deadline:.0f} s)")
        t0 = time.perf_counter()
        try:
            if name == "probe":
                r = step_probe(res)
            elif name == "tests":
                r = step_tests(res, deadline - (time.perf_counter() - T0))
            elif name == "check":
                r = step_check(res, deadline)
            elif name == "server":
                r = step_server(res, a.server)
            elif name == "embedding":
                r = step_embedding(res, deadline)
            else:
                r = step_bench(res, deadline, save)
        except Exception as e:
            r = {"error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()[-4000:]}
        r = r if isinstance(r, dict) else {"result": r}
        r["step_wall_s"] = round(time.perf_counter() - t0, 1)
        res[name] = r
        save()
        log(f"step {name} done in {r['step_wall_s']} s")
    save()
    (outdir / "calibration.json").write_text(json.dumps(calibration(res, "gpu_suite.json"), indent=1))
    print(f"wrote {outdir / 'gpu_suite.json'} and {outdir / 'calibration.json'}")
    return 0




# ------------------------------------------------------------------------------------------- report
def render(runs: list[tuple[str, dict]]) -> str:
    """A markdown page of one or more suite results (label, parsed gpu_suite.json)."""
    L: list[str] = []

    def table(head, rows):
        L.append("| " + " | ".join(head) + " |")
        L.append("|" + "---|" * len(head))
        for r in rows:
            L.append("| " + " | ".join(str(x) for x in r) + " |")
        L.append("")

    for label, r in runs:
        p = r.get("probe", {})
        L += [f"## {label}", "", f"`{r.get('command', '')}`", "",
              f"{p.get('device')} (sm_{''.join(map(str, p.get('capability', [])))}, {p.get('sms')} SMs, "
              f"{p.get('memory_gib')} GiB), torch {p.get('torch')}, triton {p.get('triton')}; device-to-device "
              f"copy {p.get('copy_GBps', 0):.0f} GB/s (bytes read + written, median of 20 copies of 2 GiB).", ""]
        t = r.get("tests", {})
        if t:
            last = [ln for ln in str(t.get("tail", "")).splitlines() if "passed" in ln or "failed" in ln][-1:]
            L += [f"**GPU tests** (`{t.get('cmd', '').split('python')[-1].strip()}`): exit {t.get('rc')}, "
                  f"{last[0] if last else '?'}", ""]
        c = {k: v for k, v in r.get("check", {}).items() if isinstance(v, dict)}
        if c:
            rows = []
            for name, v in c.items():
                runs_ = {k: x for k, x in v.items() if isinstance(x, dict)}
                rows.append([name, "ok" if v.get("ok") else f"**FAILED** {v.get('error', '')}"] +
                            [", ".join(f"{k}: {x['max_rel_err']:.2e}" for k, x in runs_.items())])
            L.append("**Check against PyTorch eager (fp32, CPU), batch 1 / 64 / 2048, tables capped at 100k rows:**")
            L.append("")
            table(["model", "result", "max relative error (per runtime mode)"], rows)
        s = r.get("server")
        if s:
            L += [f"**xrec-server on the triton artifact's C library** (dlrm-small, 4-row KServe v2 request): "
                  f"{'ok' if s.get('ok') else 'FAILED ' + str(s.get('error', s.get('skipped')))}"
                  + (f", max abs error vs PyTorch {s['max_abs_err']:.1e}, {s['latency_ms']:.1f} ms first request"
                     if "max_abs_err" in s else ""), ""]
        e = r.get("embedding")
        if e and e.get("rows"):
            timed = "graph replay (kernel time)" if any("python_launch_us" in x for x in e["rows"]) \
                else "CUDA events around a Python launch (includes ~130 us of launch overhead)"
            L.append(f"**Embedding kernel alone** (dlrm-small's 26 tables, dim 64, full size; time by {timed}; "
                     "bytes = rows read x row bytes + ids + offsets + output; % of the copy bandwidth):")
            L.append("")
            rows = []
            for x in e["rows"]:
                if "xrec_us" not in x:
                    continue
                rows.append([x["precision"], x["batch"], x["ids"], x["nnz"], f"{x['xrec_us']:.1f}",
                             f"{x['xrec_GBps']:.0f}", f"{100 * (x.get('xrec_frac_copy') or 0):.1f}",
                             f"{x['torch_per_table_us']:.1f}" if "torch_per_table_us" in x else "-",
                             f"{x['speedup_vs_torch']:.2f}" if "speedup_vs_torch" in x else "-"])
            table(["rows", "batch", "ids", "ids total", "xrec us", "GB/s", "% copy", "F.embedding_bag x26 us",
                   "xrec speed-up"], rows)
            sweeps = [x for x in e["rows"] if x.get("sweep")]
            if sweeps:
                L.append("**Tile sweep of the same kernel** (BLOCK_B bags x L ids per step, warps; us and % copy):")
                L.append("")
                cfgs = [(c["BLOCK_B"], c["L"], c["num_warps"]) for c in sweeps[0]["sweep"]]
                head = ["config"] + [f"{x['precision']} b{x['batch']}" for x in sweeps]
                rows = []
                for k, cfg in enumerate(cfgs):
                    row = [f"{cfg[0]} x {cfg[1]}, {cfg[2]}w"]
                    for x in sweeps:
                        c = x["sweep"][k]
                        row.append(f"{c['us']:.0f} ({100 * (c.get('frac_copy') or 0):.0f}%)" if "us" in c
                                   else c.get("error", "?")[:40])
                    rows.append(row)
                table(head, rows)
        b = r.get("bench")
        if b:
            for name, v in b.items():
                if not isinstance(v, dict) or not v.get("rows"):
                    continue
                L.append(f"**{name}, whole model** (median ms of CUDA-event-timed calls, p10-p90; interleaved rounds; "
                         "vs = fastest torch.compile mode / system):")
                L.append("")
                systems = []
                for row in v["rows"]:
                    for k in row.get("systems", {}):
                        if k not in systems:
                            systems.append(k)
                rows = []
                for k in systems:
                    line = [k]
                    for row in v["rows"]:
                        x = row.get("systems", {}).get(k)
                        line.append(f"{x['median_ms']:.3f} ({x['p10_ms']:.2f}-{x['p90_ms']:.2f})"
                                    + (f" {x['vs_fastest_torch_compile']:.2f}x" if "vs_fastest_torch_compile" in x
                                       else "") if x else "-")
                    rows.append(line)
                table(["system"] + [f"batch {row['batch']}" for row in v["rows"]], rows)
                notes = {k: e2["error"] for row in v["rows"] for k, e2 in row.get("failed", {}).items()}
                for k, why in notes.items():
                    L.append(f"- {k}: {why}")
                L.append("")
    return "\n".join(L) + "\n"


def render_main(argv) -> int:
    p = argparse.ArgumentParser(description="render gpu_suite.json files as one markdown page")
    p.add_argument("json", nargs="+", help="LABEL=PATH")
    p.add_argument("--markdown", required=True)
    p.add_argument("--calibration", help="also write the calibration profile of the last JSON here")
    a = p.parse_args(argv)
    runs = []
    for item in a.json:
        label, _, path = item.partition("=")
        runs.append((label, json.loads(Path(path).read_text())))
    Path(a.markdown).write_text(render(runs))
    if a.calibration:
        path = a.json[-1].partition("=")[2]
        Path(a.calibration).write_text(json.dumps(calibration(runs[-1][1], path), indent=1) + "\n")
    return 0



def calibration(res: dict, source: str = "") -> dict:
    """The measured figures a cost model of the triton target starts from (one device, one run)."""
    p = res.get("probe", {})
    out = {"device": p.get("device"), "capability": p.get("capability"), "torch": p.get("torch"),
           "triton": p.get("triton"), "source": source,
           "copy_GBps": p.get("copy_GBps"), "embedding": {}, "python_launch_overhead_us": None, "whole_model_ms": {}}
    overheads = []
    for x in (res.get("embedding") or {}).get("rows", []):
        if "xrec_us" not in x:
            continue
        e = out["embedding"].setdefault(x["precision"], {}).setdefault(x["ids"], {})
        e[str(x["batch"])] = {"kernel_us": round(x["xrec_us"], 2), "bytes": x["bytes"],
                              "frac_copy": round(x.get("xrec_frac_copy") or 0, 4), "config": x.get("variant")}
        if "python_launch_us" in x:
            overheads.append(x["python_launch_us"] - x["xrec_us"])
        if x.get("sweep"):
            best = min((c for c in x["sweep"] if "us" in c), key=lambda c: c["us"])
            e[str(x["batch"])]["best_config"] = {k: best[k] for k in ("BLOCK_B", "L", "num_warps", "us", "frac_copy")}
    if overheads:
        out["python_launch_overhead_us"] = round(statistics.median(overheads), 1)
    for name, v in (res.get("bench") or {}).items():
        if isinstance(v, dict):
            for row in v.get("rows", []):
                for k, x in row.get("systems", {}).items():
                    out["whole_model_ms"].setdefault(name, {}).setdefault(k, {})[str(row["batch"])] = \
                        round(x["median_ms"], 4)
    return out


if __name__ == "__main__":
    os.environ.setdefault("XREC_QUIET", "1")
    if sys.argv[1:2] == ["render"]:
        sys.exit(render_main(sys.argv[2:]))
    sys.exit(main())
