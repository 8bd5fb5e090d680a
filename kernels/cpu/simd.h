// xrec CPU kernels: a thin vector abstraction over AVX-512 / AVX2+FMA / scalar.
// Included by xrec_kernels.h inside namespace xrec::XREC_ISA_NS, so every
// helper here is per-ISA (no inline function is shared between ISA builds: a
// shared one could be de-duplicated by the linker into the wrong ISA's copy).
#pragma once
#include <immintrin.h>
#include <cstdint>
#include <cstring>

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512DQ__)
#define XREC_SIMD_AVX512 1
#elif defined(__AVX2__) && defined(__FMA__)
#define XREC_SIMD_AVX2 1
#else
#define XREC_SIMD_SCALAR 1
#endif

#if defined(__F16C__)
#define XREC_HAVE_F16C 1
#endif

namespace xrec {
namespace XREC_ISA_NS {
namespace simd {

#if defined(XREC_SIMD_AVX512)
constexpr int W = 16;
using vf = __m512;
inline vf zero() { return _mm512_setzero_ps(); }
inline vf set1(float x) { return _mm512_set1_ps(x); }
inline vf load(const float* p) { return _mm512_loadu_ps(p); }
inline void store(float* p, vf v) { _mm512_storeu_ps(p, v); }
inline vf fma(vf a, vf b, vf c) { return _mm512_fmadd_ps(a, b, c); }
inline vf add(vf a, vf b) { return _mm512_add_ps(a, b); }
inline vf mul(vf a, vf b) { return _mm512_mul_ps(a, b); }
// maskz form: GCC 12's _mm512_max_ps trips -Wmaybe-uninitialized (GCC PR 105593).
inline vf max(vf a, vf b) { return _mm512_maskz_max_ps((__mmask16)0xFFFF, a, b); }
inline __mmask16 tail_mask(int n) { return n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1u); }
inline vf load_n(const float* p, int n) { return _mm512_maskz_loadu_ps(tail_mask(n), p); }
inline void store_n(float* p, vf v, int n) { _mm512_mask_storeu_ps(p, tail_mask(n), v); }
// In-register transpose of a 16 x 16 block: r[i] = row i in, r[c] = column c out.
// (maskz forms: GCC 12 warns on the undefined pass-through of the plain ones.)
inline void transpose16(vf* r) {
  const __mmask16 m = 0xFFFF;
  vf t[16], u[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_maskz_unpacklo_ps(m, r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_maskz_unpackhi_ps(m, r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 4; ++i) {
    u[4 * i + 0] = _mm512_maskz_shuffle_ps(m, t[4 * i + 0], t[4 * i + 2], 0x44);
    u[4 * i + 1] = _mm512_maskz_shuffle_ps(m, t[4 * i + 0], t[4 * i + 2], 0xEE);
    u[4 * i + 2] = _mm512_maskz_shuffle_ps(m, t[4 * i + 1], t[4 * i + 3], 0x44);
    u[4 * i + 3] = _mm512_maskz_shuffle_ps(m, t[4 * i + 1], t[4 * i + 3], 0xEE);
  }
  for (int k = 0; k < 4; ++k) {
    const vf v0 = _mm512_maskz_shuffle_f32x4(m, u[k], u[4 + k], 0x88);
    const vf v1 = _mm512_maskz_shuffle_f32x4(m, u[k], u[4 + k], 0xDD);
    const vf w0 = _mm512_maskz_shuffle_f32x4(m, u[8 + k], u[12 + k], 0x88);
    const vf w1 = _mm512_maskz_shuffle_f32x4(m, u[8 + k], u[12 + k], 0xDD);
    r[k] = _mm512_maskz_shuffle_f32x4(m, v0, w0, 0x88);
    r[8 + k] = _mm512_maskz_shuffle_f32x4(m, v0, w0, 0xDD);
    r[4 + k] = _mm512_maskz_shuffle_f32x4(m, v1, w1, 0x88);
    r[12 + k] = _mm512_maskz_shuffle_f32x4(m, v1, w1, 0xDD);
  }
}

inline float hsum(vf v) {  // (not _mm512_reduce_add_ps: GCC 12 warns on its undefined operand)
  alignas(64) float t[16];  // (GCC 12's 512->256 casts/extracts warn the same way)
  _mm512_store_ps(t, v);
  __m256 s8 = _mm256_add_ps(_mm256_load_ps(t), _mm256_load_ps(t + 8));
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
  return _mm_cvtss_f32(s);
}
#elif defined(XREC_SIMD_AVX2)
constexpr int W = 8;
using vf = __m256;
inline vf zero() { return _mm256_setzero_ps(); }
inline vf set1(float x) { return _mm256_set1_ps(x); }
inline vf load(const float* p) { return _mm256_loadu_ps(p); }
inline void store(float* p, vf v) { _mm256_storeu_ps(p, v); }
inline vf fma(vf a, vf b, vf c) { return _mm256_fmadd_ps(a, b, c); }
inline vf add(vf a, vf b) { return _mm256_add_ps(a, b); }
inline vf mul(vf a, vf b) { return _mm256_mul_ps(a, b); }
inline vf max(vf a, vf b) { return _mm256_max_ps(a, b); }
inline __m256i tail_mask(int n) {
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), lane);
}
inline vf load_n(const float* p, int n) { return _mm256_maskload_ps(p, tail_mask(n)); }
inline void store_n(float* p, vf v, int n) { _mm256_maskstore_ps(p, tail_mask(n), v); }
inline float hsum(vf v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
  return _mm_cvtss_f32(s);
}
#else
constexpr int W = 1;
using vf = float;
inline vf zero() { return 0.0f; }
inline vf set1(float x) { return x; }
inline vf load(const float* p) { return *p; }
inline void store(float* p, vf v) { *p = v; }
inline vf fma(vf a, vf b, vf c) { return a * b + c; }
inline vf add(vf a, vf b) { return a + b; }
inline vf mul(vf a, vf b) { return a * b; }
inline vf max(vf a, vf b) { return a > b ? a : b; }
inline vf load_n(const float* p, int n) { return n > 0 ? *p : 0.0f; }
inline void store_n(float* p, vf v, int n) { if (n > 0) *p = v; }
inline float hsum(vf v) { return v; }
#endif

}  // namespace simd

// Small scalar helpers (kept per-ISA on purpose, see above; no std:: templates).
inline long min_l(long a, long b) { return a < b ? a : b; }
inline int min_i(int a, int b) { return a < b ? a : b; }
inline float max_f(float a, float b) { return a > b ? a : b; }

}  // namespace XREC_ISA_NS
}  // namespace xrec
