"""Compile the emitted module for a TPU without a TPU: libtpu's topology descriptions.

With libtpu installed (``pip install "libtpu==0.0.42.*"``, the version jax
0.10.2 pins; optional, 684 MB), ``jax.experimental.topologies`` describes a
TPU slice (e.g. ``"v5e:2x2"``) and its client compiles for it on any
machine. The serialized executable goes into the artifact's ``lib/``, and
XLA's cost analysis (flops, bytes accessed, optimal seconds) and memory
analysis (argument, output, temp and code bytes) into the manifest.

Loading that executable needs the same libtpu on a TPU host; the portable
StableHLO artifact (``lib/model.stablehlo.bc``) is the version-tolerant
alternative there.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import time
from dataclasses import dataclass

DEFAULT_TOPOLOGY = "v5e:2x2"
LIBTPU_PIN = "0.0.42.*"


def libtpu_version() -> str | None:
    """The installed libtpu's version, or None when it is not installed."""
    if importlib.util.find_spec("libtpu") is None:
        return None
    try:
        return importlib.metadata.version("libtpu")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def available() -> tuple[bool, str]:
    if libtpu_version() is None:
        return False, f'libtpu is not installed (optional: pip install "libtpu=={LIBTPU_PIN}")'
    return True, ""


@dataclass
class TpuBuild:
    topology: str
    device_kind: str
    executable: bytes
    compile_s: float
    cost: dict
    memory: dict
    libtpu: str

    def info(self, file: str) -> dict:
        return {"topology": self.topology, "device_kind": self.device_kind, "file": file,
                "bytes": len(self.executable), "compile_s": round(self.compile_s, 4), "libtpu": self.libtpu,
                "cost_analysis": self.cost, "memory_analysis": self.memory}


def _plain(v):
    try:
        return float(v) if not isinstance(v, (int, bool)) else v
    except (TypeError, ValueError):
        return str(v)


def memory_stats(stats) -> dict:
    keys = [k for k in dir(stats) if k.endswith("_in_bytes")]
    return {k: int(getattr(stats, k)) for k in keys}


def compile_for_tpu(text: str, topology: str = DEFAULT_TOPOLOGY) -> TpuBuild:
    """Compile module text for one chip of ``topology``; raise with the reason when it cannot."""
    ok, why = available()
    if not ok:
        raise RuntimeError(f"cannot compile for TPU {topology!r}: {why}")
    # libtpu takes /tmp/libtpu_lockfile so that one process owns the TPU; compiling for a topology
    # description owns none, and any other process with jax (and libtpu installed) may hold that lock
    os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
    from jax._src import compiler as jcompiler
    from jax._src.lib import xla_client as xc
    from jax.experimental import topologies
    from .runtime import parse
    try:
        topo = topologies.get_topology_desc(topology, "tpu")
    except Exception as e:
        raise RuntimeError(f"libtpu could not describe TPU topology {topology!r} ({e}); use e.g. 'v5e:2x2', "
                           "'v4:2x2x1', 'v5p:2x2x1' or 'v6e:2x2'") from None
    dev = topo.devices[0]
    m, ctx = parse(text)
    t0 = time.perf_counter()
    with ctx:
        exe = dev.client.compile(m, executable_devices=xc.DeviceList((dev,)),
                                 compile_options=jcompiler.get_compile_options(num_replicas=1, num_partitions=1))
    dt = time.perf_counter() - t0
    cost = exe.cost_analysis()
    if isinstance(cost, list):
        cost = cost[0] if cost else {}
    return TpuBuild(topology=topology, device_kind=dev.device_kind, executable=exe.serialize(), compile_s=dt,
                    cost={k: _plain(v) for k, v in (cost or {}).items()},
                    memory=memory_stats(exe.get_compiled_memory_stats()), libtpu=libtpu_version() or "")
