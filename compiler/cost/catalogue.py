"""The hardware catalogue: one JSON file per device in ``hardware/``, checked against a schema.

A file (``hardware/<name>.json``)::

  {"name": "<name>", "description": "...", "kind": "cpu" | "gpu" | "tpu" | "fpga",
   "targets": ["cpu", ...],                     xrec targets that run on it
   "peak_flops": {"f32": FIG, "bf16": FIG, ...},  FLOP/s per xrec dtype (DType values), at least one
   "memory": {"main": TIER, "cache": TIER, ...},  "main" required
   "links": {"pcie": FIG, "nvlink": FIG, ...},    bytes/s per direction
   "power": {"idle_W": FIG, "max_W": FIG},
   "price_per_hour": FIG,                        USD, on demand
   "call_overhead_s": {"<target>": FIG, ...},    seconds per call (kernel launch), optional per target
   "probe": "host"}                              optional: figures with a "probe" key are measured here
  TIER = {"capacity_bytes": FIG, "bandwidth_Bps": FIG[, "gather_bandwidth_Bps": FIG]}
  FIG  = {"value": number >= 0, "source": "datasheet / MLPerf / measured here"}
       | {"value": null, "source": ..., "reason": "why it is unknown"}

A missing or negative field, an unknown key or a figure without a source is a :class:`CatalogueError`
naming the file and the field. ``host`` is probed at run time with ``xrec.bench.roofline``'s probes
(FMA peak, stream and random-gather bandwidth) and /proc, /sys (memory, last-level cache); the result
is cached per CPU model and thread count under ``knobs.cache_dir/cost``.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

HARDWARE_DIR = Path(__file__).with_name("hardware")
KINDS = ("cpu", "gpu", "tpu", "fpga")
DTYPES = ("f64", "f32", "tf32", "bf16", "f16", "f8", "i8", "i4")
_TOP = {"name", "description", "kind", "targets", "peak_flops", "memory", "links", "power", "price_per_hour",
        "call_overhead_s", "probe", "notes"}
_REQUIRED = ("name", "description", "kind", "targets", "peak_flops", "memory", "links", "power", "price_per_hour")


class CatalogueError(ValueError):
    """A catalogue file breaks the schema, or a device name is unknown."""


@dataclass(frozen=True)
class Figure:
    """One number and where it comes from; ``value`` None when unknown (``reason`` says why)."""

    value: float | None
    source: str
    reason: str = ""

    @property
    def known(self) -> bool:
        return self.value is not None

    def as_dict(self) -> dict:
        d: dict[str, Any] = {"value": self.value, "source": self.source}
        if self.reason:
            d["reason"] = self.reason
        return d


@dataclass(frozen=True)
class Tier:
    capacity_bytes: Figure
    bandwidth_Bps: Figure
    gather_bandwidth_Bps: Figure | None = None     # scattered-row reads, when measured


@dataclass(frozen=True)
class Device:
    name: str
    description: str
    kind: str
    targets: tuple[str, ...]
    peak_flops: Mapping[str, Figure]
    memory: Mapping[str, Tier]
    links: Mapping[str, Figure]
    power: Mapping[str, Figure]
    price_per_hour: Figure
    call_overhead_s: Mapping[str, Figure] = field(default_factory=dict)
    path: str = ""

    @property
    def cache_bytes(self) -> int:
        """Capacity of the "cache" tier (0 when the device has none or it is unknown)."""
        t = self.memory.get("cache")
        return int(t.capacity_bytes.value) if t is not None and t.capacity_bytes.known else 0

    @property
    def host_link(self) -> Figure | None:
        """The link inputs and outputs cross (PCIe), None for a CPU (its memory is the host's)."""
        if self.kind == "cpu":
            return None
        return self.links.get("pcie")

    def as_dict(self) -> dict:
        return {"name": self.name, "description": self.description, "kind": self.kind, "targets": list(self.targets),
                "peak_flops": {k: f.as_dict() for k, f in self.peak_flops.items()},
                "memory": {k: {"capacity_bytes": t.capacity_bytes.as_dict(), "bandwidth_Bps": t.bandwidth_Bps.as_dict(),
                               **({"gather_bandwidth_Bps": t.gather_bandwidth_Bps.as_dict()}
                                  if t.gather_bandwidth_Bps else {})} for k, t in self.memory.items()},
                "links": {k: f.as_dict() for k, f in self.links.items()},
                "power": {k: f.as_dict() for k, f in self.power.items()},
                "price_per_hour": self.price_per_hour.as_dict(),
                "call_overhead_s": {k: f.as_dict() for k, f in self.call_overhead_s.items()}, "path": self.path}


def device_names() -> list[str]:
    """The devices shipped in the catalogue (file stems of hardware/*.json)."""
    return sorted(p.stem for p in HARDWARE_DIR.glob("*.json"))


def load_device(name_or_path: str, *, probe_quick: bool = False, refresh: bool = False,
                threads: int | None = None) -> Device:
    """A catalogue device by name (``device_names()``), ``host@T`` (this machine probed at T threads), or
    a JSON file of the same schema.

    ``probe_quick``/``refresh``/``threads`` apply to probed devices (host): smaller probes, re-probe ignoring
    the cache, the thread count to probe at (default: ``XREC_THREADS`` when set, else all usable CPUs).
    """
    p = Path(name_or_path)
    if p.suffix == ".json" or p.is_file():
        if not p.is_file():
            raise CatalogueError(f"hardware file {p} does not exist")
        return load_file(p, probe_quick=probe_quick, refresh=refresh, threads=threads)
    m = re.fullmatch(r"host@(\d+)", name_or_path)
    if m:           # this machine at a given thread count: one device = one server worker of that many threads
        t = int(m.group(1))
        if not 1 <= t <= 4096:
            raise CatalogueError(f"{name_or_path!r}: the thread count after host@ must be >= 1")
        from dataclasses import replace
        return replace(load_file(HARDWARE_DIR / "host.json", probe_quick=probe_quick, refresh=refresh, threads=t),
                       name=name_or_path)
    f = HARDWARE_DIR / f"{name_or_path}.json"
    if not f.is_file():
        raise CatalogueError(f"unknown hardware {name_or_path!r}; known: {', '.join(device_names())}, host@THREADS "
                             "(or give a path to a JSON file in the catalogue's schema)")
    return load_file(f, probe_quick=probe_quick, refresh=refresh, threads=threads)


def load_file(path: Path, *, probe_quick: bool = False, refresh: bool = False, threads: int | None = None) -> Device:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CatalogueError(f"{path}: cannot read a JSON object ({e})") from None
    probed = None
    if isinstance(data, dict) and data.get("probe") is not None:
        if data["probe"] != "host":
            raise CatalogueError(f"{path}: field 'probe' must be \"host\", got {data['probe']!r}")
        probed = probe_host(quick=probe_quick, refresh=refresh, threads=threads)
    dev = parse_device(data, str(path), probed)
    if probed and probed.get("cpu_model"):
        from dataclasses import replace
        dev = replace(dev, description=f"{dev.description}: {probed['cpu_model']}, {probed.get('threads')} threads")
    return dev


# ---- schema ----
def _err(where: str, field_: str, msg: str) -> CatalogueError:
    return CatalogueError(f"{where}: field {field_!r} {msg}")


def _figure(obj, where: str, field_: str, probed: Mapping[str, float] | None) -> Figure:
    if not isinstance(obj, dict):
        raise _err(where, field_, f"must be an object {{\"value\": number, \"source\": text}}, got {obj!r}")
    extra = set(obj) - {"value", "source", "reason", "probe", "scale"}
    if extra:
        raise _err(where, field_, f"has unknown keys {sorted(extra)} (allowed: value, source, reason, probe, scale)")
    if "source" not in obj or not isinstance(obj["source"], str) or not obj["source"].strip():
        raise _err(where, field_ + ".source", "is missing or empty: every figure names its source")
    if "probe" in obj:
        if probed is None:
            raise _err(where, field_ + ".probe", "needs \"probe\": \"host\" at the top of the file")
        key = obj["probe"]
        if key not in probed or key == "cpu_model":
            raise _err(where, field_ + ".probe", f"names an unknown probe {key!r}; probes: {', '.join(sorted(probed))}")
        v = probed[key]
        if v is None:
            return Figure(None, obj["source"], f"the probe {key} gave no value on this machine")
        return Figure(float(v) * float(obj.get("scale", 1.0)), obj["source"])
    if "value" not in obj:
        raise _err(where, field_ + ".value", "is missing")
    v = obj["value"]
    if v is None:
        if not isinstance(obj.get("reason"), str) or not obj["reason"].strip():
            raise _err(where, field_ + ".reason", "is missing: an unknown (null) value must say why")
        return Figure(None, obj["source"], obj["reason"])
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise _err(where, field_ + ".value", f"must be a number or null, got {v!r}")
    if v < 0:
        raise _err(where, field_ + ".value", f"must not be negative, got {v}")
    return Figure(float(v), obj["source"], obj.get("reason", ""))


def _figures(obj, where: str, field_: str, probed, *, keys=None, required=()) -> dict[str, Figure]:
    if not isinstance(obj, dict):
        raise _err(where, field_, f"must be an object, got {obj!r}")
    for r in required:
        if r not in obj:
            raise _err(where, f"{field_}.{r}", "is missing")
    out = {}
    for k, v in obj.items():
        if keys is not None and k not in keys:
            raise _err(where, f"{field_}.{k}", f"is not a known key; use one of {', '.join(keys)}")
        out[k] = _figure(v, where, f"{field_}.{k}", probed)
    return out


def parse_device(data, where: str, probed: Mapping[str, float] | None = None) -> Device:
    """Check ``data`` (a parsed catalogue file) against the schema; ``where`` names it in errors."""
    if not isinstance(data, dict):
        raise CatalogueError(f"{where}: a catalogue file holds one JSON object, got {type(data).__name__}")
    for k in _REQUIRED:
        if k not in data:
            raise _err(where, k, "is missing")
    extra = set(data) - _TOP
    if extra:
        raise _err(where, sorted(extra)[0], f"is not a known field; fields: {', '.join(sorted(_TOP))}")
    for k in ("name", "description"):
        if not isinstance(data[k], str) or not data[k].strip():
            raise _err(where, k, "must be a non-empty string")
    stem = Path(where).stem
    if Path(where).parent == HARDWARE_DIR and data["name"] != stem:
        raise _err(where, "name", f"must be the file's name {stem!r}, got {data['name']!r}")
    if data["kind"] not in KINDS:
        raise _err(where, "kind", f"must be one of {', '.join(KINDS)}, got {data['kind']!r}")
    if not isinstance(data["targets"], list) or not data["targets"] or \
            not all(isinstance(t, str) for t in data["targets"]):
        raise _err(where, "targets", "must be a non-empty list of xrec target names")
    peaks = _figures(data["peak_flops"], where, "peak_flops", probed, keys=DTYPES)
    if not any(f.known for f in peaks.values()):
        raise _err(where, "peak_flops", "must give at least one known peak")
    mem_obj = data["memory"]
    if not isinstance(mem_obj, dict) or "main" not in mem_obj:
        raise _err(where, "memory.main", "is missing")
    memory = {}
    for tier, t in mem_obj.items():
        if not isinstance(t, dict):
            raise _err(where, f"memory.{tier}", f"must be an object, got {t!r}")
        figs = _figures(t, where, f"memory.{tier}", probed,
                        keys=("capacity_bytes", "bandwidth_Bps", "gather_bandwidth_Bps"),
                        required=("capacity_bytes", "bandwidth_Bps"))
        memory[tier] = Tier(figs["capacity_bytes"], figs["bandwidth_Bps"], figs.get("gather_bandwidth_Bps"))
    if not memory["main"].bandwidth_Bps.known:
        raise _err(where, "memory.main.bandwidth_Bps.value", "must be known (the roofline needs it)")
    links = _figures(data["links"], where, "links", probed)
    power = _figures(data["power"], where, "power", probed, keys=("idle_W", "max_W"), required=("idle_W", "max_W"))
    price = _figure(data["price_per_hour"], where, "price_per_hour", probed)
    overhead = _figures(data.get("call_overhead_s", {}), where, "call_overhead_s", probed)
    return Device(data["name"], data["description"], data["kind"], tuple(data["targets"]), peaks, memory, links,
                  power, price, overhead, where)


# ---- this host ----
def _size_bytes(text: str) -> int | None:
    m = re.match(r"\s*(\d+)\s*([KMG]?)", text)
    if not m:
        return None
    return int(m.group(1)) * {"": 1, "K": 2**10, "M": 2**20, "G": 2**30}[m.group(2)]


def probe_host(*, quick: bool = False, refresh: bool = False, threads: int | None = None) -> dict[str, float | None]:
    """This machine's figures: ``xrec.bench.roofline.machine_ceilings`` plus memory and LLC size.

    Cached per CPU model, thread count and probe mode under ``knobs.cache_dir/cost``.
    """
    from xrec.bench.machine import machine_info, usable_cpus
    from xrec.bench.roofline import machine_ceilings
    from xrec.config import knobs
    info = machine_info()
    threads = threads or (knobs.threads if knobs.threads > 0 else usable_cpus())
    key = hashlib.sha256(f"{info['cpu_model']}|{threads}|{quick}".encode()).hexdigest()[:16]
    cache = Path(knobs.cache_dir) / "cost" / f"host-{key}.json"
    if cache.is_file() and not refresh:
        try:
            return json.loads(cache.read_text())
        except (OSError, json.JSONDecodeError):
            pass
    out = host_figures(machine_ceilings(threads, quick=quick), info, threads)
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(out))
    except OSError:
        pass
    return out


