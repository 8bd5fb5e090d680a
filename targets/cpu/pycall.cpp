// pycall.cpp: the Python -> C hot path of a loaded cpu artifact (a tiny CPython extension).
//
// run(ctx, inputs) takes the flat inputs (any objects exporting a C-contiguous
// buffer, e.g. numpy arrays), fills the xrec_tensor array without copying,
// asks the model for the output shapes, allocates the outputs with
// ctx's numpy.empty, releases the GIL and calls xrec_model_run through the
// function pointers in ctx. Doing this in C keeps the per-call overhead at about
// a microsecond for ~50 inputs, where ctypes/cffi spend ~0.3-1 us per array.
//
// Built with -DXREC_PYCALL_TORCH against torch's headers (binding.py does this when
// torch imports), it also has call(ctx, args, n): the same on a model call's nested
// torch tensors, read from at::Tensor directly, with torch outputs. That skips a
// Tensor.numpy() view per input (~0.7 us each, ~35 us on a 53-input DLRM).
//
// ctx = (model, run_fn, shapes_fn, last_error_fn, n_outputs, empty, out_dtypes, InputError)
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <cstring>
#include <vector>

#include "xrec_model.h"

#ifdef XREC_PYCALL_TORCH
#include <ATen/ATen.h>
#include <torch/csrc/autograd/python_variable.h>
#endif

typedef int (*run_fn)(xrec_model*, const xrec_tensor*, int, xrec_tensor*, int);
typedef int (*shapes_fn)(const xrec_model*, const xrec_tensor*, int, int64_t*);
typedef const char* (*err_fn)(void);

static int dtype_of(const Py_buffer& b) {
  const char* f = b.format ? b.format : "B";
  while (*f == '<' || *f == '=' || *f == '@' || *f == '|') ++f;
  switch (*f) {
    case 'f': return XREC_F32;
    case 'd': return XREC_F64;
    case 'e': return XREC_F16;
    case 'i': return b.itemsize == 4 ? XREC_I32 : -1;
    case 'l': case 'q': return b.itemsize == 8 ? XREC_I64 : (b.itemsize == 4 ? XREC_I32 : -1);
    case 'b': return XREC_I8;
    case 'B': return XREC_U8;
    case '?': return XREC_BOOL;
  }
  return -1;
}

// ctx unpacked, and the two C calls every path makes (output shapes, then run with the
// GIL released); each returns false with the model's error raised as a Python exception.
struct Ctx {
  xrec_model* model;
  run_fn runf;
  shapes_fn shapesf;
  err_fn errf;
  long n_out;
  PyObject* empty;
  PyObject* out_dtypes;
  PyObject* input_error;

  bool parse(PyObject* ctx) {
    model = (xrec_model*)PyLong_AsVoidPtr(PyTuple_GET_ITEM(ctx, 0));
    runf = (run_fn)PyLong_AsVoidPtr(PyTuple_GET_ITEM(ctx, 1));
    shapesf = (shapes_fn)PyLong_AsVoidPtr(PyTuple_GET_ITEM(ctx, 2));
    errf = (err_fn)PyLong_AsVoidPtr(PyTuple_GET_ITEM(ctx, 3));
    n_out = PyLong_AsLong(PyTuple_GET_ITEM(ctx, 4));
    empty = PyTuple_GET_ITEM(ctx, 5);
    out_dtypes = PyTuple_GET_ITEM(ctx, 6);
    input_error = PyTuple_GET_ITEM(ctx, 7);
    return !PyErr_Occurred();
  }
  bool raise(int rc) const {
    PyErr_SetString(rc == XREC_ERR_INPUT ? input_error : PyExc_RuntimeError, errf());
    return false;
  }
  bool output_shapes(const xrec_tensor* in, int n, int64_t* dims) const {
    const int rc = shapesf(model, in, n, dims);
    return rc == XREC_OK || raise(rc);
  }
  bool run(xrec_tensor* ts, int n) const {   // ts: n inputs, then the outputs
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = runf(model, ts, n, ts + n, (int)n_out);
    Py_END_ALLOW_THREADS
    return rc == XREC_OK || raise(rc);
  }
  int out_ndim(long k) const { return (int)PyLong_AsLong(PyTuple_GET_ITEM(PyTuple_GET_ITEM(out_dtypes, k), 0)); }
  int out_dtype(long k) const { return (int)PyLong_AsLong(PyTuple_GET_ITEM(PyTuple_GET_ITEM(out_dtypes, k), 2)); }
};

struct Buffers {
  std::vector<Py_buffer> v;
  size_t n = 0;
  ~Buffers() {
    for (size_t i = 0; i < n; ++i) PyBuffer_Release(&v[i]);
  }
};

