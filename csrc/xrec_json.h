// xrec_json.h: a small JSON reader, enough for an artifact's manifest.json.
// Header-only C++17; parse errors throw std::runtime_error with the byte offset.
#pragma once
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <cstdlib>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace xrec {
namespace json {

struct Value {
  enum Kind { Null, Bool, Number, String, Array, Object } kind = Null;
  bool b = false;
  double num = 0;
  std::string text;                       // String: the string; Number: its literal text
  std::vector<Value> items;               // Array
  std::map<std::string, Value> fields;    // Object

  const Value* get(const std::string& key) const {
    if (kind != Object) return nullptr;
    auto it = fields.find(key);
    return it == fields.end() ? nullptr : &it->second;
  }
  // a path of object keys: v.at({"weights", "bytes"}); null if any step is missing
  const Value* at(std::initializer_list<const char*> path) const {
    const Value* v = this;
    for (const char* k : path) {
      v = v ? v->get(k) : nullptr;
    }
    return v;
  }
  bool is_string() const { return kind == String; }
  bool is_number() const { return kind == Number; }
  int64_t as_int() const { return std::strtoll(text.c_str(), nullptr, 10); }
  uint64_t as_uint() const { return std::strtoull(text.c_str(), nullptr, 10); }
};

class Parser {
 public:
  explicit Parser(const std::string& s) : s_(s) {}
  Value parse() {
    Value v = value();
    ws();
    if (i_ != s_.size()) fail("trailing characters");
    return v;
  }

 private:
  const std::string& s_;
  size_t i_ = 0;

  [[noreturn]] void fail(const char* what) {
    throw std::runtime_error(std::string("JSON: ") + what + " at byte " + std::to_string(i_));
  }
  void ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\n' || s_[i_] == '\r' || s_[i_] == '\t')) ++i_;
  }
  bool eat(char c) {
    ws();
    if (i_ < s_.size() && s_[i_] == c) {
      ++i_;
      return true;
    }
    return false;
  }
  void expect(char c) {
    if (!eat(c)) fail((std::string("expected '") + c + "'").c_str());
  }
  bool word(const char* w) {
    size_t n = std::char_traits<char>::length(w);
    if (s_.compare(i_, n, w) == 0) {
      i_ += n;
      return true;
    }
    return false;
  }
  Value value() {
    ws();
    if (i_ >= s_.size()) fail("unexpected end");
    Value v;
    char c = s_[i_];
    if (c == '{') {
      ++i_;
      v.kind = Value::Object;
      if (eat('}')) return v;
      do {
        ws();
        std::string k = string();
        expect(':');
        v.fields[k] = value();
      } while (eat(','));
      expect('}');
    } else if (c == '[') {
      ++i_;
      v.kind = Value::Array;
      if (eat(']')) return v;
      do {
        v.items.push_back(value());
      } while (eat(','));
      expect(']');
    } else if (c == '"') {
      v.kind = Value::String;
      v.text = string();
    } else if (word("true")) {
      v.kind = Value::Bool;
      v.b = true;
    } else if (word("false")) {
      v.kind = Value::Bool;
    } else if (word("null")) {
      v.kind = Value::Null;
    } else if (c == '-' || (c >= '0' && c <= '9')) {
      size_t st = i_;
      while (i_ < s_.size() && (std::strchr("+-.eE", s_[i_]) || (s_[i_] >= '0' && s_[i_] <= '9'))) ++i_;
      v.kind = Value::Number;
      v.text = s_.substr(st, i_ - st);
      v.num = std::strtod(v.text.c_str(), nullptr);
    } else {
      fail("unexpected character");
    }
    return v;
  }
  static void utf8(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
      out += (char)cp;
    } else if (cp < 0x800) {
      out += (char)(0xC0 | (cp >> 6));
      out += (char)(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += (char)(0xE0 | (cp >> 12));
      out += (char)(0x80 | ((cp >> 6) & 0x3F));
      out += (char)(0x80 | (cp & 0x3F));
    } else {
      out += (char)(0xF0 | (cp >> 18));
      out += (char)(0x80 | ((cp >> 12) & 0x3F));
      out += (char)(0x80 | ((cp >> 6) & 0x3F));
      out += (char)(0x80 | (cp & 0x3F));
    }
  }
  uint32_t hex4() {
    if (i_ + 4 > s_.size()) fail("short \\u escape");
    uint32_t v = (uint32_t)std::strtoul(s_.substr(i_, 4).c_str(), nullptr, 16);
    i_ += 4;
    return v;
  }
  std::string string() {
    if (i_ >= s_.size() || s_[i_] != '"') fail("expected a string");
    ++i_;
    std::string out;
    while (true) {
      if (i_ >= s_.size()) fail("unterminated string");
      char c = s_[i_++];
      if (c == '"') break;
      if (c != '\\') {
        out += c;
        continue;
      }
      if (i_ >= s_.size()) fail("unterminated escape");
      char e = s_[i_++];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          uint32_t cp = hex4();
          if (cp >= 0xD800 && cp < 0xDC00 && i_ + 6 <= s_.size() && s_[i_] == '\\' && s_[i_ + 1] == 'u') {
            i_ += 2;
            uint32_t lo = hex4();
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          }
          utf8(out, cp);
          break;
        }
        default: fail("bad escape");
      }
    }
    return out;
  }
};

