// delivery::walk without I/O: MX and address answers, connect failures and link ends go
// in; the test records what the walk asks for (resolve, connect, give up, fall back, done)
// and checks the DESIGN.md §1 rules: host order, the opportunistic plaintext retry on the
// same address, forced/exclusive never plaintext and falling back only when every host
// that answered failed for a TLS reason, DNS give-ups, and [[route]] next hops.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>

#include <string>
#include <vector>

#include "delivery/walk.hh"

using namespace sr;
using namespace sr::delivery;
using outbound::close_kind;
using report::reason;

namespace {

struct recorder : walk_events {
  std::vector<std::string> calls;
  std::vector<target> targets;
  std::vector<bool> plain;            // per connect: a plaintext retry?
  session_report last_plain_retry;
  session_report last;
  report::reason why = report::reason::none;
  std::string status;
  bool permanent = false;

  void resolve_mx(const std::string& d) override { calls.push_back("mx " + d); }
  void resolve_host(const std::string& h) override { calls.push_back("addr " + h); }
  void host_ruled_out(const session_report& r) override {
    calls.push_back("ruled_out " + r.mx + " " + std::string(report::to_string(r.reason)));
  }
  void resolve_tlsa(const std::string& h, uint16_t port) override {
    calls.push_back("tlsa _" + std::to_string(port) + "._tcp." + h);
  }
  void connect(const target& t, const session_report* retry) override {
    calls.push_back("connect " + t.host + " " + t.ip + ":" +
                    std::to_string(ntohs(reinterpret_cast<const sockaddr_in*>(&t.addr)->sin_port)) +
                    (retry ? " plain" : ""));
    targets.push_back(t);
    plain.push_back(retry != nullptr);
    if (retry) last_plain_retry = *retry;
  }
  void give_up(reason w, const std::string&, bool perm, const std::string& st,
               const session_report& l) override {
    calls.push_back("give_up " + std::string(report::to_string(w)));
    why = w;
    permanent = perm;
    status = st;
    last = l;
  }
  void fall_back(const session_report& l) override {
    calls.push_back("fall_back " + std::string(report::to_string(l.reason)));
    last = l;
  }
  void done() override { calls.push_back("done"); }
};

policy::effective_policy make(config::tls_policy tls) {
  policy::effective_policy p;
  p.tls = tls;
  p.source = tls == config::tls_policy::opportunistic ? report::policy_source::default_policy
                                                      : report::policy_source::config;
  return p;
}

sockaddr_storage v4(const char* ip) {
  sockaddr_storage ss{};
  auto* sin = reinterpret_cast<sockaddr_in*>(&ss);
  sin->sin_family = AF_INET;
  inet_pton(AF_INET, ip, &sin->sin_addr);
  return ss;
}

link_end ended(close_kind k, reason r) {
  link_end e;
  e.kind = k;
  e.reason = r;
  return e;
}

link_end idle() {
  link_end e;
  e.reached_idle = true;
  return e;
}

const std::vector<std::string> two_mx = {"mx1.dest.test", "mx2.dest.test"};

}  // namespace

TEST(delivery_walk, walks_mx_hosts_and_addresses_in_order_until_a_link_is_ready) {
  recorder ev;
  walk w("dest.test", make(config::tls_policy::opportunistic), 25, ev);
  w.start(nullptr);
  w.on_mx(lookup::ok, two_mx);
  sockaddr_storage a1[] = {v4("127.0.0.2"), v4("127.0.0.3")};
  w.on_addrs("mx1.dest.test", lookup::ok, a1);
  w.on_connect_failed("Connection refused");
  w.on_link_closed(ended(close_kind::remote, reason::remote_4xx));
  sockaddr_storage a2[] = {v4("127.0.0.4")};
  w.on_addrs("mx2.dest.test", lookup::ok, a2);
  w.on_link_closed(idle());
  EXPECT_EQ(ev.calls, (std::vector<std::string>{
                          "mx dest.test", "addr mx1.dest.test", "connect mx1.dest.test 127.0.0.2:25",
                          "connect mx1.dest.test 127.0.0.3:25", "addr mx2.dest.test",
                          "connect mx2.dest.test 127.0.0.4:25", "done"}));
  EXPECT_TRUE(w.finished());
  // Each target carries what its TLS session verifies against.
  for (const auto& t : ev.targets) {
    EXPECT_EQ(t.verify.names, std::vector<std::string>{t.host});
    EXPECT_EQ(t.verify.mode, config::verify_mode::none);
    EXPECT_TRUE(t.verify.tlsa.empty());
  }
}

