// Test driver (ctypes): exposes the dot-interaction kernel of one ISA build.
#include "xrec_kernels.h"
using namespace xrec::XREC_ISA_NS;

extern "C" {
void t_dot_interaction(const float* T, long ldt, int F, int D, const int* pi, const int* pj,
                       int P, float* out, long ldo, long b0, long b1) {
  dot_interaction(T, ldt, F, D, pi, pj, P, out, ldo, b0, b1);
}
}
