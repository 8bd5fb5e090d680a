// kserve.cpp: see kserve.h.
#include "kserve.h"

#include <cstring>
#include <limits>
#include <map>
#include <type_traits>

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

namespace {

// Builds a json value from SAX events (the small, non-tensor parts of a request).
struct Capture {
  json* target = nullptr;
  std::vector<json*> stack;
  std::string key;
  bool started = false;
  void begin(json* t) {
    target = t;
    stack.clear();
    started = false;
  }
  json* put(json v) {
    if (!started) {
      started = true;
      *target = std::move(v);
      return target;
    }
    json* parent = stack.back();
    if (parent->is_array()) {
      parent->push_back(std::move(v));
      return &parent->back();
    }
    json& slot = (*parent)[key];
    slot = std::move(v);
    return &slot;
  }
  // true when the value is complete
  bool scalar(json v) {
    put(std::move(v));
    return stack.empty();
  }
  void open(json v) { stack.push_back(put(std::move(v))); }
  bool close() {
    stack.pop_back();
    return stack.empty();
  }
};

// SAX handler for an inference request: tensor data arrays are parsed straight into
// flat buffers (no JSON DOM per element); everything else is captured as small json values.
class RequestSax {
 public:
  explicit RequestSax(InferRequest* r) : r_(r) {}
  std::string error;                       // set when the handler stopped the parse
  std::map<std::string, json> root;        // root members other than "inputs"
  std::vector<json> fields;                // per input: its members other than "data"
  std::vector<char> data_seen;             // per input: it had a "data" array
  std::vector<char> shape_seen;            // per input: its "shape" array was read into WireTensor::shape
  bool inputs_seen = false;                // the root had an "inputs" array

  bool null() { return value(nullptr); }
  bool boolean(bool v) {
    if (st_ == Data) {
      WireTensor& t = r_->inputs.back();
      if (t.first_bool < 0) t.first_bool = t.count();
      t.ints.push_back(v ? 1 : 0);
      t.reals.push_back(v ? 1 : 0);
      return true;
    }
    return value(v);
  }
  bool number_integer(json::number_integer_t v) {
    if (st_ == Data) return push(v, (double)v);
    if (st_ == Shape) return shape_dim(v);
    return value(v);
  }
  bool number_unsigned(json::number_unsigned_t v) {
    if (st_ == Data) {
      if (v > (uint64_t)std::numeric_limits<int64_t>::max())
        return fail(where() + ": element " + std::to_string(data_count()) + " (" + std::to_string(v) +
                    ") does not fit a 64-bit integer");
      return push((int64_t)v, (double)v);
    }
    if (st_ == Shape && v <= (uint64_t)std::numeric_limits<int64_t>::max()) return shape_dim((int64_t)v);
    return value(v);
  }
  bool number_float(json::number_float_t v, const std::string& text) {
    if (st_ == Data) {
      WireTensor& t = r_->inputs.back();
      if (t.first_real < 0) {
        t.first_real = t.count();
        t.real_text = text;
      }
      return push(0, v);
    }
    return value(v);
  }
  bool string(std::string& v) {
    if (st_ == InputValue && key_ == "name") {
      r_->inputs.back().name = std::move(v);
      st_ = Input;
      return true;
    }
    if (st_ == InputValue && key_ == "datatype") {
      r_->inputs.back().datatype = std::move(v);
      st_ = Input;
      return true;
    }
    return value(std::move(v));
  }
  bool binary(json::binary_t&) { return fail("binary JSON values are not supported"); }
  // A request nests a few levels ({"inputs": [{"parameters": {...}}]}, data [[...]]); a deeper one is refused
  // before anything recurses over it (echoing or dumping a 60,000-deep value overflows the stack).
  static constexpr int kMaxDepth = 32;
  bool start_object(std::size_t) { return deeper() && open_object(); }
  bool start_array(std::size_t) { return deeper() && open_array(); }
  bool end_object() {
    --depth_;
    return close_object();
  }
  bool end_array() {
    --depth_;
    return close_array();
  }

