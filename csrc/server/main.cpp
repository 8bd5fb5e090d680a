// xrec-server: serve one compiled xrec cpu artifact over HTTP with the KServe v2 /
// Open Inference Protocol (as Triton Inference Server and KServe do).
//
//   xrec-server ARTIFACT [--host 127.0.0.1] [--port 8000] [--max-batch 64] [--max-delay-us 500]
//               [--workers 2] [--threads T] [--queue 256] [--timeout-ms 10000] [--http-threads 128]
//               [--max-body-bytes 67108864] [--read-timeout-ms 5000] [--request-timeout-ms 10000]
//               [--write-timeout-ms 10000] [--keep-alive-timeout-ms 2000] [--keep-alive-max 1000]
//               [--max-conns-per-client N] [--overload-grace-ms 1000] [--isa auto] [--no-verify-weights]
//
// Endpoints: GET /v2, /v2/health/live, /v2/health/ready, /v2/models/NAME[/versions/1],
// .../ready, .../config, POST .../infer, GET /metrics (Prometheus text). Errors are
// {"error": "..."} with a 4xx/5xx status. SIGINT/SIGTERM: stop taking requests
// (503), finish the queued and running ones, answer them, then exit 0; a second
// signal exits at once. Slow clients cannot hold every HTTP thread (connections.h).
#include <httplib.h>
#include <pthread.h>
#include <sys/socket.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "batcher.h"
#include "connections.h"
#include "kserve.h"
#include "metrics.h"
#include "served_model.h"

using nlohmann::json;
using namespace xrec::serve;

