// sealrelay-sink: an SMTP receiver on the relay's engine that accepts, counts and
// discards every message (STARTTLS and implicit TLS included). For tests and
// benchmarks; prints counts every second on a terminal and totals on exit.
// --latency: measures send -> delivered from sealrelay-blast's X-Blast-Ts header and
// prints p50/p99 on exit (SIGTERM); --progress prints the count every second for scripts.
// A throttling mailbox provider, per listener (tools/bench-shaping: one listener per
// provider): --max-conns refuses connections past N open at once with a 421 greeting,
// --defer-every answers every Nth message with a 421 at its final dot (and closes);
// --record writes every connection and message event with its time and listener.
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <atomic>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "sealrelay/server/runtime.hh"
#include "sealrelay/server/server.hh"
#include "sealrelay/server/sink_store.hh"
#include "sealrelay/util/cidr.hh"
#include "sealrelay/util/log.hh"

namespace {
uint64_t mono_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1'000'000'000ull + uint64_t(ts.tv_nsec);
}

// The provider's behaviour, counted per listener. Shards share it: counts are atomics
// (a connection's admit and closed run on its shard; the cap is checked and taken in one
// atomic step so two shards cannot both take the last slot); the event record takes a
// mutex (one uncontended lock per connection or message; off without --record).
class throttle final : public sr::server::peer_script {
 public:
  struct counts {
    std::atomic<uint32_t> open{0}, peak{0};
    std::atomic<uint64_t> connections{0}, refused{0}, messages{0}, deferred{0}, txns{0};
  };
  throttle(const sr::config::config& cfg, unsigned max_conns, unsigned defer_every, std::string defer_reply,
           bool record)
      : _cfg(cfg), _max_conns(max_conns), _defer_every(defer_every), _defer_reply(std::move(defer_reply)),
        _record(record), _counts(cfg.listen.size()) {}

  std::string admit(const sr::config::listen_entry& li) override {
    auto& c = _counts[index(li)];
    uint32_t open = c.open.load(std::memory_order_relaxed);
    do {
      if (_max_conns && open >= _max_conns) {
        c.refused.fetch_add(1, std::memory_order_relaxed);
        note(li, "refused", {});
        return "421 4.7.0 " + _cfg.server.hostname + " Too many concurrent connections, try again later\r\n";
      }
    } while (!c.open.compare_exchange_weak(open, open + 1, std::memory_order_relaxed));
    uint32_t peak = c.peak.load(std::memory_order_relaxed);
    while (open + 1 > peak && !c.peak.compare_exchange_weak(peak, open + 1, std::memory_order_relaxed)) {
    }
    c.connections.fetch_add(1, std::memory_order_relaxed);
    note(li, "connect", {});
    return {};
  }
  void closed(const sr::config::listen_entry& li) override {
    _counts[index(li)].open.fetch_sub(1, std::memory_order_relaxed);
    note(li, "close", {});
  }
  std::string end_message(const sr::config::listen_entry& li, const sr::inbound::envelope& env) override {
    auto& c = _counts[index(li)];
    std::string_view rcpt = env.rcpt_to.empty() ? std::string_view("-") : std::string_view(env.rcpt_to[0]);
    uint64_t n = c.txns.fetch_add(1, std::memory_order_relaxed) + 1;
    if (_defer_every && n % _defer_every == 0) {
      c.deferred.fetch_add(1, std::memory_order_relaxed);
      note(li, "defer", rcpt);
      return _defer_reply;
    }
    c.messages.fetch_add(1, std::memory_order_relaxed);
    note(li, "message", rcpt);
    return {};
  }

  // Print one summary line per listener.
  void summary() const {
    for (size_t i = 0; i < _counts.size(); ++i) {
      const auto& c = _counts[i];
      std::printf("sink: listener %s: %" PRIu64 " connections (peak %u open, %" PRIu64 " refused), %" PRIu64
                  " messages, %" PRIu64 " deferred\n",
                  _cfg.listen[i].address.c_str(), c.connections.load(), c.peak.load(), c.refused.load(),
                  c.messages.load(), c.deferred.load());
    }
  }
  // Write the record: `<CLOCK_MONOTONIC ns> <listen address> <event> [<first rcpt>]` per line.
  bool write_record(const std::string& file) const {
    FILE* f = std::fopen(file.c_str(), "w");
    if (!f) return false;
    for (const auto& e : _events)
      std::fprintf(f, "%" PRIu64 " %s %s%s%s\n", e.ns, _cfg.listen[e.listener].address.c_str(), e.what,
                   e.rcpt.empty() ? "" : " ", e.rcpt.c_str());
    return std::fclose(f) == 0;
  }

