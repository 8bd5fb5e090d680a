// served_model.cpp: see served_model.h.
#include "served_model.h"

#include <cctype>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>
#include <sstream>

namespace xrec {
namespace serve {

using nlohmann::json;

// ------------------------------------------------------------------ datatypes
const char* kserve_datatype(int dt) {
  switch (dt) {
    case XREC_F32: return "FP32";
    case XREC_F16: return "FP16";
    case XREC_F64: return "FP64";
    case XREC_I32: return "INT32";
    case XREC_I64: return "INT64";
    case XREC_I8: return "INT8";
    case XREC_U8: return "UINT8";
    case XREC_BOOL: return "BOOL";
    case XREC_BF16: return "BF16";
  }
  return "UNKNOWN";
}

int xrec_dtype_of_manifest(const std::string& s) {
  static const std::map<std::string, int> m = {{"f32", XREC_F32}, {"f16", XREC_F16}, {"f64", XREC_F64},
                                               {"i32", XREC_I32}, {"i64", XREC_I64}, {"i8", XREC_I8},
                                               {"u8", XREC_U8},   {"bool", XREC_BOOL}, {"bf16", XREC_BF16}};
  auto it = m.find(s);
  return it == m.end() ? -1 : it->second;
}

size_t kserve_itemsize(const std::string& d) {
  static const std::map<std::string, size_t> m = {
      {"BOOL", 1},   {"UINT8", 1},  {"INT8", 1},  {"UINT16", 2}, {"INT16", 2}, {"FP16", 2}, {"BF16", 2},
      {"UINT32", 4}, {"INT32", 4},  {"FP32", 4},  {"UINT64", 8}, {"INT64", 8}, {"FP64", 8}};
  auto it = m.find(d);
  return it == m.end() ? 0 : it->second;
}

static std::string shape_str(const std::vector<int64_t>& s) {
  std::string o = "[";
  for (size_t i = 0; i < s.size(); ++i) o += (i ? "," : "") + std::to_string(s[i]);
  return o + "]";
}

static std::string dims_str(const std::vector<Dim>& d) {
  std::string o = "[";
  for (size_t i = 0; i < d.size(); ++i) o += (i ? "," : "") + d[i].text;
  return o + "]";
}

static std::string q(const std::string& s) { return "'" + s + "'"; }

// ------------------------------------------------------------------ symbolic dims
Dim Dim::parse(const std::string& text) {
  Dim d;
  d.text = text;
  std::string s;
  for (char c : text)
    if (!std::isspace((unsigned char)c)) s += c;
  if (s.empty()) return d;
  size_t i = 0;
  while (i < s.size()) {
    int64_t sign = 1;
    if (s[i] == '+' || s[i] == '-') {
      sign = s[i] == '-' ? -1 : 1;
      ++i;
    } else if (i != 0) {
      return d;
    }
    size_t j = i;
    while (j < s.size() && s[j] != '+' && s[j] != '-') ++j;
    std::string term = s.substr(i, j - i);
    if (term.empty()) return d;
    int64_t coef = 1;
    std::string sym = term;
    size_t star = term.find('*');
    if (star != std::string::npos) {
      std::string a = term.substr(0, star);
      sym = term.substr(star + 1);
      if (a.empty() || a.find_first_not_of("0123456789") != std::string::npos) return d;
      coef = std::stoll(a);
    }
    if (sym.find_first_not_of("0123456789") == std::string::npos) {
      if (star != std::string::npos) return d;
      d.constant += sign * std::stoll(sym);
    } else {
      if (!(std::isalpha((unsigned char)sym[0]) || sym[0] == '_')) return d;
      for (char c : sym)
        if (!(std::isalnum((unsigned char)c) || c == '_')) return d;
      d.terms.push_back({sym, sign * coef});
    }
    i = j;
  }
  d.parsed = true;
  return d;
}

// ------------------------------------------------------------------ loading
static std::vector<Dim> parse_dims(const json& shape) {
  std::vector<Dim> out;
  for (const json& d : shape) out.push_back(Dim::parse(d.is_string() ? d.get<std::string>() : d.dump()));
  return out;
}

std::unique_ptr<ServedModel> ServedModel::open(const std::string& dir, const LoadOptions& options) {
  std::unique_ptr<ServedModel> m(new ServedModel());
  m->model_ = Model::open(dir, options);   // the C ABI checks the manifest, ISA, fingerprint and weights
  std::ifstream f(dir + "/manifest.json");
  if (!f) throw Error(XREC_ERR_ARTIFACT, dir + ": cannot read manifest.json");
  json mf;
  try {
    mf = json::parse(f);
  } catch (const std::exception& e) {
    throw Error(XREC_ERR_ARTIFACT, dir + "/manifest.json is corrupt: " + e.what());
  }
  m->name_ = mf.value("model", m->model_->name());
  const json& sig = mf.at("signature");
  const json& sins = sig.at("inputs");
  const auto& abi = m->model_->inputs();
  if (sins.size() != abi.size())
    throw Error(XREC_ERR_ARTIFACT, dir + ": manifest.json lists " + std::to_string(sins.size()) +
                                       " inputs but the model library has " + std::to_string(abi.size()));
  for (size_t i = 0; i < abi.size(); ++i) {
    Input in;
    in.name = abi[i].name;
    in.kind = abi[i].kind;
    in.dtype = abi[i].dtype;
    if (sins[i].value("name", std::string()) != in.name)
      throw Error(XREC_ERR_ARTIFACT, dir + ": manifest.json input " + std::to_string(i) + " is " +
                                         q(sins[i].value("name", std::string())) + " but the model library's is " +
                                         q(in.name) + "; the artifact is mismatched");
    in.dims = parse_dims(sins[i].at("shape"));
    m->inputs_.push_back(in);
  }
  if (sig.contains("features")) {
    for (const json& fj : sig["features"]) {
      Feature ft;
      ft.name = fj.value("feature", std::string());
      if (fj.contains("indices") && fj["indices"].is_number_integer()) ft.indices = fj["indices"].get<int>();
      if (fj.contains("offsets") && fj["offsets"].is_number_integer()) ft.offsets = fj["offsets"].get<int>();
      ft.include_last_offset = fj.value("include_last_offset", true);
      if (fj.contains("num_rows") && fj["num_rows"].is_number_integer()) ft.num_rows = fj["num_rows"].get<int64_t>();
      m->features_.push_back(ft);
    }
  }
  const json& souts = sig.at("outputs");
  const int nout = m->model_->num_outputs();
  if ((int)souts.size() != nout)
    throw Error(XREC_ERR_ARTIFACT, dir + ": manifest.json lists " + std::to_string(souts.size()) +
                                       " outputs but the model library has " + std::to_string(nout));
  for (int k = 0; k < nout; ++k) {
    Output o;
    o.name = nout == 1 ? "output" : "output[" + std::to_string(k) + "]";
    o.dtype = xrec_dtype_of_manifest(souts[k].value("dtype", std::string()));
    o.dims = parse_dims(souts[k].at("shape"));
    m->outputs_.push_back(o);
  }

  // roles: how each input merges across requests
  const int n = (int)m->inputs_.size();
  for (int f = 0; f < (int)m->features_.size(); ++f) {
    const Feature& ft = m->features_[f];
    if (ft.indices < 0 || ft.indices >= n || ft.offsets < 0 || ft.offsets >= n) continue;
    Input& off = m->inputs_[ft.offsets];
    off.role = Role::Offsets;
    off.feature = f;
    const size_t at = off.name.find("offsets");
    if (at != std::string::npos) off.lengths_name = off.name.substr(0, at) + "lengths" + off.name.substr(at + 7);
    const std::string jag = m->inputs_[ft.indices].dims.empty() ? "" : m->inputs_[ft.indices].dims[0].text;
    for (Input& in : m->inputs_)
      if (in.role == Role::Fixed && in.dims.size() == 1 && !jag.empty() && in.dims[0].text == jag &&
          in.dims[0].is_symbol()) {
        in.role = Role::Jagged;
        in.feature = f;
      }
  }
  bool has_batch = false;
  for (Input& in : m->inputs_)
    if (in.role == Role::Fixed && !in.dims.empty() && in.dims[0].text == m->batch_symbol_) {
      in.role = Role::Rows;
      has_batch = true;
    }
  for (const Input& in : m->inputs_) has_batch = has_batch || in.role == Role::Offsets;   // offsets [B+1] say B too
  m->batchable_ = has_batch;
  if (!has_batch) m->not_batchable_ = "no input has the batch dimension B first";
  for (const Input& in : m->inputs_)
    if (m->batchable_ && in.role == Role::Fixed) {
      m->batchable_ = false;
      m->not_batchable_ = "input " + q(in.name) + " (shape " + dims_str(in.dims) + ") has no batch dimension";
    }
  for (const Output& o : m->outputs_)
    if (m->batchable_ && (o.dims.empty() || o.dims[0].text != m->batch_symbol_)) {
      m->batchable_ = false;
      m->not_batchable_ = "output " + q(o.name) + " (shape " + dims_str(o.dims) + ") has no batch dimension first";
    }
  // no lengths alias without a batch dimension to give it a shape
  if (!has_batch)
    for (Input& in : m->inputs_) in.lengths_name.clear();
  // symbol ids for the per-request binding
  auto resolve = [&](Dim& d) {
    d.ids.clear();
    for (const auto& t : d.terms) {
      size_t s = 0;
      while (s < m->symbols_.size() && m->symbols_[s] != t.first) ++s;
      if (s == m->symbols_.size()) m->symbols_.push_back(t.first);
      d.ids.push_back((int)s);
    }
  };
  for (Input& in : m->inputs_)
    for (Dim& d : in.dims) resolve(d);
  m->lengths_dims_ = {Dim::parse(m->batch_symbol_)};
  resolve(m->lengths_dims_[0]);
  m->batch_id_ = m->lengths_dims_[0].ids[0];
  for (int i = 0; i < n; ++i) {
    m->by_name_[m->inputs_[i].name] = {i, false};
    if (!m->inputs_[i].lengths_name.empty()) m->by_name_.emplace(m->inputs_[i].lengths_name, std::make_pair(i, true));
  }
  return m;
}

// ------------------------------------------------------------------ describing
std::string ServedModel::input_list() const {
  std::string out;
  size_t i = 0;
  auto split = [](const std::string& s, std::string* prefix, long* k) {
    size_t lb = s.rfind('[');
    if (lb == std::string::npos || s.back() != ']' || lb + 2 > s.size() - 1) return false;
    std::string num = s.substr(lb + 1, s.size() - lb - 2);
    if (num.empty() || num.find_first_not_of("0123456789") != std::string::npos) return false;
    *prefix = s.substr(0, lb);
    *k = std::stol(num);
    return true;
  };
  while (i < inputs_.size()) {
    std::string p0, p;
    long k0, k;
    size_t j = i + 1;
    if (split(inputs_[i].name, &p0, &k0)) {
      while (j < inputs_.size() && split(inputs_[j].name, &p, &k) && p == p0 && k == k0 + (long)(j - i)) ++j;
    }
    if (!out.empty()) out += ", ";
    out += inputs_[i].name;
    if (j - i > 2) out += ".." + inputs_[j - 1].name;
    else if (j - i == 2) out += ", " + inputs_[j - 1].name;
    i = j;
  }
  for (const Input& in : inputs_)
    if (!in.lengths_name.empty()) {
      out += " (lengths[k] may replace offsets[k])";
      break;
    }
  return out;
}

json ServedModel::metadata() const {
  json ins = json::array(), outs = json::array();
  for (const Input& in : inputs_) {
    json shape = json::array();
    for (const Dim& d : in.dims) shape.push_back(d.parsed && d.terms.empty() ? d.constant : -1);
    ins.push_back({{"name", in.name}, {"datatype", kserve_datatype(in.dtype)}, {"shape", shape}});
  }
  for (const Output& o : outputs_) {
    json shape = json::array();
    for (const Dim& d : o.dims) shape.push_back(d.parsed && d.terms.empty() ? d.constant : -1);
    outs.push_back({{"name", o.name}, {"datatype", kserve_datatype(o.dtype)}, {"shape", shape}});
  }
  return {{"name", name_}, {"versions", {"1"}}, {"platform", "xrec_cpu"}, {"inputs", ins}, {"outputs", outs}};
}

// ------------------------------------------------------------------ checking one request
namespace {

bool is_ids(const ServedModel::Input& in) { return in.kind == "indices" || in.kind == "offsets"; }

int64_t checked_numel(const std::string& name, const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) throw RequestError(400, "bad_shape", "input " + q(name) + ": shape " + shape_str(shape) +
                                                        " has a negative dimension");
    if (d > 0 && n > (int64_t(1) << 40) / d)
      throw RequestError(400, "bad_shape", "input " + q(name) + ": shape " + shape_str(shape) + " is too large");
    n *= d;
  }
  return n;
}

RequestError not_a(const WireTensor& t, int64_t i, const std::string& text, const char* what) {
  return RequestError(400, "bad_value", "input " + q(t.name) + ": element " + std::to_string(i) + " is " + text +
                                            ", not " + what + " (datatype " + t.datatype + ")");
}

// The elements of `t` as int64 (ids), from JSON integers or raw INT32/INT64 bytes.
void read_ids(const WireTensor& t, int64_t n, int64_t* out) {
  if (t.is_raw) {
    if (t.datatype == "INT64") std::memcpy(out, t.raw, (size_t)n * 8);
    else
      for (int64_t i = 0; i < n; ++i) {
        int32_t v;
        std::memcpy(&v, t.raw + 4 * i, 4);
        out[i] = v;
      }
    return;
  }
  const int64_t bad = t.first_real < 0 ? t.first_bool : t.first_bool < 0 ? t.first_real
                                                                           : std::min(t.first_real, t.first_bool);
  if (bad >= 0) throw not_a(t, bad, bad == t.first_real ? t.real_text : (t.ints[bad] ? "true" : "false"),
                            "an integer");
  if (t.datatype == "INT32")
    for (int64_t i = 0; i < n; ++i)
      if (t.ints[i] < std::numeric_limits<int32_t>::min() || t.ints[i] > std::numeric_limits<int32_t>::max())
        throw RequestError(400, "bad_value", "input " + q(t.name) + ": element " + std::to_string(i) + " (" +
                                                 std::to_string(t.ints[i]) + ") does not fit INT32");
  std::memcpy(out, t.ints.data(), (size_t)n * 8);
}

// The elements of `t` in the model's dtype `dt` (datatype already checked to be dt's).
void read_values(const WireTensor& t, int dt, int64_t n, unsigned char* out) {
  const size_t item = Tensor::itemsize(dt);
  if (t.is_raw) {
    std::memcpy(out, t.raw, (size_t)n * item);
    return;
  }
  switch (dt) {
    case XREC_F32:
    case XREC_F64:
      if (t.first_bool >= 0) throw not_a(t, t.first_bool, t.ints[t.first_bool] ? "true" : "false", "a number");
      if (dt == XREC_F32)
        for (int64_t i = 0; i < n; ++i) reinterpret_cast<float*>(out)[i] = (float)t.reals[i];
      else
        std::memcpy(out, t.reals.data(), (size_t)n * 8);
      return;
    case XREC_BOOL:
      if (t.first_number >= 0) throw not_a(t, t.first_number, std::to_string(t.reals[t.first_number]), "a boolean");
      for (int64_t i = 0; i < n; ++i) out[i] = t.ints[i] ? 1 : 0;
      return;
    case XREC_I32: case XREC_I64: case XREC_I8: case XREC_U8: {
      const int64_t bad = t.first_real >= 0 ? t.first_real : t.first_bool;
      if (bad >= 0) throw not_a(t, bad, bad == t.first_real ? t.real_text : "a boolean", "an integer");
      const int64_t lo = dt == XREC_I32 ? std::numeric_limits<int32_t>::min() : dt == XREC_I8 ? -128
                         : dt == XREC_U8 ? 0 : std::numeric_limits<int64_t>::min();
      const int64_t hi = dt == XREC_I32 ? std::numeric_limits<int32_t>::max() : dt == XREC_I8 ? 127
                         : dt == XREC_U8 ? 255 : std::numeric_limits<int64_t>::max();
      for (int64_t i = 0; i < n; ++i) {
        const int64_t v = t.ints[i];
        if (v < lo || v > hi)
          throw RequestError(400, "bad_value", "input " + q(t.name) + ": element " + std::to_string(i) + " (" +
                                                   std::to_string(v) + ") does not fit " + t.datatype);
        if (dt == XREC_I32) { int32_t x = (int32_t)v; std::memcpy(out + 4 * i, &x, 4); }
        else if (dt == XREC_I64) std::memcpy(out + 8 * i, &v, 8);
        else if (dt == XREC_I8) out[i] = (unsigned char)(int8_t)v;
        else out[i] = (unsigned char)v;
      }
      return;
    }
  }
  throw RequestError(400, "bad_datatype", "input " + q(t.name) + ": send " + t.datatype +
                                              " tensors as binary data (binary_data_size), not JSON");
}

}  // namespace

