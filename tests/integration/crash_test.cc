// Durability: every message that got a 250 survives kill -9 and a restart (the spool is
// recovered, a half-received message is not), survives lowering server.shards (the
// remaining shards adopt the partitions of the others), a full disk gets 452 4.3.1 and
// acceptance resumes when space returns, and SIGTERM drains: an open transaction
// finishes with its 250 while new connections are refused, then the daemon exits 0.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mount.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <algorithm>
#include <fstream>
#include <set>

#include "support/harness.hh"
#include "support/peers.hh"
#include "support/world.hh"

namespace sr::integ {
namespace {

TEST(Crash, EveryAcknowledgedMessageSurvivesKill9AndRestart) {
  relay r;
  ASSERT_TRUE(r.start()) << r.error();
  constexpr int connections = 5, per_connection = 10;   // 50 messages
  std::set<std::string> ids;
  std::vector<raw_client> clients(connections);
  for (auto& c : clients) ASSERT_TRUE(open_session(c, r.port()));
  for (int i = 0; i < per_connection; ++i) {
    for (int k = 0; k < connections; ++k) {
      std::string n = std::to_string(k) + "-" + std::to_string(i);
      auto rep = send_message(clients[k], "s" + n + "@example.org", {"t" + n + "@example.net"},
                              "Subject: crash " + n + "\r\n\r\ncrash-test body " + n + "\r\n");
      ASSERT_TRUE(rep) << "no reply for message " << n;
      auto id = queued_id(*rep);
      ASSERT_TRUE(id) << *rep;
      ids.insert(*id);
    }
  }
  ASSERT_EQ(ids.size(), size_t(connections * per_connection)) << "queue ids are not unique";

  // A message in the middle of DATA when the process dies must not come back.
  raw_client partial;
  std::string why;
  ASSERT_TRUE(open_data(partial, r.port(), "partial@example.org", "partial@example.net", &why)) << why;
  ASSERT_TRUE(partial.send("Subject: partial\r\n\r\n" + std::string(30000, 'p') + "\r\n"));

  r.kill9();
  ASSERT_TRUE(r.start()) << "restart after kill -9 failed: " << r.error();
  ASSERT_EQ(r.stop(), 0) << r.log();

  std::string raw;
  auto q = r.list_queue(&raw);
  ASSERT_TRUE(q) << raw;
  std::set<std::string> listed;
  for (const auto& m : *q) listed.insert(m.id);
  std::vector<std::string> lost;
  std::set_difference(ids.begin(), ids.end(), listed.begin(), listed.end(), std::back_inserter(lost));
  EXPECT_TRUE(lost.empty()) << lost.size() << " acknowledged messages lost, e.g. " << lost.front();
  EXPECT_EQ(q->size(), ids.size()) << "unexpected extra messages:\n" << raw;
  for (const auto& m : *q) EXPECT_NE(m.from, "partial@example.org") << "half-received message recovered";
}

TEST(Crash, LoweringShardsStrandsNoAcceptedMail) {
  uint16_t port = mx_port();
  ASSERT_NE(port, 0);
  // No MX runs yet: the first attempt of each message fails and the next is an hour away.
  relay_options o = parked_options(port, 2, route_to("*", "127.0.0.2", port));
  relay r(o);
  ASSERT_TRUE(r.start()) << r.error();
  // One connection per message until both partitions hold some (SO_REUSEPORT spreads
  // connections over the shards); a queue id names its shard in hex digits 8-9.
  std::set<std::string> ids, shards_seen;
  for (int i = 0; i < 200 && (shards_seen.size() < 2 || ids.size() < 20); ++i) {
    raw_client c;
    ASSERT_TRUE(open_session(c, r.port()));
    std::string n = std::to_string(i);
    auto rep = send_message(c, "s" + n + "@sender.test", {"t" + n + "@far.test"},
                            "Subject: shards " + n + "\r\n\r\nshards body " + n + "\r\n");
    ASSERT_TRUE(rep);
    auto id = queued_id(*rep);
    ASSERT_TRUE(id) << *rep;
    ids.insert(*id);
    shards_seen.insert(id->substr(8, 2));
    c.command("QUIT", 5s);
  }
  ASSERT_EQ(shards_seen, (std::set<std::string>{"00", "01"})) << "every message landed on one shard";
  ASSERT_EQ(r.stop(), 0) << r.log();

  // Restart with one shard: partition 1 must be adopted and its mail delivered.
  std::string cfg = read_file(r.config_path());
  auto at = cfg.find("shards = 2\n");
  ASSERT_NE(at, std::string::npos) << cfg;
  cfg.replace(at, 11, "shards = 1\n");
  std::ofstream(r.config_path()) << cfg;
  fake_mx mx({.hosts = {"127.0.0.2"}, .port = port});
  ASSERT_TRUE(mx.start()) << mx.error();
  ASSERT_TRUE(r.start()) << r.error();
  bool all = mx.wait_messages(ids.size(), 60s);
  std::string raw;
  bool empty = wait_queue_empty(r, 20s, &raw);
  ASSERT_EQ(r.stop(), 0) << r.log();
  std::set<std::string> got;
  for (const auto& m : mx.messages())
    for (const auto& rc : m.rcpts) got.insert(rc);
  EXPECT_TRUE(all) << got.size() << " of " << ids.size() << " messages delivered\n" << r.log();
  EXPECT_EQ(got.size(), ids.size());
  EXPECT_TRUE(empty) << raw;
  auto q = r.list_queue(&raw);
  ASSERT_TRUE(q) << raw;
  EXPECT_TRUE(q->empty()) << raw;
}

// The state_dir on a small tmpfs, filled up (tools/drill-faults runs the long version): a
// message kept in memory (inline record) and one over 128 KiB (body file, which fills the disk
// in the middle of its body) both get 452 4.3.1; the relay stays up, what it had accepted
// stays queued, and once the space is back the next message is accepted without a restart.
TEST(Crash, FullDiskAnswers452AndAcceptsAgainWhenSpaceReturns) {
  relay_options o;
  relay r(o);
  std::filesystem::create_directories(r.state_dir());
  if (::mount("tmpfs", r.state_dir().c_str(), "tmpfs", 0, "size=4m,mode=0700") != 0)
    GTEST_SKIP() << "cannot mount a tmpfs on the state_dir (needs root or CAP_SYS_ADMIN): "
                 << std::strerror(errno);
  struct unmount {
    std::string dir;
    ~unmount() { ::umount2(dir.c_str(), MNT_DETACH); }
  } guard{r.state_dir().string()};
  ASSERT_TRUE(r.start()) << r.error();
  auto send = [&](const std::string& tag, size_t size) -> std::string {
    raw_client c;
    if (!open_session(c, r.port())) return "no session";
    std::string body = "Subject: " + tag + "\r\n\r\n";
    std::string line(998, 'f');
    while (body.size() < size) body += line + "\r\n";
    auto rep = send_message(c, tag + "@sender.test", {"to@far.test"}, body);
    return rep ? *rep : "no reply";
  };
  auto before = send("before", 2000);
  auto id_before = queued_id(before);
  ASSERT_TRUE(id_before) << before;

  // Fill every byte that is left.
  std::string filler = (r.state_dir() / "filler").string();
  {
    std::ofstream f(filler, std::ios::binary);
    std::string mib(1 << 20, '\0');
    for (int i = 0; i < 16 && f.write(mib.data(), std::streamsize(mib.size())); ++i) f.flush();
  }
  auto small = send("small", 2000);
  EXPECT_EQ(small.substr(0, 10), "452 4.3.1 ") << small;
  // 64 KiB free: the large message's body file fills it mid-body.
  ASSERT_EQ(::truncate(filler.c_str(), std::filesystem::file_size(filler) - 64 * 1024), 0);
  auto large = send("large", 400 * 1024);
  EXPECT_EQ(large.substr(0, 10), "452 4.3.1 ") << large;

  // The same process (nothing restarts it) accepts again.
  std::filesystem::remove(filler);
  auto after = send("after", 2000);
  auto id_after = queued_id(after);
  EXPECT_TRUE(id_after) << after << "\n" << r.log();
  auto large_after = send("large-after", 400 * 1024);
  EXPECT_TRUE(queued_id(large_after)) << large_after;
  ASSERT_EQ(r.stop(), 0) << r.log();

  // What got a 250 is queued; what got 452 is not.
  std::string raw;
  auto q = r.list_queue(&raw);
  ASSERT_TRUE(q) << raw;
  std::set<std::string> froms;
  for (const auto& m : *q) froms.insert(m.from);
  EXPECT_EQ(froms, (std::set<std::string>{"before@sender.test", "after@sender.test", "large-after@sender.test"})) << raw;
}

TEST(Shutdown, SigtermLetsOpenTransactionFinishAndRefusesNewConnections) {
  relay_options o;
  o.drain_timeout = "20s";
  relay r(o);
  ASSERT_TRUE(r.start()) << r.error();
  raw_client c;
  std::string why;
  ASSERT_TRUE(open_data(c, r.port(), "drain@example.org", "t@example.net", &why)) << why;
  ASSERT_TRUE(c.send("Subject: drain\r\n\r\nfirst half\r\n"));

  r.signal(SIGTERM);
  // Wait until the relay stops accepting: refused, or greeted with 421.
  bool refused = false;
  for (auto until = clock::now() + 10s; !refused && clock::now() < until;) {
    raw_client probe;
    if (!probe.connect(r.port(), 1s)) {
      refused = true;
      break;
    }
    auto g = probe.read_reply(2s);
    if (!g || reply_code(*g) == 421) {
      refused = true;
      break;
    }
    std::this_thread::sleep_for(20ms);
  }
  EXPECT_TRUE(refused) << "new connections still greeted after SIGTERM";

  ASSERT_TRUE(c.send("second half\r\n.\r\n"));
  auto done = c.read_reply(15s);
  ASSERT_TRUE(done) << "no reply to the final dot during drain; log:\n" << r.log();
  auto id = queued_id(*done);
  ASSERT_TRUE(id) << *done;
  c.send("QUIT\r\n");
  c.read_until_eof(10s);
  EXPECT_TRUE(c.eof());

  auto code = r.wait_exit(25s);
  ASSERT_TRUE(code) << "daemon still running after drain";
  EXPECT_EQ(*code, 0) << r.log();
  auto q = r.list_queue();
  ASSERT_TRUE(q);
  ASSERT_EQ(q->size(), 1u);
  EXPECT_EQ((*q)[0].id, *id);
}

TEST(Shutdown, SigtermWithIdleSessionsExitsPromptly) {
  relay r;
  ASSERT_TRUE(r.start()) << r.error();
  raw_client c;
  ASSERT_TRUE(open_session(c, r.port()));
  r.signal(SIGTERM);
  // An idle session is closed at once with 421 (no transaction to wait for).
  auto bye = c.read_reply(15s);
  ASSERT_TRUE(bye);
  EXPECT_EQ(reply_code(*bye), 421) << *bye;
  auto code = r.wait_exit(15s);
  ASSERT_TRUE(code);
  EXPECT_EQ(*code, 0) << r.log();
}

}  // namespace
}  // namespace sr::integ
