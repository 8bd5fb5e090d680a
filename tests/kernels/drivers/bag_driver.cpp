// Test driver (ctypes): exposes the embedding-bag kernel of one ISA build.
#include "xrec_kernels.h"
using namespace xrec::XREC_ISA_NS;

extern "C" {
// status_out: {code, position, value}
void t_embedding_bag(const uint8_t* table, int64_t num_rows, int dim, int row_bytes, int format,
                     int mode, int64_t padding_idx, const void* indices, const void* offsets,
                     int index_bits, int offset_bits, const float* psw, int64_t num_indices,
                     long b0, long b1, float* out, long ldo, int check_bounds,
                     int64_t* status_out) {
  BagFeature f{};
  f.table = table;
  f.num_rows = num_rows;
  f.dim = dim;
  f.row_bytes = row_bytes;
  f.format = (RowFormat)format;
  f.mode = (PoolMode)mode;
  f.padding_idx = padding_idx;
  f.indices = indices;
  f.offsets = offsets;
  f.index_bits = index_bits;
  f.offset_bits = offset_bits;
  f.per_sample_weights = psw;
  f.num_indices = num_indices;
  BagStatus st{};
  embedding_bag(f, b0, b1, out, ldo, check_bounds != 0, &st);
  status_out[0] = st.code;
  status_out[1] = st.position;
  status_out[2] = st.value;
}
float t_half_to_float(uint16_t h) { return half_to_float(h); }

// Table-batched: nf features given as parallel arrays (formats f32/f16/i8/i4, one
// mode); status_out: {code, position, value, bad_feature}.
void t_embedding_bags(int nf, const uint8_t* const* tables, const int64_t* num_rows, const int* dims,
                      const int* row_bytes, const int* formats, int mode, const void* const* indices,
                      const void* const* offsets, const int* index_bits, const int* offset_bits,
                      const int64_t* num_indices, const long* out_col, long b0, long b1, float* out,
                      long ldo, int check_bounds, int64_t* status_out) {
  BagFeature fs[64];
  for (int k = 0; k < nf && k < 64; ++k) {
    BagFeature f{};
    f.table = tables[k]; f.num_rows = num_rows[k]; f.dim = dims[k]; f.row_bytes = row_bytes[k];
    f.format = (RowFormat)formats[k]; f.mode = (PoolMode)mode; f.padding_idx = -1;
    f.indices = indices[k]; f.offsets = offsets[k]; f.index_bits = index_bits[k];
    f.offset_bits = offset_bits[k]; f.per_sample_weights = nullptr; f.num_indices = num_indices[k];
    fs[k] = f;
  }
  BagStatus st{};
  int bad = -2;
  embedding_bags(fs, nf, out_col, b0, b1, out, ldo, check_bounds != 0, &st, &bad);
  status_out[0] = st.code; status_out[1] = st.position; status_out[2] = st.value; status_out[3] = bad;
}
}
