// connections.cpp: see connections.h.
#include "connections.h"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <deque>
#include <vector>

namespace xrec {
namespace serve {

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

enum Phase : int {
  Idle,      // waiting for the first byte of a request
  Reading,   // reading a request (request line, headers, body)
  Handling,  // the request arrived; its handler runs
  Writing,   // writing the answer
  Closed,    // closed by the watchdog (overload) or by the shutdown
};

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count();
}

}  // namespace

struct Conn {
  int sock = -1;
  std::string ip, local_ip;
  int port = 0, local_port = 0;
  std::atomic<int> phase{Idle};
  std::atomic<int64_t> since_ns{0};   // when the idle wait or the request began
  // the owner thread's own
  Clock::time_point read_deadline, write_deadline;
  bool request_timed_out = false, timed_out = false, wrote = false;

  // The owner's phase changes; false once the watchdog or the shutdown closed the connection.
  bool set_phase(int to) {
    int p = phase.load();
    while (p != Closed)
      if (phase.compare_exchange_weak(p, to)) return true;
    return false;
  }
  // The watchdog's / shutdown's: close a connection that waits for or reads a request.
  bool close_if_waiting() {
    int p = phase.load();
    while (p == Idle || p == Reading)
      if (phase.compare_exchange_weak(p, Closed)) {
        ::shutdown(sock, SHUT_RDWR);   // wakes its thread's poll; the thread closes the socket
        return true;
      }
    return false;
  }
};

namespace {

thread_local Conn* tls_conn = nullptr;

void address(int sock, bool peer, std::string* ip, int* port) {
  sockaddr_storage a{};
  socklen_t n = sizeof a;
  if ((peer ? ::getpeername(sock, (sockaddr*)&a, &n) : ::getsockname(sock, (sockaddr*)&a, &n)) != 0) return;
  char host[NI_MAXHOST], serv[NI_MAXSERV];
  if (::getnameinfo((sockaddr*)&a, n, host, sizeof host, serv, sizeof serv, NI_NUMERICHOST | NI_NUMERICSERV) == 0) {
    *ip = host;
    *port = std::atoi(serv);
  }
}

// A whole short answer, best effort, without blocking (the connection is closed right after).
void send_now(int sock, const std::string& text) { (void)!::send(sock, text.data(), text.size(), MSG_NOSIGNAL | MSG_DONTWAIT); }

std::string canned(int status, const char* reason, const std::string& msg, bool retry) {
  std::string body = "{\"error\":\"" + msg + "\"}";
  return "HTTP/1.1 " + std::to_string(status) + " " + reason + "\r\nContent-Type: application/json\r\n" +
         (retry ? "Retry-After: 1\r\n" : "") + "Connection: close\r\nContent-Length: " +
         std::to_string(body.size()) + "\r\n\r\n" + body;
}

// httplib's Stream over one connection: every read and write is bounded by the connection's deadlines.
class ConnStream final : public httplib::Stream {
 public:
  ConnStream(Conn& c, Connections& owner) : c_(c), owner_(owner), L_(owner.limits()) {}

  bool is_readable() const override { return off_ < len_ || wait(POLLIN); }
  bool is_writable() const override { return wait(POLLOUT); }

  ssize_t read(char* ptr, size_t size) override {
    if (off_ < len_) return take(ptr, size);
    if (c_.phase.load() == Writing) c_.set_phase(Reading);   // after "100 Continue"
    for (;;) {
      if (!wait(POLLIN)) return -1;
      const bool buffered = size < sizeof buf_;
      const ssize_t n = ::recv(c_.sock, buffered ? buf_ : ptr, buffered ? sizeof buf_ : size, MSG_DONTWAIT);
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) continue;
      if (n <= 0 || !buffered) return n;
      off_ = 0;
      len_ = (size_t)n;
      return take(ptr, size);
    }
  }

