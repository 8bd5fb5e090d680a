"""``xrec serve ARTIFACT``: build the C++ inference server (cached) and run it in this process (exec).

The server speaks the KServe v2 / Open Inference Protocol (as Triton and KServe do) for
one cpu artifact, under the artifact's model name:

    xrec compile dlrm-small --target cpu -o dlrm.xrec
    xrec serve dlrm.xrec --port 8000
    curl localhost:8000/v2/models/dlrm-small

Only the standard library is imported here: the CLI lists subcommands without loading xrec.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

DEFAULTS = {"host": "127.0.0.1", "port": 8000, "max_batch": 64, "max_delay_us": 500, "workers": 2, "threads": 0,
            "queue": 256, "timeout_ms": 10000, "http_threads": 128, "max_body_bytes": 64 << 20,
            "read_timeout_ms": 5000, "request_timeout_ms": 10000, "write_timeout_ms": 10000,
            "keep_alive_timeout_ms": 2000, "keep_alive_max": 1000, "max_conns_per_client": None,
            "overload_grace_ms": 1000}


def _positive(lo: int):
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if v < lo:
            raise argparse.ArgumentTypeError(f"must be >= {lo}, got {v}")
        return v
    return parse


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = DEFAULTS
    p.add_argument("artifact", nargs="?", help="a cpu artifact directory (xrec compile MODEL --target cpu -o NAME.xrec)")
    p.add_argument("--host", default=d["host"], help="address to listen on (default %(default)s: this machine only)")
    p.add_argument("--port", type=_positive(0), default=d["port"], help="TCP port; 0 picks a free one "
                   "(default %(default)s)")
    p.add_argument("--max-batch", type=_positive(1), default=d["max_batch"],
                   help="rows per kernel call when merging requests; 1 turns dynamic batching off "
                        "(default %(default)s; a bigger request runs alone)")
    p.add_argument("--max-delay-us", type=_positive(0), default=d["max_delay_us"],
                   help="how long the oldest queued request may wait for others to merge with "
                        "(default %(default)s)")
    p.add_argument("--workers", type=_positive(1), default=d["workers"],
                   help="kernel calls running at once (default %(default)s)")
    p.add_argument("--threads", type=_positive(0), default=d["threads"],
                   help="threads inside one kernel call (default 0: cores / workers)")
    p.add_argument("--queue", type=_positive(1), default=d["queue"],
                   help="requests that may wait; more are answered 503 (default %(default)s)")
    p.add_argument("--timeout-ms", type=_positive(1), default=d["timeout_ms"],
                   help="per-request deadline from arrival; later: 504 (default %(default)s)")
    p.add_argument("--http-threads", type=_positive(1), default=d["http_threads"],
                   help="connections served at once (default %(default)s); keep it above the client "
                        "concurrency for batching to see every request")
    p.add_argument("--max-body-bytes", type=_positive(1), default=d["max_body_bytes"],
                   help="larger request bodies are answered 413 (default %(default)s)")
    g = p.add_argument_group("slow clients", "bounds that keep slow or idle clients from holding every HTTP thread")
    g.add_argument("--read-timeout-ms", type=_positive(1), default=d["read_timeout_ms"],
                   help="one read of a request waits at most this; then 408 and close (default %(default)s)")
    g.add_argument("--request-timeout-ms", type=_positive(1), default=d["request_timeout_ms"],
                   help="a whole request (headers and body) arrives within this of its first byte; then 408 "
                        "and close (default %(default)s)")
    g.add_argument("--write-timeout-ms", type=_positive(1), default=d["write_timeout_ms"],
                   help="a whole answer is taken by the client within this; then close (default %(default)s)")
    g.add_argument("--keep-alive-timeout-ms", type=_positive(1), default=d["keep_alive_timeout_ms"],
                   help="an open connection waits this long for its next request (default %(default)s)")
    g.add_argument("--keep-alive-max", type=_positive(1), default=d["keep_alive_max"],
                   help="requests served on one connection, then it is closed (default %(default)s)")
    g.add_argument("--max-conns-per-client", type=_positive(0), default=d["max_conns_per_client"],
                   help="connections one client address may hold; more are answered 503 and closed; 0: no limit "
                        "(default: 3/4 of --http-threads)")
    g.add_argument("--overload-grace-ms", type=_positive(0), default=d["overload_grace_ms"],
                   help="while every HTTP thread is busy and connections wait for one, a connection idle or "
                        "reading its request for longer than this is closed, the oldest first (default %(default)s)")
    p.add_argument("--isa", default=None, help="force an ISA build: avx512 | avx2 | scalar (default: the knob "
                   "cpu_isa, XREC_CPU_ISA, else the best this CPU runs)")
    p.add_argument("--no-verify-weights", action="store_true",
                   help="skip checksumming weights.bin at load (faster start for big models)")
    p.add_argument("--build-only", action="store_true", help="build the server, print its path and exit")
    p.add_argument("--example-request", type=_positive(1), default=None, metavar="ROWS",
                   help="print a valid inference request body (JSON, ROWS rows of random inputs) for ARTIFACT and "
                        "exit: curl -d @req.json http://HOST:PORT/v2/models/NAME/infer")


def _check_artifact(path: Path) -> str | None:
    if not path.is_dir() or not (path / "manifest.json").is_file():
        return (f"{path} is not an artifact directory (no manifest.json); compile one first: "
                f"xrec compile MODEL --target cpu -o {path.name or 'model.xrec'}")
    try:
        manifest = json.loads((path / "manifest.json").read_text())
    except (OSError, ValueError) as e:
        return f"{path}/manifest.json is unreadable: {e}"
    target = manifest.get("target")
    if target == "triton":
        c_abi = manifest.get("target_info", {}).get("c_abi") or {}
        if not (path / "lib" / "libxrec_model_cuda.so").is_file():
            return (f"{path} is a triton artifact without its C library (compiled with -O aot=false?); the server "
                    f"needs it: xrec compile MODEL --target triton -o {path.name}")
        if c_abi.get("runs_in_c") is False:
            return (f"{path}: this triton artifact cannot run from C ({c_abi.get('why_not')}); the server needs "
                    "a model whose every step has a kernel, or a cpu artifact")
        return None
    if target != "cpu":
        return (f"{path} was compiled for target '{target}'; the server runs cpu artifacts (and triton ones on a "
                f"machine with an NVIDIA GPU): xrec compile MODEL --target cpu -o {path.name}")
    return None


def example_request(path: Path, rows: int, seed: int = 0) -> dict:
    """A KServe v2 request body for the artifact: random valid inputs over its signature, named as the server names
    them (dense values, ids inside each table, consistent offsets)."""
    import numpy as np

    from xrec.artifact import open_artifact
    from xrec.runtime.inputs import random_flat_inputs
    art = open_artifact(path, verify_checksums=False)
    sig = art.manifest["signature"]
    arrays = random_flat_inputs(art.graph, sig["features"], rows, seed=seed)
    kinds = {np.dtype(np.float32): "FP32", np.dtype(np.float64): "FP64", np.dtype(np.int64): "INT64",
             np.dtype(np.int32): "INT32", np.dtype(np.int8): "INT8", np.dtype(np.uint8): "UINT8",
             np.dtype(np.bool_): "BOOL"}
    inputs = []
    for spec, a in zip(sig["inputs"], arrays):
        data = np.round(a.astype(np.float64), 4) if a.dtype.kind == "f" else a
        inputs.append({"name": spec["name"], "datatype": kinds.get(a.dtype, str(a.dtype)), "shape": list(a.shape),
                       "data": data.ravel().tolist()})
    return {"id": "example", "inputs": inputs}


def run(args) -> int:
    from xrec.config import knobs

    from .build import ServeBuildError, server_binary
    if not args.build_only:
        if not args.artifact:
            print("error: xrec serve needs an ARTIFACT (a directory from xrec compile MODEL --target cpu -o NAME.xrec)",
                  file=sys.stderr)
            return 2
        why = _check_artifact(Path(args.artifact))
        if why:
            print(f"error: {why}", file=sys.stderr)
            return 2
    if args.example_request:
        print(json.dumps(example_request(Path(args.artifact), args.example_request)))
        return 0
    try:
        exe = server_binary()
    except ServeBuildError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.build_only:
        print(exe)
        return 0
    artifact = Path(args.artifact)
    isa = args.isa or knobs.cpu_isa or "auto"
    argv = [str(exe), str(artifact), "--host", args.host, "--port", str(args.port),
            "--max-batch", str(args.max_batch), "--max-delay-us", str(args.max_delay_us),
            "--workers", str(args.workers), "--threads", str(args.threads or knobs.threads or 0),
            "--queue", str(args.queue), "--timeout-ms", str(args.timeout_ms),
            "--http-threads", str(args.http_threads), "--max-body-bytes", str(args.max_body_bytes),
            "--read-timeout-ms", str(args.read_timeout_ms), "--request-timeout-ms", str(args.request_timeout_ms),
            "--write-timeout-ms", str(args.write_timeout_ms),
            "--keep-alive-timeout-ms", str(args.keep_alive_timeout_ms), "--keep-alive-max", str(args.keep_alive_max),
            "--overload-grace-ms", str(args.overload_grace_ms), "--isa", isa]
    if args.max_conns_per_client is not None:
        argv += ["--max-conns-per-client", str(args.max_conns_per_client)]
    if args.no_verify_weights:
        argv.append("--no-verify-weights")
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(str(exe), argv)   # the server prints its URL once listening; Ctrl-C / SIGTERM stop it gracefully
    return 0   # not reached
