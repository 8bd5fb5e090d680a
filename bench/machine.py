"""What machine a benchmark ran on, and how busy it was with other work.

``machine_info()`` reads /proc and /sys (Linux) and never imports the
optional systems: package versions come from installed metadata.
``LoadMonitor`` compares the whole machine's busy CPU time with this
process's own during a run, so a results page can say how much of the CPU
other processes took (on a shared 2-vCPU VM that is often most of the story).
"""
from __future__ import annotations

import os
import platform
import resource
import subprocess
import time
from importlib import metadata
from pathlib import Path

# ISA extensions worth reporting for CPU inference kernels (cpuinfo flag names)
ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512dq", "avx512cd", "avx512bw",
             "avx512vl", "avx512_vnni", "avx512_bf16", "avx512_fp16", "avx512vbmi", "avx_vnni",
             "amx_tile", "amx_bf16", "amx_int8")
PACKAGES = ("torch", "numpy", "onnx", "onnxruntime", "onnxscript", "apache-tvm", "matplotlib", "rich", "xrec")


def _cpuinfo() -> dict[str, str]:
    out: dict[str, str] = {}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return out
    for line in text.splitlines():
        if not line.strip():
            break                                   # first processor only
        k, _, v = line.partition(":")
        out.setdefault(k.strip(), v.strip())
    return out


def _meminfo() -> dict[str, int]:
    out = {}
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            k, _, v = line.partition(":")
            parts = v.split()
            if parts and parts[0].isdigit():
                out[k] = int(parts[0]) * (1024 if parts[1:] == ["kB"] else 1)
    except OSError:
        pass
    return out


def _caches() -> dict[str, str]:
    out = {}
    base = Path("/sys/devices/system/cpu/cpu0/cache")
    for d in sorted(base.glob("index*")):
        try:
            level = (d / "level").read_text().strip()
            kind = (d / "type").read_text().strip()
            size = (d / "size").read_text().strip()
            shared = (d / "shared_cpu_list").read_text().strip()
        except OSError:
            continue
        name = f"L{level}" + {"Data": "d", "Instruction": "i"}.get(kind, "")
        out[name] = f"{size} (shared by cpus {shared})"
    return out


def _uarch(vendor: str, family: int, model: int) -> str:
    """A best guess from CPUID family/model (a VM may report a masked model)."""
    if vendor == "AuthenticAMD":
        if family == 0x1A:
            return "Zen 5"
        if family == 0x19:
            if 0x10 <= model <= 0x1F or 0x60 <= model <= 0x7F or 0xA0 <= model <= 0xAF:
                return "Zen 4"
            return "Zen 3"
        if family == 0x17:
            return "Zen / Zen 2"
    return ""


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for p in PACKAGES:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            pass
    return out


def _cxx_version(cxx: str) -> str:
    try:
        r = subprocess.run([cxx, "--version"], capture_output=True, text=True, timeout=20)
        return r.stdout.splitlines()[0] if r.returncode == 0 and r.stdout else ""
    except (OSError, subprocess.SubprocessError):
        return ""


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def machine_info() -> dict:
    """CPU model, ISA extensions, cores, caches, memory, software versions."""
    from xrec.config import knobs
    ci = _cpuinfo()
    flags = set(ci.get("flags", "").split())
    vendor = ci.get("vendor_id", "")
    try:
        family, model = int(ci.get("cpu family", "0")), int(ci.get("model", "0"))
    except ValueError:
        family, model = 0, 0
    isa = [f for f in ISA_FLAGS if f in flags]
    best = ("avx512" if "avx512f" in flags else "avx2" if {"avx2", "fma"} <= flags
            else "sse4.2" if "sse4_2" in flags else "scalar")
    mem = _meminfo()
    return {
        "cpu_model": ci.get("model name", platform.processor() or platform.machine()),
        "vendor": vendor,
        "cpu_family": family,
        "cpu_model_id": model,
        "uarch_guess": _uarch(vendor, family, model),
        "arch": platform.machine(),
        "isa": isa,
        "best_isa": best,
        "cores": usable_cpus(),
        "logical_cpus": os.cpu_count(),
        "hypervisor": "hypervisor" in flags,
        "caches": _caches(),
        "memory_bytes": mem.get("MemTotal", 0),
        "memory_gib": round(mem.get("MemTotal", 0) / 2**30, 1),
        "kernel": platform.release(),
        "cxx": _cxx_version(knobs.cxx),
        "versions": _versions(),
    }


def describe(info: dict) -> str:
    """One line: 'AMD EPYC (Zen 4 guess), 2 cores, avx512, 23.4 GiB'."""
    u = f" ({info['uarch_guess']} by CPUID)" if info.get("uarch_guess") else ""
    vm = ", VM" if info.get("hypervisor") else ""
    return (f"{info.get('cpu_model', '?')}{u}, {info.get('cores', '?')} cores{vm}, "
            f"{info.get('best_isa', '?')}, {info.get('memory_gib', '?')} GiB")


