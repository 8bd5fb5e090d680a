"""The Triton kernel templates the triton target specialises per model.

Every dimension, pooling mode, dtype and tile size is a ``tl.constexpr``;
only the batch (and the ids of each call) vary at run time. The kernels are
compiled three ways from this one file:

* on a CUDA GPU by Triton's JIT (``xrec.load`` of a triton artifact);
* on the CPU by Triton's interpreter (``TRITON_INTERPRET`` semantics; chosen
  automatically on a machine without a CUDA device);
* ahead of time to cubin for sm_80 / sm_90 (``aot.py``), launched from C.

Do not import this module directly: ``load_kernels(path, interpret)`` in
``runtime.py`` executes it (or an artifact's copy of it, with the generated
elementwise kernels appended) with Triton's interpret knob set for the
decorators, because Triton reads that knob when a kernel is decorated.

Conventions: a 2-D operand is (pointer to its first element, row stride in
elements) with unit column stride, so a kernel can read a column slice of a
wider buffer and write into its slot of a concatenation (``cat`` costs no copy).
"""
import triton
import triton.language as tl

# activation codes (ACT constexpr), same order as xrec.ir.ops.ACTIVATIONS
ACT_NONE, ACT_RELU, ACT_SIGMOID, ACT_TANH, ACT_GELU, ACT_GELU_TANH, ACT_SILU = range(7)
# table row formats (KIND constexpr); the quantized ones are FBGEMM's row-wise layouts (xrec/ir/quant.py)
ROW_F32, ROW_F16, ROW_I8, ROW_I4, ROW_I2, ROW_BF16 = range(6)
# pooling modes (per feature, in the metadata array)
POOL_SUM, POOL_MEAN, POOL_MAX = range(3)
# columns of the embedding metadata array (int64 [features, META_COLS])
(META_BASE, META_ROWS, META_DIM, META_OUT_COL, META_MODE, META_PAD, META_ROW_STRIDE, META_SLOT,
 META_REMAP) = range(9)
META_COLS = 10
# columns of the per-call pointer table (int64 [features, PTR_COLS])
PTR_IDX, PTR_OFF, PTR_PSW, PTR_NNZ = range(4)
PTR_COLS = 4
INT32_MAX = 2147483647


# Only Triton builtins are used below, never the @jit helpers of triton.language.standard
# (tl.sum, tl.max, tl.zeros, tl.sigmoid): those are decorated when triton is imported, so in a
# process that imported triton in GPU mode they cannot run in the interpreter. tl.reduce with
# the standard combine functions is recognised by the interpreter and runs as one numpy call.
@triton.jit
def _rsum(x, axis: tl.constexpr):
    return tl.reduce(x, axis, tl.standard._sum_combine)


@triton.jit
def _max_nan(a, b):
    return tl.maximum(a, b, propagate_nan=tl.PropagateNan.ALL)


@triton.jit
def _rmax(x, axis: tl.constexpr):
    # NaN propagates (as torch.amax / max pooling); tl.maximum's default drops a NaN operand
    return tl.reduce(x, axis, _max_nan)


@triton.jit
def _tanh(x):
    # no libdevice (the interpreter lacks it): exp form, Taylor series near 0 to keep relative accuracy
    ax = tl.abs(x)
    e = tl.exp(-2.0 * ax)
    t = (1.0 - e) / (1.0 + e)
    x2 = x * x
    small = x * (1.0 - x2 * (1.0 / 3.0) + x2 * x2 * (2.0 / 15.0))
    return tl.where(ax < 0.01, small, tl.where(x < 0, -t, t))


@triton.jit
def _sigmoid(x):
    return 1.0 / (1.0 + tl.exp(-x))


@triton.jit
def _act(x, ACT: tl.constexpr):
    if ACT == 1:
        x = tl.maximum(x, 0.0, propagate_nan=tl.PropagateNan.ALL)   # NaN stays NaN (torch.relu)
    elif ACT == 2:
        x = _sigmoid(x)
    elif ACT == 3:
        x = _tanh(x)
    elif ACT == 4:
        x = 0.5 * x * (1.0 + tl.erf(x * 0.7071067811865476))
    elif ACT == 5:
        x = 0.5 * x * (1.0 + _tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)))
    elif ACT == 6:
        x = x * _sigmoid(x)
    return x


