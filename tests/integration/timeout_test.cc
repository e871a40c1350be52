// Idle, per-command and DATA timeouts with 1 s limits: the client that stops sending is
// told "421 4.4.2" and the connection is closed. The deadlines here only bound the wait;
// what is asserted is the reply and the close, never how long they took.
#include <gtest/gtest.h>

#include "support/harness.hh"

namespace sr::integ {
namespace {

void expect_timeout_and_close(raw_client& c) {
  auto r = c.read_reply(15s);
  ASSERT_TRUE(r) << "no reply before the deadline; pending: " << c.pending();
  EXPECT_TRUE(starts_with(*r, "421 4.4.2")) << *r;
  auto tail = c.read_until_eof(10s);
  EXPECT_TRUE(tail.empty());
  EXPECT_TRUE(c.eof()) << "connection still open after the timeout reply";
}

TEST(Timeouts, IdleClientIsDisconnected) {
  relay r(with_limits({"idle_timeout = \"1s\"", "command_timeout = \"30s\""}));
  ASSERT_TRUE(r.start()) << r.error();
  raw_client c;
  ASSERT_TRUE(open_session(c, r.port()));
  expect_timeout_and_close(c);
}

TEST(Timeouts, IdleRightAfterGreeting) {
  relay r(with_limits({"idle_timeout = \"1s\"", "command_timeout = \"30s\""}));
  ASSERT_TRUE(r.start()) << r.error();
  raw_client c;
  ASSERT_TRUE(c.connect(r.port()));
  auto g = c.read_reply();
  ASSERT_TRUE(g);
  ASSERT_EQ(reply_code(*g), 220);
  expect_timeout_and_close(c);
}

TEST(Timeouts, HalfACommandHitsCommandTimeout) {
  relay r(with_limits({"idle_timeout = \"60s\"", "command_timeout = \"1s\""}));
  ASSERT_TRUE(r.start()) << r.error();
  raw_client c;
  ASSERT_TRUE(open_session(c, r.port()));
  ASSERT_TRUE(c.send("MAIL FROM:<slow@exam"));
  expect_timeout_and_close(c);
}

TEST(Timeouts, StalledDataHitsDataTimeoutAndNothingIsSpooled) {
  relay r(with_limits({"idle_timeout = \"60s\"", "command_timeout = \"60s\"", "data_timeout = \"1s\""}));
  ASSERT_TRUE(r.start()) << r.error();
  raw_client c;
  std::string why;
  ASSERT_TRUE(open_data(c, r.port(), "s@example.org", "t@example.net", &why)) << why;
  ASSERT_TRUE(c.send("Subject: stalled\r\n\r\nstalled-body-marker\r\n"));
  expect_timeout_and_close(c);
  ASSERT_EQ(r.stop(), 0) << r.log();
  auto q = r.list_queue();
  ASSERT_TRUE(q);
  EXPECT_TRUE(q->empty());
}

}  // namespace
}  // namespace sr::integ