  // All of it or -1: httplib writes a response's head with one call and does not retry a short write.
  ssize_t write(const char* ptr, size_t size) override {
    if (c_.phase.load() != Writing) {
      if (!c_.set_phase(Writing)) return -1;
      c_.write_deadline = Clock::now() + milliseconds(L_.write_timeout_ms);
    }
    c_.wrote = true;
    size_t done = 0;
    while (done < size) {
      if (!wait(POLLOUT)) return -1;
      const ssize_t n = ::send(c_.sock, ptr + done, size - done, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) continue;
        return -1;
      }
      done += (size_t)n;
    }
    return (ssize_t)size;
  }

  void get_remote_ip_and_port(std::string& ip, int& port) const override {
    ip = c_.ip;
    port = c_.port;
  }
  void get_local_ip_and_port(std::string& ip, int& port) const override {
    ip = c_.local_ip;
    port = c_.local_port;
  }
  socket_t socket() const override { return c_.sock; }
  // bytes read from the socket and not yet taken (a pipelined next request)
  bool buffered() const { return off_ < len_; }

 private:
  ssize_t take(char* ptr, size_t size) {
    const size_t n = std::min(size, len_ - off_);
    std::memcpy(ptr, buf_ + off_, n);
    off_ += n;
    return (ssize_t)n;
  }

  // Until the socket is ready for `events`, within this read's (write's) timeout and the request's (answer's).
  bool wait(short events) const {
    const bool rd = events & POLLIN;
    const auto start = Clock::now();
    const auto one = start + milliseconds(rd ? L_.read_timeout_ms : L_.write_timeout_ms);
    const auto whole = rd ? c_.read_deadline : c_.write_deadline;
    const auto end = std::min(one, whole);
    for (;;) {
      if (c_.phase.load() == Closed) return false;
      const auto now = Clock::now();
      if (now >= end) {
        if (!c_.timed_out) owner_.timed_out(!rd ? "write" : end == whole ? "request" : "read");
        c_.timed_out = true;
        if (rd) c_.request_timed_out = true;
        return false;
      }
      pollfd p{c_.sock, events, 0};
      const auto left = std::chrono::duration_cast<milliseconds>(end - now).count() + 1;
      const int r = ::poll(&p, 1, (int)std::min<int64_t>(left, 1000));
      if (r > 0) return true;   // ready, or hung up / failed: the read or write says which
      if (r < 0 && errno != EINTR) return false;
    }
  }

  Conn& c_;
  Connections& owner_;
  const ConnLimits& L_;
  char buf_[4096];
  size_t off_ = 0, len_ = 0;
};

// httplib's thread pool, counting busy threads and accepted connections waiting for one.
class Pool final : public httplib::TaskQueue {
 public:
  Pool(size_t n, std::atomic<int64_t>& waiting, std::atomic<int64_t>& busy) : waiting_(waiting), busy_(busy) {
    for (size_t i = 0; i < n; ++i) threads_.emplace_back([this] { run(); });
  }
  void enqueue(std::function<void()> fn) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      jobs_.push_back(std::move(fn));
      waiting_.fetch_add(1);
    }
    cv_.notify_one();
  }
  void shutdown() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& t : threads_) t.join();
  }

 private:
  void run() {
    for (;;) {
      std::function<void()> fn;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return stop_ || !jobs_.empty(); });
        if (jobs_.empty()) return;   // stopping, and every accepted connection was served
        fn = std::move(jobs_.front());
        jobs_.pop_front();
        busy_.fetch_add(1);
        waiting_.fetch_sub(1);
      }
      fn();
      busy_.fetch_sub(1);
    }
  }

  std::atomic<int64_t>& waiting_;
  std::atomic<int64_t>& busy_;
  std::vector<std::thread> threads_;
  std::deque<std::function<void()>> jobs_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
};

}  // namespace

Connections::Connections(const ConnLimits& limits, int http_threads, Metrics& metrics)
    : limits_(limits), threads_(http_threads), metrics_(metrics) {
  if (limits_.max_per_client < 0) limits_.max_per_client = std::max(1, threads_ - threads_ / 4);
  watchdog_ = std::thread([this] { watchdog(); });
}

Connections::~Connections() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  watchdog_.join();
}

httplib::TaskQueue* Connections::new_pool() { return new Pool((size_t)threads_, waiting_, busy_); }

void Connections::handling() {
  if (tls_conn) tls_conn->set_phase(Handling);
}

bool Connections::request_timed_out() { return tls_conn && tls_conn->request_timed_out; }

std::string Connections::timeout_message() const {
  return "the request did not arrive in time: a whole request (headers and body) must arrive within " +
         std::to_string(limits_.request_timeout_ms) + " ms of its first byte (--request-timeout-ms), each read "
         "within " + std::to_string(limits_.read_timeout_ms) + " ms (--read-timeout-ms)";
}

