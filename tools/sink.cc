// sealrelay-sink: an SMTP receiver on the relay's engine that accepts, counts and
// discards every message (STARTTLS and implicit TLS included). For tests and
// benchmarks; prints counts every second on a terminal and totals on exit.
#include <unistd.h>

#include <atomic>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <string>

#include "server/runtime.hh"
#include "server/sink_store.hh"
#include "util/cidr.hh"
#include "util/log.hh"

namespace {
int usage() {
  std::fputs(
      "usage: sealrelay-sink --listen IP:PORT [--listen ...] [--tls none|starttls|implicit]\n"
      "                      [--cert FILE --key FILE] [--shards N] [--hostname NAME] [--quiet]\n",
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
  bool quiet = false;
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
  hooks.make_store = [&](sr::core::shard& sh) {
    return std::make_unique<sr::server::sink_store>(sh, messages, bytes);
  };
  hooks.on_ready = [&] {
    std::printf("sink ready on %s\n", listens[0].c_str());
    std::fflush(stdout);
  };
  bool tty = isatty(2) && !quiet;
  uint64_t last = 0;
  hooks.on_second = [&] {
    if (!tty) return;
    uint64_t m = messages.load();
    std::fprintf(stderr, "\rsink: %" PRIu64 " messages (%" PRIu64 "/s), %u connections   ", m, m - last,
                 st.connections.load());
    last = m;
  };
  int rc = sr::server::run(cfg, st, hooks);
  std::printf("sink: %" PRIu64 " messages, %" PRIu64 " bytes\n", messages.load(), bytes.load());
  return rc;
}
