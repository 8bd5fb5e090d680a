"""Compile and run emitted StableHLO on JAX's CPU PJRT client, and the host side of a call.

These use private ``jax._src`` APIs (the MLIR context, ``compile_and_load``),
so the jax version is pinned: :func:`check_jax` says clearly when another one
is installed. Executables are cached per module text (sha256), so loading one
artifact twice, or building then loading it, compiles once.

:class:`Runner` is what ``Target.load`` returns: it buckets the KJT inputs
(``bucketing.py``), pads the batch to the executable's static batch (or
splits a larger one), keeps the weights on the device, runs, and strips the
batch padding from the outputs.
"""
from __future__ import annotations

import hashlib
import threading
import time
from typing import Sequence

import numpy as np

from xrec.runtime.validate import InputError

from . import layout as L
from .bucketing import Slot, bucket_all
from .context import FeatureSlot

REQUIRED_JAX = "0.10.2"


def check_jax() -> tuple[bool, str]:
    """(True, '') when the pinned jax/jaxlib are importable, else (False, what to do)."""
    try:
        import jax
        import jaxlib
    except ImportError as e:
        return False, (f"jax is not installed ({e}); install the xla extra: pip install -e '.[xla]' "
                       f"(jax=={REQUIRED_JAX} jaxlib=={REQUIRED_JAX})")
    found = (jax.__version__, jaxlib.__version__)
    if found != (REQUIRED_JAX, REQUIRED_JAX):
        return False, (f"the xla target drives private jax APIs verified with jax/jaxlib {REQUIRED_JAX}, found "
                       f"jax {found[0]} / jaxlib {found[1]}; pip install jax=={REQUIRED_JAX} "
                       f"jaxlib=={REQUIRED_JAX}")
    return True, ""


def require_jax() -> None:
    ok, why = check_jax()
    if not ok:
        raise RuntimeError(f"xla target unavailable: {why}")


def _mlir():
    from jax._src.interpreters import mlir as jmlir
    from jax._src.lib.mlir import ir
    return jmlir, ir


def parse(text: str, ctx=None):
    """Parse and verify module text in jax's MLIR context (``ctx``: an entered context, else a new one)."""
    jmlir, ir = _mlir()
    if ctx is None:
        ctx = jmlir.make_ir_context()
    with ctx:
        m = ir.Module.parse(text)
        if not m.operation.verify():
            raise RuntimeError("emitted StableHLO does not verify")
    return m, ctx


def to_bytecode(text: str) -> bytes:
    jmlir, _ = _mlir()
    m, ctx = parse(text)
    with ctx:
        return jmlir.module_to_bytecode(m)


def portable_artifact(text: str) -> tuple[bytes, str]:
    """A versioned StableHLO portable artifact (VHLO bytecode), for loading on a TPU host."""
    from jaxlib.mlir.dialects import stablehlo
    version = stablehlo.get_minimum_version()
    try:
        return stablehlo.serialize_portable_artifact_str(text, version), version
    except Exception:       # an op newer than the minimum version: target the current one
        version = stablehlo.get_current_version()
        return stablehlo.serialize_portable_artifact_str(text, version), version


def read_portable_artifact(data: bytes) -> str:
    """The module text of a portable artifact (what a TPU host does before compiling it)."""
    from jaxlib.mlir.dialects import stablehlo
    jmlir, _ = _mlir()
    with jmlir.make_ir_context() as ctx:
        return str(stablehlo.deserialize_portable_artifact(ctx, data))


