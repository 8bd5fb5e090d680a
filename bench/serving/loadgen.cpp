// loadgen: closed-loop HTTP load on an xrec-server (KServe v2 JSON inference requests).
//
//   loadgen --port P --model NAME --requests REQS.jsonl --concurrency C --duration S
//           [--host 127.0.0.1] [--warmup S] [--rtol 1e-4] [--atol 1e-6] [--latencies OUT.bin] --out OUT.json
//
// REQS.jsonl holds one request per line: {"inputs": [...KServe tensors...], "expected": [flat output 0]}.
// C threads each keep one keep-alive connection and send requests back to back for S
// seconds (request k = thread + seq * C, cycling), each with a unique "id". Every
// answer is checked: its status, its echoed id (the answer is this request's), and for
// 200 its output against "expected" (so each client got its own rows of a merged
// batch). Written to OUT.json: counts (sent, answered, by status, transport errors, id
// mismatches, wrong values) over the whole run, and throughput and latency
// percentiles over the requests that started after the warmup.
// Loopback only: the host must be 127.0.0.1 (or localhost).
//
// Open loop (--qps Q): requests ARRIVE at a fixed rate Q for S seconds whatever the server
// does: at evenly spaced times, or with --poisson at the times of a Poisson process of rate Q
// (exponential gaps drawn from --seed, so a run is reproducible). The arrival times are drawn
// before the run; C threads (--concurrency: at most C requests in flight, each thread one
// keep-alive connection) take the arrivals in order, each waits for its request's time and
// sends it. A request is never dropped: when all C connections are busy it is sent as soon as
// one frees, late, and its latency is measured FROM ITS ARRIVAL TIME (so the time it waited in
// the client counts, as it would for a user: no coordinated omission); the lateness is
// reported (late_sends, send_lag_ms; split by cause: backlog_sends when every connection was
// busy, client_lag_ms when a connection was free but the client itself ran late). Latency
// percentiles: the requests that arrived after the warmup; achieved_qps: 200 answers completed
// in [warmup, S] per second. After S the client stops sending, waits for every answer and exits.
// --send-times OUT.bin writes, per request in arrival order, (arrival s, sent s, answered s) as
// float64 (relative to the start).
#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

using nlohmann::json;
using Clock = std::chrono::steady_clock;

struct Sample {
  double start_s;     // since the run began (open loop: the arrival time)
  double latency_s;   // open loop: from the arrival time
  int status;         // HTTP status, or -1 for no answer (transport error)
  double sent_s = 0, done_s = 0;   // open loop: when it was sent and answered, since the run began
  uint64_t index = 0;              // open loop: the arrival's number
  double picked_s = 0;             // open loop: when a free connection took it (after its arrival: all were busy)
};

struct Totals {
  uint64_t sent = 0, answered = 0, transport = 0, id_mismatch = 0, wrong = 0;
  std::map<int, uint64_t> by_status;
  std::vector<Sample> samples;
  std::string first_problem;
};

static int usage(const char* msg) {
  std::fprintf(stderr, "loadgen: %s\nusage: loadgen --port P --model NAME --requests REQS.jsonl --concurrency C "
               "--duration S [--host 127.0.0.1] [--warmup S] [--rtol R] [--atol A] [--latencies OUT.bin] "
               "[--qps Q [--poisson] [--seed N] [--send-times OUT.bin]] --out OUT.json\n", msg);
  return 2;
}

