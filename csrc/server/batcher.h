// batcher.h: dynamic batching over a bounded queue and a pool of worker threads.
//
// Requests wait in one FIFO queue (at most `queue` of them; submit() refuses more,
// and the server answers 503). Workers take turns forming a batch: the forming
// worker takes the oldest request, then keeps taking requests until the batch has
// `max_batch` rows or the oldest request has waited `max_delay_us`; it then runs
// the batch as one kernel call (ServedModel::merge / split) while the next worker
// forms the next batch. A request whose deadline passes before its batch starts is
// dropped from the queue (its handler answers 504); one whose deadline passes while
// it runs is answered 504 and its result discarded. Exactly one of the worker and
// the waiting handler settles each job (an atomic state), so each request gets one
// answer. If a merged kernel call fails on its inputs (which per-request checks
// should prevent), each request of it is rerun alone so that only the bad one fails.
#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "metrics.h"
#include "served_model.h"

namespace xrec {
namespace serve {

using Clock = std::chrono::steady_clock;

struct Job {
  enum State { Queued = 0, Running = 1, Done = 2, Abandoned = 3 };
  Prepared in;
  Clock::time_point enqueued, deadline;
  std::atomic<int> state{Queued};
  // set by the worker before it marks the job Done
  std::vector<Tensor> outputs;
  int status = 200;        // 200, or the HTTP status of the failure
  std::string error, error_kind;
  int batch_requests = 0;  // how many requests its kernel call merged
  int64_t batch_rows = 0;
  std::mutex mu;
  std::condition_variable cv;
};

struct BatcherConfig {
  int64_t max_batch = 64;        // rows per kernel call (a bigger request runs alone)
  int64_t max_delay_us = 500;    // how long the oldest request may wait for others
  int workers = 2;
  size_t queue = 256;            // requests waiting; more are refused
};

class Batcher {
 public:
  enum class Submit { Ok, Full, Closed };
  Batcher(const ServedModel& model, BatcherConfig cfg, Metrics& metrics);
  ~Batcher();

  Submit submit(const std::shared_ptr<Job>& job);
  // Waits for the job until its deadline. True: it is Done (read its fields); false: it timed out.
  bool wait(const std::shared_ptr<Job>& job);
  // Stops taking requests, runs everything queued, and joins the workers.
  void drain();
  size_t depth() const;
  const BatcherConfig& config() const { return cfg_; }

 private:
  void worker();
  void run(std::vector<std::shared_ptr<Job>>& batch);
  static void settle(const std::shared_ptr<Job>& job);

  const ServedModel& model_;
  BatcherConfig cfg_;
  Metrics& metrics_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Job>> q_;
  size_t live_ = 0;            // queued jobs not yet abandoned
  bool closed_ = false;
  std::mutex form_mu_;         // one worker forms a batch at a time
  std::atomic<int> running_{0};
  std::vector<std::thread> threads_;
};

}  // namespace serve
}  // namespace xrec
