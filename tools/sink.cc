// sealrelay-sink: an SMTP receiver on the relay's engine that accepts, counts and
// discards every message (STARTTLS and implicit TLS included). For tests and
// benchmarks; prints counts every second on a terminal and totals on exit.
// --latency: measures send -> delivered from sealrelay-blast's X-Blast-Ts header and
// prints p50/p99 on exit (SIGTERM); --progress prints the count every second for scripts.
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "sealrelay/server/runtime.hh"
#include "sealrelay/server/sink_store.hh"
#include "sealrelay/util/cidr.hh"
#include "sealrelay/util/log.hh"

namespace {
int usage() {
  std::fputs(
      "usage: sealrelay-sink --listen IP:PORT [--listen ...] [--tls none|starttls|implicit]\n"
      "                      [--cert FILE --key FILE] [--shards N] [--hostname NAME] [--quiet]\n"
      "                      [--latency] [--json] [--progress]\n"
      "  --latency   record arrival - X-Blast-Ts (sealrelay-blast's send time); p50/p99 on exit\n"
      "  --json      also print the totals as one JSON line on exit\n"
      "  --progress  print 'progress MESSAGES' on stdout every second\n"
      "  --latency-dump FILE  (implies --latency) on exit write 'send_ns latency_us rcpt' per message\n",
      stderr);
  return 2;
}
}  // namespace

