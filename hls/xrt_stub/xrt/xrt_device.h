// Minimal declarations of XRT's native C++ API (xrt::device, xrt::uuid), written by xrec
// from XRT's public documentation, ONLY to syntax-check generated host code where
// libxrt-dev is not installed. Not an implementation: nothing here links or runs.
#ifndef XREC_XRT_STUB_DEVICE_H
#define XREC_XRT_STUB_DEVICE_H
#include <cstddef>
#include <string>
enum xclBOSyncDirection { XCL_BO_SYNC_BO_TO_DEVICE = 0, XCL_BO_SYNC_BO_FROM_DEVICE = 1 };
namespace xrt {
class uuid {
 public:
  uuid() {}
};
class device {
 public:
  device() {}
  explicit device(unsigned int index);
  uuid load_xclbin(const std::string& xclbin_file);
};
}  // namespace xrt
#endif
