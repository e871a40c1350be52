// DANE chain matching cost (issue 8): tls::match_tlsa over the test PKI's 2-certificate
// chain (server.crt + ca.crt, ECDSA P-256) against 1 and 4 TLSA records: DANE-EE SPKI
// SHA2-256 (3 1 1) and DANE-TA Cert SHA2-512 (2 0 2, which also verifies the leaf with a
// temporary wolfSSL cert manager). Digests and DER come from the openssl command line
// once at start-up; each iteration is what one fresh handshake pays (no digest reuse).
#include <benchmark/benchmark.h>

#include <cstdio>
#include <span>
#include <string>
#include <vector>

#include "sealrelay/tls/dane.hh"

using namespace sr::tls;

namespace {

std::string run(const std::string& cmd) {
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0 && out.size() < (1u << 20)) out.append(buf, n);
  pclose(p);
  return out;
}

std::string cert(const char* stem) { return std::string(SR_TEST_CERTS) + "/" + stem + ".crt"; }

std::vector<uint8_t> der(const char* stem) {
  std::string s = run("openssl x509 -in '" + cert(stem) + "' -outform DER");
  return {s.begin(), s.end()};
}

// "U S M" + openssl's digest of the certificate (S 0) or its SPKI (S 1).
tlsa_record record(const char* usage_sel_mtype, const char* stem, bool spki, const char* alg) {
  std::string src = spki ? "openssl x509 -in '" + cert(stem) +
                               "' -noout -pubkey | openssl pkey -pubin -outform DER"
                         : "openssl x509 -in '" + cert(stem) + "' -outform DER";
  std::string hex = run(src + " | openssl dgst -" + alg + " -r");
  auto r = tlsa_record::parse(std::string(usage_sel_mtype) + " " + hex.substr(0, hex.find(' ')));
  return r.ok() ? *r : tlsa_record{};
}

// The same kind of record, matching nothing (`mask` != 0 tells several apart).
tlsa_record broken(tlsa_record r, uint8_t mask = 0x5a) {
  if (!r.data.empty()) r.data.back() ^= mask;
  return r;
}

struct fixture {
  std::vector<uint8_t> leaf = der("server"), ca = der("ca");
  std::vector<std::span<const uint8_t>> chain{leaf, ca};
  tlsa_record ee = record("3 1 1", "server", true, "sha256");
  tlsa_record ta = record("2 0 2", "ca", false, "sha512");
};

const fixture& fx() {
  static const fixture f;
  return f;
}

void run_match(benchmark::State& state, const std::vector<tlsa_record>& records,
               cert_verdict want) {
  const auto& f = fx();
  if (match_tlsa(f.chain, records, "mx.test").verdict != want) {
    state.SkipWithError("unexpected verdict (is openssl installed?)");
    return;
  }
  for (auto _ : state) {
    auto m = match_tlsa(f.chain, records, "mx.test");
    benchmark::DoNotOptimize(m);
  }
}

// 1 record: the EE SPKI digest matches the leaf (one SPKI parse, one SHA-256).
void BM_match_1_ee(benchmark::State& state) {
  run_match(state, {fx().ee}, cert_verdict::verified);
}
BENCHMARK(BM_match_1_ee);

// 1 record: the TA cert digest matches the CA (SHA-512 of both certificates, cert manager
// load + leaf signature verification, name check).
void BM_match_1_ta(benchmark::State& state) {
  run_match(state, {fx().ta}, cert_verdict::verified);
}
BENCHMARK(BM_match_1_ta);

// 4 records, the match last: 3 EE misses, 1 TA miss, then the TA hit (a rollover set).
void BM_match_4_ta_last(benchmark::State& state) {
  const auto& f = fx();
  run_match(state, {broken(f.ee), broken(f.ta), broken(f.ee, 0xa5), f.ta},
            cert_verdict::verified);
}
BENCHMARK(BM_match_4_ta_last);

// 4 records, the EE match last: EE records are tried before any TA record, so the TA
// misses cost nothing here.
void BM_match_4_ee_last(benchmark::State& state) {
  const auto& f = fx();
  run_match(state, {broken(f.ta), broken(f.ee), broken(f.ta, 0xa5), f.ee},
            cert_verdict::verified);
}
BENCHMARK(BM_match_4_ee_last);

// 4 records, none matching: every digest computed, no chain check (tlsa-mismatch).
void BM_match_4_none(benchmark::State& state) {
  const auto& f = fx();
  run_match(state, {broken(f.ee), broken(f.ta), broken(f.ee, 0xa5), broken(f.ta, 0xa5)},
            cert_verdict::tlsa_mismatch);
}
BENCHMARK(BM_match_4_none);

}  // namespace

BENCHMARK_MAIN();
