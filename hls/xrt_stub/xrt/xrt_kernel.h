// Minimal declarations of xrt::kernel and xrt::run for syntax checks only (see xrt_device.h).
#ifndef XREC_XRT_STUB_KERNEL_H
#define XREC_XRT_STUB_KERNEL_H
#include "xrt_bo.h"
namespace xrt {
class run {
 public:
  void wait();
};
class kernel {
 public:
  kernel() {}
  kernel(const device& dev, const uuid& xclbin_id, const std::string& name);
  int group_id(int argno) const;
  template <typename... Args>
  run operator()(Args&&... args);
};
}  // namespace xrt
#endif
