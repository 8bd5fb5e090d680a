"""Compile time and per-call latency of the xla target on JAX's CPU client vs PyTorch eager.

    python -m xrec.targets.xla.bench [--model dlrm-small] [--max-rows N] [--batches 64,512] [--reps 20]

One artifact per batch (static batch = that batch), plus the batch-64 artifact
serving the largest batch by splitting. Samples are interleaved (PyTorch,
xla, PyTorch, ...) in one process; medians are printed. ``xla_cpu`` is a full
``CompiledModel`` call (input validation, bucketing, transfers, execution);
``xla_host_only`` the bucketing alone, ``xla_executable_only`` the
executable(s) on arguments already on the device.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time


def main(argv=None) -> int:
    import torch
    import xrec
    from xrec import zoo
    from xrec.frontend import import_model
    from xrec.targets.xla.runtime import execute

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="dlrm-small")
    p.add_argument("--max-rows", type=int, default=None)
    p.add_argument("--batches", default="64,512")
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--dtype", default="f32")
    p.add_argument("--torch-threads", type=int, default=None, help="torch.set_num_threads for eager")
    p.add_argument("--json", default=None, help="also write the rows to this file")
    a = p.parse_args(argv)
    batches = [int(b) for b in a.batches.split(",")]
    if a.torch_threads:
        torch.set_num_threads(a.torch_threads)
    model = zoo.build(a.model, max_rows=a.max_rows)
    t0 = time.perf_counter()
    g = import_model(model, zoo.example_inputs(model), name=a.model)
    trace_s = time.perf_counter() - t0
    rows = []
    compiled = {}
    for b in batches:
        t0 = time.perf_counter()
        cm = xrec.compile(g, target="xla", options={"batch": b, "tpu": None, "dtype": a.dtype})
        total = time.perf_counter() - t0
        compiled[b] = cm
        rows.append({"what": "compile", "static_batch": b, "total_s": round(total, 3),
                     "xla_cpu_compile_s": cm.manifest["target_info"]["cpu"]["compile_s"]})
    cases = [(b, b) for b in batches] + ([(min(batches), max(batches))] if len(batches) > 1 else [])
    torch.set_grad_enabled(False)
    for static, b in cases:
        cm = compiled[static]
        args = zoo.make_inputs(model, b, seed=7)
        flat, _ = cm.flatten_inputs(args, {})
        run = cm._run
        _, chunks = run.chunks(flat)
        dev = [[run.weights[s["name"]] if h is None else run._put(h, run.dev) for s, h in zip(run.args, ch)]
               for ch in chunks]
        systems = {"pytorch_eager": lambda: model(*args),
                   "xla_cpu": lambda: cm(*args),                       # validation + bucketing + transfers + run
                   "xla_host_only": lambda: run.chunks(flat),          # bucketing and batch padding alone
                   "xla_executable_only": lambda: [execute(run.exe, d) for d in dev]}
        times = {k: [] for k in systems}
        for fn in systems.values():
            fn()
        for _ in range(a.reps):
            for k, fn in systems.items():
                t0 = time.perf_counter()
                fn()
                times[k].append(time.perf_counter() - t0)
        med = {k: round(statistics.median(v) * 1e3, 3) for k, v in times.items()}
        rows.append({"what": "latency_ms", "static_batch": static, "batch": b, **med,
                     "speedup_vs_eager": round(med["pytorch_eager"] / med["xla_cpu"], 2)})
    print(json.dumps({"model": a.model, "max_rows": a.max_rows, "trace_s": round(trace_s, 2),
                      "torch_threads": torch.get_num_threads()}))
    for r in rows:
        print(json.dumps(r))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