  bool open_object() {
    if (st_ == RootValue && key_ == "id") return fail(kIdNotString + std::string("an object"));
    switch (st_) {
      case Start: st_ = Root; return true;
      case Inputs:
        r_->inputs.emplace_back();
        fields.emplace_back();
        data_seen.push_back(0);
        shape_seen.push_back(0);
        st_ = Input;
        return true;
      case CaptureValue: cap_.open(json::object()); return true;
      case Data: return fail(where() + ": element " + std::to_string(data_count()) + " of \"data\" is an object, "
                             "not a number");
      case Shape: bad_shape = true; return fail(where() + ": shape dimensions must be non-negative integers");
      default: return begin_capture() && open_object();
    }
  }
  bool close_object() {
    switch (st_) {
      case Root: st_ = End; return true;
      case Input: st_ = Inputs; return true;
      case CaptureValue:
        if (cap_.close()) st_ = after_;
        return true;
      default: return fail("unexpected end of object");
    }
  }
  bool open_array() {
    if (st_ == RootValue && key_ == "id") return fail(kIdNotString + std::string("an array"));
    switch (st_) {
      case Start: return fail("the request body must be a JSON object with \"inputs\", got an array");
      case RootValue:
        if (key_ == "inputs") {
          st_ = Inputs;
          inputs_seen = true;
          return true;
        }
        return begin_capture() && open_array();
      case InputValue:
        if (key_ == "data") {
          st_ = Data;
          data_seen.back() = 1;
          data_depth_ = 1;
          if (shape_seen.back()) {   // the usual order (name, datatype, shape, data): size the buffers once
            WireTensor& t = r_->inputs.back();
            int64_t n = 1;
            for (int64_t d : t.shape) n = d > 0 && n <= (int64_t(1) << 24) / d ? n * d : (d == 0 ? 0 : n);
            t.ints.reserve((size_t)n);
            t.reals.reserve((size_t)n);
          }
          return true;
        }
        if (key_ == "shape" && !shape_seen.back()) {
          st_ = Shape;
          shape_seen.back() = 1;
          return true;
        }
        return begin_capture() && open_array();
      case Data: ++data_depth_; return true;
      case Shape: bad_shape = true; return fail(where() + ": shape dimensions must be non-negative integers");
      case CaptureValue: cap_.open(json::array()); return true;
      case Inputs: return fail("inputs[" + std::to_string(r_->inputs.size()) + "] is not an object");
      default: return fail("unexpected array");
    }
  }
  bool close_array() {
    switch (st_) {
      case Inputs: st_ = Root; return true;
      case Shape: st_ = Input; return true;
      case Data:
        if (--data_depth_ == 0) st_ = Input;
        return true;
      case CaptureValue:
        if (cap_.close()) st_ = after_;
        return true;
      default: return fail("unexpected end of array");
    }
  }
  bool key(std::string& k) {
    key_ = k;
    if (st_ == Root) st_ = RootValue;
    else if (st_ == Input) st_ = InputValue;
    else if (st_ == CaptureValue) cap_.key = k;
    return true;
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& e) {
    error = "malformed JSON: " + strip_json_prefix(e.what());
    bad_json = true;
    return false;
  }
  bool bad_json = false;
  bool bad_shape = false;

 private:
  enum State { Start, Root, RootValue, Inputs, Input, InputValue, Data, Shape, CaptureValue, End };

  static constexpr const char* kIdNotString = "\"id\" must be a string (KServe v2), got ";
  bool deeper() {
    if (++depth_ <= kMaxDepth) return true;
    return fail("the request nests JSON arrays/objects more than " + std::to_string(kMaxDepth) +
                " levels deep; a KServe v2 request needs a few");
  }
  static std::string text_of(const json& v) {
    if (v.is_number()) return v.dump();
    std::string t = v.dump();
    return t.size() > 40 ? t.substr(0, 40) + "..." : t;
  }
  bool shape_dim(int64_t v) {
    if (v < 0) {
      bad_shape = true;
      return fail("input '" + r_->inputs.back().name + "': shape dimensions must be non-negative integers, got " +
                  std::to_string(v));
    }
    r_->inputs.back().shape.push_back(v);
    return true;
  }

  std::string where() const {
    const std::string idx = "inputs[" + std::to_string(r_->inputs.size() - 1) + "]";
    const std::string& name = r_->inputs.back().name;
    return name.empty() ? idx : "input '" + name + "' (" + idx + ")";
  }
  int64_t data_count() const { return r_->inputs.back().count(); }
  bool push(int64_t i, double d) {
    WireTensor& t = r_->inputs.back();
    if (t.first_number < 0) t.first_number = t.count();
    t.ints.push_back(i);
    t.reals.push_back(d);
    return true;
  }
  bool fail(const std::string& msg) {
    if (error.empty()) error = msg;
    return false;
  }
  // A value where a member value is due: inputs' data must be arrays; anything else is captured.
  template <class V>
  bool value(V&& v) {
    switch (st_) {
      case Start: return fail("the request body must be a JSON object with \"inputs\", got " + text_of(json(v)));
      case Data: return fail(where() + ": element " + std::to_string(data_count()) + " of \"data\" is " +
                             text_of(json(v)) + ", not a number");
      case Shape:
        bad_shape = true;
        return fail(where() + ": shape dimensions must be non-negative integers, got " + text_of(json(v)));
      case RootValue:
        if (key_ == "inputs") return fail("\"inputs\" must be an array of tensors, got " + text_of(json(v)));
        if (key_ == "id" && !std::is_same<typename std::decay<V>::type, std::string>::value)
          return fail(kIdNotString + text_of(json(v)));
        break;
      case InputValue:
        if (key_ == "data") return fail(where() + ": \"data\" must be an array, got " + text_of(json(v)));
        break;
      case Inputs: return fail("inputs[" + std::to_string(r_->inputs.size()) + "] is not an object");
      case CaptureValue:
        if (cap_.scalar(json(std::forward<V>(v)))) st_ = after_;
        return true;
      default: break;
    }
    if (!begin_capture()) return false;
    if (cap_.scalar(json(std::forward<V>(v)))) st_ = after_;
    return true;
  }
  bool begin_capture() {
    if (st_ == RootValue) {
      cap_.begin(&root[key_]);
      after_ = Root;
    } else if (st_ == InputValue) {
      cap_.begin(&fields.back()[key_]);
      after_ = Input;
    } else {
      return fail("unexpected value");
    }
    st_ = CaptureValue;
    return true;
  }

