// Compiled once per ISA (like the cpu target's generated code) and linked into
// one program with isa_link_main.cpp: each build exports run_<ns>().
#include "xrec_kernels.h"
#define XREC_CAT2(a, b) a##b
#define XREC_CAT(a, b) XREC_CAT2(a, b)
using namespace xrec::XREC_ISA_NS;

extern "C" double XREC_CAT(run_, XREC_ISA_NS)() {
  const int N = 37, K = 100, M = 5;
  static float W[N * K], X[M * K], Y[M * N], packed[64 * K], T[2 * 27 * 64], I[2 * 351];
  for (int i = 0; i < N * K; ++i) W[i] = (float)((i * 37) % 17) / 17.0f - 0.5f;
  for (int i = 0; i < M * K; ++i) X[i] = (float)((i * 11) % 13) / 13.0f - 0.5f;
  pack_linear(W, N, K, packed);
  linear(X, M, K, K, packed, N, nullptr, ACT_TANH, Y, N, 0, N);
  double s = 0;
  for (float y : Y) s += y;
  for (int i = 0; i < 2 * 27 * 64; ++i) T[i] = (float)((i * 7) % 19) / 19.0f;
  int pi[351], pj[351], p = 0;
  for (int i = 0; i < 27; ++i) for (int j = 0; j < i; ++j) { pi[p] = i; pj[p] = j; ++p; }
  dot_interaction(T, 27 * 64, 27, 64, pi, pj, 351, I, 351, 0, 2);
  for (float v : I) s += v;
  uint16_t h[40];
  for (int i = 0; i < 40; ++i) h[i] = (uint16_t)(0x3C00 + i * 13);
  int32_t idx[3] = {0, 3, 3}, off[3] = {0, 1, 3};
  float out[2 * 40];
  BagFeature f{};
  f.table = (const uint8_t*)h; f.num_rows = 4; f.dim = 10; f.row_bytes = 20; f.format = ROW_F16;
  f.mode = POOL_SUM; f.padding_idx = -1; f.indices = idx; f.offsets = off; f.index_bits = 32;
  f.offset_bits = 32; f.per_sample_weights = nullptr; f.num_indices = 3;
  BagStatus st{};
  embedding_bag(f, 0, 2, out, 10, true, &st);
  for (int i = 0; i < 20; ++i) s += out[i];
  return st.code == BAG_OK ? s : -1e30;
}
