"""Energy: measured (RAPL, NVML) where the machine exposes a counter, else the catalogue's power model.

Three sources, and every result names the one it used (``source``):

* ``rapl``: Intel/AMD RAPL package counters, ``/sys/class/powercap/intel-rapl:N/energy_uj`` (wraps at
  ``max_energy_range_uj``). Reading them may need root on recent kernels; unreadable counters count as
  absent.
* ``nvml``: an NVIDIA GPU through pynvml: the total-energy counter (Volta and later), the board power
  now (``nvmlDeviceGetPowerUsage``) and the enforced power limit as the maximum.
* ``model``: ``P(u) = idle_W + u * (max_W - idle_W)`` with the figures of the device's catalogue file
  (or given by the user: ``--power NAME=IDLE:MAX`` or a copied catalogue file), ``u`` the fraction of
  time the device computes.

When no source has the figures (this host has no RAPL here and ``host.json``'s power is null)
:class:`EnergyUnavailable` says what is missing and how to give it.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

POWERCAP = Path("/sys/class/powercap")


class EnergyUnavailable(Exception):
    """No source gives the power figures needed (the message says which and how to give them)."""


# ---- RAPL ----
@dataclass(frozen=True)
class RaplDomain:
    name: str               # package-0, dram, ...
    path: Path
    max_range_uj: int

    def read_uj(self) -> int:
        return int((self.path / "energy_uj").read_text())


def rapl_domains(root: Path = POWERCAP) -> list[RaplDomain]:
    """The top-level RAPL domains (packages) whose energy counter this process can read."""
    out = []
    for d in sorted(Path(root).glob("intel-rapl:*")):
        if d.name.count(":") != 1:          # sub-domains (core, uncore, dram) are inside the package
            continue
        try:
            name = (d / "name").read_text().strip() if (d / "name").is_file() else d.name
            int((d / "energy_uj").read_text())
            rng = int((d / "max_energy_range_uj").read_text()) if (d / "max_energy_range_uj").is_file() else 2**32
        except (OSError, ValueError):
            continue
        out.append(RaplDomain(name, d, rng))
    return out


# ---- NVML ----
def _nvml():
    try:
        import pynvml
        pynvml.nvmlInit()
        if pynvml.nvmlDeviceGetCount() < 1:
            return None
        return pynvml
    except Exception:            # no pynvml, no driver, no GPU
        return None


def nvml_power(index: int = 0) -> dict | None:
    """{"name", "power_W" (now), "limit_W", "source"} of GPU ``index`` from NVML, None without one."""
    nv = _nvml()
    if nv is None:
        return None
    h = nv.nvmlDeviceGetHandleByIndex(index)
    name = nv.nvmlDeviceGetName(h)
    name = name.decode() if isinstance(name, bytes) else name
    return {"name": name, "power_W": nv.nvmlDeviceGetPowerUsage(h) / 1e3,
            "limit_W": nv.nvmlDeviceGetEnforcedPowerLimit(h) / 1e3, "source": f"nvml: GPU {index} {name}"}


# ---- the power model ----
@dataclass(frozen=True)
class PowerModel:
    """``P(u) = idle_W + u (max_W - idle_W)``; ``source`` says where idle and max come from."""

    idle_W: float
    max_W: float
    source: str

    def __post_init__(self):
        if not (self.idle_W >= 0 and self.max_W >= 0):
            raise ValueError(f"power figures must be >= 0, got idle {self.idle_W} W, max {self.max_W} W")
        if self.max_W < self.idle_W:
            raise ValueError(f"max power {self.max_W} W is below idle power {self.idle_W} W")

    def power(self, utilisation: float) -> float:
        u = min(1.0, max(0.0, utilisation))
        return self.idle_W + u * (self.max_W - self.idle_W)

    def as_dict(self) -> dict:
        return {"idle_W": self.idle_W, "max_W": self.max_W, "source": self.source}


def parse_power(text: str) -> tuple[str, float, float]:
    """``NAME=IDLE:MAX`` (watts) -> (name, idle, max); ValueError naming what is wrong."""
    name, sep, rest = text.partition("=")
    idle, sep2, mx = rest.partition(":")
    try:
        if not sep or not sep2 or not name:
            raise ValueError
        i, m = float(idle), float(mx)
    except ValueError:
        raise ValueError(f"--power {text!r}: expected NAME=IDLE_W:MAX_W, e.g. host=40:180") from None
    if i < 0 or m < 0 or m < i:
        raise ValueError(f"--power {text!r}: watts must be >= 0 and max >= idle")
    return name, i, m


def rapl_power(root: Path = POWERCAP, seconds: float = 0.5) -> dict | None:
    """This machine's package power from RAPL: ``now_W`` (measured over ``seconds``) and ``limit_W`` (the
    long-term limit PL1, ``constraint_0_power_limit_uw``, summed over packages; None if not exposed)."""
    doms = rapl_domains(root)
    if not doms:
        return None
    with EnergyMeter(root=root, use_nvml=False) as m:
        time.sleep(seconds)
    limit = 0.0
    for d in doms:
        try:
            limit += int((d.path / "constraint_0_power_limit_uw").read_text()) / 1e6
        except (OSError, ValueError):
            limit = None
            break
    return {"now_W": m.reading.watts, "limit_W": limit or None, "source": m.reading.source}


def _local_gpu_matches(device, gpu_name: str) -> bool:
    """Whether the NVML GPU ``gpu_name`` is the catalogue device (its name's first word, e.g. h100, l4)."""
    import re
    stem = device.name.split("-")[0].lower()
    return device.kind == "gpu" and re.search(rf"\b{re.escape(stem)}\b", gpu_name.lower()) is not None


def measured_power(device, root: Path = POWERCAP) -> dict | None:
    """Power figures read on this machine for ``device``: RAPL for ``host``, NVML for a local GPU of the
    catalogue device's model. {"idle_W", "max_W", "source"} (a figure None when not exposed), or None."""
    if device.name == "host":
        r = rapl_power(root)
        if r is None:
            return None
        return {"idle_W": r["now_W"], "max_W": r["limit_W"],
                "source": f"{r['source']}: idle = package power measured now while xrec ran (an upper bound of "
                          "idle), max = RAPL long-term limit PL1"}
    n = nvml_power()
    if n is not None and _local_gpu_matches(device, n["name"]):
        return {"idle_W": n["power_W"], "max_W": n["limit_W"],
                "source": f"{n['source']}: idle = board power now, max = enforced power limit"}
    return None


def power_model(device, override: tuple[float, float] | None = None, *, measure: bool = True,
                root: Path = POWERCAP) -> PowerModel:
    """The power model of a catalogue device: ``override`` (idle, max) from the user, else its file's
    figures, else (``measure``) figures read here (:func:`measured_power`: RAPL for host, NVML for a local
    GPU of that model) for those the file lacks; :class:`EnergyUnavailable` when a figure stays unknown."""
    if override is not None:
        return PowerModel(override[0], override[1], f"given by the user (--power {device.name}=...)")
    idle, mx = device.power.get("idle_W"), device.power.get("max_W")
    missing = [(k, f) for k, f in (("idle_W", idle), ("max_W", mx)) if f is None or not f.known]
    if not missing:
        return PowerModel(idle.value, mx.value, f"catalogue power model ({device.path or device.name}: idle "
                          f"{idle.value:g} W [{idle.source}], max {mx.value:g} W [{mx.source}])")
    got = measured_power(device, root) if measure else None
    if got is not None:
        vals = {"idle_W": idle.value if idle is not None and idle.known else got["idle_W"],
                "max_W": mx.value if mx is not None and mx.known else got["max_W"]}
        if all(v is not None for v in vals.values()) and vals["max_W"] >= vals["idle_W"]:
            return PowerModel(vals["idle_W"], vals["max_W"],
                              f"power model with {', '.join(k for k, _ in missing)} from {got['source']}")
    why = "; ".join(f"{k} unknown" + (f" ({f.reason})" if f is not None and f.reason else "") for k, f in missing)
    if device.name == "host" and measure and not rapl_domains(root):
        why += "; this machine exposes no RAPL counter (/sys/class/powercap/intel-rapl*)"
    raise EnergyUnavailable(f"{device.name}: {why}; give --power {device.name}=IDLE_W:MAX_W or a copy of its "
                            "catalogue file with the power figures")


# ---- measuring a block ----
@dataclass(frozen=True)
class EnergyReading:
    joules: float
    seconds: float
    source: str

    @property
    def watts(self) -> float:
        return self.joules / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict:
        return {"joules": self.joules, "seconds": self.seconds, "watts": self.watts, "source": self.source}


class EnergyMeter:
    """``with EnergyMeter(model=pm, utilisation=u) as m: work()`` then ``m.reading``: RAPL if readable,
    else NVML, else the power model at ``utilisation`` over the elapsed time (EnergyUnavailable when
    none is given)."""

    def __init__(self, model: PowerModel | None = None, utilisation: float = 1.0, *, root: Path = POWERCAP,
                 use_nvml: bool = True):
        self.model, self.utilisation, self.root, self.use_nvml = model, utilisation, root, use_nvml
        self.reading: EnergyReading | None = None

    def __enter__(self):
        self._domains = rapl_domains(self.root)
        self._nv = None if self._domains or not self.use_nvml else _nvml()
        if self._domains:
            self._start = [d.read_uj() for d in self._domains]
        elif self._nv is not None:
            h = self._nv.nvmlDeviceGetHandleByIndex(0)
            try:
                self._start = self._nv.nvmlDeviceGetTotalEnergyConsumption(h)      # mJ
            except Exception:
                self._nv = None
        if not self._domains and self._nv is None and self.model is None:
            raise EnergyUnavailable("no RAPL counter (/sys/class/powercap/intel-rapl*/energy_uj) or NVML GPU here, "
                                    "and no power model given: give the device's idle and max watts")
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        dt = time.perf_counter() - self._t0
        if self._domains:
            j = 0.0
            for d, s in zip(self._domains, self._start):
                e = d.read_uj()
                j += ((e - s) % d.max_range_uj) / 1e6
            src = "rapl: " + ", ".join(f"{d.path} ({d.name})" for d in self._domains)
        elif self._nv is not None:
            h = self._nv.nvmlDeviceGetHandleByIndex(0)
            j = (self._nv.nvmlDeviceGetTotalEnergyConsumption(h) - self._start) / 1e3
            src = "nvml: total energy counter of GPU 0"
        else:
            j = self.model.power(self.utilisation) * dt
            src = f"model at utilisation {self.utilisation:.2f}: {self.model.source}"
        self.reading = EnergyReading(j, dt, src)
        return False
