"""Dense-layer kernels (pack_linear + linear with fused bias/activation) vs torch F.linear.

Reference: F.linear in float64 on the same float32 inputs, then the torch activation.
Tolerance: |got - want| <= 1e-5 * (|X| @ |W|^T + |b|) + 1e-6, i.e. rtol 1e-5 relative
to the magnitude of the summed terms (the kernel's summation order differs from
torch's; relative-to-result would be meaningless where terms cancel to ~0).
Activations add their float32 rounding (about 1e-6 relative).
"""
from __future__ import annotations

import ctypes

import numpy as np
import pytest
import torch
import torch.nn.functional as F

P = ctypes.c_void_p
ACTS = {
    "none": (0, lambda x: x),
    "relu": (1, torch.relu),
    "sigmoid": (2, torch.sigmoid),
    "tanh": (3, torch.tanh),
    "gelu": (4, lambda x: F.gelu(x)),
    "gelu_tanh": (5, lambda x: F.gelu(x, approximate="tanh")),
    "silu": (6, F.silu),
}


def _ptr(a):
    return None if a is None else a.ctypes.data_as(P)


def _setup(lib):
    lib.t_n_block.restype = ctypes.c_int
    lib.t_packed_floats.restype = ctypes.c_size_t
    lib.t_packed_floats.argtypes = [ctypes.c_int, ctypes.c_int]
    lib.t_pack.argtypes = [P, ctypes.c_int, ctypes.c_int, P]
    lib.t_linear.argtypes = [P, ctypes.c_long, ctypes.c_int, ctypes.c_long, P, ctypes.c_int, P,
                             ctypes.c_int, P, ctypes.c_long, ctypes.c_int, ctypes.c_int]
    return lib


def pack(lib, W):
    N, K = W.shape
    packed = np.full(lib.t_packed_floats(N, K), np.nan, np.float32)
    lib.t_pack(_ptr(np.ascontiguousarray(W)), N, K, _ptr(packed))
    return packed


def run_linear(lib, X, W, b, act="none", ldx=None, ldy=None, col0=0, n_ranges=None):
    """Runs the kernel; X may be a strided view into a wider buffer (ldx), Y is written
    at columns [col0, col0 + N) of a NaN-filled [M, ldy] buffer, which is returned."""
    M, K = X.shape
    N = W.shape[0]
    ldx = ldx or K
    xbuf = np.full((M, ldx), np.nan, np.float32)
    xbuf[:, :K] = X
    ldy = ldy or N
    ybuf = np.full((max(M, 1), ldy), np.nan, np.float32)
    packed = pack(lib, W)
    bias = None if b is None else np.ascontiguousarray(b, np.float32)
    for n0, n1 in (n_ranges or [(0, N)]):
        lib.t_linear(_ptr(xbuf), M, K, ldx, _ptr(packed), N, _ptr(bias), ACTS[act][0],
                     ybuf.ctypes.data + 4 * col0, ldy, n0, n1)
    return ybuf


def reference(X, W, b, act):
    x, w = torch.from_numpy(X).double(), torch.from_numpy(W).double()
    bb = None if b is None else torch.from_numpy(b).double()
    y = ACTS[act][1](F.linear(x, w, bb)).numpy()
    scale = (np.abs(X).astype(np.float64) @ np.abs(W).astype(np.float64).T)
    if b is not None:
        scale += np.abs(b)
    return y, scale


def check(got, X, W, b, act):
    want, scale = reference(X, W, b, act)
    tol = 1.2e-5 * scale + 1e-6 + 2e-6 * np.abs(want)
    err = np.abs(got.astype(np.float64) - want)
    bad = ~(err <= tol)
    assert not bad.any(), (f"{bad.sum()} of {bad.size} outputs off; worst at {np.unravel_index(np.argmax(err - tol), err.shape)}: "
                           f"got {got[bad][:5]}, want {want[bad][:5]}")


def data(M, N, K, seed=0, bias=True):
    g = np.random.default_rng(seed)
    X = g.standard_normal((M, K)).astype(np.float32)
    W = (g.standard_normal((N, K)) / np.sqrt(K)).astype(np.float32)
    b = g.standard_normal(N).astype(np.float32) if bias else None
    return X, W, b


