// xrec CPU kernels: pooled embedding lookups (embedding bags).
// Included by xrec_kernels.h.
#pragma once
#include "simd.h"
#include "half.h"

// The per-row helpers must inline into the pooling loops (accumulators stay in
// registers); GCC's size limits stopped inlining them once the loop grew.
#define XREC_BAG_INLINE inline __attribute__((always_inline))

namespace xrec {
namespace XREC_ISA_NS {
namespace bag {

template <typename T>
inline int64_t at(const void* p, int64_t i) { return (int64_t)((const T*)p)[i]; }

// Validates offsets[b0..b1] and the ids they cover. Returns true when fine;
// otherwise fills *st with the first problem in order (offsets, then ids).
template <typename IdxT, typename OffT>
inline bool validate(const BagFeature& f, long b0, long b1, BagStatus* st) {
  const OffT* off = (const OffT*)f.offsets;
  const IdxT* idx = (const IdxT*)f.indices;
  int64_t prev = (int64_t)off[b0];
  if (prev < 0 || (f.num_indices >= 0 && prev > f.num_indices)) {
    *st = BagStatus{BAG_OFFSETS_OUT_OF_RANGE, (int64_t)b0, prev};
    return false;
  }
  for (long b = b0 + 1; b <= b1; ++b) {
    const int64_t o = (int64_t)off[b];
    if (o < prev) { *st = BagStatus{BAG_OFFSETS_DECREASING, (int64_t)b, o}; return false; }
    if (f.num_indices >= 0 && o > f.num_indices) {
      *st = BagStatus{BAG_OFFSETS_OUT_OF_RANGE, (int64_t)b, o};
      return false;
    }
    prev = o;
  }
  const int64_t s = (int64_t)off[b0], e = (int64_t)off[b1];
  const uint64_t rows = (uint64_t)f.num_rows;
  for (int64_t i = s; i < e; ++i) {
    const int64_t id = (int64_t)idx[i];
    if ((uint64_t)id >= rows) { *st = BagStatus{BAG_INDEX_OUT_OF_RANGE, i, id}; return false; }
  }
  return true;
}

// ------------------------------------------------------------ row decoding
// Per-row dequantisation parameters (value = q * scale + bias).
struct RowParams {
  float scale, bias;
};

template <RowFormat FMT>
XREC_BAG_INLINE RowParams row_params(const uint8_t* row, int dim) {
  RowParams p{1.0f, 0.0f};
  if constexpr (FMT == ROW_I8) {
    std::memcpy(&p.scale, row + dim, 4);
    std::memcpy(&p.bias, row + dim + 4, 4);
  } else if constexpr (FMT == ROW_I4 || FMT == ROW_I2) {
    uint16_t h[2];
    std::memcpy(h, row + (FMT == ROW_I4 ? (dim + 1) / 2 : (dim + 3) / 4), 4);
    p.scale = half_to_float(h[0]);
    p.bias = half_to_float(h[1]);
  }
  (void)row;
  (void)dim;
  return p;
}

#if defined(XREC_SIMD_AVX512)
// Decodes columns [c, c + 16) of a row (only the first n when TAIL; the other
// lanes hold garbage that is never stored). c is a multiple of 16. Quantized
// formats return q as float (the caller applies scale and bias).
template <RowFormat FMT, bool TAIL>
XREC_BAG_INLINE simd::vf dec_raw(const uint8_t* row, int c, int n) {
  const __mmask16 m = TAIL ? simd::tail_mask(n) : (__mmask16)0xFFFF;
  if constexpr (FMT == ROW_F32) {
    const float* r = (const float*)row + c;
    return TAIL ? _mm512_maskz_loadu_ps(m, r) : _mm512_loadu_ps(r);
  } else if constexpr (FMT == ROW_F16) {
    const uint16_t* r = (const uint16_t*)row + c;
    const __m256i h = TAIL ? _mm256_maskz_loadu_epi16(m, r) : _mm256_loadu_si256((const __m256i*)r);
    return _mm512_maskz_cvtph_ps((__mmask16)0xFFFF, h);
  } else if constexpr (FMT == ROW_BF16) {   // bf16 = the top 16 bits of an fp32
    const uint16_t* r = (const uint16_t*)row + c;
    const __m256i h = TAIL ? _mm256_maskz_loadu_epi16(m, r) : _mm256_loadu_si256((const __m256i*)r);
    const __mmask16 all = (__mmask16)0xFFFF;
    return _mm512_castsi512_ps(_mm512_maskz_slli_epi32(all, _mm512_maskz_cvtepu16_epi32(all, h), 16));
  } else if constexpr (FMT == ROW_I2) {     // 4 bytes, 4 codes each (low bits first)
    const uint8_t* r = row + c / 4;
    int32_t w4 = 0;
    if (!TAIL) std::memcpy(&w4, r, 4);
    const __m128i b = TAIL ? _mm_maskz_loadu_epi8((__mmask16)((1u << ((n + 3) / 4)) - 1u), r) : _mm_cvtsi32_si128(w4);
    const __mmask16 all = (__mmask16)0xFFFF;
    const __m128i rep = _mm_shuffle_epi8(b, _mm_setr_epi8(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3));
    const __m512i sh = _mm512_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6, 0, 2, 4, 6, 0, 2, 4, 6);
    const __m512i q = _mm512_maskz_and_epi32(all, _mm512_maskz_srlv_epi32(all, _mm512_maskz_cvtepu8_epi32(all, rep), sh),
                                             _mm512_set1_epi32(3));
    return _mm512_maskz_cvtepi32_ps(all, q);
  } else {
    __m128i q;
    if constexpr (FMT == ROW_I8) {
      q = TAIL ? _mm_maskz_loadu_epi8(m, row + c) : _mm_loadu_si128((const __m128i*)(row + c));
    } else {  // ROW_I4: 8 bytes, low nibble first
      const uint8_t* r = row + c / 2;
      const __m128i b = TAIL ? _mm_maskz_loadu_epi8((__mmask16)((1u << ((n + 1) / 2)) - 1u), r)
                             : _mm_loadl_epi64((const __m128i*)r);
      const __m128i lo4 = _mm_set1_epi8(0x0F);
      q = _mm_unpacklo_epi8(_mm_and_si128(b, lo4), _mm_and_si128(_mm_srli_epi16(b, 4), lo4));
    }
    return _mm512_maskz_cvtepi32_ps((__mmask16)0xFFFF, _mm512_maskz_cvtepu8_epi32((__mmask16)0xFFFF, q));
  }
}
// int4 rows, "split" layout: the 32 values [c0 + 32m, c0 + 32m + 32) are the 16
// bytes at row + c0/2 + 16m, byte k holding value 2k (low nibble) and 2k+1 (high).
// One zero-extension gives the even values (& 15) and the odd ones (>> 4) as two
// vectors: 7 instructions per 32 values instead of 16 for two dec_raw calls. The
// pooling loop accumulates even and odd values in separate registers and restores
// the column order once per bag (store_split).
constexpr bool kSplitI4 = true;
XREC_BAG_INLINE void dec_i4_split(const uint8_t* row, int c0, int m, simd::vf& even, simd::vf& odd) {
  // (maskz forms with a full mask: GCC 12 warns "maybe uninitialized" on the plain ones)
  const __mmask16 all = (__mmask16)0xFFFF;
  const __m512i e = _mm512_maskz_cvtepu8_epi32(all, _mm_loadu_si128((const __m128i*)(row + c0 / 2 + 16 * m)));
  even = _mm512_maskz_cvtepi32_ps(all, _mm512_maskz_and_epi32(all, e, _mm512_set1_epi32(0x0F)));
  odd = _mm512_maskz_cvtepi32_ps(all, _mm512_maskz_srli_epi32(all, e, 4));
}

// Stores split accumulators (even, odd) of 32 columns in column order.
XREC_BAG_INLINE void store_split(float* o, simd::vf even, simd::vf odd) {
  const __m512i lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
  const __m512i hi = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
  _mm512_storeu_ps(o, _mm512_permutex2var_ps(even, lo, odd));
  _mm512_storeu_ps(o + 16, _mm512_permutex2var_ps(even, hi, odd));
}
#elif defined(XREC_SIMD_AVX2)
XREC_BAG_INLINE __m128i load_partial(const uint8_t* p, int nbytes) {
  alignas(16) uint8_t b[16] = {0};
  for (int i = 0; i < nbytes; ++i) b[i] = p[i];
  return _mm_load_si128((const __m128i*)b);
}

// Decodes columns [c, c + 8) of a row (only the first n when TAIL). c is a multiple of 8.
template <RowFormat FMT, bool TAIL>
XREC_BAG_INLINE simd::vf dec_raw(const uint8_t* row, int c, int n) {
  if constexpr (FMT == ROW_F32) {
    const float* r = (const float*)row + c;
    return TAIL ? simd::load_n(r, n) : _mm256_loadu_ps(r);
  } else if constexpr (FMT == ROW_F16) {
    const uint8_t* r = row + 2 * c;
    const __m128i h = TAIL ? load_partial(r, 2 * n) : _mm_loadu_si128((const __m128i*)r);
    return _mm256_cvtph_ps(h);
  } else if constexpr (FMT == ROW_BF16) {
    const uint8_t* r = row + 2 * c;
    const __m128i h = TAIL ? load_partial(r, 2 * n) : _mm_loadu_si128((const __m128i*)r);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  } else if constexpr (FMT == ROW_I2) {     // 2 bytes, 4 codes each (low bits first)
    const uint8_t* r = row + c / 4;
    int32_t w2 = 0;
    std::memcpy(&w2, r, TAIL ? (n + 3) / 4 : 2);
    const __m128i rep = _mm_shuffle_epi8(_mm_cvtsi32_si128(w2),
                                         _mm_setr_epi8(0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0));
    const __m256i q = _mm256_and_si256(
        _mm256_srlv_epi32(_mm256_cvtepu8_epi32(rep), _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6)), _mm256_set1_epi32(3));
    return _mm256_cvtepi32_ps(q);
  } else {
    __m128i q;
    if constexpr (FMT == ROW_I8) {
      q = TAIL ? load_partial(row + c, n) : _mm_loadl_epi64((const __m128i*)(row + c));
    } else {
      const uint8_t* r = row + c / 2;
      int32_t w4;
      if (TAIL) {
        w4 = 0;
        std::memcpy(&w4, r, (n + 1) / 2);
      } else {
        std::memcpy(&w4, r, 4);
      }
      const __m128i b = _mm_cvtsi32_si128(w4);
      const __m128i lo4 = _mm_set1_epi8(0x0F);
      q = _mm_unpacklo_epi8(_mm_and_si128(b, lo4), _mm_and_si128(_mm_srli_epi16(b, 4), lo4));
    }
    return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(q));
  }
}
#else
// Scalar: one column c.
template <RowFormat FMT, bool TAIL>
XREC_BAG_INLINE simd::vf dec_raw(const uint8_t* row, int c, int n) {
  (void)n;
  if constexpr (FMT == ROW_F32) {
    float v;
    std::memcpy(&v, row + 4 * c, 4);
    return v;
  } else if constexpr (FMT == ROW_F16) {
    uint16_t h;
    std::memcpy(&h, row + 2 * c, 2);
    return half_to_float(h);
  } else if constexpr (FMT == ROW_BF16) {
    uint16_t h;
    std::memcpy(&h, row + 2 * c, 2);
    const uint32_t bits = (uint32_t)h << 16;
    float v;
    std::memcpy(&v, &bits, 4);
    return v;
  } else if constexpr (FMT == ROW_I8) {
    return (float)row[c];
  } else if constexpr (FMT == ROW_I2) {
    return (float)((row[c >> 2] >> ((c & 3) * 2)) & 0x3);
  } else {
    return (float)((row[c >> 1] >> ((c & 1) * 4)) & 0xF);
  }
}
#endif
#if !defined(XREC_SIMD_AVX512)
constexpr bool kSplitI4 = false;   // W < 16: no split layout (never instantiated with SPLIT)
XREC_BAG_INLINE void dec_i4_split(const uint8_t*, int, int, simd::vf&, simd::vf&) {}
XREC_BAG_INLINE void store_split(float*, simd::vf, simd::vf) {}
#endif