TEST(delivery_walk, every_host_failing_gives_up_with_the_last_reason_and_host) {
  recorder ev;
  walk w("dest.test", make(config::tls_policy::opportunistic), 25, ev);
  w.start(nullptr);
  w.on_mx(lookup::ok, two_mx);
  sockaddr_storage a1[] = {v4("127.0.0.2")};
  w.on_addrs("mx1.dest.test", lookup::ok, a1);
  w.on_link_closed(ended(close_kind::remote, reason::remote_4xx));
  w.on_addrs("mx2.dest.test", lookup::temp_fail, {}, "timeout");
  ASSERT_EQ(ev.calls.back(), "give_up mx-address-lookup-failed");
  EXPECT_FALSE(ev.permanent);
  EXPECT_EQ(ev.status, "4.4.1");
  EXPECT_EQ(ev.last.mx, "mx1.dest.test");
  EXPECT_EQ(ev.last.ip, "127.0.0.2");
}

TEST(delivery_walk, dns_answers_that_end_the_walk) {
  struct row {
    lookup status;
    const char* call;
    bool permanent;
    const char* status_code;
  };
  for (const row& r : {row{lookup::null_mx, "give_up null-mx", true, "5.1.10"},
                       row{lookup::nxdomain, "give_up nxdomain", true, "5.1.2"},
                       row{lookup::temp_fail, "give_up dns-temp-fail", false, "4.4.1"}}) {
    recorder ev;
    walk w("dest.test", make(config::tls_policy::forced), 25, ev);
    w.start(nullptr);
    w.on_mx(r.status, {});
    ASSERT_EQ(ev.calls.size(), 2u);
    EXPECT_EQ(ev.calls[1], r.call);
    EXPECT_EQ(ev.permanent, r.permanent);
    EXPECT_EQ(ev.status, r.status_code);
    EXPECT_TRUE(ev.last.mx.empty());  // no host was contacted
    EXPECT_EQ(ev.last.policy, config::tls_policy::forced);
    EXPECT_EQ(ev.last.source, report::policy_source::config);
  }
}

TEST(delivery_walk, opportunistic_retries_a_failed_handshake_once_in_plaintext_on_the_same_address) {
  recorder ev;
  walk w("dest.test", make(config::tls_policy::opportunistic), 25, ev);
  w.start(nullptr);
  w.on_mx(lookup::ok, two_mx);
  sockaddr_storage a1[] = {v4("127.0.0.2")};
  w.on_addrs("mx1.dest.test", lookup::ok, a1);
  w.on_link_closed(ended(close_kind::tls_failed, reason::handshake_failed));
  ASSERT_EQ(ev.calls.back(), "connect mx1.dest.test 127.0.0.2:25 plain");
  EXPECT_EQ(ev.last_plain_retry.reason, reason::handshake_failed);
  EXPECT_EQ(ev.last_plain_retry.mx, "mx1.dest.test");
  // The plaintext retry failing too moves on; no second plaintext retry for that address.
  w.on_link_closed(ended(close_kind::lost, reason::connection_lost));
  EXPECT_EQ(ev.calls.back(), "addr mx2.dest.test");
}

