"""One performance model per target: ``predict_target(g, device, target, batch)`` -> :class:`Prediction`.

Every target's time is ``roofline term / efficiency + fixed overheads`` (``xrec.cost.model``); what
differs per target is where the work and the efficiencies come from:

  cpu        the IR's work (``graph_work``) and a calibration profile written by ``xrec calibrate``;
             dense weights streamed per layer as the target schedules them (``targets/cpu.py``)
  reference  as cpu (the reference runs on this host)
  xla, hls, triton  their own models, registered by ``xrec.cost.targets.<name>`` with
             :func:`register_perf_model` (the compiled executable's cost analysis, the HLS cycle
             report, the catalogue's roofline plus launch overhead)

A target without a registered model gets the plain roofline of ``xrec.cost.model.predict``.
Calibration profiles live in ``profile_path(device, target)`` (under ``knobs.cache_dir``), keyed by
the device (for ``host``: the CPU model and thread count), and are picked up automatically.
"""
from __future__ import annotations

import hashlib
import importlib
from pathlib import Path
from typing import Callable

from .catalogue import Device
from .model import PerfParams, Prediction, predict
from .rules import CostError

PerfModel = Callable[..., Prediction]      # (g, device, target, batch, params, **work_kw) -> Prediction
_MODELS: dict[str, PerfModel] = {}
_LOADED = False


def register_perf_model(target: str):
    """Decorator: ``fn(g, device, target, batch, params, **work_kw) -> Prediction`` is ``target``'s model."""
    def deco(fn: PerfModel) -> PerfModel:
        if target in _MODELS and _MODELS[target] is not fn:
            raise CostError(f"a performance model for target {target!r} is already registered "
                            f"({_MODELS[target].__module__}); one model per target")
        _MODELS[target] = fn
        return fn
    return deco


def _load_target_models() -> None:
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    for name in ("cpu", "xla", "hls", "triton"):
        try:
            importlib.import_module(f"{__package__}.targets.{name}")
        except ModuleNotFoundError as e:
            if e.name and e.name.startswith(f"{__package__}.targets"):
                continue            # that target's model is not part of this build
            raise


def perf_model_for(target: str) -> PerfModel:
    _load_target_models()
    return _MODELS.get(target, _roofline)


def _roofline(g, device: Device, target: str, batch: int, params: PerfParams | None = None, **work_kw) -> Prediction:
    return predict(g, device, target, batch, params, **work_kw)


def device_key(device: Device) -> str:
    """A file-name-safe key of the physical device: the catalogue name, plus a hash of the CPU model and
    thread count for the probed host (a profile measured on one machine is not used on another)."""
    if device.name != "host" and not device.name.startswith("host@"):
        return device.name
    return "host-" + hashlib.sha256(device.description.encode()).hexdigest()[:12]


def profile_path(device: Device, target: str) -> Path:
    from xrec.config import knobs
    return Path(knobs.cache_dir) / "calibration" / f"{target}-{device_key(device)}.json"


def load_profile(device: Device, target: str) -> PerfParams | None:
    """The calibration profile ``xrec calibrate`` wrote for this device and target, or None."""
    p = profile_path(device, target)
    return PerfParams.from_json(p) if p.is_file() else None


def predict_target(g, device: Device, target: str, batch: int, params: PerfParams | None = None,
                   *, use_profile: bool = True, **work_kw) -> Prediction:
    """``target``'s predicted time for ``g`` at ``batch`` on ``device``.

    ``params`` None: the stored calibration profile when there is one (``use_profile``), else the
    uncalibrated roofline (a lower bound).
    """
    if target not in device.targets:
        raise CostError(f"target {target!r} does not run on {device.name} (its targets: "
                        f"{', '.join(device.targets)})")
    if params is None and use_profile:
        params = load_profile(device, target)
    return perf_model_for(target)(g, device, target, batch, params, **work_kw)
