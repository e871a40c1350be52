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
  // An abort that is ours (dane_unavailable) or a record error after the handshake
  // (tls_error) never sends a message to its fallback or drops it.
  for (reason r : {reason::dane_unavailable, reason::tls_error}) {
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