// ------------------------------------------------------------ pooling
// COMB_SUM: plain sum/mean (the hot path). COMB_ANY: per-sample weights and/or max,
// decided at run time per row (keeps the number of template instances down).
enum Combine : int { COMB_SUM = 0, COMB_ANY = 1 };

// Everything a pooling loop needs, resolved once per call.
struct Ctx {
  const uint8_t* table;
  int64_t row_bytes;
  int dim;
  int64_t pad;
  const void* idx;
  const void* off;
  bool off64;
  bool idx64;
  const float* psw;
  PoolMode mode;
  int prefetch;            // ids ahead (0: none)
  int64_t range_end;       // offsets[b1]: prefetch stays below it
  const int32_t* remap;    // pruned table: logical id -> row (-1: pruned, a zero row); null: none
  int lines;               // most cache lines a row spans (row_lines)
  int64_t off_at(long b) const {
    return off64 ? ((const int64_t*)off)[b] : (int64_t)((const int32_t*)off)[b];
  }
  int64_t id_at(int64_t i) const {
    return idx64 ? ((const int64_t*)idx)[i] : (int64_t)((const int32_t*)idx)[i];
  }
};

// Prefetches every cache line of a row with the same number of instructions
// for every row of a table (no data-dependent loop count: rows of 36 or 72
// bytes straddle one more line at some ids, and a loop over the lines they
// touch mispredicted its exit about every other row): the lines at p + 64 k
// for k < bytes / 64 rounded up, then the row's last byte (another line, or
// the one just requested, when the row is not a multiple of 64 bytes).
//
// `lines` (Ctx::row_lines) is the most lines any row of the table spans, known from
// the table's base address and row size: rows of 72 bytes in a 64-byte aligned
// table start at offsets 0, 8, ..., 56 of a line, so each spans at most 2 lines,
// and p, p + 71 cover them (not p, p + 64, p + 71).
XREC_BAG_INLINE void prefetch_row(const uint8_t* p, int64_t bytes, int lines) {
  // straight-line for rows of up to 4 lines (a loop measured x0.93 on one-id bags)
  _mm_prefetch((const char*)p, _MM_HINT_T0);
  if (lines >= 3) _mm_prefetch((const char*)(p + 64), _MM_HINT_T0);
  if (lines >= 4) _mm_prefetch((const char*)(p + 128), _MM_HINT_T0);
  for (int k = 3; k < lines - 1; ++k) _mm_prefetch((const char*)(p + 64 * k), _MM_HINT_T0);
  if (lines >= 2) _mm_prefetch((const char*)(p + bytes - 1), _MM_HINT_T0);
}