@pytest.mark.parametrize("act", list(ACTS))
@pytest.mark.parametrize("N,K", [(13, 37), (37, 100), (100, 13), (1, 5), (2, 37), (64, 16)])
@pytest.mark.parametrize("M", [1, 3, 64, 65])
def test_linear_matches_torch_linear_with_each_fused_activation(linear_lib, M, N, K, act):
    lib = _setup(linear_lib)
    X, W, b = data(M, N, K, seed=M * 1000 + N + K)
    check(run_linear(lib, X, W, b, act), X, W, b, act)


@pytest.mark.parametrize("N,K", [(512, 13), (256, 512), (64, 256), (512, 415), (1, 256),
                                 (1024, 3456), (512, 1024), (3456, 512)])
@pytest.mark.parametrize("M", [1, 64, 77])
def test_linear_matches_torch_linear_on_zoo_layer_shapes(linear_lib, M, N, K):
    lib = _setup(linear_lib)
    X, W, b = data(M, N, K, seed=N + K)
    act = "sigmoid" if N == 1 else "relu"
    check(run_linear(lib, X, W, b, act), X, W, b, act)


@pytest.mark.parametrize("N", [37, 2, 1])
def test_linear_writes_only_its_column_slice_of_a_wider_output_with_strided_input(linear_lib, N):
    lib = _setup(linear_lib)
    M, K = 65, 100
    X, W, b = data(M, N, K, seed=7)
    ldy, col0 = N + 29, 11
    y = run_linear(lib, X, W, b, "relu", ldx=K + 3, ldy=ldy, col0=col0)
    check(y[:, col0:col0 + N], X, W, b, "relu")
    assert np.isnan(y[:, :col0]).all() and np.isnan(y[:, col0 + N:]).all(), "wrote outside [col0, col0+N)"


def test_linear_without_bias_matches_torch_linear(linear_lib):
    lib = _setup(linear_lib)
    X, W, _ = data(9, 45, 33, seed=3, bias=False)
    check(run_linear(lib, X, W, None, "tanh"), X, W, None, "tanh")


def test_linear_split_into_column_blocks_equals_the_whole_layer(linear_lib):
    lib = _setup(linear_lib)
    nb = lib.t_n_block()
    M, N, K = 70, 3 * nb + 5, 300
    X, W, b = data(M, N, K, seed=5)
    whole = run_linear(lib, X, W, b, "gelu")
    parts = run_linear(lib, X, W, b, "gelu", n_ranges=[(0, nb), (nb, 3 * nb), (3 * nb, N)])
    np.testing.assert_array_equal(parts, whole)
    check(whole, X, W, b, "gelu")


def test_pack_linear_size_and_zero_padding(linear_lib):
    lib = _setup(linear_lib)
    nb = lib.t_n_block()
    N, K = nb + 3, 7
    W = np.arange(N * K, dtype=np.float32).reshape(N, K) + 1
    packed = pack(lib, W)
    assert packed.size == lib.t_packed_floats(N, K) == 2 * nb * K
    assert not np.isnan(packed).any(), "pack_linear left part of the packed buffer unwritten"
    assert np.count_nonzero(packed == 0) == (2 * nb - N) * K, "padding columns are not zero"
    np.testing.assert_array_equal(np.sort(packed[packed != 0]), np.sort(W.ravel()))


@pytest.mark.parametrize("act", [a for a in ACTS if a not in ("none", "relu")])
def test_fused_activations_match_torch_at_extreme_and_tiny_preactivations(linear_lib, act):
    """Bias sweeps the pre-activation over [-120, 120] plus tiny values (exp clamping,
    tanh/erf saturation, cancellation near 0); X is tiny so the bias dominates."""
    lib = _setup(linear_lib)
    N, K, M = 97, 5, 4
    g = np.random.default_rng(1)
    X = (g.standard_normal((M, K)) * 1e-3).astype(np.float32)
    W = g.standard_normal((N, K)).astype(np.float32)
    b = np.concatenate([np.linspace(-120, 120, 81), [1e-30, -1e-30, 1e-8, -1e-8, 3e-4, -3e-4, 0.5, -0.5,
                                                     9.0, -9.0, 17.0, -17.0, 88.5, -87.5, 0.0, 2.0]]).astype(np.float32)
    got = run_linear(lib, X, W, b, act)
    want, _ = reference(X, W, b, act)
    # absolute 1e-6 (erf's approximation error times |x|/2 at the gelu tail), else rtol 1e-5
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
