// batcher.cpp: see batcher.h.
#include "batcher.h"

namespace xrec {
namespace serve {

Batcher::Batcher(const ServedModel& model, BatcherConfig cfg, Metrics& metrics)
    : model_(model), cfg_(cfg), metrics_(metrics) {
  if (cfg_.max_batch < 1) cfg_.max_batch = 1;
  if (cfg_.workers < 1) cfg_.workers = 1;
  if (cfg_.queue < 1) cfg_.queue = 1;
  if (cfg_.max_delay_us < 0) cfg_.max_delay_us = 0;
  metrics_.set_queue_capacity((int64_t)cfg_.queue);
  for (int i = 0; i < cfg_.workers; ++i) threads_.emplace_back([this] { worker(); });
}

Batcher::~Batcher() { drain(); }

Batcher::Submit Batcher::submit(const std::shared_ptr<Job>& job) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_) return Submit::Closed;
    if (live_ >= cfg_.queue) return Submit::Full;
    q_.push_back(job);
    ++live_;
    metrics_.set_queue_depth((int64_t)live_);
  }
  cv_.notify_all();
  return Submit::Ok;
}

bool Batcher::wait(const std::shared_ptr<Job>& job) {
  {
    std::unique_lock<std::mutex> lk(job->mu);
    if (job->cv.wait_until(lk, job->deadline, [&] { return job->state.load() == Job::Done; })) return true;
  }
  int s = Job::Queued;
  if (job->state.compare_exchange_strong(s, Job::Abandoned)) {   // still queued: take it out of the count
    std::lock_guard<std::mutex> lock(mu_);
    --live_;
    metrics_.set_queue_depth((int64_t)live_);
    return false;
  }
  s = Job::Running;
  if (job->state.compare_exchange_strong(s, Job::Abandoned)) return false;   // its batch's result is discarded
  return job->state.load() == Job::Done;   // it finished just now (or the worker dropped it: Abandoned)
}

size_t Batcher::depth() const {
  std::lock_guard<std::mutex> lock(mu_);
  return live_;
}

void Batcher::drain() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    closed_ = true;
  }
  cv_.notify_all();
  for (std::thread& t : threads_)
    if (t.joinable()) t.join();
  threads_.clear();
}

void Batcher::worker() {
  const auto max_delay = std::chrono::microseconds(cfg_.max_delay_us);
  const bool merge = model_.batchable();
  for (;;) {
    std::vector<std::shared_ptr<Job>> batch;
    {
      std::unique_lock<std::mutex> form(form_mu_);   // other workers wait here while this one forms a batch
      std::unique_lock<std::mutex> lk(mu_);
      int64_t rows = 0;
      Clock::time_point until{};
      bool full = false;
      for (;;) {
        while (!q_.empty() && !full) {
          std::shared_ptr<Job> j = q_.front();
          if (j->state.load() != Job::Queued) {   // abandoned by its handler, which fixed the count
            q_.pop_front();
            continue;
          }
          if (Clock::now() >= j->deadline) {      // too late to start: its handler answers 504
            int s = Job::Queued;
            if (j->state.compare_exchange_strong(s, Job::Abandoned)) --live_;
            q_.pop_front();
            continue;
          }
          if (!batch.empty() && (!merge || rows + j->in.rows > cfg_.max_batch)) {
            full = true;
            break;
          }
          int s = Job::Queued;
          q_.pop_front();
          if (!j->state.compare_exchange_strong(s, Job::Running)) continue;   // lost to its handler's timeout
          --live_;
          if (batch.empty()) until = j->enqueued + max_delay;
          rows += j->in.rows;
          batch.push_back(std::move(j));
          if (!merge || rows >= cfg_.max_batch) full = true;
        }
        if (full) break;
        if (batch.empty()) {
          if (closed_) {
            metrics_.set_queue_depth((int64_t)live_);
            return;
          }
          cv_.wait(lk);
        } else {
          if (closed_ || Clock::now() >= until) break;
          cv_.wait_until(lk, until);
        }
      }
      metrics_.set_queue_depth((int64_t)live_);
    }
    run(batch);
  }
}

void Batcher::settle(const std::shared_ptr<Job>& job) {
  int s = Job::Running;
  if (job->state.compare_exchange_strong(s, Job::Done)) {
    std::lock_guard<std::mutex> lock(job->mu);
    job->cv.notify_all();
  }
}

static void fail(Job& j, const Error& e) {
  if (e.code == XREC_ERR_INPUT) {
    j.status = 400;
    j.error_kind = "bad_request";
    j.error = std::string("the model rejects these inputs: ") + e.what();
  } else {
    j.status = 500;
    j.error_kind = "model_error";
    j.error = std::string("the model failed: ") + e.what();
  }
}

void Batcher::run(std::vector<std::shared_ptr<Job>>& batch) {
  metrics_.set_running_batches(++running_);
  const auto t0 = Clock::now();
  int64_t rows = 0;
  for (const auto& j : batch) {
    rows += j->in.rows;
    metrics_.queue_wait(std::chrono::duration<double>(t0 - j->enqueued).count());
    j->batch_requests = (int)batch.size();
  }
  for (const auto& j : batch) j->batch_rows = rows;
  try {
    if (batch.size() == 1) {
      batch[0]->outputs = model_.run(batch[0]->in.inputs);
    } else {
      std::vector<const Prepared*> parts;
      for (const auto& j : batch) parts.push_back(&j->in);
      std::vector<std::vector<Tensor>> per = model_.split(model_.run(model_.merge(parts)), parts);
      for (size_t i = 0; i < batch.size(); ++i) batch[i]->outputs = std::move(per[i]);
    }
  } catch (const Error& e) {
    if (e.code == XREC_ERR_INPUT && batch.size() > 1) {
      // a request the per-request checks let through: rerun each alone, so only the bad one fails
      for (const auto& j : batch) {
        try {
          j->outputs = model_.run(j->in.inputs);
        } catch (const Error& e1) {
          fail(*j, e1);
        }
      }
    } else {
      for (const auto& j : batch) fail(*j, e);
    }
  } catch (const std::exception& e) {
    for (const auto& j : batch) {
      j->status = 500;
      j->error_kind = "internal";
      j->error = std::string("internal error: ") + e.what();
    }
  }
  metrics_.batch((int)batch.size(), rows, std::chrono::duration<double>(Clock::now() - t0).count());
  for (const auto& j : batch) settle(j);
  metrics_.set_running_batches(--running_);
}

}  // namespace serve
}  // namespace xrec