// The most 64-byte lines a row of `bytes` bytes spans in a table at `base`: rows start
// at line offsets (base mod g) + multiples of g, g = gcd(bytes, 64).
inline int row_lines(const void* base, int64_t bytes) {
  int64_t g = 64;
  while (bytes % g) g >>= 1;
  const int64_t max_off = (int64_t)((uintptr_t)base % (uintptr_t)g) + 64 - g;
  return (int)((max_off + bytes + 63) / 64);
}

// Prefetches the row of the id at position i (i < range_end). With a remap the
// row is known only once the remap entry is read: that entry is prefetched a
// further `prefetch` ids ahead, so it is (usually) in cache by now.
XREC_BAG_INLINE void prefetch_at(const Ctx& c, int64_t i) {
  const int64_t id = c.id_at(i);
  if (c.remap) {
    const int64_t j = i + c.prefetch;
    if (j < c.range_end) _mm_prefetch((const char*)(c.remap + c.id_at(j)), _MM_HINT_T0);
    const int64_t r = c.remap[id];
    if (r >= 0) prefetch_row(c.table + r * c.row_bytes, c.row_bytes, c.lines);
    return;
  }
  prefetch_row(c.table + id * c.row_bytes, c.row_bytes, c.lines);
}

// Accumulates one row into acc (NV vectors). Quantized rows use
// sum_i w_i (q_i s_i + b_i) = sum_i q_i (w_i s_i) + sum_i w_i b_i: one fma per
// 16 values, the bias part summed as a scalar (bsum).
// SPLIT (int4, AVX-512): acc[2m] / acc[2m+1] hold the even / odd columns of the
// 32 columns c0 + 32m... (see dec_i4_split).
template <RowFormat FMT, int NV, bool WEIGHTED, bool SPLIT = false>
XREC_BAG_INLINE void add_row(simd::vf* acc, float& bsum, const uint8_t* row, int dim, int c0, int tail, float w) {
  constexpr int W = simd::W;
  constexpr bool Q = FMT == ROW_I8 || FMT == ROW_I4 || FMT == ROW_I2;
  if constexpr (Q) {
    const RowParams p = row_params<FMT>(row, dim);
    const simd::vf s = simd::set1(WEIGHTED ? p.scale * w : p.scale);
    bsum += WEIGHTED ? p.bias * w : p.bias;
    if constexpr (SPLIT) {
      for (int m = 0; m < NV / 2; ++m) {
        simd::vf ev, od;
        dec_i4_split(row, c0, m, ev, od);
        acc[2 * m] = simd::fma(ev, s, acc[2 * m]);
        acc[2 * m + 1] = simd::fma(od, s, acc[2 * m + 1]);
      }
      return;
    }
    for (int j = 0; j < NV; ++j) {
      const int col = c0 + j * W;
      const simd::vf q = j == NV - 1 ? dec_raw<FMT, true>(row, col, tail) : dec_raw<FMT, false>(row, col, W);
      acc[j] = simd::fma(q, s, acc[j]);
    }
  } else {
    (void)bsum;
    (void)dim;
    const simd::vf wv = simd::set1(w);
    for (int j = 0; j < NV; ++j) {
      const int col = c0 + j * W;
      const simd::vf v = j == NV - 1 ? dec_raw<FMT, true>(row, col, tail) : dec_raw<FMT, false>(row, col, W);
      acc[j] = WEIGHTED ? simd::fma(v, wv, acc[j]) : simd::add(acc[j], v);
    }
  }
}

