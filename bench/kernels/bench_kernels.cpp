// Microbenchmark driver for kernels/cpu (built by run.py as a shared library and
// called through ctypes, so the kernels, the gather roofline probe and torch run
// interleaved in one process). Threads: OpenMP here, splitting the work the way
// the generated model code does (rows of a layer / bags of a feature per thread);
// the kernels themselves are single-threaded.
//
// Build: g++ -O3 -std=c++17 -march=x86-64-v4 -DXREC_ISA_NS=avx512 -fopenmp -shared -fPIC
//        -I kernels/cpu bench_kernels.cpp -o libbench.so
#include <omp.h>
#include <time.h>
#include <cstdint>
#include <cstring>
#include "xrec_kernels.h"
using namespace xrec::XREC_ISA_NS;

// Clock: wall (CLOCK_MONOTONIC) or the calling thread's CPU time, which on this
// shared 2-vCPU machine excludes time the thread was descheduled for other
// people's processes (only meaningful for single-threaded runs).
static clockid_t g_clock = CLOCK_MONOTONIC;

static double now() {
  timespec t;
  clock_gettime(g_clock, &t);
  return t.tv_sec + 1e-9 * t.tv_nsec;
}

static volatile float g_sink;

// Sets BagFeature::prefetch_distance when the kernel headers have it (the bench
// also builds against older kernel revisions for before/after comparisons).
template <typename T>
static auto set_prefetch(T& f, int d, int) -> decltype(f.prefetch_distance = d, void()) { f.prefetch_distance = d; }
template <typename T>
static void set_prefetch(T&, int, long) {}