def _proc_stat() -> tuple[float, float, float] | None:
    """(busy, steal, total) jiffies over all CPUs, or None off Linux."""
    try:
        parts = Path("/proc/stat").read_text().splitlines()[0].split()
    except OSError:
        return None
    v = [float(x) for x in parts[1:]]
    v += [0.0] * (8 - len(v))
    user, nice, system, idle, iowait, irq, softirq, steal = v[:8]
    busy = user + nice + system + irq + softirq
    return busy, steal, busy + idle + iowait + steal


def _own_cpu_s() -> float:
    s = resource.getrusage(resource.RUSAGE_SELF)
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


class LoadMonitor:
    """How much CPU other processes used while we ran.

    ``other_busy_frac`` = (machine busy CPU time - this process's CPU time) /
    (elapsed x CPUs): 0 on an idle machine, 1 if others kept every CPU busy.
    Children count as ours (g++, inductor's compile workers) only once they
    have been waited for, so it slightly over-reports others during compiles.
    """

    def __init__(self, sample_processes: bool = True):
        self._t0 = self._stat0 = self._own0 = None
        self._load0 = None
        self._sampler = ProcessSampler() if sample_processes else None

    def start(self) -> "LoadMonitor":
        if self._sampler:
            self._sampler.start()
        self._t0 = time.monotonic()
        self._stat0 = _proc_stat()
        self._own0 = _own_cpu_s()
        self._load0 = os.getloadavg() if hasattr(os, "getloadavg") else None
        return self

    def stop(self) -> dict:
        t1, stat1, own1 = time.monotonic(), _proc_stat(), _own_cpu_s()
        out = {"elapsed_s": round(t1 - self._t0, 3),
               "loadavg_start": list(self._load0) if self._load0 else None,
               "loadavg_end": list(os.getloadavg()) if hasattr(os, "getloadavg") else None}
        if self._stat0 and stat1:
            hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
            busy = (stat1[0] - self._stat0[0]) / hz
            steal = (stat1[1] - self._stat0[1]) / hz
            total = (stat1[2] - self._stat0[2]) / hz
            own = own1 - self._own0
            if total > 0:
                out["other_busy_frac"] = round(max(0.0, busy - own) / total, 3)
                out["own_busy_frac"] = round(min(own, busy) / total, 3)
                out["steal_frac"] = round(steal / total, 3)
        if self._sampler:
            out["other_processes_cpu_s"] = self._sampler.stop()
        return out


_SAMPLER = r"""
import json, os, sys, time
me, period = int(sys.argv[1]), float(sys.argv[2])
hz = os.sysconf("SC_CLK_TCK")
last, total = {}, {}

def snap():
    procs = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                raw = f.read()
        except OSError:
            continue
        comm = raw[raw.index("(") + 1:raw.rindex(")")]
        if comm.startswith("kworker"):
            comm = "kworker"
        rest = raw[raw.rindex(")") + 2:].split()
        procs[int(d)] = (comm, int(rest[1]), int(rest[11]) + int(rest[12]))   # comm, ppid, utime+stime
    return procs

def ours(pid, procs):
    seen = 0
    while pid > 1 and seen < 64:
        if pid == me or pid == os.getpid():
            return True
        pid = procs.get(pid, ("", 0, 0))[1]
        seen += 1
    return False

def step(first=False):
    procs = snap()
    for pid, (comm, ppid, t) in procs.items():
        prev = last.get(pid)
        last[pid] = (comm, t)
        if first:
            continue
        d = t - prev[1] if prev and prev[0] == comm else t      # a new process: all of its CPU time
        if d > 0 and not ours(pid, procs):
            total[comm] = total.get(comm, 0) + d

step(first=True)
try:
    while True:
        time.sleep(period)
        step()
        if sys.stdin in __import__("select").select([sys.stdin], [], [], 0)[0]:
            break
except KeyboardInterrupt:
    pass
step()
top = sorted(total.items(), key=lambda kv: -kv[1])[:8]
print(json.dumps([[k, round(v / hz, 1)] for k, v in top]))
"""


class ProcessSampler:
    """What else ran: CPU seconds per command name of processes outside this process tree.

    A separate Python process samples /proc every ``period`` seconds (so no thread of ours
    competes for the GIL while we time), which also catches short-lived jobs (compiler
    invocations) that start and end within the run.
    """

    def __init__(self, period: float = 2.0):
        self.period = period
        self._p = None

    def start(self) -> "ProcessSampler":
        import sys
        if not Path("/proc/self/stat").exists():
            return self
        try:
            self._p = subprocess.Popen([sys.executable, "-c", _SAMPLER, str(os.getpid()), str(self.period)],
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                       text=True)
        except OSError:
            self._p = None
        return self

    def stop(self) -> list:
        """[[command, cpu_seconds], ...] the 8 busiest other commands, or [] where unknown."""
        if self._p is None:
            return []
        try:
            out, _ = self._p.communicate("stop\n", timeout=30)
            import json
            return json.loads(out or "[]")
        except (subprocess.SubprocessError, ValueError):
            self._p.kill()
            return []
