// libFuzzer target: DANE (tls/dane.cc) on what a remote MX and its DNS send: TLSA records (as
// rdata from DNS, and in presentation form from sealrelay-check and the config), and the
// certificate chain the MX presents, matched before anything else trusts it (DER parsed by
// the DER walker spki_of() and by wolfSSL). The input is read with FuzzedDataProvider: a
// TLSA text, up to 3 TLSA rdatas, up to 3 DER certificates, then the host name.
// Invariants: nothing crashes or hangs; a parsed TLSA text and a decoded rdata print and parse
// back to the same record; spki_of() returns a DER SEQUENCE inside the certificate or
// nothing; match_tlsa() says none exactly when no record is usable, and names a record and a
// chain position only within range; a DANE-EE record of the leaf itself (full certificate,
// or its SPKI when spki_of() finds one) always verifies, whatever the name and dates.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "check.hh"
#include "sealrelay/tls/dane.hh"

namespace {

using sr::tls::tlsa_record;

std::span<const uint8_t> bytes_of(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

void round_trip(const tlsa_record& r) {
  if (r.data.empty()) return;   // the text form needs association data
  auto back = tlsa_record::parse(r.to_string());
  CHECK(back && *back == r);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 32 * 1024) return -1;
  FuzzedDataProvider fdp(data, size);
  std::vector<tlsa_record> records;
  if (auto t = tlsa_record::parse(fdp.ConsumeRandomLengthString(512))) {
    round_trip(*t);
    records.push_back(*t);
  }
  std::vector<std::vector<uint8_t>> rdatas;
  for (int i = fdp.ConsumeIntegralInRange(0, 3); i > 0; --i) {
    std::string rd = fdp.ConsumeRandomLengthString(256);
    rdatas.emplace_back(rd.begin(), rd.end());
    if (auto r = tlsa_record::from_rdata(rdatas.back())) {
      round_trip(*r);
      records.push_back(*r);
    }
  }
  for (const auto& u : sr::tls::usable_tlsa(rdatas)) CHECK(u.usable());

  std::vector<std::string> certs;
  for (int i = fdp.ConsumeIntegralInRange(0, 3); i > 0; --i) certs.push_back(fdp.ConsumeRandomLengthString(8192));
  std::string host = fdp.ConsumeRandomLengthString(64);
  std::vector<std::span<const uint8_t>> chain;
  for (const auto& c : certs) {
    chain.push_back(bytes_of(c));
    auto spki = sr::tls::spki_of(chain.back());
    if (!spki.empty()) {
      CHECK(spki.data() >= chain.back().data() && spki.data() + spki.size() <= chain.back().data() + chain.back().size());
      CHECK(spki[0] == 0x30);
    }
  }

  bool usable = false;
  for (const auto& r : records) usable |= r.usable();
  auto m = sr::tls::match_tlsa(chain, records, host);
  CHECK((m.verdict == sr::tls::cert_verdict::none) == !usable);
  if (m.record >= 0) CHECK(size_t(m.record) < records.size() && records[m.record].usable());
  if (m.depth >= 0) CHECK(size_t(m.depth) < chain.size());
  if (m.verdict == sr::tls::cert_verdict::verified) CHECK(m.record >= 0 && m.depth >= 0);

  // The leaf pinned by DANE-EE verifies, whatever else the chain and the records hold.
  if (!chain.empty() && !chain[0].empty()) {
    tlsa_record ee;
    ee.usage = tlsa_record::dane_ee;
    ee.selector = tlsa_record::cert;
    ee.mtype = tlsa_record::full;
    ee.data.assign(chain[0].begin(), chain[0].end());
    std::vector<tlsa_record> with = records;
    with.push_back(ee);
    auto v = sr::tls::match_tlsa(chain, with, host);
    CHECK(v.verdict == sr::tls::cert_verdict::verified && v.depth == 0);
    auto spki = sr::tls::spki_of(chain[0]);
    if (!spki.empty()) {
      ee.selector = tlsa_record::spki;
      ee.data.assign(spki.begin(), spki.end());
      auto w = sr::tls::match_tlsa(chain, std::vector<tlsa_record>{ee}, host);
      CHECK(w.verdict == sr::tls::cert_verdict::verified && w.record == 0 && w.depth == 0);
    }
  }
  return 0;
}