def eval_reference(text: str, args: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Run the module with the StableHLO reference interpreter (slow; a second oracle for tests)."""
    from jaxlib.mlir.dialects import stablehlo
    _, ir = _mlir()
    m, ctx = parse(text)
    with ctx:
        attrs = [ir.DenseElementsAttr.get(np.ascontiguousarray(a)) for a in args]
        return [np.array(r) for r in stablehlo.eval_module(m, attrs)]


_CACHE: dict[str, object] = {}
_LOCK = threading.Lock()


def cpu_device():
    from jax._src import xla_bridge as xb
    be = xb.get_backend("cpu")
    return be, be.local_devices()[0]


def compile_cpu(text: str) -> tuple[object, float]:
    """(LoadedExecutable on the CPU client, seconds spent compiling; 0.0 when cached)."""
    require_jax()
    key = hashlib.sha256(text.encode()).hexdigest()
    with _LOCK:
        if key in _CACHE:
            return _CACHE[key], 0.0
    from jax._src.lib import xla_client as xc
    t0 = time.perf_counter()
    bc = to_bytecode(text)
    be, dev = cpu_device()
    exe = be.compile_and_load(bc, xc.DeviceList((dev,)), xc.CompileOptions())
    dt = time.perf_counter() - t0
    with _LOCK:
        _CACHE[key] = exe
    return exe, dt


def execute(exe, device_args: Sequence) -> list[np.ndarray]:
    outs = exe.execute_sharded(list(device_args))
    return [np.array(o[0]) for o in outs.disassemble_into_single_device_arrays()]


class Runner:
    """Runs a compiled module on flat model inputs (the graph's input order) -> flat outputs."""

    def __init__(self, text: str, info: dict, params: dict[str, np.ndarray]):
        import jax
        self.exe, self.compile_s = compile_cpu(text)
        _, self.dev = cpu_device()
        self.batch = int(info["batch"])
        self.overflow = info["overflow"]
        self.large_batch = info["large_batch"]
        self.args = info["args"]
        self.features = {f["jagged"]: FeatureSlot(**f) for f in info["features"]}
        self.slots = [Slot(f.feature, f.max_ids, f.column, f.weights_column, f.num_rows, f.include_last_offset)
                      for f in self.features.values()]
        self.outputs = info["outputs"]
        self._put = jax.device_put
        # weights go to the device once, laid out as the module expects
        self.weights = {}
        for a in self.args:
            if a["role"] == "param":
                arr = L.apply_transform(params[a["param"]], a["transform"])
                self.weights[a["name"]] = jax.device_put(arr, self.dev)

    def _bucket(self, flat: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        """Per argument name, the host array over the whole request batch (not yet padded)."""
        host: dict[str, np.ndarray] = {}
        sparse = {a["role"]: a for a in self.args if a["role"] in ("ids", "lengths", "weights")}
        if sparse:
            feats = list(self.features.values())
            kjts = [(flat[f.indices], flat[f.offsets], flat[f.weights] if f.weights is not None else None)
                    for f in feats]
            ids, lengths, weights = bucket_all(
                kjts, self.slots, batch=self.request_batch(flat), total_ids=sparse["ids"]["shape"][1],
                total_weights=sparse["weights"]["shape"][1] if "weights" in sparse else 0, overflow=self.overflow)
            host[sparse["ids"]["name"]] = ids
            host[sparse["lengths"]["name"]] = lengths
            if weights is not None:
                host[sparse["weights"]["name"]] = weights
        for a in self.args:
            if a["role"] == "input":
                host[a["name"]] = np.asarray(flat[a["input"]])
        return host

    def request_batch(self, flat: Sequence[np.ndarray]) -> int:
        for a in self.args:
            if a["role"] == "input" and a.get("batched"):
                return int(np.asarray(flat[a["input"]]).shape[0])
        f = next(iter(self.features.values()), None)
        if f is not None:
            n = len(flat[f.offsets])
            return n - 1 if f.include_last_offset else n
        return self.batch

    def chunks(self, flat: Sequence[np.ndarray]) -> tuple[int, list[list[np.ndarray | None]]]:
        """(request batch, per executable call the host arrays of the non-weight arguments; None for weights)."""
        batch = self.request_batch(flat)
        if batch > self.batch and self.large_batch == "error":
            raise InputError(f"batch {batch} exceeds the static batch {self.batch} this xla artifact was compiled "
                             f"for; recompile with options={{'batch': {batch}}} or {{'large_batch': 'split'}}")
        host = self._bucket(flat)
        out = []
        for start in range(0, max(batch, 1), self.batch):
            stop = min(start + self.batch, batch)
            args: list[np.ndarray | None] = []
            for a in self.args:
                if a["role"] == "param":
                    args.append(None)
                    continue
                h = host[a["name"]]
                if a["role"] != "input" or a.get("batched"):
                    h = h[start:stop]
                    if len(h) < self.batch:     # pad the batch: zeros, i.e. empty bags
                        h = np.concatenate([h, np.zeros((self.batch - len(h),) + h.shape[1:], h.dtype)])
                args.append(np.ascontiguousarray(h, dtype=L.np_dtype(a["dtype"])))
            out.append(args)
        return batch, out

    def module_args(self, flat: Sequence[np.ndarray], params: dict[str, np.ndarray], chunk: int = 0) -> list:
        """Every argument of one executable call as host arrays (for other executors, e.g. the reference
        interpreter or a TPU host)."""
        _, chunks = self.chunks(flat)
        return [L.apply_transform(params[a["param"]], a["transform"]) if h is None else h
                for a, h in zip(self.args, chunks[chunk])]

    def __call__(self, flat: Sequence[np.ndarray]) -> list[np.ndarray]:
        batch, chunks = self.chunks(flat)
        results = []
        for k, args in enumerate(chunks):
            n = min(self.batch, batch - k * self.batch)
            dev_args = [self.weights[a["name"]] if h is None else self._put(h, self.dev)
                        for a, h in zip(self.args, args)]
            outs = execute(self.exe, dev_args)
            results.append([o[:n] if spec["batched"] else o for o, spec in zip(outs, self.outputs)])
        if len(results) == 1:
            return results[0]
        return [np.concatenate([r[k] for r in results]) if spec["batched"] else results[0][k]
                for k, spec in enumerate(self.outputs)]
