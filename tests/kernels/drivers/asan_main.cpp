// Runs every kernel family on exactly-sized heap buffers (so AddressSanitizer sees
// any read past an array) and prints one line per case for test_asan.py to check:
//   <case> <status code> <position> <value> <checksum>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>
#include "xrec_kernels.h"
using namespace xrec::XREC_ISA_NS;

template <typename T>
static T* heap_copy(const std::vector<T>& v) {  // exact-size allocation (none for empty)
  T* p = (T*)std::malloc(v.empty() ? 1 : v.size() * sizeof(T));
  if (!v.empty()) std::memcpy(p, v.data(), v.size() * sizeof(T));
  return p;
}

static uint32_t lcg = 12345;
static float rnd() { lcg = lcg * 1664525u + 1013904223u; return (float)(lcg >> 8) / 16777216.0f - 0.5f; }

template <typename IdxT>
static void bag_case(const char* name, int fmt, int dim, int row_bytes, int64_t rows,
                     std::vector<IdxT> idx, std::vector<IdxT> off, int mode, int64_t num_indices) {
  std::vector<uint8_t> tb((size_t)rows * row_bytes);
  for (auto& b : tb) b = (uint8_t)(rnd() * 200 + 100);
  if (fmt == ROW_F32) for (int64_t r = 0; r < rows; ++r) for (int j = 0; j < dim; ++j) {
    float v = rnd(); std::memcpy(&tb[r * row_bytes + 4 * j], &v, 4); }
  if (fmt == ROW_F16) for (size_t i = 1; i < tb.size(); i += 2) tb[i] &= 0x3B;  // finite halves
  for (int64_t r = 0; r < rows; ++r) {  // finite scale and bias for the quantized rows
    uint8_t* row = &tb[r * row_bytes];
    if (fmt == ROW_I8) { const float sb[2] = {0.01f, 0.5f}; std::memcpy(row + dim, sb, 8); }
    if (fmt == ROW_I4) { const uint16_t sb[2] = {0x2000, 0x3800}; std::memcpy(row + (dim + 1) / 2, sb, 4); }
  }
  uint8_t* table = heap_copy(tb);
  IdxT* ids = heap_copy(idx);
  IdxT* offs = heap_copy(off);
  const long B = (long)off.size() - 1;
  float* out = (float*)std::malloc(sizeof(float) * (size_t)(B > 0 ? B : 1) * dim);
  BagFeature f{};
  f.table = table; f.num_rows = rows; f.dim = dim; f.row_bytes = row_bytes;
  f.format = (RowFormat)fmt; f.mode = (PoolMode)mode; f.padding_idx = -1;
  f.indices = ids; f.offsets = offs; f.index_bits = 8 * sizeof(IdxT); f.offset_bits = 8 * sizeof(IdxT);
  f.per_sample_weights = nullptr; f.num_indices = num_indices;
  BagStatus st{};
  embedding_bag(f, 0, B, out, dim, true, &st);
  double sum = 0;
  if (st.code == BAG_OK) for (long i = 0; i < B * dim; ++i) sum += out[i];
  std::printf("%s %d %lld %lld %.6g\n", name, st.code, (long long)st.position, (long long)st.value, sum);
  std::free(table); std::free(ids); std::free(offs); std::free(out);
}

static void linear_case(const char* name, long M, int N, int K, int act) {
  std::vector<float> w((size_t)N * K), x((size_t)M * K), b(N);
  for (auto& v : w) v = rnd();
  for (auto& v : x) v = rnd();
  for (auto& v : b) v = rnd();
  float* W = heap_copy(w);
  float* X = heap_copy(x);
  float* bias = heap_copy(b);
  float* packed = (float*)std::malloc(sizeof(float) * linear_packed_floats(N, K));
  pack_linear(W, N, K, packed);
  float* Y = (float*)std::malloc(sizeof(float) * (size_t)M * N);
  linear(X, M, K, K, packed, N, bias, (Act)act, Y, N, 0, N);
  double sum = 0;
  for (long i = 0; i < M * N; ++i) sum += Y[i];
  std::printf("%s 0 0 0 %.6g\n", name, sum);
  std::free(W); std::free(X); std::free(bias); std::free(packed); std::free(Y);
}

static void interaction_case(const char* name, long B, int F, int D) {
  std::vector<float> t((size_t)B * F * D);
  for (auto& v : t) v = rnd();
  std::vector<int> pi, pj;
  for (int i = 0; i < F; ++i) for (int j = 0; j < i; ++j) { pi.push_back(i); pj.push_back(j); }
  float* T = heap_copy(t);
  int* PI = heap_copy(pi);
  int* PJ = heap_copy(pj);
  const int P = (int)pi.size();
  float* out = (float*)std::malloc(sizeof(float) * (size_t)B * P);
  dot_interaction(T, (long)F * D, F, D, PI, PJ, P, out, P, 0, B);
  double sum = 0;
  for (long i = 0; i < B * P; ++i) sum += out[i];
  std::printf("%s 0 0 0 %.6g\n", name, sum);
  std::free(T); std::free(PI); std::free(PJ); std::free(out);
}

int main() {
  // Rejected inputs: the kernel must stop before touching the bad row / offset.
  bag_case<int64_t>("id_too_large", ROW_F32, 16, 64, 10, {1, 2, 3, 10, 5}, {0, 2, 5}, POOL_SUM, 5);
  bag_case<int32_t>("negative_id", ROW_F32, 16, 64, 10, {1, -1}, {0, 2}, POOL_SUM, 2);
  bag_case<int64_t>("offsets_decreasing", ROW_F32, 16, 64, 10, {1, 2, 3}, {0, 2, 1, 3}, POOL_SUM, 3);
  bag_case<int32_t>("offsets_beyond_indices", ROW_F32, 16, 64, 10, {1, 2, 3}, {0, 2, 7}, POOL_SUM, 3);
  bag_case<int64_t>("negative_offset", ROW_F32, 16, 64, 10, {1, 2}, {-1, 2}, POOL_SUM, 2);
  // Valid inputs touching the last row of exactly-sized tables, odd dims, every format/mode.
  const int dims[] = {1, 13, 36, 64, 100, 128, 130};
  for (int dim : dims) {
    const int rb[4] = {4 * dim, 2 * dim, dim + 8, (dim + 1) / 2 + 4};
    for (int fmt = 0; fmt < 4; ++fmt)
      for (int mode = 0; mode < 3; ++mode) {
        char name[64];
        std::snprintf(name, sizeof name, "valid_f%d_m%d_d%d", fmt, mode, dim);
        std::vector<int32_t> idx;
        for (int i = 0; i < 40; ++i) idx.push_back((i * 7) % 9);
        idx.push_back(8);
        bag_case<int32_t>(name, fmt, dim, rb[fmt], 9, idx, {0, 0, 1, 17, 41}, mode, 41);
      }
  }
  linear_case("linear_1x13x37", 1, 13, 37, ACT_RELU);
  linear_case("linear_65x37x100", 65, 37, 100, ACT_SIGMOID);
  linear_case("linear_13x64x300", 13, 64, 300, ACT_NONE);
  linear_case("linear_3x1x256", 3, 1, 256, ACT_SIGMOID);
  interaction_case("interaction_5x27x64", 5, 27, 64);
  interaction_case("interaction_3x5x13", 3, 5, 13);
  return 0;
}