namespace {

struct Options {
  std::string artifact, host = "127.0.0.1", isa = "auto";
  int port = 8000;
  BatcherConfig batch;
  int threads = 0;             // model threads per kernel call (0: cores / workers)
  int64_t timeout_ms = 10000;
  int http_threads = 128;
  size_t max_body = 64u << 20;
  bool verify_weights = true;
  ConnLimits conn;
};

const char* const kUsage =
    "usage: xrec-server ARTIFACT [--host 127.0.0.1] [--port 8000] [--max-batch ROWS] "
    "[--max-delay-us U] [--workers W] [--threads T] [--queue Q] [--timeout-ms T] [--http-threads N] "
    "[--max-body-bytes N] [--read-timeout-ms MS] [--request-timeout-ms MS] [--write-timeout-ms MS] "
    "[--keep-alive-timeout-ms MS] [--keep-alive-max N] [--max-conns-per-client N] [--overload-grace-ms MS] "
    "[--isa auto|avx512|avx2|scalar] [--no-verify-weights]\n";

const char* const kHelp =
    "\nServe one compiled xrec cpu artifact over HTTP (KServe v2 / Open Inference Protocol).\n\n"
    "  --host H               address to listen on (default 127.0.0.1)\n"
    "  --port P               TCP port; 0 picks a free one (default 8000)\n"
    "  --max-batch ROWS       rows per kernel call when merging requests; 1: no batching (default 64)\n"
    "  --max-delay-us U       how long the oldest queued request waits for others (default 500)\n"
    "  --workers W            kernel calls running at once (default 2)\n"
    "  --threads T            threads inside one kernel call (default 0: cores / workers)\n"
    "  --queue Q              requests that may wait; more are answered 503 (default 256)\n"
    "  --timeout-ms T         per-request deadline from arrival; later: 504 (default 10000)\n"
    "  --http-threads N       connections served at once, one thread each (default 128)\n"
    "  --max-body-bytes N     larger request bodies are answered 413 (default 67108864)\n"
    "Slow clients (they cannot hold every HTTP thread):\n"
    "  --read-timeout-ms MS   one read of a request waits at most this; then 408 and close (default 5000)\n"
    "  --request-timeout-ms MS  a whole request (headers and body) arrives within this of its first\n"
    "                         byte; then 408 and close (default 10000)\n"
    "  --write-timeout-ms MS  a whole answer is taken by the client within this; then close (default 10000)\n"
    "  --keep-alive-timeout-ms MS  an open connection waits this long for its next request (default 2000)\n"
    "  --keep-alive-max N     requests served on one connection, then it is closed (default 1000)\n"
    "  --max-conns-per-client N  connections one client address may hold; more are answered 503 and\n"
    "                         closed; 0: no limit (default: 3/4 of --http-threads, 96 of 128)\n"
    "  --overload-grace-ms MS while every HTTP thread is busy and connections wait for one, a connection\n"
    "                         idle or reading its request for longer than this is closed, the oldest\n"
    "                         first, one per waiting connection (default 1000)\n"
    "  --isa I                force an ISA build: auto | avx512 | avx2 | scalar (default auto)\n"
    "  --no-verify-weights    skip checksumming weights.bin at load\n"
    "GET /metrics counts xrec_http_connections_open, xrec_http_connections_refused_total{reason} and\n"
    "xrec_http_connections_timed_out_total{reason}.\n";

int usage(const char* msg = nullptr) {
  if (msg) std::fprintf(stderr, "xrec-server: %s\n", msg);
  std::fputs(kUsage, stderr);
  return 2;
}

bool parse_int(const char* s, long long lo, long long* out) {
  char* end = nullptr;
  long long v = std::strtoll(s, &end, 10);
  if (!end || *end || v < lo) return false;
  *out = v;
  return true;
}

int parse_args(int argc, char** argv, Options* o) {
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto num = [&](long long lo, long long* v) {
      if (i + 1 >= argc) return false;
      return parse_int(argv[++i], lo, v);
    };
    long long v = 0;
    if (a == "--host" && i + 1 < argc) o->host = argv[++i];
    else if (a == "--isa" && i + 1 < argc) o->isa = argv[++i];
    else if (a == "--no-verify-weights") o->verify_weights = false;
    else if (a == "--port") { if (!num(0, &v) || v > 65535) return usage("--port needs 0..65535"); o->port = (int)v; }
    else if (a == "--max-batch") { if (!num(1, &v)) return usage("--max-batch needs rows >= 1"); o->batch.max_batch = v; }
    else if (a == "--max-delay-us") { if (!num(0, &v)) return usage("--max-delay-us needs >= 0"); o->batch.max_delay_us = v; }
    else if (a == "--workers") { if (!num(1, &v)) return usage("--workers needs >= 1"); o->batch.workers = (int)v; }
    else if (a == "--threads") { if (!num(0, &v)) return usage("--threads needs >= 0"); o->threads = (int)v; }
    else if (a == "--queue") { if (!num(1, &v)) return usage("--queue needs >= 1"); o->batch.queue = (size_t)v; }
    else if (a == "--timeout-ms") { if (!num(1, &v)) return usage("--timeout-ms needs >= 1"); o->timeout_ms = v; }
    else if (a == "--http-threads") { if (!num(1, &v)) return usage("--http-threads needs >= 1"); o->http_threads = (int)v; }
    else if (a == "--max-body-bytes") { if (!num(1, &v)) return usage("--max-body-bytes needs >= 1"); o->max_body = (size_t)v; }
    else if (a == "--read-timeout-ms") { if (!num(1, &v)) return usage("--read-timeout-ms needs >= 1"); o->conn.read_timeout_ms = v; }
    else if (a == "--request-timeout-ms") { if (!num(1, &v)) return usage("--request-timeout-ms needs >= 1"); o->conn.request_timeout_ms = v; }
    else if (a == "--write-timeout-ms") { if (!num(1, &v)) return usage("--write-timeout-ms needs >= 1"); o->conn.write_timeout_ms = v; }
    else if (a == "--keep-alive-timeout-ms") { if (!num(1, &v)) return usage("--keep-alive-timeout-ms needs >= 1"); o->conn.keep_alive_ms = v; }
    else if (a == "--keep-alive-max") { if (!num(1, &v)) return usage("--keep-alive-max needs >= 1"); o->conn.keep_alive_max = v; }
    else if (a == "--max-conns-per-client") { if (!num(0, &v)) return usage("--max-conns-per-client needs >= 0 (0: no limit)"); o->conn.max_per_client = v; }
    else if (a == "--overload-grace-ms") { if (!num(0, &v)) return usage("--overload-grace-ms needs >= 0"); o->conn.overload_grace_ms = v; }
    else if (a == "-h" || a == "--help") { std::fputs(kUsage, stdout); std::fputs(kHelp, stdout); return 1; }
    else if (!a.empty() && a[0] == '-') return usage(("unknown option " + a).c_str());
    else if (o->artifact.empty()) o->artifact = a;
    else return usage(("unexpected argument " + a).c_str());
  }
  if (o->artifact.empty()) return usage("no ARTIFACT given");
  return 0;
}

