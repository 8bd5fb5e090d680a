"""cpu target options: the frozen CpuOptions dataclass; isa canonical, bounds_check from the knob when unset."""
import pytest

from xrec.config import knobs
from xrec.targets import get_target
from xrec.targets.cpu.options import CpuOptions

cpu = get_target("cpu")


def test_isa_is_canonical_best_first_and_auto_means_all_three():
    assert cpu.parse_options({"isa": "scalar, avx2"}).isa == "avx2,scalar"
    assert cpu.parse_options(None).isa == "avx512,avx2,scalar"
    assert cpu.typed_options() is CpuOptions


def test_bounds_check_follows_the_knob_unless_given():
    with knobs.override(bounds_check=False):
        assert cpu.parse_options({}).bounds_check is False
        assert cpu.parse_options({"bounds_check": "true"}).bounds_check is True


def test_unknown_or_invalid_options_list_the_valid_ones():
    with pytest.raises(ValueError, match="(?s)unknown option.*'isas'.*isa: str.*bounds_check"):
        cpu.parse_options({"isas": "avx2"})
    with pytest.raises(ValueError, match="isa='sse'.*known: auto, avx512, avx2, scalar"):
        cpu.parse_options({"isa": "sse"})


def test_options_are_frozen_and_written_to_the_manifest_as_plain_values():
    opts = cpu.parse_options({"isa": "avx2"})
    with pytest.raises(Exception):
        opts.isa = "scalar"
    assert opts.as_dict() == {"strict": False, "isa": "avx2", "bounds_check": knobs.bounds_check}