Prepared ServedModel::prepare(const std::vector<WireTensor>& ts) const {
  const int n = (int)inputs_.size();
  std::vector<const WireTensor*> slot(n, nullptr);
  std::vector<char> as_lengths(n, 0);

  // ---- names: every input given once (offsets or lengths), nothing else
  for (const WireTensor& t : ts) {
    auto it = by_name_.find(t.name);
    if (it == by_name_.end())
      throw RequestError(400, "unknown_input", "unknown input " + q(t.name) + ": model " + q(name_) + " takes " +
                                                   input_list());
    const int found = it->second.first;
    const bool len = it->second.second;
    if (slot[found]) {
      if (as_lengths[found] != (char)len)
        throw RequestError(400, "bad_request", "give either " + q(inputs_[found].name) + " or " +
                                                   q(inputs_[found].lengths_name) + ", not both");
      throw RequestError(400, "bad_request", "input " + q(t.name) + " is given twice");
    }
    slot[found] = &t;
    as_lengths[found] = len;
  }
  std::string missing;
  int n_missing = 0;
  for (int i = 0; i < n; ++i)
    if (!slot[i]) {
      if (n_missing < 6) {
        missing += (missing.empty() ? "" : ", ") + q(inputs_[i].name);
        if (!inputs_[i].lengths_name.empty()) missing += " (or " + q(inputs_[i].lengths_name) + ")";
      }
      ++n_missing;
    }
  if (n_missing)
    throw RequestError(400, "missing_input", std::string(n_missing > 1 ? "missing inputs " : "missing input ") +
                                                 missing + (n_missing > 6 ? " and " + std::to_string(n_missing - 6) +
                                                                                " more"
                                                                          : "") +
                                                 ": model " + q(name_) + " takes " + input_list());

  // ---- datatypes, ranks, element counts
  auto want = [&](int i) -> const std::vector<Dim>& { return as_lengths[i] ? lengths_dims_ : inputs_[i].dims; };
  for (int i = 0; i < n; ++i) {
    const Input& in = inputs_[i];
    const WireTensor& t = *slot[i];
    const bool ids = is_ids(in) || as_lengths[i];
    if (ids ? (t.datatype != "INT64" && t.datatype != "INT32") : t.datatype != kserve_datatype(in.dtype))
      throw RequestError(400, "bad_datatype", "input " + q(t.name) + ": datatype " + t.datatype + ", expected " +
                                                  (ids ? std::string("INT64 or INT32") : kserve_datatype(in.dtype)));
    if (t.shape.size() != want(i).size())
      throw RequestError(400, "bad_shape", "input " + q(t.name) + ": shape " + shape_str(t.shape) + " has rank " +
                                               std::to_string(t.shape.size()) + ", expected rank " +
                                               std::to_string(want(i).size()) + " " + dims_str(want(i)));
    const int64_t numel = checked_numel(t.name, t.shape);
    if (t.is_raw) {
      const size_t need = (size_t)numel * kserve_itemsize(t.datatype);
      if (t.raw_size != need)
        throw RequestError(400, "bad_shape", "input " + q(t.name) + ": shape " + shape_str(t.shape) + " of " +
                                                 t.datatype + " needs " + std::to_string(need) +
                                                 " bytes of binary data, got " + std::to_string(t.raw_size));
    } else if (t.count() != numel) {
      throw RequestError(400, "bad_shape", "input " + q(t.name) + ": shape " + shape_str(t.shape) + " needs " +
                                               std::to_string(numel) + " elements, 'data' holds " +
                                               std::to_string(t.count()));
    }
  }

  // ---- symbolic dims: bind B, N_indices_k, ... (symbol ids resolved at load) and check every shape
  const size_t ns = symbols_.size();
  std::vector<int64_t> val(ns, 0);
  std::vector<int> from(ns, -1);   // the input that set each symbol
  for (int i = 0; i < n; ++i)
    for (size_t d = 0; d < want(i).size(); ++d) {
      const Dim& w = want(i)[d];
      if (w.is_symbol() && from[w.ids[0]] < 0) {
        val[w.ids[0]] = slot[i]->shape[d];
        from[w.ids[0]] = i;
      }
    }
  for (int i = 0; i < n; ++i)       // linear dims in one unbound symbol (e.g. only B+1 says what B is)
    for (size_t d = 0; d < want(i).size(); ++d) {
      const Dim& w = want(i)[d];
      if (!w.parsed || w.ids.size() != 1 || from[w.ids[0]] >= 0) continue;
      const int64_t rest = slot[i]->shape[d] - w.constant, c = w.terms[0].second;
      if (c != 0 && rest % c == 0 && rest / c >= 0) {
        val[w.ids[0]] = rest / c;
        from[w.ids[0]] = i;
      }
    }
  for (int i = 0; i < n; ++i) {
    const std::vector<Dim>& ws = want(i);
    bool bad = false;
    std::vector<int64_t> expect(ws.size());
    for (size_t d = 0; d < ws.size(); ++d) {
      const Dim& w = ws[d];
      int64_t v = w.constant;
      bool known = w.parsed;
      for (size_t k = 0; k < w.ids.size() && known; ++k) {
        known = from[w.ids[k]] >= 0;
        v += w.terms[k].second * val[w.ids[k]];
      }
      expect[d] = known ? v : slot[i]->shape[d];
      bad = bad || (known && v != slot[i]->shape[d]);
    }
    if (!bad) continue;
    std::string why;
    for (const Dim& w : ws)
      for (size_t k = 0; k < w.ids.size(); ++k) {
        const int s = w.ids[k];
        const std::string& sym = symbols_[s];
        if (from[s] >= 0 && from[s] != i && why.find(sym + " =") == std::string::npos)
          why += (why.empty() ? "" : ", ") + sym + " = " + std::to_string(val[s]) + " (from " +
                 q(slot[from[s]]->name) + ")";
      }
    throw RequestError(400, "bad_shape", "input " + q(slot[i]->name) + ": shape " + shape_str(slot[i]->shape) +
                                             " does not fit its signature " + dims_str(ws) +
                                             (why.empty() ? "" : ": " + why) + ", so it must be " + shape_str(expect));
  }

  // ---- values, in the model's layout (ids as int64: the C ABI takes int32 or int64)
  Prepared p;
  p.inputs.resize(n);
  for (int i = 0; i < n; ++i) {
    const Input& in = inputs_[i];
    const WireTensor& t = *slot[i];
    Tensor& out = p.inputs[i];
    const int64_t numel = checked_numel(t.name, t.shape);
    if (is_ids(in) || as_lengths[i]) {
      std::vector<int64_t> v((size_t)numel);
      read_ids(t, numel, v.data());
      if (as_lengths[i]) {   // lengths -> offsets
        const Feature& ft = features_[in.feature];
        for (int64_t r = 0; r < numel; ++r)
          if (v[r] < 0)
            throw RequestError(400, "bad_offsets", "input " + q(t.name) + ": element " + std::to_string(r) + " is " +
                                                       std::to_string(v[r]) + "; lengths must be >= 0");
        std::vector<int64_t> off((size_t)numel + (ft.include_last_offset ? 1 : 0));
        int64_t acc = 0;
        for (int64_t r = 0; r < numel; ++r) {
          off[r] = acc;
          acc += v[r];
        }
        if (ft.include_last_offset) off[numel] = acc;
        const int64_t nnz = ft.indices >= 0 ? checked_numel(slot[ft.indices]->name, slot[ft.indices]->shape) : acc;
        if (acc != nnz)
          throw RequestError(400, "bad_offsets", "input " + q(t.name) + ": lengths sum to " + std::to_string(acc) +
                                                     " but " + q(inputs_[ft.indices].name) + " holds " +
                                                     std::to_string(nnz) + " ids");
        v.swap(off);
      }
      out.dtype = XREC_I64;
      out.shape = {(int64_t)v.size()};
      if (!as_lengths[i]) out.shape = t.shape;
      out.bytes.resize(v.size() * 8);
      std::memcpy(out.bytes.data(), v.data(), v.size() * 8);
    } else {
      out.dtype = in.dtype;
      out.shape = t.shape;
      out.bytes.resize((size_t)numel * Tensor::itemsize(in.dtype));
      read_values(t, in.dtype, numel, out.bytes.data());
    }
  }
  for (const Feature& ft : features_) {
    if (ft.indices < 0 || ft.offsets < 0 || ft.indices >= n || ft.offsets >= n) continue;
    const Tensor& idx = p.inputs[ft.indices];
    const Tensor& offt = p.inputs[ft.offsets];
    if (idx.dtype != XREC_I64 || offt.dtype != XREC_I64) continue;
    const int64_t* ids = idx.data<int64_t>();
    const int64_t* off = offt.data<int64_t>();
    const int64_t nnz = idx.numel(), m = offt.numel();
    const std::string oname = inputs_[ft.offsets].name;
    const std::string iname = inputs_[ft.indices].name;
    if (!as_lengths[ft.offsets] && m > 0) {   // (lengths were checked when converted)
      if (off[0] != 0)
        throw RequestError(400, "bad_offsets", "input " + q(oname) + ": offsets must start at 0, got " +
                                                   std::to_string(off[0]));
      for (int64_t r = 1; r < m; ++r)
        if (off[r] < off[r - 1])
          throw RequestError(400, "bad_offsets", "input " + q(oname) + ": offsets decrease at position " +
                                                     std::to_string(r) + " (" + std::to_string(off[r - 1]) + " then " +
                                                     std::to_string(off[r]) + "); offsets must be non-decreasing");
      if (ft.include_last_offset && off[m - 1] != nnz)
        throw RequestError(400, "bad_offsets", "input " + q(oname) + ": offsets end at " + std::to_string(off[m - 1]) +
                                                   " but " + q(iname) + " holds " + std::to_string(nnz) +
                                                   " ids (the last offset must equal the number of ids)");
      if (!ft.include_last_offset && off[m - 1] > nnz)
        throw RequestError(400, "bad_offsets", "input " + q(oname) + ": offsets reach " + std::to_string(off[m - 1]) +
                                                   " beyond the " + std::to_string(nnz) + " ids of " + q(iname));
    }
    if (ft.num_rows >= 0)
      for (int64_t j = 0; j < nnz; ++j)
        if (ids[j] < 0 || ids[j] >= ft.num_rows)
          throw RequestError(400, "index_out_of_range",
                             "input " + q(iname) + ": index " + std::to_string(ids[j]) + " at position " +
                                 std::to_string(j) + " is out of range for its table of " +
                                 std::to_string(ft.num_rows) + " rows (valid: 0.." + std::to_string(ft.num_rows - 1) +
                                 ")");
  }

  // ---- the C ABI's own checks of these inputs (shapes, dtypes)
  std::vector<xrec_tensor> views;
  for (const Tensor& t : p.inputs) views.push_back(t.view());
  try {
    model_->output_shapes(views.data(), (int)views.size());
  } catch (const Error& e) {
    throw RequestError(400, "bad_request", std::string("the model rejects these inputs: ") + e.what());
  }
  p.rows = batch_id_ >= 0 && from[batch_id_] >= 0 ? val[batch_id_] : 1;
  return p;
}

