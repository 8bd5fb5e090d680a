// xrec_kernel_entry.cpp: see xrec_kernel_entry.h (compiled once per ISA, cached, linked into models).
#include "xrec_kernels.h"
#include "xrec_kernel_entry.h"

namespace xrec {
namespace XREC_ISA_NS {
namespace entry {

namespace k = ::xrec::XREC_ISA_NS;

size_t linear_packed_floats(int N, int K) { return k::linear_packed_floats(N, K); }

void pack_linear(const float* W, int N, int K, float* packed) { k::pack_linear(W, N, K, packed); }

int linear_n_block() { return k::linear_n_block(); }

void linear(const float* X, long M, int K, long ldx, const float* packed, int N, const float* bias, Act act,
            float* Y, long ldy, int n0, int n1) {
  k::linear(X, M, K, ldx, packed, N, bias, act, Y, ldy, n0, n1);
}

void embedding_bag(const BagFeature& f, long b0, long b1, float* out, long ldo, bool check_bounds,
                   BagStatus* status) {
  k::embedding_bag(f, b0, b1, out, ldo, check_bounds, status);
}

void dot_interaction(const float* T, long ldt, int F, int D, const int* pi, const int* pj, int P, float* out,
                     long ldo, long b0, long b1) {
  k::dot_interaction(T, ldt, F, D, pi, pj, P, out, ldo, b0, b1);
}

}  // namespace entry
}  // namespace XREC_ISA_NS
}  // namespace xrec
