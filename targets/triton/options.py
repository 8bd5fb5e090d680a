"""The triton target's options: one frozen, typed dataclass (see ``targets/options.py``).

``xrec targets --options triton`` prints them; ``-O precision=ieee`` on the
command line or ``options={"precision": "ieee"}`` in ``xrec.compile`` sets
them. An unknown or invalid option is a ValueError listing every valid one.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

from ..options import TargetOptions, option

DEFAULT_ARCHS = (80, 90)
MIN_ARCH = 80                      # the kernels use sm_80 features (cp.async, bf16, tf32 tensor cores)


def _archs_text(v):
    """``[80, 90]`` / ``(80,)`` / ``90`` / ``"80,90"`` -> ``"80,90"``."""
    if isinstance(v, (list, tuple)):
        return ",".join(str(a) for a in v)
    if isinstance(v, int) and not isinstance(v, bool):
        return str(v)
    return v


def parse_archs(text: str) -> tuple[int, ...]:
    """The SM versions of ``"80,90"`` (also ``sm_90``); ValueError for anything else."""
    out = []
    for part in str(text).split(","):
        p = part.strip().lower().removeprefix("sm_")
        if not p.isdigit():
            raise ValueError(f"{part.strip()!r} is not an SM version (80, 90, 100, ...)")
        out.append(int(p))
    if not out:
        raise ValueError("needs at least one SM version")
    return tuple(out)


def _archs_ok(v: str) -> str | None:
    try:
        archs = parse_archs(v)
    except ValueError as e:
        return f"is not a comma list of SM versions: {e}"
    low = [a for a in archs if a < MIN_ARCH]
    return f"has {low} below sm_{MIN_ARCH}, which the kernels need" if low else None


@dataclass(frozen=True)
class TritonOptions(TargetOptions):
    target: ClassVar[str] = "triton"

    mode: str = option("auto", "where load runs the kernels: auto (the GPU if torch sees one, else Triton's CPU "
                               "interpreter), gpu, interpret", choices=("auto", "gpu", "interpret"))
    precision: str = option("tf32x3", "fp32 tl.dot products: tf32x3 (three TF32 tensor-core passes, fp32-level "
                                      "error), ieee (exact fp32 on the FMA units), tf32 (one pass, ~1e-3 relative)",
                            choices=("tf32x3", "ieee", "tf32"))
    bounds_check: bool | None = option(None, "kernels record out-of-range ids and bad offsets and the run reports "
                                             "the first one (None: the knob bounds_check, env XREC_BOUNDS_CHECK)")
    aot: bool = option(True, "compile cubins and the C launcher at build time")
    archs: str = option("80,90", "SM versions of the AOT cubins, a comma list (a list of ints in Python)",
                        before=_archs_text, check=_archs_ok)
    cuda_graphs: bool = option(True, "on a GPU, replay the whole program as one CUDA graph per batch size "
                                     "(captured on first use; id counts do not re-capture)")

    @classmethod
    def parse(cls, values=None) -> "TritonOptions":
        """As TargetOptions.parse, then resolved: ``bounds_check`` a bool (the knob's value when None) and
        ``archs`` in canonical form, as the manifest records them."""
        from xrec.config import knobs
        opts = super().parse(values)
        bc = knobs.bounds_check if opts.bounds_check is None else opts.bounds_check
        return dataclasses.replace(opts, bounds_check=bool(bc),
                                   archs=",".join(str(a) for a in parse_archs(opts.archs)))

    @property
    def arch_list(self) -> list[int]:
        """``archs`` as ints."""
        return list(parse_archs(self.archs))

    def program_options(self) -> dict:
        """The options program.json records (the runtime and the C launcher read them back)."""
        return {"mode": self.mode, "precision": self.precision, "bounds_check": self.bounds_check,
                "aot": self.aot, "archs": self.arch_list, "cuda_graphs": self.cuda_graphs}