// ------------------------------------------------------------------ merging and splitting
std::vector<Tensor> ServedModel::merge(const std::vector<const Prepared*>& parts) const {
  const int n = (int)inputs_.size();
  std::vector<Tensor> out(n);
  int64_t rows = 0;
  for (const Prepared* p : parts) rows += p->rows;
  for (int i = 0; i < n; ++i) {
    const Input& in = inputs_[i];
    Tensor& o = out[i];
    o.dtype = parts[0]->inputs[i].dtype;
    if (in.role == Role::Offsets) {
      const Feature& ft = features_[in.feature];
      const bool last = ft.include_last_offset;
      std::vector<int64_t> v;
      v.reserve((size_t)rows + 1);
      if (last) v.push_back(0);
      int64_t base = 0;
      for (const Prepared* p : parts) {
        const Tensor& t = p->inputs[i];
        const int64_t* off = t.data<int64_t>();
        const int64_t m = t.numel();
        for (int64_t r = last ? 1 : 0; r < m; ++r) v.push_back(off[r] + base);
        base += p->inputs[ft.indices].numel();
      }
      o.dtype = XREC_I64;
      o.shape = {(int64_t)v.size()};
      o.bytes.resize(v.size() * 8);
      std::memcpy(o.bytes.data(), v.data(), v.size() * 8);
    } else {   // rows and jagged inputs: concatenate along the first dimension
      size_t bytes = 0;
      int64_t first = 0;
      for (const Prepared* p : parts) {
        bytes += p->inputs[i].bytes.size();
        first += p->inputs[i].shape.empty() ? 0 : p->inputs[i].shape[0];
      }
      o.shape = parts[0]->inputs[i].shape;
      if (!o.shape.empty()) o.shape[0] = first;
      o.bytes.resize(bytes);
      size_t at = 0;
      for (const Prepared* p : parts) {
        const auto& b = p->inputs[i].bytes;
        if (!b.empty()) std::memcpy(o.bytes.data() + at, b.data(), b.size());
        at += b.size();
      }
    }
  }
  return out;
}

