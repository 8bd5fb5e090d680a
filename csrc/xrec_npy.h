// xrec_npy.h: read and write NumPy .npy files (format 1.0-3.0, little-endian,
// C order) as xrec::Tensor. Enough for test inputs: float32/64, int32/64, int8/uint8, bool.
#pragma once
#include <cstring>
#include <fstream>
#include <string>

#include "xrec_runtime.h"

namespace xrec {
namespace npy {

inline int dtype_from_descr(const std::string& d) {
  if (d == "<f4") return XREC_F32;
  if (d == "<f8") return XREC_F64;
  if (d == "<f2") return XREC_F16;
  if (d == "<i4") return XREC_I32;
  if (d == "<i8") return XREC_I64;
  if (d == "|i1") return XREC_I8;
  if (d == "|u1") return XREC_U8;
  if (d == "|b1") return XREC_BOOL;
  return -1;
}

inline const char* descr_of(int dtype) {
  switch (dtype) {
    case XREC_F32: return "<f4";
    case XREC_F64: return "<f8";
    case XREC_F16: return "<f2";
    case XREC_I32: return "<i4";
    case XREC_I64: return "<i8";
    case XREC_I8: return "|i1";
    case XREC_U8: return "|u1";
    case XREC_BOOL: return "|b1";
  }
  return "|u1";
}

// the value of 'key' in the header dict, as text
inline std::string header_field(const std::string& h, const std::string& key) {
  size_t p = h.find("'" + key + "'");
  if (p == std::string::npos) return "";
  p = h.find(':', p);
  size_t q = p + 1;
  while (q < h.size() && h[q] == ' ') ++q;
  if (h[q] == '(') return h.substr(q + 1, h.find(')', q) - q - 1);
  if (h[q] == '\'') return h.substr(q + 1, h.find('\'', q + 1) - q - 1);
  size_t e = h.find_first_of(",}", q);
  return h.substr(q, e - q);
}

inline Tensor load(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot open " + path);
  char magic[8];
  f.read(magic, 8);
  if (!f || std::memcmp(magic, "\x93NUMPY", 6) != 0) throw std::runtime_error(path + ": not a .npy file");
  uint32_t hlen = 0;
  if (magic[6] == 1) {
    unsigned char b[2];
    f.read((char*)b, 2);
    hlen = b[0] | (b[1] << 8);
  } else {
    unsigned char b[4];
    f.read((char*)b, 4);
    hlen = b[0] | (b[1] << 8) | (b[2] << 16) | ((uint32_t)b[3] << 24);
  }
  std::string h(hlen, ' ');
  f.read(&h[0], hlen);
  Tensor t;
  t.dtype = dtype_from_descr(header_field(h, "descr"));
  if (t.dtype < 0) throw std::runtime_error(path + ": unsupported dtype " + header_field(h, "descr"));
  if (header_field(h, "fortran_order") != "False") throw std::runtime_error(path + ": Fortran order");
  std::string shape = header_field(h, "shape");
  size_t i = 0;
  while (i < shape.size()) {
    while (i < shape.size() && (shape[i] == ' ' || shape[i] == ',')) ++i;
    if (i >= shape.size()) break;
    t.shape.push_back(std::stoll(shape.substr(i)));
    while (i < shape.size() && shape[i] != ',') ++i;
  }
  t.bytes.resize((size_t)t.numel() * Tensor::itemsize(t.dtype));
  f.read((char*)t.bytes.data(), (std::streamsize)t.bytes.size());
  if (!f) throw std::runtime_error(path + ": truncated data");
  return t;
}

inline void save(const std::string& path, const Tensor& t) {
  std::string shape;
  for (int64_t d : t.shape) shape += std::to_string(d) + ",";
  if (t.shape.size() > 1) shape.pop_back();
  std::string h = std::string("{'descr': '") + descr_of(t.dtype) + "', 'fortran_order': False, 'shape': (" +
                  shape + "), }";
  while ((10 + h.size() + 1) % 64) h += ' ';
  h += '\n';
  std::ofstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot write " + path);
  f.write("\x93NUMPY\x01\x00", 8);
  const unsigned char len[2] = {(unsigned char)(h.size() & 0xff), (unsigned char)(h.size() >> 8)};
  f.write((const char*)len, 2);
  f.write(h.data(), (std::streamsize)h.size());
  f.write((const char*)t.bytes.data(), (std::streamsize)t.bytes.size());
}

}  // namespace npy
}  // namespace xrec
