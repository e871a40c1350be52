// MTA-STS end to end (issue 8, item 5; RFC 8461 §3–5): the real relay, fake MX hosts, the
// DNS fixture publishing `_mta-sts` TXT records and an HTTPS policy host (https_host.py,
// certificates from the test CA for mta-sts.dN.sts.test). Covers discovery (no TXT, bad
// TXT, two TXT records), fetch failures (HTTP error, redirect, oversized body, wrong media
// type, bad certificate: all mean "no policy"), enforce and testing, mx patterns (exact,
// wildcard, mismatch), waiting for a slow fetch, expiry, an id change, and a restart with
// the policy host gone. Each test uses its own recipient domain dN.sts.test.
#include <gtest/gtest.h>

#include <fstream>
#include <thread>

#include "support/world.hh"

namespace sr::integ {
namespace {

namespace fs = std::filesystem;

const char* const sts_path = "/.well-known/mta-sts.txt";

std::string policy_text(const std::string& mode, const std::vector<std::string>& mx, unsigned max_age = 86400) {
  std::string t = "version: STSv1\r\nmode: " + mode + "\r\n";
  for (const auto& m : mx) t += "mx: " + m + "\r\n";
  return t + "max_age: " + std::to_string(max_age) + "\r\n";
}

std::string body_of(const std::string& domain, const std::string& secret) {
  return "From: <alice@sender.test>\r\nTo: <bob@" + domain + ">\r\nSubject: mta-sts\r\nMessage-ID: <" +
         unique("m") + "@sender.test>\r\n\r\n" + secret + "\r\n";
}

// A domain dN.sts.test whose MX is mx1.mx.test (127.0.0.2) and whose policy host is the
// HTTPS host on 127.0.0.1; `txt` are its _mta-sts TXT records (none: no record).
std::string domain_zone(const std::string& domain, const std::vector<std::string>& txt,
                        const std::string& mx = "mx1.mx.test") {
  std::string z = domain + " MX 10 " + mx + "\n" + "mta-sts." + domain + " A 127.0.0.1\n";
  for (const auto& t : txt) z += "_mta-sts." + domain + " 1 TXT \"" + t + "\"\n";
  return z;
}

const std::string mx_zone = "mx1.mx.test A 127.0.0.2\nmx2.mx.test A 127.0.0.3\n";

class MtaSts : public ::testing::Test, protected world {
 protected:
  MtaSts() {
    _outbound_defaults = {{"connect_timeout", "\"2s\""}, {"retry", "[\"1s\"]"}, {"max_queue_age", "\"60s\""}};
  }

  // Start the HTTPS policy host on 127.0.0.1 serving policies from _policies (and `config`
  // routes: JSON text).
  https_host* start_https(const std::string& config = {}) {
    https_host_options o;
    o.hosts = {"127.0.0.1"};
    o.policy_dir = _policies.path().string();
    o.config = config;
    _https = std::make_unique<https_host>(o);
    if (!_https->start()) {
      ADD_FAILURE() << "https host: " << _https->error() << _https->log();
      return nullptr;
    }
    return _https.get();
  }
  // Publish `text` as `domain`'s policy file.
  void put_policy(const std::string& domain, const std::string& text) {
    std::ofstream(_policies.path() / (domain + ".txt"), std::ios::trunc) << text;
  }
  // Start the relay with MTA-STS on, fetching from the HTTPS host's port.
  relay* start_sts_relay(const std::string& extra_toml = {}) {
    if (!_https) {
      ADD_FAILURE() << "start_https() first";
      return nullptr;
    }
    _mta_sts = "enabled = true\nhttps_port = " + std::to_string(_https->port());
    return start_relay(extra_toml);
  }
  // Policy fetches the HTTPS host saw for `domain`.
  size_t fetches(const std::string& domain) const {
    size_t n = 0;
    for (const auto& r : _https->requests())
      if (r.sni == "mta-sts." + domain && r.path == sts_path) ++n;
    return n;
  }
  // Submit one message to bob@`domain`; its queue id.
  std::string send(const std::string& domain, const std::string& secret) {
    std::string why;
    std::string qid = submit(*_relay, "alice@sender.test", {"bob@" + domain}, body_of(domain, secret), &why);
    EXPECT_FALSE(qid.empty()) << why;
    return qid;
  }
  // Wait for `qid`'s delivery; its audit line (check with SCOPED_TRACE on failure).
  std::optional<audit_line> delivered(const std::string& qid) {
    auto lines = wait_audit(*_relay, 1, [&](const audit_line& a) { return a.queue_id == qid && a.outcome == "delivered"; });
    if (lines.empty()) {
      ADD_FAILURE() << "not delivered: " << qid << "\n" << dump_audit(*_relay) << _relay->log();
      return std::nullopt;
    }
    return lines[0];
  }
  // A delivery without any MTA-STS policy: delivered by mx1 as the default policy says.
  void expect_no_policy(const std::string& domain, fake_mx& mx) {
    std::string secret = unique("secret");
    std::string qid = send(domain, secret);
    auto d = delivered(qid);
    ASSERT_TRUE(d);
    SCOPED_TRACE(d->raw);
    expect_audit_fields(*d);
    EXPECT_EQ(d->policy, "opportunistic");
    EXPECT_EQ(d->policy_source, "default");
    ASSERT_TRUE(mx.wait_messages(1, 10s));
    bool found = false;
    for (const auto& m : mx.messages()) found |= contains(m.data, secret);
    EXPECT_TRUE(found);
  }

