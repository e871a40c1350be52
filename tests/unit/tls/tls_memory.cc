// Measures memory held per idle server-side TLS session after the handshake, at scale:
// opens N in-memory sessions (client freed after each handshake), then reports the heap
// delta (mallinfo2) and RSS delta per session. Usage: tls_memory [N] [1.2|1.3]
#include <malloc.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "support/tls_pump.hh"
#include "sealrelay/tls/context.hh"
#include "sealrelay/tls/session.hh"

using namespace sr::tls;
using sr::tls::testing::endpoint;
using sr::tls::testing::wire;

static long rss_kib() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::atol(line.c_str() + 6);
  return 0;
}

int main(int argc, char** argv) {
  int n = argc > 1 ? std::atoi(argv[1]) : 10000;
  tls_version v = argc > 2 && std::strcmp(argv[2], "1.2") == 0 ? tls_version::v1_2
                                                                  : tls_version::v1_3;
  std::string dir = SR_TEST_CERTS;
  auto s = context::server(dir + "/server.crt", dir + "/server.key", tls_version::v1_2);
  auto c = context::client(dir + "/ca.crt", tls_version::v1_2, v);
  if (!s || !c) {
    std::fprintf(stderr, "context: %s\n", !s ? s.err().c_str() : c.err().c_str());
    return 1;
  }
  std::vector<session> servers;
  servers.reserve(n);
  for (int i = 0; i < 50; ++i) {  // warm up wolfSSL's process-wide FP_ECC tables
    endpoint srv{std::move(*session::accept(*s))}, cli{std::move(*session::connect(*c, "mx.test"))};
    cli.hs = cli.s.handshake();
    wire{}.pump(cli, srv);
  }
  malloc_trim(0);
  size_t heap0 = mallinfo2().uordblks;
  long rss0 = rss_kib();
  for (int i = 0; i < n; ++i) {
    endpoint srv{std::move(*session::accept(*s))}, cli{std::move(*session::connect(*c, "mx.test"))};
    cli.hs = cli.s.handshake();
    wire{}.pump(cli, srv);
    if (srv.hs != 1 || cli.hs != 1) {
      std::fprintf(stderr, "handshake %d failed\n", i);
      return 1;
    }
    servers.push_back(std::move(srv.s));
  }
  malloc_trim(0);
  size_t heap1 = mallinfo2().uordblks;
  long rss1 = rss_kib();
  std::printf("%d idle %s server sessions: heap %.0f B/session, RSS %.0f B/session "
              "(sizeof(session) %zu, not included)\n",
              n, to_string(v), double(heap1 - heap0) / n, double(rss1 - rss0) * 1024.0 / n,
              sizeof(session));
  return 0;
}
