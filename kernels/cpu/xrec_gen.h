// xrec_gen.h: the model-independent part of the generated model code: errors,
// input/output/offsets checks, pooling one feature through the bag kernel,
// tiling the batch over the threads, per-call scratch. The generated model.cpp
// holds only what is specific to its model (tables of names, dtypes and shapes,
// the weights, the steps of a tile) and calls these. Compiled into every ISA
// build, in the ISA's namespace like the kernels.
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

#include <omp.h>

#include "xrec_kernel_entry.h"
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

// ---------------------------------------------------------------- checks of one call's tensors

// Inputs: their count, then every input's rank and data pointer, then every input's dtype:
// accept[k] holds the one or two XREC_* dtypes input k takes, want[k] says which in words.
inline int check_inputs(const xrec_tensor* in, int n, int num_inputs, const char* const* names, const int* ndims,
                        const char* const* shapes, const int (*accept)[2], const char* const* want, char* err,
                        size_t len) {
  if (n != num_inputs) {
    return report(err, len, XREC_ERR_INPUT, "expected %d input tensors, got %d", num_inputs, n);
  }
  if (n > 0 && !in) {
    return report(err, len, XREC_ERR_INPUT, "inputs is NULL; pass an array of %d xrec_tensor", n);
  }
  for (int k = 0; k < n; ++k) {
    if (in[k].ndim != ndims[k]) {
      return report(err, len, XREC_ERR_INPUT, "input '%s': rank %d, expected rank %d (%s)", names[k], in[k].ndim,
                    ndims[k], shapes[k]);
    }
    for (int d = 0; d < in[k].ndim; ++d) {
      if (in[k].shape[d] < 0) {
        return report(err, len, XREC_ERR_INPUT, "input '%s': dim %d is negative (%lld); sizes must be >= 0 (%s)",
                      names[k], d, (long long)in[k].shape[d], shapes[k]);
      }
    }
    if (!in[k].data && in[k].shape[0] != 0) {
      return report(err, len, XREC_ERR_INPUT, "input '%s': data is null", names[k]);
    }
  }
  for (int k = 0; k < n; ++k) {
    if (in[k].dtype != accept[k][0] && in[k].dtype != accept[k][1]) {
      return report(err, len, XREC_ERR_INPUT, "input '%s': dtype %s, expected %s", names[k],
                    dtype_name(in[k].dtype), want[k]);
    }
  }
  return XREC_OK;
}

// Outputs: their count, dtypes, ranks and shapes (want: XREC_MAX_DIMS dims per output), non-null data.
inline int check_outputs(const xrec_tensor* out, int n_out, int num_outputs, const int* dtypes, const int* ndims,
                         const int64_t* want, char* err, size_t len) {
  if (n_out != num_outputs) {
    return report(err, len, XREC_ERR_INPUT, "expected %d output tensors, got %d", num_outputs, n_out);
  }
  if (num_outputs > 0 && !out) {
    return report(err, len, XREC_ERR_INPUT, "outputs is NULL; pass an array of %d xrec_tensor", num_outputs);
  }
  for (int k = 0; k < num_outputs; ++k) {
    bool ok = out[k].dtype == dtypes[k] && out[k].ndim == ndims[k];
    for (int d = 0; ok && d < ndims[k]; ++d) ok = out[k].shape[d] == want[k * XREC_MAX_DIMS + d];
    if (!ok || (!out[k].data && want[k * XREC_MAX_DIMS] != 0)) {
      return report(err, len, XREC_ERR_INPUT, "output %d: wrong dtype, shape or null data "
                    "(see xrec_model_output_shapes)", k);
    }
  }
  return XREC_OK;
}

// Every feature's offsets start at 0 and end at its number of ids (nnz[k]).
inline int check_bag_ends(const BagFeature* bags, const int64_t* nnz, const char* const* features, int nbags,
                          long B, char* err, size_t len) {
  for (int k = 0; k < nbags; ++k) {
    const BagFeature& f = bags[k];
    const int64_t first = load_int(f.offsets, f.offset_bits, 0);
    const int64_t last = load_int(f.offsets, f.offset_bits, B);
    if (first != 0) {
      return report(err, len, XREC_ERR_INPUT, "feature '%s': offsets must start at 0, got %lld", features[k],
                    (long long)first);
    }
    if (last != nnz[k]) {
      return report(err, len, XREC_ERR_INPUT, "feature '%s': offsets end at %lld but indices holds %lld ids "
                    "(offsets[-1] must equal len(indices))", features[k], (long long)last, (long long)nnz[k]);
    }
  }
  return XREC_OK;
}

