/* xrec_model.h: the C ABI of a compiled xrec cpu artifact (NAME.xrec/).
 *
 * Link against NAME.xrec/lib/libxrec_model.so (or dlopen it; csrc/xrec_runtime.h
 * does that for C++ programs). Loading picks the best ISA build in lib/ that this
 * CPU supports (AVX-512, AVX2+FMA, scalar); XREC_CPU_ISA=avx2|scalar|... forces one.
 *
 *   xrec_model* m = xrec_model_load("dlrm.xrec");
 *   if (!m) { fprintf(stderr, "%s\n", xrec_last_error()); ... }
 *   xrec_tensor in[N_IN], out[1];     // flat inputs in manifest signature order
 *   ...fill data/dtype/ndim/shape...
 *   if (xrec_model_run(m, in, N_IN, out, 1) != XREC_OK) { ... xrec_last_error() ... }
 *   xrec_model_free(m);
 *
 * Inputs are the model's flat tensors in signature order (for the zoo models:
 * dense float32 [B,13], then per sparse feature its indices, then per feature its
 * offsets [B+1]); indices and offsets may be int32 or int64. Every tensor is
 * dense row-major (C-contiguous). Outputs are written into caller-owned buffers
 * whose shapes xrec_model_output_shapes() gives for the inputs.
 *
 * Thread safety: one loaded model may be run from many threads at once; each
 * call uses its own scratch memory. xrec_last_error() is per thread.
 */
#ifndef XREC_MODEL_H
#define XREC_MODEL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define XREC_ABI_VERSION 1
#define XREC_MAX_DIMS 8

/* element types (xrec_tensor.dtype) */
enum xrec_dtype {
  XREC_F32 = 0, XREC_F16 = 1, XREC_F64 = 2, XREC_I32 = 3, XREC_I64 = 4,
  XREC_I8 = 5, XREC_U8 = 6, XREC_BOOL = 7, XREC_BF16 = 8
};

/* return codes */
enum xrec_status {
  XREC_OK = 0,
  XREC_ERR_INPUT = 1,     /* the inputs do not fit the model (shape, dtype, index out of range, bad offsets) */
  XREC_ERR_ARTIFACT = 2,  /* corrupt, mismatched or unsupported artifact */
  XREC_ERR_RUNTIME = 3    /* anything else (out of memory, ...) */
};

typedef struct xrec_tensor {
  void* data;                     /* dense row-major data */
  int32_t dtype;                  /* enum xrec_dtype */
  int32_t ndim;
  int64_t shape[XREC_MAX_DIMS];
} xrec_tensor;

typedef struct xrec_model xrec_model;

typedef struct xrec_load_options {
  const char* isa;        /* NULL or "auto": best supported (or $XREC_CPU_ISA); else avx512 | avx2 | scalar */
  int threads;            /* 0: $XREC_THREADS or all cores */
  int verify_weights;     /* 1: checksum weights.bin against the manifest (reads the whole file); 0: size only */
  int lazy_weights;       /* 0: prefault the whole weights.bin mapping at load (no page faults while
                             serving); 1: map pages on first use (faster load, slower first calls) */
  int huge_pages;         /* 0 (auto): weights.bin of 64 MiB or more is read into anonymous memory
                             advised as transparent huge pages (madvise; fewer TLB misses on random
                             rows) when the kernel allows it, else mapped from the file; 1: always
                             huge pages (where allowed); -1: never (map the file) */
} xrec_load_options;

/* Load an artifact directory. NULL on failure: xrec_last_error() says why. */
xrec_model* xrec_model_load(const char* artifact_dir);
xrec_model* xrec_model_load_ex(const char* artifact_dir, const xrec_load_options* options);
void xrec_model_free(xrec_model* model);

/* Run on flat inputs; writes the outputs. Returns XREC_OK or an error code: XREC_ERR_INPUT (with
   xrec_last_error() saying what) for NULL inputs/outputs arrays, negative dims, and inputs that do not fit. */
int xrec_model_run(xrec_model* model, const xrec_tensor* inputs, int n_inputs,
                   xrec_tensor* outputs, int n_outputs);

/* The last error message of this thread ("" if none). */
const char* xrec_last_error(void);

/* ---- introspection ---- */
int xrec_model_num_inputs(const xrec_model* model);
const char* xrec_model_input_name(const xrec_model* model, int i);   /* e.g. "indices[3]" */
const char* xrec_model_input_kind(const xrec_model* model, int i);   /* dense | indices | offsets | ... */
int xrec_model_input_dtype(const xrec_model* model, int i);          /* compiled dtype (ids: I32 or I64 both accepted) */
int xrec_model_input_ndim(const xrec_model* model, int i);
const char* xrec_model_input_shape(const xrec_model* model, int i);  /* symbolic, e.g. "B,13" or "B+1" */
int xrec_model_num_outputs(const xrec_model* model);
int xrec_model_output_dtype(const xrec_model* model, int k);
int xrec_model_output_ndim(const xrec_model* model, int k);
/* Output shapes for these inputs: dims[k * XREC_MAX_DIMS + d]. Returns XREC_OK or an error code. */
int xrec_model_output_shapes(const xrec_model* model, const xrec_tensor* inputs, int n_inputs, int64_t* dims);
/* Output k's shape for a batch of `batch` rows, when it depends on the batch only. */
int xrec_model_output_shape(const xrec_model* model, int k, int64_t batch, int64_t* dims);
const char* xrec_model_isa(const xrec_model* model);     /* the ISA build that was loaded */
/* How weights.bin is held: "file" (shared file mapping) or "hugepages" (anonymous memory
   advised as transparent huge pages). */
const char* xrec_model_weights_memory(const xrec_model* model);
const char* xrec_model_name(const xrec_model* model);

#ifdef __cplusplus
}
#endif
#endif /* XREC_MODEL_H */