// Max-pools one row (value = (q * scale + bias) * w for quantized rows).
template <RowFormat FMT, int NV, bool SPLIT = false>
XREC_BAG_INLINE void max_row(simd::vf* acc, const uint8_t* row, int dim, int c0, int tail, const float* w) {
  constexpr int W = simd::W;
  constexpr bool Q = FMT == ROW_I8 || FMT == ROW_I4 || FMT == ROW_I2;
  const RowParams p = row_params<FMT>(row, dim);
  const simd::vf s = simd::set1(p.scale), bb = simd::set1(p.bias);
  if constexpr (SPLIT) {
    for (int m = 0; m < NV / 2; ++m) {
      simd::vf v[2];
      dec_i4_split(row, c0, m, v[0], v[1]);
      for (int h = 0; h < 2; ++h) {
        v[h] = simd::fma(v[h], s, bb);
        if (w) v[h] = simd::mul(v[h], simd::set1(*w));
        acc[2 * m + h] = simd::max(acc[2 * m + h], v[h]);
      }
    }
    return;
  }
  for (int j = 0; j < NV; ++j) {
    const int col = c0 + j * W;
    simd::vf v = j == NV - 1 ? dec_raw<FMT, true>(row, col, tail) : dec_raw<FMT, false>(row, col, W);
    if (Q) v = simd::fma(v, s, bb);
    if (w) v = simd::mul(v, simd::set1(*w));
    acc[j] = simd::max(acc[j], v);
  }
}

