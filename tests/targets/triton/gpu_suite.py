"""The triton target's checks on a real GPU: run once by a session that has one.

    python tests/targets/triton/gpu_suite.py --out triton_gpu.json [--quick]

1. the GPU-marked tests of tests/targets/triton (the C library linked against the real driver,
   running the AOT cubins, and the Python runtime on CUDA tensors, both against PyTorch);
2. ``xrec check MODEL --target triton`` for dlrm-small and dlrm-v2 at batch 64, 512, 2048, 8192;
3. ``xrec bench MODEL --target triton --baselines eager,inductor`` at the same batches;
4. the table-batched embedding kernel alone on dlrm-small's 26 tables: median time and achieved
   bandwidth (bytes of rows, ids and offsets read plus output written, over time), next to
   PyTorch's F.embedding_bag over the same tables (one call per table, as eager DLRM does).

Every step is timed and isolated (one failing step does not stop the others); the JSON holds
each step's command, exit code, wall time and output tail or numbers. --quick uses
--max-rows 100000 and fewer repetitions (to fit a short device lease). Without a CUDA device
it says so and exits 2: nothing here is simulated.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
BATCHES = (64, 512, 2048, 8192)
MODELS = ("dlrm-small", "dlrm-v2")


def run(cmd: list[str], timeout: float) -> dict:
    t0 = time.perf_counter()
    try:
        r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout)
        rc, out = r.returncode, (r.stdout + r.stderr)
    except subprocess.TimeoutExpired as e:
        rc, out = "timeout", f"{e.stdout or ''}{e.stderr or ''}"
    return {"cmd": " ".join(cmd), "rc": rc, "wall_s": round(time.perf_counter() - t0, 1), "tail": str(out)[-4000:]}


def embedding_bandwidth(batches, max_rows, reps: int) -> list[dict]:
    """Time the embedding launch of dlrm-small alone, and F.embedding_bag per table, on the GPU."""
    import torch
    import torch.nn.functional as F

    import xrec
    from xrec import zoo
    from xrec.targets.triton.program import Launch

    m = zoo.build("dlrm-small", max_rows=max_rows)
    cm = xrec.compile(m, zoo.example_inputs(m), target="triton", options={"aot": False, "bounds_check": False})
    model = cm._run.model
    step = next(s for s in model.program.steps if isinstance(s, Launch) and s.kernel == "embedding_bag_group_kernel")
    cuda = torch.cuda.is_available()
    dev = "cuda" if cuda else "cpu"
    tables = [bag.weight.detach().to(dev) for bag in m.embeddings.bags]
    rows = []
    for batch in batches:
        dense, idx, off = zoo.make_inputs(m, batch, seed=7)
        flat = [dense] + list(idx) + list(off)
        env, binds = model._inputs(flat)
        model._ptrtables(env, binds)
        nnz = sum(len(i) for i in idx)
        dim = tables[0].shape[1]
        moved = nnz * dim * 4 + nnz * idx[0].element_size() + sum(o.numel() * o.element_size() for o in off) \
            + batch * dim * len(tables) * 4

        def timeit(fn):
            for _ in range(min(3, reps)):
                fn()
            times = []
            for _ in range(reps):
                if cuda:
                    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                    torch.cuda.synchronize()
                    a.record()
                    fn()
                    b.record()
                    torch.cuda.synchronize()
                    times.append(a.elapsed_time(b) * 1e-3)
                else:                      # --cpu-smoke: the same code path in Triton's interpreter
                    t0 = time.perf_counter()
                    fn()
                    times.append(time.perf_counter() - t0)
            return statistics.median(times)

        t_xrec = timeit(lambda: model._launch(step, env, binds))
        gi = [i.to(dev) for i in idx]
        go = [o.to(dev) for o in off]
        t_torch = timeit(lambda: [F.embedding_bag(i, t, o, mode="sum", include_last_offset=True)
                                  for i, o, t in zip(gi, go, tables)])
        rows.append({"batch": batch, "ids": nnz, "bytes": moved, "xrec_ms": t_xrec * 1e3,
                     "xrec_GBps": moved / t_xrec / 1e9, "torch_per_table_ms": t_torch * 1e3,
                     "torch_GBps": moved / t_torch / 1e9, "speedup": t_torch / t_xrec,
                     "variant": {k: v for k, v in step.variants[0].constexprs.items()
                                 if k in ("BLOCK_B", "L", "BLOCK_D")}})
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="triton_gpu.json")
    p.add_argument("--quick", action="store_true", help="smaller tables and fewer repetitions")
    p.add_argument("--skip", default="", help="comma-separated steps to skip: tests,check,bench,embedding")
    p.add_argument("--cpu-smoke", action="store_true",
                   help="without a GPU: run the embedding probe's code once in Triton's interpreter (no numbers)")
    a = p.parse_args(argv)
    import torch
    if a.cpu_smoke:
        rows = embedding_bandwidth((4,), 100, reps=1)
        print(json.dumps({"cpu_smoke": True, "rows": rows}))
        return 0
    if not torch.cuda.is_available():
        print("gpu_suite: torch sees no CUDA device here; nothing was run (this suite needs a real GPU)")
        return 2
    skip = set(filter(None, a.skip.split(",")))
    py = sys.executable
    rows_opt = ["--max-rows", "100000"] if a.quick else []
    res: dict = {"device": torch.cuda.get_device_name(0), "capability": list(torch.cuda.get_device_capability(0)),
                 "torch": torch.__version__, "quick": a.quick, "steps": {}}
    import triton
    res["triton"] = triton.__version__
    steps = res["steps"]

    def save():
        Path(a.out).write_text(json.dumps(res, indent=1))

    if "tests" not in skip:
        steps["gpu_tests"] = run([py, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider",
                                  "tests/targets/triton"], timeout=900)
        save()
    batches = ",".join(str(b) for b in BATCHES)
    for model in MODELS:
        if "check" not in skip:
            steps[f"check_{model}"] = run([py, "-m", "xrec", "check", model, "--target", "triton", "--batches",
                                           batches, "--json", *rows_opt], timeout=1200)
            save()
        if "bench" not in skip:
            jf = Path(a.out).with_name(f"bench_{model}.json")
            steps[f"bench_{model}"] = run([py, "-m", "xrec", "bench", model, "--target", "triton", "--baselines",
                                           "eager,inductor", "--batch", batches, "--reps", "5" if a.quick else "20",
                                           "--no-roofline", "--json", str(jf), *rows_opt], timeout=1800)
            if jf.is_file():
                steps[f"bench_{model}"]["result"] = json.loads(jf.read_text())
            save()
    if "embedding" not in skip:
        t0 = time.perf_counter()
        try:
            steps["embedding_kernel"] = {"rows": embedding_bandwidth(BATCHES, 100000 if a.quick else None,
                                                                     reps=10 if a.quick else 50)}
        except Exception as e:  # record and go on: this is a report, not a test
            steps["embedding_kernel"] = {"error": f"{type(e).__name__}: {e}"}
        steps["embedding_kernel"]["wall_s"] = round(time.perf_counter() - t0, 1)
        save()
    for name, s in steps.items():
        print(f"{name:24s} rc={s.get('rc', '-')!s:8s} {s.get('wall_s', '')} s")
    save()
    print(f"wrote {a.out}")
    return 0 if all(s.get("rc", 0) == 0 for s in steps.values()) else 1


if __name__ == "__main__":
    os.environ.setdefault("XREC_QUIET", "0")
    sys.exit(main())
