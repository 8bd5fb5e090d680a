"""embedding_bag kernel vs torch: F.embedding_bag (fp32, fp16 rows), and the FBGEMM
row-wise quantized ops torch.ops.quantized.embedding_bag_byte_rowwise_offsets /
embedding_bag_4bit_rowwise_offsets on tables made by the matching *_prepack ops.

Tolerance: rtol 1e-5 for fp32 pooled sums (summation order differs), atol 1e-6
relative to the pooled magnitude; quantized rows: the kernel dequantises with one
fma per value like FBGEMM, same tolerance against torch's quantized op.
"""
from __future__ import annotations

import ctypes

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from xrec.ir import formats

P = ctypes.c_void_p
# the kernels' RowFormat / PoolMode codes are xrec's (xrec/ir/formats.py, via kernels/cpu/xrec_formats.h)
FMT = {k: formats.by_name(v).code for k, v in
       {"f32": "fp32", "f16": "fp16", "i8": "int8", "i4": "int4", "bf16": "bf16", "i2": "int2"}.items()}
MODE = dict(formats.POOL_CODES)
ERR = {"ok": 0, "index": 1, "decreasing": 2, "offsets_range": 3}


def _setup(lib):
    lib.t_embedding_bag.argtypes = [P, ctypes.c_int64, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                                    ctypes.c_int, ctypes.c_int64, P, P, ctypes.c_int, ctypes.c_int, P,
                                    ctypes.c_int64, ctypes.c_long, ctypes.c_long, P, ctypes.c_long,
                                    ctypes.c_int, P]
    lib.t_half_to_float.argtypes = [ctypes.c_uint16]
    lib.t_half_to_float.restype = ctypes.c_float
    return lib


def run_bag(lib, table, dim, fmt, mode, idx, off, psw=None, padding_idx=-1, b_range=None, ldo=None,
            check_bounds=True, num_indices="auto", out=None):
    """table: [rows, row_bytes] uint8 (or float32/float16 viewed as bytes)."""
    tb = np.ascontiguousarray(table).view(np.uint8).reshape(table.shape[0], -1)
    B = len(off) - 1
    b0, b1 = b_range or (0, B)
    ldo = ldo or dim
    if out is None:
        out = np.full((max(B, 1), ldo), np.nan, np.float32)
    status = np.zeros(3, np.int64)
    psw_a = None if psw is None else np.ascontiguousarray(psw, np.float32)
    n_idx = len(idx) if num_indices == "auto" else num_indices
    lib.t_embedding_bag(tb.ctypes.data_as(P), tb.shape[0], dim, tb.shape[1], FMT[fmt], MODE[mode],
                        padding_idx, idx.ctypes.data_as(P), off.ctypes.data_as(P), idx.itemsize * 8,
                        off.itemsize * 8, None if psw_a is None else psw_a.ctypes.data_as(P), n_idx,
                        b0, b1, out.ctypes.data_as(P), ldo, int(check_bounds), status.ctypes.data_as(P))
    return out, tuple(int(s) for s in status)


def make_bags(rows, lengths, seed, idx_dtype=np.int64, off_dtype=np.int64):
    g = np.random.default_rng(seed)
    lengths = np.asarray(lengths)
    off = np.concatenate([[0], np.cumsum(lengths)]).astype(off_dtype)
    idx = g.integers(0, rows, int(lengths.sum())).astype(idx_dtype)
    if len(idx) >= 4:               # duplicates, first and last row
        idx[1] = idx[0]
        idx[2] = rows - 1
        idx[3] = 0
    return idx, off


def torch_bag(table_f32, idx, off, mode, psw=None, padding_idx=None):
    return F.embedding_bag(torch.from_numpy(idx.astype(np.int64)), torch.from_numpy(table_f32),
                           torch.from_numpy(off.astype(np.int64)), mode=mode,
                           per_sample_weights=None if psw is None else torch.from_numpy(psw),
                           include_last_offset=True, padding_idx=padding_idx).numpy()


def assert_close(got, want):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6 * max(1.0, float(np.abs(want).max(initial=0))))


LENGTHS = [3, 0, 1, 7, 0, 0, 20, 2, 5, 1]       # includes empty bags


@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
@pytest.mark.parametrize("dim", [13, 36, 64, 128, 200])
@pytest.mark.parametrize("idx_dtype,off_dtype", [(np.int64, np.int64), (np.int32, np.int32),
                                                 (np.int64, np.int32), (np.int32, np.int64)])
