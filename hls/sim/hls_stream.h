// xrec's C-simulation model of hls::stream (replaces the vendor header on the
// C-sim include path; the kernel source still includes <hls_stream.h> and is
// synthesized against Vitis' own header).
//
// Differences from the vendor C-sim model, on purpose:
//  * read() from an empty stream is a deadlock in hardware: here it prints
//    "xrec csim: DEADLOCK: read from empty stream '<name>'" and aborts;
//  * a stream destroyed with data left in it means a producer and its consumer
//    disagree on counts: it prints "xrec csim: stream '<name>' destroyed with
//    N unread items" and aborts;
//  * it records the largest occupancy, which C simulation (processes run one
//    after the other) can exceed the synthesized FIFO depth by design.
#ifndef XREC_HLS_STREAM_SIM_H
#define XREC_HLS_STREAM_SIM_H
#define X_HLS_STREAM_SIM_H   /* the vendor model must not be pulled in as well */

#ifndef __cplusplus
#error C++ is required to include this header file
#endif

#include <cstdio>
#include <cstdlib>
#include <deque>
#include <string>

namespace hls {

template <typename T>
class stream {
 public:
  stream() : name_("hls_stream") {}
  explicit stream(const char* name) : name_(name) {}
  explicit stream(const std::string& name) : name_(name) {}
  stream(const stream&) = delete;
  stream& operator=(const stream&) = delete;

  ~stream() {
    if (!data_.empty()) {
      std::fprintf(stderr, "xrec csim: stream '%s' destroyed with %zu unread items "
                   "(producer and consumer disagree on counts)\n", name_.c_str(), data_.size());
      std::fflush(stderr);
      std::abort();
    }
  }

  bool empty() const { return data_.empty(); }
  bool full() const { return false; }
  size_t size() const { return data_.size(); }
  size_t max_occupancy() const { return max_; }
  const std::string& name() const { return name_; }

  T read() {
    if (data_.empty()) {
      std::fprintf(stderr, "xrec csim: DEADLOCK: read from empty stream '%s' "
                   "(in hardware this blocks forever)\n", name_.c_str());
      std::fflush(stderr);
      std::abort();
    }
    T v = data_.front();
    data_.pop_front();
    return v;
  }
  void read(T& v) { v = read(); }
  void operator>>(T& v) { v = read(); }

  void write(const T& v) {
    data_.push_back(v);
    if (data_.size() > max_) max_ = data_.size();
  }
  void operator<<(const T& v) { write(v); }

  bool read_nb(T& v) {
    if (data_.empty()) return false;
    v = read();
    return true;
  }
  bool write_nb(const T& v) {
    write(v);
    return true;
  }

 private:
  std::string name_;
  std::deque<T> data_;
  size_t max_ = 0;
};

}  // namespace hls

#endif  // XREC_HLS_STREAM_SIM_H
