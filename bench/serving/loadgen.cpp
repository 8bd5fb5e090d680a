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
#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

using nlohmann::json;
using Clock = std::chrono::steady_clock;

struct Sample {
  double start_s;     // since the run began
  double latency_s;
  int status;         // HTTP status, or -1 for no answer (transport error)
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
               "--out OUT.json\n", msg);
  return 2;
}

int main(int argc, char** argv) {
  std::string host = "127.0.0.1", model, reqs_path, out_path, lat_path;
  int port = 0, conc = 8;
  double duration = 5, warmup = 1, rtol = 1e-4, atol = 1e-6;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
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
    else return usage(("unknown option " + a).c_str());
  }
  if (host != "127.0.0.1" && host != "localhost") return usage("loopback only: --host must be 127.0.0.1");
  if (!port || model.empty() || reqs_path.empty() || out_path.empty() || conc < 1 || duration <= 0)
    return usage("--port, --model, --requests, --out, --concurrency >= 1 and --duration > 0 are required");

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

  const auto t_begin = Clock::now();
  const auto t_end = t_begin + std::chrono::duration<double>(duration);
  std::vector<Totals> per(conc);
  std::vector<std::thread> threads;
  for (int t = 0; t < conc; ++t) {
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
        const std::string body = "{\"id\":\"" + id + "\"," + bodies[k];
        ++T.sent;
        auto res = cli.Post(path.c_str(), body, "application/json");
        const auto t1 = Clock::now();
        Sample s{std::chrono::duration<double>(t0 - t_begin).count(), std::chrono::duration<double>(t1 - t0).count(),
                 res ? res->status : -1};
        T.samples.push_back(s);
        if (!res) {
          ++T.transport;
          if (T.first_problem.empty()) T.first_problem = "no answer to " + id + ": " + httplib::to_string(res.error());
          continue;
        }
        ++T.answered;
        ++T.by_status[res->status];
        if (res->status != 200) {
          if (T.first_problem.empty()) T.first_problem = id + ": HTTP " + std::to_string(res->status) + " " + res->body;
          continue;
        }
        try {
          json r = json::parse(res->body);
          if (r.value("id", std::string()) != id) {
            ++T.id_mismatch;
            if (T.first_problem.empty()) T.first_problem = "sent " + id + ", answer has id " + r.value("id", "?");
            continue;
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
      }
    });
  }
  for (auto& th : threads) th.join();
  const double elapsed = std::chrono::duration<double>(Clock::now() - t_begin).count();

  Totals all;
  std::vector<double> lat;
  uint64_t window_ok = 0;
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
  auto pct = [&](double p) {
    if (lat.empty()) return 0.0;
    size_t i = (size_t)std::ceil(p / 100.0 * lat.size());
    return 1e3 * lat[std::min(lat.size() - 1, i ? i - 1 : 0)];
  };
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
  std::ofstream(out_path) << out.dump(1) << "\n";
  if (!lat_path.empty()) {
    std::ofstream f(lat_path, std::ios::binary);
    for (double x : lat) {
      float v = (float)x;
      f.write(reinterpret_cast<const char*>(&v), sizeof v);
    }
  }
  std::printf("loadgen: %llu sent, %llu answered, %.0f req/s, p50 %.2f ms, p99 %.2f ms\n",
              (unsigned long long)all.sent, (unsigned long long)all.answered, window_ok / window, pct(50), pct(99));
  return 0;
}
