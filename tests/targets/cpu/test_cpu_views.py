"""xrec.targets.views (the strided views cpu and triton share): every layout op reads what numpy's does."""
import numpy as np
import pytest
from numpy.lib.stride_tricks import as_strided

from xrec.targets import views as V

BUF = np.arange(1000, dtype=np.float32)


def read(v: V.View) -> np.ndarray:
    """The elements view ``v`` of BUF denotes."""
    item = BUF.itemsize
    return as_strided(BUF[v.offset:], shape=v.shape, strides=tuple(s * item for s in v.strides))


def dense(shape) -> V.View:
    return V.View("buf", "f32", tuple(shape), V.contiguous_strides(shape))


def test_contiguous_strides_and_contiguity_match_numpy():
    a = np.empty((3, 4, 5), np.float32)
    assert V.contiguous_strides((3, 4, 5)) == tuple(s // 4 for s in a.strides)
    assert V.is_contiguous((3, 4, 5), (20, 5, 1)) and not V.is_contiguous((3, 4, 5), (40, 5, 1))
    assert V.is_contiguous((3, 1, 5), (5, 999, 1))        # a size-1 dim's stride does not matter


@pytest.mark.parametrize("axis,start,length,step", [(1, 0, 4, 1), (1, 1, 2, 2), (2, 3, 2, 1), (0, 2, 1, 1)])
def test_slice_reads_numpys_slice(axis, start, length, step):
    v = dense((3, 4, 5))
    ref = BUF[:60].reshape(3, 4, 5)
    idx = [slice(None)] * 3
    idx[axis] = slice(start, start + length * step, step)
    np.testing.assert_array_equal(read(V.view_slice(v, axis, start, length, step)), ref[tuple(idx)])


def test_permute_then_slice_reads_numpys_transpose():
    v = V.permute(dense((3, 4, 5)), (0, 2, 1))
    ref = BUF[:60].reshape(3, 4, 5).transpose(0, 2, 1)
    np.testing.assert_array_equal(read(v), ref)
    np.testing.assert_array_equal(read(V.view_slice(v, 1, 1, 3)), ref[:, 1:4])


def test_reshape_without_copy_only_where_the_data_allows_it():
    v = dense((3, 4, 5))
    np.testing.assert_array_equal(read(V.reshape(v, (3, 20))), BUF[:60].reshape(3, 20))
    cols = V.view_slice(dense((3, 8)), 1, 2, 4)                  # rows of 4 out of 8: leading stride kept
    np.testing.assert_array_equal(read(V.reshape(cols, (3, 2, 2))), BUF[:24].reshape(3, 8)[:, 2:6].reshape(3, 2, 2))
    assert V.reshape(V.permute(v, (0, 2, 1)), (3, 20)) is None   # needs a copy


def test_expand_broadcasts_like_numpy():
    v = dense((4, 1))
    out = V.expand(v, (2, 4, 3))
    np.testing.assert_array_equal(read(out), np.broadcast_to(BUF[:4].reshape(4, 1), (2, 4, 3)))
    assert out.strides == (0, 1, 0)


def test_rows_is_a_2d_block_with_unit_column_stride():
    assert dense((7, 5)).is_rows() and V.view_slice(dense((7, 5)), 1, 1, 3).is_rows()
    assert not V.permute(dense((7, 5)), (1, 0)).is_rows() and not dense((2, 3, 4)).is_rows()
