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
}