# ---------------------------------------------------------------------------------------------
# Table-batched embedding bags (EMBEDDING_BAG_GROUP): one program per (feature, block of bags).
# ---------------------------------------------------------------------------------------------
@triton.jit
def _load_u32(P, mask):
    # 4 little-endian bytes at P (any alignment) as uint32; P is a uint8 pointer tensor
    b0 = tl.load(P, mask=mask, other=0).to(tl.uint32)
    b1 = tl.load(P + 1, mask=mask, other=0).to(tl.uint32)
    b2 = tl.load(P + 2, mask=mask, other=0).to(tl.uint32)
    b3 = tl.load(P + 3, mask=mask, other=0).to(tl.uint32)
    return b0 | (b1 << 8) | (b2 << 16) | (b3 << 24)


@triton.jit
def _load_u16(P, mask):
    b0 = tl.load(P, mask=mask, other=0).to(tl.uint16)
    b1 = tl.load(P + 1, mask=mask, other=0).to(tl.uint16)
    return b0 | (b1 << 8)


@triton.jit
def _dequant_packed(WEIGHTS, rowbase, d3, m3, rm, dim, BITS: tl.constexpr):
    # FBGEMM int4/int2 rows: ceil(dim * BITS / 8) bytes of values, then fp16 scale and fp16 bias
    PER: tl.constexpr = 8 // BITS
    byte = tl.load(WEIGHTS + rowbase[:, :, None] + d3 // PER, mask=m3, other=0).to(tl.int32)
    q = ((byte >> ((d3 % PER) * BITS)) & ((1 << BITS) - 1)).to(tl.float32)
    sp = WEIGHTS + rowbase + (dim + PER - 1) // PER
    scale = _load_u16(sp, rm).to(tl.float16, bitcast=True).to(tl.float32)
    bias = _load_u16(sp + 2, rm).to(tl.float16, bitcast=True).to(tl.float32)
    return q * scale[:, :, None] + bias[:, :, None]


@triton.jit
def embedding_bag_group_kernel(
        WEIGHTS, REMAP, META, PTRS, OUT, ERR, B, stride_out,
        KIND: tl.constexpr, IDX_64: tl.constexpr, OFF_64: tl.constexpr, INCLUDE_LAST: tl.constexpr,
        HAS_PSW: tl.constexpr, HAS_PAD: tl.constexpr, HAS_MEAN: tl.constexpr, HAS_MAX: tl.constexpr,
        HAS_REMAP: tl.constexpr, CHECK: tl.constexpr, BLOCK_B: tl.constexpr, L: tl.constexpr,
        BLOCK_D: tl.constexpr):
    """OUT[b, out_col(f) + d] = pool_{i in bag b of feature f} w_i * table_f[ids_i, d].

    WEIGHTS: every table (one base pointer, per-feature element offset in META), read as
    f32 / f16 / bytes (FBGEMM row-wise int8 / int4 / int2) / int16 (bf16 bit patterns);
    REMAP: the same memory as int32, for pruned tables (logical id -> stored row, -1 = zero row);
    META: int64 [F, 10] static per-feature facts (see META_* above);
    PTRS: int64 [F, 4] per-call addresses of indices / offsets / per-sample weights and nnz;
    ERR: int32 [2 * slots], min-reduced: first bad id position, first bad bag (INT32_MAX if none).
    Each step of the loop loads a [BLOCK_B, L, BLOCK_D] tile: L ids of each of BLOCK_B bags.
    """
    f = tl.program_id(0)
    pb = tl.program_id(1)
    mrow = META + f * 10
    base = tl.load(mrow + 0)
    nrows = tl.load(mrow + 1)
    dim = tl.load(mrow + 2)
    out_col = tl.load(mrow + 3)
    mode = tl.load(mrow + 4)
    pad = tl.load(mrow + 5)
    row_stride = tl.load(mrow + 6)
    slot = tl.load(mrow + 7)
    remap_base = tl.load(mrow + 8)
    prow = PTRS + f * 4
    if IDX_64:
        idx_ptr = tl.load(prow + 0).to(tl.pointer_type(tl.int64))
    else:
        idx_ptr = tl.load(prow + 0).to(tl.pointer_type(tl.int32))
    if OFF_64:
        off_ptr = tl.load(prow + 1).to(tl.pointer_type(tl.int64))
    else:
        off_ptr = tl.load(prow + 1).to(tl.pointer_type(tl.int32))
    nnz = tl.load(prow + 3)

    bags = pb * BLOCK_B + tl.arange(0, BLOCK_B)
    bmask = bags < B
    start = tl.load(off_ptr + bags, mask=bmask, other=0).to(tl.int64)
    if INCLUDE_LAST:
        end = tl.load(off_ptr + bags + 1, mask=bmask, other=0).to(tl.int64)
    else:
        end = tl.load(off_ptr + bags + 1, mask=bmask & (bags + 1 < B), other=0).to(tl.int64)
        end = tl.where(bags + 1 == B, nnz, end)
    bad_bag = bmask & ((start < 0) | (end < start) | (end > nnz))
    if CHECK:
        tl.atomic_min(ERR + 2 * slot + 1 + bags * 0, bags.to(tl.int32), mask=bad_bag)
    lens = tl.where(bad_bag | (bags >= B), 0, end - start)
    max_len = _rmax(lens, 0)

    d = tl.arange(0, BLOCK_D)
    dmask = d < dim
    d3 = d[None, None, :]
    dmask3 = dmask[None, None, :]
    acc = tl.full([BLOCK_B, BLOCK_D], 0.0, tl.float32)
    if HAS_MAX:
        accmax = tl.full([BLOCK_B, BLOCK_D], float("-inf"), tl.float32)
    cnt = tl.full([BLOCK_B], 0.0, tl.float32)
    pos = tl.arange(0, L)
    for l0 in range(0, max_len, L):
        p = l0 + pos[None, :]                                   # [1, L]
        m = p < lens[:, None]                                   # [BLOCK_B, L]: ids that are in a bag
        gpos = start[:, None] + p                               # position in this feature's ids
        ids = tl.load(idx_ptr + gpos, mask=m, other=0).to(tl.int64)
        if CHECK:
            bad = m & ((ids < 0) | (ids >= nrows))
            tl.atomic_min(ERR + 2 * slot + gpos * 0, gpos.to(tl.int32), mask=bad)
        m = m & (ids >= 0) & (ids < nrows)                      # never read outside the table
        if HAS_PAD:
            m = m & (ids != pad)
        rm = m                                                  # rows that are read (pooled rows: m)
        if HAS_REMAP:
            has = (ids * 0 + remap_base) >= 0                   # this feature's table is pruned
            phys = tl.load(REMAP + remap_base + ids, mask=m & has, other=0).to(tl.int64)
            phys = tl.where(has, phys, ids)
            rm = m & (phys >= 0)                                # pruned rows pool as zeros
            ids = tl.maximum(phys, 0)
        rowbase = base + ids * row_stride                       # [BLOCK_B, L] element offsets
        m3 = rm[:, :, None] & dmask3
        if KIND == 2:                                           # int8: q, fp32 scale, fp32 bias
            q = tl.load(WEIGHTS + rowbase[:, :, None] + d3, mask=m3, other=0).to(tl.float32)
            sp = WEIGHTS + rowbase + dim
            scale = _load_u32(sp, rm).to(tl.float32, bitcast=True)
            bias = _load_u32(sp + 4, rm).to(tl.float32, bitcast=True)
            vals = q * scale[:, :, None] + bias[:, :, None]
        elif KIND == 3:                                         # int4: two per byte, low nibble first
            vals = _dequant_packed(WEIGHTS, rowbase, d3, m3, rm, dim, 4)
        elif KIND == 4:                                         # int2: four per byte, low bits first
            vals = _dequant_packed(WEIGHTS, rowbase, d3, m3, rm, dim, 2)
        elif KIND == 5:                                         # bf16 bit patterns read as int16
            h = tl.load(WEIGHTS + rowbase[:, :, None] + d3, mask=m3, other=0).to(tl.int32) & 65535
            vals = (h << 16).to(tl.float32, bitcast=True)
        else:                                                   # fp32 / fp16 rows
            vals = tl.load(WEIGHTS + rowbase[:, :, None] + d3, mask=m3, other=0.0).to(tl.float32)
        if HAS_PSW:                                             # features without weights have address 0
            psw_addr = tl.load(prow + 2)
            psw_ptr = psw_addr.to(tl.pointer_type(tl.float32))
            w = tl.load(psw_ptr + gpos, mask=m & ((gpos * 0 + psw_addr) != 0), other=1.0)
            vals = vals * w[:, :, None]
        vals = tl.where(m3, vals, 0.0)
        acc += _rsum(vals, 1)
        cnt += _rsum(m.to(tl.float32), 1)
        if HAS_MAX:
            accmax = tl.maximum(accmax, _rmax(tl.where(m[:, :, None] & dmask3, vals, float("-inf")), 1))
    res = acc
    if HAS_MEAN:
        res = tl.where(mode == 1, acc / tl.maximum(cnt, 1.0)[:, None], res)
    if HAS_MAX:
        res = tl.where(mode == 2, tl.where(cnt[:, None] > 0, accmax, 0.0), res)
    optr = OUT + bags[:, None].to(tl.int64) * stride_out + out_col + d[None, :]
    tl.store(optr, res, mask=bmask[:, None] & dmask[None, :])


# ---------------------------------------------------------------------------------------------
# Fused linear layer: Y = act(X @ W^T + b), or the DCN cross epilogue Y = X0 * (X @ W^T + b) + XL.
# ---------------------------------------------------------------------------------------------
@triton.jit
def linear_kernel(X, W, BIAS, Y, X0, XL, M, stride_x, stride_y, stride_x0, stride_xl,
                  N: tl.constexpr, K: tl.constexpr, ACT: tl.constexpr, HAS_BIAS: tl.constexpr,
                  CROSS: tl.constexpr, PRECISION: tl.constexpr,
                  BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    """X [M, K] (row stride stride_x), W [N, K] contiguous (PyTorch's Linear layout), Y [M, N]."""
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    rm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    rk = tl.arange(0, BLOCK_K)
    mmask = rm < M
    nmask = rn < N
    rm64 = rm.to(tl.int64)
    acc = tl.full([BLOCK_M, BLOCK_N], 0.0, tl.float32)
    for k0 in range(0, K, BLOCK_K):
        kk = k0 + rk
        kmask = kk < K
        a = tl.load(X + rm64[:, None] * stride_x + kk[None, :], mask=mmask[:, None] & kmask[None, :], other=0.0)
        b = tl.load(W + rn[None, :].to(tl.int64) * K + kk[:, None], mask=kmask[:, None] & nmask[None, :],
                    other=0.0)
        acc = tl.dot(a, b, acc, input_precision=PRECISION)
    if HAS_BIAS:
        acc += tl.load(BIAS + rn, mask=nmask, other=0.0).to(tl.float32)[None, :]
    omask = mmask[:, None] & nmask[None, :]
    if CROSS:
        x0 = tl.load(X0 + rm64[:, None] * stride_x0 + rn[None, :], mask=omask, other=0.0).to(tl.float32)
        xl = tl.load(XL + rm64[:, None] * stride_xl + rn[None, :], mask=omask, other=0.0).to(tl.float32)
        acc = x0 * acc + xl
    else:
        acc = _act(acc, ACT)
    tl.store(Y + rm64[:, None] * stride_y + rn[None, :], acc.to(Y.dtype.element_ty), mask=omask)


# ---------------------------------------------------------------------------------------------
# DLRM dot interaction, fused with the concat that follows it.
# ---------------------------------------------------------------------------------------------
@triton.jit
def interaction_kernel(T, OUT, PAIRS, M, stride_t, stride_out,
                       F: tl.constexpr, D: tl.constexpr, P: tl.constexpr, DP: tl.constexpr, PP: tl.constexpr,
                       PREFIX: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_P: tl.constexpr):
    """T [M, F*D] viewed as [M, F, D]; OUT[:, PREFIX*D + p] = <T[:, i_p], T[:, j_p]>.

    With PREFIX, OUT[:, :D] = T[:, 0, :] as well (DLRM's cat(dense, interactions)).
    PAIRS: int32 [2, PP]: i_p then j_p (padded with 0). A program computes BLOCK_P pairs of
    BLOCK_B samples from [BLOCK_B, BLOCK_P, DP] tiles of T's rows (one sample's T stays in cache).
    """
    pid = tl.program_id(0)
    pp = tl.program_id(1) * BLOCK_P + tl.arange(0, BLOCK_P)
    b = pid * BLOCK_B + tl.arange(0, BLOCK_B)
    bmask = b < M
    b64 = b.to(tl.int64)
    pmask = pp < P
    li = tl.load(PAIRS + pp, mask=pmask, other=0)
    lj = tl.load(PAIRS + PP + pp, mask=pmask, other=0)
    d = tl.arange(0, DP)
    d3 = d[None, None, :]
    m3 = bmask[:, None, None] & pmask[None, :, None] & (d3 < D)
    row = T + b64[:, None, None] * stride_t + d3
    ti = tl.load(row + (li * D)[None, :, None], mask=m3, other=0.0).to(tl.float32)
    tj = tl.load(row + (lj * D)[None, :, None], mask=m3, other=0.0).to(tl.float32)
    z = _rsum(ti * tj, 2)                                               # [BLOCK_B, BLOCK_P]
    col0 = D if PREFIX else 0
    tl.store(OUT + b64[:, None] * stride_out + col0 + pp[None, :], z.to(OUT.dtype.element_ty),
             mask=bmask[:, None] & pmask[None, :])
    if PREFIX:
        if tl.program_id(1) == 0:
            dm = bmask[:, None] & (d < D)[None, :]
            t0 = tl.load(T + b64[:, None] * stride_t + d[None, :], mask=dm, other=0.0)
            tl.store(OUT + b64[:, None] * stride_out + d[None, :], t0, mask=dm)


# ---------------------------------------------------------------------------------------------
# Factorization machine (DeepFM's second-order term).
# ---------------------------------------------------------------------------------------------
@triton.jit
def fm_kernel(V, OUT, M, stride_v, stride_out, F: tl.constexpr, K: tl.constexpr, FP: tl.constexpr,
              KP: tl.constexpr, BLOCK_B: tl.constexpr):
    """V [M, F*K] viewed as [M, F, K]; OUT[m] = 0.5 * sum_k((sum_f v)^2 - sum_f v^2)."""
    pid = tl.program_id(0)
    b = pid * BLOCK_B + tl.arange(0, BLOCK_B)
    bmask = b < M
    b64 = b.to(tl.int64)
    f3 = tl.arange(0, FP)[None, :, None]
    k3 = tl.arange(0, KP)[None, None, :]
    v = tl.load(V + b64[:, None, None] * stride_v + f3 * K + k3,
                mask=bmask[:, None, None] & (f3 < F) & (k3 < K), other=0.0).to(tl.float32)
    s = _rsum(v, 1)
    sq = _rsum(v * v, 1)
    out = 0.5 * _rsum(s * s - sq, 1)
    tl.store(OUT + b64 * stride_out, out.to(OUT.dtype.element_ty), mask=bmask)


# ---------------------------------------------------------------------------------------------
# Generated elementwise kernels (one per fused cluster of the model) are appended below this line
# in an artifact's copy of this file (src/xrec_triton_kernels.py).
# ---------------------------------------------------------------------------------------------
