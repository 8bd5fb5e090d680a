// xrec CPU kernels: activation functions used by the fused linear epilogue.
// Included by xrec_kernels.h (after the Act enum).
#pragma once
#include <cmath>
#include "simd.h"

namespace xrec {
namespace XREC_ISA_NS {

// Scalar definition of each activation (the reference the vector forms follow).
inline float act_scalar(Act act, float x) {
  switch (act) {
    case ACT_NONE: return x;
    case ACT_RELU: return x > 0.0f ? x : 0.0f;
    case ACT_SIGMOID: return 1.0f / (1.0f + std::exp(-x));
    case ACT_TANH: return std::tanh(x);
    case ACT_GELU: return 0.5f * x * (1.0f + std::erf(x * 0.70710678118654752f));
    case ACT_GELU_TANH: {
      const float u = 0.79788456080286536f * (x + 0.044715f * x * x * x);
      return 0.5f * x * (1.0f + std::tanh(u));
    }
    case ACT_SILU: return x / (1.0f + std::exp(-x));
  }
  return x;
}

// Applies act in place to rows x cols values at Y (row stride ldy).
inline void act_inplace(Act act, float* Y, long ldy, long rows, int cols) {
  if (act == ACT_NONE) return;
  for (long r = 0; r < rows; ++r) {
    float* y = Y + r * ldy;
    if (act == ACT_RELU) {
      for (int j = 0; j < cols; ++j) y[j] = y[j] > 0.0f ? y[j] : 0.0f;
    } else {
      for (int j = 0; j < cols; ++j) y[j] = act_scalar(act, y[j]);
    }
  }
}

}  // namespace XREC_ISA_NS
}  // namespace xrec
