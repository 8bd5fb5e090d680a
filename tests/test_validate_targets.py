"""Validation parity: the same bad input gets the same InputError, in the same words, on every target."""
import re

import pytest
import torch

import xrec
from xrec import zoo
from xrec.runtime.validate import InputError
from xrec.testing import zoo_model

OPTIONS = {"reference": {}, "cpu": {}, "triton": {"aot": False, "mode": "interpret"},
           "xla": {"batch": 4}, "hls": {"host": "reference", "report_batch": 16}}
BATCH = 4


@pytest.fixture(scope="module", params=list(OPTIONS))
def compiled(request, tmp_path_factory):
    target = request.param
    m = zoo_model("dlrm-small", max_rows=300)
    cm = xrec.compile(m, zoo.example_inputs(m), target=target, options=OPTIONS[target],
                      out=tmp_path_factory.mktemp(target) / "m.xrec")
    return m, cm


def _inputs(m):
    dense, idx, off = zoo.make_inputs(m, BATCH, seed=3)
    return dense, [i.clone() for i in idx], [o.clone() for o in off]


def test_out_of_range_id_is_an_input_error_naming_feature_position_and_table_size(compiled):
    m, cm = compiled
    dense, idx, off = _inputs(m)
    rows = zoo.spec_of(m).features[5].num_rows
    pos = len(idx[5]) - 1
    idx[5][pos] = rows
    want = rf"feature 'indices\[5\]': index {rows} at position {pos} is out of range for its table of {rows} rows"
    with pytest.raises(InputError, match=want):
        cm(dense, idx, off)
    idx[5][pos] = -1
    with pytest.raises(InputError, match=rf"feature 'indices\[5\]': index -1 at position {pos} is out of range"):
        cm(dense, idx, off)


def test_offsets_ending_before_len_indices_are_rejected(compiled):
    m, cm = compiled
    dense, idx, off = _inputs(m)
    n = len(idx[2])
    assert n > 0
    off[2][-1] = n - 1
    want = (rf"feature 'indices\[2\]': offsets end at {n - 1} but indices holds {n} ids "
            r"\(offsets\[-1\] must equal len\(indices\)\)")
    with pytest.raises(InputError, match=want):
        cm(dense, idx, off)


def test_offsets_not_starting_at_zero_are_rejected(compiled):
    m, cm = compiled
    dense, idx, off = _inputs(m)
    off[3] = off[3].clone()
    off[3][0] = 1
    with pytest.raises(InputError, match=r"feature 'indices\[3\]': offsets must start at 0, got 1"):
        cm(dense, idx, off)


def test_decreasing_offsets_are_rejected(compiled):
    m, cm = compiled
    dense, idx, off = _inputs(m)
    o = off[1]
    o[1], o[2] = int(o[2]) + 1, int(o[1])
    with pytest.raises(InputError, match=r"feature 'indices\[1\]': offsets decrease at position"):
        cm(dense, idx, off)


def test_wrong_number_of_input_tensors_is_an_input_error(compiled):
    m, cm = compiled
    dense, idx, off = _inputs(m)
    with pytest.raises(InputError, match=re.escape("called with 52 tensors but compiled with 53")):
        cm(dense, idx[:-1], off)
    with pytest.raises(InputError, match=re.escape("called with 54 tensors but compiled with 53")):
        cm(dense, idx + [idx[0]], off)


def test_good_inputs_still_match_pytorch_after_rejected_calls(compiled):
    m, cm = compiled
    dense, idx, off = _inputs(m)
    with torch.no_grad():
        want = m(dense, idx, off)
    torch.testing.assert_close(cm(dense, idx, off), want, rtol=1e-3, atol=1e-4)


def test_the_runner_itself_raises_the_same_input_error_past_the_api_validator(compiled):
    """validate=False skips the API's checks: the target's own runner (generated code, kernels flagging a slot,
    the hls host side before the C simulation) must still refuse a bad id and bad offsets ends, in the same words."""
    m, cm = compiled
    if cm.target.name in ("reference", "xla"):
        pytest.skip(f"{cm.target.name}: the API's validator is its check")
    dense, idx, off = _inputs(m)
    rows = zoo.spec_of(m).features[5].num_rows
    pos = len(idx[5]) - 1
    idx[5][pos] = rows
    n = len(idx[2])
    cm.validate = False
    try:
        with pytest.raises(InputError, match=rf"feature 'indices\[5\]': index {rows} at position {pos} is out of "
                                             rf"range for its table of {rows} rows"):
            cm(dense, idx, off)
        idx[5][pos] = 0
        off[2][-1] = n - 1
        with pytest.raises(InputError, match=rf"feature 'indices\[2\]': offsets end at {n - 1} but indices holds "
                                             rf"{n} ids"):
            cm(dense, idx, off)
    finally:
        cm.validate = True
