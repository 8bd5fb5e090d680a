"""C launchers for the AOT-compiled kernels and the model-level C ABI (csrc/xrec_model.h).

``write_launcher`` generates ``src/xrec_model_cuda.c``:

* one ``launch_<kernel>_<key>`` function per compiled kernel (CUDA driver API,
  ``cuLaunchKernel`` with the exact parameter list Triton compiled);
* ``xrec_model_load/_ex/run/free``, ``xrec_last_error`` and the introspection
  functions of the CPU artifact's ABI (``include/xrec_model.h`` is the same
  header), running the program's launches in order on device pointers.

The driver is opened with ``dlopen("libcuda.so.1")`` at load time, so the
library builds (and ``xrec_model_load`` fails cleanly) on machines without
CUDA; ``gcc`` compiles it here against the ``cuda.h`` in Triton's wheel.
Models with torch steps (ops without a Triton kernel) get a library whose
``xrec_model_load`` explains that the C entry point cannot run them.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import sympy

from xrec.ir.types import canon_dim

from ..cstyle import cstr
from .aot import cuda_include, launch_keys
from .program import BLOB, CONST, ERRFLAG, INPUT, ITEMSIZE, PTRTABLE, TEMP, Launch, Program, TorchStep, View

_XREC_DTYPES = {"f32": "XREC_F32", "f16": "XREC_F16", "f64": "XREC_F64", "i32": "XREC_I32", "i64": "XREC_I64",
                "i8": "XREC_I8", "u8": "XREC_U8", "bool": "XREC_BOOL", "bf16": "XREC_BF16", "i16": "XREC_BF16"}
_C_INT = {"i64": "int64_t", "i32": "int32_t"}

# The C ABI's checks in the cpu target's words, so a caller of either library gets the same text: the
# dispatcher's (csrc/xrec_dispatch.cpp: NULL arrays and dims at the entry points) and the generated code's
# (kernels/cpu/xrec_gen.h: check_inputs, check_outputs, check_bag_ends, pool_feature), which
# xrec.runtime.validate also uses. tests/targets/triton/test_launcher_checks.py checks that each string below
# is in its source file as written there; change them there first.
DISPATCH_WORDS = {
    "run_model_null": "xrec_model_run: model is NULL",
    "run_inputs_null": "xrec_model_run: inputs is NULL",
    "run_outputs_null": "xrec_model_run: outputs is NULL",
    "shapes_model_null": "xrec_model_output_shapes: model is NULL",
    "shapes_inputs_null": "xrec_model_output_shapes: inputs is NULL",
    "shapes_dims_null": "xrec_model_output_shapes: dims is NULL (pass num_outputs * XREC_MAX_DIMS int64)",
    "shape_dims_null": "xrec_model_output_shape: dims is NULL (pass XREC_MAX_DIMS int64)",
    "shape_batch_negative": "xrec_model_output_shape: batch is negative (%lld)",
}
GEN_WORDS = {
    "n_inputs": "expected %d input tensors, got %d",
    "rank": "input '%s': rank %d, expected rank %d (%s)",
    "negative_dim": "input '%s': dim %d is negative (%lld); sizes must be >= 0 (%s)",
    "input_data_null": "input '%s': data is null",
    "n_outputs": "expected %d output tensors, got %d",
    "outputs_null": "outputs is NULL; pass an array of %d xrec_tensor",
    "output_bad": "output %d: wrong dtype, shape or null data (see xrec_model_output_shapes)",
    "offsets_start": "feature '%s': offsets must start at 0, got %lld",
    "offsets_end": "feature '%s': offsets end at %lld but indices holds %lld ids (offsets[-1] must equal len(indices))",
    "bad_id": "feature '%s': index %lld at position %lld is out of range for its table of %lld rows",
}
# xrec.runtime.validate.check_offset_ends's words where the cpu code has none (offsets with no entry at all)
VALIDATE_WORDS = {"offsets_empty": "feature '%s': offsets is empty; it needs batch+1 entries"}


def _fail(code: str, words: str, *args: str) -> str:
    """``return fail(code, "<words>", args...)``: one of the messages above as a C statement."""
    return f"return fail({code}, {cstr(words)}{''.join(', ' + a for a in args)});"


LIBRARY = "lib/libxrec_model_cuda.so"
SOURCE = "src/xrec_model_cuda.c"


def _csym(name: str) -> str:
    return "s_" + name


def cexpr(d) -> str:
    """A dim (int or sympy polynomial over B, N_...) as an int64 C expression."""
    d = canon_dim(d)
    if isinstance(d, int):
        return f"{d}LL"
    sub = {s: sympy.Symbol(_csym(s.name)) for s in d.free_symbols}
    return "((int64_t)(" + sympy.ccode(d.xreplace(sub)) + "))"


def _ccomment(s: str) -> str:
    return s.replace("/*", "/ *").replace("*/", "* /")


class _Gen:
    def __init__(self, prog: Program, kernels: list[dict], archs: list[int], graph):
        self.p = prog
        self.kernels = {k["key"]: k for k in kernels}
        self.archs = sorted(archs)
        self.graph = graph
        self.buf_index: dict[str, int] = {}
        kinds = {}
        for b in prog.buffers.values():
            lst = kinds.setdefault(b.kind, [])
            self.buf_index[b.name] = len(lst)
            lst.append(b)
        self.kinds = kinds
        # the sparse features (flat input positions of ids and offsets), as in the manifest's signature: the
        # host checks their offsets' ends before launching, like the Python runtime and the cpu code
        self.features = []
        if graph is not None:
            from xrec.artifact import signature_of
            self.features = [f for f in signature_of(graph)["features"]
                             if f["indices"] is not None and f["offsets"] is not None]
        self.out_bind: dict[str, int] = {}          # temp buffer name -> output index it is bound to
        for k, v in enumerate(prog.outputs):
            b = prog.buffers[v.buf]
            if b.kind == TEMP and v.offset == 0 and v.buf not in self.out_bind:
                self.out_bind[v.buf] = k

    # ---- pieces
    def base(self, v: View) -> str:
        b = self.p.buffers[v.buf]
        i = self.buf_index[v.buf]
        if b.kind == INPUT:
            return f"(CUdeviceptr)in[{b.index}].data"
        if b.kind == BLOB:
            return "m->weights"
        if b.kind == CONST:
            return f"m->consts[{i}]"
        if b.kind == PTRTABLE:
            return f"m->ptrtables[{i}]"
        if b.kind == ERRFLAG:
            return "m->err"
        if v.buf in self.out_bind:
            return f"(CUdeviceptr)out[{self.out_bind[v.buf]}].data"
        return f"m->temps[{i}]"

    def ptr(self, v: View) -> str:
        off = canon_dim(v.offset)
        if isinstance(off, int) and off == 0:
            return self.base(v)
        return f"({self.base(v)} + (CUdeviceptr)({cexpr(off)} * {ITEMSIZE[v.dtype]}))"

    def numel(self, shape) -> str:
        return " * ".join(cexpr(d) for d in shape) or "1LL"

    # ---- file
    def source(self) -> str:
        p = self.p
        torch_steps = [s for s in p.steps if isinstance(s, TorchStep)]
        out = [self.header(), self.driver(), self.tables(), self.launchers(), self.model_struct(),
               self.load_fn(torch_steps), self.run_fn(), self.introspection()]
        return "\n".join(out)

    def header(self) -> str:
        p = self.p
        lines = [f"/* xrec_model_cuda.c: the C ABI (include/xrec_model.h) of the triton artifact of {p.name!r}.",
                 " *",
                 " * Generated by xrec's triton target. Runs the model's Triton kernels, compiled ahead of time",
                 f" * to cubin for {', '.join(f'sm_{a}' for a in self.archs)} (lib/KERNEL.KEY.sm_N.cubin; PTX of sm_{self.archs[0]}"
                 " for newer GPUs), with the CUDA driver API.",
                 " *",
                 " * CUDA specifics of this ABI: xrec_tensor.data are CUDA device pointers or host memory",
                 " * (inputs and caller-allocated outputs; host tensors are copied through device buffers the",
                 " * model keeps, so a CPU program such as xrec-server needs no CUDA code); runs use the",
                 " * current thread's primary context of device 0 ($XREC_CUDA_DEVICE picks another) on the",
                 " * default stream, are serialized per model",
                 " * (a mutex), and return after the GPU finished. Indices/offsets must have the dtype",
                 " * the model was compiled for (no int32/int64 conversion on the device).",
                 " * xrec_load_options.isa: NULL/\"auto\", \"sm_80\", \"sm_90\", or \"ptx\" (JIT the PTX);",
                 " * threads is ignored; verify_weights checks the size of weights.bin only.",
                 " *",
                 " * Launch sequence:"]
        for k, s in enumerate(p.steps):
            lines.append(f" *   {k:3d}. {_ccomment(s.note)}")
        lines.append(" */")
        lines += ["#define _GNU_SOURCE", "#include <cuda.h>", "#include <dlfcn.h>", "#include <pthread.h>",
                  "#include <stdarg.h>", "#include <stdint.h>", "#include <stdio.h>", "#include <stdlib.h>",
                  "#include <string.h>", '#include "xrec_model.h"', ""]
        return "\n".join(lines)

    def driver(self) -> str:
        fns = [("cuInit", "CUresult", "unsigned int"), ("cuDeviceGet", "CUresult", "CUdevice*, int"),
               ("cuDeviceGetAttribute", "CUresult", "int*, CUdevice_attribute, CUdevice"),
               ("cuDevicePrimaryCtxRetain", "CUresult", "CUcontext*, CUdevice"),
               ("cuDevicePrimaryCtxRelease_v2", "CUresult", "CUdevice"),
               ("cuCtxPushCurrent_v2", "CUresult", "CUcontext"), ("cuCtxPopCurrent_v2", "CUresult", "CUcontext*"),
               ("cuCtxSynchronize", "CUresult", "void"),
               ("cuModuleLoadData", "CUresult", "CUmodule*, const void*"),
               ("cuModuleUnload", "CUresult", "CUmodule"),
               ("cuModuleGetFunction", "CUresult", "CUfunction*, CUmodule, const char*"),
               ("cuFuncSetAttribute", "CUresult", "CUfunction, CUfunction_attribute, int"),
               ("cuLaunchKernel", "CUresult", "CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned, "
                                              "unsigned, unsigned, CUstream, void**, void**"),
               ("cuMemAlloc_v2", "CUresult", "CUdeviceptr*, size_t"), ("cuMemFree_v2", "CUresult", "CUdeviceptr"),
               ("cuMemcpyHtoD_v2", "CUresult", "CUdeviceptr, const void*, size_t"),
               ("cuMemcpyDtoH_v2", "CUresult", "void*, CUdeviceptr, size_t"),
               ("cuMemcpyDtoD_v2", "CUresult", "CUdeviceptr, CUdeviceptr, size_t"),
               ("cuMemsetD32_v2", "CUresult", "CUdeviceptr, unsigned int, size_t"),
               ("cuPointerGetAttribute", "CUresult", "void*, CUpointer_attribute, CUdeviceptr"),
               ("cuGetErrorString", "CUresult", "CUresult, const char**")]
        L = ["#define XREC_UNUSED __attribute__((unused))",
             "/* ---- the CUDA driver, opened at run time (no link-time dependency on libcuda) */"]
        for name, ret, args in fns:
            L.append(f"typedef {ret} (*pfn_{name})({args});")
            L.append(f"static pfn_{name} d_{name};")
        L += ["static void* g_libcuda;", "XREC_UNUSED static pthread_once_t g_cuda_once = PTHREAD_ONCE_INIT;",
              "static char g_cuda_error[512];", "",
              "static void open_driver(void) {",
              '  g_libcuda = dlopen("libcuda.so.1", RTLD_NOW | RTLD_GLOBAL);',
              '  if (!g_libcuda) g_libcuda = dlopen("libcuda.so", RTLD_NOW | RTLD_GLOBAL);',
              "  if (!g_libcuda) {",
              '    snprintf(g_cuda_error, sizeof g_cuda_error, "cannot open the CUDA driver (libcuda.so.1): %s; '
              'this library needs an NVIDIA GPU and its driver", dlerror());',
              "    return;", "  }"]
        for name, _, _ in fns:
            L += [f'  d_{name} = (pfn_{name})dlsym(g_libcuda, "{name}");',
                  f"  if (!d_{name}) {{ snprintf(g_cuda_error, sizeof g_cuda_error, "
                  f'"the CUDA driver lacks {name} (too old?)"); g_libcuda = NULL; return; }}']
        L += ["}", "",
              "static _Thread_local char t_error[1024];",
              "static int fail(int code, const char* fmt, ...) {",
              "  va_list ap;", "  va_start(ap, fmt);", "  vsnprintf(t_error, sizeof t_error, fmt, ap);",
              "  va_end(ap);", "  return code;", "}",
              "const char* xrec_last_error(void) { return t_error; }",
              "static int cuda_fail(CUresult r, const char* what) {",
              "  const char* s = NULL;", "  if (d_cuGetErrorString) d_cuGetErrorString(r, &s);",
              '  return fail(XREC_ERR_RUNTIME, "%s failed: CUDA error %d (%s)", what, (int)r, s ? s : "?");', "}",
              '#define CU(call, what) do { CUresult r_ = (call); if (r_ != CUDA_SUCCESS) return cuda_fail(r_, what); '
              "} while (0)", ""]
        return "\n".join(L)

    def tables(self) -> str:
        L = ["/* ---- compile-time data: constant arrays the kernels read, compiled kernels per SM */"]
        for i, b in enumerate(self.kinds.get(CONST, [])):
            ct = _C_INT[b.dtype]  # noqa
            vals = ", ".join(f"{int(v)}" + ("LL" if b.dtype == "i64" else "") for v in b.data)
            L.append(f"XREC_UNUSED static const {ct} const_{i}[{len(b.data)}] = {{{vals}}};  /* {b.name} */")
        specs = list(self.kernels.values())
        self.spec_index = {k["key"]: i for i, k in enumerate(specs)}
        L.append(f"#define N_KERNELS {len(specs)}")
        L.append(f"#define N_ARCHS {len(self.archs)}")
        L.append("XREC_UNUSED static const int k_archs[N_ARCHS] = {" + ", ".join(str(a) for a in self.archs) + "};")
        L.append("/* per kernel: symbol, then per arch (ascending): cubin file, dynamic shared memory bytes */")
        L.append("XREC_UNUSED static const char* const k_symbol[N_KERNELS] = {"
                 + ", ".join(cstr(k["archs"][f"sm_{self.archs[0]}"]["symbol"]) for k in specs) + "};")
        L.append("XREC_UNUSED static const char* const k_cubin[N_KERNELS][N_ARCHS] = {"
                 + ", ".join("{" + ", ".join(cstr(k["archs"][f"sm_{a}"]["cubin"]) for a in self.archs) + "}"
                             for k in specs) + "};")
        L.append("XREC_UNUSED static const char* const k_ptx[N_KERNELS] = {"
                 + ", ".join(cstr(k["archs"][f"sm_{self.archs[0]}"].get("ptx", "")) for k in specs) + "};")
        L.append("XREC_UNUSED static const int k_shared[N_KERNELS][N_ARCHS] = {"
                 + ", ".join("{" + ", ".join(str(k["archs"][f"sm_{a}"]["shared_bytes"]) for a in self.archs) + "}"
                             for k in specs) + "};")
        L.append("")
        return "\n".join(L)

    def launchers(self) -> str:
        L = ["/* ---- one launcher per compiled kernel: cuLaunchKernel with the parameters Triton compiled",
             " *      (the non-constexpr arguments, then its global and profile scratch pointers, unused here) */",
             "struct xrec_model;",
             "static CUresult launch_kernel(struct xrec_model* m, int k, unsigned gx, unsigned gy, unsigned gz,"
             " int warps, void** params);", ""]
        for key, k in self.kernels.items():
            i = self.spec_index[key]
            cx = ", ".join(f"{n}={v}" for n, v in k["constexprs"].items())
            params = k["params"]
            decl = ", ".join(("CUdeviceptr " if k["signature"][n].startswith("*") else "int32_t ") + n
                             for n in params)
            res = "; ".join(f"{a}: {e['registers']} regs, {e['shared_bytes']} B shared, {e['local_bytes']} B local"
                            for a, e in k["archs"].items())
            L += [f"/* {k['kernel']} [{cx}], {k['num_warps']} warps, {k['num_stages']} stages",
                  f" * {res} */",
                  f"static CUresult launch_{k['kernel']}_{key}(struct xrec_model* m, unsigned gx, unsigned gy, "
                  f"unsigned gz, {decl}) {{",
                  "  CUdeviceptr global_scratch = 0, profile_scratch = 0;",
                  "  void* params[] = {" + ", ".join(f"&{n}" for n in params)
                  + ", &global_scratch, &profile_scratch};",
                  f"  return launch_kernel(m, {i}, gx, gy, gz, {k['num_warps']}, params);", "}", ""]
        return "\n".join(L)

    def model_struct(self) -> str:
        nt = max(1, len(self.kinds.get(TEMP, [])))
        nc = max(1, len(self.kinds.get(CONST, [])))
        npt = max(1, len(self.kinds.get(PTRTABLE, [])))
        blob = self.p.buffers.get("weights")
        L = ["/* ---- the loaded model */",
             "struct xrec_model {",
             "  CUdevice dev;", "  CUcontext ctx;", "  int pushed;", "  int arch;            /* index into k_archs, -1: PTX */",
             "  char isa[16];",
             "  CUmodule mods[N_KERNELS];", "  CUfunction fns[N_KERNELS];", "  int shared[N_KERNELS];",
             "  CUdeviceptr weights;",
             f"  CUdeviceptr consts[{nc}];", f"  CUdeviceptr ptrtables[{npt}];", "  CUdeviceptr err;",
             f"  CUdeviceptr temps[{nt}];", f"  size_t temp_bytes[{nt}];",
             f"  CUdeviceptr stage[{len(self.p.inputs) + len(self.p.outputs)}];  /* host tensors staged on the device */",
             f"  size_t stage_bytes[{len(self.p.inputs) + len(self.p.outputs)}];",
             "  pthread_mutex_t lock;", "};", "",
             f"#define WEIGHTS_BYTES {int(blob.shape[0]) if blob else 0}ULL",
             f"#define N_IN {len(self.p.inputs)}", f"#define N_OUT {len(self.p.outputs)}",
             f"#define XREC_MAX_SYMS {max(1, len(self.p.symbols))}",
             "static const int out_dtypes[] = {" + ", ".join(_XREC_DTYPES[v.dtype] for v in self.p.outputs) + "};",
             "static const int out_ndims[] = {" + ", ".join(str(v.rank) for v in self.p.outputs) + "};",
             "",
             "static CUresult launch_kernel(struct xrec_model* m, int k, unsigned gx, unsigned gy, unsigned gz,"
             " int warps, void** params) {",
             "  if (gx == 0 || gy == 0 || gz == 0) return CUDA_SUCCESS;",
             "  return d_cuLaunchKernel(m->fns[k], gx, gy, gz, warps * 32, 1, 1, m->shared[k], 0, params, NULL);",
             "}", "",
             "static int read_file(const char* dir, const char* rel, char** data, size_t* size, int text) {",
             "  char path[4096];", '  snprintf(path, sizeof path, "%s/%s", dir, rel);',
             '  FILE* f = fopen(path, "rb");',
             '  if (!f) return fail(XREC_ERR_ARTIFACT, "cannot open %s; the artifact is incomplete", path);',
             "  fseek(f, 0, SEEK_END);", "  long n = ftell(f);", "  fseek(f, 0, SEEK_SET);",
             "  *data = (char*)malloc((size_t)n + 1);",
             '  if (!*data) { fclose(f); return fail(XREC_ERR_RUNTIME, "out of memory reading %s", path); }',
             "  size_t got = fread(*data, 1, (size_t)n, f);", "  fclose(f);",
             '  if (got != (size_t)n) { free(*data); return fail(XREC_ERR_ARTIFACT, "cannot read %s", path); }',
             "  (*data)[n] = 0;", "  *size = (size_t)n + (text ? 1 : 0);", "  return XREC_OK;", "}", ""]
        return "\n".join(L)

    def load_fn(self, torch_steps) -> str:
        p = self.p
        L = ["void xrec_model_free(xrec_model* m) {",
             "  if (!m) return;",
             "  if (m->ctx) {",
             "    CUcontext prev;", "    d_cuCtxPushCurrent_v2(m->ctx);",
             "    for (int k = 0; k < N_KERNELS; ++k) if (m->mods[k]) d_cuModuleUnload(m->mods[k]);",
             "    if (m->weights) d_cuMemFree_v2(m->weights);",
             "    if (m->err) d_cuMemFree_v2(m->err);",
             f"    for (int i = 0; i < {max(1, len(self.kinds.get(CONST, [])))}; ++i) "
             "if (m->consts[i]) d_cuMemFree_v2(m->consts[i]);",
             f"    for (int i = 0; i < {max(1, len(self.kinds.get(PTRTABLE, [])))}; ++i) "
             "if (m->ptrtables[i]) d_cuMemFree_v2(m->ptrtables[i]);",
             f"    for (int i = 0; i < {max(1, len(self.kinds.get(TEMP, [])))}; ++i) "
             "if (m->temps[i]) d_cuMemFree_v2(m->temps[i]);",
             f"    for (int i = 0; i < {len(self.p.inputs) + len(self.p.outputs)}; ++i) "
             "if (m->stage[i]) d_cuMemFree_v2(m->stage[i]);",
             "    d_cuCtxPopCurrent_v2(&prev);", "    d_cuDevicePrimaryCtxRelease_v2(m->dev);", "  }",
             "  pthread_mutex_destroy(&m->lock);", "  free(m);", "}", "",
             "/* the context is current while this runs (xrec_model_load_ex pops it) */",
             "static int load_into(xrec_model* m, const char* dir, const xrec_load_options* o) {"]
        if torch_steps:
            ops = "; ".join(s.note for s in torch_steps)[:600]
            msg = (f"{p.name}: the C entry point cannot run this model: {len(torch_steps)} step(s) have no Triton "
                   f"kernel and run as torch ops in Python ({ops}); use the Python runtime")
            L += ["  (void)m; (void)dir; (void)o;", f"  return fail(XREC_ERR_ARTIFACT, \"%s\", {cstr(msg)});", "}", ""]
        else:
            L += self.load_body()
        L += ["xrec_model* xrec_model_load_ex(const char* artifact_dir, const xrec_load_options* options) {",
              "  xrec_model* m = (xrec_model*)calloc(1, sizeof(xrec_model));",
              '  if (!m) { fail(XREC_ERR_RUNTIME, "out of memory"); return NULL; }',
              "  pthread_mutex_init(&m->lock, NULL);",
              "  int rc = load_into(m, artifact_dir, options);",
              "  if (m->pushed) { CUcontext prev; d_cuCtxPopCurrent_v2(&prev); m->pushed = 0; }",
              "  if (rc != XREC_OK) {",
              "    char keep[sizeof t_error];", "    memcpy(keep, t_error, sizeof keep);",
              "    xrec_model_free(m);", "    memcpy(t_error, keep, sizeof keep);", "    return NULL;", "  }",
              "  t_error[0] = 0;", "  return m;", "}", "",
              "xrec_model* xrec_model_load(const char* artifact_dir) { return xrec_model_load_ex(artifact_dir, NULL); }",
              ""]
        return "\n".join(L)

    def load_body(self) -> list[str]:
        p = self.p
        L = ["  pthread_once(&g_cuda_once, open_driver);",
              '  if (!g_libcuda) return fail(XREC_ERR_RUNTIME, "%s", g_cuda_error);',
              '  CU(d_cuInit(0), "cuInit");',
              '  const char* dev_env = getenv("XREC_CUDA_DEVICE");',
              '  CU(d_cuDeviceGet(&m->dev, dev_env ? atoi(dev_env) : 0), "cuDeviceGet");',
              '  CU(d_cuDevicePrimaryCtxRetain(&m->ctx, m->dev), "cuDevicePrimaryCtxRetain");',
              '  CU(d_cuCtxPushCurrent_v2(m->ctx), "cuCtxPushCurrent");',
              "  m->pushed = 1;",
              "  int major = 0, minor = 0;",
              "  d_cuDeviceGetAttribute(&major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, m->dev);",
              "  d_cuDeviceGetAttribute(&minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, m->dev);",
              "  const int sm = major * 10 + minor;",
              '  const char* isa = o && o->isa && strcmp(o->isa, "auto") ? o->isa : NULL;',
              "  m->arch = -1;",
              "  if (isa) {",
              '    if (strcmp(isa, "ptx") != 0) {',
              "      for (int a = 0; a < N_ARCHS; ++a) {",
              "        char name[16];", '        snprintf(name, sizeof name, "sm_%d", k_archs[a]);',
              "        if (!strcmp(name, isa)) m->arch = a;", "      }",
              "      if (m->arch < 0)",
              '        return fail(XREC_ERR_ARTIFACT, "isa %s: this artifact has cubins for '
              + ", ".join(f"sm_{a}" for a in self.archs) + ' (or use \\"ptx\\")", isa);',
              "    }",
              "  } else {",
              "    /* a cubin runs on its own major version with an equal or newer minor one; sm_90 cubins are",
              "       sm_90a (Hopper only); other GPUs JIT the PTX */",
              "    for (int a = 0; a < N_ARCHS; ++a) {",
              "      const int c = k_archs[a];",
              "      if (c / 10 == major && c <= sm && (c != 90 || sm == 90)) m->arch = a;", "    }", "  }",
              '  if (m->arch >= 0) snprintf(m->isa, sizeof m->isa, "sm_%d", k_archs[m->arch]);',
              '  else snprintf(m->isa, sizeof m->isa, "ptx");',
              "  for (int k = 0; k < N_KERNELS; ++k) {",
              "    char* data = NULL; size_t size = 0;",
              "    const char* rel = m->arch >= 0 ? k_cubin[k][m->arch] : k_ptx[k];",
              "    int rc = read_file(dir, rel, &data, &size, m->arch < 0);",
              "    if (rc) return rc;",
              "    CUresult r = d_cuModuleLoadData(&m->mods[k], data);", "    free(data);",
              "    if (r != CUDA_SUCCESS) "
              'return cuda_fail(r, "cuModuleLoadData (a kernel of this artifact does not fit this GPU)");',
              '    CU(d_cuModuleGetFunction(&m->fns[k], m->mods[k], k_symbol[k]), "cuModuleGetFunction");',
              "    m->shared[k] = k_shared[k][m->arch >= 0 ? m->arch : 0];",
              "    if (m->shared[k] > 49152)",
              "      CU(d_cuFuncSetAttribute(m->fns[k], CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, m->shared[k]),",
              '         "cuFuncSetAttribute(shared memory)");', "  }",
              "  /* weights.bin: every parameter, one device allocation */",
              "  { char* w = NULL; size_t n = 0;",
              '    int rc = read_file(dir, "weights.bin", &w, &n, 0);',
              "    if (rc) return rc;",
              "    if (n > WEIGHTS_BYTES || n + 64 < WEIGHTS_BYTES) { free(w);",
              '      return fail(XREC_ERR_ARTIFACT, "%s/weights.bin holds %zu bytes, the model expects %llu", dir, n, '
              "WEIGHTS_BYTES); }",
              '    CU(d_cuMemAlloc_v2(&m->weights, WEIGHTS_BYTES ? WEIGHTS_BYTES : 64), "cuMemAlloc(weights)");',
              '    CUresult r = n ? d_cuMemcpyHtoD_v2(m->weights, w, n) : CUDA_SUCCESS;', "    free(w);",
              '    if (r != CUDA_SUCCESS) return cuda_fail(r, "cuMemcpyHtoD(weights)"); }']
        for i, b in enumerate(self.kinds.get(CONST, [])):
            nbytes = len(b.data) * ITEMSIZE[b.dtype]
            L += [f'  CU(d_cuMemAlloc_v2(&m->consts[{i}], {nbytes}), "cuMemAlloc(const)");',
                  f'  CU(d_cuMemcpyHtoD_v2(m->consts[{i}], const_{i}, {nbytes}), "cuMemcpyHtoD(const)");']
        for i, b in enumerate(self.kinds.get(PTRTABLE, [])):
            L.append(f'  CU(d_cuMemAlloc_v2(&m->ptrtables[{i}], {len(b.rows) * 4 * 8}), "cuMemAlloc(ptr table)");')
        if p.err_buffer:
            n = int(p.buffers[p.err_buffer].shape[0])
            L.append(f'  CU(d_cuMemAlloc_v2(&m->err, {n * 4}), "cuMemAlloc(error flags)");')
        L += ["  return XREC_OK;", "}", ""]
        return L

    def run_fn(self) -> str:
        p = self.p
        ins = [p.buffers[b] for _, b in p.inputs]
        L = ["static int ensure_temp(xrec_model* m, int i, int64_t bytes) {",
             "  if (bytes <= 0) bytes = 64;",
             "  if ((size_t)bytes <= m->temp_bytes[i]) return XREC_OK;",
             "  if (m->temps[i]) d_cuMemFree_v2(m->temps[i]);",
             "  m->temps[i] = 0; m->temp_bytes[i] = 0;",
             '  CU(d_cuMemAlloc_v2(&m->temps[i], (size_t)bytes), "cuMemAlloc(scratch)");',
             "  m->temp_bytes[i] = (size_t)bytes;", "  return XREC_OK;", "}", ""]
        shapes = [",".join(str(d).replace(" ", "") for d in b.shape) for b in ins]
        L += ["/* shapes: the checks of the cpu target's check_inputs (count, then per input its rank, no negative",
              "   dim, data unless empty; then dtypes), bind the symbols, then check every input dim against the",
              "   compiled signature */",
              "static int bind_inputs(const xrec_tensor* in, int n_in, int64_t* sym) {",
              f"  if (n_in != {len(ins)}) " + _fail("XREC_ERR_INPUT", GEN_WORDS["n_inputs"], str(len(ins)), "n_in")]
        for k, ((name, _), b) in enumerate(zip(p.inputs, ins)):
            rank = len(b.shape)
            L += [f"  if (in[{k}].ndim != {rank}) " + _fail("XREC_ERR_INPUT", GEN_WORDS["rank"], cstr(name),
                                                            f"in[{k}].ndim", str(rank), cstr(shapes[k])),
                  *([f"  for (int d = 0; d < {rank}; ++d)",
                     f"    if (in[{k}].shape[d] < 0) " + _fail("XREC_ERR_INPUT", GEN_WORDS["negative_dim"], cstr(name),
                                                              "d", f"(long long)in[{k}].shape[d]", cstr(shapes[k]))]
                    if rank else []),
                  f"  if (!in[{k}].data{f' && in[{k}].shape[0] != 0' if rank else ''}) "
                  + _fail("XREC_ERR_INPUT", GEN_WORDS["input_data_null"], cstr(name))]
        for k, ((name, _), b) in enumerate(zip(p.inputs, ins)):
            want = _XREC_DTYPES[b.dtype]
            L += [f"  if (in[{k}].dtype != {want}) return fail(XREC_ERR_INPUT, \"input {name}: dtype %d, this model "
                  f"was compiled for {b.dtype} (xrec_dtype {want})\", in[{k}].dtype);"]
        for f in self.features:
            if f["include_last_offset"]:    # B = len(offsets) - 1 must not be -1
                L.append(f"  if (in[{f['offsets']}].shape[0] == 0) "
                         + _fail("XREC_ERR_INPUT", VALIDATE_WORDS["offsets_empty"], cstr(f["feature"])))
        syms = list(p.symbols.items())
        for k, (s, (i, axis, delta)) in enumerate(syms):
            L.append(f"  const int64_t {_csym(s)} = in[{i}].shape[{axis}] - {delta}LL;  /* {s} */")
            L.append(f"  sym[{k}] = {_csym(s)};")
        for k, ((name, _), b) in enumerate(zip(p.inputs, ins)):
            for axis, d in enumerate(b.shape):
                what = f"{d}" if isinstance(d, int) else f"{str(d).replace(' ', '')} = %lld"
                val = "" if isinstance(d, int) else f"(long long){cexpr(d)}, "
                L.append(f"  if (in[{k}].shape[{axis}] != {cexpr(d)}) return fail(XREC_ERR_INPUT, \"input {name}: "
                         f"dim {axis} must be {what}, got %lld\", {val}(long long)in[{k}].shape[{axis}]);")
        L += ["  return XREC_OK;", "}", ""]
        sym_decl = "".join(f"  const int64_t {_csym(s)} = sym[{k}]; (void){_csym(s)};\n" for k, (s, _) in enumerate(syms))
        L += ["int xrec_model_output_shapes(const xrec_model* m, const xrec_tensor* in, int n_in, int64_t* dims) {",
              "  if (!m) " + _fail("XREC_ERR_RUNTIME", DISPATCH_WORDS["shapes_model_null"]),
              "  if (n_in > 0 && !in) " + _fail("XREC_ERR_INPUT", DISPATCH_WORDS["shapes_inputs_null"]),
              "  if (!dims) " + _fail("XREC_ERR_INPUT", DISPATCH_WORDS["shapes_dims_null"]),
              f"  int64_t sym[{max(1, len(syms))}] = {{0}};",
              "  int rc = bind_inputs(in, n_in, sym);", "  if (rc) return rc;", sym_decl.rstrip("\n")]
        for k, v in enumerate(p.outputs):
            for axis, d in enumerate(v.shape):
                L.append(f"  dims[{k} * XREC_MAX_DIMS + {axis}] = {cexpr(d)};")
        L += ["  return XREC_OK;", "}", ""]
        # run
        # outputs: the checks of the cpu target's check_outputs (count, the array, each output's dtype, rank,
        # dims and data), on the caller's tensors before anything is staged or launched
        L += ["static int check_outputs(const xrec_tensor* out, int n_out, const int64_t* sym) {",
              sym_decl.rstrip("\n"),
              "  if (n_out != N_OUT) " + _fail("XREC_ERR_INPUT", GEN_WORDS["n_outputs"], "N_OUT", "n_out"),
              "  if (N_OUT > 0 && !out) " + _fail("XREC_ERR_INPUT", GEN_WORDS["outputs_null"], "N_OUT")]
        for k, v in enumerate(p.outputs):
            L.append(f"  if (out[{k}].dtype != {_XREC_DTYPES[v.dtype]} || out[{k}].ndim != {v.rank}) return "
                     f"fail(XREC_ERR_INPUT, \"output {k}: must be {v.dtype} of rank {v.rank}\");")
            for axis, d in enumerate(v.shape):
                L.append(f"  if (out[{k}].shape[{axis}] != {cexpr(d)}) return fail(XREC_ERR_INPUT, \"output {k}: dim "
                         f"{axis} must be %lld (xrec_model_output_shapes), got %lld\", (long long){cexpr(d)}, "
                         f"(long long)out[{k}].shape[{axis}]);")
            L.append(f"  if (!out[{k}].data && {self.numel(v.shape)} != 0) "
                     + _fail("XREC_ERR_INPUT", GEN_WORDS["output_bad"], str(k)))
        L += ["  return XREC_OK;", "}", ""]
        # run (inputs and outputs checked, device pointers only)
        L += ["static int run_locked(xrec_model* m, const xrec_tensor* in, int n_in, xrec_tensor* out, int n_out) {",
              f"  int64_t sym[{max(1, len(syms))}] = {{0}};", "  (void)n_out;",
              "  int rc = bind_inputs(in, n_in, sym);", "  if (rc) return rc;", sym_decl.rstrip("\n")]
        for i, b in enumerate(self.kinds.get(TEMP, [])):
            if b.name in self.out_bind:
                continue
            L.append(f"  rc = ensure_temp(m, {i}, {self.numel(b.shape)} * {ITEMSIZE[b.dtype]});  /* {b.name} */")
            L.append("  if (rc) return rc;")
        for i, b in enumerate(self.kinds.get(PTRTABLE, [])):
            L.append(f"  {{ int64_t t[{len(b.rows) * 4}] = {{")
            for idx, off, psw, nnz in b.rows:
                L.append(f"      (int64_t)({self.ptr(idx)}), (int64_t)({self.ptr(off)}), "
                         f"{'(int64_t)(' + self.ptr(psw) + ')' if psw is not None else '0'}, {cexpr(nnz)},")
            L += ["    };", f'    CU(d_cuMemcpyHtoD_v2(m->ptrtables[{i}], t, sizeof t), "cuMemcpyHtoD(ptr table)"); }}']
        if p.err_buffer:
            n = int(p.buffers[p.err_buffer].shape[0])
            L.append(f'  CU(d_cuMemsetD32_v2(m->err, 0x7fffffffu, {n}), "cuMemsetD32(error flags)");')
        L.append("  CUresult r = CUDA_SUCCESS; (void)r;")
        for si, s in enumerate(p.steps):
            L += self.launch_code(si, s)
        for k, v in enumerate(p.outputs):
            if v.buf not in self.out_bind or self.out_bind[v.buf] != k:
                nbytes = f"{self.numel(v.shape)} * {ITEMSIZE[v.dtype]}"
                L.append(f'  CU(d_cuMemcpyDtoD_v2((CUdeviceptr)out[{k}].data, {self.ptr(v)}, (size_t)({nbytes})), '
                         '"cuMemcpyDtoD(output)");')
        L.append('  CU(d_cuCtxSynchronize(), "running the kernels");')
        if p.err_buffer:
            n = int(p.buffers[p.err_buffer].shape[0])
            L += [f"  int32_t err[{n}];",
                  '  CU(d_cuMemcpyDtoH_v2(err, m->err, sizeof err), "cuMemcpyDtoH(error flags)");']
            for e in p.errors:
                idx_dt = e.indices.dtype
                L += [f"  if (err[{2 * e.slot + 1}] != 0x7fffffff) return fail(XREC_ERR_INPUT, \"feature '{e.feature}':"
                      f" the offsets of bag %d are invalid (they must start at 0, never decrease, and end at "
                      f"len(indices))\", err[{2 * e.slot + 1}]);",
                      f"  if (err[{2 * e.slot}] != 0x7fffffff) {{",
                      f"    {_C_INT[idx_dt]} v = 0;",
                      f"    d_cuMemcpyDtoH_v2(&v, {self.ptr(e.indices)} + (CUdeviceptr)err[{2 * e.slot}] * "
                      f"{ITEMSIZE[idx_dt]}, sizeof v);",
                      "    " + _fail("XREC_ERR_INPUT", GEN_WORDS["bad_id"], cstr(e.feature), "(long long)v",
                                      f"(long long)err[{2 * e.slot}]", f"(long long){e.num_rows}"), "  }"]
        L += ["  return XREC_OK;", "}", "",
              "/* Host memory (pageable, or page-locked) is staged through device buffers the model keeps;",
              "   device pointers are used as they are. */",
              "static int on_host(const void* p) {",
              "  unsigned int type = 0;",
              "  if (!p) return 0;",
              "  if (d_cuPointerGetAttribute(&type, CU_POINTER_ATTRIBUTE_MEMORY_TYPE, (CUdeviceptr)(uintptr_t)p)"
              " != CUDA_SUCCESS) return 1;  /* unknown to CUDA: pageable host memory */",
              "  return type == CU_MEMORYTYPE_HOST;", "}",
              "static size_t dtype_bytes(int dt) {",
              "  switch (dt) { case XREC_F64: case XREC_I64: return 8; case XREC_F32: case XREC_I32: return 4;",
              "    case XREC_F16: case XREC_BF16: return 2; default: return 1; }", "}",
              "static int stage_buffer(xrec_model* m, int slot, size_t bytes) {",
              "  if (bytes == 0) bytes = 64;",
              "  if (bytes <= m->stage_bytes[slot]) return XREC_OK;",
              "  if (m->stage[slot]) d_cuMemFree_v2(m->stage[slot]);",
              "  m->stage[slot] = 0; m->stage_bytes[slot] = 0;",
              '  CU(d_cuMemAlloc_v2(&m->stage[slot], bytes), "cuMemAlloc(staging a host tensor)");',
              "  m->stage_bytes[slot] = bytes;", "  return XREC_OK;", "}",
              *self.offset_ends_fn(),
              "static int run_staged(xrec_model* m, const xrec_tensor* in, int n_in, xrec_tensor* out, int n_out) {",
              "  int64_t sym[XREC_MAX_SYMS] = {0};",
              "  int rc = bind_inputs(in, n_in, sym);", "  if (rc) return rc;",
              "  rc = check_outputs(out, n_out, sym);", "  if (rc) return rc;",
              *(["  rc = check_offset_ends(in);", "  if (rc) return rc;"] if self.checks_offsets else []),
              "  xrec_tensor din[N_IN], dout[N_OUT];", "  int host_out[N_OUT];",
              "  int64_t dims[N_OUT * XREC_MAX_DIMS];",
              "  rc = xrec_model_output_shapes(m, in, n_in, dims);", "  if (rc) return rc;",
              "  for (int i = 0; i < N_IN; ++i) {",
              "    din[i] = in[i];",
              "    if (!on_host(in[i].data)) continue;",
              "    size_t bytes = dtype_bytes(in[i].dtype);",
              "    for (int d = 0; d < in[i].ndim; ++d) bytes *= (size_t)in[i].shape[d];",
              "    rc = stage_buffer(m, i, bytes);", "    if (rc) return rc;",
              '    if (bytes) CU(d_cuMemcpyHtoD_v2(m->stage[i], in[i].data, bytes), "cuMemcpyHtoD(input)");',
              "    din[i].data = (void*)(uintptr_t)m->stage[i];", "  }",
              "  size_t out_bytes[N_OUT];",
              "  for (int k = 0; k < N_OUT; ++k) {",
              "    dout[k] = out[k];", "    host_out[k] = on_host(out[k].data);", "    out_bytes[k] = 0;",
              "    if (!host_out[k] || out[k].dtype != out_dtypes[k] || out[k].ndim != out_ndims[k]) continue;",
              "    size_t bytes = dtype_bytes(out[k].dtype);",
              "    for (int d = 0; d < out[k].ndim; ++d) bytes *= (size_t)dims[k * XREC_MAX_DIMS + d];",
              "    rc = stage_buffer(m, N_IN + k, bytes);", "    if (rc) return rc;",
              "    dout[k].data = (void*)(uintptr_t)m->stage[N_IN + k];", "    out_bytes[k] = bytes;", "  }",
              "  rc = run_locked(m, din, n_in, dout, n_out);", "  if (rc) return rc;",
              "  for (int k = 0; k < N_OUT; ++k)",
              "    if (host_out[k] && out_bytes[k])",
              '      CU(d_cuMemcpyDtoH_v2(out[k].data, m->stage[N_IN + k], out_bytes[k]), "cuMemcpyDtoH(output)");',
              "  return XREC_OK;", "}", "",
              "int xrec_model_run(xrec_model* m, const xrec_tensor* inputs, int n_inputs, xrec_tensor* outputs,"
              " int n_outputs) {",
              "  if (!m) " + _fail("XREC_ERR_RUNTIME", DISPATCH_WORDS["run_model_null"]),
              "  if (n_inputs > 0 && !inputs) " + _fail("XREC_ERR_INPUT", DISPATCH_WORDS["run_inputs_null"]),
              "  if (n_outputs > 0 && !outputs) " + _fail("XREC_ERR_INPUT", DISPATCH_WORDS["run_outputs_null"]),
              "  pthread_mutex_lock(&m->lock);",
              '  CUresult r = d_cuCtxPushCurrent_v2(m->ctx);',
              '  if (r != CUDA_SUCCESS) { pthread_mutex_unlock(&m->lock); return cuda_fail(r, "cuCtxPushCurrent"); }',
              "  int rc = run_staged(m, inputs, n_inputs, outputs, n_outputs);",
              "  CUcontext prev;", "  d_cuCtxPopCurrent_v2(&prev);",
              "  pthread_mutex_unlock(&m->lock);", "  if (rc == XREC_OK) t_error[0] = 0;", "  return rc;", "}", ""]
        return "\n".join(L)

    @property
    def checks_offsets(self) -> bool:
        """Offsets' ends are checked when the kernels check ids (bounds_check), as in the Python runtime."""
        return bool(self.p.err_buffer) and bool(self.features)

    def offset_ends_fn(self) -> list[str]:
        """check_offset_ends(in): offsets[0] == 0 and, with include_last_offset, offsets[-1] == len(indices), in
        the cpu code's words (check_bag_ends); host memory is read as it is, device memory copied (one entry)."""
        if not self.checks_offsets:
            return []
        L = ["/* an entry of an offsets tensor, from host memory or copied from the device */",
             "static int offsets_entry(const xrec_tensor* t, int64_t i, int wide, int64_t* v) {",
             "  union { int32_t i32; int64_t i64; } u;", "  const size_t w = wide ? 8 : 4;",
             "  if (on_host(t->data)) memcpy(&u, (const char*)t->data + (size_t)i * w, w);",
             "  else CU(d_cuMemcpyDtoH_v2(&u, (CUdeviceptr)(uintptr_t)t->data + (CUdeviceptr)((size_t)i * w), w),",
             '          "cuMemcpyDtoH(offsets)");',
             "  *v = wide ? u.i64 : (int64_t)u.i32;", "  return XREC_OK;", "}",
             "/* the offsets' ends of every sparse feature: the kernels see each bag's own bounds only, so offsets",
             "   ending early would silently drop the last ids */",
             "static int check_offset_ends(const xrec_tensor* in) {",
             "  int64_t first = 0, last = 0;", "  int rc = XREC_OK;", "  (void)last;"]
        for f in self.features:
            i_idx, i_off = f["indices"], f["offsets"]
            wide = int(self.p.buffers[self.p.inputs[i_off][1]].dtype == "i64")
            name = cstr(f["feature"])
            L += [f"  if (in[{i_off}].shape[0] > 0) {{  /* {_ccomment(f['feature'])} */",
                  f"    rc = offsets_entry(&in[{i_off}], 0, {wide}, &first);", "    if (rc) return rc;",
                  "    if (first != 0) " + _fail("XREC_ERR_INPUT", GEN_WORDS["offsets_start"], name,
                                               "(long long)first")]
            if f["include_last_offset"]:
                L += [f"    rc = offsets_entry(&in[{i_off}], in[{i_off}].shape[0] - 1, {wide}, &last);",
                      "    if (rc) return rc;",
                      f"    if (last != in[{i_idx}].shape[0]) "
                      + _fail("XREC_ERR_INPUT", GEN_WORDS["offsets_end"], name, "(long long)last",
                              f"(long long)in[{i_idx}].shape[0]")]
            L.append("  }")
        L += ["  return XREC_OK;", "}", ""]
        return L

    def launch_code(self, si: int, s) -> list[str]:
        if not isinstance(s, Launch):
            return [f"  /* step {si}: {_ccomment(s.note)}: not available in C (load refuses this model) */"]
        keys = launch_keys(s)
        L = [f"  /* step {si}: {_ccomment(s.note)} */", "  {"]
        L.append(f"    const int64_t batch = {cexpr(s.batch)}; (void)batch;")
        for a in s.args:
            if a.kind == "ptr":
                L.append(f"    CUdeviceptr {a.name} = {self.ptr(a.view)};")
            else:
                L.append(f"    int32_t {a.name} = (int32_t){cexpr(a.expr)};")
        names = ", ".join(a.name for a in s.args)
        for j, (v, key) in enumerate(zip(s.variants, keys)):
            grid = ", ".join(f"(unsigned)(({cexpr(e)} + {blk - 1}) / {blk})" for e, blk in v.grid)
            cond = "if" if j == 0 else "else if"
            if v.max_batch is None:
                head = "    else" if j else "    "
                head = head + " {" if j else "    {"
            else:
                head = f"    {cond} (batch <= {v.max_batch}) {{"
            L += [head, f"      r = launch_{s.kernel}_{key}(m, {grid}, {names});", "    }"]
        L += [f'    if (r != CUDA_SUCCESS) return cuda_fail(r, "launching step {si} ({s.kernel})");', "  }"]
        return L

    def introspection(self) -> str:
        p = self.p
        names = [n for n, _ in p.inputs]
        kinds = [self.graph.node(b).attr("kind") if self.graph is not None else "" for _, b in p.inputs]
        ins = [p.buffers[b] for _, b in p.inputs]
        shapes = [",".join(str(d).replace(" ", "") for d in b.shape) for b in ins]
        L = ["/* ---- introspection */",
             f"int xrec_model_num_inputs(const xrec_model* m) {{ (void)m; return {len(ins)}; }}",
             "static const char* const in_names[] = {" + ", ".join(cstr(n) for n in names) + "};",
             "static const char* const in_kinds[] = {" + ", ".join(cstr(str(k)) for k in kinds) + "};",
             "static const char* const in_shapes[] = {" + ", ".join(cstr(s) for s in shapes) + "};",
             "static const int in_dtypes[] = {" + ", ".join(_XREC_DTYPES[b.dtype] for b in ins) + "};",
             "static const int in_ndims[] = {" + ", ".join(str(len(b.shape)) for b in ins) + "};",
             'const char* xrec_model_input_name(const xrec_model* m, int i) { (void)m; return i >= 0 && i < N_IN ? '
             'in_names[i] : NULL; }',
             'const char* xrec_model_input_kind(const xrec_model* m, int i) { (void)m; return i >= 0 && i < N_IN ? '
             'in_kinds[i] : NULL; }',
             "int xrec_model_input_dtype(const xrec_model* m, int i) { (void)m; return i >= 0 && i < N_IN ? "
             "in_dtypes[i] : -1; }",
             "int xrec_model_input_ndim(const xrec_model* m, int i) { (void)m; return i >= 0 && i < N_IN ? "
             "in_ndims[i] : -1; }",
             'const char* xrec_model_input_shape(const xrec_model* m, int i) { (void)m; return i >= 0 && i < N_IN ? '
             'in_shapes[i] : NULL; }',
             "int xrec_model_num_outputs(const xrec_model* m) { (void)m; return N_OUT; }",
             "int xrec_model_output_dtype(const xrec_model* m, int k) { (void)m; return k >= 0 && k < N_OUT ? "
             "out_dtypes[k] : -1; }",
             "int xrec_model_output_ndim(const xrec_model* m, int k) { (void)m; return k >= 0 && k < N_OUT ? "
             "out_ndims[k] : -1; }",
             "int xrec_model_output_shape(const xrec_model* m, int k, int64_t batch, int64_t* dims) {",
             "  (void)m;",
             "  if (!dims) " + _fail("XREC_ERR_INPUT", DISPATCH_WORDS["shape_dims_null"]),
             "  if (batch < 0) " + _fail("XREC_ERR_INPUT", DISPATCH_WORDS["shape_batch_negative"], "(long long)batch"),
             '  if (k < 0 || k >= N_OUT) return fail(XREC_ERR_INPUT, "no output %d", k);']
        for k, v in enumerate(p.outputs):
            free = set().union(*[canon_dim(d).free_symbols if not isinstance(canon_dim(d), int) else set()
                                 for d in v.shape])
            if free - {sympy.Symbol("B", integer=True, positive=True)}:
                L.append(f'  if (k == {k}) return fail(XREC_ERR_INPUT, "output {k} depends on more than the batch; '
                         'use xrec_model_output_shapes");')
                continue
            dims = "; ".join(f"dims[{a}] = {cexpr(d).replace('s_B', 'batch')}" for a, d in enumerate(v.shape))
            L.append(f"  if (k == {k}) {{ {dims}; return XREC_OK; }}")
        L += ['  return XREC_OK;', "}",
              "const char* xrec_model_isa(const xrec_model* m) { return m ? m->isa : NULL; }",
              f"const char* xrec_model_name(const xrec_model* m) {{ (void)m; return {cstr(p.name)}; }}", ""]
        return "\n".join(L)


