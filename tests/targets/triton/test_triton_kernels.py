"""Every Triton kernel template against PyTorch, in Triton's CPU interpreter.

Edge cases: empty bags, batch 1 and odd batches, odd dims, int32 and int64 ids,
duplicate ids, long bags (several tile steps), every pooling mode, per-sample
weights, padding_idx, every table row format (f32, f16, bf16, FBGEMM int8/int4/
int2), pruned tables, and every GPU tile configuration the lowering can pick.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from xrec.ir.quant import bf16_bits, dequantize_rows, quantize_rows
from xrec.ir import formats
from xrec.targets.triton.tiles import embedding_tiles, linear_variants, np2

from .conftest import INT32_MAX, jagged, pack_tables, run_bags

GEN = torch.Generator().manual_seed(0)


def _feats_f32(tables, B, dtype, modes, gen, long_bag=0, psw=False, pads=None):
    blob, offs = pack_tables([t.numpy() for t in tables])
    feats = []
    for k, (t, mode) in enumerate(zip(tables, modes)):
        idx, off = jagged(B, 5, t.shape[0], gen, dtype=dtype, long_bag=long_bag)
        f = dict(base=offs[k] // 4, rows=t.shape[0], dim=t.shape[1], mode=mode, row_stride=t.shape[1], idx=idx,
                 off=off, pad=None if pads is None else pads[k])
        if psw and mode == "sum":
            f["psw"] = torch.rand(len(idx), generator=gen)
        feats.append(f)
    return torch.from_numpy(blob).view(torch.float32), feats


def _reference(tables, feats):
    outs = []
    for t, f in zip(tables, feats):
        outs.append(F.embedding_bag(f["idx"].long(), t, f["off"].long(), mode=f["mode"], include_last_offset=True,
                                    per_sample_weights=f.get("psw"), padding_idx=f.get("pad")))
    return torch.cat(outs, 1)


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32])
@pytest.mark.parametrize("B", [1, 7])
def test_table_batched_bags_match_embedding_bag_for_every_mode_dim_and_index_type(K, dtype, B):
    gen = torch.Generator().manual_seed(B)
    tables = [torch.randn(11, 5, generator=gen), torch.randn(4, 3, generator=gen), torch.randn(9, 16, generator=gen),
              torch.randn(1, 1, generator=gen)]
    blob, feats = _feats_f32(tables, B, dtype, ["sum", "mean", "max", "sum"], gen)
    out, err = run_bags(K, blob, feats, B)
    torch.testing.assert_close(out, _reference(tables, feats), rtol=1e-6, atol=1e-6)
    assert int(err.min()) == INT32_MAX


def test_long_bags_take_several_tile_steps_and_match(K):
    gen = torch.Generator().manual_seed(3)
    tables = [torch.randn(50, 7, generator=gen), torch.randn(30, 4, generator=gen)]
    blob, feats = _feats_f32(tables, 6, torch.int64, ["sum", "max"], gen, long_bag=37)
    out, _ = run_bags(K, blob, feats, 6, L=4, block_b=2)
    torch.testing.assert_close(out, _reference(tables, feats), rtol=1e-5, atol=1e-5)


def test_per_sample_weights_and_padding_idx_match_embedding_bag(K):
    gen = torch.Generator().manual_seed(4)
    tables = [torch.randn(12, 6, generator=gen), torch.randn(8, 5, generator=gen), torch.randn(8, 5, generator=gen)]
    blob, feats = _feats_f32(tables, 9, torch.int64, ["sum", "mean", "max"], gen, psw=True, pads=[0, 7, 3])
    out, _ = run_bags(K, blob, feats, 9)
    torch.testing.assert_close(out, _reference(tables, feats), rtol=1e-5, atol=1e-6)


def test_offsets_without_the_last_entry_are_read_like_torchrec(K):
    gen = torch.Generator().manual_seed(5)
    t = torch.randn(10, 4, generator=gen)
    blob, feats = _feats_f32([t], 5, torch.int64, ["sum"], gen)
    f = feats[0]
    full_off = f["off"]
    f["off"] = full_off[:-1].clone()
    out, _ = run_bags(K, blob, feats, 5, include_last=False)
    torch.testing.assert_close(out, F.embedding_bag(f["idx"], t, f["off"], mode="sum"), rtol=1e-6, atol=1e-6)


def _quant_case(gen, rows=13, dim=6):
    w = torch.randn(rows, dim, generator=gen)
    idx, off = jagged(5, 4, rows, gen)
    return w, idx, off


@pytest.mark.parametrize("bits,dim", [(8, 7), (8, 16), (4, 6), (4, 10)])
def test_fbgemm_rowwise_int8_int4_rows_match_torch_quantized_ops(K, bits, dim):
    gen = torch.Generator().manual_seed(bits + dim)
    w, idx, off = _quant_case(gen, dim=dim)
    pack = (torch.ops.quantized.embedding_bag_byte_prepack if bits == 8
            else torch.ops.quantized.embedding_bag_4bit_prepack)(w)
    op = (torch.ops.quantized.embedding_bag_byte_rowwise_offsets if bits == 8
          else torch.ops.quantized.embedding_bag_4bit_rowwise_offsets)
    unpack = (torch.ops.quantized.embedding_bag_byte_unpack if bits == 8
              else torch.ops.quantized.embedding_bag_4bit_unpack)(pack)
    psw = torch.rand(len(idx), generator=gen)
    blob = pack.contiguous().view(-1)
    kind = formats.by_name("int8" if bits == 8 else "int4").code
    base = dict(base=0, rows=13, dim=dim, row_stride=pack.shape[1], idx=idx, off=off)
    for mode, weights in (("sum", None), ("sum", psw), ("mean", None)):
        out, _ = run_bags(K, blob, [dict(base, mode=mode, psw=weights)], 5, kind=kind)
        if mode == "sum":     # torch's quantized ops implement sum (they ignore mode=mean)
            want = op(pack, idx, off, mode=0, per_sample_weights=weights, include_last_offset=True)
        else:
            want = F.embedding_bag(idx, unpack, off, mode="mean", include_last_offset=True)
        torch.testing.assert_close(out, want, rtol=1e-5, atol=1e-5)

FP32, INT8 = formats.by_name("fp32").code, formats.by_name("int8").code


@pytest.mark.parametrize("kind,dim", [(FP32, 64), (INT8, 64), (FP32, 16), (INT8, 30)])
def test_the_embedding_tile_config_the_lowering_picks_matches_embedding_bag(K, kind, dim):
    """The GPU tiles chosen per row format and width (one bag per program for 64-wide fp32 rows,
    16 bags x 2 ids for int8 ones, the 4096-element tile otherwise) pool exactly like torch."""
    gen = torch.Generator().manual_seed(kind * 100 + dim)
    L, block_b, _ = embedding_tiles(kind, np2(dim))
    w = torch.randn(50, dim, generator=gen)
    idx, off = jagged(9, 6, 50, gen, long_bag=2 * L + 1)        # empty bags, a bag of several steps
    if kind == INT8:
        pack = torch.ops.quantized.embedding_bag_byte_prepack(w)
        blob, stride = pack.contiguous().view(-1), pack.shape[1]
        w = torch.ops.quantized.embedding_bag_byte_unpack(pack)
    else:
        blob, stride = w.contiguous().view(-1), dim
    for mode in ("sum", "mean", "max"):
        f = dict(base=0, rows=50, dim=dim, mode=mode, row_stride=stride, idx=idx, off=off)
        out, err = run_bags(K, blob, [f], 9, kind=kind, block_b=block_b, L=L)
        want = F.embedding_bag(idx, w, off, mode=mode, include_last_offset=True)
        torch.testing.assert_close(out, want, rtol=1e-5, atol=1e-5)
        assert int(err.min()) == INT32_MAX


@pytest.mark.parametrize("fmt", ["rowwise_i2", "rowwise_i4", "f16", "bf16"])
def test_int2_fp16_bf16_rows_match_the_ir_dequantization(K, fmt):
    gen = torch.Generator().manual_seed(11)
    w, idx, off = _quant_case(gen, dim=9)
    if fmt.startswith("rowwise"):
        stored = quantize_rows(w.numpy(), fmt)
        deq = torch.from_numpy(dequantize_rows(stored, fmt, 9))
        blob, kind, stride = torch.from_numpy(stored.reshape(-1)), formats.by_layout(fmt).code, stored.shape[1]
    elif fmt == "f16":
        h = w.half()
        deq, blob, kind, stride = h.float(), h.reshape(-1), formats.by_name("fp16").code, 9
    else:
        bits = bf16_bits(w.numpy())
        deq = torch.from_numpy((bits.astype(np.uint32) << 16).view(np.float32))
        blob, kind, stride = torch.from_numpy(bits.view(np.int16).reshape(-1)), formats.by_name("bf16").code, 9
    for mode in ("sum", "max"):
        out, _ = run_bags(K, blob, [dict(base=0, rows=13, dim=9, row_stride=stride, idx=idx, off=off, mode=mode)], 5,
                          kind=kind)
        want = F.embedding_bag(idx, deq, off, mode=mode, include_last_offset=True)
        torch.testing.assert_close(out, want, rtol=1e-5, atol=1e-5)


def test_pruned_table_reads_remapped_rows_and_pools_pruned_ids_as_zero_rows(K):
    gen = torch.Generator().manual_seed(12)
    logical = 10
    remap = torch.tensor([3, -1, 0, 1, -1, 2, 4, -1, 5, 6], dtype=torch.int32)
    stored = torch.randn(7, 4, generator=gen)
    blob_np, offs = pack_tables([stored.numpy(), remap.numpy()])
    blob = torch.from_numpy(blob_np)
    idx, off = jagged(6, 4, logical, gen)
    full = torch.zeros(logical, 4)
    keep = remap >= 0
    full[keep] = stored[remap[keep].long()]
    for mode in ("sum", "mean", "max"):
        f = dict(base=offs[0] // 4, rows=logical, dim=4, row_stride=4, idx=idx, off=off, mode=mode,
                 remap=offs[1] // 4)
        out, _ = run_bags(K, blob.view(torch.float32), [f], 6, remap_blob=blob.view(torch.int32))
        want = F.embedding_bag(idx, full, off, mode=mode, include_last_offset=True)
        torch.testing.assert_close(out, want, rtol=1e-6, atol=1e-6)


def test_out_of_range_ids_and_bad_offsets_are_recorded_and_never_read(K):
    t = torch.randn(6, 3)
    idx = torch.tensor([1, 6, 2, -1, 9], dtype=torch.int64)
    off = torch.tensor([0, 2, 5], dtype=torch.int64)
    out, err = run_bags(K, t.reshape(-1), [dict(base=0, rows=6, dim=3, row_stride=3, idx=idx, off=off, mode="sum")], 2)
    assert int(err[0]) == 1                       # first bad id position
    assert int(err[1]) == INT32_MAX               # offsets fine
    torch.testing.assert_close(out, torch.stack([t[1], t[2]]))     # bad ids skipped, not read
    bad_off = torch.tensor([0, 4, 2], dtype=torch.int64)         # decreasing
    _, err = run_bags(K, t.reshape(-1), [dict(base=0, rows=6, dim=3, row_stride=3, idx=idx, off=bad_off,
                                                mode="sum")], 2)
    assert int(err[1]) == 1


ACTS = list(formats.ACTIVATIONS)
TORCH_ACT = {"none": lambda x: x, "relu": torch.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh,
             "gelu": F.gelu, "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"), "silu": F.silu}


def _linear(K, x, w, b, y, act, cfg, cross=None):
    M, Kd = x.shape
    N = w.shape[0]
    x0, xl = cross if cross is not None else (x, x)
    grid = (-(-M // cfg["BLOCK_M"]), -(-N // cfg["BLOCK_N"]))
    K.linear_kernel[grid](x, w, b if b is not None else w, y, x0, xl, M, x.stride(0), y.stride(0), x0.stride(0),
                          xl.stride(0), N=N, K=Kd, ACT=formats.ACT_CODES[act], HAS_BIAS=b is not None,
                          CROSS=cross is not None, PRECISION="ieee", **cfg)


@pytest.mark.parametrize("precision", ["ieee", "tf32"])
@pytest.mark.parametrize("variant", [0, 1])
def test_every_gpu_tile_config_of_the_linear_kernel_matches_linear(K, variant, precision):
    gen = torch.Generator().manual_seed(variant)
    M, N, Kd = 37, 19, 45                        # odd sizes: every tile edge is masked
    cfg = linear_variants(M, N, Kd, precision)[variant].constexprs
    x = torch.randn(M, Kd, generator=gen)
    w = torch.randn(N, Kd, generator=gen) / 6
    b = torch.randn(N, generator=gen)
    y = torch.empty(M, N)
    _linear(K, x, w, b, y, "relu", cfg)
    torch.testing.assert_close(y, torch.relu(F.linear(x, w, b)), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("act", ACTS)
def test_linear_epilogue_applies_each_activation(K, act):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(5, 24, generator=gen)
    w = torch.randn(9, 24, generator=gen) / 3
    b = torch.randn(9, generator=gen)
    y = torch.empty(5, 9)
    _linear(K, x, w, b, y, act, dict(BLOCK_M=16, BLOCK_N=16, BLOCK_K=16))
    want = TORCH_ACT[act](F.linear(x, w, b))
    torch.testing.assert_close(y, want, rtol=1e-5, atol=1e-6)


def test_linear_reads_and_writes_column_windows_of_wider_buffers(K):
    gen = torch.Generator().manual_seed(2)
    wide_in = torch.randn(6, 40, generator=gen)
    x = wide_in[:, 7:30]                          # row stride 40, column offset 7
    w = torch.randn(11, 23, generator=gen) / 4
    out = torch.full((6, 50), 7.0)
    y = out[:, 13:24]
    _linear(K, x, w, None, y, "none", dict(BLOCK_M=16, BLOCK_N=16, BLOCK_K=16))
    torch.testing.assert_close(y, F.linear(x, w), rtol=1e-5, atol=1e-5)
    assert torch.all(out[:, :13] == 7.0) and torch.all(out[:, 24:] == 7.0)     # nothing outside the window


@pytest.mark.parametrize("low_rank", [False, True])
def test_cross_layer_epilogue_matches_dcn_formula(K, low_rank):
    gen = torch.Generator().manual_seed(3)
    B, Kd, r = 7, 21, 5
    x0 = torch.randn(B, Kd, generator=gen)
    xl = torch.randn(B, Kd, generator=gen)
    b = torch.randn(Kd, generator=gen)
    cfg = dict(BLOCK_M=16, BLOCK_N=16, BLOCK_K=16)
    if low_rank:
        v = torch.randn(r, Kd, generator=gen) / 4
        w = torch.randn(Kd, r, generator=gen) / 2
        t = torch.empty(B, r)
        _linear(K, xl, v, None, t, "none", cfg)
        src, want = t, x0 * F.linear(F.linear(xl, v), w, b) + xl
    else:
        w = torch.randn(Kd, Kd, generator=gen) / 4
        src, want = xl, x0 * F.linear(xl, w, b) + xl
    y = torch.empty(B, Kd)
    _linear(K, src, w, b, y, "none", cfg, cross=(x0, xl))
    torch.testing.assert_close(y, want, rtol=1e-5, atol=1e-5)


def _interaction(K, t2d, F_, D, pairs, out, prefix, bb, bp):
    P = len(pairs)
    PP = np2(P)
    tab = torch.zeros(2, PP, dtype=torch.int32)
    tab[0, :P] = torch.tensor([i for i, _ in pairs])
    tab[1, :P] = torch.tensor([j for _, j in pairs])
    B = t2d.shape[0]
    K.interaction_kernel[(-(-B // bb), -(-P // bp))](t2d, out, tab, B, t2d.stride(0), out.stride(0), F=F_, D=D, P=P,
                                                    DP=np2(D), PP=PP, PREFIX=prefix, BLOCK_B=bb, BLOCK_P=bp)


@pytest.mark.parametrize("offset", [-1, 0])
@pytest.mark.parametrize("bb,bp", [(1, 16), (4, 64)])
def test_dot_interaction_matches_bmm_gather_and_fuses_the_dense_prefix(K, offset, bb, bp):
    gen = torch.Generator().manual_seed(4)
    B, F_, D = 5, 7, 10
    wide = torch.randn(B, 3 + F_ * D, generator=gen)
    t2d = wide[:, 3:]                                              # strided rows
    li, lj = torch.tril_indices(F_, F_, offset=offset)
    pairs = list(zip(li.tolist(), lj.tolist()))
    t = t2d.reshape(B, F_, D)
    z = torch.bmm(t, t.transpose(1, 2))[:, li, lj]
    out = torch.full((B, D + len(pairs)), float("nan"))
    _interaction(K, t2d, F_, D, pairs, out, True, bb, bp)
    torch.testing.assert_close(out, torch.cat([t[:, 0], z], 1), rtol=1e-5, atol=1e-5)
    out2 = torch.empty(B, len(pairs))
    _interaction(K, t2d, F_, D, pairs, out2, False, bb, bp)
    torch.testing.assert_close(out2, z, rtol=1e-5, atol=1e-5)


def test_fm_matches_the_second_order_formula(K):
    gen = torch.Generator().manual_seed(5)
    B, F_, Kd = 9, 6, 5
    v2d = torch.randn(B, F_ * Kd + 4, generator=gen)[:, 4:]
    v = v2d.reshape(B, F_, Kd)
    out = torch.empty(B, 1)
    K.fm_kernel[(-(-B // 4),)](v2d, out, B, v2d.stride(0), out.stride(0), F=F_, K=Kd, FP=np2(F_), KP=np2(Kd),
                               BLOCK_B=4)
    s = v.sum(1)
    want = 0.5 * (s * s - (v * v).sum(1)).sum(1, keepdim=True)
    torch.testing.assert_close(out, want, rtol=1e-5, atol=1e-5)
