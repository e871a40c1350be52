// DANE (RFC 7672, issue 8 item 2) end to end: the real relay with `[dane] enabled = true`
// resolving through a validating unbound in front of nsd serving zones signed on the spot
// (support/peers.hh: dnssec_world), delivering to fake MX hosts whose certificates are
// pinned by TLSA `_<port>._tcp.<mx>` records computed from tests/certs with openssl.
// Usable TLSA records make authenticated TLS mandatory (a mismatch is never delivered,
// not even over TLS, and never in the clear); a TLSA lookup that fails (bogus signature,
// SERVFAIL) defers with `tlsa-lookup-failed`, never "no TLSA"; a proven absence of TLSA
// or an unsigned zone leave the usual opportunistic delivery; DANE wins over an MTA-STS
// enforce policy (https_host.py); DANE vouches for the MX of a REQUIRETLS message. Every
// wait polls with a deadline.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "support/world.hh"

namespace sr::integ {
namespace {

namespace fs = std::filesystem;

fs::path cert(const std::string& name) { return source_root() / "tests" / "certs" / (name + ".crt"); }

std::string body_with(const std::string& secret) {
  return "From: <alice@sender.test>\r\nTo: <bob@dest.test>\r\nSubject: dane\r\nMessage-ID: <" + unique("m") +
         "@sender.test>\r\n\r\n" + secret + "\r\n";
}

// No MAIL, RCPT or DATA reached `mx`, in the clear or over TLS, and it recorded no message.
void expect_no_mail(const fake_mx& mx) {
  EXPECT_TRUE(mx.messages().empty());
  for (const auto& s : mx.sessions()) {
    SCOPED_TRACE(commands_of(s));
    for (std::string_view c : s.commands) {
      if (c.rfind("TLS ", 0) == 0) c.remove_prefix(4);
      EXPECT_NE(c.rfind("MAIL", 0), 0u);
      EXPECT_NE(c.rfind("RCPT", 0), 0u);
      EXPECT_NE(c.rfind("DATA", 0), 0u);
      EXPECT_NE(c.rfind("BDAT", 0), 0u);
    }
  }
}

// Start the relay with DANE on (and `extra` TOML); skip the test while this daemon refuses
// [dane] as a feature it does not have, fail it when the relay does not start otherwise.
#define START_DANE_RELAY(...)                                                                  \
  do {                                                                                         \
    bool refused_ = false;                                                                     \
    if (!start_dane_relay(std::string(__VA_ARGS__), &refused_)) {                              \
      if (refused_) GTEST_SKIP() << "this sealrelay refuses [dane] (not built yet): " << _relay->log(); \
      FAIL() << "relay did not start";                                                        \
    }                                                                                          \
  } while (0)

// A relay, fake MX hosts and a DNSSEC world of our own (the world's plain DNS fixture is unused).
class Dane : public ::testing::Test, protected world {
 protected:
  void SetUp() override {
    if (access("/usr/sbin/nsd", X_OK) != 0 || access("/usr/sbin/unbound", X_OK) != 0)
      GTEST_SKIP() << "nsd or unbound not installed (tools/install-deps)";
    ASSERT_NE(_port, 0) << "no port free on every MX host";
    _tlsa = "_" + std::to_string(_port) + "._tcp.";
    // What the MX certificates are pinned with: the leaf's SPKI (DANE-EE), the test CA
    // (DANE-TA), and certificates the MX hosts never present (the mismatches).
    _ee_server = tlsa_rdata(cert("server"), 3, 1, 1);
    _ee_selfsigned = tlsa_rdata(cert("selfsigned"), 3, 1, 1);
    _ee_wrong = tlsa_rdata(cert("wrongname"), 3, 1, 1);
    _ta_ca = tlsa_rdata(cert("ca"), 2, 0, 1);
    _ta_ca_spki = tlsa_rdata(cert("ca"), 2, 1, 2);
    _ta_other = tlsa_rdata(cert("selfsigned"), 2, 0, 1);
    for (auto* s : {&_ee_server, &_ee_selfsigned, &_ee_wrong, &_ta_ca, &_ta_ca_spki, &_ta_other})
      ASSERT_FALSE(s->empty()) << "openssl could not compute TLSA data from tests/certs";
    EXPECT_NE(_ee_server, _ee_wrong);
  }

