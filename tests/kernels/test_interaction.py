"""dot_interaction kernel vs torch: bmm(T, T^T) gathered at the pair lists.

Tolerance: rtol 1e-5 relative to sum |x_d y_d| (summation order differs).
"""
from __future__ import annotations

import ctypes

import numpy as np
import pytest
import torch

P = ctypes.c_void_p


def _setup(lib):
    lib.t_dot_interaction.argtypes = [P, ctypes.c_long, ctypes.c_int, ctypes.c_int, P, P, ctypes.c_int,
                                      P, ctypes.c_long, ctypes.c_long, ctypes.c_long]
    return lib


def run(lib, T, pi, pj, ldt=None, ldo=None, b_range=None, col0=0):
    B, Fn, D = T.shape
    ldt = ldt or Fn * D
    buf = np.full((B, ldt), np.nan, np.float32)
    buf[:, :Fn * D] = T.reshape(B, -1)
    P_ = len(pi)
    ldo = ldo or P_
    out = np.full((B, ldo), np.nan, np.float32)
    pi32, pj32 = np.ascontiguousarray(pi, np.int32), np.ascontiguousarray(pj, np.int32)
    b0, b1 = b_range or (0, B)
    lib.t_dot_interaction(buf.ctypes.data_as(P), ldt, Fn, D, pi32.ctypes.data_as(P), pj32.ctypes.data_as(P),
                          P_, out.ctypes.data + 4 * col0, ldo, b0, b1)
    return out


def reference(T, pi, pj):
    t = torch.from_numpy(T).double()
    Z = torch.bmm(t, t.transpose(1, 2))
    want = Z[:, torch.from_numpy(np.asarray(pi, np.int64)), torch.from_numpy(np.asarray(pj, np.int64))].numpy()
    ta = torch.from_numpy(np.abs(T)).double()
    scale = torch.bmm(ta, ta.transpose(1, 2))[:, pi, pj].numpy()
    return want, scale


def check(got, T, pi, pj):
    want, scale = reference(T, pi, pj)
    err = np.abs(got.astype(np.float64) - want)
    assert (err <= 1e-5 * scale + 1e-7).all(), f"max err {err.max()}"


def tril_pairs(Fn, self_pairs=False):
    li, lj = np.tril_indices(Fn, 0 if self_pairs else -1)
    return li, lj


@pytest.mark.parametrize("Fn,D", [(27, 64), (8, 16), (27, 128), (5, 13), (2, 1), (9, 36)])
@pytest.mark.parametrize("B", [1, 7, 33])
def test_dot_interaction_lower_triangle_matches_torch_bmm(interaction_lib, Fn, D, B):
    lib = _setup(interaction_lib)
    T = np.random.default_rng(Fn * D + B).standard_normal((B, Fn, D)).astype(np.float32)
    pi, pj = tril_pairs(Fn)
    check(run(lib, T, pi, pj), T, pi, pj)


def test_dot_interaction_with_self_pairs_and_arbitrary_pair_order(interaction_lib):
    lib = _setup(interaction_lib)
    T = np.random.default_rng(1).standard_normal((10, 27, 64)).astype(np.float32)
    pi, pj = tril_pairs(27, self_pairs=True)
    perm = np.random.default_rng(2).permutation(len(pi))
    pi, pj = pi[perm], pj[perm]
    pj[:5], pi[:5] = pi[:5].copy(), pj[:5].copy()       # some upper-triangle pairs too
    check(run(lib, T, pi, pj), T, pi, pj)


def test_dot_interaction_writes_its_rows_and_columns_of_a_wider_concat_buffer(interaction_lib):
    lib = _setup(interaction_lib)
    B, Fn, D = 12, 27, 64
    T = np.random.default_rng(3).standard_normal((B, Fn, D)).astype(np.float32)
    pi, pj = tril_pairs(Fn)
    col0, ldo = 64, 64 + len(pi) + 3
    out = run(lib, T, pi, pj, ldt=Fn * D + 16, ldo=ldo, b_range=(2, 9), col0=col0)
    check(out[2:9, col0:col0 + len(pi)], T[2:9], pi, pj)
    mask = np.ones_like(out, bool)
    mask[2:9, col0:col0 + len(pi)] = False
    assert np.isnan(out[mask]).all(), "wrote outside rows [2, 9) x the pair columns"


@pytest.mark.parametrize("Fn,D", [(27, 64), (16, 32), (17, 8), (40, 64)])
def test_dot_interaction_lower_triangle_with_diagonal_matches_torch_bmm(interaction_lib, Fn, D):
    lib = _setup(interaction_lib)
    T = np.random.default_rng(Fn + D).standard_normal((9, Fn, D)).astype(np.float32)
    pi, pj = tril_pairs(Fn, self_pairs=True)
    check(run(lib, T, pi, pj), T, pi, pj)


@pytest.mark.parametrize("Fn,D", [(33, 64), (40, 20), (70, 16)])
def test_dot_interaction_with_more_than_32_vectors_matches_torch_bmm(interaction_lib, Fn, D):
    lib = _setup(interaction_lib)
    T = np.random.default_rng(Fn).standard_normal((5, Fn, D)).astype(np.float32)
    pi, pj = tril_pairs(Fn)
    check(run(lib, T, pi, pj), T, pi, pj)
