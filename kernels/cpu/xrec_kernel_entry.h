// xrec_kernel_entry.h: out-of-line entry points to the kernels of xrec_kernels.h (needs only their types).
//
// xrec_kernel_entry.cpp defines them by calling the (inline, header-only) kernels; it
// is compiled once per ISA and kernel version and cached, then linked into every
// model's library. The generated model code calls these, so it does not compile
// the kernels again and a model builds in seconds. Same signatures as the contract.
#pragma once
#include <cstddef>

#include "xrec_kernel_types.h"

namespace xrec {
namespace XREC_ISA_NS {
namespace entry {

size_t linear_packed_floats(int N, int K);
void pack_linear(const float* W, int N, int K, float* packed);
int linear_n_block();
void linear(const float* X, long M, int K, long ldx, const float* packed, int N, const float* bias, Act act,
            float* Y, long ldy, int n0, int n1);
void embedding_bag(const BagFeature& f, long b0, long b1, float* out, long ldo, bool check_bounds,
                   BagStatus* status);
void dot_interaction(const float* T, long ldt, int F, int D, const int* pi, const int* pj, int P, float* out,
                     long ldo, long b0, long b1);

}  // namespace entry
}  // namespace XREC_ISA_NS
}  // namespace xrec
