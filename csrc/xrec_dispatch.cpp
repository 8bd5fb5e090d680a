// xrec_dispatch.cpp: the C ABI of xrec_model.h, built as NAME.xrec/lib/libxrec_model.so.
//
// Loading an artifact: read manifest.json, check its format version, its layout fields and their
// checksum (layout_sha256, xrec_json.h check_manifest), its target,
// choose the ISA build (the best one the CPU supports among those in lib/, or
// the one forced by the options / $XREC_CPU_ISA; refuse one the CPU lacks),
// check lib/xrec_model_<isa>.so's sha256 against the manifest's "files",
// dlopen it, check it is the code this manifest was
// built with (fingerprint), memory-map weights.bin, check its size (and its
// checksum64 unless asked not to: a caller that asks has checked weights.bin's
// sha256 against this same checksummed manifest), and hand each weight slot the
// address of its entry at the offset the manifest records.
//
// This file is compiled for the baseline x86-64 ISA: nothing here may need
// more than every x86-64 CPU has, since it runs before the ISA check.
#include <dlfcn.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "xrec_impl.h"
#include "xrec_json.h"
#include "xrec_model.h"

#ifndef XREC_FORMAT_VERSION
#define XREC_FORMAT_VERSION 1   // artifact format this library reads (xrec.artifact.FORMAT_VERSION)
#endif

struct xrec_model {
  const xrec_impl* impl = nullptr;
  void* dl = nullptr;
  void* state = nullptr;
  void* wmap = nullptr;       // weights.bin's bytes
  size_t wsize = 0;
  void* wbase = nullptr;      // what to munmap: the file mapping, or the 2 MiB-aligned anonymous block
  size_t wbase_len = 0;
  bool huge = false;
  std::string isa, name, dir;
};

namespace {

thread_local std::string g_error;
thread_local char g_buf[1024];

int fail(int code, const std::string& msg) {
  g_error = msg;
  return code;
}

const char* const kIsas[] = {"scalar", "avx2", "avx512"};

int isa_rank(const std::string& isa) {
  for (int r = 0; r < 3; ++r)
    if (isa == kIsas[r]) return r;
  return -1;
}

const char* isa_needs(int rank) {
  switch (rank) {
    case 2: return "AVX-512 (x86-64-v4: AVX512F/BW/CD/DQ/VL)";
    case 1: return "AVX2 and FMA (x86-64-v3)";
  }
  return "x86-64";
}

// The best ISA this CPU runs; $XREC_FAKE_CPU_ISA pretends a lesser CPU (for tests).
int cpu_rank() {
  __builtin_cpu_init();
  int r = __builtin_cpu_supports("x86-64-v4") ? 2 : __builtin_cpu_supports("x86-64-v3") ? 1 : 0;
  const char* fake = std::getenv("XREC_FAKE_CPU_ISA");
  if (fake && *fake && isa_rank(fake) >= 0 && isa_rank(fake) < r) r = isa_rank(fake);
  return r;
}

// Sum over the little-endian 64-bit words w_i of the file (zero-padded) of w_i * (2i + 1), mod 2^64.
// Must match xrec.targets.cpu.weights.checksum64.
uint64_t checksum64(const unsigned char* p, size_t n) {
  uint64_t acc = 0, i = 0;
  size_t full = n / 8;
  for (size_t k = 0; k < full; ++k, ++i) {
    uint64_t w;
    std::memcpy(&w, p + 8 * k, 8);
    acc += w * (2 * i + 1);
  }
  if (n % 8) {
    uint64_t w = 0;
    std::memcpy(&w, p + 8 * full, n % 8);
    acc += w * (2 * i + 1);
  }
  return acc;
}

bool read_file(const std::string& path, std::string* out) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return false;
  std::ostringstream ss;
  ss << f.rdbuf();
  *out = ss.str();
  return true;
}

std::string str_field(const xrec::json::Value* v) { return v && v->is_string() ? v->text : std::string(); }

constexpr size_t kHugeWeightsMin = size_t(64) << 20;   // auto mode: huge pages from 64 MiB of weights
constexpr size_t kHugePage = size_t(2) << 20;

// Transparent huge pages can be had through madvise unless the kernel says "[never]".
bool thp_allowed() {
  std::string s;
  std::ifstream f("/sys/kernel/mm/transparent_hugepage/enabled");
  if (!f || !std::getline(f, s)) return false;
  return s.find("[never]") == std::string::npos;
}