inline Value parse(const std::string& text) { return Parser(text).parse(); }

// ---- the file hashes manifest.json records ("files": {"lib/...so": "<sha256 hex>"}), checked
// before a library is mapped: a truncated .so would otherwise SIGBUS inside dlopen.
class Sha256 {
 public:
  void update(const unsigned char* p, size_t n) {
    total_ += n;
    while (n > 0) {
      const size_t take = n < 64 - fill_ ? n : 64 - fill_;
      for (size_t i = 0; i < take; ++i) buf_[fill_ + i] = p[i];
      fill_ += take;
      p += take;
      n -= take;
      if (fill_ == 64) {
        block(buf_);
        fill_ = 0;
      }
    }
  }
  std::string hex() {
    const uint64_t bits = total_ * 8;
    const unsigned char one = 0x80, zero = 0;
    update(&one, 1);
    while (fill_ != 56) update(&zero, 1);
    unsigned char len[8];
    for (int i = 0; i < 8; ++i) len[i] = (unsigned char)(bits >> (56 - 8 * i));
    update(len, 8);
    static const char* digits = "0123456789abcdef";
    std::string out;
    for (uint32_t v : h_)
      for (int i = 28; i >= 0; i -= 4) out += digits[(v >> i) & 15];
    return out;
  }

 private:
  static uint32_t rotr(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }
  void block(const unsigned char* b) {
    static const uint32_t k[64] = {
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
        0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
        0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
        0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
        0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
        0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
        0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};
    uint32_t w[64];
    for (int i = 0; i < 16; ++i)
      w[i] = (uint32_t)b[4 * i] << 24 | (uint32_t)b[4 * i + 1] << 16 | (uint32_t)b[4 * i + 2] << 8 | b[4 * i + 3];
    for (int i = 16; i < 64; ++i) {
      const uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
      const uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
      w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = h_[0], bb = h_[1], c = h_[2], d = h_[3], e = h_[4], f = h_[5], g = h_[6], h = h_[7];
    for (int i = 0; i < 64; ++i) {
      const uint32_t t1 = h + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + k[i] + w[i];
      const uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & bb) ^ (a & c) ^ (bb & c));
      h = g; g = f; f = e; e = d + t1; d = c; c = bb; bb = a; a = t1 + t2;
    }
    h_[0] += a; h_[1] += bb; h_[2] += c; h_[3] += d; h_[4] += e; h_[5] += f; h_[6] += g; h_[7] += h;
  }
  uint32_t h_[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  unsigned char buf_[64];
  size_t fill_ = 0;
  uint64_t total_ = 0;
};

// "" when `dir`/`rel` has the sha256 that manifest `mf` records for it under "files"; else what is wrong.
// A file the manifest does not list is refused too: every library of an artifact is listed.
inline std::string check_listed_file(const Value& mf, const std::string& dir, const std::string& rel) {
  const Value* want = mf.at({"files"});
  want = want ? want->get(rel) : nullptr;
  if (!want || !want->is_string())
    return dir + "/manifest.json does not list " + rel + " under \"files\" (with its sha256); the artifact is "
           "incomplete or corrupt: recompile it";
  std::FILE* f = std::fopen((dir + "/" + rel).c_str(), "rb");
  if (!f) return "cannot read " + dir + "/" + rel;
  Sha256 h;
  unsigned char chunk[1 << 16];
  size_t n;
  while ((n = std::fread(chunk, 1, sizeof chunk, f)) > 0) h.update(chunk, n);
  std::fclose(f);
  const std::string got = h.hex();
  if (got != want->text)
    return dir + "/" + rel + " is corrupt or truncated: its sha256 is " + got + " but manifest.json records " +
           want->text + "; copy the artifact again or recompile it";
  return "";
}