 private:
  struct event {
    uint64_t ns;
    uint32_t listener;
    const char* what;
    std::string rcpt;
  };
  size_t index(const sr::config::listen_entry& li) const { return size_t(&li - _cfg.listen.data()); }
  void note(const sr::config::listen_entry& li, const char* what, std::string_view rcpt) {
    if (!_record) return;
    uint64_t now = mono_ns();
    std::lock_guard lk(_mu);
    _events.push_back({now, uint32_t(index(li)), what, std::string(rcpt)});
  }
  const sr::config::config& _cfg;
  unsigned _max_conns, _defer_every;
  std::string _defer_reply;
  bool _record;
  std::vector<counts> _counts;
  std::mutex _mu;
  std::vector<event> _events;
};

int usage() {
  std::fputs(
      "usage: sealrelay-sink --listen IP:PORT [--listen ...] [--tls none|starttls|implicit]\n"
      "                      [--cert FILE --key FILE] [--shards N] [--hostname NAME] [--quiet]\n"
      "                      [--latency] [--json] [--progress] [--max-conns N] [--defer-every N]\n"
      "                      [--defer-reply TEXT] [--record FILE]\n"
      "  --latency   record arrival - X-Blast-Ts (sealrelay-blast's send time); p50/p99 on exit\n"
      "  --json      also print the totals as one JSON line on exit\n"
      "  --progress  print 'progress MESSAGES' on stdout every second\n"
      "  --latency-dump FILE  (implies --latency) on exit write 'send_ns latency_us rcpt' per message\n"
      "Throttling, counted per listener (a summary line per listener on exit):\n"
      "  --max-conns N     a connection past N open at once gets '421 4.7.0' at greeting\n"
      "  --defer-every N   every Nth message gets a 421 at its final dot and the connection closes\n"
      "  --defer-reply TEXT  that reply (default '421 4.7.0 Try again later, closing connection')\n"
      "  --record FILE     on exit write 'ns listen event [rcpt]' per connect, refused, close,\n"
      "                    message, defer (CLOCK_MONOTONIC ns, as X-Blast-Ts)\n",
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
  std::string dump_file, record_file, defer_reply = "421 4.7.0 Try again later, closing connection";
  long max_conns = 0, defer_every = 0;
  auto count_arg = [](const std::string& v, long& out) {
    char* end = nullptr;
    out = std::strtol(v.c_str(), &end, 10);
    return !v.empty() && *end == 0 && out >= 1 && out <= 1000000;
  };
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
    else if (a == "--max-conns") {
      if (!count_arg(next(), max_conns)) return usage();
    } else if (a == "--defer-every") {
      if (!count_arg(next(), defer_every)) return usage();
    } else if (a == "--defer-reply") {
      defer_reply = next();
      // A 4xx reply line ("421 4.7.28 ..."): a deferral, never a bounce; CRLF is ours to add.
      if (defer_reply.size() < 4 || defer_reply[0] != '4' || !std::isdigit(uint8_t(defer_reply[1])) ||
          !std::isdigit(uint8_t(defer_reply[2])) || defer_reply[3] != ' ' ||
          defer_reply.find_first_of("\r\n") != std::string::npos)
        return usage();
    } else if (a == "--record") record_file = next();
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
  std::unique_ptr<throttle> thr;
  if (max_conns || defer_every || !record_file.empty()) {
    thr = std::make_unique<throttle>(cfg, unsigned(max_conns), unsigned(defer_every),
                                     defer_reply, !record_file.empty());
    hooks.script = thr.get();
  }
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
  if (thr) {
    thr->summary();
    if (!record_file.empty() && !thr->write_record(record_file)) {
      std::fprintf(stderr, "sink: cannot write %s: %s\n", record_file.c_str(), std::strerror(errno));
      rc = 1;
    }
  }
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
