// connections.h: the HTTP connections of the server, from accept to close, so that slow or idle
// clients cannot hold every HTTP thread (issue 22, 7e).
//
// cpp-httplib serves each connection on one pool thread, and its read timeout bounds one read only:
// a client that sends a byte now and then holds its thread for ever. Here (the server's
// process_and_close_socket runs Connections::serve, which reads and writes the socket itself):
//   * a whole request (request line, headers and body) must arrive within request_timeout_ms of its
//     first byte, and one read waits at most read_timeout_ms; late: 408 and the connection is closed;
//   * a whole answer must be taken by the client within write_timeout_ms;
//   * a kept-alive connection waits keep_alive_ms for the next request, and serves keep_alive_max;
//   * one client address holds at most max_per_client connections; more are answered 503 and closed;
//   * while every HTTP thread is busy and accepted connections wait for one, a watchdog closes the
//     connections that have waited for or read a request the longest (over overload_grace_ms), one per
//     waiting connection: requests being handled and answers being written are never cut;
//   * close_waiting() (shutdown) closes every connection that waits for or reads a request.
// Counted in /metrics: xrec_http_connections_open, xrec_http_connections_refused_total{reason} and
// xrec_http_connections_timed_out_total{reason}.
#pragma once
#include <httplib.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>

#include "metrics.h"

namespace xrec {
namespace serve {

struct ConnLimits {
  int64_t read_timeout_ms = 5000;      // one read of a request
  int64_t request_timeout_ms = 10000;  // a whole request, from its first byte
  int64_t write_timeout_ms = 10000;    // a whole answer
  int64_t keep_alive_ms = 2000;        // idle wait for the next request (also for the first one)
  int64_t keep_alive_max = 1000;       // requests per connection
  int64_t max_per_client = -1;         // connections per client address; 0: no limit; -1: 3/4 of the threads
  int64_t overload_grace_ms = 1000;    // age after which a waiting/reading connection may be closed under overload
};

struct Conn;

class Connections {
 public:
  // process(stream, close_connection, connection_closed): httplib's Server::process_request
  using Process = std::function<bool(httplib::Stream&, bool, bool&)>;

  Connections(const ConnLimits& limits, int http_threads, Metrics& metrics);
  ~Connections();
  Connections(const Connections&) = delete;
  Connections& operator=(const Connections&) = delete;

  const ConnLimits& limits() const { return limits_; }
  // The pool for httplib::Server::new_task_queue (it counts busy threads and waiting connections).
  httplib::TaskQueue* new_pool();
  // One accepted connection, on a pool thread, until it is closed (closes `sock`).
  bool serve(int sock, const std::atomic<int>& listening, const Process& process);
  // The request of this thread's connection has arrived; its handler runs (never cut).
  static void handling();
  // Whether this thread's connection timed out reading its request (the error handler answers 408).
  static bool request_timed_out();
  // Shutdown: close every connection that waits for or reads a request, now and from now on.
  void close_waiting();

  // The 408 answer's words.
  std::string timeout_message() const;

  // internal (the stream)
  void timed_out(const char* reason) { metrics_.http_connection_timed_out(reason); }

 private:
  void watchdog();

  ConnLimits limits_;
  int threads_;
  Metrics& metrics_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false, closing_ = false;
  std::set<Conn*> conns_;
  std::map<std::string, int64_t> per_client_;
  int64_t evicting_ = 0;   // connections closed by the watchdog or the shutdown, not yet gone
  std::atomic<int64_t> waiting_{0};   // accepted connections waiting for a pool thread
  std::atomic<int64_t> busy_{0};      // pool threads serving a connection
  std::thread watchdog_;
};

}  // namespace serve
}  // namespace xrec
