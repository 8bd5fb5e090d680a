// xrec CPU kernels: IEEE fp16 -> fp32 conversion (F16C when the build has it,
// exact bit manipulation otherwise). Included by xrec_kernels.h.
#pragma once
#include "simd.h"

namespace xrec {
namespace XREC_ISA_NS {

// Exact conversion of one IEEE binary16 value (incl. subnormals, inf, nan).
inline float half_to_float(uint16_t h) {
#if defined(XREC_HAVE_F16C)
  return _cvtsh_ss(h);
#else
  const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1Fu;
  uint32_t man = h & 0x3FFu;
  uint32_t bits;
  if (exp == 0x1Fu) {                 // inf / nan
    bits = sign | 0x7F800000u | (man << 13);
  } else if (exp != 0) {              // normal
    bits = sign | ((exp + 112u) << 23) | (man << 13);
  } else if (man == 0) {              // zero
    bits = sign;
  } else {                            // subnormal: renormalise
    int e = -1;
    do { ++e; man <<= 1; } while ((man & 0x400u) == 0);
    bits = sign | ((uint32_t)(112 - e) << 23) | ((man & 0x3FFu) << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
#endif
}

// n halves -> n floats.
inline void halves_to_floats(const uint16_t* h, float* out, int n) {
  int j = 0;
#if defined(XREC_SIMD_AVX512)
  for (; j + 16 <= n; j += 16)
    _mm512_storeu_ps(out + j, _mm512_maskz_cvtph_ps((__mmask16)0xFFFF, _mm256_loadu_si256((const __m256i*)(h + j))));
#elif defined(XREC_HAVE_F16C)
  for (; j + 8 <= n; j += 8)
    _mm256_storeu_ps(out + j, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(h + j))));
#endif
  for (; j < n; ++j) out[j] = half_to_float(h[j]);
}

}  // namespace XREC_ISA_NS
}  // namespace xrec
