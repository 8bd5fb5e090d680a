// One call of a kernels/cpu template, exported with a C ABI for `xrec bench --kernel`
// (bench/kernel_calls.py builds this file as a shared library per ISA and kernels/cpu
// revision and calls it through ctypes). Each function makes exactly one call, split
// over `threads` with OpenMP the way the generated model code splits it (rows of a
// layer or bags of a feature per thread; the kernels themselves are single-threaded);
// the timing is done by the caller, the same way for every system of a run.
//
// Build: g++ -O3 -std=c++17 <cpu target ISA flags> -DXREC_ISA_NS=<isa> -fopenmp -shared -fPIC
//        -I kernels/cpu kernel_calls.cpp -o libkernel_calls.so
#include <omp.h>
#include <cstdint>
#include "xrec_kernels.h"
using namespace xrec::XREC_ISA_NS;

extern "C" {

// ------------------------------------------------------------------ dense layers
size_t kc_packed_floats(int N, int K) { return linear_packed_floats(N, K); }
void kc_pack(const float* W, int N, int K, float* packed) { pack_linear(W, N, K, packed); }

// Y[M, N] = act(X[M, K] W^T + bias); split: 0 = rows (M) across threads, 1 = column blocks (N).
void kc_linear(const float* X, long M, int K, const float* packed, int N, const float* bias, int act,
               float* Y, int threads, int split) {
  if (threads == 1) {
    linear(X, M, K, K, packed, N, bias, (Act)act, Y, N, 0, N);
    return;
  }
  const int nb = linear_n_block();
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

// ------------------------------------------------------------------ embedding bags
// Several features (int64 ids/offsets, sum pooling) into one [batch, ldo] concat buffer at
// out_col[k], bags split across threads, one embedding_bags call per thread (as the
// generated code does). Returns the OR of the BagStatus codes (0 = ok).
int kc_bags(int nf, const uint8_t* const* tables, const int64_t* rows, const int* dims, const int* row_bytes,
            const int* fmts, const int64_t* const* idx, const int64_t* const* off, long batch, float* out,
            long ldo, const long* out_col, int threads) {
  BagFeature fs[128];
  if (nf > 128) return -1;
  for (int k = 0; k < nf; ++k) {
    BagFeature f{};
    f.table = tables[k]; f.num_rows = rows[k]; f.dim = dims[k]; f.row_bytes = row_bytes[k];
    f.format = (RowFormat)fmts[k]; f.mode = POOL_SUM; f.padding_idx = -1;
    f.indices = idx[k]; f.offsets = off[k]; f.index_bits = 64; f.offset_bits = 64;
    f.per_sample_weights = nullptr; f.num_indices = off[k][batch];
    fs[k] = f;
  }
  int bad = 0;
#pragma omp parallel num_threads(threads) reduction(| : bad) if (threads > 1)
  {
    const int t = omp_get_thread_num(), T = omp_get_num_threads();
    BagStatus st;
    embedding_bags(fs, nf, out_col, batch * t / T, batch * (t + 1) / T, out, ldo, false, &st, nullptr);
    bad |= st.code;
  }
  return bad;
}

// ------------------------------------------------------------------ interaction
// out[b, p] = <T[b, pi[p]], T[b, pj[p]]> for T [B, F, D]; samples split across threads.
void kc_interaction(const float* T, long B, int F, int D, const int* pi, const int* pj, int P, float* out,
                    int threads) {
#pragma omp parallel num_threads(threads) if (threads > 1)
  {
    const int t = omp_get_thread_num(), Tn = omp_get_num_threads();
    dot_interaction(T, (long)F * D, F, D, pi, pj, P, out, P, B * t / Tn, B * (t + 1) / Tn);
  }
}

}  // extern "C"
