// Google Benchmark of the TLS record path and of handshakes (issue 11): a client and a
// server tls::session joined in memory after a real handshake. Encrypt = what tls::stream
// does per send (session::write of a 10 KiB piece, pending_output() appended to the wire
// string, consume_output()); decrypt = what it does per received chunk (feed() the
// records, read() into 16 KiB pool-sized buffers until it wants input). Cipher suites:
// TLS 1.3 AES-256-GCM and ChaCha20-Poly1305 (forced on the client). Handshakes: full with
// the test PKI's ECDSA P-256 certificate and with an RSA-2048 one made at start-up
// (openssl), and resumed with a ticket; both ends' CPU per handshake, as on loopback.
// In src/tls because it names wolfSSL cipher suites (wolfSSL headers stay here).
#include <benchmark/benchmark.h>

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "sealrelay/tls/context.hh"
#include "sealrelay/tls/library.hh"
#include "sealrelay/tls/session.hh"
#include "sealrelay/tls/session_cache.hh"

namespace {

using sr::tls::context;
using sr::tls::session;
using sr::tls::tls_version;

constexpr size_t kRecord = 10 * 1024;
constexpr size_t kChunk = 16 * 1024;  // the relay's pool chunk size

std::string certs_dir() { return SR_TEST_CERTS; }

bool rsa_made = false;

// An RSA-2048 certificate from the test CA, made once, on first use (openssl).
const std::string& rsa_dir() {
  static std::string dir = [] {
    rsa_made = true;
    char tmpl[] = "/tmp/sr-record-bench-XXXXXX";
    std::string d = mkdtemp(tmpl) ? tmpl : "";
    if (d.empty()) return d;
    std::string ca = certs_dir();
    std::string cmd =
        "set -e; cd " + d + "; openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out rsa.key 2>/dev/null;"
        " openssl req -new -key rsa.key -subj /CN=mx.test -out rsa.csr 2>/dev/null;"
        " printf 'subjectAltName=DNS:mx.test\\n' > rsa.ext;"
        " openssl x509 -req -in rsa.csr -CA " + ca + "/ca.crt -CAkey " + ca + "/ca.key -set_serial 7"
        " -sha256 -days 2 -extfile rsa.ext -out rsa.crt 2>/dev/null";
    if (std::system(cmd.c_str()) != 0) return std::string();
    return d;
  }();
  return dir;
}

std::unique_ptr<context> server_ctx(bool rsa) {
  std::string crt = rsa ? rsa_dir() + "/rsa.crt" : certs_dir() + "/server.crt";
  std::string key = rsa ? rsa_dir() + "/rsa.key" : certs_dir() + "/server.key";
  auto r = context::server(crt, key, tls_version::v1_2);
  return r ? std::make_unique<context>(std::move(r.value())) : nullptr;
}

std::unique_ptr<context> client_ctx() {
  auto r = context::client(certs_dir() + "/ca.crt", tls_version::v1_2);
  return r ? std::make_unique<context>(std::move(r.value())) : nullptr;
}

// Move one side's pending ciphertext into the other.
void pass(session& from, session& to) {
  auto out = from.pending_output();
  size_t n = out.size();
  if (!n) return;
  std::vector<std::byte> copy(out.begin(), out.end());
  from.consume_output(n);
  to.feed(copy);
  if (to.handshake_done()) {
    std::byte sink[kChunk];
    while (to.read(sink) > 0) {
    }
  } else {
    to.handshake();
  }
}

// Handshake cli and srv to completion in memory, then let the client take the server's
// post-handshake records (TLS 1.3 tickets). False when it did not complete.
bool handshake(session& cli, session& srv) {
  cli.handshake();
  for (int i = 0; i < 10 && !(cli.handshake_done() && srv.handshake_done()); ++i) {
    pass(cli, srv);
    pass(srv, cli);
  }
  srv.write(std::as_bytes(std::span("x", 1)));
  pass(srv, cli);
  return cli.handshake_done() && srv.handshake_done();
}

struct pair {
  std::unique_ptr<context> sctx = server_ctx(false), cctx = client_ctx();
  std::unique_ptr<session> cli, srv;
  bool ok = false;
  explicit pair(const char* suite) {
    if (!sctx || !cctx) return;
    auto s = session::accept(*sctx);
    auto c = session::connect(*cctx, "mx.test");
    if (!s || !c) return;
    srv = std::make_unique<session>(std::move(s.value()));
    cli = std::make_unique<session>(std::move(c.value()));
    if (wolfSSL_set_cipher_list(cli->native(), suite) != WOLFSSL_SUCCESS) return;
    ok = handshake(*cli, *srv) && cli->version() == "TLSv1.3";
  }
};

constexpr const char* kAes = "TLS13-AES256-GCM-SHA384";
constexpr const char* kChacha = "TLS13-CHACHA20-POLY1305-SHA256";

// tls::stream's send path for one 10 KiB body piece.
void BM_record_encrypt_10k(benchmark::State& state, const char* suite) {
  pair p(suite);
  if (!p.ok) return state.SkipWithError("handshake failed");
  std::vector<std::byte> body(kRecord, std::byte{0x5a});
  std::string wire;
  for (auto _ : state) {
    if (p.srv->write(body) != int(kRecord)) return state.SkipWithError("write failed");
    auto out = p.srv->pending_output();
    wire.assign(reinterpret_cast<const char*>(out.data()), out.size());
    p.srv->consume_output(out.size());
    benchmark::DoNotOptimize(wire.data());
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(kRecord));
  state.SetLabel(std::string(p.srv->cipher()));
}
BENCHMARK_CAPTURE(BM_record_encrypt_10k, aes256gcm, kAes);
BENCHMARK_CAPTURE(BM_record_encrypt_10k, chacha20poly1305, kChacha);

// tls::stream's receive path for the records of one 10 KiB piece.
void BM_record_decrypt_10k(benchmark::State& state, const char* suite) {
  pair p(suite);
  if (!p.ok) return state.SkipWithError("handshake failed");
  std::vector<std::byte> body(kRecord, std::byte{0x5a});
  // Records are read once each: make a batch of them up front, re-made when used up
  // (outside the timing), because the sequence number moves on with every record.
  std::vector<std::vector<std::byte>> batch;
  size_t next = 0;
  auto refill = [&] {
    batch.clear();
    next = 0;
    for (int i = 0; i < 256; ++i) {
      p.cli->write(body);
      auto out = p.cli->pending_output();
      batch.emplace_back(out.begin(), out.end());
      p.cli->consume_output(out.size());
    }
  };
  refill();
  std::vector<std::byte> chunk(kChunk);
  for (auto _ : state) {
    if (next == batch.size()) {
      state.PauseTiming();
      refill();
      state.ResumeTiming();
    }
    p.srv->feed(batch[next++]);
    size_t got = 0;
    for (int n; (n = p.srv->read(chunk)) > 0;) got += size_t(n);
    if (got != kRecord) return state.SkipWithError("short read");
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(kRecord));
  state.SetLabel(std::string(p.srv->cipher()));
}
BENCHMARK_CAPTURE(BM_record_decrypt_10k, aes256gcm, kAes);
BENCHMARK_CAPTURE(BM_record_decrypt_10k, chacha20poly1305, kChacha);

// One TLS 1.3 handshake (client and server CPU together), full or resumed with a ticket.
void BM_handshake(benchmark::State& state, bool rsa, bool resume) {
  auto sctx = server_ctx(rsa);
  auto cctx = client_ctx();
  if (!sctx || !cctx) return state.SkipWithError("contexts");
  sr::tls::session_cache cache(4);
  if (resume) {  // the ticket to resume from
    auto s = session::accept(*sctx);
    auto c = session::connect(*cctx, "mx.test", &cache);
    if (!s || !c || !handshake(*c, *s) || cache.size() != 1) return state.SkipWithError("no ticket");
  }
  int resumed = 0;
  for (auto _ : state) {
    auto s = session::accept(*sctx);
    auto c = session::connect(*cctx, "mx.test", resume ? &cache : nullptr);
    if (!s || !c || !handshake(*c, *s)) return state.SkipWithError("handshake failed");
    resumed += c->resumed();
  }
  if (resume && resumed != int(state.iterations())) state.SkipWithError("not resumed");
  state.SetLabel(rsa ? "RSA-2048" : "ECDSA P-256");
}
BENCHMARK_CAPTURE(BM_handshake, p256_full, false, false)->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_handshake, rsa2048_full, true, false)->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_handshake, p256_resumed, false, true)->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_handshake, rsa2048_resumed, true, true)->Unit(benchmark::kMicrosecond);

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::AddCustomContext("wolfssl", sr::tls::describe_library());
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  if (rsa_made && !rsa_dir().empty()) std::system(("rm -rf " + rsa_dir()).c_str());
  return 0;
}