extern "C" {

void b_use_thread_cpu_clock(int on) { g_clock = on ? CLOCK_THREAD_CPUTIME_ID : CLOCK_MONOTONIC; }

// ------------------------------------------------------------------ FMA peak probe
// Register-only FMA loop: 16 independent vector accumulators (named, so they
// stay in registers). Returns GFLOP/s summed over threads.
double b_fma_peak(int threads, long iters) {
  double t0 = now();
#pragma omp parallel num_threads(threads)
  {
    const float s0 = 0.001f * (1 + omp_get_thread_num());
#define XREC_ACC(i) simd::vf a##i = simd::set1(s0 * (i + 1));
    XREC_ACC(0) XREC_ACC(1) XREC_ACC(2) XREC_ACC(3) XREC_ACC(4) XREC_ACC(5) XREC_ACC(6) XREC_ACC(7)
    XREC_ACC(8) XREC_ACC(9) XREC_ACC(10) XREC_ACC(11) XREC_ACC(12) XREC_ACC(13) XREC_ACC(14) XREC_ACC(15)
    const simd::vf m = simd::set1(0.999999f), c = simd::set1(1e-7f);
    for (long it = 0; it < iters; ++it) {
#define XREC_FMA(i) a##i = simd::fma(a##i, m, c);
      XREC_FMA(0) XREC_FMA(1) XREC_FMA(2) XREC_FMA(3) XREC_FMA(4) XREC_FMA(5) XREC_FMA(6) XREC_FMA(7)
      XREC_FMA(8) XREC_FMA(9) XREC_FMA(10) XREC_FMA(11) XREC_FMA(12) XREC_FMA(13) XREC_FMA(14) XREC_FMA(15)
    }
    simd::vf s = simd::add(simd::add(simd::add(a0, a1), simd::add(a2, a3)), simd::add(simd::add(a4, a5), simd::add(a6, a7)));
    s = simd::add(s, simd::add(simd::add(simd::add(a8, a9), simd::add(a10, a11)), simd::add(simd::add(a12, a13), simd::add(a14, a15))));
    g_sink = simd::hsum(s);
  }
  const double t = now() - t0;
  return 2.0 * 16 * simd::W * (double)iters * threads / t * 1e-9;
}

// FLOPs per iteration and thread of b_fma_peak (for callers timing it themselves).
double b_fma_flops_per_iter() { return 2.0 * 16 * simd::W; }

// ------------------------------------------------------------------ dense layers
size_t b_packed_floats(int N, int K) { return linear_packed_floats(N, K); }
void b_pack(const float* W, int N, int K, float* packed) { pack_linear(W, N, K, packed); }
int b_n_block() { return linear_n_block(); }

// split: 0 = rows (M) across threads, 1 = column blocks (N) across threads.
double b_linear(const float* X, long M, int K, const float* packed, int N, const float* bias, int act,
                float* Y, int threads, int reps, int split) {
  const int nb = linear_n_block();
  const double t0 = now();
  for (int r = 0; r < reps; ++r) {
    if (threads == 1) {
      linear(X, M, K, K, packed, N, bias, (Act)act, Y, N, 0, N);
      continue;
    }
#pragma omp parallel num_threads(threads)
    {
      const int t = omp_get_thread_num(), T = omp_get_num_threads();
      if (split == 0) {
        const long m0 = M * t / T, m1 = M * (t + 1) / T;
        if (m1 > m0) linear(X + m0 * K, m1 - m0, K, K, packed, N, bias, (Act)act, Y + m0 * N, N, 0, N);
      } else {
        const int blocks = (N + nb - 1) / nb;
        const int c0 = blocks * t / T * nb, c1p = blocks * (t + 1) / T * nb;
        const int c1 = c1p < N ? c1p : N;
        if (c1 > c0) linear(X, M, K, K, packed, N, bias, (Act)act, Y, N, c0, c1);
      }
    }
  }
  return now() - t0;
}

// ------------------------------------------------------------------ embedding bags
// One feature, bags [0, batch) split across threads; int64 ids and offsets.
double b_bag(const uint8_t* table, int64_t rows, int dim, int row_bytes, int fmt, int mode,
             const int64_t* idx, const int64_t* off, long batch, const float* psw, float* out,
             int threads, int reps, int check_bounds, int prefetch) {
  BagFeature f{};
  f.table = table; f.num_rows = rows; f.dim = dim; f.row_bytes = row_bytes;
  f.format = (RowFormat)fmt; f.mode = (PoolMode)mode; f.padding_idx = -1;
  f.indices = idx; f.offsets = off; f.index_bits = 64; f.offset_bits = 64;
  f.per_sample_weights = psw; f.num_indices = off[batch];
  set_prefetch(f, prefetch, 0);
  int bad = 0;
  const double t0 = now();
  for (int r = 0; r < reps; ++r) {
    if (threads == 1) {
      BagStatus st;
      embedding_bag(f, 0, batch, out, dim, check_bounds != 0, &st);
      bad |= st.code;
      continue;
    }
#pragma omp parallel num_threads(threads) reduction(| : bad)
    {
      const int t = omp_get_thread_num(), T = omp_get_num_threads();
      const long b0 = batch * t / T, b1 = batch * (t + 1) / T;
      BagStatus st;
      embedding_bag(f, b0, b1, out, dim, check_bounds != 0, &st);
      bad |= st.code;
    }
  }
  const double t = now() - t0;
  return bad ? -t : t;
}

// The embedding stage of a model: nf features (int64 ids/offsets, sum pooling)
// into one [batch, ldo] concat buffer at out_col[k], bags split across threads,
// one embedding_bags call per thread (as the generated code does).
double b_stage(int nf, const uint8_t* const* tables, const int64_t* rows, const int* dims,
               const int* row_bytes, const int* fmts, const int64_t* const* idx,
               const int64_t* const* off, long batch, float* out, long ldo, const long* out_col,
               int threads, int reps) {
  BagFeature fs[128];
  for (int k = 0; k < nf && k < 128; ++k) {
    BagFeature f{};
    f.table = tables[k]; f.num_rows = rows[k]; f.dim = dims[k]; f.row_bytes = row_bytes[k];
    f.format = (RowFormat)fmts[k]; f.mode = POOL_SUM; f.padding_idx = -1;
    f.indices = idx[k]; f.offsets = off[k]; f.index_bits = 64; f.offset_bits = 64;
    f.per_sample_weights = nullptr; f.num_indices = off[k][batch];
    fs[k] = f;
  }
  int bad = 0;
  const double t0 = now();
  for (int r = 0; r < reps; ++r) {
#pragma omp parallel num_threads(threads) reduction(| : bad) if (threads > 1)
    {
      const int t = omp_get_thread_num(), T = omp_get_num_threads();
      BagStatus st;
      embedding_bags(fs, nf, out_col, batch * t / T, batch * (t + 1) / T, out, ldo, false, &st, nullptr);
      bad |= st.code;
    }
  }
  const double t = now() - t0;
  return bad ? -t : t;
}

// Random-row gather roofline probe: reads every byte of every row the ids name
// (vector loads, one add per 64 bytes), nothing else; optional software prefetch
// `dist` ids ahead. Same ids, same table, same thread split as b_bag.
double b_gather_probe(const uint8_t* table, int row_bytes, const int64_t* idx, const int64_t* off,
                      long batch, int threads, int reps, int dist) {
  const double t0 = now();
  for (int r = 0; r < reps; ++r) {
#pragma omp parallel num_threads(threads)
    {
      const int t = omp_get_thread_num(), T = omp_get_num_threads();
      const long i0 = off[batch * t / T], i1 = off[batch * (t + 1) / T];
      const int lines = (row_bytes + 63) / 64;
      simd::vf acc0 = simd::zero(), acc1 = simd::zero();
      for (long i = i0; i < i1; ++i) {
        if (dist > 0 && i + dist < i1) {
          const char* p = (const char*)table + idx[i + dist] * (int64_t)row_bytes;
          for (int l = 0; l < lines; ++l) _mm_prefetch(p + 64 * l, _MM_HINT_T0);
        }
        const float* row = (const float*)(table + idx[i] * (int64_t)row_bytes);
        int b = 0;
        for (; b + 128 <= row_bytes; b += 128) {
          acc0 = simd::add(acc0, simd::load(row + b / 4));
          acc1 = simd::add(acc1, simd::load(row + b / 4 + 16));
        }
        for (; b + 64 <= row_bytes; b += 64) acc0 = simd::add(acc0, simd::load(row + b / 4));
        if (b < row_bytes) acc1 = simd::add(acc1, simd::load_n(row + b / 4, (row_bytes - b) / 4));
      }
      g_sink = simd::hsum(simd::add(acc0, acc1));
    }
  }
  return now() - t0;
}

// ------------------------------------------------------------------ interaction
double b_interaction(const float* T, long B, int F, int D, const int* pi, const int* pj, int P,
                     float* out, int threads, int reps) {
  const double t0 = now();
  for (int r = 0; r < reps; ++r) {
    if (threads == 1) {
      dot_interaction(T, (long)F * D, F, D, pi, pj, P, out, P, 0, B);
      continue;
    }
#pragma omp parallel num_threads(threads)
    {
      const int t = omp_get_thread_num(), Tn = omp_get_num_threads();
      dot_interaction(T, (long)F * D, F, D, pi, pj, P, out, P, B * t / Tn, B * (t + 1) / Tn);
    }
  }
  return now() - t0;
}

}  // extern "C"