static PyObject* run(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs != 2 || !PyTuple_Check(args[0]) || PyTuple_GET_SIZE(args[0]) != 8) {
    PyErr_SetString(PyExc_TypeError, "run(ctx, inputs)");
    return nullptr;
  }
  Ctx c;
  if (!c.parse(args[0])) return nullptr;
  const long n_out = c.n_out;

  PyObject* seq = PySequence_Fast(args[1], "inputs must be a sequence");
  if (!seq) return nullptr;
  const Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
  PyObject** items = PySequence_Fast_ITEMS(seq);
  Buffers bufs;
  bufs.v.resize(n + n_out);
  std::vector<xrec_tensor> ts(n + n_out);
  PyObject* result = nullptr;
  std::vector<int64_t> dims(n_out * XREC_MAX_DIMS + 1);
  for (Py_ssize_t i = 0; i < n; ++i) {
    if (PyObject_GetBuffer(items[i], &bufs.v[i], PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) != 0) goto done;
    bufs.n = i + 1;
    const Py_buffer& b = bufs.v[i];
    xrec_tensor& t = ts[i];
    t.data = b.buf;
    t.dtype = dtype_of(b);
    t.ndim = b.ndim;
    if (b.ndim > XREC_MAX_DIMS) {
      PyErr_Format(PyExc_ValueError, "input %zd has %d dims; at most %d", i, b.ndim, XREC_MAX_DIMS);
      goto done;
    }
    for (int d = 0; d < b.ndim; ++d) t.shape[d] = b.shape[d];
  }
  if (!c.output_shapes(ts.data(), (int)n, dims.data())) goto done;
  result = PyList_New(n_out);
  if (!result) goto done;
  for (long k = 0; k < n_out; ++k) {
    const int nd = c.out_ndim(k);
    PyObject* shape = PyTuple_New(nd);
    for (int d = 0; d < nd; ++d) PyTuple_SET_ITEM(shape, d, PyLong_FromLongLong(dims[k * XREC_MAX_DIMS + d]));
    PyObject* arr = PyObject_CallFunctionObjArgs(c.empty, shape, PyTuple_GET_ITEM(PyTuple_GET_ITEM(c.out_dtypes, k), 1),
                                                 nullptr);
    Py_DECREF(shape);
    if (!arr) goto fail;
    PyList_SET_ITEM(result, k, arr);
    Py_buffer& b = bufs.v[n + k];
    if (PyObject_GetBuffer(arr, &b, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE) != 0) goto fail;
    bufs.n = n + k + 1;
    xrec_tensor& t = ts[n + k];
    t.data = b.buf;
    t.dtype = c.out_dtype(k);
    t.ndim = nd;
    for (int d = 0; d < nd; ++d) t.shape[d] = dims[k * XREC_MAX_DIMS + d];
  }
  if (!c.run(ts.data(), (int)n)) goto fail;
  goto done;
fail:
  Py_CLEAR(result);
done:
  Py_DECREF(seq);
  return result;
}

#ifdef XREC_PYCALL_TORCH
// ---------------------------------------------------------------------------------------------
// call(ctx, args): the torch path. args is the positional-argument tuple of a model call
// (nested tuples/lists of torch tensors, e.g. (dense, [indices...], [offsets...])). Leaves are
// read straight from the at::Tensor (pointer, dtype, sizes) and the outputs are allocated as
// torch tensors, so no numpy view is made per input (~0.7 us each through Tensor.numpy()).
// Anything else in args (a dict, a numpy array, a Python number) or a leaf count other than the
// model's returns NotImplemented: the caller then takes the general path with its messages.
// The generated code checks the count, ranks, dtypes, shapes, offsets and ids (bounds_check).

static int xrec_dtype_of(c10::ScalarType st) {
  switch (st) {
    case c10::ScalarType::Float: return XREC_F32;
    case c10::ScalarType::Half: return XREC_F16;
    case c10::ScalarType::Double: return XREC_F64;
    case c10::ScalarType::Int: return XREC_I32;
    case c10::ScalarType::Long: return XREC_I64;
    case c10::ScalarType::Char: return XREC_I8;
    case c10::ScalarType::Byte: return XREC_U8;
    case c10::ScalarType::Bool: return XREC_BOOL;
    default: return -1;
  }
}

static bool torch_dtype_of(int xd, c10::ScalarType* st) {
  switch (xd) {
    case XREC_F32: *st = c10::ScalarType::Float; return true;
    case XREC_F16: *st = c10::ScalarType::Half; return true;
    case XREC_F64: *st = c10::ScalarType::Double; return true;
    case XREC_I32: *st = c10::ScalarType::Int; return true;
    case XREC_I64: *st = c10::ScalarType::Long; return true;
    case XREC_I8: *st = c10::ScalarType::Char; return true;
    case XREC_U8: *st = c10::ScalarType::Byte; return true;
    case XREC_BOOL: *st = c10::ScalarType::Bool; return true;
  }
  return false;
}

