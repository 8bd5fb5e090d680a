/* xrec_impl.h: what one ISA build of a model (lib/xrec_model_<isa>.so) exports to
 * the dispatcher (lib/libxrec_model.so, csrc/xrec_dispatch.cpp).
 *
 * An ISA library holds the generated model code compiled with -march for that
 * ISA. It is only dlopen'ed after the dispatcher checked that the CPU supports
 * the ISA, and it has no static initialisers, so nothing it contains runs
 * before that check. Everything crosses this boundary as plain C.
 */
#ifndef XREC_IMPL_H
#define XREC_IMPL_H

#include "xrec_model.h"

#ifdef __cplusplus
extern "C" {
#endif

#define XREC_IMPL_VERSION 1

typedef struct xrec_impl {
  int impl_version;               /* XREC_IMPL_VERSION */
  const char* isa;                /* avx512 | avx2 | scalar */
  const char* fingerprint;        /* hash of the generated sources; must match the manifest */
  const char* model_name;

  int n_weights;                  /* weight slots, each a named entry of weights.bin */
  const char* const* weight_names;
  int64_t (*weight_nbytes)(int slot);   /* the size the code expects (packed sizes included) */

  int n_inputs;
  const char* const* input_names;
  const char* const* input_kinds;
  const int* input_dtypes;
  const int* input_ndims;
  const char* const* input_shapes;
  int n_outputs;
  const int* output_dtypes;
  const int* output_ndims;

  /* weights[slot] points at the slot's bytes (64-byte aligned, read-only, alive until destroy). */
  void* (*create)(const void* const* weights, int threads, char* err, size_t err_len);
  void (*destroy)(void* state);
  int (*output_shapes)(const xrec_tensor* inputs, int n_inputs, int64_t* dims, char* err, size_t err_len);
  int (*output_shape_for_batch)(int k, int64_t batch, int64_t* dims, char* err, size_t err_len);
  int (*run)(void* state, const xrec_tensor* inputs, int n_inputs, xrec_tensor* outputs, int n_outputs,
             char* err, size_t err_len);
} xrec_impl;

/* The one symbol an ISA library exports for the dispatcher. */
const xrec_impl* xrec_impl_get(void);

/* Compile-time weight packing (called by the compiler through ctypes). */
size_t xrec_impl_linear_packed_floats(int N, int K);
void xrec_impl_pack_linear(const float* W, int N, int K, float* packed);

#ifdef __cplusplus
}
#endif
#endif /* XREC_IMPL_H */
