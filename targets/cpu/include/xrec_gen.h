// xrec_gen.h: small run-time helpers the generated model code calls (errors,
// offsets checks, tiling, per-call scratch). Compiled into every ISA build, in
// the ISA's namespace like the kernels.
#pragma once
#include <cstdarg>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <vector>

#include "xrec_model.h"

#ifndef XREC_ISA_NS
#define XREC_ISA_NS isa_default
#endif

namespace xrec {
namespace XREC_ISA_NS {
namespace gen {

// The first error a tile met: code (XREC_ERR_*), the first row of its tile, the message.
struct Error {
  int code;
  long row;
  char msg[480];
};

inline void fail(Error* e, int code, long row, const char* fmt, ...) {
  if (e->code) return;
  e->code = code;
  e->row = row;
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(e->msg, sizeof e->msg, fmt, ap);
  va_end(ap);
}

inline int report(char* err, size_t err_len, int code, const char* fmt, ...) {
  if (err && err_len) {
    va_list ap;
    va_start(ap, fmt);
    std::vsnprintf(err, err_len, fmt, ap);
    va_end(ap);
  }
  return code;
}

inline const char* dtype_name(int dt) {
  switch (dt) {
    case XREC_F32: return "float32";
    case XREC_F16: return "float16";
    case XREC_F64: return "float64";
    case XREC_I32: return "int32";
    case XREC_I64: return "int64";
    case XREC_I8: return "int8";
    case XREC_U8: return "uint8";
    case XREC_BOOL: return "bool";
    case XREC_BF16: return "bfloat16";
  }
  return "unknown";
}

inline int64_t load_int(const void* p, int bits, int64_t i) {
  return bits == 32 ? (int64_t)((const int32_t*)p)[i] : ((const int64_t*)p)[i];
}

// Offsets of rows [r0, r1] (both ends included) lie in [0, nnz] and never decrease.
inline bool check_offsets(const char* feature, const void* off, int bits, long r0, long r1, int64_t nnz,
                          Error* e) {
  int64_t prev = load_int(off, bits, r0);
  if (prev < 0 || prev > nnz) {
    fail(e, XREC_ERR_INPUT, r0, "feature '%s': offset %lld at position %ld is outside [0, %lld] (the ids)",
         feature, (long long)prev, r0, (long long)nnz);
    return false;
  }
  for (long r = r0 + 1; r <= r1; ++r) {
    const int64_t cur = load_int(off, bits, r);
    if (cur < prev) {
      fail(e, XREC_ERR_INPUT, r0,
           "feature '%s': offsets decrease at position %ld (%lld then %lld); offsets must be non-decreasing",
           feature, r, (long long)prev, (long long)cur);
      return false;
    }
    if (cur > nnz) {
      fail(e, XREC_ERR_INPUT, r0, "feature '%s': offsets reach %lld beyond the %lld ids", feature,
           (long long)cur, (long long)nnz);
      return false;
    }
    prev = cur;
  }
  return true;
}

// Rows per tile for a batch of B rows on `threads` threads: one tile (no threading at
// all) for small batches; otherwise enough tiles for every thread, at most tile_max rows,
// a multiple of 16 rows so that two threads never write into one cache line of a
// [B, 1] float output (no false sharing at tile edges).
inline long tile_rows(long B, int threads, long tile_max) {
  if (B <= 16 || threads <= 1) return B < tile_max ? (B > 0 ? B : 1) : tile_max;
  long t = (B + threads - 1) / threads;
  t = (t + 15) / 16 * 16;
  return t < tile_max ? t : tile_max;
}

// Column p of T (p = 0..T) of a layer's N columns split into T parts of whole
// nb-column panels: part p is [col_split(p), col_split(p + 1)).
inline int col_split(int N, int nb, int p, int T) {
  const long blocks = (N + nb - 1) / nb;
  const long c = blocks * p / T * nb;
  return c < N ? (int)c : N;
}

inline void* alloc_aligned(size_t bytes) {
  bytes = (bytes + 63) / 64 * 64;
  if (bytes == 0) bytes = 64;
  return std::aligned_alloc(64, bytes);
}

// Scratch for one call: one tile arena and one error slot per thread.
struct Context {
  unsigned char* arenas = nullptr;
  Error* errors = nullptr;
  int threads = 0;
  size_t arena_bytes = 0;
  unsigned char* arena(int t) const { return arenas + (size_t)t * arena_bytes; }
  ~Context() {
    std::free(arenas);
    delete[] errors;
  }
};

// Contexts are reused across calls; concurrent calls each take their own.
class ContextPool {
 public:
  ContextPool(int threads, size_t arena_bytes) : threads_(threads), arena_bytes_((arena_bytes + 63) / 64 * 64) {}
  ~ContextPool() {
    for (Context* c : free_) delete c;
  }
  Context* acquire() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!free_.empty()) {
        Context* c = free_.back();
        free_.pop_back();
        return c;
      }
    }
    Context* c = new (std::nothrow) Context();
    if (!c) return nullptr;
    c->threads = threads_;
    c->arena_bytes = arena_bytes_ ? arena_bytes_ : 64;
    c->arenas = (unsigned char*)alloc_aligned(c->arena_bytes * (size_t)threads_);
    c->errors = new (std::nothrow) Error[threads_];
    if (!c->arenas || !c->errors) {
      delete c;
      return nullptr;
    }
    return c;
  }
  void release(Context* c) {
    std::lock_guard<std::mutex> lock(mu_);
    free_.push_back(c);
  }

 private:
  int threads_;
  size_t arena_bytes_;
  std::mutex mu_;
  std::vector<Context*> free_;
};

}  // namespace gen
}  // namespace XREC_ISA_NS
}  // namespace xrec