std::vector<std::vector<Tensor>> ServedModel::split(const std::vector<Tensor>& outs,
                                                    const std::vector<const Prepared*>& parts) const {
  std::vector<std::vector<Tensor>> res(parts.size(), std::vector<Tensor>(outs.size()));
  int64_t total = 0;
  for (const Prepared* p : parts) total += p->rows;
  for (size_t k = 0; k < outs.size(); ++k) {
    const Tensor& o = outs[k];
    if (o.shape.empty() || o.shape[0] != total)
      throw Error(XREC_ERR_RUNTIME, "output " + std::to_string(k) + " of a merged batch has shape " +
                                        shape_str(o.shape) + ", not " + std::to_string(total) + " rows");
    const size_t row_bytes = total ? o.bytes.size() / (size_t)total : 0;
    size_t at = 0;
    for (size_t r = 0; r < parts.size(); ++r) {
      Tensor& t = res[r][k];
      t.dtype = o.dtype;
      t.shape = o.shape;
      t.shape[0] = parts[r]->rows;
      const size_t nb = row_bytes * (size_t)parts[r]->rows;
      t.bytes.assign(o.bytes.begin() + at, o.bytes.begin() + at + nb);
      at += nb;
    }
  }
  return res;
}

}  // namespace serve
}  // namespace xrec
