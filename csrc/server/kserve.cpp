// kserve.cpp: see kserve.h.
#include "kserve.h"

#include <cstring>

namespace xrec {
namespace serve {

using nlohmann::json;

static RequestError bad(const std::string& msg, const char* kind = "bad_request") {
  return RequestError(400, kind, msg);
}

static std::string strip_json_prefix(const std::string& what) {
  // "[json.exception.parse_error.101] parse error at line 1, ..." -> "parse error at line 1, ..."
  size_t p = what.find("] ");
  return what.rfind("[json.exception", 0) == 0 && p != std::string::npos ? what.substr(p + 2) : what;
}

InferRequest parse_infer_request(const std::string& body, const std::string& header_length, const ServedModel& model) {
  InferRequest r;
  size_t json_len = body.size();
  if (!header_length.empty()) {
    char* end = nullptr;
    const long long v = std::strtoll(header_length.c_str(), &end, 10);
    if (!end || *end || v < 0 || (unsigned long long)v > body.size())
      throw bad("Inference-Header-Content-Length is " + header_length + " but the body has " +
                std::to_string(body.size()) + " bytes");
    json_len = (size_t)v;
  }
  try {
    r.doc = json::parse(body.begin(), body.begin() + (std::ptrdiff_t)json_len);
  } catch (const json::parse_error& e) {
    throw bad("malformed JSON: " + strip_json_prefix(e.what()), "bad_json");
  }
  const json& d = r.doc;
  if (!d.is_object()) throw bad("the request body must be a JSON object with \"inputs\", got " +
                                std::string(d.type_name()), "bad_json");
  if (!d.contains("inputs") || !d["inputs"].is_array())
    throw bad("the request needs \"inputs\": an array of tensors {\"name\", \"datatype\", \"shape\", \"data\"}");
  if (d.contains("id")) r.id = d["id"];

  // ---- inputs, with their data in JSON or after the JSON header
  const unsigned char* bin = reinterpret_cast<const unsigned char*>(body.data()) + json_len;
  const size_t bin_size = body.size() - json_len;
  size_t used = 0;
  size_t k = 0;
  for (const json& t : d["inputs"]) {
    const std::string where = "inputs[" + std::to_string(k++) + "]";
    if (!t.is_object()) throw bad(where + " is not an object");
    if (!t.contains("name") || !t["name"].is_string()) throw bad(where + " lacks \"name\" (a string)");
    WireTensor w;
    w.name = t["name"].get<std::string>();
    const std::string what = "input '" + w.name + "'";
    if (!t.contains("datatype") || !t["datatype"].is_string())
      throw bad(what + " lacks \"datatype\" (e.g. \"FP32\", \"INT64\")", "bad_datatype");
    w.datatype = t["datatype"].get<std::string>();
    if (kserve_itemsize(w.datatype) == 0)
      throw bad(what + ": unknown or unsupported datatype \"" + w.datatype + "\"", "bad_datatype");
    if (!t.contains("shape") || !t["shape"].is_array()) throw bad(what + " lacks \"shape\" (an array)", "bad_shape");
    for (const json& s : t["shape"]) {
      if (!s.is_number_integer() || s.get<int64_t>() < 0)
        throw bad(what + ": shape " + t["shape"].dump() + " must hold non-negative integers", "bad_shape");
      w.shape.push_back(s.get<int64_t>());
    }
    const json* params = t.contains("parameters") && t["parameters"].is_object() ? &t["parameters"] : nullptr;
    if (params && params->contains("shared_memory_region"))
      throw bad(what + ": shared-memory inputs are not supported by this server; send the data");
    if (params && params->contains("binary_data_size")) {
      const json& bs = (*params)["binary_data_size"];
      if (!bs.is_number_integer() || bs.get<int64_t>() < 0)
        throw bad(what + ": parameters.binary_data_size must be a non-negative integer");
      const size_t n = (size_t)bs.get<int64_t>();
      if (n > bin_size - used)
        throw bad(what + ": its " + std::to_string(n) + " bytes of binary data run past the end of the body (" +
                  std::to_string(bin_size - used) + " bytes left after the JSON header)");
      w.is_raw = true;
      w.raw = bin + used;
      w.raw_size = n;
      used += n;
    } else {
      if (!t.contains("data"))
        throw bad(what + " has no \"data\" (nor parameters.binary_data_size)");
      w.data = &t["data"];
    }
    r.inputs.push_back(std::move(w));
  }
  if (used != bin_size)
    throw bad("the body holds " + std::to_string(bin_size) + " bytes after its JSON header but the inputs' "
              "binary_data_size add up to " + std::to_string(used));

  // ---- what to return
  bool binary_all = false;
  if (d.contains("parameters") && d["parameters"].is_object()) {
    const json& p = d["parameters"];
    if (p.contains("binary_data_output")) {
      if (!p["binary_data_output"].is_boolean()) throw bad("parameters.binary_data_output must be true or false");
      binary_all = p["binary_data_output"].get<bool>();
    }
    if (p.contains("timeout")) {
      if (!p["timeout"].is_number_integer() || p["timeout"].get<int64_t>() <= 0)
        throw bad("parameters.timeout must be a positive integer (microseconds)");
      r.timeout_us = p["timeout"].get<int64_t>();
    }
  }
  const auto& outs = model.outputs();
  if (d.contains("outputs")) {
    if (!d["outputs"].is_array()) throw bad("\"outputs\" must be an array of {\"name\": ...}");
    for (const json& o : d["outputs"]) {
      if (!o.is_object() || !o.contains("name") || !o["name"].is_string())
        throw bad("each of \"outputs\" needs a \"name\"");
      const std::string name = o["name"].get<std::string>();
      int idx = -1;
      for (size_t i = 0; i < outs.size(); ++i)
        if (outs[i].name == name) idx = (int)i;
      if (idx < 0) {
        std::string list;
        for (const auto& x : outs) list += (list.empty() ? "'" : ", '") + x.name + "'";
        throw bad("unknown output '" + name + "': model '" + model.name() + "' has " + list);
      }
      bool binary = binary_all;
      if (o.contains("parameters") && o["parameters"].is_object()) {
        const json& p = o["parameters"];
        if (p.contains("classification")) throw bad("output '" + name + "': classification is not supported");
        if (p.contains("shared_memory_region"))
          throw bad("output '" + name + "': shared-memory outputs are not supported by this server");
        if (p.contains("binary_data")) {
          if (!p["binary_data"].is_boolean()) throw bad("output '" + name + "': parameters.binary_data must be a boolean");
          binary = p["binary_data"].get<bool>();
        }
      }
      r.outputs.push_back({idx, binary});
    }
  } else {
    for (size_t i = 0; i < outs.size(); ++i) r.outputs.push_back({(int)i, binary_all});
  }
  return r;
}

template <class T>
static json values(const Tensor& t) {
  json a = json::array();
  auto& v = a.get_ref<json::array_t&>();
  const int64_t n = t.numel();
  v.reserve((size_t)n);
  const T* p = t.data<T>();
  for (int64_t i = 0; i < n; ++i) v.emplace_back(p[i]);
  return a;
}

static json to_json(const Tensor& t) {
  switch (t.dtype) {
    case XREC_F32: return values<float>(t);
    case XREC_F64: return values<double>(t);
    case XREC_I32: return values<int32_t>(t);
    case XREC_I64: return values<int64_t>(t);
    case XREC_I8: return values<int8_t>(t);
    case XREC_U8: return values<uint8_t>(t);
    case XREC_BOOL: {
      json a = json::array();
      for (int64_t i = 0; i < t.numel(); ++i) a.push_back(t.bytes[(size_t)i] != 0);
      return a;
    }
  }
  return nullptr;   // FP16 / BF16: only as binary data
}

InferResponse encode_infer_response(const ServedModel& model, const InferRequest& req,
                                    const std::vector<Tensor>& outputs) {
  json outs = json::array();
  std::string binary;
  for (const InferRequest::Out& o : req.outputs) {
    const Tensor& t = outputs[(size_t)o.index];
    json e = {{"name", model.outputs()[(size_t)o.index].name},
              {"datatype", kserve_datatype(t.dtype)},
              {"shape", t.shape}};
    const bool as_binary = o.binary || t.dtype == XREC_F16 || t.dtype == XREC_BF16;
    if (as_binary) {
      e["parameters"] = {{"binary_data_size", t.bytes.size()}};
      binary.append(reinterpret_cast<const char*>(t.bytes.data()), t.bytes.size());
    } else {
      e["data"] = to_json(t);
    }
    outs.push_back(std::move(e));
  }
  json head = {{"model_name", model.name()}, {"model_version", "1"}};
  if (!req.id.is_null()) head["id"] = req.id;
  head["outputs"] = std::move(outs);
  InferResponse r;
  r.body = head.dump();
  bool any_binary = false;
  for (const InferRequest::Out& o : req.outputs) {
    const int dt = outputs[(size_t)o.index].dtype;
    any_binary = any_binary || o.binary || dt == XREC_F16 || dt == XREC_BF16;
  }
  if (any_binary) {
    r.header_length = (long)r.body.size();
    r.body += binary;
    r.content_type = "application/octet-stream";
  } else {
    r.content_type = "application/json";
  }
  return r;
}

}  // namespace serve
}  // namespace xrec