  // Start the DNSSEC world: `zone` (dnssec_world.py lines) plus the sender's signed zone.
  bool start_world(const std::string& zone) {
    _world = std::make_unique<dnssec_world>(zone + "$ZONE sender.test\nsender.test MX 10 home.sender.test\n"
                                                   "home.sender.test A 127.0.0.9\n");
    if (_world->start()) return true;
    ADD_FAILURE() << "dnssec world: " << _world->error() << "\n" << _world->log();
    return false;
  }

  // A fake MX on `ip` presenting tests/certs/<cert_name>.crt or, with chain = true,
  // <cert_name>-chain.crt (the certificate, then the CA: what DANE-TA needs to see).
  fake_mx* mx_on(const std::string& ip, const std::string& cert_name = "server", bool chain = false) {
    fake_mx_options o{.hosts = {ip}};
    o.cert = cert_name;
    if (chain) {
      fs::path certs = source_root() / "tests" / "certs";
      o.cert = "";
      o.extra_args = {"--cert", (certs / (cert_name + "-chain.crt")).string(), "--key",
                      (certs / (cert_name + ".key")).string()};
    }
    return start_mx(std::move(o));
  }

  // The relay with DANE on, resolving through the world's unbound; `extra` appended. Null
  // when it does not start; *refused says the daemon refused [dane] as not built (yet).
  relay* start_dane_relay(const std::string& extra, bool* refused) {
    auto o = delivery_options(_world->address(), _port, {}, "[dane]\nenabled = true\n\n" + extra, _outbound_defaults);
    o.mta_sts = _mta_sts;
    if (!_listeners.empty()) o.listeners = _listeners;
    _relay = std::make_unique<relay>(std::move(o));
    if (!_relay->start()) {
      std::string log = _relay->log();
      *refused = contains(log, "dane") && (contains(log, "not available") || contains(log, "unknown"));
      if (!*refused) ADD_FAILURE() << "relay: " << _relay->error() << log;
      return nullptr;
    }
    return _relay.get();
  }

  // Submit one message to bob@<domain>; the queue id.
  std::string send_to(const std::string& domain, const std::string& secret) {
    std::string why;
    std::string qid = submit(*_relay, "alice@sender.test", {"bob@" + domain}, body_with(secret), &why);
    EXPECT_FALSE(qid.empty()) << why;
    return qid;
  }

  std::string diagnostics() const {
    return dump_audit(*_relay) + "--- relay log\n" + _relay->log() + "--- dnssec world\n" + _world->log();
  }

  // Delivered once to `mx` over TLS, audited with `source`; the delivered line.
  audit_line expect_delivered(fake_mx& mx, const std::string& qid, const std::string& secret,
                              const std::string& mx_name, const std::string& source) {
    auto lines = wait_audit(*_relay, 1, [&](const audit_line& a) { return a.queue_id == qid && a.outcome == "delivered"; });
    if (lines.size() != 1) {
      ADD_FAILURE() << "not delivered\n" << diagnostics();
      return {};
    }
    EXPECT_TRUE(mx.wait_messages(1, 10s));
    auto msgs = mx.messages();
    EXPECT_EQ(msgs.size(), 1u);
    if (!msgs.empty()) {
      EXPECT_TRUE(contains(msgs[0].data, secret));
      EXPECT_TRUE(msgs[0].tls);
    }
    const audit_line& d = lines[0];
    SCOPED_TRACE(d.raw);
    expect_audit_fields(d);
    EXPECT_EQ(d.mx, mx_name);
    EXPECT_TRUE(d.tls);
    EXPECT_EQ(d.policy_source, source);
    if (source == "dane") {
      // Authenticated by TLSA: nothing to report against the certificate.
      EXPECT_EQ(d.cert, "verified");
      EXPECT_FALSE(d.reason) << d.raw;
    }
    return d;
  }

