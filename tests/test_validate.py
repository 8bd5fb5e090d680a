"""Bad input gets a clear error naming the input or feature and the position; never a crash."""
import pytest
import torch

import xrec
from xrec.runtime.validate import InputError
from xrec.testing import zoo_model
from xrec import zoo


@pytest.fixture(scope="module")
def compiled():
    m = zoo_model("dlrm-small")
    return m, xrec.compile(m, zoo.example_inputs(m), target="reference")


def _inputs(m, batch=4):
    dense, idx, off = zoo.make_inputs(m, batch, seed=3)
    return dense, [i.clone() for i in idx], [o.clone() for o in off]


def test_index_out_of_range_names_feature_position_and_table_size(compiled):
    m, cm = compiled
    dense, idx, off = _inputs(m)
    rows = zoo.spec_of(m).features[5].num_rows
    idx[5][0] = rows
    with pytest.raises(InputError, match=rf"feature 'indices\[5\]': index {rows} at position 0 .* {rows} rows"):
        cm(dense, idx, off)
    idx[5][0] = -1
    with pytest.raises(InputError, match=r"index -1 at position 0"):
        cm(dense, idx, off)


def test_offsets_not_monotone_not_starting_at_zero_or_not_ending_at_len(compiled):
    m, cm = compiled
    dense, idx, off = _inputs(m)
    bad = off[2].clone()
    v1 = int(bad[1])
    bad[1] = int(bad[2]) + 1
    bad[2] = v1
    off2 = list(off)
    off2[2] = bad
    with pytest.raises(InputError, match=r"feature 'indices\[2\]': offsets decrease at position"):
        cm(dense, idx, off2)
    off2[2] = off[2] + 1
    with pytest.raises(InputError, match=r"offsets must start at 0"):
        cm(dense, idx, off2)
    off2[2] = off[2].clone()
    off2[2][-1] -= 1
    with pytest.raises(InputError, match=r"offsets end at .* must equal len\(indices\)"):
        cm(dense, idx, off2)


def test_wrong_dtype_rank_batch_and_feature_count(compiled):
    m, cm = compiled
    dense, idx, off = _inputs(m)
    with pytest.raises(InputError, match=r"input 'dense': dtype float64"):
        cm(dense.double(), idx, off)
    with pytest.raises(InputError, match=r"input 'dense': rank 1"):
        cm(dense[0], idx, off)
    with pytest.raises(InputError, match=r"input 'indices\[0\]': dtype float32"):
        cm(dense, [idx[0].float()] + idx[1:], off)
    d5, _, _ = _inputs(m, batch=5)
    with pytest.raises(InputError, match=r"offsets"):
        cm(d5, idx, off)                                # dense says batch 5, offsets say 4
    with pytest.raises(InputError, match=r"called with 52 tensors but compiled with 53"):
        cm(dense, idx[:-1], off)


def test_int32_ids_are_accepted_for_a_model_traced_with_int64(compiled):
    m, cm = compiled
    dense, idx, off = _inputs(m)
    want = cm(dense, idx, off)
    got = cm(dense, [i.int() for i in idx], [o.int() for o in off])
    torch.testing.assert_close(got, want)