def abi_header() -> Path:
    """The CPU artifact's C ABI header (csrc/xrec_model.h), which this launcher implements."""
    import xrec
    here = Path(xrec.__file__).resolve().parent.parent
    for p in (here / "csrc" / "xrec_model.h",):
        if p.is_file():
            return p
    try:
        import xrec._csrc as c
        p = Path(c.__file__).parent / "xrec_model.h"
        if p.is_file():
            return p
    except ImportError:
        pass
    raise FileNotFoundError("csrc/xrec_model.h (the C ABI header) is not part of this xrec installation")


def generate(prog: Program, kernels: list[dict], archs: list[int], graph=None) -> str:
    return _Gen(prog, kernels, archs, graph).source()


def compile_library(artifact_dir: Path, cc: str = "gcc") -> tuple[bool, str]:
    """Build lib/libxrec_model_cuda.so from the generated C with the wheel's cuda.h (no GPU needed)."""
    artifact_dir = Path(artifact_dir)
    cmd = [cc, "-std=gnu11", "-O2", "-fPIC", "-shared", "-Wall", "-Werror", "-Wno-unused-function",
           "-I", str(artifact_dir / "include"), "-I", str(cuda_include()),
           str(artifact_dir / SOURCE), "-o", str(artifact_dir / LIBRARY), "-ldl", "-lpthread"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    return r.returncode == 0, (r.stderr or r.stdout)[-4000:]


def write_launcher(artifact_dir: Path, prog: Program, kernels: list[dict], archs: list[int], graph=None) -> dict:
    """Write the C source and header into the artifact, compile it, and describe it for the manifest."""
    artifact_dir = Path(artifact_dir)
    (artifact_dir / SOURCE).write_text(generate(prog, kernels, archs, graph))
    shutil.copyfile(abi_header(), artifact_dir / "include" / "xrec_model.h")
    ok, log = compile_library(artifact_dir)
    if not ok:
        raise RuntimeError(f"the generated C launcher does not compile:\n{log}")
    torch_steps = [s.note for s in prog.torch_steps()]
    return {"source": SOURCE, "header": "include/xrec_model.h", "library": LIBRARY,
            "runs_in_c": not torch_steps, "why_not": "; ".join(torch_steps),
            "link": "dlopen()s libcuda.so.1 at xrec_model_load; build again with "
                    f"`gcc -shared -fPIC -I include -I <cuda include> {SOURCE} -o {LIBRARY} -ldl -lpthread`"}
