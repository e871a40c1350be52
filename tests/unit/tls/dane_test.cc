// DANE (RFC 7672) on the TLS side: TLSA record parsing and usability, SPKI extraction,
// chain matching (match_tlsa) and the verdict of client sessions given TLSA records,
// including resumption. Expected digests come from the command line (openssl, sha*sum:
// support/cert_files.hh) over the committed test PKI (tests/certs), never from the code
// under test.
#include <gtest/gtest.h>

#include <span>
#include <string>
#include <vector>

#include "support/cert_files.hh"
#include "support/tls_pump.hh"
#include "sealrelay/tls/context.hh"
#include "sealrelay/tls/dane.hh"
#include "sealrelay/tls/session.hh"
#include "sealrelay/tls/session_cache.hh"

namespace {

using namespace sr::tls;
using sr::tls::testing::endpoint;
using sr::tls::testing::wire;

std::string cert(const std::string& name) { return std::string(SR_TEST_CERTS) + "/" + name; }

// DER of a PEM certificate file (its first certificate), or of its SubjectPublicKeyInfo.
std::vector<uint8_t> der_of(const std::string& file, bool spki = false) {
  auto d = sr::test::cert_der(file, spki);
  EXPECT_FALSE(d.empty()) << "openssl could not read " << file;
  return d;
}

// A TLSA record "U S M <digest of file>" (M 1 = SHA-256, 2 = SHA-512, 0 = full DER).
tlsa_record rec(int usage, int selector, int mtype, const std::string& stem) {
  std::string text = sr::test::tlsa_text(cert(stem + ".crt"), usage, selector, mtype);
  auto r = tlsa_record::parse(text);
  EXPECT_TRUE(r.ok()) << stem << ": " << text << ": " << (r.ok() ? "" : r.err());
  return r.ok() ? *r : tlsa_record{};
}

// Flip the last byte of the association data: the same kind of record, matching nothing.
tlsa_record broken(tlsa_record r) {
  r.data.back() ^= 0x5a;
  return r;
}

context server_ctx(const std::string& crt, const std::string& key) {
  auto r = context::server(cert(crt), cert(key), tls_version::v1_2);
  EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.err());
  return std::move(*r);
}

context client_ctx(bool trust_ca, tls_version max = tls_version::v1_3) {
  auto r = context::client(trust_ca ? cert("ca.crt") : "", tls_version::v1_2, max);
  EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.err());
  return std::move(*r);
}

struct outcome {
  cert_verdict verdict = cert_verdict::none;
  bool dane = false;
  bool resumed = false;
  dane_match match;
};

// One handshake plus a reply from the server (so a TLS 1.3 ticket reaches the cache).
outcome connect(const context& sctx, const context& cctx, std::string_view host,
                std::vector<tlsa_record> tlsa, session_cache* cache = nullptr) {
  auto s = session::accept(sctx);
  auto c = session::connect(cctx, host, cache, tlsa);
  EXPECT_TRUE(s.ok() && c.ok());
  endpoint srv{std::move(*s)}, cli{std::move(*c)};
  cli.hs = cli.s.handshake();
  wire{}.pump(cli, srv);
  EXPECT_EQ(cli.hs, 1) << "DANE verdicts are recorded, not enforced";
  EXPECT_EQ(srv.hs, 1);
  std::string hello = "220 mx.test ready\r\n";
  auto* p = reinterpret_cast<const std::byte*>(hello.data());
  EXPECT_EQ(srv.s.write({p, hello.size()}), static_cast<int>(hello.size()));
  wire{}.pump(cli, srv);
  return {cli.s.verdict(), cli.s.dane_checked(), cli.s.resumed(), cli.s.dane()};
}

// Verdict of a fresh handshake with `crt`/`key` on the server, host mx.test.
outcome verdict_with(const std::string& crt, const std::string& key,
                     std::vector<tlsa_record> tlsa, bool trust_ca = true,
                     std::string_view host = "mx.test") {
  context sctx = server_ctx(crt, key);
  context cctx = client_ctx(trust_ca);
  return connect(sctx, cctx, host, std::move(tlsa));
}

// --- records -------------------------------------------------------------------------

