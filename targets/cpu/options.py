"""The cpu target's options: one frozen, typed dataclass (see ``targets/options.py``).

``xrec targets --options cpu`` prints them; ``-O isa=avx2`` on the command line
or ``options={"isa": "avx2"}`` in ``xrec.compile`` sets them. An unknown or
invalid option is a ValueError listing every valid one.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

from ..options import TargetOptions, option
from .isa import ISAS, parse_isa_list


def _isa_known(v: str) -> str | None:
    try:
        parse_isa_list(v)
    except ValueError as e:
        return str(e)
    return None


@dataclass(frozen=True)
class CpuOptions(TargetOptions):
    target: ClassVar[str] = "cpu"

    isa: str = option("auto", f"ISA builds: auto (all of {', '.join(ISAS)}) or a comma list of them; the loader "
                              "picks the best one the CPU runs", check=_isa_known)
    bounds_check: bool | None = option(None, "generated code checks ids and offsets and reports the first bad one "
                                             "(None: the knob bounds_check, env XREC_BOUNDS_CHECK)")

    @classmethod
    def parse(cls, values=None) -> "CpuOptions":
        """As TargetOptions.parse, then resolved: ``isa`` as the canonical list (best first), ``bounds_check`` a
        bool (the knob's value when None), as the manifest records them."""
        from xrec.config import knobs
        opts = super().parse(values)
        bc = knobs.bounds_check if opts.bounds_check is None else opts.bounds_check
        return dataclasses.replace(opts, isa=",".join(parse_isa_list(opts.isa)), bounds_check=bool(bc))