int main(int argc, char** argv) {
  sr::config::config cfg;
  cfg.server.hostname = "sink.test";
  cfg.server.shards = 1;
  cfg.server.drain_timeout = std::chrono::seconds(2);
  cfg.tls.cert_file = "tests/certs/server.crt";
  cfg.tls.key_file = "tests/certs/server.key";
  cfg.limits.max_conns_per_ip = 0;
  cfg.limits.max_connections = 100000;
  cfg.limits.max_recipients = 100000;
  std::vector<std::string> listens;
  sr::config::listen_tls tls = sr::config::listen_tls::starttls;
  bool quiet = false, latency = false, json = false, progress = false;
  std::string dump_file;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) std::exit(usage());
      return argv[++i];
    };
    if (a == "--listen") listens.push_back(next());
    else if (a == "--tls") {
      std::string t = next();
      if (t == "none") tls = sr::config::listen_tls::none;
      else if (t == "starttls") tls = sr::config::listen_tls::starttls;
      else if (t == "implicit") tls = sr::config::listen_tls::implicit;
      else return usage();
    } else if (a == "--cert") cfg.tls.cert_file = next();
    else if (a == "--key") cfg.tls.key_file = next();
    else if (a == "--shards") cfg.server.shards = unsigned(std::atoi(next().c_str()));
    else if (a == "--hostname") cfg.server.hostname = next();
    else if (a == "--quiet") quiet = true;
    else if (a == "--latency") latency = true;
    else if (a == "--json") json = true;
    else if (a == "--progress") progress = true;
    else if (a == "--latency-dump") {
      dump_file = next();
      latency = true;
    }
    else return usage();
  }
  if (listens.empty()) return usage();
  for (const auto& l : listens) {
    sr::config::listen_entry e;
    e.address = l;
    auto ep = sr::parse_endpoint(l, &e.addr_len);
    if (!ep) {
      std::fprintf(stderr, "sink: bad --listen '%s' (want IP:PORT)\n", l.c_str());
      return 2;
    }
    e.addr = *ep;
    e.tls = tls;
    e.allow_relay_from = {*sr::cidr::parse("0.0.0.0/0"), *sr::cidr::parse("::/0")};
    cfg.listen.push_back(e);
  }
  std::atomic<uint64_t> messages{0}, bytes{0};
  sr::server::shared_state st(cfg);
  sr::server::runtime_hooks hooks;
  // One latency log per shard, each written only by its shard; read after run() joins them.
  std::mutex lat_mu;
  std::vector<std::unique_ptr<sr::server::sink_latency>> lat_logs;
  hooks.make_store = [&](sr::core::shard& sh) {
    sr::server::sink_latency* log = nullptr;
    if (latency) {
      std::lock_guard lk(lat_mu);  // start-up only
      lat_logs.push_back(std::make_unique<sr::server::sink_latency>());
      log = lat_logs.back().get();
      log->us.reserve(1 << 20);
      log->keep_detail = !dump_file.empty();
    }
    return std::make_unique<sr::server::sink_store>(sh, messages, bytes, log);
  };
  hooks.on_ready = [&] {
    std::printf("sink ready on %s\n", listens[0].c_str());
    std::fflush(stdout);
  };
  bool tty = isatty(2) && !quiet;
  uint64_t last = 0;
  hooks.on_second = [&] {
    if (progress) {
      std::printf("progress %" PRIu64 "\n", messages.load());
      std::fflush(stdout);
    }
    if (!tty) return;
    uint64_t m = messages.load();
    std::fprintf(stderr, "\rsink: %" PRIu64 " messages (%" PRIu64 "/s), %u connections   ", m, m - last,
                 st.conns.total());
    last = m;
  };
  int rc = sr::server::run(cfg, st, hooks);
  uint64_t conns_total = st.stats.connections_total.load(), handshakes = st.stats.tls_handshakes.load();
  std::printf("sink: %" PRIu64 " messages, %" PRIu64 " bytes, %" PRIu64 " connections, %" PRIu64
              " TLS handshakes\n",
              messages.load(), bytes.load(), conns_total, handshakes);
  if (latency) {
    std::vector<uint32_t> all;
    uint64_t unstamped = 0, first = 0, last = 0;
    for (const auto& l : lat_logs) {
      all.insert(all.end(), l->us.begin(), l->us.end());
      unstamped += l->unstamped;
      if (l->first_ns && (!first || l->first_ns < first)) first = l->first_ns;
      last = std::max(last, l->last_ns);
    }
    if (!dump_file.empty()) {
      if (FILE* f = std::fopen(dump_file.c_str(), "w")) {
        for (const auto& l : lat_logs)
          for (size_t i = 0; i < l->sent_ns.size(); ++i)
            std::fprintf(f, "%" PRIu64 " %u %s\n", l->sent_ns[i], l->us[i], l->rcpt[i].c_str());
        std::fclose(f);
      } else {
        std::fprintf(stderr, "sink: cannot write %s: %s\n", dump_file.c_str(), std::strerror(errno));
      }
    }
    std::sort(all.begin(), all.end());
    auto pct = [&](double p) -> double {
      if (all.empty()) return 0;
      size_t i = std::min(all.size() - 1, size_t(p / 100.0 * double(all.size())));
      return all[i] / 1000.0;
    };
    double mx = all.empty() ? 0.0 : all.back() / 1000.0;
    std::printf("sink: send -> delivered latency over %zu stamped messages (%" PRIu64
                " unstamped): p50 %.2f ms, p90 %.2f ms, p99 %.2f ms, max %.2f ms\n",
                all.size(), unstamped, pct(50), pct(90), pct(99), mx);
    if (json)
      std::printf("{\"messages\":%" PRIu64 ",\"bytes\":%" PRIu64 ",\"connections\":%" PRIu64
                  ",\"tls_handshakes\":%" PRIu64 ",\"stamped\":%zu,\"unstamped\":%" PRIu64
                  ",\"p50_ms\":%.3f,\"p90_ms\":%.3f,\"p99_ms\":%.3f,\"max_ms\":%.3f,"
                  "\"first_ns\":%" PRIu64 ",\"last_ns\":%" PRIu64 "}\n",
                  messages.load(), bytes.load(), conns_total, handshakes, all.size(), unstamped, pct(50), pct(90), pct(99), mx, first,
                  last);
  } else if (json) {
    std::printf("{\"messages\":%" PRIu64 ",\"bytes\":%" PRIu64 ",\"connections\":%" PRIu64
                ",\"tls_handshakes\":%" PRIu64 "}\n",
                messages.load(), bytes.load(), conns_total, handshakes);
  }
  std::fflush(stdout);
  return rc;
}