// Pools columns [c0, c0 + ncols) of bags [b0, b1); NV vectors hold the columns
// (ncols in ((NV-1)*W, NV*W]), accumulated in registers over each bag's ids.
// SPLIT: int4 rows in the even/odd register layout (AVX-512, ncols == NV * 16, NV even).
// IW: id width, 32 or 64 bits, or 0 = read c.idx64 at run time (fewer instances:
// only the plain-sum instances of unpruned tables get both widths; the run-time
// switch costs registers that the hot loop then spills).
template <RowFormat FMT, int NV, int COMB, bool PRUNED, bool SPLIT = false, int IW = 0>
inline void pool_cols(const Ctx& c, long b0, long b1, float* out, long ldo, int c0, int ncols,
                      bool do_prefetch) {
  constexpr int W = simd::W;
  static_assert(!SPLIT || (FMT == ROW_I4 && NV % 2 == 0 && kSplitI4), "split layout: int4, AVX-512, NV even");
  // Two independent accumulator sets for plain sums when registers allow:
  // halves the add dependency chain and keeps two rows in flight.
  constexpr bool TWO = COMB == COMB_SUM && NV * 2 <= (W == 16 ? 16 : 6);
  const int tail = ncols - (NV - 1) * W;
  // Id width: the template's IW, or a run-time switch where IW is 0 (see pool_cols_iw).
  const int32_t* idx32 = (const int32_t*)c.idx;
  const int64_t* idx64 = (const int64_t*)c.idx;
  const bool i64 = c.idx64;
  auto id_at = [idx32, idx64, i64](int64_t i) -> int64_t {
    if constexpr (IW == 64) return idx64[i];
    else if constexpr (IW == 32) return (int64_t)idx32[i];
    else return i64 ? idx64[i] : (int64_t)idx32[i];
  };
  // Pruned tables: a logical id reads row remap[id]; -1 is a zero row (skipped by
  // sum, counted by mean, a 0 candidate for max). Unpruned: the row is the id.
  // (PRUNED is a template parameter: with run-time checks the unpruned loop
  // measured x0.6-0.8 on tables in L3/DRAM.)
  const int32_t* remap = c.remap;
  auto row_of = [remap](int64_t id) -> int64_t {
    if constexpr (PRUNED) return (int64_t)remap[id];
    else return id;
  };
  const int64_t rb = c.row_bytes;
  const uint8_t* table = c.table;
  const int64_t pf = do_prefetch ? c.prefetch : 0;
  const int lines = c.lines;
  const int64_t pad = c.pad;
  const bool max_mode = COMB == COMB_ANY && c.mode == POOL_MAX;
  const int64_t pf_end = c.range_end - pf;   // prefetch idx[i + pf] while i < pf_end
  int64_t s = c.off_at(b0);
  for (long b = b0; b < b1; ++b) {
    const int64_t e = c.off_at(b + 1);
    simd::vf acc[NV], acc2[TWO ? NV : 1];
    for (int j = 0; j < NV; ++j) acc[j] = max_mode ? simd::set1(-__builtin_inff()) : simd::zero();
    for (int j = 0; j < (TWO ? NV : 1); ++j) acc2[j] = simd::zero();
    float bsum = 0.0f, bsum2 = 0.0f;
    int64_t cnt = 0;
    bool pruned = false;   // a pruned id was pooled (max: 0 is a candidate)
    int64_t i = s;
    if constexpr (TWO) {
      for (; i + 1 < e; i += 2) {
        if (pf && i + 1 < pf_end) {
          if constexpr (PRUNED) {
            prefetch_at(c, i + pf);
            prefetch_at(c, i + 1 + pf);
          } else {
            prefetch_row(table + id_at(i + pf) * rb, rb, lines);
            prefetch_row(table + id_at(i + 1 + pf) * rb, rb, lines);
          }
        }
        const int64_t id0 = id_at(i), id1 = id_at(i + 1);
        if (id0 != pad) {
          ++cnt;
          const int64_t r0 = row_of(id0);
          if (!PRUNED || r0 >= 0) add_row<FMT, NV, false, SPLIT>(acc, bsum, table + r0 * rb, c.dim, c0, tail, 1.0f);
        }
        if (id1 != pad) {
          ++cnt;
          const int64_t r1 = row_of(id1);
          if (!PRUNED || r1 >= 0) add_row<FMT, NV, false, SPLIT>(acc2, bsum2, table + r1 * rb, c.dim, c0, tail, 1.0f);
        }
      }
    }
    for (; i < e; ++i) {
      if (pf && i < pf_end) {
        if constexpr (PRUNED) prefetch_at(c, i + pf);
        else prefetch_row(table + id_at(i + pf) * rb, rb, lines);
      }
      const int64_t id = id_at(i);
      if (id == pad) continue;
      ++cnt;
      const int64_t r = row_of(id);
      if (PRUNED && r < 0) {
        pruned = true;
        continue;
      }
      const uint8_t* row = table + r * rb;
      if constexpr (COMB == COMB_SUM) {
        add_row<FMT, NV, false, SPLIT>(acc, bsum, row, c.dim, c0, tail, 1.0f);
      } else if (max_mode) {
        max_row<FMT, NV, SPLIT>(acc, row, c.dim, c0, tail, c.psw ? c.psw + i : nullptr);
      } else {
        add_row<FMT, NV, true, SPLIT>(acc, bsum, row, c.dim, c0, tail, c.psw ? c.psw[i] : 1.0f);
      }
    }
    s = e;
    if constexpr (TWO) {
      for (int j = 0; j < NV; ++j) acc[j] = simd::add(acc[j], acc2[j]);
    }
    if constexpr (FMT == ROW_I8 || FMT == ROW_I4 || FMT == ROW_I2) {
      if (!max_mode) {
        const simd::vf bv = simd::set1(bsum + bsum2);
        for (int j = 0; j < NV; ++j) acc[j] = simd::add(acc[j], bv);
      }
    }
    if (max_mode && cnt == 0) {
      for (int j = 0; j < NV; ++j) acc[j] = simd::zero();
    } else if (PRUNED && max_mode && pruned) {
      for (int j = 0; j < NV; ++j) acc[j] = simd::max(acc[j], simd::zero());
    } else if (c.mode == POOL_MEAN && cnt > 0) {
      const simd::vf inv = simd::set1(1.0f / (float)cnt);
      for (int j = 0; j < NV; ++j) acc[j] = simd::mul(acc[j], inv);
    }
    float* o = out + b * ldo + c0;
    if constexpr (SPLIT) {
      for (int m = 0; m < NV / 2; ++m) store_split(o + 32 * m, acc[2 * m], acc[2 * m + 1]);
    } else {
      for (int j = 0; j < NV - 1; ++j) simd::store(o + j * W, acc[j]);
      simd::store_n(o + (NV - 1) * W, acc[NV - 1], tail);
    }
  }
}