TEST(tlsa_record, parses_presentation_form) {
  auto r = tlsa_record::parse("3 1 1 0123456789ABCDEF 0123456789abcdef0123456789abcdef01234567 89abcdef");
  ASSERT_TRUE(r.ok()) << r.err();
  EXPECT_EQ(r->usage, 3);
  EXPECT_EQ(r->selector, 1);
  EXPECT_EQ(r->mtype, 1);
  ASSERT_EQ(r->data.size(), 32u);
  EXPECT_EQ(r->data[0], 0x01);
  EXPECT_EQ(r->data[7], 0xef);
  EXPECT_TRUE(r->usable());
  EXPECT_EQ(r->to_string().substr(0, 10), "3 1 1 0123");

  auto m = tlsa_record::parse("dane-ta Cert SHA2-512 " + std::string(128, 'a'));
  ASSERT_TRUE(m.ok()) << m.err();
  EXPECT_EQ(m->usage, 2);
  EXPECT_EQ(m->selector, 0);
  EXPECT_EQ(m->mtype, 2);
  EXPECT_TRUE(m->usable());

  for (const char* bad : {"", "3 1", "3 1 1", "3 1 1 abc", "3 1 1 zz", "256 1 1 ab",
                          "3 x 1 ab", "-1 1 1 ab"})
    EXPECT_FALSE(tlsa_record::parse(bad).ok()) << bad;
}

TEST(tlsa_record, parses_raw_rdata) {
  std::vector<uint8_t> rd = {3, 1, 1};
  rd.resize(3 + 32, 0xab);
  auto r = tlsa_record::from_rdata(rd);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->usage, 3);
  EXPECT_EQ(r->data.size(), 32u);
  EXPECT_TRUE(r->usable());
  EXPECT_FALSE(tlsa_record::from_rdata(std::vector<uint8_t>{3, 1}).ok());
}

TEST(tlsa_record, usable_per_rfc7672) {
  auto make = [](uint8_t u, uint8_t s, uint8_t m, size_t len) {
    return tlsa_record{u, s, m, std::vector<uint8_t>(len, 1)};
  };
  EXPECT_TRUE(make(3, 1, 1, 32).usable());
  EXPECT_TRUE(make(3, 0, 1, 32).usable());
  EXPECT_TRUE(make(3, 1, 2, 64).usable());
  EXPECT_TRUE(make(2, 0, 1, 32).usable());
  EXPECT_TRUE(make(2, 1, 0, 91).usable());
  EXPECT_FALSE(make(0, 0, 1, 32).usable());  // PKIX-TA
  EXPECT_FALSE(make(1, 1, 1, 32).usable());  // PKIX-EE
  EXPECT_FALSE(make(4, 1, 1, 32).usable());
  EXPECT_FALSE(make(3, 2, 1, 32).usable());  // selector
  EXPECT_FALSE(make(3, 1, 3, 32).usable());  // matching type
  EXPECT_FALSE(make(3, 1, 1, 31).usable());  // SHA2-256 length
  EXPECT_FALSE(make(3, 1, 1, 64).usable());
  EXPECT_FALSE(make(3, 1, 2, 32).usable());  // SHA2-512 length
  EXPECT_FALSE(make(3, 1, 0, 0).usable());   // Full, empty

  std::vector<std::vector<uint8_t>> rdatas = {{3, 1, 1}, {0, 0, 1}, {3, 1}};
  rdatas[0].resize(35, 7);
  rdatas[1].resize(35, 7);
  auto kept = usable_tlsa(rdatas);
  ASSERT_EQ(kept.size(), 1u);
  EXPECT_EQ(kept[0].usage, 3);
}

TEST(tlsa_record, spki_of_matches_openssl) {
  for (const char* stem : {"server", "ca", "selfsigned", "expired"}) {
    auto der = der_of(cert(std::string(stem) + ".crt"));
    auto want = der_of(cert(std::string(stem) + ".crt"), true);
    ASSERT_FALSE(want.empty());
    auto got = spki_of(der);
    EXPECT_EQ(std::vector<uint8_t>(got.begin(), got.end()), want) << stem;
  }
  std::vector<uint8_t> junk = {0x30, 0x03, 0x02, 0x01, 0x00};
  EXPECT_TRUE(spki_of(junk).empty());
  EXPECT_TRUE(spki_of({}).empty());
}

// --- match_tlsa on DER chains ----------------------------------------------------------