TEST(delivery_walk, forced_never_retries_in_plaintext_and_falls_back_when_every_mx_failed_tls) {
  for (auto tls : {config::tls_policy::forced, config::tls_policy::exclusive}) {
    recorder ev;
    walk w("dest.test", make(tls), 25, ev);
    w.start(nullptr);
    w.on_mx(lookup::ok, two_mx);
    sockaddr_storage a1[] = {v4("127.0.0.2")};
    w.on_addrs("mx1.dest.test", lookup::ok, a1);
    w.on_link_closed(ended(close_kind::tls_failed, reason::handshake_failed));
    EXPECT_EQ(ev.calls.back(), "addr mx2.dest.test");
    sockaddr_storage a2[] = {v4("127.0.0.3")};
    w.on_addrs("mx2.dest.test", lookup::ok, a2);
    link_end weak = ended(close_kind::tls_policy, reason::weak_cipher);
    weak.report.tls = true;
    weak.report.cipher_bits = 112;
    w.on_link_closed(weak);
    ASSERT_EQ(ev.calls.back(), "fall_back weak-cipher");
    for (bool p : ev.plain) EXPECT_FALSE(p) << "plaintext retry under " << config::to_string(tls);
    EXPECT_EQ(ev.last.mx, "mx2.dest.test");
    EXPECT_EQ(ev.last.ip, "127.0.0.3");
    EXPECT_TRUE(ev.last.tls);
    EXPECT_EQ(ev.last.cipher_bits, 112u);
    EXPECT_EQ(ev.last.policy, tls);
  }
}

TEST(delivery_walk, forced_with_one_non_tls_failure_is_an_ordinary_retry) {
  recorder ev;
  walk w("dest.test", make(config::tls_policy::forced), 25, ev);
  w.start(nullptr);
  w.on_mx(lookup::ok, two_mx);
  sockaddr_storage a1[] = {v4("127.0.0.2")};
  w.on_addrs("mx1.dest.test", lookup::ok, a1);
  w.on_link_closed(ended(close_kind::tls_policy, reason::starttls_not_offered));
  sockaddr_storage a2[] = {v4("127.0.0.3")};
  w.on_addrs("mx2.dest.test", lookup::ok, a2);
  w.on_link_closed(ended(close_kind::remote, reason::remote_4xx));
  EXPECT_EQ(ev.calls.back(), "give_up remote-4xx");
}

TEST(delivery_walk, our_own_limitation_is_never_a_tls_failure) {
  // An abort that is ours (tlsa_lookup_failed) or a record error after the handshake
  // (tls_error) never sends a message to its fallback or drops it.
  for (reason r : {reason::tlsa_lookup_failed, reason::tls_error}) {
    recorder ev;
    walk w("dest.test", make(config::tls_policy::exclusive), 25, ev);
    w.start(nullptr);
    w.on_mx(lookup::ok, std::vector<std::string>{"mx1.dest.test"});
    sockaddr_storage a1[] = {v4("127.0.0.2")};
    w.on_addrs("mx1.dest.test", lookup::ok, a1);
    w.on_link_closed(ended(close_kind::tls_policy, r));
    EXPECT_EQ(ev.calls.back(), "give_up " + std::string(report::to_string(r)));
  }
}

TEST(delivery_walk, routes_skip_mx_lookups) {
  config::route_entry ip;
  ip.domain = "*";
  ip.next_hop = "[127.0.0.5]:2525";
  recorder ev;
  walk w("dest.test", make(config::tls_policy::opportunistic), 25, ev);
  w.start(&ip);
  EXPECT_EQ(ev.calls, std::vector<std::string>{"connect 127.0.0.5 127.0.0.5:2525"});

  config::route_entry host;
  host.domain = "dest.test";
  host.next_hop = "smarthost.test:2526";
  recorder ev2;
  walk w2("dest.test", make(config::tls_policy::opportunistic), 25, ev2);
  w2.start(&host);
  sockaddr_storage a[] = {v4("127.0.0.6")};
  w2.on_addrs("smarthost.test", lookup::ok, a);
  EXPECT_EQ(ev2.calls, (std::vector<std::string>{"addr smarthost.test", "connect smarthost.test 127.0.0.6:2526"}));

  config::route_entry bad;
  bad.domain = "dest.test";
  bad.next_hop = "[not-an-ip]:25";
  recorder ev3;
  walk w3("dest.test", make(config::tls_policy::opportunistic), 25, ev3);
  w3.start(&bad);
  EXPECT_EQ(ev3.calls, std::vector<std::string>{"give_up route-invalid"});
}