// ---------------------------------------------------------------- one tile

// Pools the bags of rows [r0, r1) of feature f (named `feature`, nnz ids) into out (tile rows, row stride
// ldo), checking the tile's offsets first when `check`.
inline bool pool_feature(const BagFeature& f, const char* feature, int64_t nnz, long r0, long r1, float* out,
                         long ldo, bool check, Error* err) {
  if (check && !check_offsets(feature, f.offsets, f.offset_bits, r0, r1, nnz, err)) {
    return false;
  }
  BagFeature t = f;          // this tile's bags: offsets from row r0 on
  t.offsets = (const char*)f.offsets + (size_t)r0 * (f.offset_bits / 8);
  BagStatus st{0, 0, 0};
  entry::embedding_bag(t, 0, r1 - r0, out, ldo, check, &st);
  if (st.code == BAG_INDEX_OUT_OF_RANGE) {
    fail(err, XREC_ERR_INPUT, r0, "feature '%s': index %lld at position %lld is out of range for its table of "
         "%lld rows", feature, (long long)st.value, (long long)st.position, (long long)f.num_rows);
    return false;
  }
  if (st.code != BAG_OK) {
    fail(err, XREC_ERR_INPUT, r0, "feature '%s': bad offsets near position %lld (value %lld)", feature,
         (long long)(st.position + r0), (long long)st.value);
    return false;
  }
  return true;
}

// ---------------------------------------------------------------- the batch over the threads

// Runs tile(r0, r1, arena, error) over the batch of B rows in tiles of at most tile_max rows, on the
// calling thread when there is one tile per thread or fewer (then *col_threads = threads: big layers split
// their columns over the threads), else on a thread team with dynamic scheduling (*col_threads = 1).
// Returns the error of the failing tile with the lowest rows, in err.
template <class Tile>
inline int run_tiles(ContextPool& pool, int threads, long B, long tile_max, int* col_threads, const Tile& tile,
                     char* err, size_t len) {
  if (B == 0) return XREC_OK;
  Context* ctx = pool.acquire();
  if (!ctx) return report(err, len, XREC_ERR_RUNTIME, "out of memory for scratch");
  const long T = tile_rows(B, threads, tile_max);
  const long ntiles = (B + T - 1) / T;
  const int nt = ntiles < threads ? (int)ntiles : threads;
  for (int t = 0; t < nt; ++t) ctx->errors[t].code = 0;
  *col_threads = nt <= 1 ? threads : 1;
  if (nt <= 1) {
    // small batch: every tile on the calling thread, no thread team
    for (long t = 0; t < ntiles && !ctx->errors[0].code; ++t) {
      tile(t * T, t * T + T < B ? t * T + T : B, ctx->arena(0), &ctx->errors[0]);
    }
  } else {
#pragma omp parallel num_threads(nt)
    {
      const int tid = omp_get_thread_num();
      Error* e = &ctx->errors[tid];
#pragma omp for schedule(dynamic, 1)   // a preempted thread does not hold up the rest
      for (long t = 0; t < ntiles; ++t) {
        if (!e->code) tile(t * T, t * T + T < B ? t * T + T : B, ctx->arena(tid), e);
      }
    }
  }
  // report the failing tile with the lowest rows
  const Error* first = nullptr;
  for (int t = 0; t < nt; ++t) {
    if (ctx->errors[t].code && (!first || ctx->errors[t].row < first->row)) first = &ctx->errors[t];
  }
  int rc = XREC_OK;
  if (first) rc = report(err, len, first->code, "%s", first->msg);
  pool.release(ctx);
  return rc;
}

}  // namespace gen
}  // namespace XREC_ISA_NS
}  // namespace xrec
