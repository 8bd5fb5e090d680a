"""The configuration space of ``xrec plan`` and the IR each point is costed on.

A configuration is (device type, device count, xrec target, embedding precision, batching policy).
The IR depends only on (target, precision): the model is imported once, the recognize passes run once,
each precision is compressed once by the compression planner (``xrec.api._compress``, the path of
``xrec compile --quantize``; its calibration report gives the AUC change), then each target's own
passes run on it, exactly as ``xrec.api.lower`` does.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence

from .queueing import Policy

PRECISIONS = ("fp32", "fp16", "int8", "int4")
SERVING_TARGETS = ("cpu", "xla", "triton", "hls")          # "reference" is the numpy interpreter
MAX_BATCHES = (1, 8, 32, 128, 512)
MAX_DELAYS_US = (0, 250, 1000, 4000)


@dataclass
class Variant:
    """The optimised IR of the model for one (target, precision), or why it could not be built."""

    target: str
    precision: str
    graph: object | None
    accuracy: dict | None              # the compression report (AUC change ...), None for fp32
    error: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def auc_drop(self) -> float | None:
        """How much AUC the precision loses on the calibration report (0 for fp32, None if unknown)."""
        if self.precision == "fp32":
            return 0.0
        if not self.accuracy or self.accuracy.get("auc_change") is None:
            return None
        return max(0.0, -float(self.accuracy["auc_change"]))

    @property
    def accuracy_note(self) -> str:
        if self.precision == "fp32":
            return "fp32 (baseline)"
        a = self.accuracy
        if not a:
            return "not accuracy-checked"
        if a.get("auc_change") is None:
            return "not accuracy-checked: the model's output is not a probability (no AUC)"
        labels = "synthetic labels" if str(a.get("labels", "synthetic")).startswith("synthetic") else a["labels"]
        return f"AUC {a['auc_change']:+.5f} ({a['samples']} samples, {labels})"


def policies(max_batches: Iterable[int] = MAX_BATCHES, max_delays_us: Iterable[int] = MAX_DELAYS_US) -> list[Policy]:
    """Every (max batch, max delay) pair; a max batch of 1 needs no delay (one policy for it)."""
    out = []
    for b in sorted(set(max_batches)):
        for d in sorted(set(max_delays_us)):
            if b == 1 and d:
                continue
            out.append(Policy(int(b), d / 1e6))
    return out


def build_variants(model: str, targets: Sequence[str], precisions: Sequence[str], *, max_rows: int | None = None,
                   calib_samples: int = 512, options: dict | None = None) -> dict[tuple[str, str], Variant]:
    """(target, precision) -> :class:`Variant` for ``model`` (a zoo name, file.py:factory or .pt2).

    Remembered per process for a zoo model (same arguments, same IR): a second plan in one process
    (tests, notebooks) costs only the scoring."""
    import json
    from xrec import zoo
    key = (model, tuple(targets), tuple(precisions), max_rows, calib_samples, json.dumps(options, sort_keys=True))
    if model in zoo.list_models():
        if key not in _VARIANTS:
            _VARIANTS[key] = _build_variants(*key[:5], options=options)
        return _VARIANTS[key]
    return _build_variants(model, targets, precisions, max_rows, calib_samples, options=options)


_VARIANTS: dict = {}


def _build_variants(model, targets, precisions, max_rows, calib_samples, *, options):
    from xrec.api import _compress
    from xrec.frontend import import_exported, import_model
    from xrec.model_arg import resolve
    from xrec.passes.pipeline import FUSE, RECOGNIZE, run_pipeline
    from xrec.targets import get_target

    src = resolve(model, max_rows=max_rows)
    if src.exported is not None:
        g0 = import_exported(src.exported, src.name)
    else:
        g0 = import_model(src.module, tuple(src.example_inputs), name=src.name)
    g1 = run_pipeline(g0, RECOGNIZE)
    out: dict[tuple[str, str], Variant] = {}
    for prec in precisions:
        acc, err = None, ""
        if prec == "fp32":
            qg = g1
        else:
            try:
                qg, acc = _compress(g1, prec, calibration=src.make_inputs, calib_samples=calib_samples,
                                    model=src.module)
            except Exception as e:          # a precision the model cannot take: every target says why
                qg, err = None, f"{prec} compression failed: {type(e).__name__}: {e}"
        for t in targets:
            if qg is None:
                out[t, prec] = Variant(t, prec, None, acc, err)
                continue
            notes = []
            try:
                tgt = get_target(t)
                opts = tgt.parse_options((options or {}).get(t))
                g = run_pipeline(qg, list(FUSE) + list(tgt.passes(opts)))
            except Exception as e:
                notes.append(f"target {t}'s passes failed here ({type(e).__name__}: {e}); costed the IR "
                             "without them")
                g = run_pipeline(qg, list(FUSE))
            out[t, prec] = Variant(t, prec, g, acc, "", notes)
    return out