  // At least two attempts of `qid` deferred with `reason` (the retry did not go around
  // DANE either), nothing delivered, nothing of the message reached `mx`. `source` ""
  // leaves policy_source alone (a failed TLSA lookup has not shown that DANE applies).
  void expect_deferred(const std::vector<fake_mx*>& mxs, const std::string& qid, const std::string& reason,
                       const std::string& source) {
    auto lines = wait_audit(*_relay, 2, [&](const audit_line& a) { return a.queue_id == qid && a.outcome == "deferred"; });
    ASSERT_GE(lines.size(), 2u) << diagnostics();
    for (const auto& a : lines) {
      SCOPED_TRACE(a.raw);
      expect_audit_fields(a);
      EXPECT_EQ(a.reason, reason);
      if (!source.empty()) EXPECT_EQ(a.policy_source, source);
    }
    for (const auto& a : audit_of(*_relay, qid)) EXPECT_NE(a.outcome, "delivered") << a.raw;
    for (const fake_mx* m : mxs) expect_no_mail(*m);
    std::string raw;
    EXPECT_TRUE(wait_queue(*_relay, [&](const std::set<std::string>& ids) { return ids.count(qid) == 1; }, 10s, &raw))
        << raw;
  }

  std::unique_ptr<dnssec_world> _world;
  std::string _tlsa;   // "_<port>._tcp."
  std::string _ee_server, _ee_selfsigned, _ee_wrong, _ta_ca, _ta_ca_spki, _ta_other;
};

}  // namespace

// ------------------------------------------------------------------------- DANE-EE (3)

TEST_F(Dane, EeMatchDeliversOverAuthenticatedTls) {
  // The MX presents a self-signed certificate: no CA vouches for it, the TLSA record does
  // (RFC 7672 §3.1.1: DANE-EE ignores the chain and the names).
  ASSERT_TRUE(start_world("$ZONE dest.test\ndest.test MX 10 mx1.dest.test\nmx1.dest.test A 127.0.0.2\n" + _tlsa +
                          "mx1.dest.test TLSA " + _ee_selfsigned + "\n"));
  fake_mx* mx = mx_on("127.0.0.2", "selfsigned");
  ASSERT_TRUE(mx);
  START_DANE_RELAY("");
  std::string secret = unique("ee-match");
  std::string qid = send_to("dest.test", secret);
  ASSERT_FALSE(qid.empty());
  auto d = expect_delivered(*mx, qid, secret, "mx1.dest.test", "dane");
  EXPECT_EQ(d.cert, "verified") << d.raw;
  EXPECT_EQ(d.ip, "127.0.0.2");
  EXPECT_EQ(d.attempt, 1);
  ASSERT_TRUE(mx->wait_sessions(1, 10s));
  for (const auto& s : mx->sessions()) EXPECT_FALSE(s.plaintext_command("MAIL")) << commands_of(s);
}

TEST_F(Dane, EeMismatchIsNeverDeliveredNotEvenWithACaValidCertificate) {
  // server.crt chains to tls.ca_file and names the host, but the TLSA record pins another key.
  ASSERT_TRUE(start_world("$ZONE dest.test\ndest.test MX 10 mx1.mx.test\n$ZONE mx.test\nmx1.mx.test A 127.0.0.2\n" +
                          _tlsa + "mx1.mx.test TLSA " + _ee_wrong + "\n"));
  fake_mx* mx = mx_on("127.0.0.2");
  ASSERT_TRUE(mx);
  START_DANE_RELAY("");
  std::string qid = send_to("dest.test", unique("ee-mismatch"));
  ASSERT_FALSE(qid.empty());
  expect_deferred({mx}, qid, "tlsa-mismatch", "dane");
  for (const auto& a : audit_of(*_relay, qid)) {
    if (a.reason != "tlsa-mismatch") continue;
    EXPECT_EQ(a.mx, "mx1.mx.test") << a.raw;
    EXPECT_TRUE(a.tls) << a.raw;   // the handshake happened; the key did not match
    EXPECT_EQ(a.cert, "invalid") << a.raw;
  }
  for (const auto& s : mx->sessions()) EXPECT_TRUE(has_command(s, "STARTTLS")) << commands_of(s);
}

TEST_F(Dane, EachMxHostIsPinnedByItsOwnTlsa) {
  // mx1 (preferred) fails its TLSA match; mx2 matches its own: the message goes to mx2
  // over authenticated TLS, and mx1 never sees MAIL.
  ASSERT_TRUE(start_world("$ZONE dest.test\ndest.test MX 10 mx1.mx.test\ndest.test MX 20 mx2.mx.test\n$ZONE mx.test\n"
                          "mx1.mx.test A 127.0.0.2\nmx2.mx.test A 127.0.0.3\n" + _tlsa + "mx1.mx.test TLSA " +
                          _ee_wrong + "\n" + _tlsa + "mx2.mx.test TLSA " + _ee_server + "\n"));
  fake_mx* mx1 = mx_on("127.0.0.2");
  fake_mx* mx2 = mx_on("127.0.0.3");
  ASSERT_TRUE(mx1 && mx2);
  START_DANE_RELAY("");
  std::string secret = unique("second-mx");
  std::string qid = send_to("dest.test", secret);
  ASSERT_FALSE(qid.empty());
  auto d = expect_delivered(*mx2, qid, secret, "mx2.mx.test", "dane");
  EXPECT_EQ(d.ip, "127.0.0.3") << d.raw;
  expect_no_mail(*mx1);
  for (const auto& a : audit_of(*_relay, qid))
    if (a.mx == "mx1.mx.test") EXPECT_EQ(a.reason, "tlsa-mismatch") << a.raw;
}

// ------------------------------------------------------------------------- DANE-TA (2)

TEST_F(Dane, TaMatchDeliversWhenTheChainLeadsToThePinnedCa) {
  // The MX name is covered by server.crt (*.mx.test), which the pinned test CA signed.
  ASSERT_TRUE(start_world("$ZONE dest.test\ndest.test MX 10 mx1.mx.test\n$ZONE mx.test\nmx1.mx.test A 127.0.0.2\n" +
                          _tlsa + "mx1.mx.test TLSA " + _ta_ca + "\n" + _tlsa + "mx1.mx.test TLSA " + _ta_ca_spki +
                          "\n"));
  fake_mx* mx = mx_on("127.0.0.2", "server", true);
  ASSERT_TRUE(mx);
  START_DANE_RELAY("");
  std::string secret = unique("ta-match");
  std::string qid = send_to("dest.test", secret);
  ASSERT_FALSE(qid.empty());
  auto d = expect_delivered(*mx, qid, secret, "mx1.mx.test", "dane");
  EXPECT_EQ(d.cert, "verified") << d.raw;
}

TEST_F(Dane, TaMismatchIsNeverDelivered) {
  // The TLSA record names a trust anchor (the self-signed certificate) that is not in the chain.
  ASSERT_TRUE(start_world("$ZONE dest.test\ndest.test MX 10 mx1.mx.test\n$ZONE mx.test\nmx1.mx.test A 127.0.0.2\n" +
                          _tlsa + "mx1.mx.test TLSA " + _ta_other + "\n"));
  fake_mx* mx = mx_on("127.0.0.2", "server", true);
  ASSERT_TRUE(mx);
  START_DANE_RELAY("");
  std::string qid = send_to("dest.test", unique("ta-mismatch"));
  ASSERT_FALSE(qid.empty());
  expect_deferred({mx}, qid, "tlsa-mismatch", "dane");
}

TEST_F(Dane, TaMatchWithAWrongNameIsAMismatch) {
  // The pinned CA signed wrongname.crt, which names only wrong.example: DANE-TA checks the
  // MX host name (RFC 7672 §3.2.2), so this is not authenticated TLS.
  ASSERT_TRUE(start_world("$ZONE dest.test\ndest.test MX 10 mx1.mx.test\n$ZONE mx.test\nmx1.mx.test A 127.0.0.2\n" +
                          _tlsa + "mx1.mx.test TLSA " + _ta_ca + "\n"));
  fake_mx* mx = mx_on("127.0.0.2", "wrongname", true);
  ASSERT_TRUE(mx);
  START_DANE_RELAY("");
  std::string qid = send_to("dest.test", unique("ta-wrongname"));
  ASSERT_FALSE(qid.empty());
  auto lines = wait_audit(*_relay, 2, [&](const audit_line& a) { return a.queue_id == qid && a.outcome == "deferred"; });
  ASSERT_GE(lines.size(), 2u) << diagnostics();
  for (const auto& a : lines) {
    EXPECT_TRUE(a.reason == "tlsa-mismatch" || a.reason == "cert-name-mismatch") << a.raw;
    EXPECT_EQ(a.policy_source, "dane") << a.raw;
  }
  expect_no_mail(*mx);
}

// ------------------------------------------------------- lookups that fail: defer, never "no TLSA"

TEST_F(Dane, BogusTlsaSignatureDefersWithoutContactingTheMx) {
  // MX and A validate; the TLSA RRset's signature was broken after signing: unbound says
  // SERVFAIL, which must not read as "no TLSA" (that would allow plaintext).
  ASSERT_TRUE(start_world("$ZONE dest.test\ndest.test MX 10 mx1.dest.test\nmx1.dest.test A 127.0.0.2\n" + _tlsa +
                          "mx1.dest.test TLSA " + _ee_server + "\n" + _tlsa + "mx1.dest.test BOGUS TLSA\n"));
  fake_mx* mx = mx_on("127.0.0.2");
  ASSERT_TRUE(mx);
  START_DANE_RELAY("");
  std::string qid = send_to("dest.test", unique("bogus-tlsa"));
  ASSERT_FALSE(qid.empty());
  expect_deferred({mx}, qid, "tlsa-lookup-failed", "");
  for (const auto& a : audit_of(*_relay, qid)) {
    EXPECT_EQ(a.mx, "mx1.dest.test") << a.raw;
    EXPECT_FALSE(a.ip) << "the host was contacted: " << a.raw;
  }
  EXPECT_TRUE(mx->sessions().empty()) << "an MX whose TLSA lookup failed was contacted";
}

TEST_F(Dane, TlsaServfailDefersWithoutContactingTheMx) {
  // A zone cut at _tcp.mx1.dest.test whose server never answers: the MX and its address
  // validate, the TLSA lookup ends in SERVFAIL.
  ASSERT_TRUE(start_world("$ZONE dest.test\ndest.test MX 10 mx1.dest.test\nmx1.dest.test A 127.0.0.2\n"
                          "$ZONE _tcp.mx1.dest.test dead\n"));
  fake_mx* mx = mx_on("127.0.0.2");
  ASSERT_TRUE(mx);
  START_DANE_RELAY("");
  std::string qid = send_to("dest.test", unique("servfail"));
  ASSERT_FALSE(qid.empty());
  expect_deferred({mx}, qid, "tlsa-lookup-failed", "");
  for (const auto& a : audit_of(*_relay, qid)) {
    EXPECT_EQ(a.mx, "mx1.dest.test") << a.raw;
    EXPECT_FALSE(a.ip) << "the host was contacted: " << a.raw;
  }
  EXPECT_TRUE(mx->sessions().empty()) << "an MX whose TLSA lookup failed was contacted";
}

TEST_F(Dane, BogusMxAnswerIsNeverDelivered) {
  // The domain's whole zone is bogus: no MX can be trusted, and nothing may go out.
  ASSERT_TRUE(start_world("$ZONE dest.test bogus\ndest.test MX 10 mx1.dest.test\nmx1.dest.test A 127.0.0.2\n"));
  fake_mx* mx = mx_on("127.0.0.2");
  ASSERT_TRUE(mx);
  START_DANE_RELAY("");
  std::string qid = send_to("dest.test", unique("bogus-mx"));
  ASSERT_FALSE(qid.empty());
  auto lines = wait_audit(*_relay, 2, [&](const audit_line& a) { return a.queue_id == qid && a.outcome == "deferred"; });
  ASSERT_GE(lines.size(), 2u) << diagnostics();
  for (const auto& a : audit_of(*_relay, qid)) EXPECT_NE(a.outcome, "delivered") << a.raw;
  EXPECT_TRUE(mx->sessions().empty()) << "an MX from a bogus answer was contacted";
  expect_no_mail(*mx);
}

TEST_F(Dane, BogusAaaaDoesNotSwitchDaneOff) {
  // The MX host's A record validates, its AAAA answer is bogus: the relay uses the validated
  // address under DANE (a mismatching TLSA: never delivered), instead of taking the broken
  // AAAA for an unsigned zone and delivering without DANE (a downgrade anyone on the path to
  // the zone's servers could cause).
  ASSERT_TRUE(start_world("$ZONE dest.test\ndest.test MX 10 mx1.mx.test\n$ZONE mx.test\nmx1.mx.test A 127.0.0.2\n"
                          "mx1.mx.test AAAA ::1\nmx1.mx.test BOGUS AAAA\n" + _tlsa + "mx1.mx.test TLSA " + _ee_wrong +
                          "\n"));
  fake_mx* mx = mx_on("127.0.0.2");
  ASSERT_TRUE(mx);
  START_DANE_RELAY("");
  std::string qid = send_to("dest.test", unique("bogus-aaaa"));
  ASSERT_FALSE(qid.empty());
  expect_deferred({mx}, qid, "tlsa-mismatch", "dane");
}

// ------------------------------------------------------- no usable TLSA: opportunistic as before

TEST_F(Dane, NoTlsaInASignedZoneDeliversOpportunistically) {
  // Secure NXDOMAIN for the TLSA name: DANE does not apply (source default); the MX has
  // no STARTTLS, and opportunistic delivery still goes ahead in the clear.
  ASSERT_TRUE(start_world("$ZONE dest.test\ndest.test MX 10 mx1.dest.test\nmx1.dest.test A 127.0.0.2\n"));
  fake_mx* mx = start_mx({.hosts = {"127.0.0.2"}, .no_starttls = true});
  ASSERT_TRUE(mx);
  START_DANE_RELAY("");
  std::string secret = unique("no-tlsa");
  std::string qid = send_to("dest.test", secret);
  ASSERT_FALSE(qid.empty());
  auto lines = wait_audit(*_relay, 1, [&](const audit_line& a) { return a.queue_id == qid && a.outcome == "delivered"; });
  ASSERT_EQ(lines.size(), 1u) << diagnostics();
  EXPECT_EQ(lines[0].policy_source, "default") << lines[0].raw;
  EXPECT_EQ(lines[0].reason, "starttls-not-offered") << lines[0].raw;
  ASSERT_TRUE(mx->wait_messages(1, 10s));
  EXPECT_TRUE(contains(mx->messages()[0].data, secret));
}

TEST_F(Dane, UnsignedZoneTlsaIsIgnored) {
  // Unsigned zones publish a TLSA record that matches nothing: without AD it is not DANE,
  // so the message goes out over ordinary opportunistic TLS (the certificate chains to
  // tls.ca_file and names mx1.mx.test: verified the usual way, the TLSA record unheard of).
  ASSERT_TRUE(start_world("$ZONE dest.test insecure\ndest.test MX 10 mx1.mx.test\n$ZONE mx.test insecure\n"
                          "mx1.mx.test A 127.0.0.2\n" + _tlsa + "mx1.mx.test TLSA " + _ee_wrong + "\n"));
  fake_mx* mx = mx_on("127.0.0.2");
  ASSERT_TRUE(mx);
  START_DANE_RELAY("");
  std::string secret = unique("insecure");
  std::string qid = send_to("dest.test", secret);
  ASSERT_FALSE(qid.empty());
  auto d = expect_delivered(*mx, qid, secret, "mx1.mx.test", "default");
  EXPECT_EQ(d.cert, "verified") << d.raw;
  EXPECT_FALSE(d.reason) << d.raw;
}

TEST_F(Dane, InsecureMxAnswerDisablesDaneForASignedHost) {
  // The MX host's own zone is signed with a (mismatching) TLSA, but the domain's MX answer
  // is not: RFC 7672 §2.2.1, an unauthenticated MX name cannot be pinned.
  ASSERT_TRUE(start_world("$ZONE dest.test insecure\ndest.test MX 10 mx1.mx.test\n$ZONE mx.test\n"
                          "mx1.mx.test A 127.0.0.2\n" + _tlsa + "mx1.mx.test TLSA " + _ee_wrong + "\n"));
  fake_mx* mx = mx_on("127.0.0.2");
  ASSERT_TRUE(mx);
  START_DANE_RELAY("");
  std::string secret = unique("insecure-mx");
  std::string qid = send_to("dest.test", secret);
  ASSERT_FALSE(qid.empty());
  auto d = expect_delivered(*mx, qid, secret, "mx1.mx.test", "default");
  EXPECT_EQ(d.cert, "verified") << d.raw;
  EXPECT_FALSE(d.reason) << d.raw;
}

TEST_F(Dane, VerifyDaneWithoutUsableTlsaIsDaneRequired) {
  // [[policy]] verify = "dane" for a domain whose MX has no TLSA: exclusive drops it.
  ASSERT_TRUE(start_world("$ZONE dest.test\ndest.test MX 10 mx1.dest.test\nmx1.dest.test A 127.0.0.2\n"));
  fake_mx* mx = mx_on("127.0.0.2");
  ASSERT_TRUE(mx);
  START_DANE_RELAY("[[policy]]\ndomain = \"dest.test\"\ntls = \"exclusive\"\nverify = \"dane\"\n");
  std::string qid = send_to("dest.test", unique("dane-required"));
  ASSERT_FALSE(qid.empty());
  auto lines = wait_audit(*_relay, 1, [&](const audit_line& a) { return a.queue_id == qid && a.reason == "dane-required"; });
  ASSERT_GE(lines.size(), 1u) << diagnostics();
  EXPECT_EQ(lines[0].policy, "exclusive") << lines[0].raw;
  for (const auto& a : audit_of(*_relay, qid)) EXPECT_NE(a.outcome, "delivered") << a.raw;
  expect_no_mail(*mx);
}

// ------------------------------------------------------------------------- DANE and MTA-STS

TEST_F(Dane, DaneWinsOverMtaStsEnforce) {
  // d20.sts.test and d19.sts.test publish MTA-STS enforce naming only mx9.mx.test. d20's MX
  // mx1.mx.test presents a self-signed certificate that MTA-STS alone would refuse too, but
  // its TLSA record (DANE-EE) matches, and DANE wins (RFC 8461 §2): delivered, policy_source
  // dane. d19's MX mx2.mx.test has no TLSA record (secure denial): MTA-STS rules it out.
  std::string zone = "$ZONE mx.test\nmx1.mx.test A 127.0.0.2\nmx2.mx.test A 127.0.0.3\n" + _tlsa +
                     "mx1.mx.test TLSA " + _ee_selfsigned + "\n";
  temp_dir policies;
  for (const auto& [domain, host] : {std::pair{"d20.sts.test", "mx1.mx.test"}, std::pair{"d19.sts.test", "mx2.mx.test"}}) {
    zone += "$ZONE " + std::string(domain) + "\n" + domain + " MX 10 " + host + "\nmta-sts." + domain +
            " A 127.0.0.1\n_mta-sts." + domain + " TXT \"v=STSv1; id=1\"\n";
    std::ofstream(policies.path() / (std::string(domain) + ".txt"))
        << "version: STSv1\r\nmode: enforce\r\nmx: mx9.mx.test\r\nmax_age: 86400\r\n";
  }
  ASSERT_TRUE(start_world(zone));
  https_host https({.hosts = {"127.0.0.1"}, .policy_dir = policies.path().string()});
  ASSERT_TRUE(https.start()) << https.error() << https.log();
  _mta_sts = "enabled = true\nhttps_port = " + std::to_string(https.port());
  fake_mx* mx1 = mx_on("127.0.0.2", "selfsigned");
  fake_mx* mx2 = mx_on("127.0.0.3");
  ASSERT_TRUE(mx1 && mx2);
  START_DANE_RELAY("");

  std::string secret = unique("dane-over-sts");
  std::string qid = send_to("d20.sts.test", secret);
  ASSERT_FALSE(qid.empty());
  auto d = expect_delivered(*mx1, qid, secret, "mx1.mx.test", "dane");
  EXPECT_EQ(d.domain, "d20.sts.test") << d.raw;

  std::string control = send_to("d19.sts.test", unique("sts-only"));
  ASSERT_FALSE(control.empty());
  auto refused = wait_audit(*_relay, 1, [&](const audit_line& a) { return a.queue_id == control && a.outcome == "deferred"; });
  ASSERT_GE(refused.size(), 1u) << diagnostics();
  EXPECT_EQ(refused[0].reason, "mx-not-in-sts-policy") << refused[0].raw;
  EXPECT_EQ(refused[0].policy_source, "mta-sts") << refused[0].raw;
  expect_no_mail(*mx2);
}

// REQUIRETLS (RFC 8689): usable TLSA records vouch for the MX (no MTA-STS needed); it is
// relayed with REQUIRETLS over DANE-authenticated TLS. A signed domain without TLSA (and
// without MTA-STS) has nothing that vouches for its MX: bounced, nothing sent there.
TEST_F(Dane, RequireTlsDeliveredOverDaneAndBouncedWithout) {
  ASSERT_TRUE(start_world("$ZONE dest.test\ndest.test MX 10 mx1.dest.test\nmx1.dest.test A 127.0.0.2\n" + _tlsa +
                          "mx1.dest.test TLSA " + _ee_server + "\n$ZONE plain.test\nplain.test MX 10 mx2.plain.test\n"
                          "mx2.plain.test A 127.0.0.3\n"));
  fake_mx* mx1 = start_mx({.hosts = {"127.0.0.2"}, .requiretls = true});
  fake_mx* mx2 = start_mx({.hosts = {"127.0.0.3"}, .requiretls = true});
  ASSERT_TRUE(mx1 && mx2);
  listener l;
  l.tls = "starttls";
  _listeners = {l};
  START_DANE_RELAY("");
  std::string secret = unique("rt-dane");
  std::string out = submit_smtplib(*_relay, "alice@sender.test", "bob@dest.test", body_with(secret), {"REQUIRETLS"});
  auto qid = queued_id(out);
  ASSERT_TRUE(qid) << out;
  auto d = expect_delivered(*mx1, *qid, secret, "mx1.dest.test", "requiretls");
  EXPECT_EQ(d.cert, "verified") << d.raw;
  auto msgs = mx1->messages();
  ASSERT_EQ(msgs.size(), 1u);
  EXPECT_NE(std::find(msgs[0].mail_params.begin(), msgs[0].mail_params.end(), "REQUIRETLS"), msgs[0].mail_params.end());

  std::string secret2 = unique("rt-plain");
  auto q2 = queued_id(submit_smtplib(*_relay, "alice@sender.test", "bob@plain.test", body_with(secret2), {"REQUIRETLS"}));
  ASSERT_TRUE(q2);
  auto b = wait_audit(*_relay, 1, [&](const audit_line& a) { return a.queue_id == *q2 && a.outcome == "bounced"; });
  ASSERT_EQ(b.size(), 1u) << diagnostics();
  EXPECT_EQ(b[0].policy_source, "requiretls") << b[0].raw;
  EXPECT_EQ(b[0].reason.value_or(""), "requiretls-unverified") << b[0].raw;
  expect_no_mail(*mx2);
}

}  // namespace sr::integ
