// metrics.h: the server's counters, gauges and histograms, rendered in the
// Prometheus text exposition format (GET /metrics).
#pragma once
#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace xrec {
namespace serve {

// A histogram with fixed upper bounds (cumulative buckets are computed when rendered).
class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void observe(double v);
  // Appends the _bucket/_sum/_count lines of metric `name` with extra labels (`a="b",` or "").
  void render(std::string* out, const std::string& name, const std::string& labels) const;
  uint64_t count() const;

 private:
  std::vector<double> bounds_;
  mutable std::mutex mu_;
  std::vector<uint64_t> counts_;   // one per bound, plus +Inf
  double sum_ = 0;
  uint64_t n_ = 0;
};

// The kinds of errors the server answers (label `kind` of xrec_errors_total).
extern const char* const kErrorKinds[];

class Metrics {
 public:
  explicit Metrics(std::string model);

  void received() { received_.fetch_add(1, std::memory_order_relaxed); }
  // One answered inference request: its HTTP status and its latency (from arrival to answer).
  void answered(int status, double seconds);
  void error(const std::string& kind);
  // One kernel call: how many requests it merged and how many rows it ran, and its duration.
  void batch(int requests, int64_t rows, double seconds);
  void queue_wait(double seconds) { queue_wait_.observe(seconds); }
  void set_queue_depth(int64_t d) { queue_depth_.store(d, std::memory_order_relaxed); }
  void set_running_batches(int64_t d) { running_.store(d, std::memory_order_relaxed); }
  void set_queue_capacity(int64_t c) { queue_capacity_ = c; }
  void set_draining(bool d) { draining_.store(d); }
  // HTTP connections (connections.h): open now, refused at accept, closed for taking too long.
  void http_connections_open(int64_t delta) { conns_open_.fetch_add(delta, std::memory_order_relaxed); }
  void http_connection_refused(const std::string& reason);
  void http_connection_timed_out(const std::string& reason);

  std::string render() const;

 private:
  std::string model_;
  std::atomic<uint64_t> received_{0};
  mutable std::mutex mu_;
  std::map<int, uint64_t> by_status_;
  std::map<std::string, uint64_t> errors_;
  Histogram latency_, queue_wait_, kernel_, batch_requests_, batch_rows_;
  std::atomic<int64_t> queue_depth_{0}, running_{0};
  int64_t queue_capacity_ = 0;
  std::atomic<bool> draining_{false};
  std::atomic<int64_t> conns_open_{0};
  std::map<std::string, uint64_t> conns_refused_, conns_timed_out_;
};

}  // namespace serve
}  // namespace xrec