def test_f32_bags_match_torch_embedding_bag(bag_lib, mode, dim, idx_dtype, off_dtype):
    lib = _setup(bag_lib)
    rows = 50
    table = np.random.default_rng(dim).standard_normal((rows, dim)).astype(np.float32)
    idx, off = make_bags(rows, LENGTHS, seed=dim, idx_dtype=idx_dtype, off_dtype=off_dtype)
    got, st = run_bag(lib, table, dim, "f32", mode, idx, off)
    assert st == (0, 0, 0)
    assert_close(got, torch_bag(table, idx, off, mode))


@pytest.mark.parametrize("dim", [13, 64, 128])
def test_per_sample_weights_match_torch_embedding_bag(bag_lib, dim):
    lib = _setup(bag_lib)
    table = np.random.default_rng(1).standard_normal((40, dim)).astype(np.float32)
    idx, off = make_bags(40, LENGTHS, seed=2)
    psw = np.random.default_rng(3).standard_normal(len(idx)).astype(np.float32)
    got, st = run_bag(lib, table, dim, "f32", "sum", idx, off, psw=psw)
    assert st[0] == 0
    assert_close(got, torch_bag(table, idx, off, "sum", psw=psw))


@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
def test_padding_idx_is_skipped_and_not_counted_like_torch(bag_lib, mode):
    lib = _setup(bag_lib)
    dim, rows, pad = 36, 30, 4
    table = np.random.default_rng(4).standard_normal((rows, dim)).astype(np.float32)
    idx, off = make_bags(rows, LENGTHS, seed=5)
    idx[5:9] = pad                                   # part of a bag and a bag made only of padding
    idx[off[1]:off[2]] = pad
    got, st = run_bag(lib, table, dim, "f32", mode, idx, off, padding_idx=pad)
    assert st[0] == 0
    assert_close(got, torch_bag(table, idx, off, mode, padding_idx=pad))


def test_batch_one_and_all_bags_empty(bag_lib):
    lib = _setup(bag_lib)
    table = np.random.default_rng(6).standard_normal((10, 16)).astype(np.float32)
    idx, off = make_bags(10, [4], seed=7)
    got, _ = run_bag(lib, table, 16, "f32", "sum", idx, off)
    assert_close(got, torch_bag(table, idx, off, "sum"))
    for mode in MODE:
        idx0, off0 = np.zeros(0, np.int64), np.zeros(6, np.int64)
        got, st = run_bag(lib, table, 16, "f32", mode, idx0, off0)
        assert st[0] == 0
        np.testing.assert_array_equal(got, np.zeros((5, 16), np.float32))


def test_large_pooling_factor_matches_torch(bag_lib):
    lib = _setup(bag_lib)
    table = np.random.default_rng(8).standard_normal((1000, 64)).astype(np.float32)
    idx, off = make_bags(1000, [1000, 1, 700, 0, 333], seed=9)
    for mode in MODE:
        got, _ = run_bag(lib, table, 64, "f32", mode, idx, off)
        assert_close(got, torch_bag(table, idx, off, mode))


def test_bag_range_writes_only_its_rows_into_a_strided_output(bag_lib):
    lib = _setup(bag_lib)
    dim, ldo = 36, 100
    table = np.random.default_rng(10).standard_normal((64, dim)).astype(np.float32)
    idx, off = make_bags(64, LENGTHS, seed=11)
    got, st = run_bag(lib, table, dim, "f32", "sum", idx, off, b_range=(3, 8), ldo=ldo)
    assert st[0] == 0
    want = torch_bag(table, idx, off, "sum")
    assert_close(got[3:8, :dim], want[3:8])
    mask = np.ones_like(got, bool)
    mask[3:8, :dim] = False
    assert np.isnan(got[mask]).all(), "wrote outside rows [3, 8) x columns [0, dim)"


@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
@pytest.mark.parametrize("dim", [13, 64, 128])
def test_f16_rows_match_torch_on_the_f32_converted_table(bag_lib, mode, dim):
    lib = _setup(bag_lib)
    table = np.random.default_rng(12).standard_normal((50, dim)).astype(np.float16)
    idx, off = make_bags(50, LENGTHS, seed=13, idx_dtype=np.int32, off_dtype=np.int32)
    psw = np.random.default_rng(14).random(len(idx)).astype(np.float32) if mode == "sum" else None
    got, st = run_bag(lib, table, dim, "f16", mode, idx, off, psw=psw)
    assert st[0] == 0
    assert_close(got, torch_bag(table.astype(np.float32), idx, off, mode, psw=psw))


