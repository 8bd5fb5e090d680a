/* fake_cuda.c: a stand-in for libcuda.so.1, so the triton target's generated C launcher can run
 * on a machine without a GPU (tests only).
 *
 * "Device" memory is host memory; modules are remembered; cuLaunchKernel runs nothing and writes
 * one line per launch to $FAKE_CUDA_LOG:  L <symbol> <gx> <gy> <gz> <threads> <shared> <arg>...
 * decoding the arguments with $FAKE_CUDA_SIGS ("symbol:ppii;...": p = 8-byte pointer, i = int32).
 * Module loads log "M ELF" (a cubin) or "M PTX". $FAKE_CUDA_SM is the compute capability
 * (default 90). $FAKE_CUDA_POKE="symbol:arg:value" makes that kernel store int32 `value` at
 * the address passed as argument `arg` (to play a kernel that reports a bad id).
 * cuPointerGetAttribute(MEMORY_TYPE) calls every pointer device memory, unless
 * $FAKE_CUDA_TRACK_HOST is set: then only cuMemAlloc'ed blocks are device memory, anything else
 * is host memory unknown to CUDA (as pageable memory is), and copies log "H <bytes>" (to the
 * device) and "D <bytes>" (to the host).
 *
 * Built with -Wl,-soname,libcuda.so.1 and loaded first (RTLD_GLOBAL), a later
 * dlopen("libcuda.so.1") finds it.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef int CUresult;
typedef int CUdevice;
typedef unsigned long long CUdeviceptr;
typedef void* CUcontext;
typedef void* CUmodule;
typedef void* CUfunction;
typedef void* CUstream;

static int g_ctx_token;

static void logf_line(const char* line) {
  const char* path = getenv("FAKE_CUDA_LOG");
  if (!path) return;
  FILE* f = fopen(path, "a");
  if (!f) return;
  fputs(line, f);
  fputc('\n', f);
  fclose(f);
}

CUresult cuInit(unsigned int flags) { (void)flags; return 0; }
CUresult cuDeviceGet(CUdevice* d, int ordinal) { *d = ordinal; return 0; }
CUresult cuDeviceGetAttribute(int* v, int attr, CUdevice d) {
  (void)d;
  const char* sm = getenv("FAKE_CUDA_SM");
  int cc = sm ? atoi(sm) : 90;
  if (attr == 75) *v = cc / 10;        /* CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR */
  else if (attr == 76) *v = cc % 10;   /* ..._MINOR */
  else *v = 0;
  return 0;
}
CUresult cuDevicePrimaryCtxRetain(CUcontext* c, CUdevice d) { (void)d; *c = &g_ctx_token; return 0; }
CUresult cuDevicePrimaryCtxRelease_v2(CUdevice d) { (void)d; return 0; }
CUresult cuCtxPushCurrent_v2(CUcontext c) { (void)c; return 0; }
CUresult cuCtxPopCurrent_v2(CUcontext* c) { if (c) *c = &g_ctx_token; return 0; }
CUresult cuCtxSynchronize(void) { return 0; }
CUresult cuModuleLoadData(CUmodule* m, const void* image) {
  const unsigned char* p = (const unsigned char*)image;
  logf_line(p[0] == 0x7f && p[1] == 'E' && p[2] == 'L' && p[3] == 'F' ? "M ELF" : "M PTX");
  *m = (CUmodule)malloc(1);
  return 0;
}
CUresult cuModuleUnload(CUmodule m) { free(m); return 0; }
CUresult cuModuleGetFunction(CUfunction* f, CUmodule m, const char* name) {
  (void)m;
  *f = strdup(name);
  return 0;
}
CUresult cuFuncSetAttribute(CUfunction f, int attr, int v) { (void)f; (void)attr; (void)v; return 0; }

static const char* sig_of(const char* sym) {
  static char buf[256];
  const char* all = getenv("FAKE_CUDA_SIGS");
  if (!all) return "";
  size_t n = strlen(sym);
  for (const char* p = all; (p = strstr(p, sym)); ++p) {
    if ((p == all || p[-1] == ';') && p[n] == ':') {
      const char* e = strchr(p + n + 1, ';');
      size_t len = e ? (size_t)(e - (p + n + 1)) : strlen(p + n + 1);
      if (len >= sizeof buf) len = sizeof buf - 1;
      memcpy(buf, p + n + 1, len);
      buf[len] = 0;
      return buf;
    }
  }
  return "";
}

