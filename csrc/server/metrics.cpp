// metrics.cpp: see metrics.h.
#include "metrics.h"

#include <cmath>
#include <cstdio>

namespace xrec {
namespace serve {

const char* const kErrorKinds[] = {"bad_json",   "bad_request", "unknown_input", "missing_input", "bad_datatype",
                                   "bad_shape",  "bad_value",   "index_out_of_range", "bad_offsets",
                                   "too_large",  "unknown_model", "not_found", "queue_full", "timeout",
                                   "shutting_down", "model_error", "internal", nullptr};

static std::string num(double v) {
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.12g", v);
  return buf;
}

Histogram::Histogram(std::vector<double> bounds) : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {}

void Histogram::observe(double v) {
  size_t i = 0;
  while (i < bounds_.size() && v > bounds_[i]) ++i;
  std::lock_guard<std::mutex> lock(mu_);
  ++counts_[i];
  sum_ += v;
  ++n_;
}

uint64_t Histogram::count() const {
  std::lock_guard<std::mutex> lock(mu_);
  return n_;
}

void Histogram::render(std::string* out, const std::string& name, const std::string& labels) const {
  std::vector<uint64_t> counts;
  double sum;
  uint64_t n;
  {
    std::lock_guard<std::mutex> lock(mu_);
    counts = counts_;
    sum = sum_;
    n = n_;
  }
  uint64_t acc = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    acc += counts[i];
    const std::string le = i < bounds_.size() ? num(bounds_[i]) : "+Inf";
    *out += name + "_bucket{" + labels + "le=\"" + le + "\"} " + std::to_string(acc) + "\n";
  }
  const std::string l = labels.empty() ? "" : "{" + labels.substr(0, labels.size() - 1) + "}";
  *out += name + "_sum" + l + " " + num(sum) + "\n";
  *out += name + "_count" + l + " " + std::to_string(n) + "\n";
}

static std::vector<double> seconds_buckets() {
  return {50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 500e-3, 1, 2.5,
          5, 10};
}

static std::vector<double> pow2_buckets(int top) {
  std::vector<double> b;
  for (int v = 1; v <= top; v *= 2) b.push_back(v);
  return b;
}

Metrics::Metrics(std::string model)
    : model_(std::move(model)),
      latency_(seconds_buckets()),
      queue_wait_(seconds_buckets()),
      kernel_(seconds_buckets()),
      batch_requests_(pow2_buckets(1024)),
      batch_rows_(pow2_buckets(65536)) {
  for (int i = 0; kErrorKinds[i]; ++i) errors_[kErrorKinds[i]] = 0;
  for (const char* r : {"per_client_limit", "shutting_down"}) conns_refused_[r] = 0;
  for (const char* r : {"request", "read", "write", "overload"}) conns_timed_out_[r] = 0;
}

void Metrics::http_connection_refused(const std::string& reason) {
  std::lock_guard<std::mutex> lock(mu_);
  ++conns_refused_[reason];
}

void Metrics::http_connection_timed_out(const std::string& reason) {
  std::lock_guard<std::mutex> lock(mu_);
  ++conns_timed_out_[reason];
}

void Metrics::answered(int status, double seconds) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++by_status_[status];
  }
  latency_.observe(seconds);
}

void Metrics::error(const std::string& kind) {
  std::lock_guard<std::mutex> lock(mu_);
  ++errors_[kind];
}

void Metrics::batch(int requests, int64_t rows, double seconds) {
  batch_requests_.observe(requests);
  batch_rows_.observe((double)rows);
  kernel_.observe(seconds);
}

std::string Metrics::render() const {
  const std::string m = "model=\"" + model_ + "\"";
  std::string o;
  auto head = [&](const char* name, const char* type, const char* help) {
    o += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
  };
  head("xrec_requests_received_total", "counter", "Inference requests received (POST .../infer).");
  o += "xrec_requests_received_total{" + m + "} " + std::to_string(received_.load()) + "\n";
  head("xrec_requests_total", "counter", "Inference requests answered, by HTTP status code.");
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (by_status_.empty()) o += "xrec_requests_total{" + m + ",code=\"200\"} 0\n";
    for (const auto& kv : by_status_)
      o += "xrec_requests_total{" + m + ",code=\"" + std::to_string(kv.first) + "\"} " + std::to_string(kv.second) +
           "\n";
    head("xrec_errors_total", "counter", "Requests answered with an error, by kind.");
    for (const auto& kv : errors_)
      o += "xrec_errors_total{" + m + ",kind=\"" + kv.first + "\"} " + std::to_string(kv.second) + "\n";
  }
  head("xrec_request_duration_seconds", "histogram",
       "Latency of inference requests from arrival to answer (all status codes).");
  latency_.render(&o, "xrec_request_duration_seconds", m + ",");
  head("xrec_queue_wait_seconds", "histogram", "Time requests waited in the queue before their batch started.");
  queue_wait_.render(&o, "xrec_queue_wait_seconds", m + ",");
  head("xrec_batch_duration_seconds", "histogram", "Duration of one kernel call (a merged batch).");
  kernel_.render(&o, "xrec_batch_duration_seconds", m + ",");
  head("xrec_batch_size", "histogram", "Requests merged into one kernel call (dynamic batching).");
  batch_requests_.render(&o, "xrec_batch_size", m + ",");
  head("xrec_batch_rows", "histogram", "Rows (batch dimension) of one kernel call.");
  batch_rows_.render(&o, "xrec_batch_rows", m + ",");
  head("xrec_queue_depth", "gauge", "Requests waiting in the queue now.");
  o += "xrec_queue_depth{" + m + "} " + std::to_string(queue_depth_.load()) + "\n";
  head("xrec_queue_capacity", "gauge", "The queue's bound (--queue); a request beyond it is answered 503.");
  o += "xrec_queue_capacity{" + m + "} " + std::to_string(queue_capacity_) + "\n";
  head("xrec_batches_running", "gauge", "Kernel calls running now.");
  o += "xrec_batches_running{" + m + "} " + std::to_string(running_.load()) + "\n";
  head("xrec_draining", "gauge", "1 while the server shuts down (finishing in-flight requests).");
  o += "xrec_draining{" + m + "} " + std::string(draining_.load() ? "1" : "0") + "\n";
  head("xrec_http_connections_open", "gauge", "HTTP connections open now (each holds one of --http-threads).");
  o += "xrec_http_connections_open{" + m + "} " + std::to_string(conns_open_.load()) + "\n";
  {
    std::lock_guard<std::mutex> lock(mu_);
    head("xrec_http_connections_refused_total", "counter",
         "HTTP connections closed at once, by reason: per_client_limit (--max-conns-per-client), shutting_down.");
    for (const auto& kv : conns_refused_)
      o += "xrec_http_connections_refused_total{" + m + ",reason=\"" + kv.first + "\"} " +
           std::to_string(kv.second) + "\n";
    head("xrec_http_connections_timed_out_total", "counter",
         "HTTP connections closed for slowness, by reason: request (--request-timeout-ms), read "
         "(--read-timeout-ms), write (--write-timeout-ms), overload (every HTTP thread busy, --overload-grace-ms).");
    for (const auto& kv : conns_timed_out_)
      o += "xrec_http_connections_timed_out_total{" + m + ",reason=\"" + kv.first + "\"} " +
           std::to_string(kv.second) + "\n";
  }
  return o;
}

}  // namespace serve
}  // namespace xrec
