// xrec CPU kernels: the contract between the cpu code generator (targets/cpu)
// and the hand-written kernels (kernels/cpu). Header-only C++17.
//
// Every kernel is single-threaded over the range it is given; the generated
// model code decides how to split work across threads (OpenMP), so small
// batches pay no threading cost they do not need.
//
// The same source is compiled once per ISA path (AVX-512, AVX2+FMA, scalar):
// kernels pick their vector code with the compiler's predefined macros
// (__AVX512F__, __AVX2__/__FMA__), and the generated code wraps everything in
// a per-ISA namespace (XREC_ISA_NS) so the three builds link side by side.
//
// Contract changes made by the kernels (newest last; the codegen reads this):
//  1. Every declaration is `inline` (header-only; the definitions live in the
//     headers included at the bottom: simd.h, half.h, activations.h, gemm.h,
//     embedding_bag.h, interaction.h). Every helper is inside xrec::XREC_ISA_NS,
//     so the three ISA builds share no inline symbol (tests/kernels/test_isa_link.py).
//  2. BagFeature gains `int64_t num_indices = -1` (last member, so existing
//     aggregate/brace initialisation still compiles): the length of indices.
//     With it, check_bounds also rejects offsets > num_indices
//     (BAG_OFFSETS_OUT_OF_RANGE); offsets < 0 are always rejected. Pass it.
//  3. check_bounds validates the whole bag range (offsets first, then ids in
//     order) before reading any row: on error nothing is written to out and
//     *status names the first bad entry. status may be null.
//  4. per_sample_weights, when given, multiply each row in every mode (like the
//     IR interpreter); mean divides by the count of non-padding ids; max of a
//     bag with no non-padding id is 0 (like torch).
//  5. pack_linear layout: panels of linear_n_block() = 32 columns,
//     packed[(p*K + k)*32 + j] = W[32p + j, k], zero-padded (see gemm.h).
//     linear_packed_floats(N, K) = ceil(N/32)*32*K. Align packed to 64 bytes.
//  6. The quantized row layouts were checked against torch's
//     embedding_bag_byte_prepack / embedding_bag_4bit_prepack (FBGEMM): they
//     match the description below. torch packs 4-bit only for even dims; the
//     kernel also reads odd dims (last byte's high nibble unused).
//  7. BagFeature gains `int prefetch_distance = -1` (last member): software
//     prefetch of the row `prefetch_distance` ids ahead (0 off, -1 default:
//     16 for tables over 1 MB, else 0); the first ids of a range are
//     prefetched in one burst at the start.
//  8. New embedding_bags(): several features of a bag range into one concat
//     buffer (column offset per feature) in one call, validation of all
//     features first; reports the failing feature.
//  9. Allocation advice for the codegen (not an API): put tables over a few
//     MB in memory madvise(MADV_HUGEPAGE)'d (mmap'd 2 MB-aligned, madvise before
//     first touch, then fill): ~1.45x on multi-GB tables (TLB misses); align
//     packed weights and tables to 64 bytes.
// 10. Stack use (for thread stack sizes): dot_interaction keeps a packed sample
//     and its Gram matrix on the stack (96 KB); linear with n1 - n0 <= 2 copies
//     the weight column to the stack (64 KB); linear on AVX-512 with more than 12
//     rows and an input row stride within a few floats of a multiple of 1024 (4 KB
//     L1 aliasing) copies X blocks to the stack (97.5 KB); AVX2/scalar never do.
//     Nothing is heap-allocated.
// 11. Threading advice: split linear by rows when each thread gets >= 64 rows,
//     else by column blocks (multiples of linear_n_block()); a layer with
//     N <= 2 by rows. Split bags and interaction rows evenly.
// 12. BagFeature gains `const int32_t* remap = nullptr` (last member): pruned
//     tables (compiler/passes/prune_embeddings.py). num_rows is then the logical
//     row count (the remap's length), padding_idx a logical id; id -> remap[id],
//     -1 pools as a zero row (the IR interpreter's semantics, FBGEMM's
//     compressed_indices_mapping for sum). Every row format and pooling mode.
#pragma once
#include <cstddef>
#include <cstdint>

