// xrec CPU kernels: DLRM dot interaction (pairwise dot products per sample).
// Included by xrec_kernels.h.
#pragma once
#include "simd.h"

namespace xrec {
namespace XREC_ISA_NS {

inline void dot_interaction(const float* T, long ldt, int F, int D, const int* pi, const int* pj,
                            int P, float* out, long ldo, long b0, long b1) {
  (void)F;
  for (long b = b0; b < b1; ++b) {
    const float* t = T + b * ldt;
    float* o = out + b * ldo;
    for (int p = 0; p < P; ++p) {
      const float* x = t + (long)pi[p] * D;
      const float* y = t + (long)pj[p] * D;
      float s = 0.0f;
      for (int d = 0; d < D; ++d) s += x[d] * y[d];
      o[p] = s;
    }
  }
}

}  // namespace XREC_ISA_NS
}  // namespace xrec