constexpr int NV_MAX = 8;   // vectors of accumulators per column chunk

// Instances for NV in {1, 2, 3, 4, 8} only (compile time of the generated code).
template <RowFormat FMT, int NV, int COMB, bool PRUNED, bool SPLIT = false>
inline void pool_cols_iw(const Ctx& c, long b0, long b1, float* out, long ldo, int c0, int ncols, bool do_prefetch) {
  if constexpr (COMB == COMB_SUM && !PRUNED) {
    if (c.idx64) pool_cols<FMT, NV, COMB, PRUNED, SPLIT, 64>(c, b0, b1, out, ldo, c0, ncols, do_prefetch);
    else pool_cols<FMT, NV, COMB, PRUNED, SPLIT, 32>(c, b0, b1, out, ldo, c0, ncols, do_prefetch);
  } else {
    pool_cols<FMT, NV, COMB, PRUNED, SPLIT, 0>(c, b0, b1, out, ldo, c0, ncols, do_prefetch);
  }
}

template <RowFormat FMT, int COMB, bool PRUNED>
inline void pool_nv(int nv, const Ctx& c, long b0, long b1, float* out, long ldo, int c0, int ncols,
                    bool do_prefetch) {
  if constexpr (FMT == ROW_I4 && kSplitI4) {
    if (ncols == nv * simd::W) {   // whole 32-column pairs: the split int4 layout
      switch (nv) {
        case 2: pool_cols_iw<FMT, 2, COMB, PRUNED, true>(c, b0, b1, out, ldo, c0, ncols, do_prefetch); return;
        case 4: pool_cols_iw<FMT, 4, COMB, PRUNED, true>(c, b0, b1, out, ldo, c0, ncols, do_prefetch); return;
        case NV_MAX: pool_cols_iw<FMT, NV_MAX, COMB, PRUNED, true>(c, b0, b1, out, ldo, c0, ncols, do_prefetch); return;
        default: break;
      }
    }
  }
  switch (nv) {
    case 1: pool_cols_iw<FMT, 1, COMB, PRUNED>(c, b0, b1, out, ldo, c0, ncols, do_prefetch); break;
    case 2: pool_cols_iw<FMT, 2, COMB, PRUNED>(c, b0, b1, out, ldo, c0, ncols, do_prefetch); break;
    case 3: pool_cols_iw<FMT, 3, COMB, PRUNED>(c, b0, b1, out, ldo, c0, ncols, do_prefetch); break;
    case 4: pool_cols_iw<FMT, 4, COMB, PRUNED>(c, b0, b1, out, ldo, c0, ncols, do_prefetch); break;
    default: pool_cols_iw<FMT, NV_MAX, COMB, PRUNED>(c, b0, b1, out, ldo, c0, ncols, do_prefetch); break;
  }
}

