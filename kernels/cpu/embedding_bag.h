// xrec CPU kernels: pooled embedding lookups (embedding bags).
// Included by xrec_kernels.h.
#pragma once
#include "simd.h"
#include "half.h"

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

// Decodes columns [c0, c0 + n) of one row into floats.
inline void decode(const BagFeature& f, const uint8_t* row, int c0, int n, float* out) {
  switch (f.format) {
    case ROW_F32: {
      const float* r = (const float*)row + c0;
      for (int j = 0; j < n; ++j) out[j] = r[j];
      break;
    }
    case ROW_F16:
      halves_to_floats((const uint16_t*)row + c0, out, n);
      break;
    case ROW_I8: {
      float scale, bias;
      std::memcpy(&scale, row + f.dim, 4);
      std::memcpy(&bias, row + f.dim + 4, 4);
      for (int j = 0; j < n; ++j) out[j] = (float)row[c0 + j] * scale + bias;
      break;
    }
    case ROW_I4: {
      uint16_t hs, hb;
      const int nb = (f.dim + 1) / 2;
      std::memcpy(&hs, row + nb, 2);
      std::memcpy(&hb, row + nb + 2, 2);
      const float scale = half_to_float(hs), bias = half_to_float(hb);
      for (int j = 0; j < n; ++j) {
        const int c = c0 + j;
        const int q = (row[c >> 1] >> ((c & 1) * 4)) & 0xF;
        out[j] = (float)q * scale + bias;
      }
      break;
    }
  }
}

template <typename IdxT, typename OffT>
inline void pool_generic(const BagFeature& f, long b0, long b1, float* out, long ldo) {
  const OffT* off = (const OffT*)f.offsets;
  const IdxT* idx = (const IdxT*)f.indices;
  constexpr int CH = 256;
  float buf[CH];
  for (long b = b0; b < b1; ++b) {
    const int64_t s = (int64_t)off[b], e = (int64_t)off[b + 1];
    float* o = out + b * ldo;
    for (int c0 = 0; c0 < f.dim; c0 += CH) {
      const int n = min_i(CH, f.dim - c0);
      float acc[CH];
      const float init = f.mode == POOL_MAX ? -__builtin_inff() : 0.0f;
      for (int j = 0; j < n; ++j) acc[j] = init;
      int64_t count = 0;
      for (int64_t i = s; i < e; ++i) {
        const int64_t id = (int64_t)idx[i];
        if (id == f.padding_idx) continue;
        ++count;
        decode(f, f.table + id * (int64_t)f.row_bytes, c0, n, buf);
        const float w = f.per_sample_weights ? f.per_sample_weights[i] : 1.0f;
        if (f.mode == POOL_MAX) {
          for (int j = 0; j < n; ++j) acc[j] = max_f(acc[j], buf[j] * w);
        } else {
          for (int j = 0; j < n; ++j) acc[j] += buf[j] * w;
        }
      }
      if (f.mode == POOL_MAX && count == 0) {
        for (int j = 0; j < n; ++j) acc[j] = 0.0f;
      } else if (f.mode == POOL_MEAN && count > 0) {
        const float inv = 1.0f / (float)count;
        for (int j = 0; j < n; ++j) acc[j] *= inv;
      }
      for (int j = 0; j < n; ++j) o[c0 + j] = acc[j];
    }
  }
}

template <typename IdxT, typename OffT>
inline void run(const BagFeature& f, long b0, long b1, float* out, long ldo, bool check_bounds,
                BagStatus* status) {
  if (check_bounds && !validate<IdxT, OffT>(f, b0, b1, status)) return;
  pool_generic<IdxT, OffT>(f, b0, b1, out, ldo);
}

}  // namespace bag

inline void embedding_bag(const BagFeature& f, long b0, long b1, float* out, long ldo,
                          bool check_bounds, BagStatus* status) {
  BagStatus local{BAG_OK, 0, 0};
  if (!status) status = &local;
  *status = BagStatus{BAG_OK, 0, 0};
  if (b1 <= b0) return;
  const bool i64 = f.index_bits == 64, o64 = f.offset_bits == 64;
  if (i64 && o64) bag::run<int64_t, int64_t>(f, b0, b1, out, ldo, check_bounds, status);
  else if (i64) bag::run<int64_t, int32_t>(f, b0, b1, out, ldo, check_bounds, status);
  else if (o64) bag::run<int32_t, int64_t>(f, b0, b1, out, ldo, check_bounds, status);
  else bag::run<int32_t, int32_t>(f, b0, b1, out, ldo, check_bounds, status);
}

}  // namespace XREC_ISA_NS
}  // namespace xrec