CUresult cuLaunchKernel(CUfunction f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                        unsigned shared, CUstream s, void** params, void** extra) {
  (void)by; (void)bz; (void)s; (void)extra;
  const char* sym = (const char*)f;
  const char* sig = sig_of(sym);
  char line[8192];
  int pos = snprintf(line, sizeof line, "L %s %u %u %u %u %u", sym, gx, gy, gz, bx, shared);
  for (int k = 0; sig[k] && pos < (int)sizeof line - 32; ++k) {
    if (sig[k] == 'p') pos += snprintf(line + pos, sizeof line - pos, " %llu", *(unsigned long long*)params[k]);
    else pos += snprintf(line + pos, sizeof line - pos, " %d", *(int32_t*)params[k]);
  }
  logf_line(line);
  const char* poke = getenv("FAKE_CUDA_POKE");
  if (poke) {
    char name[128];
    int arg = 0, value = 0;
    if (sscanf(poke, "%127[^:]:%d:%d", name, &arg, &value) == 3 && !strcmp(name, sym))
      *(int32_t*)(uintptr_t)(*(unsigned long long*)params[arg]) = value;
  }
  return 0;
}

#define MAX_BLOCKS 4096
static CUdeviceptr g_block[MAX_BLOCKS];
static size_t g_block_n[MAX_BLOCKS];

CUresult cuMemAlloc_v2(CUdeviceptr* p, size_t n) {
  void* m = NULL;
  if (posix_memalign(&m, 256, n ? n : 1)) return 2; /* CUDA_ERROR_OUT_OF_MEMORY */
  *p = (CUdeviceptr)(uintptr_t)m;
  for (int i = 0; i < MAX_BLOCKS; ++i)
    if (!g_block[i]) { g_block[i] = *p; g_block_n[i] = n; break; }
  return 0;
}
CUresult cuMemFree_v2(CUdeviceptr p) {
  for (int i = 0; i < MAX_BLOCKS; ++i)
    if (g_block[i] == p) g_block[i] = 0;
  free((void*)(uintptr_t)p);
  return 0;
}
CUresult cuPointerGetAttribute(void* data, int attr, CUdeviceptr p) {
  if (attr != 2) return 1;                                     /* only CU_POINTER_ATTRIBUTE_MEMORY_TYPE */
  if (getenv("FAKE_CUDA_TRACK_HOST")) {
    int dev = 0;
    for (int i = 0; i < MAX_BLOCKS; ++i)
      if (g_block[i] && p >= g_block[i] && p < g_block[i] + (g_block_n[i] ? g_block_n[i] : 1)) dev = 1;
    if (!dev) return 1;                                        /* CUDA_ERROR_INVALID_VALUE: not CUDA memory */
  }
  *(unsigned int*)data = 2;                                    /* CU_MEMORYTYPE_DEVICE */
  return 0;
}
static void log_copy(char dir, size_t n) {
  char line[64];
  if (!getenv("FAKE_CUDA_TRACK_HOST")) return;
  snprintf(line, sizeof line, "%c %zu", dir, n);
  logf_line(line);
}
CUresult cuMemcpyHtoD_v2(CUdeviceptr d, const void* h, size_t n) {
  memcpy((void*)(uintptr_t)d, h, n);
  log_copy('H', n);
  return 0;
}
CUresult cuMemcpyDtoH_v2(void* h, CUdeviceptr d, size_t n) {
  memcpy(h, (void*)(uintptr_t)d, n);
  log_copy('D', n);
  return 0;
}
CUresult cuMemcpyDtoD_v2(CUdeviceptr d, CUdeviceptr s, size_t n) {
  memmove((void*)(uintptr_t)d, (void*)(uintptr_t)s, n);
  return 0;
}
CUresult cuMemsetD32_v2(CUdeviceptr d, unsigned int v, size_t n) {
  uint32_t* p = (uint32_t*)(uintptr_t)d;
  for (size_t i = 0; i < n; ++i) p[i] = v;
  return 0;
}
CUresult cuGetErrorString(CUresult r, const char** s) { (void)r; *s = "fake CUDA error"; return 0; }
