"""The triton target's options (targets/triton/options.py): a frozen typed dataclass, errors that list the
valid options, and the same program.json options as the old option dict."""
from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from xrec.config import knobs
from xrec.targets import get_target
from xrec.targets.triton.options import TritonOptions


def test_defaults_are_tf32x3_both_archs_cuda_graphs_aot_and_not_strict():
    o = get_target("triton").parse_options({})
    assert isinstance(o, TritonOptions)
    assert (o.mode, o.precision, o.aot, o.cuda_graphs, o.strict) == ("auto", "tf32x3", True, True, False)
    assert o.arch_list == [80, 90] and o.bounds_check is bool(knobs.bounds_check)
    with pytest.raises(dataclasses.FrozenInstanceError):
        o.precision = "ieee"


@pytest.mark.parametrize("given, want", [([90], [90]), ((80, 100), [80, 100]), ("sm_90", [90]), (" 80, 90 ", [80, 90]),
                                         (100, [100])])
def test_archs_take_a_list_an_int_or_a_comma_list(given, want):
    assert TritonOptions.parse({"archs": given}).arch_list == want


def test_command_line_strings_are_coerced():
    o = TritonOptions.parse({"cuda_graphs": "false", "bounds_check": "0", "aot": "no", "strict": "true"})
    assert (o.cuda_graphs, o.bounds_check, o.aot, o.strict) == (False, False, False, True)


@pytest.mark.parametrize("values, message", [
    ({"warps": 8}, r"(?s)unknown option\(s\) 'warps'.*mode: str.*precision: str.*archs: str.*cuda_graphs: bool"),
    ({"mode": "cuda"}, "choose one of auto, gpu, interpret"),
    ({"precision": "bf16"}, "choose one of tf32x3, ieee, tf32"),
    ({"archs": [70, 90]}, r"\[70\] below sm_80"),
    ({"archs": "ampere"}, "not a comma list of SM versions"),
    ({"cuda_graphs": "maybe"}, "is not a bool"),
])
def test_invalid_options_are_errors_that_say_what_is_valid(values, message):
    with pytest.raises(ValueError, match=message):
        TritonOptions.parse(values)


def test_program_json_records_the_same_six_options_as_before():
    o = TritonOptions.parse({"precision": "ieee", "archs": [90], "bounds_check": True})
    assert o.program_options() == {"mode": "auto", "precision": "ieee", "bounds_check": True, "aot": True,
                                   "archs": [90], "cuda_graphs": True}


def test_xrec_targets_lists_the_triton_options():
    out = subprocess.run([sys.executable, "-m", "xrec", "targets", "--options", "triton"], capture_output=True,
                         text=True, check=True).stdout
    for name in ("mode", "precision", "bounds_check", "aot", "archs", "cuda_graphs", "strict"):
        assert f"  {name}:" in out
