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
    case ACT_RELU: return x < 0.0f ? 0.0f : x;  // NaN stays NaN (as torch.relu)
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

// ------------------------------------------------------------ vector forms
// (AVX-512 intrinsics in maskz form: GCC 12 warns on the plain ones' undefined
// pass-through operand.)
// Used by the GEMM epilogue on AVX-512 / AVX2 builds (the scalar build calls
// act_scalar per value). Accuracy: exp ~2 ulp; tanh (Eigen's rational fit) a few
// ulp; erf (Abramowitz-Stegun 7.1.26) 1.5e-7 absolute.
#if defined(XREC_SIMD_AVX512) || defined(XREC_SIMD_AVX2)
namespace actv {
using simd::vf;

// NaN: x86 min/max return their SECOND operand when either is NaN, so every clamp
// below is written min(bound, max(bound, x)): a NaN x comes out unchanged.
#if defined(XREC_SIMD_AVX512)
inline vf vmin(vf a, vf b) { return _mm512_maskz_min_ps((__mmask16)0xFFFF, a, b); }
// x > t ? +inf : y
inline vf vinf_above(vf x, vf y, float t) {
  return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, _mm512_set1_ps(t), _CMP_GT_OQ), y, _mm512_set1_ps(INFINITY));
}
inline vf vdiv(vf a, vf b) { return _mm512_div_ps(a, b); }
inline vf vround(vf a) { return _mm512_maskz_roundscale_ps((__mmask16)0xFFFF, a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
inline vf vabs(vf a) { return _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(a), _mm512_set1_epi32(0x7FFFFFFF))); }
inline vf vcopysign(vf mag, vf sgn) {  // |mag| with the sign of sgn
  const __m512i m = _mm512_set1_epi32((int)0x80000000u);
  return _mm512_castsi512_ps(_mm512_or_si512(_mm512_maskz_andnot_epi32((__mmask16)0xFFFF, m, _mm512_castps_si512(mag)),
                                             _mm512_and_si512(m, _mm512_castps_si512(sgn))));
}
// |x| >= t ? copysign(1, x) : y
inline vf vsat1(vf x, vf y, float t) {
  const __mmask16 big = _mm512_cmp_ps_mask(vabs(x), _mm512_set1_ps(t), _CMP_GE_OQ);
  return _mm512_mask_blend_ps(big, y, vcopysign(_mm512_set1_ps(1.0f), x));
}
inline vf vpow2i(vf n) {  // 2^n for integral n in [-126, 127]
  const __m512i e = _mm512_add_epi32(_mm512_maskz_cvtps_epi32((__mmask16)0xFFFF, n), _mm512_set1_epi32(127));
  return _mm512_castsi512_ps(_mm512_maskz_slli_epi32((__mmask16)0xFFFF, e, 23));
}
#else
inline vf vmin(vf a, vf b) { return _mm256_min_ps(a, b); }
inline vf vinf_above(vf x, vf y, float t) {
  return _mm256_blendv_ps(y, _mm256_set1_ps(INFINITY), _mm256_cmp_ps(x, _mm256_set1_ps(t), _CMP_GT_OQ));
}
inline vf vdiv(vf a, vf b) { return _mm256_div_ps(a, b); }
inline vf vround(vf a) { return _mm256_round_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
inline vf vabs(vf a) { return _mm256_and_ps(a, _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF))); }
inline vf vcopysign(vf mag, vf sgn) {
  const __m256 m = _mm256_castsi256_ps(_mm256_set1_epi32((int)0x80000000u));
  return _mm256_or_ps(_mm256_andnot_ps(m, mag), _mm256_and_ps(m, sgn));
}
inline vf vsat1(vf x, vf y, float t) {
  const __m256 big = _mm256_cmp_ps(vabs(x), _mm256_set1_ps(t), _CMP_GE_OQ);
  return _mm256_blendv_ps(y, vcopysign(_mm256_set1_ps(1.0f), x), big);
}
inline vf vpow2i(vf n) {
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23));
}
#endif

// e^x: +inf above ln(FLT_MAX) (as expf, so that sigmoid(-inf) = 0 and silu(-inf) =
// -inf * 0 = NaN as in PyTorch); x clamped to [-87.3, 88.7] inside (no denormals);
// NaN in, NaN out.
inline vf vexp(vf x) {
  const vf xin = x;
  x = vmin(simd::set1(88.7f), simd::max(simd::set1(-87.3f), x));
  const vf n = vround(simd::mul(x, simd::set1(1.44269504088896341f)));
  vf r = simd::fma(n, simd::set1(-0.693359375f), x);            // x - n ln2 (Cody-Waite hi)
  r = simd::fma(n, simd::set1(2.12194440e-4f), r);              // (lo)
  vf p = simd::set1(1.9875691500e-4f);
  p = simd::fma(p, r, simd::set1(1.3981999507e-3f));
  p = simd::fma(p, r, simd::set1(8.3334519073e-3f));
  p = simd::fma(p, r, simd::set1(4.1665795894e-2f));
  p = simd::fma(p, r, simd::set1(1.6666665459e-1f));
  p = simd::fma(p, r, simd::set1(5.0000001201e-1f));
  p = simd::fma(p, simd::mul(r, r), simd::add(r, simd::set1(1.0f)));
  // 2^n in two steps so that n = 128 (x near 88.7) does not overflow the exponent.
  const vf h = vround(simd::mul(n, simd::set1(0.5f)));
  return vinf_above(xin, simd::mul(simd::mul(p, vpow2i(h)), vpow2i(simd::add(n, simd::mul(h, simd::set1(-1.0f))))),
                    88.7228391f);
}