int main(int argc, char** argv) {
  std::string host = "127.0.0.1", model, reqs_path, out_path, lat_path, times_path;
  int port = 0, conc = 8;
  double duration = 5, warmup = 1, rtol = 1e-4, atol = 1e-6;
  double qps = 0;             // > 0: open loop at this arrival rate
  bool poisson = false;
  uint64_t seed = 1;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--poisson") { poisson = true; continue; }
    if (i + 1 >= argc) return usage(("missing value for " + a).c_str());
    std::string v = argv[++i];
    if (a == "--host") host = v;
    else if (a == "--port") port = std::atoi(v.c_str());
    else if (a == "--model") model = v;
    else if (a == "--requests") reqs_path = v;
    else if (a == "--concurrency") conc = std::atoi(v.c_str());
    else if (a == "--duration") duration = std::atof(v.c_str());
    else if (a == "--warmup") warmup = std::atof(v.c_str());
    else if (a == "--rtol") rtol = std::atof(v.c_str());
    else if (a == "--atol") atol = std::atof(v.c_str());
    else if (a == "--out") out_path = v;
    else if (a == "--latencies") lat_path = v;
    else if (a == "--qps") qps = std::atof(v.c_str());
    else if (a == "--seed") seed = std::strtoull(v.c_str(), nullptr, 10);
    else if (a == "--send-times") times_path = v;
    else return usage(("unknown option " + a).c_str());
  }
  if (host != "127.0.0.1" && host != "localhost") return usage("loopback only: --host must be 127.0.0.1");
  if (!port || model.empty() || reqs_path.empty() || out_path.empty() || conc < 1 || duration <= 0)
    return usage("--port, --model, --requests, --out, --concurrency >= 1 and --duration > 0 are required");
  const bool open_loop = qps > 0;
  if (!open_loop && (poisson || !times_path.empty())) return usage("--poisson and --send-times need --qps Q > 0");
  if (qps < 0 || !std::isfinite(qps)) return usage("--qps must be > 0");

  // request bodies: {"id":"<id>", <inputs...>}; expected output values
  std::vector<std::string> bodies;      // the JSON object without its opening brace
  std::vector<std::vector<double>> expected;
  {
    std::ifstream f(reqs_path);
    std::string line;
    while (std::getline(f, line)) {
      if (line.empty()) continue;
      json r = json::parse(line);
      expected.push_back(r.at("expected").get<std::vector<double>>());
      json body = {{"inputs", r.at("inputs")}};
      bodies.push_back(body.dump().substr(1));
    }
  }
  if (bodies.empty()) return usage("no requests in --requests");
  const std::string path = "/v2/models/" + model + "/infer";

  // open loop: the arrival times, drawn before the run
  std::vector<double> arrivals;
  if (open_loop) {
    std::mt19937_64 rng(seed);
    std::exponential_distribution<double> gap(qps);
    for (uint64_t k = 0;; ++k) {
      const double t = poisson ? (arrivals.empty() ? 0.0 : arrivals.back()) + gap(rng) : (double)k / qps;
      if (t >= duration) break;
      arrivals.push_back(t);
    }
  }
  std::atomic<uint64_t> next_arrival{0};

  // one request on `cli`: send, check the answer, record it in T (both modes)
  auto one = [&](httplib::Client& cli, Totals& T, const std::string& id, size_t k, Clock::time_point t_arrive,
                 const Clock::time_point& t_begin, uint64_t index) {
    const std::string body = "{\"id\":\"" + id + "\"," + bodies[k];
    ++T.sent;
    const auto t_send = Clock::now();
    auto res = cli.Post(path.c_str(), body, "application/json");
    const auto t1 = Clock::now();
    Sample s{std::chrono::duration<double>(t_arrive - t_begin).count(),
             std::chrono::duration<double>(t1 - t_arrive).count(), res ? res->status : -1,
             std::chrono::duration<double>(t_send - t_begin).count(),
             std::chrono::duration<double>(t1 - t_begin).count(), index};
    T.samples.push_back(s);
    if (!res) {
      ++T.transport;
      if (T.first_problem.empty()) T.first_problem = "no answer to " + id + ": " + httplib::to_string(res.error());
      return;
    }
    ++T.answered;
    ++T.by_status[res->status];
    if (res->status != 200) {
      if (T.first_problem.empty()) T.first_problem = id + ": HTTP " + std::to_string(res->status) + " " + res->body;
      return;
    }
    try {
      json r = json::parse(res->body);
      if (r.value("id", std::string()) != id) {
        ++T.id_mismatch;
        if (T.first_problem.empty()) T.first_problem = "sent " + id + ", answer has id " + r.value("id", "?");
        return;
      }
      const json& data = r.at("outputs").at(0).at("data");
      const std::vector<double>& want = expected[k];
      bool ok = data.size() == want.size();
      for (size_t i = 0; ok && i < want.size(); ++i) {
        const double g = data[i].get<double>();
        ok = std::fabs(g - want[i]) <= atol + rtol * std::fabs(want[i]);
      }
      if (!ok) {
        ++T.wrong;
        if (T.first_problem.empty()) T.first_problem = id + " (request " + std::to_string(k) + "): wrong values";
      }
    } catch (const std::exception& e) {
      ++T.wrong;
      if (T.first_problem.empty()) T.first_problem = id + ": unreadable answer: " + e.what();
    }
  };

  const auto t_begin = Clock::now();
  const auto t_end = t_begin + std::chrono::duration<double>(duration);
  std::vector<Totals> per(conc);
  std::vector<std::thread> threads;
  for (int t = 0; open_loop && t < conc; ++t) {
    threads.emplace_back([&, t] {
      Totals& T = per[t];
      httplib::Client cli(host, port);
      cli.set_keep_alive(true);
      cli.set_tcp_nodelay(true);
      cli.set_read_timeout(120, 0);
      cli.set_connection_timeout(10, 0);
      for (;;) {
        const uint64_t a = next_arrival.fetch_add(1);
        if (a >= arrivals.size()) break;
        const auto t_arrive = t_begin + std::chrono::duration_cast<Clock::duration>(
                                            std::chrono::duration<double>(arrivals[a]));
        const double picked = std::chrono::duration<double>(Clock::now() - t_begin).count();
        std::this_thread::sleep_until(t_arrive);
        one(cli, T, "o" + std::to_string(a), (size_t)(a % bodies.size()), t_arrive, t_begin, a);
        T.samples.back().picked_s = picked;
      }
    });
  }
  for (int t = 0; !open_loop && t < conc; ++t) {
    threads.emplace_back([&, t] {
      Totals& T = per[t];
      httplib::Client cli(host, port);
      cli.set_keep_alive(true);
      cli.set_tcp_nodelay(true);
      cli.set_read_timeout(120, 0);
      cli.set_connection_timeout(10, 0);
      for (uint64_t seq = 0;; ++seq) {
        const auto t0 = Clock::now();
        if (t0 >= t_end) break;
        const size_t k = (size_t)((t + seq * (uint64_t)conc) % bodies.size());
        const std::string id = std::to_string(t) + "-" + std::to_string(seq);
        one(cli, T, id, k, t0, t_begin, seq);     // closed loop: a request "arrives" when it is sent
      }
    });
  }
  for (auto& th : threads) th.join();
  const double elapsed = std::chrono::duration<double>(Clock::now() - t_begin).count();

  Totals all;
  std::vector<double> lat;
  uint64_t window_ok = 0;
  uint64_t late = 0, done_in_window_ok = 0, scheduled_in_window = 0, backlog = 0;
  std::vector<double> lag, service, client_lag;
  std::vector<Sample> by_arrival;
  if (open_loop) {
    for (double t : arrivals) scheduled_in_window += (t >= warmup);
    for (const Totals& T : per)
      for (const Sample& s : T.samples) {
        const double l = s.sent_s - s.start_s;
        lag.push_back(l);
        late += (l > 1e-3);
        backlog += (s.picked_s > s.start_s + 1e-3);
        client_lag.push_back(s.sent_s - std::max(s.start_s, s.picked_s));
        if (s.status == 200 && s.done_s >= warmup && s.done_s <= duration) ++done_in_window_ok;
        if (s.start_s >= warmup && s.status == 200) service.push_back(s.done_s - s.sent_s);
        if (!times_path.empty()) by_arrival.push_back(s);
      }
    std::sort(lag.begin(), lag.end());
    std::sort(client_lag.begin(), client_lag.end());
    std::sort(service.begin(), service.end());
    std::sort(by_arrival.begin(), by_arrival.end(), [](const Sample& a, const Sample& b) { return a.index < b.index; });
  }
  for (const Totals& T : per) {
    all.sent += T.sent;
    all.answered += T.answered;
    all.transport += T.transport;
    all.id_mismatch += T.id_mismatch;
    all.wrong += T.wrong;
    for (const auto& kv : T.by_status) all.by_status[kv.first] += kv.second;
    if (all.first_problem.empty()) all.first_problem = T.first_problem;
    for (const Sample& s : T.samples)
      if (s.start_s >= warmup && s.status == 200) {
        lat.push_back(s.latency_s);
        ++window_ok;
      }
  }
  std::sort(lat.begin(), lat.end());
  auto pct_of = [](const std::vector<double>& v, double p) {
    if (v.empty()) return 0.0;
    size_t i = (size_t)std::ceil(p / 100.0 * v.size());
    return 1e3 * v[std::min(v.size() - 1, i ? i - 1 : 0)];
  };
  auto pct = [&](double p) { return pct_of(lat, p); };
  double mean = 0;
  for (double x : lat) mean += x;
  mean = lat.empty() ? 0 : 1e3 * mean / lat.size();
  const double window = std::max(1e-9, duration - warmup);
  json by_status = json::object();
  for (const auto& kv : all.by_status) by_status[std::to_string(kv.first)] = kv.second;
  json out = {{"concurrency", conc},
              {"duration_s", duration},
              {"elapsed_s", elapsed},
              {"warmup_s", warmup},
              {"distinct_requests", bodies.size()},
              {"sent", all.sent},
              {"answered", all.answered},
              {"transport_errors", all.transport},
              {"by_status", by_status},
              {"id_mismatch", all.id_mismatch},
              {"wrong_values", all.wrong},
              {"first_problem", all.first_problem},
              {"window_ok", window_ok},
              {"throughput_rps", window_ok / window},
              {"latency_ms", {{"mean", mean}, {"p50", pct(50)}, {"p90", pct(90)}, {"p99", pct(99)},
                              {"max", lat.empty() ? 0.0 : 1e3 * lat.back()}}}};
  out["mode"] = open_loop ? "open" : "closed";
  if (open_loop) {
    // the arrival process and how well the client kept to it
    out["target_qps"] = qps;
    out["arrivals"] = poisson ? "poisson" : "uniform";
    out["seed"] = seed;
    out["scheduled"] = arrivals.size();
    out["scheduled_in_window"] = scheduled_in_window;
    out["offered_qps"] = scheduled_in_window / window;          // this run's arrivals after the warmup, per second
    out["send_rate"] = all.sent / duration;                    // every request sent, per second of the run
    out["achieved_qps"] = done_in_window_ok / window;          // 200s completed in [warmup, duration], per second
    out["late_sends"] = late;                                  // sent > 1 ms after their arrival
    out["send_lag_ms"] = {{"p50", pct_of(lag, 50)}, {"p99", pct_of(lag, 99)},
                          {"max", lag.empty() ? 0.0 : 1e3 * lag.back()}};
    // late sends split by cause: every connection was busy (backlog_sends: the server is behind), or a
    // connection was free but the client sent late anyway (client_lag_ms: the client did not get the CPU in
    // time, e.g. a loaded machine: such lateness is the client's, not the server's)
    out["backlog_sends"] = backlog;
    out["client_lag_ms"] = {{"p50", pct_of(client_lag, 50)}, {"p99", pct_of(client_lag, 99)},
                            {"max", client_lag.empty() ? 0.0 : 1e3 * client_lag.back()}};
    out["service_latency_ms"] = {{"p50", pct_of(service, 50)}, {"p99", pct_of(service, 99)}};  // from the send
  }
  std::ofstream(out_path) << out.dump(1) << "\n";
  if (!lat_path.empty()) {
    std::ofstream f(lat_path, std::ios::binary);
    for (double x : lat) {
      float v = (float)x;
      f.write(reinterpret_cast<const char*>(&v), sizeof v);
    }
  }
  if (!times_path.empty()) {
    std::ofstream f(times_path, std::ios::binary);
    for (const Sample& s : by_arrival) {
      const double v[3] = {s.start_s, s.sent_s, s.done_s};
      f.write(reinterpret_cast<const char*>(v), sizeof v);
    }
  }
  std::printf("loadgen: %llu sent, %llu answered, %.0f req/s, p50 %.2f ms, p99 %.2f ms\n",
              (unsigned long long)all.sent, (unsigned long long)all.answered, window_ok / window, pct(50), pct(99));
  return 0;
}
