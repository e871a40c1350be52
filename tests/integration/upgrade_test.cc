// Upgrade safety (issue 13): today's relay started on a spool an earlier release wrote keeps
// every message. The spools are written by those releases' own sealrelay through
// tests/fixtures/make-spool.sh, not by today's encoder: tests/fixtures/spool-v1/ by commit
// fafc63f (the last main commit with record format v1, before fb18648 "spool: record
// format v2") and tests/fixtures/spool-v2-issue11/ by commit 2bdeca1 (the end of issue 11:
// v2 with a body file for the message over 128 KiB, before issue 12's spool encryption).
// Each test copies one into a fresh state_dir, checks that --list-queue
// shows its messages, starts the relay with a fake MX that accepts everything and checks
// that every pending recipient is delivered exactly once with the bytes the old relay
// stored (its Received: line, then the message as sent), that the recipients the old
// relay had already delivered (DONE records) are not sent again, and that the sender,
// the null sender and the BODY=8BITMIME flag survive.
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "support/harness.hh"
#include "support/peers.hh"
#include "support/world.hh"

namespace fs = std::filesystem;

namespace sr::integ {
namespace {

struct pending {
  std::string body;  // bodies/<n>.eml: the message as the fixture script sent it
  std::string from;  // MAIL FROM ("" = null sender)
  bool eight_bit = false;
};

// What make-spool.sh sent and the old relay left pending (its expect.json).
std::map<std::string, pending> expected(const std::string& fixture) {
  fs::path dir = source_root() / "tests" / "fixtures" / fixture / "bodies";
  auto body = [&](const char* n) { return read_file(dir / n); };
  const std::string s = "sender@origin.example";
  return {
      {"a1@a.example", {body("1.eml"), s}},   {"a2@a.example", {body("1.eml"), s}},
      {"b1@b.example", {body("2.eml"), s}},   {"c1@c.example", {body("2.eml"), s}},
      {"big@a.example", {body("4.eml"), s, true}}, {"t1@c.example", {body("5.eml"), s}},
      {"n1@a.example", {body("6.eml"), ""}},
  };
}

// Files under `dir` (recursively).
size_t files_under(const fs::path& dir) {
  size_t n = 0;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::recursive_directory_iterator(); it.increment(ec))
    if (it->is_regular_file()) ++n;
  return n;
}

void upgrade_from(const std::string& name, bool body_file) {
  fs::path fixture = source_root() / "tests" / "fixtures" / name / "spool";
  ASSERT_TRUE(fs::exists(fixture / "0")) << fixture;
  // The large message is in a body file exactly when that release had them.
  EXPECT_EQ(files_under(fixture / "0" / "large"), body_file ? 1u : 0u) << fixture;
  auto want = expected(name);
  for (const auto& [rcpt, p] : want) ASSERT_FALSE(p.body.empty()) << rcpt << ": fixture body missing";
  ASSERT_GT(want.at("big@a.example").body.size(), 128u * 1024) << "the large message must stay over 128 KiB";

  uint16_t port = mx_port();
  ASSERT_NE(port, 0);
  relay_options o = parked_options(port, 1, route_to("*", "127.0.0.2", port));
  relay r(o);
  std::error_code ec;
  fs::create_directories(r.state_dir(), ec);
  fs::copy(fixture, r.state_dir() / "spool", fs::copy_options::recursive, ec);
  ASSERT_FALSE(ec) << ec.message();

  // Before the start: the operator's view of what the upgrade has to deliver. The message
  // whose only recipient was delivered (done2@d.example) is gone; the partly delivered one
  // is listed with its envelope.
  std::string raw;
  auto q = r.list_queue(&raw);
  ASSERT_TRUE(q) << raw;
  std::set<std::string> listed;
  for (const auto& m : *q)
    for (const auto& rc : m.rcpts) listed.insert(rc);
  EXPECT_EQ(q->size(), 5u) << raw;
  EXPECT_EQ(listed, (std::set<std::string>{"a1@a.example", "a2@a.example", "b1@b.example", "done1@b.example",
                                           "c1@c.example", "big@a.example", "t1@c.example", "n1@a.example"}))
      << raw;
  EXPECT_FALSE(contains(raw, "done2@d.example")) << raw;

  fake_mx mx({.hosts = {"127.0.0.2"}, .port = port});
  ASSERT_TRUE(mx.start()) << mx.error();
  ASSERT_TRUE(r.start()) << r.error();
  std::string left;
  EXPECT_TRUE(wait_queue_empty(r, 60s, &left)) << left << r.log();
  EXPECT_EQ(r.stop(), 0) << r.log();
  mx.stop();

  std::map<std::string, int> times;
  for (const auto& m : mx.messages()) {
    if (!m.accepted) continue;
    for (const auto& rc : m.rcpts) {
      ++times[rc];
      auto it = want.find(rc);
      if (it == want.end()) {
        ADD_FAILURE() << rc << " was delivered but the old relay had finished it (or never had it)";
        continue;
      }
      const pending& p = it->second;
      EXPECT_EQ(m.mail_from, p.from) << rc;
      bool has_8bit = false;
      for (const auto& prm : m.mail_params) has_8bit |= prm == "BODY=8BITMIME";
      EXPECT_EQ(has_8bit, p.eight_bit) << rc << ": the v1 8BITMIME flag";
      // The stored bytes: the old relay's Received: field, then the message as sent.
      ASSERT_GE(m.data.size(), p.body.size()) << rc;
      EXPECT_TRUE(ends_with(m.data, p.body)) << rc << ": body differs (" << m.data.size() << " bytes got, "
                                             << p.body.size() << " sent)";
      std::string head = m.data.substr(0, m.data.size() - p.body.size());
      EXPECT_TRUE(starts_with(head, "Received: from fixture.test (127.0.0.1)\r\n\tby relay.test (sealrelay)"))
          << rc << ": " << head;
      // One field: every line after the first is a folded continuation, nothing else added.
      EXPECT_TRUE(ends_with(head, "\r\n")) << rc << ": " << head;
      for (size_t at = head.find("\r\n"); at != std::string::npos && at + 2 < head.size(); at = head.find("\r\n", at + 2))
        EXPECT_EQ(head[at + 2], '\t') << rc << ": more than the Received: field before the message: " << head;
    }
  }
  for (const auto& [rcpt, p] : want) EXPECT_EQ(times[rcpt], 1) << rcpt << " delivered " << times[rcpt] << " times";
  EXPECT_EQ(times.count("done1@b.example"), 0u) << "resent after its DONE record";
  EXPECT_EQ(times.count("done2@d.example"), 0u) << "resent after its DONE record";
  // Everything final: the old body file went with its message's last DONE.
  EXPECT_EQ(files_under(r.state_dir() / "spool" / "0" / "large"), 0u);
}

TEST(Upgrade, SpoolWrittenByTheV1ReleaseIsDeliveredExactlyOnce) { upgrade_from("spool-v1", false); }

TEST(Upgrade, SpoolWrittenByTheIssue11ReleaseWithABodyFileIsDeliveredExactlyOnce) {
  upgrade_from("spool-v2-issue11", true);
}

}  // namespace
}  // namespace sr::integ