// weights.bin -> a 2 MiB-aligned anonymous block advised MADV_HUGEPAGE, then made read-only.
bool read_into_huge_pages(int fd, xrec_model* m, std::string* why) {
  const size_t len = (m->wsize + 2 * kHugePage - 1) / kHugePage * kHugePage;
  void* base = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (base == MAP_FAILED) {
    *why = std::string("mmap of ") + std::to_string(len) + " bytes: " + std::strerror(errno);
    return false;
  }
  m->wbase = base;
  m->wbase_len = len;
  unsigned char* p = (unsigned char*)(((uintptr_t)base + kHugePage - 1) & ~(uintptr_t)(kHugePage - 1));
  madvise(p, m->wsize, MADV_HUGEPAGE);   // advice only: an error leaves ordinary pages
  size_t done = 0;
  while (done < m->wsize) {
    const ssize_t r = pread(fd, p + done, m->wsize - done > (size_t(1) << 30) ? (size_t(1) << 30) : m->wsize - done,
                            (off_t)done);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      *why = r == 0 ? std::string("file shorter than expected") : std::string(std::strerror(errno));
      return false;
    }
    done += (size_t)r;
  }
  mprotect(p, m->wsize, PROT_READ);
  m->wmap = p;
  return true;
}

void unload(xrec_model* m) {
  if (!m) return;
  if (m->state && m->impl) m->impl->destroy(m->state);
  if (m->wbase) munmap(m->wbase, m->wbase_len);
  if (m->dl) dlclose(m->dl);
  delete m;
}

