"""Row-wise quantized tables are byte-identical to FBGEMM's prepack ops and dequantize as they do."""
import numpy as np
import pytest
import torch

from xrec.ir.quant import bf16_bits, bf16_to_f32, dequantize_rows, quantize_rows, row_bytes

PREPACK = {"rowwise_i8": torch.ops.quantized.embedding_bag_byte_prepack,
           "rowwise_i4": torch.ops.quantized.embedding_bag_4bit_prepack,
           "rowwise_i2": torch.ops.quantized.embedding_bag_2bit_prepack}


def _table(dim, rows=40, seed=0):
    t = np.random.default_rng(seed).standard_normal((rows, dim)).astype(np.float32)
    t[2] = 0.25          # a constant row (range 0)
    t[3] *= 1000         # a wide row
    return t


@pytest.mark.parametrize("layout", sorted(PREPACK))
@pytest.mark.parametrize("dim", [8, 16, 64, 128])
def test_quantized_bytes_equal_fbgemm_prepack(layout, dim):
    t = _table(dim)
    ours = quantize_rows(t, layout)
    theirs = PREPACK[layout](torch.from_numpy(t)).numpy()
    assert ours.shape == theirs.shape == (40, row_bytes(layout, dim))
    np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("layout,bound", [("rowwise_i8", 0.5 / 255), ("rowwise_i4", 0.5 / 15 + 1e-3),
                                          ("rowwise_i2", 0.5 / 3 + 1e-3)])
@pytest.mark.parametrize("dim", [5, 13, 64])
def test_dequantized_values_are_within_half_a_step_of_the_original(layout, bound, dim):
    t = _table(dim)
    d = dequantize_rows(quantize_rows(t, layout), layout, dim)
    rng = (t.max(1) - t.min(1))[:, None]
    assert np.all(np.abs(d - t) <= bound * rng + 1e-3 * np.abs(t) + 1e-6)


def test_int8_dequantization_matches_fbgemm_embedding_bag():
    t = _table(16)
    q = quantize_rows(t, "rowwise_i8")
    idx = torch.tensor([0, 3, 3, 7, 39])
    off = torch.tensor([0, 2, 2, 5])
    want = torch.ops.quantized.embedding_bag_byte_rowwise_offsets(torch.from_numpy(q), idx, off, mode=0,
                                                                  include_last_offset=True)
    rows = dequantize_rows(q[idx.numpy()], "rowwise_i8", 16)
    got = np.stack([rows[0:2].sum(0), np.zeros(16, np.float32), rows[2:5].sum(0)])
    # FBGEMM accumulates with fused multiply-adds; sums that cancel rows of magnitude ~1e3 (row 3)
    # differ by a few ulps of those rows
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-6, atol=1e-4)


def test_bf16_rounds_to_nearest_even_like_torch():
    x = np.random.default_rng(1).standard_normal(1000).astype(np.float32)
    want = torch.from_numpy(x).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    np.testing.assert_array_equal(bf16_bits(x), want)
    np.testing.assert_array_equal(bf16_to_f32(bf16_bits(x)), torch.from_numpy(x).to(torch.bfloat16).float().numpy())