// Columns of the chunk starting at col: a full chunk of NV_MAX vectors, else the
// rest if it fits in 4 vectors, else 4 vectors (the remaining 1..3 come next).
inline int chunk_cols(int dim, int col) {
  constexpr int W = simd::W, CH = NV_MAX * W;
  const int rest = dim - col;
  if (rest >= CH) return CH;
  return (rest + W - 1) / W > 4 ? 4 * W : rest;
}

template <RowFormat FMT, int COMB, bool PRUNED = false>
inline void pool(const Ctx& c, long b0, long b1, float* out, long ldo) {
  constexpr int W = simd::W;
  if (chunk_cols(c.dim, 0) == c.dim) {      // one register chunk: straight over the bag range
    pool_nv<FMT, COMB, PRUNED>((c.dim + W - 1) / W, c, b0, b1, out, ldo, 0, c.dim, true);
    return;
  }
  // Several chunks: per bag, chunk by chunk (the bag's rows stay in L1 after the first).
  for (long b = b0; b < b1; ++b)
    for (int col = 0; col < c.dim;) {
      const int n = chunk_cols(c.dim, col);
      pool_nv<FMT, COMB, PRUNED>((n + W - 1) / W, c, b, b + 1, out, ldo, col, n, col == 0);
      col += n;
    }
}

