// xrec_runtime.cpp: see xrec_runtime.h.
#include "xrec_runtime.h"

#include <dlfcn.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "xrec_json.h"

#ifndef XREC_FORMAT_VERSION
#define XREC_FORMAT_VERSION 1   // artifact format this runtime reads (xrec.artifact.FORMAT_VERSION)
#endif

namespace xrec {

int64_t Tensor::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

size_t Tensor::itemsize(int dtype) {
  switch (dtype) {
    case XREC_F64: case XREC_I64: return 8;
    case XREC_F32: case XREC_I32: return 4;
    case XREC_F16: case XREC_BF16: return 2;
  }
  return 1;
}

xrec_tensor Tensor::view() const {
  xrec_tensor t{};
  t.data = const_cast<unsigned char*>(bytes.data());
  t.dtype = dtype;
  t.ndim = (int32_t)shape.size();
  for (size_t d = 0; d < shape.size() && d < XREC_MAX_DIMS; ++d) t.shape[d] = shape[d];
  return t;
}

// The C ABI entry points, from the dlopen'ed library or (XREC_DIRECT_LINK) the linked one.
struct Model::Api {
  decltype(&xrec_model_load_ex) load_ex;
  decltype(&xrec_model_free) free_;
  decltype(&xrec_model_run) run;
  decltype(&xrec_last_error) last_error;
  decltype(&xrec_model_num_inputs) num_inputs;
  decltype(&xrec_model_input_name) input_name;
  decltype(&xrec_model_input_kind) input_kind;
  decltype(&xrec_model_input_dtype) input_dtype;
  decltype(&xrec_model_input_ndim) input_ndim;
  decltype(&xrec_model_input_shape) input_shape;
  decltype(&xrec_model_num_outputs) num_outputs;
  decltype(&xrec_model_output_dtype) output_dtype;
  decltype(&xrec_model_output_ndim) output_ndim;
  decltype(&xrec_model_output_shapes) output_shapes;
  decltype(&xrec_model_isa) isa;
  decltype(&xrec_model_name) name;
};

std::unique_ptr<Model> Model::open(const std::string& dir, const LoadOptions& options) {
  std::unique_ptr<Model> m(new Model());
  m->api_.reset(new Api());
  Api& a = *m->api_;
#ifdef XREC_DIRECT_LINK
  a = Api{xrec_model_load_ex, xrec_model_free, xrec_model_run, xrec_last_error, xrec_model_num_inputs,
          xrec_model_input_name, xrec_model_input_kind, xrec_model_input_dtype, xrec_model_input_ndim,
          xrec_model_input_shape, xrec_model_num_outputs, xrec_model_output_dtype, xrec_model_output_ndim,
          xrec_model_output_shapes, xrec_model_isa, xrec_model_name};
#else
  // a cpu artifact's library, or a triton artifact's (its C ABI takes host memory too)
  std::string lib = dir + "/lib/libxrec_model.so";
  if (access(lib.c_str(), F_OK) != 0 && access((dir + "/lib/libxrec_model_cuda.so").c_str(), F_OK) == 0)
    lib = dir + "/lib/libxrec_model_cuda.so";
  // its bytes must be those manifest.json records: dlopen of a truncated library dies of SIGBUS
  {
    std::ifstream f(dir + "/manifest.json", std::ios::binary);
    if (!f) throw Error(XREC_ERR_ARTIFACT, dir + ": not an xrec artifact (no readable manifest.json)");
    std::ostringstream text;
    text << f.rdbuf();
    json::Value mf;
    try {
      mf = json::parse(text.str());
    } catch (const std::exception& e) {
      throw Error(XREC_ERR_ARTIFACT, dir + "/manifest.json is corrupt: " + e.what());
    }
    // the manifest's layout fields and their checksum first (an artifact of another format: the library says so)
    const json::Value* fv = mf.get("format_version");
    int64_t version = 0;
    if (fv && json::detail::int_literal(*fv, &version) && version == XREC_FORMAT_VERSION) {
      const std::string bad_manifest = json::check_manifest(mf, dir);
      if (!bad_manifest.empty()) throw Error(XREC_ERR_ARTIFACT, bad_manifest);
    }
    const std::string bad = json::check_listed_file(mf, dir, lib.substr(dir.size() + 1));
    if (!bad.empty()) throw Error(XREC_ERR_ARTIFACT, bad);
  }
  m->dl_ = dlopen(lib.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!m->dl_) {
    const char* e = dlerror();
    throw Error(XREC_ERR_ARTIFACT, dir + ": cannot load the model library " + lib + ": " + (e ? e : "?"));
  }
  auto sym = [&](const char* name) {
    void* p = dlsym(m->dl_, name);
    if (!p) throw Error(XREC_ERR_ARTIFACT, lib + " lacks " + name + "; not an xrec cpu artifact library");
    return p;
  };
#define XREC_SYM(field, name) a.field = reinterpret_cast<decltype(a.field)>(sym(#name))
  XREC_SYM(load_ex, xrec_model_load_ex);
  XREC_SYM(free_, xrec_model_free);
  XREC_SYM(run, xrec_model_run);
  XREC_SYM(last_error, xrec_last_error);
  XREC_SYM(num_inputs, xrec_model_num_inputs);
  XREC_SYM(input_name, xrec_model_input_name);
  XREC_SYM(input_kind, xrec_model_input_kind);
  XREC_SYM(input_dtype, xrec_model_input_dtype);
  XREC_SYM(input_ndim, xrec_model_input_ndim);
  XREC_SYM(input_shape, xrec_model_input_shape);
  XREC_SYM(num_outputs, xrec_model_num_outputs);
  XREC_SYM(output_dtype, xrec_model_output_dtype);
  XREC_SYM(output_ndim, xrec_model_output_ndim);
  XREC_SYM(output_shapes, xrec_model_output_shapes);
  XREC_SYM(isa, xrec_model_isa);
  XREC_SYM(name, xrec_model_name);
#undef XREC_SYM
#endif
  xrec_load_options o{options.isa.c_str(), options.threads, options.verify_weights ? 1 : 0,
                      options.lazy_weights ? 1 : 0, options.huge_pages};
  m->m_ = a.load_ex(dir.c_str(), &o);
  if (!m->m_) throw Error(XREC_ERR_ARTIFACT, a.last_error());
  m->isa_ = a.isa(m->m_);
  m->name_ = a.name(m->m_);
  for (int i = 0; i < a.num_inputs(m->m_); ++i)
    m->inputs_.push_back(InputInfo{a.input_name(m->m_, i), a.input_kind(m->m_, i), a.input_shape(m->m_, i),
                                   a.input_dtype(m->m_, i), a.input_ndim(m->m_, i)});
  return m;
}

Model::~Model() {
  if (m_) api_->free_(m_);
#ifndef XREC_DIRECT_LINK
  if (dl_) dlclose(dl_);
#endif
}

int Model::num_outputs() const { return api_->num_outputs(m_); }

std::vector<std::vector<int64_t>> Model::output_shapes(const xrec_tensor* in, int n) const {
  const int nout = num_outputs();
  std::vector<int64_t> dims((size_t)nout * XREC_MAX_DIMS);
  int rc = api_->output_shapes(m_, in, n, dims.data());
  if (rc != XREC_OK) throw Error(rc, api_->last_error());
  std::vector<std::vector<int64_t>> out(nout);
  for (int k = 0; k < nout; ++k)
    out[k].assign(dims.begin() + (size_t)k * XREC_MAX_DIMS,
                  dims.begin() + (size_t)k * XREC_MAX_DIMS + api_->output_ndim(m_, k));
  return out;
}

void Model::run(const xrec_tensor* in, int n, xrec_tensor* out, int nout) const {
  int rc = api_->run(m_, in, n, out, nout);
  if (rc != XREC_OK) throw Error(rc, api_->last_error());
}

std::vector<Tensor> Model::run(const std::vector<Tensor>& inputs) const {
  std::vector<xrec_tensor> in;
  in.reserve(inputs.size());
  for (const Tensor& t : inputs) in.push_back(t.view());
  auto shapes = output_shapes(in.data(), (int)in.size());
  std::vector<Tensor> outs(shapes.size());
  std::vector<xrec_tensor> ov(shapes.size());
  for (size_t k = 0; k < shapes.size(); ++k) {
    outs[k].dtype = api_->output_dtype(m_, (int)k);
    outs[k].shape = shapes[k];
    outs[k].bytes.resize((size_t)outs[k].numel() * Tensor::itemsize(outs[k].dtype));
    ov[k] = outs[k].view();
  }
  run(in.data(), (int)in.size(), ov.data(), (int)ov.size());
  return outs;
}

}  // namespace xrec