// Depth-first leaves of nested tuples/lists (torch's pytree order); false on any other leaf.
static bool collect(PyObject* obj, std::vector<at::Tensor>& out, int depth) {
  if (THPVariable_Check(obj)) {
    out.push_back(THPVariable_Unpack(obj));
    return true;
  }
  if (depth > 8 || !(PyTuple_Check(obj) || PyList_Check(obj))) return false;
  const Py_ssize_t n = PySequence_Fast_GET_SIZE(obj);
  PyObject** items = PySequence_Fast_ITEMS(obj);
  for (Py_ssize_t i = 0; i < n; ++i)
    if (!collect(items[i], out, depth + 1)) return false;
  return true;
}

static PyObject* call(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs != 3 || !PyTuple_Check(args[0]) || PyTuple_GET_SIZE(args[0]) != 8) {
    PyErr_SetString(PyExc_TypeError, "call(ctx, args, n_inputs)");
    return nullptr;
  }
  Ctx c;
  const long n_expected = PyLong_AsLong(args[2]);
  if (!c.parse(args[0])) return nullptr;
  const long n_out = c.n_out;

  std::vector<at::Tensor> in;
  in.reserve(n_expected > 0 ? n_expected : 8);
  if (!collect(args[1], in, 0) || (long)in.size() != n_expected) Py_RETURN_NOTIMPLEMENTED;
  const size_t n = in.size();
  std::vector<xrec_tensor> ts(n + n_out);
  std::vector<int64_t> dims(n_out * XREC_MAX_DIMS + 1);
  std::vector<at::Tensor> outs(n_out);
  try {
    for (size_t i = 0; i < n; ++i) {
      at::Tensor& x = in[i];
      if (!x.device().is_cpu()) x = x.cpu();                  // as Tensor.cpu() on the general path
      if (!x.is_contiguous()) x = x.contiguous();
      if (x.dim() > XREC_MAX_DIMS) {
        PyErr_Format(c.input_error, "input %zu has %d dims; at most %d", i, (int)x.dim(), XREC_MAX_DIMS);
        return nullptr;
      }
      xrec_tensor& t = ts[i];
      t.data = x.numel() ? x.data_ptr() : (void*)&ts;         // never NULL: an empty bag list is valid
      t.dtype = xrec_dtype_of(x.scalar_type());
      t.ndim = (int)x.dim();
      for (int d = 0; d < t.ndim; ++d) t.shape[d] = x.size(d);
    }
    if (!c.output_shapes(ts.data(), (int)n, dims.data())) return nullptr;
    for (long k = 0; k < n_out; ++k) {
      const int nd = c.out_ndim(k);
      const int xd = c.out_dtype(k);
      c10::ScalarType st;
      if (!torch_dtype_of(xd, &st)) {
        PyErr_Format(PyExc_RuntimeError, "output %ld: dtype code %d has no torch dtype", k, xd);
        return nullptr;
      }
      outs[k] = at::empty(c10::IntArrayRef(dims.data() + k * XREC_MAX_DIMS, nd), at::TensorOptions().dtype(st));
      xrec_tensor& t = ts[n + k];
      t.data = outs[k].numel() ? outs[k].data_ptr() : (void*)&ts;
      t.dtype = xd;
      t.ndim = nd;
      for (int d = 0; d < nd; ++d) t.shape[d] = dims[k * XREC_MAX_DIMS + d];
    }
    if (!c.run(ts.data(), (int)n)) return nullptr;
  } catch (const std::exception& e) {
    PyErr_SetString(PyExc_RuntimeError, e.what());
    return nullptr;
  }
  PyObject* result = PyList_New(n_out);
  if (!result) return nullptr;
  for (long k = 0; k < n_out; ++k) {
    PyObject* o = THPVariable_Wrap(std::move(outs[k]));
    if (!o) {
      Py_DECREF(result);
      return nullptr;
    }
    PyList_SET_ITEM(result, k, o);
  }
  return result;
}
#endif

static PyMethodDef methods[] = {
    {"run", (PyCFunction)(void (*)(void))run, METH_FASTCALL, "run(ctx, inputs) -> list of outputs"},
#ifdef XREC_PYCALL_TORCH
    {"call", (PyCFunction)(void (*)(void))call, METH_FASTCALL,
     "call(ctx, args, n_inputs) -> list of torch outputs, or NotImplemented"},
#endif
    {nullptr, nullptr, 0, nullptr}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "xrec_pycall", nullptr, -1, methods};

PyMODINIT_FUNC PyInit_xrec_pycall(void) { return PyModule_Create(&module); }
