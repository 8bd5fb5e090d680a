"""Typed target options (targets/options.py) as the xla target declares them: coercion, errors, docs, strict."""
import dataclasses

import pytest
import torch
from torch import nn

import xrec
from xrec import lowering
from xrec.ir import Op
from xrec.lowering import LoweringError
from xrec.targets import get_target
from xrec.targets.options import TargetOptions
from xrec.targets.xla import XlaOptions
from xrec.targets.xla import emit  # noqa: F401  (registers the xla rules)


def test_strings_are_coerced_to_each_options_declared_type():
    o = XlaOptions.parse({"batch": "16", "pad": "false", "ids_multiplier": "1.5", "strict": "yes",
                          "max_ids_per_bag": '{"C1": 4}', "tpu": "off"})
    assert (o.batch, o.pad, o.ids_multiplier, o.strict, o.max_ids_per_bag, o.tpu) == (16, False, 1.5, True,
                                                                                      {"C1": 4}, None)
    assert XlaOptions.parse({"max_ids_per_bag": 8}).max_ids_per_bag == 8
    assert XlaOptions.parse({"max_ids_per_bag": "none"}).max_ids_per_bag is None


def test_defaults_are_the_documented_ones_and_every_option_has_a_doc():
    o = XlaOptions.parse(None)
    assert o == XlaOptions() and o.batch == 64 and o.tpu == "auto" and o.strict is False
    assert all(d.doc for d in XlaOptions.describe())
    assert [d.name for d in XlaOptions.describe()][0] == "strict"      # the option every target has


@pytest.mark.parametrize("bad,match", [
    ({"bach": 8}, r"unknown option\(s\) 'bach'; valid options:\n  strict: bool = False.*\n  batch: int = 64"),
    ({"dtype": "fp8"}, "option dtype='fp8'; choose one of f32, bf16"),
    ({"batch": 0}, "option batch=0 must be >= 1"),
    ({"batch": True}, "option batch=True is not an int"),
    ({"batch": 2.5}, "option batch=2.5 is not an int"),
    ({"pad": "maybe"}, r"option pad='maybe' is not a bool \(true/false\)"),
    ({"max_ids_per_bag": {"C1": 0}}, "max_ids_per_bag.*needs ids per bag >= 1"),
    ({"max_ids_per_bag": "C1=4"}, r"max_ids_per_bag='C1=4' is not int \| dict\[str, int\] \| None"),
    ({"ids_multiplier": float("inf")}, "ids_multiplier=inf must be a finite number > 0"),
])
def test_unknown_or_invalid_options_say_which_and_list_the_valid_ones(bad, match):
    with pytest.raises(ValueError, match=match) as e:
        get_target("xla").parse_options(bad)
    assert str(e.value).startswith("target 'xla': ")


def test_options_are_frozen_read_as_a_mapping_and_round_trip_through_the_manifest_dict():
    o = XlaOptions.parse({"batch": 8, "dtype": "bf16"})
    with pytest.raises(dataclasses.FrozenInstanceError):
        o.batch = 9
    assert o["batch"] == 8 and o.get("dtype") == "bf16" and o.get("nope", 3) == 3 and "pad" in o
    assert dict(o) == o.as_dict() and XlaOptions.parse(o.as_dict()) == o
    assert o.replace(batch=16).batch == 16 and o.batch == 8
    assert get_target("xla").tolerances_for(o) == get_target("xla").tolerances_for(o.as_dict())


def test_the_base_options_are_strict_only_and_a_target_without_its_own_parser_uses_them():
    assert [d.name for d in TargetOptions.describe()] == ["strict"]
    assert get_target("reference").parse_options({"strict": "true"}).strict is True
    with pytest.raises(ValueError, match="target 'reference': unknown option.*batch"):
        get_target("reference").parse_options({"batch": 4})


class Relu(nn.Module):
    def forward(self, x):
        return torch.relu(x) * 2.0


def test_a_listed_fallback_is_recorded_in_the_manifest_and_refused_under_strict(monkeypatch):
    relu_rule = lowering.lowering_rule("xla", Op.RELU)
    monkeypatch.delitem(lowering._RULES["xla"], Op.RELU)
    monkeypatch.setattr(lowering, "_FALLBACKS", {})
    x = torch.randn(5, 3)
    with pytest.raises(LoweringError, match=r"target 'xla' cannot lower %relu = relu\(...\) at .*test_xla_options.py"
                                            r".*no lowering rule for op 'relu'.*target 'xla' lowers: .*add"):
        xrec.compile(Relu(), (x,), target="xla", options={"tpu": None, "batch": 8})
    lowering.register_fallback("xla", Op.RELU, "a test's stand-in rule", rule=relu_rule)
    cm = xrec.compile(Relu(), (x,), target="xla", options={"tpu": None, "batch": 8})
    torch.testing.assert_close(cm(x), torch.relu(x) * 2.0)
    info = cm.artifact.manifest["target_info"]
    assert info["fallbacks"] == [{"op": "relu", "node": "relu", "loc": info["fallbacks"][0]["loc"],
                                  "reason": "a test's stand-in rule"}]
    assert info["options"]["strict"] is False and info["options"]["batch"] == 8
    with pytest.raises(LoweringError, match="fallback listed for 'relu'.*strict=True"):
        xrec.compile(Relu(), (x,), target="xla", options={"tpu": None, "batch": 8, "strict": True})