xrec_model* load(const char* dir_c, const xrec_load_options* opt) {
  using xrec::json::Value;
  if (!dir_c) {
    fail(XREC_ERR_ARTIFACT, "xrec_model_load: artifact_dir is NULL");
    return nullptr;
  }
  const std::string dir = dir_c;
  std::string text;
  if (!read_file(dir + "/manifest.json", &text)) {
    fail(XREC_ERR_ARTIFACT, dir + ": not an xrec artifact (no readable manifest.json)");
    return nullptr;
  }
  Value mf;
  try {
    mf = xrec::json::parse(text);
  } catch (const std::exception& e) {
    fail(XREC_ERR_ARTIFACT, dir + "/manifest.json is corrupt: " + e.what());
    return nullptr;
  }
  const Value* fv = mf.get("format_version");
  if (!fv || !fv->is_number() || fv->as_int() != XREC_FORMAT_VERSION) {
    fail(XREC_ERR_ARTIFACT, dir + ": artifact format " + (fv ? fv->text : std::string("?")) +
                                " but this runtime reads format " + std::to_string(XREC_FORMAT_VERSION) +
                                "; recompile the model");
    return nullptr;
  }
  // the layout fields by name, then their checksum "layout_sha256", before anything else is read or trusted
  const std::string bad_manifest = xrec::json::check_manifest(mf, dir);
  if (!bad_manifest.empty()) {
    fail(XREC_ERR_ARTIFACT, bad_manifest);
    return nullptr;
  }
  if (str_field(mf.get("target")) != "cpu") {
    fail(XREC_ERR_ARTIFACT, dir + ": artifact is for target '" + str_field(mf.get("target")) +
                                "', not cpu; this runtime runs cpu artifacts");
    return nullptr;
  }
  const Value* info = mf.get("target_info");
  const Value* isas = info ? info->get("isas") : nullptr;
  const std::string fingerprint = str_field(info ? info->get("fingerprint") : nullptr);
  if (!isas || isas->kind != Value::Array || isas->items.empty() || fingerprint.empty()) {
    fail(XREC_ERR_ARTIFACT, dir + ": manifest.json lacks target_info.isas / fingerprint");
    return nullptr;
  }
  std::vector<std::string> built;
  std::string built_list;
  for (const Value& v : isas->items) {
    if (!v.is_string()) {
      fail(XREC_ERR_ARTIFACT, dir + ": manifest.json field 'target_info.isas' holds a " +
                                  (v.is_number() ? "number" : "non-string") + "; it must be an array of ISA "
                                  "names; the artifact is corrupt or was edited: recompile the model");
      return nullptr;
    }
    built.push_back(v.text);
    built_list += (built_list.empty() ? "" : ", ") + v.text;
  }

  // ---- which ISA build
  std::string want = opt && opt->isa ? opt->isa : "";
  if (want.empty() || want == "auto") {
    const char* env = std::getenv("XREC_CPU_ISA");
    want = env && *env ? env : "auto";
  }
  const int cpu = cpu_rank();
  std::string isa;
  if (want == "auto") {
    int best = -1;
    for (const std::string& b : built)
      if (isa_rank(b) <= cpu && isa_rank(b) > best) best = isa_rank(b);
    if (best < 0) {
      fail(XREC_ERR_ARTIFACT, dir + ": refusing to load: the artifact was built for " + built_list +
                                  " only, and this CPU supports none of them (best here: " + kIsas[cpu] +
                                  "); recompile with isa=auto or a lower isa");
      return nullptr;
    }
    isa = kIsas[best];
  } else {
    if (isa_rank(want) < 0) {
      fail(XREC_ERR_ARTIFACT, "unknown ISA '" + want + "' (from the options or XREC_CPU_ISA); known: auto, "
                              "avx512, avx2, scalar");
      return nullptr;
    }
    bool have = false;
    for (const std::string& b : built) have = have || b == want;
    if (!have) {
      fail(XREC_ERR_ARTIFACT, dir + ": ISA '" + want + "' was not built into this artifact (built: " +
                                  built_list + ")");
      return nullptr;
    }
    if (isa_rank(want) > cpu) {
      fail(XREC_ERR_ARTIFACT, dir + ": refusing to load the " + want + " build: it needs " +
                                  isa_needs(isa_rank(want)) + ", which this CPU lacks (best here: " +
                                  kIsas[cpu] + ")");
      return nullptr;
    }
    isa = want;
  }

  xrec_model* m = new xrec_model();
  m->dir = dir;
  m->isa = isa;
  m->name = str_field(mf.get("model"));
  const std::string lib = dir + "/lib/xrec_model_" + isa + ".so";
  // the library's bytes must be those the manifest records: dlopen of a truncated file dies of SIGBUS
  const std::string bad = xrec::json::check_listed_file(mf, dir, "lib/xrec_model_" + isa + ".so");
  if (!bad.empty()) {
    fail(XREC_ERR_ARTIFACT, bad);
    unload(m);
    return nullptr;
  }
  // RTLD_NODELETE: never unmap the ISA library (nor the OpenMP runtime it pulled in) while
  // OpenMP's idle worker threads may still be running its code, e.g. at xrec_model_free.
  m->dl = dlopen(lib.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
  if (!m->dl) {
    const char* e = dlerror();
    fail(XREC_ERR_ARTIFACT, "cannot load " + lib + ": " + (e ? e : "?"));
    unload(m);
    return nullptr;
  }
  auto get = (const xrec_impl* (*)(void))dlsym(m->dl, "xrec_impl_get");
  m->impl = get ? get() : nullptr;
  if (!m->impl || m->impl->impl_version != XREC_IMPL_VERSION || isa != m->impl->isa) {
    fail(XREC_ERR_ARTIFACT, lib + " is not an xrec " + isa + " model library of this version");
    m->impl = nullptr;
    unload(m);
    return nullptr;
  }
  if (fingerprint != m->impl->fingerprint) {
    fail(XREC_ERR_ARTIFACT, dir + ": " + lib + " was built from other code (fingerprint " + m->impl->fingerprint +
                                ") than manifest.json records (" + fingerprint + "); the artifact is mismatched");
    unload(m);
    return nullptr;
  }

  // ---- weights.bin: size, checksum, one slot per entry the code reads
  const Value* wv = mf.get("weights");
  const std::string wfile = dir + "/" + (wv ? str_field(wv->get("file")) : std::string("weights.bin"));
  const Value* wbytes = wv ? wv->get("bytes") : nullptr;
  const Value* entries = wv ? wv->get("entries") : nullptr;
  if (!wbytes || !entries || entries->kind != Value::Object) {
    fail(XREC_ERR_ARTIFACT, dir + ": manifest.json lacks the weights layout");
    unload(m);
    return nullptr;
  }
  int fd = open(wfile.c_str(), O_RDONLY);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) != 0) {
    fail(XREC_ERR_ARTIFACT, "cannot open " + wfile + ": " + std::strerror(errno));
    if (fd >= 0) close(fd);
    unload(m);
    return nullptr;
  }
  m->wsize = (size_t)st.st_size;
  if ((int64_t)m->wsize != wbytes->as_int()) {
    close(fd);
    fail(XREC_ERR_ARTIFACT, wfile + " holds " + std::to_string(m->wsize) + " bytes but manifest.json records " +
                                wbytes->text + "; the artifact is corrupt or mismatched");
    unload(m);
    return nullptr;
  }
  const int huge_opt = opt ? opt->huge_pages : 0;
  if (m->wsize && (huge_opt > 0 || (huge_opt == 0 && m->wsize >= kHugeWeightsMin)) && thp_allowed()) {
    // Random rows of big tables: with 4 KiB pages nearly every row read is also a TLB miss.
    // Transparent huge pages only back anonymous memory here, so read the file into it.
    std::string why;
    if (read_into_huge_pages(fd, m, &why)) {
      m->huge = true;
    } else {
      close(fd);
      fail(XREC_ERR_ARTIFACT, "cannot read " + wfile + " into memory: " + why);
      unload(m);
      return nullptr;
    }
  } else if (m->wsize) {
    // Embedding lookups touch rows all over the tables: prefault every page now rather than
    // take a page fault per new row while serving (MAP_POPULATE), unless asked to map lazily.
    const bool lazy = opt ? opt->lazy_weights != 0 : false;
    m->wmap = mmap(nullptr, m->wsize, PROT_READ, MAP_SHARED | (lazy ? 0 : MAP_POPULATE), fd, 0);
    if (m->wmap == MAP_FAILED) {
      m->wmap = nullptr;
      close(fd);
      fail(XREC_ERR_ARTIFACT, "cannot map " + wfile + ": " + std::strerror(errno));
      unload(m);
      return nullptr;
    }
    m->wbase = m->wmap;
    m->wbase_len = m->wsize;
  }
  close(fd);
  const bool verify = opt ? opt->verify_weights != 0 : true;
  if (verify) {
    const std::string want_sum = str_field(info->get("weights_checksum64"));
    const uint64_t got = checksum64((const unsigned char*)m->wmap, m->wsize);
    if (want_sum.empty() || std::strtoull(want_sum.c_str(), nullptr, 10) != got) {
      fail(XREC_ERR_ARTIFACT, wfile + ": checksum " + std::to_string(got) + " does not match the manifest's " +
                                  want_sum + "; weights.bin is corrupt or from another model");
      unload(m);
      return nullptr;
    }
  }
  const xrec_impl* impl = m->impl;
  std::vector<const void*> slots(impl->n_weights > 0 ? impl->n_weights : 1, nullptr);
  for (int k = 0; k < impl->n_weights; ++k) {
    const char* wname = impl->weight_names[k];
    const Value* e = entries->get(wname);
    if (!e || !e->get("offset") || !e->get("nbytes")) {
      fail(XREC_ERR_ARTIFACT, wfile + " has no entry '" + wname + "' that the model code reads; the artifact is "
                                      "mismatched");
      unload(m);
      return nullptr;
    }
    const int64_t off = e->get("offset")->as_int(), nb = e->get("nbytes")->as_int();
    const int64_t need = impl->weight_nbytes(k);
    if (nb != need || off < 0 || off % 64 != 0 || (uint64_t)(off + nb) > m->wsize) {
      fail(XREC_ERR_ARTIFACT, wfile + ": entry '" + std::string(wname) + "' (offset " + std::to_string(off) +
                                  ", " + std::to_string(nb) + " bytes) does not fit the model code, which reads " +
                                  std::to_string(need) + " bytes at a 64-byte aligned offset inside the file");
      unload(m);
      return nullptr;
    }
    slots[k] = (const unsigned char*)m->wmap + off;
  }
  int threads = opt ? opt->threads : 0;
  if (threads <= 0) {
    const char* env = std::getenv("XREC_THREADS");
    threads = env && *env ? std::atoi(env) : 0;
  }
  g_buf[0] = 0;
  m->state = impl->create(slots.data(), threads, g_buf, sizeof g_buf);
  if (!m->state) {
    fail(XREC_ERR_RUNTIME, std::string("cannot create the model: ") + g_buf);
    unload(m);
    return nullptr;
  }
  g_error.clear();
  return m;
}

}  // namespace

