// DANE chain matching cost (issue 8): tls::match_tlsa over the test PKI's 2-certificate
// chain (server.crt + ca.crt, ECDSA P-256) against 1 and 4 TLSA records: DANE-EE SPKI
// SHA2-256 (3 1 1) and DANE-TA Cert SHA2-512 (2 0 2, which also verifies the leaf with a
// temporary wolfSSL cert manager). Digests and DER come from the command line (openssl,
// sha256sum: support/cert_files.hh) once at start-up; each iteration is what one fresh
// handshake pays (no digest reuse).
#include <benchmark/benchmark.h>

#include <span>
#include <string>
#include <vector>

#include "sealrelay/tls/dane.hh"
#include "support/cert_files.hh"

using namespace sr::tls;

namespace {

std::string cert(const char* stem) { return std::string(SR_TEST_CERTS) + "/" + stem + ".crt"; }

std::vector<uint8_t> der(const char* stem) { return sr::test::cert_der(cert(stem)); }

// A TLSA record "U S M" + the openssl digest of the certificate (S 0) or its SPKI (S 1).
tlsa_record record(int usage, int selector, int mtype, const char* stem) {
  auto r = tlsa_record::parse(sr::test::tlsa_text(cert(stem), usage, selector, mtype));
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
  tlsa_record ee = record(3, 1, 1, "server");
  tlsa_record ta = record(2, 0, 2, "ca");
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