inline void pool_format(const BagFeature& f, const Ctx& c, long b0, long b1, float* out, long ldo) {
  const bool plain = f.mode != POOL_MAX && !f.per_sample_weights;
  if (c.remap) {   // pruned tables: the general instance, remap consulted per id
    switch (f.format) {
      case ROW_F32: pool<ROW_F32, COMB_ANY, true>(c, b0, b1, out, ldo); break;
      case ROW_F16: pool<ROW_F16, COMB_ANY, true>(c, b0, b1, out, ldo); break;
      case ROW_I8: pool<ROW_I8, COMB_ANY, true>(c, b0, b1, out, ldo); break;
      case ROW_I4: pool<ROW_I4, COMB_ANY, true>(c, b0, b1, out, ldo); break;
      case ROW_BF16: pool<ROW_BF16, COMB_ANY, true>(c, b0, b1, out, ldo); break;
      case ROW_I2: pool<ROW_I2, COMB_ANY, true>(c, b0, b1, out, ldo); break;
    }
    return;
  }
  // The hot formats get a dedicated plain-sum instance; f16 and int4 rows go
  // through the general one (a few more instructions per row, half the code;
  // a plain-sum int4 instance measured x1.02 at L=20 and x0.89 at L=1, in cache).
  switch (f.format) {
    case ROW_F32:
      if (plain) pool<ROW_F32, COMB_SUM>(c, b0, b1, out, ldo);
      else pool<ROW_F32, COMB_ANY>(c, b0, b1, out, ldo);
      break;
    case ROW_I8:
      if (plain) pool<ROW_I8, COMB_SUM>(c, b0, b1, out, ldo);
      else pool<ROW_I8, COMB_ANY>(c, b0, b1, out, ldo);
      break;
    case ROW_F16: pool<ROW_F16, COMB_ANY>(c, b0, b1, out, ldo); break;
    case ROW_I4: pool<ROW_I4, COMB_ANY>(c, b0, b1, out, ldo); break;
    case ROW_BF16: pool<ROW_BF16, COMB_ANY>(c, b0, b1, out, ldo); break;
    case ROW_I2: pool<ROW_I2, COMB_ANY>(c, b0, b1, out, ldo); break;
  }
}

// Default prefetch distance (ids ahead) for a table: none while it fits in L2.
inline int default_prefetch(const BagFeature& f) {
  const int64_t bytes = f.num_rows * (int64_t)f.row_bytes;
  return bytes <= (int64_t)(1 << 20) ? 0 : 16;
}

inline bool validate_any(const BagFeature& f, long b0, long b1, BagStatus* status) {
  const bool i64 = f.index_bits == 64, o64 = f.offset_bits == 64;
  if (i64) return o64 ? validate<int64_t, int64_t>(f, b0, b1, status) : validate<int64_t, int32_t>(f, b0, b1, status);
  return o64 ? validate<int32_t, int64_t>(f, b0, b1, status) : validate<int32_t, int32_t>(f, b0, b1, status);
}

// Pools an already validated (or trusted) bag range.
inline void run(const BagFeature& f, long b0, long b1, float* out, long ldo) {
  Ctx c;
  c.table = f.table;
  c.row_bytes = f.row_bytes;
  c.dim = f.dim;
  c.pad = f.padding_idx < 0 ? INT64_MIN : f.padding_idx;
  c.idx = f.indices;
  c.off = f.offsets;
  c.off64 = f.offset_bits == 64;
  c.idx64 = f.index_bits == 64;
  c.psw = f.per_sample_weights;
  c.mode = f.mode;
  c.prefetch = f.prefetch_distance >= 0 ? f.prefetch_distance : default_prefetch(f);
  c.range_end = c.off_at(b1);
  c.remap = f.remap;
  c.lines = bag::row_lines(f.table, f.row_bytes);
  if (c.prefetch > 0) {
    // The loop prefetches `prefetch` ids ahead; the first ones are requested here,
    // all at once, so they arrive in parallel.
    const int64_t s = c.off_at(b0), e = min_l(c.range_end, s + c.prefetch);
    for (int64_t i = s; i < e; ++i) prefetch_at(c, i);
  }
  pool_format(f, c, b0, b1, out, ldo);
}

}  // namespace bag

inline void embedding_bag(const BagFeature& f, long b0, long b1, float* out, long ldo,
                          bool check_bounds, BagStatus* status) {
  BagStatus local{BAG_OK, 0, 0};
  if (!status) status = &local;
  *status = BagStatus{BAG_OK, 0, 0};
  if (b1 <= b0) return;
  if (check_bounds && !bag::validate_any(f, b0, b1, status)) return;
  bag::run(f, b0, b1, out, ldo);
}

inline void embedding_bags(const BagFeature* fs, int nf, const long* out_col, long b0, long b1,
                           float* out, long ldo, bool check_bounds, BagStatus* status,
                           int* bad_feature) {
  BagStatus local{BAG_OK, 0, 0};
  if (!status) status = &local;
  *status = BagStatus{BAG_OK, 0, 0};
  if (bad_feature) *bad_feature = -1;
  if (b1 <= b0) return;
  if (check_bounds)
    for (int k = 0; k < nf; ++k)
      if (!bag::validate_any(fs[k], b0, b1, status)) {
        if (bad_feature) *bad_feature = k;
        return;
      }
  for (int k = 0; k < nf; ++k) bag::run(fs[k], b0, b1, out + out_col[k], ldo);
}

}  // namespace XREC_ISA_NS
}  // namespace xrec