extern "C" {

xrec_model* xrec_model_load(const char* artifact_dir) { return load(artifact_dir, nullptr); }

xrec_model* xrec_model_load_ex(const char* artifact_dir, const xrec_load_options* options) {
  return load(artifact_dir, options);
}

void xrec_model_free(xrec_model* model) { unload(model); }

int xrec_model_run(xrec_model* m, const xrec_tensor* inputs, int n_inputs, xrec_tensor* outputs, int n_outputs) {
  if (!m) return fail(XREC_ERR_RUNTIME, "xrec_model_run: model is NULL");
  if (n_inputs > 0 && !inputs) return fail(XREC_ERR_INPUT, "xrec_model_run: inputs is NULL");
  if (n_outputs > 0 && !outputs) return fail(XREC_ERR_INPUT, "xrec_model_run: outputs is NULL");
  g_buf[0] = 0;
  int rc = m->impl->run(m->state, inputs, n_inputs, outputs, n_outputs, g_buf, sizeof g_buf);
  if (rc != XREC_OK) g_error = g_buf;
  return rc;
}

const char* xrec_last_error(void) { return g_error.c_str(); }

int xrec_model_num_inputs(const xrec_model* m) { return m ? m->impl->n_inputs : -1; }

#define XREC_IN_FIELD(field, bad) \
  if (!m || i < 0 || i >= m->impl->n_inputs) return bad; \
  return m->impl->field[i];

const char* xrec_model_input_name(const xrec_model* m, int i) { XREC_IN_FIELD(input_names, nullptr) }
const char* xrec_model_input_kind(const xrec_model* m, int i) { XREC_IN_FIELD(input_kinds, nullptr) }
int xrec_model_input_dtype(const xrec_model* m, int i) { XREC_IN_FIELD(input_dtypes, -1) }
int xrec_model_input_ndim(const xrec_model* m, int i) { XREC_IN_FIELD(input_ndims, -1) }
const char* xrec_model_input_shape(const xrec_model* m, int i) { XREC_IN_FIELD(input_shapes, nullptr) }

int xrec_model_num_outputs(const xrec_model* m) { return m ? m->impl->n_outputs : -1; }

int xrec_model_output_dtype(const xrec_model* m, int k) {
  return m && k >= 0 && k < m->impl->n_outputs ? m->impl->output_dtypes[k] : -1;
}

int xrec_model_output_ndim(const xrec_model* m, int k) {
  return m && k >= 0 && k < m->impl->n_outputs ? m->impl->output_ndims[k] : -1;
}

int xrec_model_output_shapes(const xrec_model* m, const xrec_tensor* inputs, int n_inputs, int64_t* dims) {
  if (!m) return fail(XREC_ERR_RUNTIME, "xrec_model_output_shapes: model is NULL");
  if (n_inputs > 0 && !inputs) return fail(XREC_ERR_INPUT, "xrec_model_output_shapes: inputs is NULL");
  if (!dims) return fail(XREC_ERR_INPUT, "xrec_model_output_shapes: dims is NULL (pass num_outputs * XREC_MAX_DIMS int64)");
  g_buf[0] = 0;
  int rc = m->impl->output_shapes(inputs, n_inputs, dims, g_buf, sizeof g_buf);
  if (rc != XREC_OK) g_error = g_buf;
  return rc;
}

int xrec_model_output_shape(const xrec_model* m, int k, int64_t batch, int64_t* dims) {
  if (!m) return fail(XREC_ERR_RUNTIME, "xrec_model_output_shape: model is NULL");
  if (!dims) return fail(XREC_ERR_INPUT, "xrec_model_output_shape: dims is NULL (pass XREC_MAX_DIMS int64)");
  if (batch < 0) return fail(XREC_ERR_INPUT, "xrec_model_output_shape: batch is negative (" + std::to_string(batch) + ")");
  g_buf[0] = 0;
  int rc = m->impl->output_shape_for_batch(k, batch, dims, g_buf, sizeof g_buf);
  if (rc != XREC_OK) g_error = g_buf;
  return rc;
}

const char* xrec_model_isa(const xrec_model* m) { return m ? m->isa.c_str() : nullptr; }

const char* xrec_model_weights_memory(const xrec_model* m) { return m ? (m->huge ? "hugepages" : "file") : nullptr; }
const char* xrec_model_name(const xrec_model* m) { return m ? m->name.c_str() : nullptr; }

}  // extern "C"