// ---------------------------------------------------------------- MTA-STS and DANE

namespace {
std::shared_ptr<const policy::mta_sts_rules> sts(policy::sts_mode m, std::vector<std::string> mx) {
  auto r = std::make_shared<policy::mta_sts_rules>();
  r->mode = m;
  r->mx = std::move(mx);
  return r;
}
// What an MTA-STS enforce resolution yields for an opportunistic domain.
policy::effective_policy sts_raised(config::tls_policy tls) {
  auto p = make(tls);
  p.raised = true;
  p.verify = config::verify_mode::ca;
  p.source = report::policy_source::mta_sts;
  return p;
}
std::vector<uint8_t> tlsa_3_1_1() {
  std::vector<uint8_t> rd = {3, 1, 1};
  rd.resize(3 + 32, 0xab);
  return rd;
}
}  // namespace

TEST(delivery_walk, sts_enforce_never_uses_an_mx_the_policy_does_not_name) {
  recorder ev;
  walk_options opt;
  opt.sts = sts(policy::sts_mode::enforce, {"mx2.dest.test"});
  walk w("dest.test", sts_raised(config::tls_policy::opportunistic), 25, ev, opt);
  w.start(nullptr);
  w.on_mx(lookup::ok, two_mx);
  // mx1 is skipped without a lookup or a connection.
  ASSERT_EQ(ev.calls.back(), "addr mx2.dest.test");
  sockaddr_storage a2[] = {v4("127.0.0.3")};
  w.on_addrs("mx2.dest.test", lookup::ok, a2);
  ASSERT_EQ(ev.targets.size(), 1u);
  EXPECT_EQ(ev.targets[0].verify.mode, config::verify_mode::ca);
  EXPECT_TRUE(ev.targets[0].policy.raised);
  EXPECT_EQ(ev.targets[0].published, published_policy::sts);
  // A certificate failure there: never plaintext; every host failed for a TLS reason.
  w.on_link_closed(ended(close_kind::tls_policy, reason::cert_untrusted));
  EXPECT_EQ(ev.calls.back(), "fall_back cert-untrusted");
  EXPECT_EQ(ev.last.source, report::policy_source::mta_sts);
}

TEST(delivery_walk, sts_enforce_with_no_matching_mx_falls_back_without_connecting) {
  recorder ev;
  walk_options opt;
  opt.sts = sts(policy::sts_mode::enforce, {"*.other.test"});
  walk w("dest.test", sts_raised(config::tls_policy::opportunistic), 25, ev, opt);
  w.start(nullptr);
  w.on_mx(lookup::ok, two_mx);
  // Each host is ruled out without a connection (reported for TLS-RPT), then the walk ends.
  EXPECT_EQ(ev.calls, (std::vector<std::string>{"mx dest.test", "ruled_out mx1.dest.test mx-not-in-sts-policy",
                                                "ruled_out mx2.dest.test mx-not-in-sts-policy",
                                                "fall_back mx-not-in-sts-policy"}));
  EXPECT_EQ(ev.last.mx, "mx2.dest.test");
  EXPECT_EQ(ev.last.published, published_policy::sts);
}