#ifndef XREC_ISA_NS
#define XREC_ISA_NS isa_default
#endif

namespace xrec {
namespace XREC_ISA_NS {

// ----------------------------------------------------------------- activations
enum Act : int { ACT_NONE = 0, ACT_RELU = 1, ACT_SIGMOID = 2, ACT_TANH = 3,
                 ACT_GELU = 4, ACT_GELU_TANH = 5, ACT_SILU = 6 };

// ----------------------------------------------------------------- dense layers
// A Linear layer's weight W is [N, K] row-major (PyTorch's layout). The kernel
// reads it in a packed layout made once, at compile time, by pack_linear.
// The packed layout does not depend on the ISA path (all paths read it).
inline size_t linear_packed_floats(int N, int K);
inline void pack_linear(const float* W, int N, int K, float* packed);

// Y[m, n] = act(sum_k X[m, k] * W[n, k] + bias[n]) for m in [0, M), n in [n0, n1).
// X has row stride ldx, Y row stride ldy (so Y may be a column slice of a wider
// buffer, e.g. the concat feeding the next layer). bias may be null.
// n0 and n1 are multiples of linear_n_block() (except n1 == N).
inline int linear_n_block();
inline void linear(const float* X, long M, int K, long ldx, const float* packed, int N,
            const float* bias, Act act, float* Y, long ldy, int n0, int n1);

// ----------------------------------------------------------------- embedding bags
// Row formats of a table (FBGEMM's row-wise layouts for the quantized ones):
//   ROW_F32: dim floats                          row_bytes = 4*dim
//   ROW_F16: dim halves                          row_bytes = 2*dim
//   ROW_I8:  dim uint8, then fp32 scale, fp32 bias   row_bytes = dim + 8
//   ROW_I4:  ceil(dim/2) bytes (low nibble first), then fp16 scale, fp16 bias
//   ROW_BF16: dim bfloat16 (uint16 bit patterns)  row_bytes = 2*dim
//   ROW_I2:  ceil(dim/4) bytes (low bits first), then fp16 scale, fp16 bias
// value = q * scale + bias for the quantized rows.
enum RowFormat : int { ROW_F32 = 0, ROW_F16 = 1, ROW_I8 = 2, ROW_I4 = 3, ROW_BF16 = 4, ROW_I2 = 5 };
enum PoolMode : int { POOL_SUM = 0, POOL_MEAN = 1, POOL_MAX = 2 };

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

// Pools bags [b0, b1) of one feature: out[b * ldo + j] for j in [0, dim).
// With check_bounds, ids outside [0, num_rows) and bad offsets stop the kernel
// before any out-of-bounds read and are reported in *status.
inline void embedding_bag(const BagFeature& f, long b0, long b1, float* out, long ldo,
                   bool check_bounds, BagStatus* status);

// Table-batched form: bags [b0, b1) of nf features written side by side into
// one concat buffer, feature k at columns [out_col[k], out_col[k] + dim_k):
// out[b * ldo + out_col[k] + j]. Same as calling embedding_bag per feature
// (feature-major), in one call. With check_bounds every feature is validated first;
// on error nothing is written, *status describes the problem and
// *bad_feature (if not null) is its feature index (else -1).
inline void embedding_bags(const BagFeature* fs, int nf, const long* out_col, long b0, long b1,
                           float* out, long ldo, bool check_bounds, BagStatus* status,
                           int* bad_feature);

// ----------------------------------------------------------------- interaction
// DLRM dot interaction for rows [b0, b1): T_b is F vectors of length D with
// vector stride D inside a sample and sample stride ldt. For each pair p,
// out[b * ldo + p] = <T_b[pi[p]], T_b[pj[p]]>.
inline void dot_interaction(const float* T, long ldt, int F, int D, const int* pi, const int* pj, int P,
                     float* out, long ldo, long b0, long b1);

}  // namespace XREC_ISA_NS
}  // namespace xrec

#include "simd.h"
#include "half.h"
#include "activations.h"
#include "gemm.h"
#include "embedding_bag.h"
#include "interaction.h"