// ---- manifest.json's layout fields and their checksum "layout_sha256" (the definition, shared with the
// compiler, is xrec.runtime.manifest's docstring): checked by every loader before it reads any other file.
//
//   layout_sha256 = sha256("xrec-layout-v1\n" + for K in kLayoutKeys: S(K) + (C(manifest[K]) or "-"))
//   C: null "n", true "t", false "f", number "d" + literal text + ";", string S(s) = "s" + len + ":" + bytes,
//      array "a" + n + "[" items "]", object "o" + n + "{" (S(key) C(value)) in byte order of keys "}"
inline const char* const* layout_keys() {
  static const char* const keys[] = {"format_version", "target", "model", "signature", "in_spec", "out_spec",
                                     "weights", "ir", "files", "target_info", nullptr};
  return keys;
}

inline void canon_string(const std::string& s, std::string& out) {
  out += 's';
  out += std::to_string(s.size());
  out += ':';
  out += s;
}

inline void canon(const Value& v, std::string& out) {
  switch (v.kind) {
    case Value::Null: out += 'n'; break;
    case Value::Bool: out += v.b ? 't' : 'f'; break;
    case Value::Number: out += 'd'; out += v.text; out += ';'; break;
    case Value::String: canon_string(v.text, out); break;
    case Value::Array:
      out += 'a' + std::to_string(v.items.size()) + '[';
      for (const Value& x : v.items) canon(x, out);
      out += ']';
      break;
    case Value::Object:   // std::map: keys in byte order (char_traits<char> compares as unsigned char)
      out += 'o' + std::to_string(v.fields.size()) + '{';
      for (const auto& kv : v.fields) {
        canon_string(kv.first, out);
        canon(kv.second, out);
      }
      out += '}';
      break;
  }
}

inline std::string layout_sha256(const Value& mf) {
  std::string text = "xrec-layout-v1\n";
  for (const char* const* k = layout_keys(); *k; ++k) {
    canon_string(*k, text);
    const Value* v = mf.get(*k);
    if (v) canon(*v, text); else text += '-';
  }
  Sha256 h;
  h.update((const unsigned char*)text.data(), text.size());
  return h.hex();
}