TEST(delivery_walk, sts_testing_uses_every_mx_and_records_what_enforce_would_refuse) {
  recorder ev;
  walk_options opt;
  opt.sts = sts(policy::sts_mode::testing, {"mx2.dest.test"});
  walk w("dest.test", make(config::tls_policy::opportunistic), 25, ev, opt);
  w.start(nullptr);
  w.on_mx(lookup::ok, two_mx);
  sockaddr_storage a1[] = {v4("127.0.0.2")};
  w.on_addrs("mx1.dest.test", lookup::ok, a1);
  ASSERT_EQ(ev.targets.size(), 1u);
  EXPECT_EQ(ev.targets[0].sts_testing, reason::mx_not_in_sts_policy);
  EXPECT_FALSE(ev.targets[0].policy.raised);
  // Opportunistic as before: a failed handshake is retried in plaintext.
  w.on_link_closed(ended(close_kind::tls_failed, reason::handshake_failed));
  EXPECT_EQ(ev.calls.back(), "connect mx1.dest.test 127.0.0.2:25 plain");
}

TEST(delivery_walk, dane_needs_secure_mx_and_address_answers_before_asking_for_tlsa) {
  walk_options opt;
  opt.dane = true;
  {
    recorder ev;  // insecure MX answer: no TLSA lookup at all
    walk w("dest.test", make(config::tls_policy::opportunistic), 25, ev, opt);
    w.start(nullptr);
    w.on_mx(lookup::ok, two_mx, false);
    sockaddr_storage a1[] = {v4("127.0.0.2")};
    w.on_addrs("mx1.dest.test", lookup::ok, a1, {}, true);
    EXPECT_EQ(ev.calls.back(), "connect mx1.dest.test 127.0.0.2:25");
  }
  {
    recorder ev;  // secure MX, insecure address: none either
    walk w("dest.test", make(config::tls_policy::opportunistic), 25, ev, opt);
    w.start(nullptr);
    w.on_mx(lookup::ok, two_mx, true);
    sockaddr_storage a1[] = {v4("127.0.0.2")};
    w.on_addrs("mx1.dest.test", lookup::ok, a1, {}, false);
    EXPECT_EQ(ev.calls.back(), "connect mx1.dest.test 127.0.0.2:25");
  }
}

TEST(delivery_walk, usable_tlsa_makes_verified_tls_mandatory_and_wins_over_sts) {
  recorder ev;
  walk_options opt;
  opt.dane = true;
  opt.sts = sts(policy::sts_mode::enforce, {"mx9.dest.test"});  // names neither MX
  walk w("dest.test", sts_raised(config::tls_policy::opportunistic), 25, ev, opt);
  w.start(nullptr);
  w.on_mx(lookup::ok, two_mx, true);
  ASSERT_EQ(ev.calls.back(), "addr mx1.dest.test");  // DANE may apply: STS waits for TLSA
  sockaddr_storage a1[] = {v4("127.0.0.2")};
  w.on_addrs("mx1.dest.test", lookup::ok, a1, {}, true);
  ASSERT_EQ(ev.calls.back(), "tlsa _25._tcp.mx1.dest.test");
  w.on_tlsa("mx1.dest.test", lookup::ok, {tlsa_3_1_1()});
  ASSERT_EQ(ev.targets.size(), 1u);
  const target& t = ev.targets[0];
  EXPECT_EQ(t.verify.mode, config::verify_mode::dane);
  EXPECT_EQ(t.verify.tlsa.size(), 1u);
  EXPECT_TRUE(t.policy.raised);
  EXPECT_EQ(t.policy.source, report::policy_source::dane);
  EXPECT_EQ(t.published, published_policy::tlsa);
  // A TLSA mismatch: no plaintext retry; mx2 (secure, no TLSA) falls to MTA-STS: not named.
  w.on_link_closed(ended(close_kind::tls_policy, reason::tlsa_mismatch));
  sockaddr_storage a2[] = {v4("127.0.0.3")};
  w.on_addrs("mx2.dest.test", lookup::ok, a2, {}, true);
  w.on_tlsa("mx2.dest.test", lookup::nxdomain, {});
  EXPECT_EQ(ev.calls.back(), "fall_back mx-not-in-sts-policy");
  EXPECT_EQ(ev.targets.size(), 1u);
}

