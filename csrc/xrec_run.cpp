// xrec_run: run a compiled xrec cpu artifact on inputs stored as .npy files.
//
//   xrec_run ARTIFACT [--isa ISA] [--threads N] [--repeat N] [--out OUT.npy] IN0.npy IN1.npy ...
//
// The inputs are the model's flat tensors in signature order (`xrec_run ARTIFACT --info`
// lists them). Prints the output shapes and values (first few), the median time of
// --repeat runs, and writes output 0 to --out (output k>0 to OUT.k.npy).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "xrec_npy.h"
#include "xrec_runtime.h"

static int usage() {
  std::fprintf(stderr,
               "usage: xrec_run ARTIFACT [--info] [--isa ISA] [--threads N] [--repeat N] [--out OUT.npy] "
               "INPUT.npy...\n");
  return 2;
}

int main(int argc, char** argv) {
  if (argc < 2) return usage();
  std::string dir = argv[1], out_path;
  xrec::LoadOptions opt;
  int repeat = 1;
  bool info = false;
  std::vector<std::string> files;
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--info") info = true;
    else if (a == "--isa" && i + 1 < argc) opt.isa = argv[++i];
    else if (a == "--threads" && i + 1 < argc) opt.threads = std::atoi(argv[++i]);
    else if (a == "--repeat" && i + 1 < argc) repeat = std::max(1, std::atoi(argv[++i]));
    else if (a == "--out" && i + 1 < argc) out_path = argv[++i];
    else if (a.size() > 1 && a[0] == '-') return usage();
    else files.push_back(a);
  }
  try {
    auto model = xrec::Model::open(dir, opt);
    std::printf("model %s (isa %s), %zu inputs, %d outputs\n", model->name().c_str(), model->isa().c_str(),
                model->inputs().size(), model->num_outputs());
    if (info) {
      for (size_t i = 0; i < model->inputs().size(); ++i) {
        const auto& in = model->inputs()[i];
        std::printf("  input %zu: %s (%s) dtype %d shape [%s]\n", i, in.name.c_str(), in.kind.c_str(), in.dtype,
                    in.shape.c_str());
      }
      if (files.empty()) return 0;
    }
    std::vector<xrec::Tensor> inputs;
    for (const std::string& f : files) inputs.push_back(xrec::npy::load(f));
    std::vector<xrec::Tensor> outputs;
    std::vector<double> ms;
    for (int r = 0; r < repeat; ++r) {
      auto t0 = std::chrono::steady_clock::now();
      outputs = model->run(inputs);
      ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    }
    std::sort(ms.begin(), ms.end());
    for (size_t k = 0; k < outputs.size(); ++k) {
      const xrec::Tensor& o = outputs[k];
      std::string shape;
      for (int64_t d : o.shape) shape += (shape.empty() ? "" : ",") + std::to_string(d);
      std::printf("output %zu: shape [%s]", k, shape.c_str());
      if (o.dtype == XREC_F32)
        for (int64_t i = 0; i < std::min<int64_t>(o.numel(), 8); ++i) std::printf(" %.6g", o.data<float>()[i]);
      std::printf("\n");
      if (!out_path.empty()) {
        std::string p = k == 0 ? out_path : out_path + "." + std::to_string(k) + ".npy";
        xrec::npy::save(p, o);
      }
    }
    std::printf("time: median %.3f ms over %d run(s)\n", ms[ms.size() / 2], repeat);
  } catch (const xrec::Error& e) {
    std::fprintf(stderr, "xrec_run: error %d: %s\n", e.code, e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "xrec_run: %s\n", e.what());
    return 1;
  }
  return 0;
}
