// kserve.h: the KServe v2 / Open Inference Protocol inference request and response
// bodies (JSON tensors), with Triton's binary tensor data extension (the JSON header
// followed by raw tensor bytes; its length in the Inference-Header-Content-Length
// header), which the official tritonclient uses by default.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "served_model.h"

namespace xrec {
namespace serve {

struct InferRequest {
  nlohmann::json doc;                 // owns the JSON `data` the WireTensors point into
  std::vector<WireTensor> inputs;
  nlohmann::json id;                  // echoed back when given
  struct Out {
    int index;                        // into ServedModel::outputs()
    bool binary;
  };
  std::vector<Out> outputs;           // what to return (all outputs when the request names none)
  int64_t timeout_us = -1;            // parameters.timeout, if given
};

// Parses a request body. `header_length` is the Inference-Header-Content-Length value ("" if absent).
// Throws RequestError (400) naming what is wrong.
InferRequest parse_infer_request(const std::string& body, const std::string& header_length,
                                 const ServedModel& model);

struct InferResponse {
  std::string body, content_type;
  long header_length = -1;            // >= 0: set Inference-Header-Content-Length (binary outputs follow the JSON)
};

InferResponse encode_infer_response(const ServedModel& model, const InferRequest& request,
                                    const std::vector<Tensor>& outputs);

}  // namespace serve
}  // namespace xrec