namespace detail {

struct Bad {
  std::string msg;
};

inline const char* kind_name(const Value* v) {
  if (!v) return "missing";
  switch (v->kind) {
    case Value::Null: return "null";
    case Value::Bool: return "a boolean";
    case Value::Number: return "a number";
    case Value::String: return "a string";
    case Value::Array: return "an array";
    case Value::Object: return "an object";
  }
  return "?";
}

inline std::string shown(const Value* v) {
  if (!v) return "is missing";
  std::string t;
  if (v->kind == Value::Number) t = v->text;
  else if (v->kind == Value::String) t = "\"" + v->text + "\"";
  else if (v->kind == Value::Bool) t = v->b ? "true" : "false";
  else if (v->kind == Value::Null) t = "null";
  else return std::string("is ") + kind_name(v);
  if (t.size() > 60) t = t.substr(0, 57) + "...";
  return "is " + t + " (" + kind_name(v) + ")";
}

inline const char* kFix = "the artifact is corrupt or was edited: recompile the model";

[[noreturn]] inline void bad(const std::string& field, const Value* v, const std::string& want) {
  throw Bad{"manifest.json field '" + field + "' " + shown(v) + "; it must be " + want + "; " + kFix};
}

inline const Value& obj(const Value& parent, const char* key, const std::string& field) {
  const Value* v = parent.get(key);
  if (!v || v->kind != Value::Object) bad(field, v, "an object");
  return *v;
}

inline const Value& arr(const Value& parent, const char* key, const std::string& field) {
  const Value* v = parent.get(key);
  if (!v || v->kind != Value::Array) bad(field, v, "an array");
  return *v;
}

inline const std::string& str(const Value& parent, const char* key, const std::string& field, bool nonempty = false) {
  const Value* v = parent.get(key);
  if (!v || v->kind != Value::String || (nonempty && v->text.empty()))
    bad(field, v, nonempty ? "a non-empty string" : "a string");
  return v->text;
}

// -?(0|[1-9][0-9]*) within int64: the integers Python's json writes
inline bool int_literal(const Value& v, int64_t* out) {
  if (v.kind != Value::Number) return false;
  const std::string& t = v.text;
  size_t i = t.size() && t[0] == '-' ? 1 : 0;
  if (i >= t.size() || (t[i] == '0' && t.size() > i + 1) || t.size() - i > 18) return false;
  for (size_t k = i; k < t.size(); ++k)
    if (t[k] < '0' || t[k] > '9') return false;
  *out = std::strtoll(t.c_str(), nullptr, 10);
  return true;
}

inline int64_t integer(const Value& parent, const char* key, const std::string& field, int64_t minimum,
                       bool nullable = false, bool* is_null = nullptr) {
  const Value* v = parent.get(key);
  if (nullable && v && v->kind == Value::Null) {
    if (is_null) *is_null = true;
    return 0;
  }
  int64_t x = 0;
  if (!v || !int_literal(*v, &x) || x < minimum)
    bad(field, v, "an integer >= " + std::to_string(minimum) + (nullable ? " or null" : ""));
  return x;
}

inline bool hex64(const std::string& s) {
  if (s.size() != 64) return false;
  for (char c : s)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

inline const std::string& sha(const Value& parent, const char* key, const std::string& field) {
  const Value* v = parent.get(key);
  if (!v || v->kind != Value::String || !hex64(v->text)) bad(field, v, "a sha256 (64 lowercase hex digits)");
  return v->text;
}

inline bool plain_path(const std::string& p) {
  if (p.empty() || p[0] == '/' || p.find('\\') != std::string::npos) return false;
  size_t st = 0;
  while (true) {
    const size_t e = p.find('/', st);
    const std::string part = p.substr(st, e == std::string::npos ? std::string::npos : e - st);
    if (part.empty() || part == "." || part == "..") return false;
    if (e == std::string::npos) return true;
    st = e + 1;
  }
}

inline size_t dtype_size(const std::string& d) {
  // numpy dtype strings the compiler writes: byte order (<, >, |, =) + kind (b i u f c V) + item size
  size_t i = !d.empty() && std::strchr("<>|=", d[0]) ? 1 : 0;
  if (i >= d.size() || !std::strchr("biufcV", d[i])) return 0;
  ++i;
  if (i >= d.size() || d.size() - i > 4) return 0;
  size_t n = 0;
  for (size_t k = i; k < d.size(); ++k) {
    if (d[k] < '0' || d[k] > '9') return 0;
    n = n * 10 + (size_t)(d[k] - '0');
  }
  return n;
}

inline void check_fields(const Value& m) {
  str(m, "target", "target", true);
  str(m, "model", "model");
  if (m.get("target_info")) obj(m, "target_info", "target_info");
  const Value& sig = obj(m, "signature", "signature");
  const Value& ins = arr(sig, "inputs", "signature.inputs");
  for (size_t k = 0; k < ins.items.size(); ++k) {
    const std::string f = "signature.inputs[" + std::to_string(k) + "]";
    const Value& e = ins.items[k];
    if (e.kind != Value::Object) bad(f, &e, "an object");
    for (const char* key : {"name", "value", "kind", "dtype"}) str(e, key, f + "." + key);
    const Value& shape = arr(e, "shape", f + ".shape");
    for (size_t j = 0; j < shape.items.size(); ++j)
      if (shape.items[j].kind != Value::String)
        bad(f + ".shape[" + std::to_string(j) + "]", &shape.items[j], "a string (a dimension)");
  }
  const Value& outs = arr(sig, "outputs", "signature.outputs");
  for (size_t k = 0; k < outs.items.size(); ++k) {
    const std::string f = "signature.outputs[" + std::to_string(k) + "]";
    const Value& e = outs.items[k];
    if (e.kind != Value::Object) bad(f, &e, "an object");
    for (const char* key : {"value", "dtype"}) str(e, key, f + "." + key);
    arr(e, "shape", f + ".shape");
  }
  const Value& feats = arr(sig, "features", "signature.features");
  for (size_t k = 0; k < feats.items.size(); ++k) {
    const std::string f = "signature.features[" + std::to_string(k) + "]";
    const Value& e = feats.items[k];
    if (e.kind != Value::Object) bad(f, &e, "an object");
    str(e, "feature", f + ".feature");
    integer(e, "indices", f + ".indices", 0, true);
    integer(e, "offsets", f + ".offsets", 0, true);
    const Value* ilo = e.get("include_last_offset");
    if (!ilo || ilo->kind != Value::Bool) bad(f + ".include_last_offset", ilo, "a boolean");
    integer(e, "num_rows", f + ".num_rows", 0, true);
  }

  const Value& w = obj(m, "weights", "weights");
  if (!plain_path(str(w, "file", "weights.file", true)))
    bad("weights.file", w.get("file"), "a plain path inside the artifact directory");
  const int64_t align = integer(w, "alignment", "weights.alignment", 1);
  const int64_t size = integer(w, "bytes", "weights.bytes", 0);
  sha(w, "sha256", "weights.sha256");
  const Value& entries = obj(w, "entries", "weights.entries");
  for (const auto& kv : entries.fields) {
    const std::string f = "weights.entries[\"" + kv.first + "\"]";
    const Value& e = kv.second;
    if (e.kind != Value::Object) bad(f, &e, "an object");
    const int64_t off = integer(e, "offset", f + ".offset", 0);
    const int64_t nb = integer(e, "nbytes", f + ".nbytes", 0);
    const std::string& dt = str(e, "dtype", f + ".dtype", true);
    const size_t item = dtype_size(dt);
    if (!item) bad(f + ".dtype", e.get("dtype"), "a numpy dtype of fixed size (e.g. \"<f4\")");
    const Value& shape = arr(e, "shape", f + ".shape");
    unsigned __int128 n = item;
    for (size_t j = 0; j < shape.items.size(); ++j) {
      int64_t d = 0;
      if (!int_literal(shape.items[j], &d) || d < 0)
        bad(f + ".shape[" + std::to_string(j) + "]", &shape.items[j], "an integer >= 0");
      n *= (unsigned __int128)d;
      if (n > ((unsigned __int128)1 << 64)) n = (unsigned __int128)1 << 64;   // saturate: no wrap-around
    }
    if (n != (unsigned __int128)nb)
      throw Bad{"manifest.json field '" + f + ".nbytes' is " + std::to_string(nb) + " but its shape of " + dt +
                " holds another number of bytes; " + kFix};
    if (off % align)
      throw Bad{"manifest.json field '" + f + ".offset' is " + std::to_string(off) +
                ", not a multiple of weights.alignment (" + std::to_string(align) + "); " + kFix};
    if (off > size || nb > size - off)
      throw Bad{"manifest.json field '" + f + ".offset' is " + std::to_string(off) + ": with its " +
                std::to_string(nb) + " bytes it ends past the end of the weights file (weights.bytes " +
                std::to_string(size) + "); " + kFix};
  }
  const Value& ir = obj(m, "ir", "ir");
  if (!plain_path(str(ir, "file", "ir.file", true)))
    bad("ir.file", ir.get("file"), "a plain path inside the artifact directory");
  sha(ir, "sha256", "ir.sha256");
  const Value& files = obj(m, "files", "files");
  for (const auto& kv : files.fields) {
    if (!plain_path(kv.first))
      throw Bad{"manifest.json field 'files' lists \"" + kv.first + "\", not a plain path inside the artifact "
                "directory; " + std::string(kFix)};
    sha(files, kv.first.c_str(), "files[\"" + kv.first + "\"]");
  }
}

}  // namespace detail

// "" when manifest `mf` (already checked to be of this runtime's format) has well-typed layout fields whose
// checksum is the "layout_sha256" it records; else what is wrong, naming the field. Reads no other file.
inline std::string check_manifest(const Value& mf, const std::string& dir) {
  if (mf.kind != Value::Object) return dir + ": manifest.json is not a JSON object; " + detail::kFix;
  std::string want;
  try {
    detail::check_fields(mf);
    const Value* v = mf.get("layout_sha256");
    if (!v)
      return dir + ": manifest.json has no 'layout_sha256' (the checksum of its layout fields): it was written by "
                   "an older xrec or edited; recompile the model";
    want = detail::sha(mf, "layout_sha256", "layout_sha256");
  } catch (const detail::Bad& e) {
    return dir + ": " + e.msg;
  }
  const std::string got = layout_sha256(mf);
  if (got != want)
    return dir + ": manifest.json's layout fields do not match its 'layout_sha256' (recorded " + want.substr(0, 12) +
           "..., computed " + got.substr(0, 12) + "...): weights/ir/files/signature/target_info were edited or "
           "corrupted; " + detail::kFix;
  return "";
}

}  // namespace json
}  // namespace xrec