def test_half_to_float_is_exact_for_every_half(bag_lib):
    lib = _setup(bag_lib)
    h = np.arange(65536, dtype=np.uint16)
    want = h.view(np.float16).astype(np.float32)
    got = np.array([lib.t_half_to_float(int(v)) for v in h], np.float32)
    np.testing.assert_array_equal(got.view(np.uint32)[~np.isnan(want)], want.view(np.uint32)[~np.isnan(want)])
    assert np.isnan(got[np.isnan(want)]).all()


def _quant_ref(op, packed, idx, off, mode, psw):
    return op(torch.from_numpy(packed), torch.from_numpy(idx.astype(np.int64)),
              torch.from_numpy(off.astype(np.int64)), False, MODE[mode], False,
              None if psw is None else torch.from_numpy(psw), None, True).numpy()


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("dim", [13, 36, 64, 128])
def test_int8_rowwise_matches_torch_quantized_byte_op(bag_lib, dim, weighted):
    lib = _setup(bag_lib)
    w = torch.randn(60, dim, generator=torch.Generator().manual_seed(dim))
    packed = torch.ops.quantized.embedding_bag_byte_prepack(w).numpy()
    assert packed.shape == (60, dim + 8), "FBGEMM byte row layout changed: dim uint8 + fp32 scale + fp32 bias"
    idx, off = make_bags(60, LENGTHS, seed=15)
    psw = np.random.default_rng(16).random(len(idx)).astype(np.float32) if weighted else None
    got, st = run_bag(lib, packed, dim, "i8", "sum", idx, off, psw=psw)
    assert st[0] == 0
    want = _quant_ref(torch.ops.quantized.embedding_bag_byte_rowwise_offsets, packed, idx, off, "sum", psw)
    assert_close(got, want)