void send_json(httplib::Response& res, int status, const json& body) {
  res.status = status;
  // replace: a message quoting a client's bytes that are not UTF-8 must not turn a 4xx into a 500
  res.set_content(body.dump(-1, ' ', false, json::error_handler_t::replace), "application/json");
}

const char* const kEmptyBody =
    "the request body is empty: POST a JSON object {\"inputs\": [{\"name\", \"datatype\", \"shape\", "
    "\"data\"}, ...]} (KServe v2) with Content-Type: application/json and its Content-Length";

bool is_infer_path(const std::string& path) {
  const size_t n = path.size();
  return n >= 6 && path.compare(n - 6, 6, "/infer") == 0;
}

void send_error(httplib::Response& res, int status, const std::string& msg) { send_json(res, status, {{"error", msg}}); }

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  if (int rc = parse_args(argc, argv, &opt)) return rc == 1 ? 0 : rc;

  // SIGINT/SIGTERM are taken by one thread (sigwait): block them before any thread starts.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  signal(SIGPIPE, SIG_IGN);

  const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  xrec::LoadOptions lo;
  lo.isa = opt.isa;
  lo.threads = opt.threads > 0 ? opt.threads : std::max(1, (int)cores / opt.batch.workers);
  lo.verify_weights = opt.verify_weights;
  std::unique_ptr<ServedModel> model;
  try {
    model = ServedModel::open(opt.artifact, lo);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "xrec-server: cannot serve %s: %s\n", opt.artifact.c_str(), e.what());
    return 1;
  }
  const std::string name = model->name();
  Metrics metrics(name);
  Batcher batcher(*model, opt.batch, metrics);
  std::atomic<bool> draining{false};
  std::atomic<int> active{0};       // infer handlers between arrival and answer
  std::atomic<int> admitting{0};    // infer handlers past the draining check and not yet queued

  // The connections (accept to close) are served by Connections: httplib's read timeout bounds one read,
  // so a client sending a byte now and then held its thread for ever (connections.h).
  Connections conns(opt.conn, opt.http_threads, metrics);
  // httplib listens with a backlog of 5 (CPPHTTPLIB_LISTEN_BACKLOG, fixed in the Debian library): many
  // clients connecting at once would overflow it and see resets; listen() again with a deep backlog.
  struct Server : httplib::Server {
    Connections* conns = nullptr;
    int socket() const { return (int)svr_sock_; }

   private:
    bool process_and_close_socket(socket_t sock) override {
      return conns->serve(sock, svr_sock_, [this](httplib::Stream& strm, bool close, bool& closed) {
        return process_request(strm, close, closed, nullptr);
      });
    }
  } svr;
  svr.conns = &conns;
  svr.new_task_queue = [&conns] { return conns.new_pool(); };
  svr.set_payload_max_length(opt.max_body);
  svr.set_tcp_nodelay(true);
  // a request without a body has arrived once its headers have: its handler runs (never cut by the watchdog)
  svr.set_pre_routing_handler([](const httplib::Request& req, httplib::Response&) {
    const std::string len = req.get_header_value("Content-Length");
    if (!req.has_header("Transfer-Encoding") && (len.empty() || len == "0")) Connections::handling();
    return httplib::Server::HandlerResponse::Unhandled;
  });

  // ---- /v2/models/NAME[/versions/V]: the one model this server serves
  auto known = [&](const httplib::Request& req, httplib::Response& res) {
    const std::string m = req.matches[1];
    const std::string v = req.matches.size() > 2 ? std::string(req.matches[2]) : std::string();
    if (m != name) {
      send_error(res, 404, "unknown model '" + m + "': this server serves '" + name + "'");
      metrics.error("unknown_model");
      return false;
    }
    if (!v.empty() && v != "1") {
      send_error(res, 404, "model '" + name + "' has no version '" + v + "' (it has version '1')");
      metrics.error("unknown_model");
      return false;
    }
    return true;
  };
  const std::string M = R"(/v2/models/([^/]+)(?:/versions/([^/]+))?)";

  svr.Get("/v2/health/live", [&](const httplib::Request&, httplib::Response& res) {
    send_json(res, 200, {{"live", true}});
  });
  svr.Get("/v2/health/ready", [&](const httplib::Request&, httplib::Response& res) {
    if (draining) return send_json(res, 503, {{"ready", false}, {"error", "the server is shutting down"}});
    send_json(res, 200, {{"ready", true}});
  });
  svr.Get("/v2", [&](const httplib::Request&, httplib::Response& res) {
    send_json(res, 200, {{"name", "xrec"}, {"version", "0.1.0"}, {"extensions", {"binary_tensor_data"}}});
  });
  svr.Get(M, [&](const httplib::Request& req, httplib::Response& res) {
    if (known(req, res)) send_json(res, 200, model->metadata());
  });
  svr.Get(M + "/ready", [&](const httplib::Request& req, httplib::Response& res) {
    if (!known(req, res)) return;
    if (draining)
      return send_json(res, 503, {{"name", name}, {"ready", false}, {"error", "the server is shutting down"}});
    send_json(res, 200, {{"name", name}, {"ready", true}});
  });
  svr.Get(M + "/config", [&](const httplib::Request& req, httplib::Response& res) {
    if (!known(req, res)) return;
    const BatcherConfig& c = batcher.config();
    json meta = model->metadata();
    send_json(res, 200,
              {{"name", name},
               {"platform", "xrec_cpu"},
               {"max_batch_size", 0},   // the batch dimension is part of each input's shape
               {"input", meta["inputs"]},
               {"output", meta["outputs"]},
               {"dynamic_batching",
                {{"enabled", model->batchable() && c.max_batch > 1},
                 {"max_batch_rows", c.max_batch},
                 {"max_queue_delay_microseconds", c.max_delay_us},
                 {"max_queue_size", c.queue},
                 {"not_batchable_because", model->not_batchable_reason()}}},
               {"instance_group", {{{"kind", "KIND_CPU"}, {"count", c.workers}}}},
               {"xrec", {{"isa", model->isa()}, {"artifact", opt.artifact}, {"timeout_ms", opt.timeout_ms}}}});
  });
  svr.Get("/metrics", [&](const httplib::Request&, httplib::Response& res) {
    res.set_content(metrics.render(), "text/plain; version=0.0.4; charset=utf-8");
  });

  // The body of POST .../infer; `answer` sends an error (or counts a 200) exactly once.
  auto handle_infer = [&](const httplib::Request& req, httplib::Response& res, Clock::time_point t0,
                          const std::function<void(int, const std::string&, const std::string&)>& answer) {
    if (!known(req, res)) {
      metrics.answered(404, std::chrono::duration<double>(Clock::now() - t0).count());
      return;
    }
    // A request that got past this check is in flight: shutdown waits for it to be queued (then answered).
    // (admitting goes up before draining is read; the drain sets draining before it reads admitting.)
    admitting.fetch_add(1);
    struct Admit {
      std::atomic<int>& n;
      bool done = false;
      void release() {
        if (!done) n.fetch_sub(1);
        done = true;
      }
      ~Admit() { release(); }
    } admit{admitting};
    if (draining) return answer(503, "shutting_down", "the server is shutting down; it takes no new requests");
    if (req.body.empty())
      return answer(400, "bad_request", kEmptyBody);
    InferRequest r;
    auto job = std::make_shared<Job>();
    try {
      r = parse_infer_request(req.body, req.get_header_value("Inference-Header-Content-Length"), *model);
      job->in = model->prepare(r.inputs);
    } catch (const RequestError& e) {
      admit.release();
      return answer(e.status, e.kind, e.what());
    }
    int64_t timeout_us = opt.timeout_ms * 1000;
    if (r.timeout_us > 0 && r.timeout_us < timeout_us) timeout_us = r.timeout_us;
    job->enqueued = Clock::now();
    job->deadline = t0 + std::chrono::microseconds(timeout_us);
    const Batcher::Submit submitted = batcher.submit(job);
    admit.release();
    switch (submitted) {
      case Batcher::Submit::Full:
        res.set_header("Retry-After", "1");
        return answer(503, "queue_full", "the queue is full (" + std::to_string(batcher.config().queue) +
                                             " requests waiting, --queue); retry later");
      case Batcher::Submit::Closed:
        return answer(503, "shutting_down", "the server is shutting down; it takes no new requests");
      case Batcher::Submit::Ok:
        break;
    }
    if (!batcher.wait(job))
      return answer(504, "timeout", "no answer within " + std::to_string(timeout_us / 1000) +
                                        " ms (--timeout-ms or parameters.timeout); the request was dropped");
    if (job->status != 200) return answer(job->status, job->error_kind, job->error);
    InferResponse out = encode_infer_response(*model, r, job->outputs);
    if (out.header_length >= 0) res.set_header("Inference-Header-Content-Length", std::to_string(out.header_length));
    res.status = 200;
    res.set_content(std::move(out.body), out.content_type.c_str());
    answer(200, "", "");
  };

  svr.Post(M + "/infer", [&](const httplib::Request& req, httplib::Response& res) {
    Connections::handling();
    const auto t0 = Clock::now();
    metrics.received();
    // In flight from here until this handler returns, whatever way it returns (a throw included):
    // shutdown waits for `active` to reach 0.
    active.fetch_add(1);
    struct Active {
      std::atomic<int>& n;
      ~Active() { n.fetch_sub(1); }
    } in_flight{active};
    bool answered = false;
    auto answer = [&](int status, const std::string& kind, const std::string& msg) {
      if (status != 200) {
        send_error(res, status, msg);
        metrics.error(kind);
      }
      metrics.answered(status, std::chrono::duration<double>(Clock::now() - t0).count());
      answered = true;
    };
    try {
      handle_infer(req, res, t0, answer);
    } catch (const std::exception& e) {
      if (!answered) answer(500, "internal", std::string("internal error: ") + e.what());
    } catch (...) {
      if (!answered) answer(500, "internal", "internal error");
    }
  });

  // Errors the routes did not answer themselves (no route, body too large, ...): JSON too.
  svr.set_error_handler([&](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    std::string msg;
    if (Connections::request_timed_out()) {
      res.status = 408;   // httplib says 400 when a header or the body did not arrive: it did not in time
      res.set_header("Connection", "close");
      msg = conns.timeout_message();
    } else if (res.status == 413) {
      msg = "the request body (" + req.get_header_value("Content-Length") + " bytes) exceeds the limit of " +
            std::to_string(opt.max_body) + " bytes (--max-body-bytes)";
      metrics.error("too_large");
    } else if (res.status == 404) {
      msg = "no route for " + req.method + " " + req.path + "; this server answers GET /v2, /v2/health/live, "
            "/v2/health/ready, /v2/models/" + name + "[/ready|/config], /metrics and POST /v2/models/" + name +
            "/infer";
      metrics.error("not_found");
    } else if (res.status == 400 && req.method == "POST" && req.body.empty()) {
      msg = kEmptyBody;   // httplib refuses a POST without Content-Length before any route sees it
      metrics.error("bad_request");
    } else {
      msg = "HTTP " + std::to_string(res.status) + " for " + req.method + " " + req.path;
      metrics.error(res.status >= 500 ? "internal" : "bad_request");
    }
    // every POST .../infer is counted, also those refused before the infer route ran
    if (req.method == "POST" && is_infer_path(req.path)) {
      metrics.received();
      metrics.answered(res.status, 0.0);
    }
    send_error(res, res.status, msg);
  });
  svr.set_exception_handler([&](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
    std::string msg = "internal error";
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      msg += std::string(": ") + e.what();
    } catch (...) {
    }
    metrics.error("internal");
    send_error(res, 500, msg);
  });

  int port = opt.port;
  if (port == 0) {
    port = svr.bind_to_any_port(opt.host);
    if (port <= 0) {
      std::fprintf(stderr, "xrec-server: cannot listen on %s (any port)\n", opt.host.c_str());
      return 1;
    }
  } else if (!svr.bind_to_port(opt.host, port)) {
    std::fprintf(stderr, "xrec-server: cannot listen on %s:%d (in use? another --port or --host)\n",
                 opt.host.c_str(), port);
    return 1;
  }

  if (::listen(svr.socket(), SOMAXCONN) != 0)
    std::fprintf(stderr, "xrec-server: warning: cannot deepen the listen backlog: %s\n", std::strerror(errno));

  std::thread signals([&] {
    int sig = 0;
    sigwait(&sigs, &sig);
    std::fprintf(stderr, "xrec serve: %s: finishing %zu queued and the running requests, then stopping "
                 "(again to exit at once)\n", sig == SIGINT ? "SIGINT" : "SIGTERM", batcher.depth());
    std::thread([&] {
      draining = true;
      metrics.set_draining(true);
      while (admitting.load() > 0) std::this_thread::sleep_for(std::chrono::microseconds(200));
      batcher.drain();   // runs everything queued; every waiting handler gets its result
      for (int i = 0; i < 30000 && active.load() > 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
      svr.stop();
      conns.close_waiting();   // connections waiting for or reading a request (slow clients) go now
    }).detach();
    // a second signal a second or more later exits at once (one signal sent to both the
    // process and its group, as `timeout` does, arrives twice at the same moment)
    const auto first = Clock::now();
    for (;;) {
      sigwait(&sigs, &sig);
      if (Clock::now() - first >= std::chrono::seconds(1)) break;
    }
    std::fprintf(stderr, "xrec serve: second signal, exiting now\n");
    std::_Exit(128 + sig);
  });
  signals.detach();

  const BatcherConfig& c = batcher.config();
  std::printf("xrec serve: %s (isa %s) at http://%s:%d  (POST /v2/models/%s/infer)\n", name.c_str(),
              model->isa().c_str(), opt.host.c_str(), port, name.c_str());
  std::printf("xrec serve: dynamic batching %s: max-batch %lld rows, max-delay %lld us; %d worker(s) x %d "
              "thread(s), queue %zu, timeout %lld ms, %d http threads (at most %lld per client)\n",
              model->batchable() ? "on" : ("off (" + model->not_batchable_reason() + ")").c_str(),
              (long long)c.max_batch, (long long)c.max_delay_us, c.workers, lo.threads, c.queue,
              (long long)opt.timeout_ms, opt.http_threads, (long long)conns.limits().max_per_client);
  std::fflush(stdout);
  svr.listen_after_bind();
  std::printf("xrec serve: stopped\n");
  std::fflush(stdout);
  return 0;
}