TEST(delivery_walk, a_failed_tlsa_lookup_defers_and_is_never_read_as_no_tlsa) {
  recorder ev;
  walk_options opt;
  opt.dane = true;
  walk w("dest.test", make(config::tls_policy::exclusive), 25, ev, opt);
  w.start(nullptr);
  w.on_mx(lookup::ok, std::vector<std::string>{"mx1.dest.test"}, true);
  sockaddr_storage a1[] = {v4("127.0.0.2")};
  w.on_addrs("mx1.dest.test", lookup::ok, a1, {}, true);
  w.on_tlsa("mx1.dest.test", lookup::temp_fail, {});
  // No connection, and an ordinary retry: not a TLS failure that would drop the message.
  EXPECT_TRUE(ev.targets.empty());
  EXPECT_EQ(ev.calls.back(), "give_up tlsa-lookup-failed");
  EXPECT_FALSE(ev.permanent);
  EXPECT_EQ(ev.last.source, report::policy_source::dane);
}

TEST(delivery_walk, verify_dane_without_usable_tlsa_is_dane_required) {
  recorder ev;
  walk_options opt;
  opt.dane = true;
  auto p = make(config::tls_policy::forced);
  p.verify = config::verify_mode::dane;
  walk w("dest.test", p, 25, ev, opt);
  w.start(nullptr);
  w.on_mx(lookup::ok, two_mx, true);
  sockaddr_storage a1[] = {v4("127.0.0.2")};
  w.on_addrs("mx1.dest.test", lookup::ok, a1, {}, true);
  w.on_tlsa("mx1.dest.test", lookup::nxdomain, {});
  sockaddr_storage a2[] = {v4("127.0.0.3")};
  w.on_addrs("mx2.dest.test", lookup::ok, a2, {}, false);  // insecure address: no DANE
  EXPECT_TRUE(ev.targets.empty());
  EXPECT_EQ(ev.calls.back(), "fall_back dane-required");
  EXPECT_EQ(ev.last.source, report::policy_source::dane);
}

TEST(delivery_walk, sts_enforce_still_rules_a_host_whose_address_answer_was_insecure) {
  // Secure MX answer with DANE on: the STS check waits for DANE; an insecure address answer
  // rules DANE out, and MTA-STS must then still refuse an MX its policy does not name.
  recorder ev;
  walk_options opt;
  opt.dane = true;
  opt.sts = sts(policy::sts_mode::enforce, {"mx2.dest.test"});
  walk w("dest.test", sts_raised(config::tls_policy::opportunistic), 25, ev, opt);
  w.start(nullptr);
  w.on_mx(lookup::ok, two_mx, true);
  sockaddr_storage a1[] = {v4("127.0.0.2")};
  w.on_addrs("mx1.dest.test", lookup::ok, a1, {}, false);
  EXPECT_TRUE(ev.targets.empty());
  ASSERT_EQ(ev.calls.back(), "addr mx2.dest.test");
  sockaddr_storage a2[] = {v4("127.0.0.3")};
  w.on_addrs("mx2.dest.test", lookup::ok, a2, {}, false);
  ASSERT_EQ(ev.targets.size(), 1u);
  EXPECT_EQ(ev.targets[0].host, "mx2.dest.test");
}

// ---------------------------------------------------------------- REQUIRETLS (RFC 8689)

namespace {
// What the attempt gives the walk of a REQUIRETLS queue (see attempt::policy_resolved).
policy::effective_policy requiretls_policy(config::tls_policy tls) {
  auto p = make(tls);
  p.requiretls = true;
  p.raised = true;
  p.verify = config::verify_mode::ca;
  p.source = report::policy_source::requiretls;
  return p;
}
}  // namespace

TEST(delivery_walk, requiretls_without_sts_or_dane_rules_out_every_mx_without_connecting) {
  recorder ev;
  walk w("dest.test", requiretls_policy(config::tls_policy::forced), 25, ev);
  w.start(nullptr);
  w.on_mx(lookup::ok, two_mx);
  EXPECT_EQ(ev.calls, (std::vector<std::string>{"mx dest.test", "ruled_out mx1.dest.test requiretls-unverified",
                                                "ruled_out mx2.dest.test requiretls-unverified",
                                                "fall_back requiretls-unverified"}));
  EXPECT_EQ(ev.last.source, report::policy_source::requiretls);
}