inline vf vsigmoid(vf x) {
  return vdiv(simd::set1(1.0f), simd::add(simd::set1(1.0f), vexp(simd::mul(x, simd::set1(-1.0f)))));
}

// Eigen's generic_fast_tanh_float rational approximation on [-7.9, 7.9];
// exactly +-1 from |x| >= 9 (where float tanh rounds to +-1).
inline vf vtanh(vf x) {
  const vf c = simd::set1(7.90531110763549805f);
  const vf xc = vmin(c, simd::max(simd::mul(c, simd::set1(-1.0f)), x));
  const vf x2 = simd::mul(xc, xc);
  vf p = simd::set1(-2.76076847742355e-16f);
  p = simd::fma(x2, p, simd::set1(2.00018790482477e-13f));
  p = simd::fma(x2, p, simd::set1(-8.60467152213735e-11f));
  p = simd::fma(x2, p, simd::set1(5.12229709037114e-08f));
  p = simd::fma(x2, p, simd::set1(1.48572235717979e-05f));
  p = simd::fma(x2, p, simd::set1(6.37261928875436e-04f));
  p = simd::fma(x2, p, simd::set1(4.89352455891786e-03f));
  p = simd::mul(xc, p);
  vf q = simd::set1(1.19825839466702e-06f);
  q = simd::fma(x2, q, simd::set1(1.18534705686654e-04f));
  q = simd::fma(x2, q, simd::set1(2.26843463243900e-03f));
  q = simd::fma(x2, q, simd::set1(4.89352518554385e-03f));
  return vsat1(x, vdiv(p, q), 9.0f);
}

// erf(x): Abramowitz-Stegun 7.1.26, |error| < 1.5e-7.
inline vf verf(vf x) {
  const vf a = vabs(x);
  const vf t = vdiv(simd::set1(1.0f), simd::fma(a, simd::set1(0.3275911f), simd::set1(1.0f)));
  vf y = simd::set1(1.061405429f);
  y = simd::fma(y, t, simd::set1(-1.453152027f));
  y = simd::fma(y, t, simd::set1(1.421413741f));
  y = simd::fma(y, t, simd::set1(-0.284496736f));
  y = simd::fma(y, t, simd::set1(0.254829592f));
  y = simd::mul(y, t);
  const vf e = vexp(simd::mul(simd::mul(a, a), simd::set1(-1.0f)));
  const vf r = simd::fma(simd::mul(y, simd::set1(-1.0f)), e, simd::set1(1.0f));   // 1 - y e^{-a^2}
  return vcopysign(r, x);
}

}  // namespace actv

inline simd::vf act_vec(Act act, simd::vf x) {
  using namespace actv;
  switch (act) {
    case ACT_NONE: return x;
    case ACT_RELU: return simd::max(simd::zero(), x);  // NaN x: max returns x
    case ACT_SIGMOID: return vsigmoid(x);
    case ACT_TANH: return vtanh(x);
    case ACT_GELU: {
      const vf h = simd::mul(x, simd::set1(0.5f));
      return simd::fma(h, verf(simd::mul(x, simd::set1(0.70710678118654752f))), h);
    }
    case ACT_GELU_TANH: {  // 0.5 x (1 + tanh u) = x sigmoid(2u): no cancellation for u << 0
      const vf x3 = simd::mul(simd::mul(x, x), x);
      const vf u2 = simd::mul(simd::fma(x3, simd::set1(0.044715f), x), simd::set1(2.0f * 0.79788456080286536f));
      return simd::mul(x, vsigmoid(u2));
    }
    case ACT_SILU: return simd::mul(x, vsigmoid(x));
  }
  return x;
}
#define XREC_HAVE_ACT_VEC 1
#endif

// Applies act in place to rows x cols values at Y (row stride ldy).
inline void act_inplace(Act act, float* Y, long ldy, long rows, int cols) {
  if (act == ACT_NONE) return;
  for (long r = 0; r < rows; ++r) {
    float* y = Y + r * ldy;
    if (act == ACT_RELU) {
      for (int j = 0; j < cols; ++j) y[j] = y[j] < 0.0f ? 0.0f : y[j];
    } else {
      for (int j = 0; j < cols; ++j) y[j] = act_scalar(act, y[j]);
    }
  }
}

}  // namespace XREC_ISA_NS
}  // namespace xrec
