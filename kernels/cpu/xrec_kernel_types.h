// xrec CPU kernel types: what a caller of the kernels needs (the generated model code includes only
// this and xrec_kernel_entry.h, not the kernel bodies, so a model compiles in a fraction of the time).
// The numeric codes of row formats, activations and pooling modes are xrec's (xrec_formats.h,
// generated from xrec/ir/formats.py; FBGEMM's SparseType for row formats).
#pragma once
#include <cstddef>
#include <cstdint>

#include "xrec_formats.h"

#ifndef XREC_ISA_NS
#define XREC_ISA_NS isa_default
#endif

namespace xrec {
namespace XREC_ISA_NS {

// ----------------------------------------------------------------- activations
enum Act : int { ACT_NONE = XREC_ACT_NONE, ACT_RELU = XREC_ACT_RELU, ACT_SIGMOID = XREC_ACT_SIGMOID,
                 ACT_TANH = XREC_ACT_TANH, ACT_GELU = XREC_ACT_GELU, ACT_GELU_TANH = XREC_ACT_GELU_TANH,
                 ACT_SILU = XREC_ACT_SILU };

// ----------------------------------------------------------------- embedding bags
// Row formats of a table (FBGEMM's row-wise layouts for the quantized ones):
//   ROW_F32: dim floats                          row_bytes = 4*dim
//   ROW_F16: dim halves                          row_bytes = 2*dim
//   ROW_I8:  dim uint8, then fp32 scale, fp32 bias   row_bytes = dim + 8
//   ROW_I4:  ceil(dim/2) bytes (low nibble first), then fp16 scale, fp16 bias
//   ROW_I2:  ceil(dim/4) bytes (low bits first), then fp16 scale, fp16 bias
//   ROW_BF16: dim bfloat16 (uint16 bit patterns)  row_bytes = 2*dim
// value = q * scale + bias for the quantized rows.
enum RowFormat : int { ROW_F32 = XREC_ROW_FP32, ROW_F16 = XREC_ROW_FP16, ROW_I8 = XREC_ROW_INT8,
                       ROW_I4 = XREC_ROW_INT4, ROW_I2 = XREC_ROW_INT2, ROW_BF16 = XREC_ROW_BF16 };
enum PoolMode : int { POOL_SUM = XREC_POOL_SUM, POOL_MEAN = XREC_POOL_MEAN, POOL_MAX = XREC_POOL_MAX };
static_assert(XREC_ROW_FORMAT_COUNT == 6, "a new row format in xrec/ir/formats.py needs a RowFormat entry "
              "here and a decode in embedding_bag.h");

struct BagFeature {
  const uint8_t* table;   // num_rows rows of row_bytes each
  int64_t num_rows;
  int dim;
  int row_bytes;
  RowFormat format;
  PoolMode mode;
  int64_t padding_idx;    // -1: none; ids equal to it are skipped (and not counted by mean)
  const void* indices;    // int32 or int64, per index_bits
  const void* offsets;    // int32 or int64, per offset_bits; batch+1 entries
  int index_bits;         // 32 or 64
  int offset_bits;        // 32 or 64
  const float* per_sample_weights;  // null or one weight per id (multiplies the row in every mode)
  int64_t num_indices = -1;  // length of indices; -1: unknown (then offsets are only checked
                             // for being >= 0 and non-decreasing)
  int prefetch_distance = -1;  // software prefetch of the row this many ids ahead; 0: off,
                               // -1: kernel default (16 for tables > 1 MB, else 0)
  const int32_t* remap = nullptr;  // pruned table: num_rows entries, id -> row of table or -1
                                   // (a zero row: skipped by sum, counted by mean, 0 for max);
                                   // null: unpruned. Ids are checked against num_rows (the
                                   // logical rows); the remap's values are trusted.
};

// Error report of a bag kernel: code 0 = ok; otherwise what and where.
enum BagError : int { BAG_OK = 0, BAG_INDEX_OUT_OF_RANGE = 1, BAG_OFFSETS_DECREASING = 2,
                      BAG_OFFSETS_OUT_OF_RANGE = 3 };
struct BagStatus {
  int code;
  int64_t position;      // position in indices (or offsets) of the first bad entry
  int64_t value;         // the bad id or offset
};

}  // namespace XREC_ISA_NS
}  // namespace xrec