bool Connections::serve(int sock, const std::atomic<int>& listening, const Process& process) {
  int one = 1;
  ::setsockopt(sock, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  Conn c;
  c.sock = sock;
  address(sock, true, &c.ip, &c.port);
  address(sock, false, &c.local_ip, &c.local_port);
  c.since_ns = now_ns();
  bool closing = false, refused = false;
  int64_t held = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    closing = closing_;
    if (!closing) {
      held = per_client_[c.ip];
      refused = limits_.max_per_client > 0 && held >= limits_.max_per_client;
      if (!refused) {
        ++per_client_[c.ip];
        conns_.insert(&c);
      }
    }
  }
  if (closing || refused) {
    if (refused) {
      metrics_.http_connection_refused("per_client_limit");
      send_now(sock, canned(503, "Service Unavailable",
                            "too many connections from " + c.ip + " (" + std::to_string(held) +
                                " open, --max-conns-per-client " + std::to_string(limits_.max_per_client) +
                                "); retry later",
                            true));
    } else {
      metrics_.http_connection_refused("shutting_down");
    }
    ::shutdown(sock, SHUT_RDWR);
    ::close(sock);
    return false;
  }
  metrics_.http_connections_open(+1);
  tls_conn = &c;
  ConnStream strm(c, *this);
  bool ret = false;
  for (int64_t left = limits_.keep_alive_max; left > 0; --left) {
    // the idle wait for the next request (httplib's keep_alive), cut short by a stop or the watchdog
    c.since_ns = now_ns();
    if (!c.set_phase(Idle)) break;
    const auto idle_end = Clock::now() + milliseconds(limits_.keep_alive_ms);
    bool arrived = strm.buffered();
    while (!arrived) {
      if (listening.load() == INVALID_SOCKET || c.phase.load() == Closed) break;
      const auto now = Clock::now();
      if (now >= idle_end) break;
      pollfd p{sock, POLLIN, 0};
      const auto wait_ms = std::chrono::duration_cast<milliseconds>(idle_end - now).count() + 1;
      const int r = ::poll(&p, 1, (int)std::min<int64_t>(wait_ms, 100));
      if (r > 0) {
        arrived = true;
        break;
      }
      if (r < 0 && errno != EINTR) break;
    }
    if (!arrived) break;
    c.since_ns = now_ns();
    c.read_deadline = Clock::now() + milliseconds(limits_.request_timeout_ms);
    c.request_timed_out = c.wrote = false;
    if (!c.set_phase(Reading)) break;
    bool closed = false;
    ret = process(strm, left == 1, closed);
    if (c.request_timed_out && !c.wrote && c.phase.load() != Closed)
      send_now(sock, canned(408, "Request Timeout", timeout_message(), false));
    if (!ret || closed || c.request_timed_out || c.phase.load() == Closed) break;
  }
  tls_conn = nullptr;
  {
    std::lock_guard<std::mutex> lock(mu_);
    conns_.erase(&c);
    if (--per_client_[c.ip] <= 0) per_client_.erase(c.ip);
    if (c.phase.load() == Closed) --evicting_;
  }
  metrics_.http_connections_open(-1);
  ::shutdown(sock, SHUT_RDWR);
  ::close(sock);
  return ret;
}

void Connections::close_waiting() {
  std::lock_guard<std::mutex> lock(mu_);
  closing_ = true;
  for (Conn* c : conns_)
    if (c->close_if_waiting()) ++evicting_;
}

void Connections::watchdog() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    cv_.wait_for(lock, milliseconds(50));
    if (stopping_ || closing_) continue;
    // every thread busy and connections waiting for one, more than are being closed already
    const int64_t want = waiting_.load() - evicting_;
    if (want <= 0 || busy_.load() < threads_) continue;
    const int64_t old = now_ns() - limits_.overload_grace_ms * 1000000;
    std::vector<std::pair<int64_t, Conn*>> idle;
    for (Conn* c : conns_) {
      const int p = c->phase.load();
      const int64_t since = c->since_ns.load();
      if ((p == Idle || p == Reading) && since <= old) idle.emplace_back(since, c);
    }
    const size_t n = std::min(idle.size(), (size_t)want);
    std::partial_sort(idle.begin(), idle.begin() + n, idle.end());
    for (size_t i = 0; i < n; ++i)
      if (idle[i].second->close_if_waiting()) {
        ++evicting_;
        metrics_.http_connection_timed_out("overload");
      }
  }
}

}  // namespace serve
}  // namespace xrec
