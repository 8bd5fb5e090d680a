/* Roofline probes for `xrec bench`: what this machine's memory and FMA units
 * deliver to plain, compiler-vectorised C loops.
 *
 * Built at run time by xrec/bench/roofline.py with
 *     g++ -O3 -march=native -fopenmp -shared -fPIC probes.c
 * and cached under xrec's cache_dir. Plain C (valid C and C++), no intrinsics:
 * the loops are what a competent programmer writes without hand-tuning, so a
 * kernel's fraction of them says how close it is to "just the memory traffic".
 *
 *   xb_stream_read   sequential read of a large array (stream-like), best of reps
 *   xb_fma_peak      independent FMA chains in vector registers, all threads
 *   xb_gather_f32    sum-pool rows of fp32 tables at given ids (embedding bag),
 *                    output [batch, sum(dims)] like torch.cat of the pooled tables
 *   xb_gather_i8     the same over FBGEMM byte-rowwise rows (dim uint8, fp32
 *                    scale, fp32 bias), i.e. torch's embedding_bag_byte_prepack
 */
#include <stdint.h>
#include <string.h>
#include <omp.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__AVX512F__)
#define XB_VBYTES 64
#else
#define XB_VBYTES 32
#endif
typedef float vf __attribute__((vector_size(XB_VBYTES)));
#define XB_LANES ((int)(XB_VBYTES / sizeof(float)))
#define XB_ACCS 16

int xb_fma_lanes(void) { return XB_LANES; }
int xb_fma_accs(void) { return XB_ACCS; }

static float hsum(vf v) {
  float s = 0.f;
  for (int i = 0; i < XB_LANES; ++i) s += v[i];
  return s;
}

/* Best seconds of `reps` passes summing n floats (n a multiple of 4 * lanes). */
double xb_stream_read(const float* a, int64_t n, int reps, int threads, double* sink) {
  double best = 1e30, total = 0.0;
  const int64_t step = 4 * XB_LANES;
  const int64_t blocks = n / step;
  for (int r = 0; r < reps; ++r) {
    double s = 0.0;
    double t0 = omp_get_wtime();
#pragma omp parallel num_threads(threads) reduction(+ : s)
    {
      vf s0 = {0}, s1 = {0}, s2 = {0}, s3 = {0};
#pragma omp for schedule(static)
      for (int64_t b = 0; b < blocks; ++b) {
        const vf* p = (const vf*)(a + b * step);
        s0 += p[0];
        s1 += p[1];
        s2 += p[2];
        s3 += p[3];
      }
      s += hsum(s0 + s1 + s2 + s3);
    }
    double dt = omp_get_wtime() - t0;
    if (dt < best) best = dt;
    total += s;
  }
  *sink = total;
  return best;
}

/* Seconds for `iters` rounds of XB_ACCS independent vector FMAs on each thread. */
double xb_fma_peak(int64_t iters, int threads, double* sink) {
  double total = 0.0;
  double t0 = omp_get_wtime();
#pragma omp parallel num_threads(threads) reduction(+ : total)
  {
    vf acc[XB_ACCS];
    vf m, c;
    for (int i = 0; i < XB_LANES; ++i) {
      m[i] = 0.9999f;
      c[i] = 1e-4f * (float)(omp_get_thread_num() + 1);
    }
    for (int k = 0; k < XB_ACCS; ++k)
      for (int i = 0; i < XB_LANES; ++i) acc[k][i] = (float)(k + i);
    for (int64_t it = 0; it < iters; ++it) {
#pragma GCC unroll 16
      for (int k = 0; k < XB_ACCS; ++k) acc[k] = acc[k] * m + c;
    }
    vf s = acc[0];
    for (int k = 1; k < XB_ACCS; ++k) s += acc[k];
    total += hsum(s);
  }
  double dt = omp_get_wtime() - t0;
  *sink = total;
  return dt;
}

/* out[b, col[t] : col[t] + dims[t]] = sum of rows ids[t][offs[t][b] : offs[t][b+1]] of tables[t]. */
void xb_gather_f32(int ntables, const float* const* tables, const int* dims, const int* cols,
                   const int64_t* const* ids, const int64_t* const* offs, int64_t batch,
                   float* out, int64_t ldo, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t b = 0; b < batch; ++b) {
    for (int t = 0; t < ntables; ++t) {
      const int dim = dims[t];
      float* __restrict__ o = out + b * ldo + cols[t];
      const float* __restrict__ tab = tables[t];
      for (int j = 0; j < dim; ++j) o[j] = 0.f;
      for (int64_t p = offs[t][b]; p < offs[t][b + 1]; ++p) {
        const float* __restrict__ row = tab + ids[t][p] * (int64_t)dim;
        for (int j = 0; j < dim; ++j) o[j] += row[j];
      }
    }
  }
}

/* Byte-rowwise rows: dim uint8 values, then fp32 scale and fp32 bias (row_bytes = dim + 8). */
void xb_gather_i8(int ntables, const uint8_t* const* tables, const int* dims, const int* cols,
                  const int64_t* const* ids, const int64_t* const* offs, int64_t batch,
                  float* out, int64_t ldo, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t b = 0; b < batch; ++b) {
    for (int t = 0; t < ntables; ++t) {
      const int dim = dims[t];
      const int64_t row_bytes = dim + 8;
      float* __restrict__ o = out + b * ldo + cols[t];
      for (int j = 0; j < dim; ++j) o[j] = 0.f;
      for (int64_t p = offs[t][b]; p < offs[t][b + 1]; ++p) {
        const uint8_t* __restrict__ row = tables[t] + ids[t][p] * row_bytes;
        float scale, bias;
        memcpy(&scale, row + dim, 4);
        memcpy(&bias, row + dim + 4, 4);
        for (int j = 0; j < dim; ++j) o[j] += (float)row[j] * scale + bias;
      }
    }
  }
}

#ifdef __cplusplus
}
#endif