  temp_dir _policies;
  std::unique_ptr<https_host> _https;
};

TEST_F(MtaSts, NoTxtRecordMeansNoPolicy) {
  ASSERT_NE(_port, 0);
  ASSERT_TRUE(start_dns(domain_zone("d1.sts.test", {}) + mx_zone));
  fake_mx* mx = start_mx({.hosts = {"127.0.0.2"}});
  ASSERT_TRUE(mx && start_https());
  put_policy("d1.sts.test", policy_text("enforce", {"mx1.mx.test"}));  // never fetched
  ASSERT_TRUE(start_sts_relay());
  expect_no_policy("d1.sts.test", *mx);
  EXPECT_EQ(fetches("d1.sts.test"), 0u);
}

TEST_F(MtaSts, InvalidOrDuplicateTxtMeansNoPolicy) {
  ASSERT_NE(_port, 0);
  ASSERT_TRUE(start_dns(domain_zone("d2.sts.test", {"v=STSv1; id=bad-id!"}) +
                        domain_zone("d3.sts.test", {"v=STSv1; id=1", "v=STSv1; id=2"}) + mx_zone));
  fake_mx* mx = start_mx({.hosts = {"127.0.0.2"}});
  ASSERT_TRUE(mx && start_https());
  put_policy("d2.sts.test", policy_text("enforce", {"mx9.mx.test"}));
  put_policy("d3.sts.test", policy_text("enforce", {"mx9.mx.test"}));
  ASSERT_TRUE(start_sts_relay());
  expect_no_policy("d2.sts.test", *mx);
  expect_no_policy("d3.sts.test", *mx);
  EXPECT_EQ(fetches("d2.sts.test"), 0u);
  EXPECT_EQ(fetches("d3.sts.test"), 0u);
}

TEST_F(MtaSts, EnforceWithMatchingMxDeliversUnderMtaSts) {
  ASSERT_NE(_port, 0);
  ASSERT_TRUE(start_dns(domain_zone("d4.sts.test", {"v=STSv1; id=1"}) +
                        domain_zone("d5.sts.test", {"v=STSv1; id=1"}) + mx_zone));
  fake_mx* mx = start_mx({.hosts = {"127.0.0.2"}});
  ASSERT_TRUE(mx && start_https());
  put_policy("d4.sts.test", policy_text("enforce", {"mx1.mx.test"}));
  put_policy("d5.sts.test", policy_text("enforce", {"other.example", "*.mx.test"}));  // wildcard
  ASSERT_TRUE(start_sts_relay());
  for (std::string domain : {"d4.sts.test", "d5.sts.test"}) {
    SCOPED_TRACE(domain);
    auto d = delivered(send(domain, unique("secret")));
    ASSERT_TRUE(d);
    SCOPED_TRACE(d->raw);
    expect_audit_fields(*d);
    EXPECT_EQ(d->policy_source, "mta-sts");
    EXPECT_EQ(d->policy, "opportunistic");  // the configured tls stays; the floor is raised
    EXPECT_EQ(d->mx, "mx1.mx.test");
    EXPECT_TRUE(d->tls);
    EXPECT_EQ(d->cert, "verified");
    EXPECT_EQ(fetches(domain), 1u);
  }
  // The fetch itself: SNI and Host name the policy host, over TLS 1.2 or later.
  for (const auto& r : _https->requests()) {
    EXPECT_EQ(r.method, "GET");
    EXPECT_EQ(r.host, r.sni);
    EXPECT_TRUE(r.tls_version == "TLSv1.2" || r.tls_version == "TLSv1.3") << r.tls_version;
  }
  // The policy is cached: a second message fetches nothing.
  ASSERT_TRUE(delivered(send("d4.sts.test", unique("again"))));
  EXPECT_EQ(fetches("d4.sts.test"), 1u);
  // And persisted under state_dir.
  std::string cached;
  for (const auto& e : fs::directory_iterator(_relay->state_dir() / "mta-sts")) cached += read_file(e.path());
  EXPECT_TRUE(contains(cached, "\"domain\":\"d4.sts.test\"")) << cached;
}

TEST_F(MtaSts, FetchFailuresMeanNoPolicy) {
  ASSERT_NE(_port, 0);
  // d6: 404; d7: a redirect (never followed); d8: 70,000 bytes (over 64 KiB); d9: text/html.
  std::string config = std::string("{\"routes\": [") +
                       "{\"host\": \"mta-sts.d6.sts.test\", \"path\": \"" + sts_path +
                       "\", \"status\": 404, \"content_type\": \"text/plain\", \"body\": \"no\"}," +
                       "{\"host\": \"mta-sts.d7.sts.test\", \"path\": \"" + sts_path +
                       "\", \"status\": 302, \"location\": \"https://mta-sts.d1.sts.test" + sts_path + "\"}," +
                       "{\"host\": \"mta-sts.d8.sts.test\", \"path\": \"" + sts_path +
                       "\", \"status\": 200, \"content_type\": \"text/plain\", \"size\": 70000}," +
                       "{\"host\": \"mta-sts.d9.sts.test\", \"path\": \"" + sts_path +
                       "\", \"status\": 200, \"content_type\": \"text/html\", \"body\": \"" +
                       "version: STSv1\\r\\nmode: enforce\\r\\nmx: mx9.mx.test\\r\\nmax_age: 86400\\r\\n\"}]}";
  std::string zone = mx_zone;
  for (std::string d : {"d6.sts.test", "d7.sts.test", "d8.sts.test", "d9.sts.test", "bad-cert.test"})
    zone += domain_zone(d, {"v=STSv1; id=1"});
  ASSERT_TRUE(start_dns(zone));
  fake_mx* mx = start_mx({.hosts = {"127.0.0.2"}});
  ASSERT_TRUE(mx && start_https(config));
  put_policy("d1.sts.test", policy_text("enforce", {"mx9.mx.test"}));  // the redirect's target
  // mta-sts.bad-cert.test: no test certificate names it (the host answers with server.crt).
  put_policy("bad-cert.test", policy_text("enforce", {"mx9.mx.test"}));
  ASSERT_TRUE(start_sts_relay());
  for (std::string d : {"d6.sts.test", "d7.sts.test", "d8.sts.test", "d9.sts.test", "bad-cert.test"}) {
    SCOPED_TRACE(d);
    expect_no_policy(d, *mx);
  }
  EXPECT_EQ(fetches("d1.sts.test"), 0u);  // the redirect was not followed
  EXPECT_GE(fetches("d6.sts.test"), 1u);
  EXPECT_TRUE(wait_log(*_relay, [](const std::string& l) { return contains(l, "bad-cert.test: policy fetch failed (cert"); }))
      << _relay->log();
}

TEST_F(MtaSts, ResolvesWaitForASlowFetch) {
  ASSERT_NE(_port, 0);
  ASSERT_TRUE(start_dns(domain_zone("d10.sts.test", {"v=STSv1; id=1"}) + mx_zone));
  fake_mx* mx = start_mx({.hosts = {"127.0.0.2"}});
  std::string config = std::string("{\"routes\": [{\"host\": \"mta-sts.d10.sts.test\", \"path\": \"") + sts_path +
                       "\", \"status\": 200, \"content_type\": \"text/plain\", \"delay\": 3, \"body\": \"" +
                       "version: STSv1\\nmode: enforce\\nmx: *.mx.test\\nmax_age: 86400\\n\"}]}";
  ASSERT_TRUE(mx && start_https(config));
  ASSERT_TRUE(start_sts_relay());
  std::vector<std::string> qids;
  for (int i = 0; i < 3; ++i) qids.push_back(send("d10.sts.test", unique("slow")));
  for (const auto& q : qids) {
    auto d = delivered(q);
    ASSERT_TRUE(d);
    EXPECT_EQ(d->policy_source, "mta-sts") << d->raw;  // none went out before the policy came
  }
  EXPECT_EQ(fetches("d10.sts.test"), 1u);
}

TEST_F(MtaSts, TestingDeliversAndLeavesThePolicy) {
  ASSERT_NE(_port, 0);
  ASSERT_TRUE(start_dns(domain_zone("d11.sts.test", {"v=STSv1; id=1"}) + mx_zone));
  fake_mx* mx = start_mx({.hosts = {"127.0.0.2"}});
  ASSERT_TRUE(mx && start_https());
  put_policy("d11.sts.test", policy_text("testing", {"mx9.mx.test"}));  // mx1 would fail enforce
  ASSERT_TRUE(start_sts_relay());
  auto d = delivered(send("d11.sts.test", unique("testing")));
  ASSERT_TRUE(d);
  SCOPED_TRACE(d->raw);
  EXPECT_EQ(d->policy_source, "default");  // the policy is unchanged...
  EXPECT_EQ(d->mx, "mx1.mx.test");
  EXPECT_EQ(d->reason, "mx-not-in-sts-policy");  // ...and the record says what enforce would refuse
  ASSERT_TRUE(mx->wait_messages(1, 10s));
  EXPECT_EQ(fetches("d11.sts.test"), 1u);
}

TEST_F(MtaSts, EnforceSkipsMxNotInPolicy) {
  ASSERT_NE(_port, 0);
  ASSERT_TRUE(start_dns(domain_zone("d12.sts.test", {"v=STSv1; id=1"}) + mx_zone));
  fake_mx* mx = start_mx({.hosts = {"127.0.0.2"}});
  ASSERT_TRUE(mx && start_https());
  put_policy("d12.sts.test", policy_text("enforce", {"mx9.mx.test"}));
  ASSERT_TRUE(start_sts_relay());
  std::string qid = send("d12.sts.test", unique("mismatch"));
  auto lines = wait_audit(*_relay, 1, [&](const audit_line& a) { return a.queue_id == qid; });
  ASSERT_FALSE(lines.empty()) << dump_audit(*_relay) << _relay->log();
  const audit_line& a = lines[0];
  SCOPED_TRACE(a.raw);
  expect_audit_fields(a);
  EXPECT_EQ(a.outcome, "deferred");
  EXPECT_EQ(a.reason, "mx-not-in-sts-policy");
  EXPECT_EQ(a.policy_source, "mta-sts");
  EXPECT_TRUE(mx->messages().empty());
  // Nothing reached mx1, not even a connection: the host was skipped.
  EXPECT_FALSE(mx->wait_sessions(1, 2s));
}

TEST_F(MtaSts, EnforceRequiresAVerifiedCertificate) {
  ASSERT_NE(_port, 0);
  ASSERT_TRUE(start_dns(domain_zone("d13.sts.test", {"v=STSv1; id=1"}) + mx_zone));
  fake_mx* mx = start_mx({.hosts = {"127.0.0.2"}, .cert = "wrongname"});
  ASSERT_TRUE(mx && start_https());
  put_policy("d13.sts.test", policy_text("enforce", {"mx1.mx.test"}));
  ASSERT_TRUE(start_sts_relay());
  std::string qid = send("d13.sts.test", unique("wrongname"));
  auto lines = wait_audit(*_relay, 1, [&](const audit_line& a) { return a.queue_id == qid; });
  ASSERT_FALSE(lines.empty()) << dump_audit(*_relay) << _relay->log();
  SCOPED_TRACE(lines[0].raw);
  EXPECT_EQ(lines[0].outcome, "deferred");
  EXPECT_EQ(lines[0].reason, "cert-name-mismatch");
  EXPECT_EQ(lines[0].policy_source, "mta-sts");
  EXPECT_TRUE(mx->messages().empty());
  for (const auto& s : mx->sessions()) EXPECT_FALSE(s.plaintext_command("MAIL")) << commands_of(s);
}

TEST_F(MtaSts, ExpiredPolicyIsFetchedAgain) {
  ASSERT_NE(_port, 0);
  ASSERT_TRUE(start_dns(domain_zone("d14.sts.test", {"v=STSv1; id=1"}) + mx_zone));
  fake_mx* mx = start_mx({.hosts = {"127.0.0.2"}});
  ASSERT_TRUE(mx && start_https());
  put_policy("d14.sts.test", policy_text("enforce", {"mx1.mx.test"}, 2));
  ASSERT_TRUE(start_sts_relay());
  ASSERT_TRUE(delivered(send("d14.sts.test", unique("first"))));
  EXPECT_EQ(fetches("d14.sts.test"), 1u);
  ASSERT_TRUE(mx->wait_sessions(1, 20s));  // the connection (and its policy) is gone
  std::this_thread::sleep_for(2s);  // max_age 2: expired (a wait for time to pass, not an outcome)
  auto d = delivered(send("d14.sts.test", unique("second")));
  ASSERT_TRUE(d);
  EXPECT_EQ(d->policy_source, "mta-sts") << d->raw;
  EXPECT_EQ(fetches("d14.sts.test"), 2u);
}

TEST_F(MtaSts, NewTxtIdRefetchesThePolicy) {
  ASSERT_NE(_port, 0);
  ASSERT_TRUE(start_dns(domain_zone("d15.sts.test", {"v=STSv1; id=1"}) + mx_zone));
  fake_mx* mx = start_mx({.hosts = {"127.0.0.2"}});
  ASSERT_TRUE(mx && start_https());
  put_policy("d15.sts.test", policy_text("enforce", {"mx1.mx.test"}));
  ASSERT_TRUE(start_sts_relay());
  ASSERT_TRUE(delivered(send("d15.sts.test", unique("first"))));
  ASSERT_EQ(fetches("d15.sts.test"), 1u);
  // A connection kept open for reuse carries the policy it was opened under: wait until it
  // has closed, so the next message starts a new attempt (and a new resolve).
  ASSERT_TRUE(mx->wait_sessions(1, 20s));
  // The domain publishes a new policy (testing) under a new id; the TXT TTL is 1 s.
  put_policy("d15.sts.test", policy_text("testing", {"mx1.mx.test"}));
  uint16_t dns_port = _dns->port();
  _dns.reset();
  _dns = std::make_unique<dns_fixture>(domain_zone("d15.sts.test", {"v=STSv1; id=2"}) + mx_zone,
                                       dns_options{.port = dns_port});
  ASSERT_TRUE(_dns->start()) << _dns->error() << _dns->log();
  // The old server may linger a moment: go on once the new record is what is served.
  bool served = false;
  for (int i = 0; i < 50 && !served; ++i) {
    served = contains(drill(dns_port, "TXT", "_mta-sts.d15.sts.test").output, "id=2");
    if (!served) std::this_thread::sleep_for(100ms);
  }
  ASSERT_TRUE(served) << drill(dns_port, "TXT", "_mta-sts.d15.sts.test").output;
  std::this_thread::sleep_for(1500ms);  // the relay's cached TXT answer (TTL 1 s) expires
  auto d = delivered(send("d15.sts.test", unique("second")));
  ASSERT_TRUE(d);
  EXPECT_EQ(fetches("d15.sts.test"), 2u) << _relay->log();
  EXPECT_EQ(d->policy_source, "default") << d->raw;  // testing: the policy is unchanged
}

TEST_F(MtaSts, RestartKeepsTheCachedPolicy) {
  ASSERT_NE(_port, 0);
  ASSERT_TRUE(start_dns(domain_zone("d16.sts.test", {"v=STSv1; id=1"}) + mx_zone));
  fake_mx* mx = start_mx({.hosts = {"127.0.0.2"}});
  ASSERT_TRUE(mx && start_https());
  put_policy("d16.sts.test", policy_text("enforce", {"mx1.mx.test"}));
  ASSERT_TRUE(start_sts_relay());
  ASSERT_TRUE(delivered(send("d16.sts.test", unique("before"))));
  ASSERT_EQ(fetches("d16.sts.test"), 1u);
  ASSERT_EQ(_relay->stop(), 0) << _relay->log();
  _https->stop();  // the policy host is gone: only the cache can say "enforce"
  ASSERT_TRUE(_relay->start()) << _relay->error() << _relay->log();
  auto d = delivered(send("d16.sts.test", unique("after")));
  ASSERT_TRUE(d);
  EXPECT_EQ(d->policy_source, "mta-sts") << d->raw;
  EXPECT_TRUE(wait_log(*_relay, [](const std::string& l) { return contains(l, "cached policies loaded"); }))
      << _relay->log();
}

}  // namespace
}  // namespace sr::integ

