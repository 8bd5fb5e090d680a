"""Load a kernels file with Triton's decorators in interpreter or GPU mode.

Triton decides between its CPU interpreter and its GPU compiler when a
kernel is *decorated* (``@triton.jit`` reads ``triton.knobs.runtime.interpret``,
i.e. ``TRITON_INTERPRET``). So the kernels are never imported as a normal
module: ``load_kernels`` executes the file into a fresh module with the knob
scoped to the requested mode, and nothing else in the process changes.
"""
from __future__ import annotations

import hashlib
import importlib.util
import sys
import threading
from pathlib import Path
from types import ModuleType

TEMPLATE = Path(__file__).with_name("kernels.py")
_CACHE: dict[tuple[str, str, bool], ModuleType] = {}
_LOCK = threading.Lock()


def has_cuda() -> bool:
    import torch
    return bool(torch.cuda.is_available())


def load_kernels(path: str | Path = TEMPLATE, interpret: bool | None = None) -> ModuleType:
    """The kernels in ``path`` decorated for the interpreter (``interpret=True``) or the GPU.

    ``interpret=None`` picks the interpreter exactly when no CUDA device is present.
    Modules are cached per (file content, mode).
    """
    import triton

    if interpret is None:
        interpret = not has_cuda()
    path = Path(path).resolve()
    text = path.read_bytes()
    digest = hashlib.sha256(text).hexdigest()[:16]
    key = (str(path), digest, bool(interpret))
    with _LOCK:
        mod = _CACHE.get(key)
        if mod is not None:
            return mod
        name = f"xrec_triton_kernels_{'interp' if interpret else 'gpu'}_{digest}"
        spec = importlib.util.spec_from_file_location(name, path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod          # Triton resolves a kernel's globals through its module
        with triton.knobs.runtime.scope():
            triton.knobs.runtime.interpret = bool(interpret)
            spec.loader.exec_module(mod)
        mod.INTERPRETED = bool(interpret)
        _CACHE[key] = mod
        return mod
