// Source IP pools end to end (issue 14 item 3): the relay binds 127.0.0.2..4 as source
// addresses and a fake MX on 127.0.0.9 records, per message, which address connected
// (its peer) and which EHLO name it sent; the audit's source_ip must agree. One message per
// connection (messages_per_conn = 1) so that round-robin shows across messages.
#include <gtest/gtest.h>

#include <map>
#include <string>

#include "support/world.hh"

namespace sr::integ {
namespace {

const char* const pools_toml = R"([[pool]]
name = "bulk"
addresses = ["127.0.0.2", "127.0.0.3"]
ehlo = "bulk.example.org"
senders = ["marketing.test"]

[[pool]]
name = "vip"
addresses = [{address = "127.0.0.4", ehlo = "vip4.example.org"}]

[[policy]]
domain = "vip.test"
tls = "opportunistic"
pool = "vip"
)";

class Pools : public ::testing::Test, protected world {};

std::string body_with(const std::string& marker) {
  return "From: <a@marketing.test>\r\nSubject: " + marker + "\r\n\r\n" + marker + "\r\n";
}

TEST_F(Pools, SourceAddressAndEhloFollowThePoolPolicyBeatsSender) {
  ASSERT_TRUE(start_dns("other.test MX 10 mx1.mx.test\nvip.test MX 10 mx1.mx.test\n"
                        "mx1.mx.test A 127.0.0.9\n"));
  fake_mx* mx = start_mx({.hosts = {"127.0.0.9"}, .cert = ""});
  ASSERT_TRUE(mx);
  relay* r = start_relay(pools_toml, "messages_per_conn = 1\n");
  ASSERT_TRUE(r);

  struct sent {
    std::string from, rcpt, qid;
  };
  std::map<std::string, sent> by_marker;
  auto send = [&](const std::string& from, const std::string& rcpt) {
    std::string marker = unique("pool");
    std::string why;
    std::string qid = submit(*r, from, {rcpt}, body_with(marker), &why);
    EXPECT_FALSE(qid.empty()) << why;
    by_marker[marker] = {from, rcpt, qid};
  };
  for (int i = 0; i < 4; ++i) send("a@marketing.test", "x" + std::to_string(i) + "@other.test");  // sender pool
  send("a@marketing.test", "y@vip.test");   // the [[policy]] pool beats the sender's
  send("b@plain.test", "z@other.test");     // no pool: the kernel's choice, server.hostname
  ASSERT_TRUE(mx->wait_messages(6, 30s)) << r->log() << mx->log();

  std::map<std::string, int> bulk_peers;
  int seen = 0;
  for (const auto& m : mx->messages()) {
    std::string marker;
    for (const auto& [k, v] : by_marker)
      if (m.data.find(k) != std::string::npos) marker = k;
    ASSERT_FALSE(marker.empty()) << m.data;
    const sent& s = by_marker[marker];
    SCOPED_TRACE(s.from + " -> " + s.rcpt);
    ++seen;
    EXPECT_TRUE(m.accepted);
    EXPECT_EQ(m.mail_from, s.from);
    if (s.rcpt == "y@vip.test") {
      EXPECT_EQ(m.peer, "127.0.0.4");
      EXPECT_EQ(m.helo, "vip4.example.org");
    } else if (s.from == "b@plain.test") {
      EXPECT_TRUE(m.peer != "127.0.0.2" && m.peer != "127.0.0.3" && m.peer != "127.0.0.4") << m.peer;
      EXPECT_EQ(m.helo, "relay.test");  // server.hostname of the harness's config
    } else {
      EXPECT_TRUE(m.peer == "127.0.0.2" || m.peer == "127.0.0.3") << m.peer;
      EXPECT_EQ(m.helo, "bulk.example.org");
      ++bulk_peers[m.peer];
    }
    // The audit names the same source address the MX saw.
    auto lines = wait_audit(*r, 1, [&](const audit_line& a) { return a.queue_id == s.qid && a.outcome == "delivered"; });
    ASSERT_EQ(lines.size(), 1u) << dump_audit(*r);
    expect_audit_fields(lines[0]);
    ASSERT_TRUE(lines[0].source_ip) << lines[0].raw;
    EXPECT_EQ(*lines[0].source_ip, m.peer) << lines[0].raw;
  }
  EXPECT_EQ(seen, 6);
  // other.test has one owner shard, so one round-robin turn: two connections from each.
  EXPECT_EQ(bulk_peers["127.0.0.2"], 2);
  EXPECT_EQ(bulk_peers["127.0.0.3"], 2);
}

TEST_F(Pools, UnknownPoolOrForeignAddressExitsTwo) {
  // A [[policy]] naming no [[pool]] (FILE:LINE: KEY), and a pool address this host does not
  // have (192.0.2.10, TEST-NET-1): --check-config and the start both exit 2.
  const std::pair<std::string, std::string> cases[] = {
      {"[[policy]]\ndomain = \"vip.test\"\npool = \"nope\"\n", ": policy[0].pool: no [[pool]] named \"nope\""},
      {"[[pool]]\nname = \"far\"\naddresses = [\"127.0.0.2\", \"192.0.2.10\"]\n",
       "pool[0].addresses[1]: 192.0.2.10 is not an address of this host"},
  };
  for (const auto& [extra, want] : cases) {
    relay rl(delivery_options("127.0.0.1:9", 9, "", extra));  // writes its config, not started
    const std::string path = rl.config_path().string();
    for (bool check : {true, false}) {
      std::vector<std::string> argv = {relay_binary(), "-c", path};
      if (check) argv.insert(argv.begin() + 1, "--check-config");
      auto res = run(argv, 30s, rl.dir());
      EXPECT_EQ(res.exit_code, 2) << res.output;
      EXPECT_TRUE(contains(res.output, path + ":")) << res.output;
      EXPECT_TRUE(contains(res.output, want)) << res.output;
    }
  }
}

}  // namespace
}  // namespace sr::integ
