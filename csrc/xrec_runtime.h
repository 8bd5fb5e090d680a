// xrec_runtime.h: load and run compiled xrec cpu artifacts from C++ (an inference
// server, the xrec_run example). Wraps the C ABI of include/xrec_model.h.
//
//   auto model = xrec::Model::open("dlrm.xrec");            // throws xrec::Error
//   std::vector<xrec::Tensor> inputs = ...;                  // flat, signature order
//   std::vector<xrec::Tensor> outputs = model->run(inputs);  // allocates outputs
//
// By default the artifact's lib/libxrec_model.so is dlopen'ed (RTLD_LOCAL), so a
// process can hold several artifacts and needs no relink per model. Built with
// XREC_DIRECT_LINK, the runtime calls the C ABI of the one artifact it was linked
// against instead (CMake option XREC_ARTIFACT).
#pragma once
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "xrec_model.h"

namespace xrec {

struct Error : std::runtime_error {
  int code;
  Error(int c, const std::string& msg) : std::runtime_error(msg), code(c) {}
};

// A dense row-major tensor that owns its bytes.
struct Tensor {
  int dtype = XREC_F32;
  std::vector<int64_t> shape;
  std::vector<unsigned char> bytes;

  int64_t numel() const;
  static size_t itemsize(int dtype);
  template <class T> T* data() { return reinterpret_cast<T*>(bytes.data()); }
  template <class T> const T* data() const { return reinterpret_cast<const T*>(bytes.data()); }
  xrec_tensor view() const;   // a C ABI view of it (no copy)
};

struct InputInfo {
  std::string name, kind, shape;
  int dtype;
  int ndim;
};

struct LoadOptions {
  std::string isa = "auto";   // or avx512 | avx2 | scalar ($XREC_CPU_ISA when auto)
  int threads = 0;            // 0: $XREC_THREADS or all cores
  bool verify_weights = true; // checksum weights.bin on load
  bool lazy_weights = false;  // map weights.bin pages on first use instead of prefaulting them at load
  int huge_pages = 0;         // 0 auto (weights >= 64 MiB), 1 always, -1 never (xrec_load_options)
};

class Model {
 public:
  static std::unique_ptr<Model> open(const std::string& artifact_dir, const LoadOptions& options = {});
  ~Model();
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  const std::string& isa() const { return isa_; }
  const std::string& name() const { return name_; }
  const std::vector<InputInfo>& inputs() const { return inputs_; }
  int num_outputs() const;

  // Runs on the inputs (in signature order) and returns freshly allocated outputs.
  // Thread-safe: one Model may serve concurrent calls. Throws xrec::Error.
  std::vector<Tensor> run(const std::vector<Tensor>& inputs) const;
  // The same on C ABI views, writing into caller-allocated outputs (see output_shapes).
  void run(const xrec_tensor* inputs, int n_inputs, xrec_tensor* outputs, int n_outputs) const;
  std::vector<std::vector<int64_t>> output_shapes(const xrec_tensor* inputs, int n_inputs) const;

 private:
  struct Api;
  Model() = default;
  std::unique_ptr<Api> api_;
  void* dl_ = nullptr;
  xrec_model* m_ = nullptr;
  std::string isa_, name_;
  std::vector<InputInfo> inputs_;
};

}  // namespace xrec