TEST(delivery_walk, requiretls_reads_sts_testing_as_enforce_and_never_goes_plain) {
  recorder ev;
  walk_options opt;
  opt.sts = sts(policy::sts_mode::testing, {"mx2.dest.test"});
  walk w("dest.test", requiretls_policy(config::tls_policy::opportunistic), 25, ev, opt);
  w.start(nullptr);
  w.on_mx(lookup::ok, two_mx);
  ASSERT_EQ(ev.calls[1], "ruled_out mx1.dest.test mx-not-in-sts-policy");
  ASSERT_EQ(ev.calls.back(), "addr mx2.dest.test");
  sockaddr_storage a2[] = {v4("127.0.0.3")};
  w.on_addrs("mx2.dest.test", lookup::ok, a2);
  ASSERT_EQ(ev.targets.size(), 1u);
  const target& t = ev.targets[0];
  EXPECT_EQ(t.verify.mode, config::verify_mode::ca);
  EXPECT_TRUE(t.policy.raised);
  EXPECT_TRUE(t.policy.requiretls);
  EXPECT_EQ(t.policy.source, report::policy_source::requiretls);
  // No REQUIRETLS at the MX: a TLS failure, no plaintext retry; the walk ends in fall_back.
  w.on_link_closed(ended(close_kind::tls_policy, reason::requiretls_not_offered));
  EXPECT_EQ(ev.calls.back(), "fall_back requiretls-not-offered");
  EXPECT_EQ(ev.targets.size(), 1u);
}

TEST(delivery_walk, requiretls_takes_dane_hosts_and_configured_routes) {
  {
    recorder ev;
    walk_options opt;
    opt.dane = true;
    walk w("dest.test", requiretls_policy(config::tls_policy::opportunistic), 25, ev, opt);
    w.start(nullptr);
    w.on_mx(lookup::ok, two_mx, true);
    sockaddr_storage a1[] = {v4("127.0.0.2")};
    w.on_addrs("mx1.dest.test", lookup::ok, a1, {}, true);
    w.on_tlsa("mx1.dest.test", lookup::ok, {tlsa_3_1_1()});
    ASSERT_EQ(ev.targets.size(), 1u);
    EXPECT_EQ(ev.targets[0].verify.mode, config::verify_mode::dane);
    EXPECT_EQ(ev.targets[0].policy.source, report::policy_source::requiretls);
    // mx2 has no TLSA and no MTA-STS vouches for it.
    w.on_link_closed(ended(close_kind::tls_policy, reason::tlsa_mismatch));
    sockaddr_storage a2[] = {v4("127.0.0.3")};
    w.on_addrs("mx2.dest.test", lookup::ok, a2, {}, true);
    w.on_tlsa("mx2.dest.test", lookup::nxdomain, {});
    EXPECT_EQ(ev.calls[ev.calls.size() - 2], "ruled_out mx2.dest.test requiretls-unverified");
    EXPECT_EQ(ev.calls.back(), "fall_back requiretls-unverified");
  }
  {
    // A configured next hop is trusted as a name (no MX lookup to vouch for); its
    // certificate must still verify (verify = ca on the target).
    config::route_entry host;
    host.domain = "dest.test";
    host.next_hop = "smarthost.test:2526";
    recorder ev;
    walk w("dest.test", requiretls_policy(config::tls_policy::opportunistic), 25, ev);
    w.start(&host);
    sockaddr_storage a[] = {v4("127.0.0.6")};
    w.on_addrs("smarthost.test", lookup::ok, a);
    EXPECT_EQ(ev.calls.back(), "connect smarthost.test 127.0.0.6:2526");
    EXPECT_EQ(ev.targets[0].verify.mode, config::verify_mode::ca);
  }
}
