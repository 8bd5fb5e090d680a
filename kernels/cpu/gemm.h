// xrec CPU kernels: dense layers (Y = act(X W^T + b)) on packed weights.
// Included by xrec_kernels.h.
//
// Packed layout (the same for every ISA path): W [N, K] is cut into panels of
// NR = 32 output columns; panel p holds, for k = 0..K-1, the 32 values
// W[32p + j, k] (j = 0..31) contiguously, zero-padded past N:
//     packed[(p * K + k) * 32 + j] = W[32p + j, k]
// so a K-range of a panel is contiguous and the microkernel streams it.
#pragma once
#include "simd.h"
#include "activations.h"

namespace xrec {
namespace XREC_ISA_NS {
namespace gemm {

constexpr int NR = 32;                 // panel width (columns), ISA-independent
constexpr int NV = NR / simd::W;       // vectors per panel row
#if defined(XREC_SIMD_AVX512)
constexpr int MR = 12;                 // rows per microkernel tile: 12 x 2 zmm accumulators
#elif defined(XREC_SIMD_AVX2)
constexpr int MR = 3;                  // 3 x 4 ymm accumulators
#else
constexpr int MR = 4;
#endif

// One MR_ x NR tile over k in [0, kc): acc = (first ? 0 : Y) + X W^T; on the
// last K block also bias and activation. ncols (<= NR) columns are valid.
// Activation applied to a vector of the tile before it is stored (relu always;
// the others here when the build has vector forms, else after the store).
inline simd::vf epilogue(Act act, simd::vf t) {
  // max(0, t): x86 max returns its second operand when either is NaN, so NaN stays NaN
  if (act == ACT_RELU) return simd::max(simd::zero(), t);
#if defined(XREC_HAVE_ACT_VEC)
  if (act != ACT_NONE) return act_vec(act, t);
#endif
  return t;
}

// Independent accumulator chains per output vector: tiles with few rows split
// K over KU chains so that enough FMAs are in flight (FMA latency 4 x 2 pipes).
template <int MR_, int NV_>
constexpr int k_unroll() { return MR_ * NV_ >= 8 ? 1 : (MR_ * NV_ >= 4 ? 2 : 4); }

// NV_ < NV computes only the first NV_ vectors of the panel (dot_interaction's
// triangle); ncols must then be <= NV_ * W.
template <int MR_, int NV_ = NV>
inline void tile(const float* X, long ldx, const float* Wp, int kc, float* Y, long ldy,
                 int ncols, bool first, bool last, const float* bias, Act act) {
  constexpr int KU = k_unroll<MR_, NV_>();
  simd::vf acc[MR_][NV_];
  for (int r = 0; r < MR_; ++r)
    for (int v = 0; v < NV_; ++v) acc[r][v] = simd::zero();
  int k = 0;
  if constexpr (KU > 1) {
    simd::vf part[KU - 1][MR_][NV_];
    for (int u = 0; u < KU - 1; ++u)
      for (int r = 0; r < MR_; ++r)
        for (int v = 0; v < NV_; ++v) part[u][r][v] = simd::zero();
    for (; k + KU <= kc; k += KU) {
      for (int u = 0; u < KU; ++u) {
        const float* w = Wp + (long)(k + u) * NR;
        for (int r = 0; r < MR_; ++r) {
          const simd::vf a = simd::set1(X[r * ldx + k + u]);
          for (int v = 0; v < NV_; ++v) {
            simd::vf& t = u == 0 ? acc[r][v] : part[u == 0 ? 0 : u - 1][r][v];
            t = simd::fma(a, simd::load(w + v * simd::W), t);
          }
        }
      }
    }
    for (int u = 0; u < KU - 1; ++u)
      for (int r = 0; r < MR_; ++r)
        for (int v = 0; v < NV_; ++v) acc[r][v] = simd::add(acc[r][v], part[u][r][v]);
  }
  for (; k < kc; ++k) {
    simd::vf b[NV_];
    const float* x = X + k;  // (X + k, not X[.. + k]: keeps GCC 12's loop-bound analysis quiet)
    for (int v = 0; v < NV_; ++v) b[v] = simd::load(Wp + (long)k * NR + v * simd::W);
    for (int r = 0; r < MR_; ++r) {
      const simd::vf a = simd::set1(x[r * ldx]);
      for (int v = 0; v < NV_; ++v) acc[r][v] = simd::fma(a, b[v], acc[r][v]);
    }
  }
  if (ncols == NV_ * simd::W) {
    for (int r = 0; r < MR_; ++r) {
      float* y = Y + r * ldy;
      for (int v = 0; v < NV_; ++v) {
        simd::vf t = acc[r][v];
        if (!first) t = simd::add(t, simd::load(y + v * simd::W));
        if (last) {
          if (bias) t = simd::add(t, simd::load(bias + v * simd::W));
          t = epilogue(act, t);
        }
        simd::store(y + v * simd::W, t);
      }
    }
  } else {
    for (int r = 0; r < MR_; ++r) {
      float* y = Y + r * ldy;
      for (int v = 0; v < NV_; ++v) {
        const int n = ncols - v * simd::W;
        if (n <= 0) break;
        simd::vf t = acc[r][v];
        if (!first) t = simd::add(t, simd::load_n(y + v * simd::W, n));
        if (last) {
          if (bias) t = simd::add(t, simd::load_n(bias + v * simd::W, n));
          t = epilogue(act, t);
        }
        simd::store_n(y + v * simd::W, t, n);
      }
    }
  }
#if !defined(XREC_HAVE_ACT_VEC)
  if (last && act != ACT_NONE && act != ACT_RELU) act_inplace(act, Y, ldy, MR_, ncols);
#endif
}

template <int R, int NV_ = NV>
inline void tile_rows(int rows, const float* X, long ldx, const float* Wp, int kc, float* Y,
                      long ldy, int ncols, bool first, bool last, const float* bias, Act act) {
  if (rows == R) {
    tile<R, NV_>(X, ldx, Wp, kc, Y, ldy, ncols, first, last, bias, act);
  } else if constexpr (R > 1) {
    tile_rows<R - 1, NV_>(rows, X, ldx, Wp, kc, Y, ldy, ncols, first, last, bias, act);
  }
}

// Narrow layers (1-2 output columns, e.g. the final logit): a panel tile would
// compute 32 columns for 1, so instead each column is a dot product per row:
// column c of W is copied out of its panel into w, rows are processed 16 at a
// time with one vector accumulator each, reduced by a 16 x 16 transpose.
constexpr int NARROW_MAX_K = 16384;

inline void linear_narrow(const float* X, long M, int K, long ldx, const float* packed,
                          const float* bias, Act act, float* Y, long ldy, int c) {
  constexpr int W = simd::W;
  alignas(64) float w[NARROW_MAX_K];
  const float* panel = packed + (size_t)(c / NR) * K * NR + c % NR;
  for (int k = 0; k < K; ++k) w[k] = panel[(size_t)k * NR];
  const float b = bias ? bias[c] : 0.0f;
  const int kfull = K / W * W;
  long m = 0;
#if defined(XREC_SIMD_AVX512)
  const int ktail = K - kfull;
  for (; m + W <= M; m += W) {
    simd::vf acc[W];
    for (int r = 0; r < W; ++r) acc[r] = simd::zero();
    for (int k = 0; k < kfull; k += W) {
      const simd::vf wv = simd::load(w + k);
      for (int r = 0; r < W; ++r) acc[r] = simd::fma(simd::load(X + (m + r) * ldx + k), wv, acc[r]);
    }
    if (ktail) {
      const simd::vf wv = simd::load_n(w + kfull, ktail);
      for (int r = 0; r < W; ++r) acc[r] = simd::fma(simd::load_n(X + (m + r) * ldx + kfull, ktail), wv, acc[r]);
    }
    simd::transpose16(acc);
    simd::vf sum = acc[0];
    for (int r = 1; r < W; ++r) sum = simd::add(sum, acc[r]);
    sum = epilogue(act, simd::add(sum, simd::set1(b)));
    alignas(64) float t[W];
    simd::store(t, sum);
    for (int r = 0; r < W; ++r) Y[(m + r) * ldy + c] = t[r];
  }
#endif
  for (; m < M; ++m) {
    const float* x = X + m * ldx;
    simd::vf acc = simd::zero();
    for (int k = 0; k < kfull; k += W) acc = simd::fma(simd::load(x + k), simd::load(w + k), acc);
    float sum = simd::hsum(acc);
    for (int k = kfull; k < K; ++k) sum += x[k] * w[k];
    Y[m * ldy + c] = act_scalar(act, sum + b);
  }
}

// Blocking of the blocked path (M > MR): K blocks of KC_BLOCK; row blocks of
// MC_BLOCK rows, or of MC_PACKED rows when X is copied (see x_rows_alias) into
// a stack buffer of MC_PACKED x XP_LD floats (97.5 KB on AVX-512).
constexpr int KC_BLOCK = 1024;
constexpr long MC_BLOCK = 8 * MR;
constexpr long MC_PACKED = 2 * MR;
constexpr long XP_LD = KC_BLOCK + 16;  // 4160 bytes: consecutive rows 65 lines apart

// True when the X rows of one MR-row tile crowd into few sets of a 64-set L1
// (4 KB period: Zen 4's 32 KB 8-way, Intel's 48 KB 12-way): more than 6 rows on
// one set (of 8 ways, next to the W and Y lines) evict each other every k. On
// AVX-512 (MR = 12) that is ldx within a few floats of a multiple of 1024 (12
// rows on one set; 1024->1024 at M = 512: 77% -> 83% of the FMA probe with the
// copy, when K blocks were 256); ldx = 512 (6 rows per set) measured no gain
// from copying. Never with MR <= 6 (AVX2, scalar), where copying only shrank
// the row blocks (AVX2 512->256: x0.89).
constexpr int MAX_X_ROWS_PER_SET = 6;
inline bool x_rows_alias(long ldx) {
  int count[64] = {0};
  int most = 0;
  for (int r = 0; r < MR; ++r) {
    const int set = (int)((((long)r * ldx * (long)sizeof(float)) & 4095) >> 6);
    if (++count[set] > most) most = count[set];
  }
  return most > MAX_X_ROWS_PER_SET;
}

// Blocking: row blocks of MC rows, column blocks of NC, K blocks of KC. Per
// (row block, column block) the MC x NC block of Y stays in L2 across the K
// blocks; per K block the MC x KC slice of X (384 KB on AVX-512) stays in L2
// across the panels and the KC x 32 slice of a panel (128 KB) in L2 across the
// MC / MR tiles. A long K block amortises a tile's fixed cost (accumulator
// set-up, the Y read-modify-write and epilogue, the W stream's restart): on
// Zen 4 (1 MB L2) KC 512 measured 1.02-1.07x over 256 (128: 0.92-0.98x) and KC
// 1024 another 1.02-1.07x on the DLRM shapes at M = 512 / 2048; the 256 x 32
// slice (32 KB) did not stay in L1 next to X anyway.
// xp null: tiles read X in place; else each MC x KC block of X is first copied
// into xp (row stride XP_LD; MC <= MC_PACKED, KC <= KC_BLOCK).
inline void linear_blocks(const float* X, long M, int K, long ldx, const float* packed,
                          const float* bias, Act act, float* Y, long ldy, int n0, int n1,
                          long MC, int KC, float* xp) {
  constexpr int NC = 8 * NR;
  for (long m0 = 0; m0 < M; m0 += MC) {
    const long mc = min_l(MC, M - m0);
    for (int nc0 = n0; nc0 < n1; nc0 += NC) {
      const int nc1 = min_i(n1, nc0 + NC);
      for (int k0 = 0; k0 < K; k0 += KC) {
        const int kc = min_i(KC, K - k0);
        const bool first = k0 == 0, last = k0 + kc == K;
        const float* xb = X + m0 * ldx + k0;
        long ldb = ldx;
        if (xp) {
          for (long r = 0; r < mc; ++r)
            std::memcpy(xp + r * XP_LD, X + (m0 + r) * ldx + k0, (size_t)kc * sizeof(float));
          xb = xp;
          ldb = XP_LD;
        }
        for (int c0 = nc0; c0 < nc1; c0 += NR) {
          const int ncols = min_i(NR, nc1 - c0);
          const float* Wp = packed + ((size_t)(c0 / NR) * K + k0) * NR;
          const float* b = bias ? bias + c0 : nullptr;
          long r = 0;
          for (; r + MR <= mc; r += MR)
            tile<MR>(xb + r * ldb, ldb, Wp, kc, Y + (m0 + r) * ldy + c0, ldy, ncols,
                     first, last, b, act);
          if (r < mc)
            tile_rows<MR - 1>((int)(mc - r), xb + r * ldb, ldb, Wp, kc,
                              Y + (m0 + r) * ldy + c0, ldy, ncols, first, last, b, act);
        }
      }
    }
  }
}

// X rows whose stride maps a tile's rows onto few L1 sets (x_rows_alias, e.g.
// ldx = 1024 floats: all MR rows 4 KB apart) are copied per block into a stack
// buffer whose row stride (KC_BLOCK + 16 floats) spreads them over the sets.
// Not inlined: the 97.5 KB frame exists only in calls that copy (an always
// present frame measured ~5% on the 13->512 layer at M = 64).
__attribute__((noinline)) inline void linear_blocks_copied(
    const float* X, long M, int K, long ldx, const float* packed, const float* bias, Act act,
    float* Y, long ldy, int n0, int n1) {
  alignas(64) float xp[MC_PACKED * XP_LD];
  linear_blocks(X, M, K, ldx, packed, bias, act, Y, ldy, n0, n1, MC_PACKED, KC_BLOCK, xp);
}

}  // namespace gemm

inline int linear_n_block() { return gemm::NR; }

inline size_t linear_packed_floats(int N, int K) {
  const size_t panels = (size_t)((N + gemm::NR - 1) / gemm::NR);
  return panels * (size_t)gemm::NR * (size_t)K;
}

inline void pack_linear(const float* W, int N, int K, float* packed) {
  constexpr int NR = gemm::NR;
  const int panels = (N + NR - 1) / NR;
  for (int p = 0; p < panels; ++p) {
    float* dst = packed + (size_t)p * K * NR;
    int k0 = 0;
#if defined(XREC_SIMD_AVX512)
    // 16 x 16 blocks transposed in registers (rows past N are zero).
    for (; k0 + 16 <= K; k0 += 16)
      for (int j0 = 0; j0 < NR; j0 += 16) {
        simd::vf r[16];
        for (int i = 0; i < 16; ++i) {
          const int n = p * NR + j0 + i;
          r[i] = n < N ? simd::load(W + (size_t)n * K + k0) : simd::zero();
        }
        simd::transpose16(r);
        for (int c = 0; c < 16; ++c) simd::store(dst + (size_t)(k0 + c) * NR + j0, r[c]);
      }
#endif
    for (int k = k0; k < K; ++k)
      for (int j = 0; j < NR; ++j) {
        const int n = p * NR + j;
        dst[(size_t)k * NR + j] = n < N ? W[(size_t)n * K + k] : 0.0f;
      }
  }
}

inline void linear(const float* X, long M, int K, long ldx, const float* packed, int N,
                   const float* bias, Act act, float* Y, long ldy, int n0, int n1) {
  using namespace gemm;
  (void)N;  // panels are addressed by column; N only bounds n1
  if (M <= 0 || n1 <= n0) return;
  if (K == 0) {  // empty reduction: Y = act(bias)
    for (long m = 0; m < M; ++m)
      for (int n = n0; n < n1; ++n) Y[m * ldy + n] = act_scalar(act, bias ? bias[n] : 0.0f);
    return;
  }
  if (n1 - n0 <= 2 && K <= NARROW_MAX_K) {
    for (int c = n0; c < n1; ++c) linear_narrow(X, M, K, ldx, packed, bias, act, Y, ldy, c);
    return;
  }
  // Small M (one tile of rows): no K blocking, panels in order, so the packed
  // weights are read as one sequential stream (GEMV-like; they dominate traffic).
  if (M <= MR)
    linear_blocks(X, M, K, ldx, packed, bias, act, Y, ldy, n0, n1, MC_BLOCK, K, nullptr);
  else if (x_rows_alias(ldx))
    linear_blocks_copied(X, M, K, ldx, packed, bias, act, Y, ldy, n0, n1);
  else
    linear_blocks(X, M, K, ldx, packed, bias, act, Y, ldy, n0, n1, MC_BLOCK, KC_BLOCK, nullptr);
}

}  // namespace XREC_ISA_NS
}  // namespace xrec
