// Test driver (ctypes): exposes the dense-layer kernels of one ISA build.
#include "xrec_kernels.h"
using namespace xrec::XREC_ISA_NS;

extern "C" {
int t_n_block() { return linear_n_block(); }
size_t t_packed_floats(int N, int K) { return linear_packed_floats(N, K); }
void t_pack(const float* W, int N, int K, float* packed) { pack_linear(W, N, K, packed); }
void t_linear(const float* X, long M, int K, long ldx, const float* packed, int N,
              const float* bias, int act, float* Y, long ldy, int n0, int n1) {
  linear(X, M, K, ldx, packed, N, bias, (Act)act, Y, ldy, n0, n1);
}
}