TEST(match_tlsa, ee_and_ta_on_a_two_certificate_chain) {
  auto leaf = der_of(cert("server.crt")), ca = der_of(cert("ca.crt"));
  std::vector<std::span<const uint8_t>> chain = {leaf, ca};
  auto ee = rec(3, 1, 1, "server"), ta = rec(2, 0, 2, "ca");

  auto m = match_tlsa(chain, std::vector{ee}, "mx.test");
  EXPECT_EQ(m.verdict, cert_verdict::verified);
  EXPECT_EQ(m.record, 0);
  EXPECT_EQ(m.depth, 0);

  m = match_tlsa(chain, std::vector{broken(ee), ta}, "mx.test");
  EXPECT_EQ(m.verdict, cert_verdict::verified);
  EXPECT_EQ(m.record, 1);
  EXPECT_EQ(m.depth, 1);

  m = match_tlsa(chain, std::vector{ta}, "other.example");
  EXPECT_EQ(m.verdict, cert_verdict::name_mismatch);

  m = match_tlsa(chain, std::vector{broken(ee), broken(ta)}, "mx.test");
  EXPECT_EQ(m.verdict, cert_verdict::tlsa_mismatch);
  EXPECT_EQ(m.record, -1);

  // The TA record names a certificate that is not in the chain.
  m = match_tlsa(std::vector<std::span<const uint8_t>>{leaf}, std::vector{ta}, "mx.test");
  EXPECT_EQ(m.verdict, cert_verdict::tlsa_mismatch);

  // No usable record: none, the CA path decides.
  m = match_tlsa(chain, std::vector{tlsa_record{1, 1, 1, ee.data}}, "mx.test");
  EXPECT_EQ(m.verdict, cert_verdict::none);
  m = match_tlsa(chain, {}, "mx.test");
  EXPECT_EQ(m.verdict, cert_verdict::none);
}

TEST(match_tlsa, ta_record_does_not_make_an_unrelated_leaf_pass) {
  // A self-signed leaf presented with the test CA: the CA matches 2 0 1, but the leaf
  // does not chain to it.
  auto leaf = der_of(cert("selfsigned.crt")), ca = der_of(cert("ca.crt"));
  std::vector<std::span<const uint8_t>> chain = {leaf, ca};
  auto m = match_tlsa(chain, std::vector{rec(2, 0, 1, "ca")}, "mx.test");
  EXPECT_EQ(m.verdict, cert_verdict::tlsa_mismatch);
}

TEST(match_tlsa, ta_over_the_leaf_itself_still_checks_name_and_dates) {
  auto self = der_of(cert("selfsigned.crt")), old = der_of(cert("expired.crt"));
  EXPECT_EQ(match_tlsa(std::vector<std::span<const uint8_t>>{self},
                       std::vector{rec(2, 1, 1, "selfsigned")}, "mx.test")
                .verdict,
            cert_verdict::verified);
  EXPECT_EQ(match_tlsa(std::vector<std::span<const uint8_t>>{self},
                       std::vector{rec(2, 1, 1, "selfsigned")}, "wrong.example")
                .verdict,
            cert_verdict::name_mismatch);
  EXPECT_EQ(match_tlsa(std::vector<std::span<const uint8_t>>{old},
                       std::vector{rec(2, 0, 1, "expired")}, "mx.test")
                .verdict,
            cert_verdict::expired);
}

TEST(match_tlsa, ta_through_an_intermediate) {
  auto leaf = der_of(cert("chained.crt")), inter = der_of(cert("inter.crt")),
       ca = der_of(cert("ca.crt")), server = der_of(cert("server.crt"));
  std::vector<std::span<const uint8_t>> chain = {leaf, inter, ca};
  auto m = match_tlsa(chain, std::vector{rec(2, 0, 1, "ca")}, "mx.test");
  EXPECT_EQ(m.verdict, cert_verdict::verified);
  EXPECT_EQ(m.depth, 2);
  m = match_tlsa(chain, std::vector{rec(2, 1, 2, "inter")}, "mx.test");
  EXPECT_EQ(m.verdict, cert_verdict::verified);
  EXPECT_EQ(m.depth, 1);
  // Without the intermediate the leaf does not chain to the CA.
  m = match_tlsa(std::vector<std::span<const uint8_t>>{leaf, ca}, std::vector{rec(2, 0, 1, "ca")},
                 "mx.test");
  EXPECT_EQ(m.verdict, cert_verdict::tlsa_mismatch);
  // The matched TA must be the leaf's issuer path: server.crt is the CA's, not inter's.
  m = match_tlsa(std::vector<std::span<const uint8_t>>{server, inter, ca},
                 std::vector{rec(2, 0, 1, "inter")}, "mx.test");
  EXPECT_EQ(m.verdict, cert_verdict::tlsa_mismatch);
}