namespace sr::integ {
namespace {

TEST_F(MtaSts, RoutedDomainsIgnoreMtaSts) {
  ASSERT_NE(_port, 0);
  // d17 publishes enforce with an mx that is not the route's host; a [[route]] sends its
  // mail to a configured next hop, which MTA-STS does not describe: no lookup, no policy.
  ASSERT_TRUE(start_dns(domain_zone("d17.sts.test", {"v=STSv1; id=1"}) + mx_zone));
  fake_mx* mx = start_mx({.hosts = {"127.0.0.2"}});
  ASSERT_TRUE(mx && start_https());
  put_policy("d17.sts.test", policy_text("enforce", {"mx9.mx.test"}));
  ASSERT_TRUE(start_sts_relay(route_to("d17.sts.test", "127.0.0.2", _port)));
  expect_no_policy("d17.sts.test", *mx);
  EXPECT_EQ(fetches("d17.sts.test"), 0u);
}

}  // namespace
}  // namespace sr::integ

namespace sr::integ {
namespace {

// Enforce under a configured forced or exclusive policy: the MTA-STS failure is a TLS
// failure like any other, so forced goes to its fallback (unavailable until the sidecar
// exists: deferred, fallback-unavailable) and exclusive drops, with policy_source mta-sts.
TEST_F(MtaSts, EnforceUnderForcedFallsBackAndUnderExclusiveDrops) {
  ASSERT_NE(_port, 0);
  ASSERT_TRUE(start_dns(domain_zone("d18.sts.test", {"v=STSv1; id=1"}) +
                        domain_zone("d19.sts.test", {"v=STSv1; id=1"}) + mx_zone));
  fake_mx* mx = start_mx({.hosts = {"127.0.0.2"}});
  ASSERT_TRUE(mx && start_https());
  put_policy("d18.sts.test", policy_text("enforce", {"mx9.mx.test"}));
  put_policy("d19.sts.test", policy_text("enforce", {"mx9.mx.test"}));
  ASSERT_TRUE(start_sts_relay("[[policy]]\ndomain = \"d18.sts.test\"\ntls = \"forced\"\n\n"
                              "[[policy]]\ndomain = \"d19.sts.test\"\ntls = \"exclusive\"\n"));
  std::string forced = send("d18.sts.test", unique("forced"));
  std::string exclusive = send("d19.sts.test", unique("exclusive"));
  auto handoff = wait_audit(*_relay, 1, [&](const audit_line& a) {
    return a.queue_id == forced && a.reason == "fallback-unavailable";
  });
  ASSERT_EQ(handoff.size(), 1u) << dump_audit(*_relay) << _relay->log();
  EXPECT_EQ(handoff[0].policy, "forced") << handoff[0].raw;
  EXPECT_EQ(handoff[0].policy_source, "mta-sts") << handoff[0].raw;
  auto first = audit_of(*_relay, forced);
  ASSERT_FALSE(first.empty());
  EXPECT_EQ(first[0].reason, "mx-not-in-sts-policy") << first[0].raw;
  auto dropped = wait_audit(*_relay, 1, [&](const audit_line& a) { return a.queue_id == exclusive && a.outcome == "dropped"; });
  ASSERT_EQ(dropped.size(), 1u) << dump_audit(*_relay) << _relay->log();
  EXPECT_EQ(dropped[0].policy, "exclusive") << dropped[0].raw;
  EXPECT_EQ(dropped[0].policy_source, "mta-sts") << dropped[0].raw;
  EXPECT_EQ(dropped[0].reason, "mx-not-in-sts-policy") << dropped[0].raw;
  EXPECT_TRUE(mx->messages().empty());
}

}  // namespace
}  // namespace sr::integ
