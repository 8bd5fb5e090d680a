// xrec CPU kernels: DLRM dot interaction (pairwise dot products per sample).
// Included by xrec_kernels.h (after gemm.h).
//
// Per sample, the Gram matrix Z = T_b T_b^T (F x F) is a small GEMM: T_b is
// packed like a Linear weight (pack_linear: the transpose into 32-column panels)
// and multiplied by the register-blocked GEMM microkernel, then the requested
// pairs are copied out (row slices when the pairs are the usual lower triangle).
#pragma once
#include "simd.h"
#include "gemm.h"

namespace xrec {
namespace XREC_ISA_NS {
namespace inter {

// Pair-list shape: 1 = strictly lower triangle in row-major order ((1,0), (2,0),
// (2,1), ...), 2 = lower triangle with the diagonal ((0,0), (1,0), (1,1), ...),
// 0 = anything else.
inline int pair_layout(int F, const int* pi, const int* pj, int P) {
  for (int diag = 0; diag <= 1; ++diag) {
    if (P != (diag ? F * (F + 1) / 2 : F * (F - 1) / 2)) continue;
    int p = 0;
    bool ok = true;
    for (int i = 0; i < F && ok; ++i)
      for (int j = 0; j < i + diag && ok; ++j, ++p) ok = pi[p] == i && pj[p] == j;
    if (ok) return diag ? 2 : 1;
  }
  return 0;
}

constexpr int MAX_PACK = 16384;   // floats of packed T_b on the stack (64 KB)
constexpr int MAX_GRAM = 8192;    // floats of Z on the stack (32 KB)

inline void dot_simple(const float* T, long ldt, int D, const int* pi, const int* pj, int P,
                       float* out, long ldo, long b0, long b1) {
  for (long b = b0; b < b1; ++b) {
    const float* t = T + b * ldt;
    for (int p = 0; p < P; ++p) {
      const float* x = t + (long)pi[p] * D;
      const float* y = t + (long)pj[p] * D;
      simd::vf acc = simd::zero();
      int d = 0;
      for (; d + simd::W <= D; d += simd::W) acc = simd::fma(simd::load(x + d), simd::load(y + d), acc);
      float s = simd::hsum(acc);
      for (; d < D; ++d) s += x[d] * y[d];
      out[b * ldo + p] = s;
    }
  }
}

}  // namespace inter

inline void dot_interaction(const float* T, long ldt, int F, int D, const int* pi, const int* pj,
                            int P, float* out, long ldo, long b0, long b1) {
  if (b1 <= b0 || P <= 0) return;
  const int FP = (F + gemm::NR - 1) / gemm::NR * gemm::NR;
  if (F <= 0 || D <= 0 || linear_packed_floats(F, D) > (size_t)inter::MAX_PACK ||
      (long)F * FP > inter::MAX_GRAM) {
    inter::dot_simple(T, ldt, D, pi, pj, P, out, ldo, b0, b1);
    return;
  }
  const int layout = inter::pair_layout(F, pi, pj, P);
  alignas(64) float pk[inter::MAX_PACK];
  alignas(64) float Z[inter::MAX_GRAM];
  for (long b = b0; b < b1; ++b) {
    const float* t = T + b * ldt;
    float* o = out + b * ldo;
    if (b + 1 < b1) {  // the next sample's vectors, while this one computes
      const char* nx = (const char*)(t + ldt);
      for (long q = 0; q < (long)F * D * 4; q += 64) _mm_prefetch(nx + q, _MM_HINT_T0);
    }
    pack_linear(t, F, D, pk);
    if (FP == gemm::NR && layout != 0) {
      // One panel and a triangle of pairs: rows i < H = 16 need columns j < H only,
      // so those tiles compute half a panel (~30% fewer FMAs for F = 27).
      constexpr int H = gemm::NR / 2, NVH = H / simd::W;
      const int rh = min_i(F, H);
      int r = 0;
      for (; r + gemm::MR <= rh; r += gemm::MR)
        gemm::tile<gemm::MR, NVH>(t + (long)r * D, D, pk, D, Z + (long)r * FP, FP, H, true, true, nullptr, ACT_NONE);
      if (r < rh)
        gemm::tile_rows<gemm::MR - 1, NVH>(rh - r, t + (long)r * D, D, pk, D, Z + (long)r * FP, FP, H, true, true,
                                           nullptr, ACT_NONE);
      for (r = rh; r < F; r += gemm::MR)
        gemm::tile_rows<gemm::MR>(min_i(gemm::MR, F - r), t + (long)r * D, D, pk, D, Z + (long)r * FP, FP, F,
                                  true, true, nullptr, ACT_NONE);
    } else {
      linear(t, F, D, D, pk, F, nullptr, ACT_NONE, Z, FP, 0, F);
    }
    if (layout != 0) {  // row i of the triangle: Z[i][0 .. i + diag) is contiguous in out
      const int diag = layout == 2 ? 1 : 0;
      for (int i = 1 - diag; i < F; ++i) {
        const float* z = Z + (long)i * FP;
        float* d = o + (long)i * (i - 1 + 2 * diag) / 2;
        const int n = i + diag;
        int j = 0;
        for (; j + simd::W <= n; j += simd::W) simd::store(d + j, simd::load(z + j));
        if (j < n) simd::store_n(d + j, simd::load(z + j), n - j);
      }
    } else {
      for (int p = 0; p < P; ++p) o[p] = Z[(long)pi[p] * FP + pj[p]];
    }
  }
}

}  // namespace XREC_ISA_NS
}  // namespace xrec
