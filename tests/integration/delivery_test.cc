// Plain delivery into the spool: swaks and a raw client send messages; after SIGTERM the
// queue listing and the spool files must hold exactly what was accepted (ids, envelope,
// body bytes with a Received: header, dot-unstuffed), and pipelined commands get their
// replies in order.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <thread>

#include "support/harness.hh"

namespace sr::integ {
namespace {

TEST(Delivery, SwaksMessageLandsInSpoolWithItsBytes) {
  relay r;
  ASSERT_TRUE(r.start()) << r.error();
  std::string marker = unique("plain-body");
  auto res = r.swaks({"--from", "sender@example.org", "--to", "rcpt@example.net",
                      "--header", "Subject: plain delivery", "--body", marker});
  ASSERT_EQ(res.exit_code, 0) << res.output;
  auto id = queued_id(res.output);
  ASSERT_TRUE(id) << res.output;
  ASSERT_EQ(r.stop(), 0) << r.log();

  std::string raw;
  auto q = r.list_queue(&raw);
  ASSERT_TRUE(q) << raw;
  ASSERT_EQ(q->size(), 1u) << raw;
  const auto& m = (*q)[0];
  EXPECT_EQ(m.id, *id);
  EXPECT_EQ(m.from, "sender@example.org");
  EXPECT_EQ(m.rcpts, std::vector<std::string>{"rcpt@example.net"});
  EXPECT_GT(m.bytes, marker.size());
  EXPECT_LT(m.bytes, 64u * 1024u) << raw;

  std::string spooled;
  ASSERT_TRUE(r.spool_contains(marker, &spooled)) << "body bytes not found under " << r.state_dir();
  EXPECT_NE(spooled.find("Received:"), std::string::npos) << spooled;
  EXPECT_NE(spooled.find("Subject: plain delivery"), std::string::npos) << spooled;
}

TEST(Delivery, RawSessionSeveralTransactionsNullSenderAndDotUnstuffing) {
  relay r;
  ASSERT_TRUE(r.start()) << r.error();
  raw_client c;
  std::string ehlo;
  ASSERT_TRUE(open_session(c, r.port(), &ehlo));
  for (auto ext : {"PIPELINING", "SIZE", "8BITMIME", "ENHANCEDSTATUSCODES"})
    EXPECT_NE(ehlo.find(ext), std::string::npos) << ext << " missing in\n" << ehlo;

  std::string marker = unique("dotline");
  auto first = send_message(c, "a@example.org", {"x@example.net"},
                            "Subject: one\r\n\r\n.." + marker + "\r\n...two-dots\r\nend\r\n");
  ASSERT_TRUE(first);
  auto id1 = queued_id(*first);
  ASSERT_TRUE(id1) << *first;

  auto rset = c.command("RSET");
  ASSERT_TRUE(rset);
  EXPECT_EQ(reply_code(*rset), 250) << *rset;
  auto second = send_message(c, "", {"y@example.net"}, "Subject: bounce-like\r\n\r\nnull sender\r\n");
  ASSERT_TRUE(second);
  auto id2 = queued_id(*second);
  ASSERT_TRUE(id2) << *second;
  EXPECT_NE(*id1, *id2);

  c.send("QUIT\r\n");
  auto tail = c.read_until_eof();
  ASSERT_EQ(tail.size(), 1u);
  EXPECT_EQ(reply_code(tail[0]), 221) << tail[0];
  ASSERT_EQ(r.stop(), 0) << r.log();

  std::string raw;
  auto q = r.list_queue(&raw);
  ASSERT_TRUE(q) << raw;
  ASSERT_EQ(q->size(), 2u) << raw;
  auto find = [&](const std::string& id) {
    return std::find_if(q->begin(), q->end(), [&](const queued_message& m) { return m.id == id; });
  };
  ASSERT_NE(find(*id1), q->end()) << raw;
  ASSERT_NE(find(*id2), q->end()) << raw;
  EXPECT_EQ(find(*id1)->from, "a@example.org");
  EXPECT_EQ(find(*id2)->from, "<>");

  // RFC 5321 §4.5.2: one leading dot is removed from each line that starts with one.
  std::string spooled;
  ASSERT_TRUE(r.spool_contains(marker, &spooled));
  EXPECT_NE(spooled.find("\n." + marker + "\r\n"), std::string::npos) << spooled;
  EXPECT_EQ(spooled.find(".." + marker), std::string::npos) << spooled;
  EXPECT_NE(spooled.find("\n..two-dots\r\n"), std::string::npos) << spooled;
}

TEST(Delivery, SwaksPipeliningWithSeveralRecipients) {
  relay r;
  ASSERT_TRUE(r.start()) << r.error();
  auto res = r.swaks({"--pipeline", "--from", "bulk@example.org", "--to",
                      "one@example.net,two@example.net,three@example.com"});
  ASSERT_EQ(res.exit_code, 0) << res.output;
  EXPECT_NE(res.output.find("PIPELINING"), std::string::npos) << res.output;
  auto id = queued_id(res.output);
  ASSERT_TRUE(id) << res.output;
  ASSERT_EQ(r.stop(), 0) << r.log();

  std::string raw;
  auto q = r.list_queue(&raw);
  ASSERT_TRUE(q) << raw;
  ASSERT_EQ(q->size(), 1u) << raw;
  EXPECT_EQ((*q)[0].id, *id);
  auto rcpts = (*q)[0].rcpts;
  std::sort(rcpts.begin(), rcpts.end());
  EXPECT_EQ(rcpts, (std::vector<std::string>{"one@example.net", "three@example.com", "two@example.net"}));
}

TEST(Delivery, RawPipelinedBatchGetsRepliesInOrder) {
  relay r;
  ASSERT_TRUE(r.start()) << r.error();
  raw_client c;
  ASSERT_TRUE(open_session(c, r.port()));
  // Everything up to DATA in one write (RFC 2920), then the body, then QUIT.
  ASSERT_TRUE(c.send("MAIL FROM:<p@example.org>\r\nRCPT TO:<a@example.net>\r\n"
                     "RCPT TO:<b@example.net>\r\nDATA\r\n"));
  std::vector<int> codes;
  for (int i = 0; i < 4; ++i) {
    auto rep = c.read_reply();
    ASSERT_TRUE(rep) << "reply " << i << " missing";
    codes.push_back(reply_code(*rep));
  }
  EXPECT_EQ(codes, (std::vector<int>{250, 250, 250, 354}));
  ASSERT_TRUE(c.send("Subject: pipelined\r\n\r\nbody\r\n.\r\nQUIT\r\n"));
  auto tail = c.read_until_eof();
  ASSERT_EQ(tail.size(), 2u);
  EXPECT_TRUE(queued_id(tail[0])) << tail[0];
  EXPECT_EQ(reply_code(tail[1]), 221) << tail[1];
}

// Every attempt is audited (HIPAA): when the audit file refuses writes (here /dev/full,
// ENOSPC), /healthz turns unhealthy and the failed writes are counted in /metrics.
// (Before: /healthz stayed "ok" while records were silently lost.)
TEST(Delivery, FailingAuditWriteTurnsHealthzUnhealthyAndIsCounted) {
  relay_options o;
  o.audit_file = "/dev/full";
  uint16_t admin = free_port();
  o.admin_listen = "127.0.0.1:" + std::to_string(admin);
  // Every domain goes to a port where nothing listens: each attempt fails at once and is
  // audited (deferred, connect-failed).
  o.extra_toml = "[[route]]\ndomain = \"*\"\nnext_hop = \"[127.0.0.1]:9\"\n";
  relay r(o);
  ASSERT_TRUE(r.start()) << r.error();
  // The admin thread starts once the shards are up: wait for its first answer.
  std::string before;
  for (auto until = clock::now() + 5s; clock::now() < until && before.empty();) {
    before = admin_get(admin, "/healthz");
    if (before.empty()) std::this_thread::sleep_for(20ms);   // polling for readiness
  }
  ASSERT_NE(before.find(" 200 "), std::string::npos) << before << r.log();
  auto res = r.swaks({"--from", "sender@example.org", "--to", "rcpt@example.net"});
  ASSERT_EQ(res.exit_code, 0) << res.output;
  std::string health;
  for (auto until = clock::now() + 10s; clock::now() < until;) {
    health = admin_get(admin, "/healthz");
    if (health.find(" 503 ") != std::string::npos) break;
    std::this_thread::sleep_for(50ms);   // polling the endpoint, not an assertion
  }
  EXPECT_NE(health.find(" 503 "), std::string::npos) << health << r.log();
  std::string metrics = admin_get(admin, "/metrics");
  EXPECT_EQ(metrics.find("\nsealrelay_audit_write_errors_total 0\n"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("\nsealrelay_audit_write_errors_total "), std::string::npos) << metrics;
  EXPECT_EQ(metrics.find("\nsealrelay_audit_failing 0\n"), std::string::npos) << metrics;
  EXPECT_NE(r.log().find("audit: write failed"), std::string::npos) << r.log();
  EXPECT_EQ(r.stop(), 0) << r.log();
}

}  // namespace
}  // namespace sr::integ