  InferRequest* r_;
  State st_ = Start, after_ = Root;
  std::string key_;
  Capture cap_;
  int data_depth_ = 0;
  int depth_ = 0;   // open arrays and objects
};

}  // namespace

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
  r.inputs.reserve(model.inputs().size() + 2);
  RequestSax sax(&r);
  const bool ok = json::sax_parse(body.begin(), body.begin() + (std::ptrdiff_t)json_len, &sax);
  if (!ok || !sax.error.empty())
    throw bad(sax.error.empty() ? "malformed JSON" : sax.error,
              sax.bad_json ? "bad_json" : sax.bad_shape ? "bad_shape" : "bad_request");
  auto rootv = [&](const char* k) -> const json* {
    auto it = sax.root.find(k);
    return it == sax.root.end() ? nullptr : &it->second;
  };
  if (!sax.inputs_seen)
    throw bad("the request needs \"inputs\": an array of tensors {\"name\", \"datatype\", \"shape\", \"data\"}");
  if (const json* id = rootv("id")) r.id = *id;

  // ---- inputs: name, datatype, shape, and their data in JSON or after the JSON header
  const unsigned char* bin = reinterpret_cast<const unsigned char*>(body.data()) + json_len;
  const size_t bin_size = body.size() - json_len;
  size_t used = 0;
  for (size_t k = 0; k < r.inputs.size(); ++k) {
    WireTensor& w = r.inputs[k];
    const json& t = sax.fields[k];
    if (w.name.empty()) throw bad("inputs[" + std::to_string(k) + "] lacks \"name\" (a non-empty string)");
    auto what = [&] { return "input '" + w.name + "'"; };
    if (w.datatype.empty()) throw bad(what() + " lacks \"datatype\" (a string, e.g. \"FP32\", \"INT64\")", "bad_datatype");
    if (kserve_itemsize(w.datatype) == 0)
      throw bad(what() + ": unknown or unsupported datatype \"" + w.datatype + "\"", "bad_datatype");
    if (!sax.shape_seen[k]) throw bad(what() + " lacks \"shape\" (an array)", "bad_shape");
    const json* params = t.is_object() && t.contains("parameters") && t["parameters"].is_object() ? &t["parameters"]
                                                                                               : nullptr;
    if (params && params->contains("shared_memory_region"))
      throw bad(what() + ": shared-memory inputs are not supported by this server; send the data");
    if (params && params->contains("binary_data_size")) {
      const json& bs = (*params)["binary_data_size"];
      if (!bs.is_number_integer() || bs.get<int64_t>() < 0)
        throw bad(what() + ": parameters.binary_data_size must be a non-negative integer");
      const size_t n = (size_t)bs.get<int64_t>();
      if (n > bin_size - used)
        throw bad(what() + ": its " + std::to_string(n) + " bytes of binary data run past the end of the body (" +
                  std::to_string(bin_size - used) + " bytes left after the JSON header)");
      w.is_raw = true;
      w.raw = bin + used;
      w.raw_size = n;
      used += n;
    } else if (!sax.data_seen[k]) {
      throw bad(what() + " has no \"data\" (nor parameters.binary_data_size)");
    }
  }
  if (used != bin_size)
    throw bad("the body holds " + std::to_string(bin_size) + " bytes after its JSON header but the inputs' "
              "binary_data_size add up to " + std::to_string(used));

  // ---- what to return
  bool binary_all = false;
  if (const json* pp = rootv("parameters")) {
    if (!pp->is_object()) throw bad("\"parameters\" must be an object");
    const json& p = *pp;
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
  if (const json* op = rootv("outputs")) {
    if (!op->is_array()) throw bad("\"outputs\" must be an array of {\"name\": ...}");
    for (const json& o : *op) {
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
  r.body = head.dump(-1, ' ', false, json::error_handler_t::replace);
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
