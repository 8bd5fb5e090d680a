// Minimal declarations of xrt::bo for syntax checks only (see xrt_device.h).
#ifndef XREC_XRT_STUB_BO_H
#define XREC_XRT_STUB_BO_H
#include "xrt_device.h"
namespace xrt {
class bo {
 public:
  bo() {}
  bo(const device& dev, size_t size, int memory_group);
  void write(const void* src, size_t size, size_t seek);
  void read(void* dst, size_t size, size_t skip);
  void sync(xclBOSyncDirection dir);
};
}  // namespace xrt
#endif
