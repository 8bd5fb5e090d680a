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
// 13. The types (Act, RowFormat, PoolMode, BagFeature, BagStatus) live in
//     xrec_kernel_types.h, which callers of the out-of-line entry points only
//     (xrec_kernel_entry.h: the generated model code) include instead of this
//     file. Their numeric codes come from xrec_formats.h (generated from
//     xrec/ir/formats.py): row formats are FBGEMM's SparseType codes, so
//     ROW_I2 = 4 and ROW_BF16 = 5 (they were 5 and 4).

#pragma once
#include <cstddef>
#include <cstdint>

#include "xrec_kernel_types.h"

namespace xrec {
namespace XREC_ISA_NS {

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