// --- sessions --------------------------------------------------------------------------

TEST(dane_session, ee_records_match) {
  for (auto r : {rec(3, 1, 1, "server"), rec(3, 0, 1, "server"), rec(3, 1, 2, "server"),
                 rec(3, 0, 0, "server"), rec(3, 1, 0, "server")}) {
    SCOPED_TRACE(r.to_string().substr(0, 5));
    auto o = verdict_with("server.crt", "server.key", {r});
    EXPECT_EQ(o.verdict, cert_verdict::verified);
    EXPECT_TRUE(o.dane);
    EXPECT_EQ(o.match.depth, 0);
  }
}

TEST(dane_session, ee_mismatch_ignores_the_ca_verdict) {
  // The CA file trusts this chain, but DANE decides: nothing matches.
  auto o = verdict_with("server.crt", "server.key",
                        {broken(rec(3, 1, 1, "server")), rec(3, 1, 1, "selfsigned")});
  EXPECT_EQ(o.verdict, cert_verdict::tlsa_mismatch);
  EXPECT_TRUE(o.dane);
  EXPECT_STREQ(to_string(o.verdict), "tlsa-mismatch");
}

TEST(dane_session, ee_allows_self_signed_expired_and_wrong_names) {
  EXPECT_EQ(verdict_with("selfsigned.crt", "selfsigned.key", {rec(3, 1, 1, "selfsigned")}, false)
                .verdict,
            cert_verdict::verified);
  EXPECT_EQ(verdict_with("expired.crt", "expired.key", {rec(3, 0, 1, "expired")}).verdict,
            cert_verdict::verified);
  EXPECT_EQ(verdict_with("wrongname.crt", "wrongname.key", {rec(3, 1, 1, "wrongname")}).verdict,
            cert_verdict::verified);
}

TEST(dane_session, ta_records_match_the_ca_sent_in_the_chain) {
  for (auto r : {rec(2, 0, 1, "ca"), rec(2, 1, 1, "ca"), rec(2, 0, 2, "ca")}) {
    SCOPED_TRACE(r.to_string().substr(0, 5));
    // No CA file at all: the trust comes from the TLSA record alone.
    auto o = verdict_with("server-chain.crt", "server.key", {r}, false);
    EXPECT_EQ(o.verdict, cert_verdict::verified);
    EXPECT_TRUE(o.dane);
    EXPECT_EQ(o.match.depth, 1);
  }
  // Wildcard name of the leaf.
  EXPECT_EQ(verdict_with("server-chain.crt", "server.key", {rec(2, 0, 1, "ca")}, false,
                         "relay1.mx.test")
                .verdict,
            cert_verdict::verified);
}

TEST(dane_session, ta_at_depth_two) {
  auto o = verdict_with("chained-chain.crt", "chained.key", {rec(2, 0, 1, "ca")}, false);
  EXPECT_EQ(o.verdict, cert_verdict::verified);
  EXPECT_EQ(o.match.depth, 2);
  o = verdict_with("chained-chain.crt", "chained.key",
                   {broken(rec(2, 0, 1, "ca")), rec(2, 1, 1, "inter")}, false);
  EXPECT_EQ(o.verdict, cert_verdict::verified);
  EXPECT_EQ(o.match.record, 1);
  EXPECT_EQ(o.match.depth, 1);
}

TEST(dane_session, ta_match_with_wrong_name_or_dates) {
  EXPECT_EQ(verdict_with("wrongname-chain.crt", "wrongname.key", {rec(2, 0, 1, "ca")}).verdict,
            cert_verdict::name_mismatch);
  EXPECT_EQ(verdict_with("server-chain.crt", "server.key", {rec(2, 0, 1, "ca")}, true,
                         "other.example")
                .verdict,
            cert_verdict::name_mismatch);
  EXPECT_EQ(verdict_with("expired-chain.crt", "expired.key", {rec(2, 1, 1, "ca")}).verdict,
            cert_verdict::expired);
}

