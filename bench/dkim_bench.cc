// DKIM signing cost per message (issue 10, item 4): a 10 KiB message (7 header fields,
// text body of 76-column lines) signed relaxed/relaxed with RSA-2048 and with Ed25519,
// the message handed as 4 KiB chunks like the spool's; plus the body canonicalisation
// and hash alone, to show how much is the private-key operation. Keys from openssl genpkey.
#include <benchmark/benchmark.h>

#include <cstdio>
#include <string>
#include <vector>

#include "sealrelay/dkim/canon.hh"
#include "sealrelay/dkim/signer.hh"
#include "sealrelay/tls/sign.hh"
#include "support/cert_files.hh"
#include "support/temp_dir.hh"

using namespace sr;

namespace {

std::string message_10k() {
  std::string m =
      "From: Alice <alice@example.org>\r\nTo: bob@example.net\r\nSubject: benchmark\r\n"
      "Date: Mon, 07 Dec 2026 02:40:00 +0000\r\nMessage-ID: <bench@example.org>\r\n"
      "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n";
  const std::string line = std::string(38, 'x') + "  \t" + std::string(35, 'y') + "\r\n";
  while (m.size() + line.size() <= 10240) m += line;
  return m;
}

std::vector<std::span<const std::byte>> chunks_of(const std::string& m, std::size_t size) {
  std::vector<std::span<const std::byte>> v;
  const auto* p = reinterpret_cast<const std::byte*>(m.data());
  for (std::size_t off = 0; off < m.size(); off += size) v.emplace_back(p + off, std::min(size, m.size() - off));
  return v;
}

struct keys {
  test::temp_dir dir{"sealrelay-dkim-bench"};
  std::string rsa, ed;
  keys() {
    const std::string d = dir.path().string();
    rsa = d + "/rsa.pem";
    ed = d + "/ed.pem";
    test::run_pipeline("openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out " + rsa + " 2>/dev/null");
    test::run_pipeline("openssl genpkey -algorithm ed25519 -out " + ed + " 2>/dev/null");
  }
};

keys& bench_keys() {
  static keys k;
  return k;
}

void sign_10k(benchmark::State& state, const std::string& key_file) {
  auto key = tls::signing_key::load_pem_file(key_file);
  if (!key) {
    state.SkipWithError(("key: " + key.err()).c_str());
    return;
  }
  auto s = dkim::signer::create({.domain = "example.org", .selector = "bench"}, std::move(*key));
  if (!s) {
    state.SkipWithError(s.err().c_str());
    return;
  }
  const std::string m = message_10k();
  const auto chunks = chunks_of(m, 4096);
  for (auto _ : state) {
    auto r = s->sign(chunks, 1796611200);
    benchmark::DoNotOptimize(r);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * m.size()));
}

void BM_sign_10k_rsa2048(benchmark::State& state) { sign_10k(state, bench_keys().rsa); }
void BM_sign_10k_ed25519(benchmark::State& state) { sign_10k(state, bench_keys().ed); }

// The body's relaxed canonicalisation and SHA-256 only (no key operation).
void BM_body_hash_10k(benchmark::State& state) {
  const std::string m = message_10k();
  struct to_hash final : dkim::body_sink {
    tls::sha256_stream h;
    void write(std::string_view b) override { h.update(b); }
  } sink;
  for (auto _ : state) {
    dkim::relaxed_body b(sink);
    b.feed(m);
    b.finish();
    auto d = sink.h.finish();
    benchmark::DoNotOptimize(d);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * m.size()));
}

}  // namespace

BENCHMARK(BM_sign_10k_rsa2048);
BENCHMARK(BM_sign_10k_ed25519);
BENCHMARK(BM_body_hash_10k);
BENCHMARK_MAIN();
