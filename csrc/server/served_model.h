// served_model.h: one compiled xrec cpu artifact as the server sees it.
//
// Loads the artifact through csrc/xrec_runtime.h (manifest, mmap'd weights and the
// ISA build, all checked by the artifact's C ABI) and reads manifest.json for what
// the C ABI does not say: the symbolic shapes of the outputs and, per sparse
// feature, which inputs are its indices and offsets and how many rows its table has.
//
// Per request: prepare() turns the protocol's tensors into the model's flat inputs
// (signature order), checking names, datatypes, shapes (binding the symbolic dims
// B, N_indices_k, ...), offsets and index ranges, and finally asks the C ABI
// (output_shapes) whether it accepts them. Each request is checked on its own, so
// one bad request never fails a merged batch.
//
// Per batch: merge() concatenates requests (dense rows; each feature's ids, with its
// offsets rebased) into one kernel call, split() cuts the outputs back per request.
#pragma once
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "xrec_runtime.h"

namespace xrec {
namespace serve {

// A request the server refuses: the HTTP status, the error kind (a metrics label) and the message.
struct RequestError : std::runtime_error {
  int status;
  std::string kind;
  RequestError(int s, std::string k, const std::string& msg) : std::runtime_error(msg), status(s), kind(std::move(k)) {}
};

// One input tensor of a request as the protocol delivers it: its elements are
// either JSON (`data`, flat or nested row-major, flattened by the parser) or raw
// little-endian bytes (the binary tensor data extension).
struct WireTensor {
  std::string name, datatype;
  std::vector<int64_t> shape;
  // JSON elements, each as int64 (exact for integers; 0/1 for booleans) and as double
  std::vector<int64_t> ints;
  std::vector<double> reals;
  int64_t first_real = -1;     // first element written with a fraction or exponent (not an integer)
  int64_t first_bool = -1;     // first true/false
  int64_t first_number = -1;   // first number (for BOOL tensors)
  std::string real_text;       // how first_real was written
  const unsigned char* raw = nullptr;
  size_t raw_size = 0;
  bool is_raw = false;
  int64_t count() const { return (int64_t)ints.size(); }
};

// A checked request: the model's flat inputs in signature order, and its rows (batch).
struct Prepared {
  std::vector<Tensor> inputs;
  int64_t rows = 0;
};

// A dimension of a symbolic shape: a sum of constant and coefficient * symbol terms ("B+1", "13", "N_indices_3").
struct Dim {
  std::string text;
  bool parsed = false;
  int64_t constant = 0;
  std::vector<std::pair<std::string, int64_t>> terms;
  std::vector<int> ids;   // the terms' symbols as indices into ServedModel's symbol table (inputs only)
  static Dim parse(const std::string& text);
  bool is_symbol() const { return parsed && constant == 0 && terms.size() == 1 && terms[0].second == 1; }
};

class ServedModel {
 public:
  enum class Role { Rows, Offsets, Jagged, Fixed };
  struct Input {
    std::string name, kind, lengths_name;   // lengths_name: the alias taking lengths instead of offsets ("" if none)
    int dtype;                               // as compiled (ids: int32 and int64 are both accepted)
    std::vector<Dim> dims;
    Role role = Role::Fixed;
    int feature = -1;                        // for offsets / indices / per-id weights: index into features()
  };
  struct Feature {
    std::string name;
    int indices = -1, offsets = -1;
    bool include_last_offset = true;
    int64_t num_rows = -1;                   // -1: unknown (the C ABI still checks ids)
  };
  struct Output {
    std::string name;
    int dtype;
    std::vector<Dim> dims;
  };

  static std::unique_ptr<ServedModel> open(const std::string& artifact_dir, const LoadOptions& options);

  const std::string& name() const { return name_; }
  const std::string& isa() const { return model_->isa(); }
  const std::vector<Input>& inputs() const { return inputs_; }
  const std::vector<Output>& outputs() const { return outputs_; }
  const std::vector<Feature>& features() const { return features_; }
  // Whether requests can be merged into one kernel call; if not, why.
  bool batchable() const { return batchable_; }
  const std::string& not_batchable_reason() const { return not_batchable_; }

  // Checks one request's tensors and returns the model's inputs. Throws RequestError.
  Prepared prepare(const std::vector<WireTensor>& tensors) const;
  // Runs the model (thread-safe). Throws xrec::Error with the C ABI's message.
  std::vector<Tensor> run(const std::vector<Tensor>& inputs) const { return model_->run(inputs); }
  // One kernel call's inputs for several prepared requests (batchable models only).
  std::vector<Tensor> merge(const std::vector<const Prepared*>& parts) const;
  // Cuts a merged call's outputs back into each request's rows.
  std::vector<std::vector<Tensor>> split(const std::vector<Tensor>& outputs,
                                         const std::vector<const Prepared*>& parts) const;

  // KServe v2 model metadata (GET /v2/models/NAME).
  nlohmann::json metadata() const;
  // "dense, indices[0]..indices[25], offsets[0]..offsets[25]"
  std::string input_list() const;

 private:
  ServedModel() = default;
  std::unique_ptr<Model> model_;
  std::string name_;
  std::vector<Input> inputs_;
  std::vector<Output> outputs_;
  std::vector<Feature> features_;
  std::unordered_map<std::string, std::pair<int, bool>> by_name_;   // input name or lengths alias -> (input, is lengths)
  std::string batch_symbol_ = "B";
  std::vector<std::string> symbols_;      // every symbol of the inputs' shapes
  std::vector<Dim> lengths_dims_;         // the shape of a lengths[k] input: [B]
  int batch_id_ = -1;
  bool batchable_ = false;
  std::string not_batchable_;
};

// KServe v2 datatype names ("FP32", "INT64", ...) of xrec dtypes, and element sizes.
const char* kserve_datatype(int xrec_dtype);
int xrec_dtype_of_manifest(const std::string& s);   // "f32" -> XREC_F32; -1 if unknown
size_t kserve_itemsize(const std::string& datatype); // 0 if unknown (or BYTES)

}  // namespace serve
}  // namespace xrec