TEST(dane_session, ta_not_in_the_presented_chain_is_a_mismatch) {
  // server.crt alone: the client trusts the CA file, but the TA is not in the chain.
  auto o = verdict_with("server.crt", "server.key", {rec(2, 0, 1, "ca")});
  EXPECT_EQ(o.verdict, cert_verdict::tlsa_mismatch);
  EXPECT_TRUE(o.dane);
}

TEST(dane_session, unusable_records_are_ignored) {
  auto ee = rec(3, 1, 1, "server");
  std::vector<tlsa_record> unusable = {
      tlsa_record{0, 1, 1, ee.data},                  // PKIX-TA
      tlsa_record{1, 1, 1, ee.data},                  // PKIX-EE
      tlsa_record{3, 1, 9, ee.data},                  // unknown matching type
      tlsa_record{3, 1, 2, ee.data},                  // SHA2-512 with 32 bytes
      tlsa_record{3, 7, 1, ee.data},                  // unknown selector
  };
  // Only unusable records: the CA path decides, as without records.
  auto o = verdict_with("server.crt", "server.key", unusable);
  EXPECT_FALSE(o.dane);
  EXPECT_EQ(o.verdict, cert_verdict::verified);
  o = verdict_with("selfsigned.crt", "selfsigned.key", unusable);
  EXPECT_FALSE(o.dane);
  EXPECT_EQ(o.verdict, cert_verdict::untrusted);
  o = verdict_with("server.crt", "server.key", {});
  EXPECT_FALSE(o.dane);
  EXPECT_EQ(o.verdict, cert_verdict::verified);
  // Unusable records beside a usable one: the usable one decides.
  unusable.push_back(rec(3, 1, 1, "selfsigned"));
  o = verdict_with("selfsigned.crt", "selfsigned.key", unusable, false);
  EXPECT_TRUE(o.dane);
  EXPECT_EQ(o.verdict, cert_verdict::verified);
}

TEST(dane_session, resumption_never_carries_a_ca_verdict_into_dane) {
  for (tls_version max : {tls_version::v1_3, tls_version::v1_2}) {
    SCOPED_TRACE(to_string(max));
    context sctx = server_ctx("server.crt", "server.key");
    context cctx = client_ctx(true, max);
    session_cache cache(8);
    // A CA-verified session for mx.test lands in the cache.
    auto o = connect(sctx, cctx, "mx.test", {}, &cache);
    EXPECT_EQ(o.verdict, cert_verdict::verified);
    o = connect(sctx, cctx, "mx.test", {}, &cache);
    EXPECT_TRUE(o.resumed) << "the cache must work for the rest of this test to mean anything";

    // DANE with a non-matching record: a full handshake, DANE's verdict.
    auto bad = broken(rec(3, 1, 1, "server"));
    o = connect(sctx, cctx, "mx.test", {bad}, &cache);
    EXPECT_FALSE(o.resumed);
    EXPECT_TRUE(o.dane);
    EXPECT_EQ(o.verdict, cert_verdict::tlsa_mismatch);
    // Its session resumes only under the same records, with its own verdict.
    o = connect(sctx, cctx, "mx.test", {bad}, &cache);
    EXPECT_TRUE(o.resumed);
    EXPECT_TRUE(o.dane);
    EXPECT_EQ(o.verdict, cert_verdict::tlsa_mismatch);

    // Other records: not resumed from either entry.
    auto good = rec(3, 1, 1, "server");
    o = connect(sctx, cctx, "mx.test", {good}, &cache);
    EXPECT_FALSE(o.resumed);
    EXPECT_EQ(o.verdict, cert_verdict::verified);
    o = connect(sctx, cctx, "mx.test", {good}, &cache);
    EXPECT_TRUE(o.resumed);
    EXPECT_EQ(o.verdict, cert_verdict::verified);
    EXPECT_TRUE(o.dane);

    // And the CA entry still resumes with the CA verdict, not DANE's.
    o = connect(sctx, cctx, "mx.test", {}, &cache);
    EXPECT_TRUE(o.resumed);
    EXPECT_FALSE(o.dane);
    EXPECT_EQ(o.verdict, cert_verdict::verified);
  }
}

}  // namespace
