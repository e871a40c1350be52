// The relay's shards across a restart (issue 7): two shards that each recover more jobs
// for the other than a cross-shard ring holds (1024) start together, and every job is
// delivered; and a lower server.shards never strands mail in the partitions left over. Each message has one recipient in a domain owned by shard 0
// and one in a domain owned by shard 1, so whichever shard spooled it, one of its two
// jobs must cross. Asserts on what the MX hosts received and that the queue is empty.
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <map>
#include <set>
#include <thread>

#include "support/harness.hh"
#include "support/peers.hh"
#include "support/world.hh"

namespace sr::integ {
namespace {

// FNV-1a of the domain, mod 2 (queue::owner_shard): east.test -> 0, one.test -> 1.
constexpr const char* domain_of_shard0 = "east.test";
constexpr const char* domain_of_shard1 = "one.test";

// The number in "Subject: restart <n>" of a message's text, or -1.
int subject_number(const std::string& data) {
  auto at = data.find("Subject: restart ");
  if (at == std::string::npos) return -1;
  return std::atoi(data.c_str() + at + 17);
}

// How many messages shard `name`'s log line says it recovered ("queue: N recovered").
long recovered_by(const std::string& log, const std::string& name) {
  long n = -1;
  for (size_t pos = 0; (pos = log.find(name, pos)) != std::string::npos; ++pos) {
    auto eol = log.find('\n', pos);
    std::string line = log.substr(pos, eol - pos);
    auto q = line.find("queue: ");
    if (q != std::string::npos && line.find("recovered messages queued") != std::string::npos)
      n = std::atol(line.c_str() + q + 7);
  }
  return n;
}

TEST(Relay, TwoShardsRecoveringMoreThanARingForEachOtherDeliverEveryJob) {
  constexpr int messages = 2400;  // ~1200 per shard, each with one job for the other shard
  constexpr int threads = 8;
  uint16_t port = mx_port();
  ASSERT_NE(port, 0);
  // No MX runs yet: every first attempt fails to connect, and the next would be in an hour.
  relay_options o = parked_options(port, 2, route_to(domain_of_shard0, "127.0.0.2", port) +
                                                route_to(domain_of_shard1, "127.0.0.3", port));
  relay r(o);
  ASSERT_TRUE(r.start()) << r.error();

  // One connection per message, so SO_REUSEPORT spreads them evenly over both shards.
  std::atomic<int> next{0}, failed{0};
  std::vector<std::thread> senders;
  for (int t = 0; t < threads; ++t)
    senders.emplace_back([&] {
      for (int i; (i = next++) < messages;) {
        raw_client c;
        std::string n = std::to_string(i);
        bool ok = open_session(c, r.port());
        auto rep = ok ? send_message(c, "s" + n + "@sender.test",
                                     {"a" + n + "@" + domain_of_shard0, "b" + n + "@" + domain_of_shard1},
                                     "Subject: restart " + n + "\r\n\r\nbody " + n + "\r\n")
                      : std::nullopt;
        if (!rep || reply_code(*rep) != 250) ++failed;
        if (ok) c.command("QUIT", 5s);
      }
    });
  for (auto& s : senders) s.join();
  ASSERT_EQ(failed.load(), 0) << r.log();
  ASSERT_EQ(r.stop(), 0) << r.log();

  fake_mx mx({.hosts = {"127.0.0.2", "127.0.0.3"}, .port = port});
  ASSERT_TRUE(mx.start()) << mx.error();
  ASSERT_TRUE(r.start()) << r.error();
  // Each shard logs its count once it queued what it recovered (maybe after the 220).
  wait_log(r, [](const std::string& l) { return recovered_by(l, "shard0") >= 0 && recovered_by(l, "shard1") >= 0; });
  std::string log = r.log();
  EXPECT_GT(recovered_by(log, "shard0"), 1024) << log;
  EXPECT_GT(recovered_by(log, "shard1"), 1024) << log;

  bool all = mx.wait_messages(size_t(messages) * 2, 240s);
  // The fake MX records a message once it has sent its 250; wait until the relay has read
  // every 250 too (audit "delivered", in the same turn as the DONE mark), or stop() could
  // cut the last transactions short and leave them, rightly, in the queue.
  wait_audit(r, size_t(messages) * 2, [](const audit_line& a) { return a.outcome == "delivered"; }, 60s);
  ASSERT_EQ(r.stop(), 0) << r.log();
  auto got = mx.messages();
  ASSERT_TRUE(all) << got.size() << " of " << messages * 2 << " transactions reached the MX";

  // Each recipient exactly once, at the host its domain routes to.
  std::map<std::string, int> seen;
  for (const auto& m : got) {
    int n = subject_number(m.data);
    ASSERT_GE(n, 0) << m.data;
    ASSERT_EQ(m.rcpts.size(), 1u);
    std::string want_host = m.rcpts[0].find(domain_of_shard0) != std::string::npos ? "127.0.0.2" : "127.0.0.3";
    EXPECT_EQ(m.mx.substr(0, m.mx.find(':')), want_host) << m.rcpts[0];
    ++seen[m.rcpts[0]];
  }
  int missing = 0, twice = 0;
  for (int i = 0; i < messages; ++i)
    for (std::string rcpt : {"a" + std::to_string(i) + "@" + domain_of_shard0,
                             "b" + std::to_string(i) + "@" + domain_of_shard1}) {
      auto it = seen.find(rcpt);
      if (it == seen.end()) ++missing;
      else if (it->second > 1) ++twice;
    }
  EXPECT_EQ(missing, 0);
  EXPECT_EQ(twice, 0);

  // Every DONE mark reached the message's home shard: nothing is left in the spool.
  std::string raw;
  auto q = r.list_queue(&raw);
  ASSERT_TRUE(q) << raw;
  EXPECT_EQ(q->size(), 0u) << raw.substr(0, 2000);
}

// server.shards lowered from 4 to 2: partitions 2 and 3 are adopted by shards 0 and 1
// (k % 2) and everything in them is delivered, their DONE records written in place.
TEST(Relay, PartitionsOfShardsThatNoLongerRunAreAdoptedAndDelivered) {
  constexpr int messages = 40;
  uint16_t port = mx_port();
  ASSERT_NE(port, 0);
  auto options = [&](unsigned shards) { return parked_options(port, shards, route_to("*", "127.0.0.2", port)); };
  relay before(options(4));
  ASSERT_TRUE(before.start()) << before.error();
  for (int i = 0; i < messages; ++i) {  // one connection each: spread over the 4 shards
    raw_client c;
    std::string n = std::to_string(i);
    ASSERT_TRUE(open_session(c, before.port()));
    auto rep = send_message(c, "s" + n + "@sender.test", {"r" + n + "@d" + n + ".test"},
                            "Subject: restart " + n + "\r\n\r\nbody " + n + "\r\n");
    ASSERT_TRUE(rep && reply_code(*rep) == 250) << (rep ? *rep : "no reply");
    c.command("QUIT", 5s);
  }
  ASSERT_EQ(before.stop(), 0) << before.log();
  std::string raw;
  auto q = before.list_queue(&raw);
  ASSERT_TRUE(q) << raw;
  ASSERT_EQ(q->size(), size_t(messages)) << raw;
  // Queue ids carry the partition in hex digits 9-10: some must sit in partition 2 or 3.
  size_t high = 0;
  for (const auto& m : *q) high += std::stoul(m.id.substr(8, 2), nullptr, 16) >= 2;
  ASSERT_GT(high, 0u) << raw;

  relay after(options(2));
  std::filesystem::copy(before.state_dir(), after.state_dir(), std::filesystem::copy_options::recursive);
  fake_mx mx({.hosts = {"127.0.0.2"}, .port = port});
  ASSERT_TRUE(mx.start()) << mx.error();
  ASSERT_TRUE(after.start()) << after.error();
  bool all = mx.wait_messages(messages, 60s);
  // As above: the relay's own "delivered" (and DONE mark) follows the MX's 250.
  wait_audit(after, messages, [](const audit_line& a) { return a.outcome == "delivered"; }, 30s);
  ASSERT_EQ(after.stop(), 0) << after.log();
  auto got = mx.messages();
  ASSERT_TRUE(all) << got.size() << " of " << messages << " messages reached the MX\n" << after.log();
  std::set<int> numbers;
  for (const auto& m : got) numbers.insert(subject_number(m.data));
  EXPECT_EQ(numbers.size(), size_t(messages));
  EXPECT_EQ(got.size(), size_t(messages)) << "a message was delivered twice";

  // The adopted partitions' DONE records were written: nothing is left to deliver.
  q = after.list_queue(&raw);
  ASSERT_TRUE(q) << raw;
  EXPECT_EQ(q->size(), 0u) << raw;
}

}  // namespace
}  // namespace sr::integ