# FBGEMM's sub-byte ops: (bits, prepack, pooling op, format, offsets dtype). 4-bit dims 32/64/128/256 take
# AVX-512's even/odd int4 layout; the 2-bit prepack takes only multiples of 4.
SUB_BYTE = {4: ("embedding_bag_4bit_prepack", "embedding_bag_4bit_rowwise_offsets", "i4", np.int32),
            2: ("embedding_bag_2bit_prepack", "embedding_bag_2bit_rowwise_offsets", "i2", np.int64)}


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("bits,dim", [(4, d) for d in (32, 36, 64, 128, 256)] + [(2, d) for d in (16, 36, 64, 100)])
def test_int4_and_int2_rowwise_match_torch_quantized_ops(bag_lib, bits, dim, weighted):
    lib = _setup(bag_lib)
    prepack, op, fmt, off_dtype = SUB_BYTE[bits]
    w = torch.randn(60, dim, generator=torch.Generator().manual_seed(dim + bits))
    packed = getattr(torch.ops.quantized, prepack)(w).numpy()
    per = 8 // bits
    assert packed.shape == (60, (dim + per - 1) // per + 4), f"FBGEMM {bits}-bit row layout changed: codes + fp16 scale, bias"
    idx, off = make_bags(60, LENGTHS, seed=17 + bits, idx_dtype=np.int32, off_dtype=off_dtype)
    psw = np.random.default_rng(18 + bits).random(len(idx)).astype(np.float32) if weighted else None
    got, st = run_bag(lib, packed, dim, fmt, "sum", idx, off, psw=psw)
    assert st[0] == 0
    want = _quant_ref(getattr(torch.ops.quantized, op), packed, idx, off, "sum", psw)
    assert_close(got, want)


@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
@pytest.mark.parametrize("dim", [5, 16, 36, 64, 200])
def test_bf16_rows_match_torch_on_the_same_bf16_values(bag_lib, mode, dim):
    lib = _setup(bag_lib)
    w = torch.randn(50, dim, generator=torch.Generator().manual_seed(dim + 3)).to(torch.bfloat16)
    bits = w.view(torch.int16).numpy().view(np.uint16)
    idx, off = make_bags(50, LENGTHS, seed=29)
    psw = np.random.default_rng(30).random(len(idx)).astype(np.float32) if mode == "sum" else None
    got, st = run_bag(lib, bits, dim, "bf16", mode, idx, off, psw=psw, padding_idx=int(idx[0]))
    assert st[0] == 0
    assert_close(got, torch_bag(w.float().numpy(), idx, off, mode, psw=psw, padding_idx=int(idx[0])))


def dequant_i8(packed, dim):
    q = packed[:, :dim].astype(np.float32)
    s = packed[:, dim:dim + 4].copy().view(np.float32)
    b = packed[:, dim + 4:dim + 8].copy().view(np.float32)
    return q * s + b


def make_packed(rows, dim, bits, seed):
    """A 4- or 2-bit row-wise table in the contract's layout, for any dim (FBGEMM's prepack ops take only
    even dims / multiples of 4): codes low bits first, then fp16 scale and fp16 bias. Returns (packed, dequantized)."""
    g = np.random.default_rng(seed)
    per = 8 // bits
    nb = (dim + per - 1) // per
    q = g.integers(0, 1 << bits, (rows, nb * per)).astype(np.uint8)
    q[:, dim:] = 0
    packed = np.zeros((rows, nb + 4), np.uint8)
    for k in range(per):
        packed[:, :nb] |= q[:, k::per] << (bits * k)
    scale = g.random(rows).astype(np.float16) + np.float16(0.01)
    bias = g.standard_normal(rows).astype(np.float16)
    packed[:, nb:nb + 2] = scale.view(np.uint8).reshape(rows, 2)
    packed[:, nb + 2:nb + 4] = bias.view(np.uint8).reshape(rows, 2)
    deq = q[:, :dim].astype(np.float32) * scale.astype(np.float32)[:, None] + bias.astype(np.float32)[:, None]
    return packed, deq


@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
@pytest.mark.parametrize("dim", [13, 32, 36, 64, 160])   # 160: a split 128-column chunk, then a split 32
def test_quantized_rows_in_every_mode_match_torch_on_the_dequantized_table(bag_lib, mode, dim):
    lib = _setup(bag_lib)
    w = torch.randn(40, dim, generator=torch.Generator().manual_seed(19))
    p8 = torch.ops.quantized.embedding_bag_byte_prepack(w).numpy()
    p4, deq4 = make_packed(40, dim, 4, seed=20)
    p2, deq2 = make_packed(40, dim, 2, seed=22)
    idx, off = make_bags(40, LENGTHS, seed=21)
    for fmt, packed, deq in [("i8", p8, dequant_i8(p8, dim)), ("i4", p4, deq4), ("i2", p2, deq2)]:
        got, st = run_bag(lib, packed, dim, fmt, mode, idx, off, padding_idx=int(idx[0]))
        assert st[0] == 0
        assert_close(got, torch_bag(deq, idx, off, mode, padding_idx=int(idx[0])))


# ------------------------------------------------------------------ bounds checking
def _bounds_case(kind):
    idx = np.array([1, 2, 3, 4, 5, 6], np.int64)
    off = np.array([0, 2, 4, 6], np.int64)
    num_indices = 6
    if kind == "id_too_large":
        idx[3] = 10
        want = (ERR["index"], 3, 10)
    elif kind == "negative_id":
        idx[4] = -1
        want = (ERR["index"], 4, -1)
    elif kind == "decreasing":
        off[2] = 1
        want = (ERR["decreasing"], 2, 1)
    elif kind == "beyond_indices":
        off[3] = 9
        want = (ERR["offsets_range"], 3, 9)
    elif kind == "negative_offset":
        off[0] = -2
        want = (ERR["offsets_range"], 0, -2)
    return idx, off, num_indices, want


@pytest.mark.parametrize("kind", ["id_too_large", "negative_id", "decreasing", "beyond_indices",
                                  "negative_offset"])
@pytest.mark.parametrize("bits", [32, 64])
def test_bounds_check_reports_the_first_bad_entry_and_leaves_output_untouched(bag_lib, kind, bits):
    lib = _setup(bag_lib)
    table = np.ones((10, 16), np.float32)
    idx, off, n, want = _bounds_case(kind)
    dt = np.int32 if bits == 32 else np.int64
    got, st = run_bag(lib, table, 16, "f32", "sum", idx.astype(dt), off.astype(dt), num_indices=n)
    assert st == want
    assert np.isnan(got).all(), "the kernel wrote output although its input was rejected"


def test_bounds_check_passes_valid_input_and_checks_only_the_given_bag_range(bag_lib):
    lib = _setup(bag_lib)
    table = np.ones((10, 16), np.float32)
    idx, off, n, _ = _bounds_case("id_too_large")       # bad id at position 3: bag 1
    got, st = run_bag(lib, table, 16, "f32", "sum", idx, off, b_range=(2, 3), num_indices=n)
    assert st == (0, 0, 0)
    np.testing.assert_array_equal(got[2], np.full(16, 2.0, np.float32))


# ------------------------------------------------------------------ table-batched entry point
def run_bags(lib, feats, mode, b_range, ldo, out_cols, check_bounds=True):
    """feats: list of (table_bytes[rows, row_bytes], dim, fmt, idx, off)."""
    nf = len(feats)
    arr = lambda t, vals: (t * nf)(*vals)  # noqa: E731
    keep = [np.ascontiguousarray(t).view(np.uint8).reshape(t.shape[0], -1) for t, *_ in feats]
    B = len(feats[0][4]) - 1
    out = np.full((B, ldo), np.nan, np.float32)
    st = np.zeros(4, np.int64)
    lib.t_embedding_bags.argtypes = [ctypes.c_int] + [P] * 11 + [P, ctypes.c_long, ctypes.c_long, P, ctypes.c_long,
                                                                ctypes.c_int, P]
    lib.t_embedding_bags(
        nf, arr(P, [k.ctypes.data for k in keep]), arr(ctypes.c_int64, [k.shape[0] for k in keep]),
        arr(ctypes.c_int, [f[1] for f in feats]), arr(ctypes.c_int, [k.shape[1] for k in keep]),
        arr(ctypes.c_int, [FMT[f[2]] for f in feats]), MODE[mode],
        arr(P, [f[3].ctypes.data for f in feats]), arr(P, [f[4].ctypes.data for f in feats]),
        arr(ctypes.c_int, [f[3].itemsize * 8 for f in feats]), arr(ctypes.c_int, [f[4].itemsize * 8 for f in feats]),
        arr(ctypes.c_int64, [len(f[3]) for f in feats]), arr(ctypes.c_long, out_cols),
        b_range[0], b_range[1], out.ctypes.data_as(P), ldo, int(check_bounds), st.ctypes.data_as(P))
    return out, tuple(int(v) for v in st)


def _batched_features(B=9):
    g = np.random.default_rng(30)
    lengths = g.integers(0, 6, B)
    t0 = g.standard_normal((70, 64)).astype(np.float32)
    t1 = g.standard_normal((40, 13)).astype(np.float16)
    w2 = torch.randn(50, 36, generator=torch.Generator().manual_seed(31))
    t2 = torch.ops.quantized.embedding_bag_byte_prepack(w2).numpy()
    i0, o0 = make_bags(70, lengths, seed=32)
    i1, o1 = make_bags(40, lengths[::-1], seed=33, idx_dtype=np.int32, off_dtype=np.int32)
    i2, o2 = make_bags(50, g.integers(0, 30, B), seed=34, idx_dtype=np.int64, off_dtype=np.int32)
    feats = [(t0, 64, "f32", i0, o0), (t1, 13, "f16", i1, o1), (t2, 36, "i8", i2, o2)]
    refs = [t0, t1.astype(np.float32), dequant_i8(t2, 36)]
    return feats, refs


@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
def test_table_batched_bags_fill_each_features_columns_of_the_concat_buffer(bag_lib, mode):
    lib = _setup(bag_lib)
    feats, refs = _batched_features()
    cols = [5, 5 + 64, 5 + 64 + 13]
    ldo = cols[-1] + 36 + 3
    out, st = run_bags(lib, feats, mode, (2, 8), ldo, cols)
    assert st == (0, 0, 0, -1)
    mask = np.ones_like(out, bool)
    for (t, dim, fmt, idx, off), ref, c in zip(feats, refs, cols):
        assert_close(out[2:8, c:c + dim], torch_bag(ref, idx, off, mode)[2:8])
        mask[2:8, c:c + dim] = False
    assert np.isnan(out[mask]).all(), "wrote outside the features' column ranges of rows [2, 8)"


def test_table_batched_bags_report_the_failing_feature_and_write_nothing(bag_lib):
    lib = _setup(bag_lib)
    feats, _ = _batched_features()
    bad_idx = feats[2][3].copy()
    bad_idx[int(feats[2][4][1])] = 50                        # first id of bag 1 of feature 2
    feats[2] = feats[2][:3] + (bad_idx, feats[2][4])
    out, st = run_bags(lib, feats, "sum", (0, 9), 200, [0, 64, 77])
    assert st == (ERR["index"], int(feats[2][4][1]), 50, 2)
    assert np.isnan(out).all()