def host_figures(ceilings: Mapping, info: Mapping, threads: int | None = None) -> dict:
    """The probe dict host.json's figures read: ``ceilings`` (``xrec.bench.roofline.machine_ceilings``)
    and ``info`` (``xrec.bench.machine.machine_info``); what ``probe_host`` caches, and what a bench run
    that probed its own ceilings passes to :func:`host_device`."""
    caches = info.get("caches") or {}
    llc = next((caches[k] for k in ("L3", "L2") if k in caches), "")
    return {"fma_peak_GFLOPs": float(ceilings["fma_peak_GFLOPs"]),
            "stream_read_GBps": float(ceilings["stream_read_GBps"]),
            "gather_GBps": float(ceilings["gather_GBps"]), "memory_bytes": info.get("memory_bytes") or None,
            "llc_bytes": _size_bytes(llc) if llc else None, "threads": threads or ceilings.get("threads"),
            "cpu_model": info.get("cpu_model", "")}


def host_device(probed: Mapping, how: str = "") -> Device:
    """The catalogue's ``host`` device with the figures ``probed`` (see :func:`host_figures`);
    ``how`` is added to its description (e.g. "ceilings probed in this bench run")."""
    from dataclasses import replace
    path = HARDWARE_DIR / "host.json"
    dev = parse_device(json.loads(path.read_text()), str(path), probed)
    return replace(dev, description=f"{dev.description}: {probed.get('cpu_model', '')}, {probed.get('threads')} "
                                    f"threads{', ' + how if how else ''}")
