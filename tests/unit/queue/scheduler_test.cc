// Scheduler bookkeeping on a real shard: connections opened per domain, jobs pulled
// by connections, per-recipient results turned into DONE records, retries and DSNs.
#include <gtest/gtest.h>

#include <functional>

#include "queue/dsn.hh"
#include "sealrelay/queue/scheduler.hh"

using namespace sr;
using namespace std::chrono_literals;

namespace {

struct recorder : queue::connector {
  std::vector<queue::domain_state*> opened;
  void open(queue::domain_state& d) override { opened.push_back(&d); }
};

config::config make_cfg() {
  config::config c;
  c.server.hostname = "relay.test";
  c.outbound.max_conns_per_domain = 2;
  c.outbound.retry = {std::chrono::milliseconds(1000), std::chrono::milliseconds(5000)};
  c.outbound.max_queue_age = std::chrono::hours(1);
  return c;
}

std::unique_ptr<queue::job> make_job(const std::string& id, const std::string& domain,
                                     std::vector<std::string> rcpts, uint64_t received_ms) {
  auto j = std::make_unique<queue::job>();
  j->queue_id = id;
  j->home = 0;
  j->domain = domain;
  j->mail_from = "sender@origin.test";
  j->received_ms = received_ms;
  j->body = "Subject: hello\r\nFrom: sender@origin.test\r\n\r\nsecret body\r\n";
  uint32_t i = 0;
  for (auto& r : rcpts) j->rcpts.push_back({r, i++, 0, "", ""});
  return j;
}

}  // namespace

TEST(scheduler, results_become_done_records_retries_and_a_dsn) {
  core::shard::options o;
  core::shard sh(o);
  if (!sh.init()) GTEST_SKIP() << "io_uring is not available here";
  auto cfg = make_cfg();
  std::vector<std::pair<std::string, std::vector<uint32_t>>> done;
  std::vector<std::pair<std::string, std::string>> dsns;
  std::vector<std::function<void(bool)>> dsn_stored;
  queue::home_link link;
  link.mark_done = [&](unsigned, const std::string& id, std::vector<uint32_t> idx) { done.emplace_back(id, idx); };
  link.spool_dsn = [&](unsigned, std::string text, std::string to, std::function<void(bool)> stored) {
    dsns.emplace_back(text, to);
    dsn_stored.push_back(std::move(stored));
  };
  queue::scheduler s(sh, cfg, link);
  recorder conn;
  s.set_connector(&conn);

  s.enqueue(make_job("AAAAAAAAAAAAAAA1", "example.net", {"a@example.net", "b@example.net", "c@example.net"}, unix_ms()));
  ASSERT_EQ(conn.opened.size(), 1u);
  queue::domain_state& d = *conn.opened[0];
  queue::job* j = s.take(d);
  ASSERT_NE(j, nullptr);
  EXPECT_EQ(s.take(d), nullptr);

  std::vector<queue::rcpt_result> res(3);
  res[0].outcome = queue::rcpt_outcome::delivered;
  res[1].outcome = queue::rcpt_outcome::deferred;
  res[1].reply = "450 4.2.0 mailbox busy";
  res[2].outcome = queue::rcpt_outcome::bounced;
  res[2].reply = "550 5.1.1 <c@example.net>: no such user";
  res[2].status = "5.1.1";
  res[2].mx = "mx1.example.net";
  s.finish(j, res);

  // The delivered recipient is done at once; the bounced one only when its DSN is
  // durable (else a crash in between loses the bounce: the original would be reclaimed).
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].first, "AAAAAAAAAAAAAAA1");
  EXPECT_EQ(done[0].second, (std::vector<uint32_t>{0}));
  ASSERT_EQ(dsns.size(), 1u);
  ASSERT_EQ(dsn_stored.size(), 1u);
  dsn_stored[0](true);
  ASSERT_EQ(done.size(), 2u);
  EXPECT_EQ(done[1].first, "AAAAAAAAAAAAAAA1");
  EXPECT_EQ(done[1].second, (std::vector<uint32_t>{2}));
  EXPECT_EQ(dsns[0].second, "sender@origin.test");
  const std::string& text = dsns[0].first;
  EXPECT_NE(text.find("Content-Type: multipart/report; report-type=delivery-status"), std::string::npos);
  EXPECT_NE(text.find("Final-Recipient: rfc822; c@example.net"), std::string::npos);
  EXPECT_NE(text.find("Status: 5.1.1"), std::string::npos);
  EXPECT_NE(text.find("Remote-MTA: dns; mx1.example.net"), std::string::npos);
  EXPECT_NE(text.find("Subject: hello"), std::string::npos) << "original headers are returned";
  EXPECT_EQ(text.find("secret body"), std::string::npos) << "the original body must not be returned";
  EXPECT_EQ(text.find("b@example.net"), std::string::npos) << "deferred recipients are not in the DSN";
  EXPECT_EQ(s.depth(), 1u) << "the deferred recipient keeps the job";
  EXPECT_EQ(s.stats().delivered, 1u);
  EXPECT_EQ(s.stats().bounced, 1u);
  EXPECT_EQ(s.stats().deferred, 1u);
  EXPECT_EQ(s.retry_delay_ms(1), 1000u);
  EXPECT_EQ(s.retry_delay_ms(2), 5000u);
  EXPECT_EQ(s.retry_delay_ms(9), 5000u) << "after the list, the last interval repeats";
}

TEST(scheduler, expired_recipients_bounce_and_null_sender_gets_no_dsn) {
  core::shard::options o;
  core::shard sh(o);
  if (!sh.init()) GTEST_SKIP() << "io_uring is not available here";
  auto cfg = make_cfg();
  std::vector<std::vector<uint32_t>> done;
  std::vector<std::string> dsns;
  queue::home_link link;
  link.mark_done = [&](unsigned, const std::string&, std::vector<uint32_t> idx) { done.push_back(idx); };
  link.spool_dsn = [&](unsigned, std::string text, std::string, std::function<void(bool)> stored) {
    dsns.push_back(text);
    stored(false);  // the DSN could not be stored: its original stays pending
  };
  queue::scheduler s(sh, cfg, link);
  recorder conn;
  s.set_connector(&conn);
  uint64_t two_hours_ago = unix_ms() - 2 * 3600 * 1000;
  s.enqueue(make_job("AAAAAAAAAAAAAAA2", "slow.test", {"x@slow.test"}, two_hours_ago));
  auto bounced_null = make_job("AAAAAAAAAAAAAAA3", "slow.test", {"y@slow.test"}, two_hours_ago);
  bounced_null->mail_from = "";
  s.enqueue(std::move(bounced_null));
  ASSERT_GE(conn.opened.size(), 1u);
  queue::domain_state& d = *conn.opened[0];
  std::vector<queue::rcpt_result> res(1);
  res[0].outcome = queue::rcpt_outcome::deferred;
  res[0].reply = "421 4.4.2 try later";
  s.finish(s.take(d), res);
  s.finish(s.take(d), res);
  ASSERT_EQ(done.size(), 1u) << "only the null sender's message (no DSN) is done";
  ASSERT_EQ(dsns.size(), 1u) << "no DSN for the null sender";
  EXPECT_NE(dsns[0].find("Status: 4.4.7"), std::string::npos);
  EXPECT_NE(dsns[0].find("421 4.4.2 try later"), std::string::npos);
  EXPECT_EQ(s.depth(), 0u);
}

TEST(scheduler, connections_scale_with_backlog_up_to_the_domain_limit) {
  core::shard::options o;
  core::shard sh(o);
  if (!sh.init()) GTEST_SKIP() << "io_uring is not available here";
  auto cfg = make_cfg();
  queue::scheduler s(sh, cfg, {});
  recorder conn;
  s.set_connector(&conn);
  for (int i = 0; i < 10; ++i)
    s.enqueue(make_job("AAAAAAAAAAAAAB" + std::to_string(10 + i), "busy.test", {"u@busy.test"}, unix_ms()));
  EXPECT_EQ(conn.opened.size(), 2u) << "max_conns_per_domain = 2";
  s.enqueue(make_job("AAAAAAAAAAAAAC01", "other.test", {"u@other.test"}, unix_ms()));
  EXPECT_EQ(conn.opened.size(), 3u) << "domains are independent";
}

TEST(scheduler, reports_and_notices_queue_apart_under_opportunistic_policy) {
  core::shard::options o;
  core::shard sh(o);
  if (!sh.init()) GTEST_SKIP() << "io_uring is not available here";
  auto cfg = make_cfg();
  queue::scheduler s(sh, cfg, {});
  recorder conn;
  s.set_connector(&conn);
  s.enqueue(make_job("AAAAAAAAAAAAAD01", "bank.test", {"u@bank.test"}, unix_ms()));
  auto report = make_job("AAAAAAAAAAAAAD02", "bank.test", {"tlsrpt@bank.test"}, unix_ms());
  report->kind = queue::message_kind::tlsrpt;
  s.enqueue(std::move(report));
  auto notice = make_job("AAAAAAAAAAAAAD03", "bank.test", {"v@bank.test"}, unix_ms());
  notice->kind = queue::message_kind::escrow_notice;
  s.enqueue(std::move(notice));
  // The domain's mail and its reports/notices never share a connection (nor its policy).
  // Two jobs in the reports' queue: two connections (max_conns_per_domain = 2).
  ASSERT_EQ(conn.opened.size(), 3u);
  EXPECT_EQ(conn.opened[0]->name, "bank.test");
  EXPECT_FALSE(conn.opened[0]->opportunistic_only);
  EXPECT_EQ(conn.opened[1]->name, "bank.test");
  EXPECT_TRUE(conn.opened[1]->opportunistic_only);
  EXPECT_EQ(conn.opened[2], conn.opened[1]);
  queue::job* m = s.take(*conn.opened[0]);
  ASSERT_NE(m, nullptr);
  EXPECT_EQ(m->queue_id, "AAAAAAAAAAAAAD01");
  EXPECT_EQ(s.take(*conn.opened[0]), nullptr);
  queue::job* r1 = s.take(*conn.opened[1]);
  queue::job* r2 = s.take(*conn.opened[1]);
  ASSERT_TRUE(r1 && r2);
  EXPECT_EQ(r1->queue_id, "AAAAAAAAAAAAAD02");
  EXPECT_EQ(r2->queue_id, "AAAAAAAAAAAAAD03");
}

TEST(queue, owner_shard_and_domain_of) {
  EXPECT_EQ(queue::domain_of("User@Example.NET"), "example.net");
  EXPECT_EQ(queue::domain_of("nodomain"), "");
  EXPECT_EQ(queue::owner_shard("example.net", 1), 0u);
  EXPECT_EQ(queue::owner_shard("example.net", 4), queue::owner_shard("example.net", 4));
  EXPECT_LT(queue::owner_shard("example.net", 4), 4u);
}

// RFC 8689: REQUIRETLS and TLS-Required: No mail wait in queues of their own (a link runs
// under one policy), REQUIRETLS wins over the header, and a REQUIRETLS bounce is redacted:
// nothing of the original, not even its headers.
TEST(scheduler, requiretls_lanes_and_redacted_dsn) {
  core::shard::options o;
  core::shard sh(o);
  if (!sh.init()) GTEST_SKIP() << "io_uring is not available here";
  auto cfg = make_cfg();
  std::vector<std::string> dsns;
  queue::home_link link;
  link.mark_done = [](unsigned, const std::string&, std::vector<uint32_t>) {};
  link.spool_dsn = [&](unsigned, std::string text, std::string, std::function<void(bool)> stored) {
    dsns.push_back(text);
    stored(true);
  };
  queue::scheduler s(sh, cfg, link);
  recorder conn;
  s.set_connector(&conn);
  s.enqueue(make_job("AAAAAAAAAAAAAE01", "bank.test", {"u@bank.test"}, unix_ms()));
  auto rt = make_job("AAAAAAAAAAAAAE02", "bank.test", {"v@bank.test"}, unix_ms());
  rt->requiretls = true;
  rt->tls_required_no = true;  // ignored: REQUIRETLS wins
  rt->msg_id = "m2@origin.test";
  s.enqueue(std::move(rt));
  auto no = make_job("AAAAAAAAAAAAAE03", "bank.test", {"w@bank.test"}, unix_ms());
  no->tls_required_no = true;
  s.enqueue(std::move(no));
  ASSERT_EQ(conn.opened.size(), 3u);
  EXPECT_FALSE(conn.opened[0]->requiretls || conn.opened[0]->tls_required_no);
  EXPECT_TRUE(conn.opened[1]->requiretls);
  EXPECT_FALSE(conn.opened[1]->tls_required_no);
  EXPECT_TRUE(conn.opened[2]->tls_required_no);
  EXPECT_FALSE(conn.opened[2]->requiretls);
  for (auto* d : conn.opened) EXPECT_EQ(d->name, "bank.test");
  queue::job* j = s.take(*conn.opened[1]);
  ASSERT_NE(j, nullptr);
  EXPECT_EQ(j->queue_id, "AAAAAAAAAAAAAE02");
  std::vector<queue::rcpt_result> res(1);
  res[0].outcome = queue::rcpt_outcome::bounced;
  res[0].status = "5.7.30";
  res[0].reply = "REQUIRETLS support required";
  s.finish(j, res);
  ASSERT_EQ(dsns.size(), 1u);
  EXPECT_NE(dsns[0].find("Status: 5.7.30"), std::string::npos);
  EXPECT_NE(dsns[0].find("Message-ID: <m2@origin.test>"), std::string::npos);
  EXPECT_EQ(dsns[0].find("Subject: hello"), std::string::npos) << "no original header";
  EXPECT_EQ(dsns[0].find("secret body"), std::string::npos);
  EXPECT_EQ(dsns[0].find("text/rfc822-headers"), std::string::npos);
}

// A large message that bounces is not loaded whole for its DSN: only the first
// dsn_original_read_limit bytes are read back, and the DSN quotes whole header lines.
TEST(scheduler, dsn_of_a_large_message_reads_back_only_its_start) {
  core::shard::options o;
  core::shard sh(o);
  if (!sh.init()) GTEST_SKIP() << "io_uring is not available here";
  auto cfg = make_cfg();
  std::vector<std::string> dsns;
  queue::home_link link;
  link.mark_done = [](unsigned, const std::string&, std::vector<uint32_t>) {};
  link.spool_dsn = [&](unsigned, std::string text, std::string, std::function<void(bool)>) { dsns.push_back(text); };
  queue::scheduler s(sh, cfg, link);
  recorder conn;
  s.set_connector(&conn);
  uint64_t asked = 0;
  s.set_body_loader([&](queue::job* j, std::function<void(bool)> done) {
    asked = j->length;
    // A header section longer than what is read: the last line is cut mid-way.
    j->body = "Subject: big\r\nX-Long: ";
    j->body.resize(j->length - 3, 'h');
    j->body += "\r\nX";
    done(true);
  });
  auto big = make_job("AAAAAAAAAAAAAAA9", "example.net", {"a@example.net"}, unix_ms());
  big->body.clear();
  big->length = 40u * 1000 * 1000;
  s.enqueue(std::move(big));
  ASSERT_EQ(conn.opened.size(), 1u);
  queue::job* j = s.take(*conn.opened[0]);
  ASSERT_NE(j, nullptr);
  std::vector<queue::rcpt_result> res(1);
  res[0].outcome = queue::rcpt_outcome::bounced;
  res[0].reply = "552 5.3.4 too big";
  res[0].status = "5.3.4";
  s.finish(j, res);
  EXPECT_EQ(asked, queue::dsn_original_read_limit);
  ASSERT_EQ(dsns.size(), 1u);
  EXPECT_NE(dsns[0].find("Subject: big\r\nX-Long: hhh"), std::string::npos);
  EXPECT_EQ(dsns[0].find("\r\nX\r\n"), std::string::npos) << "the cut line is not quoted";
  EXPECT_LT(dsns[0].size(), queue::dsn_original_read_limit + 4096);
}

TEST(dsn, header_section_without_an_empty_line_keeps_whole_lines) {
  EXPECT_EQ(queue::header_section("A: 1\r\n\r\nbody"), "A: 1\r\n\r\n");
  EXPECT_EQ(queue::header_section("A: 1\r\nB: 2\r\nC: cut"), "A: 1\r\nB: 2\r\n");
  EXPECT_EQ(queue::header_section("A: no line end"), "");
}

// sealrelay_queue_oldest_age_seconds reads this: the oldest received time among queued
// jobs, lowered at once by an older job, raised only by the next rescan after the oldest
// job finished (a scan per oldest_rescan_ms, not per message), 0 when the queue is empty.
TEST(scheduler, oldest_received_follows_enqueue_at_once_and_finish_at_the_next_rescan) {
  core::shard::options o;
  core::shard sh(o);
  if (!sh.init()) GTEST_SKIP() << "io_uring is not available here";
  auto cfg = make_cfg();
  queue::home_link link;
  link.mark_done = [](unsigned, const std::string&, std::vector<uint32_t>) {};
  queue::scheduler s(sh, cfg, link);
  recorder conn;
  s.set_connector(&conn);
  uint64_t t = 1000;  // monotonic ms, as the caller passes them
  EXPECT_EQ(s.oldest_received_ms(t), 0u) << "empty queue";
  s.enqueue(make_job("AAAAAAAAAAAAAAA1", "one.test", {"a@one.test"}, 5'000'000));
  EXPECT_EQ(s.oldest_received_ms(t + 1), 5'000'000u);
  s.enqueue(make_job("AAAAAAAAAAAAAAA2", "two.test", {"b@two.test"}, 4'000'000));
  EXPECT_EQ(s.oldest_received_ms(t + 2), 4'000'000u) << "an older job lowers it without a rescan";
  s.enqueue(make_job("AAAAAAAAAAAAAAA3", "three.test", {"c@three.test"}, 6'000'000));
  EXPECT_EQ(s.oldest_received_ms(t + 3), 4'000'000u);

  // Deliver the oldest (two.test): until the next rescan the value stays, then it rises.
  queue::domain_state* two = nullptr;
  for (auto* d : conn.opened)
    if (d->name == "two.test") two = d;
  ASSERT_NE(two, nullptr);
  queue::job* j = s.take(*two);
  ASSERT_NE(j, nullptr);
  std::vector<queue::rcpt_result> res(1);
  res[0].outcome = queue::rcpt_outcome::delivered;
  s.finish(j, res);
  EXPECT_EQ(s.depth(), 2u);
  EXPECT_EQ(s.oldest_received_ms(t + 4), 4'000'000u) << "no rescan yet";
  EXPECT_EQ(s.oldest_received_ms(t + queue::scheduler::oldest_rescan_ms), 5'000'000u);
}

// sealrelay-queue's operations (issue 13) on a real scheduler: hold keeps a job from being
// taken and is recorded at home; flush makes a deferred job due; release makes a held job
// due; requeue forgets the attempt count; delete makes the recipients final (DONE) and is
// observed (audit); a delete of a job in flight waits for its attempt to end and keeps
// what that attempt delivered.
TEST(scheduler, operator_hold_flush_release_requeue_and_delete) {
  core::shard::options o;
  core::shard sh(o);
  if (!sh.init()) GTEST_SKIP() << "io_uring is not available here";
  auto cfg = make_cfg();
  cfg.outbound.retry = {std::chrono::hours(1)};
  std::vector<std::pair<std::string, std::vector<uint32_t>>> done;
  std::vector<std::tuple<std::string, std::vector<uint32_t>, bool>> holds;
  std::vector<std::string> dsn_to;
  queue::home_link link;
  link.mark_done = [&](unsigned, const std::string& id, std::vector<uint32_t> idx) { done.emplace_back(id, idx); };
  link.record_hold = [&](unsigned, const std::string& id, std::vector<uint32_t> idx, bool held) {
    holds.emplace_back(id, idx, held);
  };
  link.spool_dsn = [&](unsigned, std::string, std::string to, std::function<void(bool)> stored) {
    dsn_to.push_back(to);
    stored(true);
  };
  queue::scheduler s(sh, cfg, link);
  std::vector<std::string> deleted;
  s.on_delete([&](const queue::job& j) {
    for (const auto& r : j.rcpts) deleted.push_back(j.queue_id + " " + r.address);
  });
  recorder conn;
  s.set_connector(&conn);
  auto state_of = [&](const std::string& id) {
    std::string st;
    s.for_each_job([&](const queue::job& j, queue::job_state js, uint64_t) {
      if (j.queue_id == id) st = queue::to_string(js);
    });
    return st;
  };
  auto defer_all = [&](queue::domain_state& d) {
    while (queue::job* j = s.take(d)) {
      std::vector<queue::rcpt_result> res(j->rcpts.size());
      for (auto& r : res) r.reply = "451 4.7.1 later";
      s.finish(j, res);
    }
  };

  s.enqueue(make_job("AAAAAAAAAAAAAAA1", "example.net", {"a@example.net", "b@example.net"}, unix_ms()));
  s.enqueue(make_job("AAAAAAAAAAAAAAA2", "example.net", {"c@example.net"}, unix_ms()));
  ASSERT_FALSE(conn.opened.empty());
  queue::domain_state& d = *conn.opened[0];
  defer_all(d);
  EXPECT_EQ(state_of("AAAAAAAAAAAAAAA1"), "deferred");
  EXPECT_EQ(s.take(d), nullptr);  // the next retry is an hour away

  // hold: recorded at home; a flush leaves it alone.
  queue::job_selector one;
  one.queue_id = "AAAAAAAAAAAAAAA1";
  auto r = s.hold(one);
  EXPECT_EQ(r.matched, 1u);
  EXPECT_EQ(r.applied, 1u);
  ASSERT_EQ(holds.size(), 1u);
  EXPECT_EQ(std::get<1>(holds[0]), (std::vector<uint32_t>{0, 1}));
  EXPECT_TRUE(std::get<2>(holds[0]));
  EXPECT_EQ(state_of("AAAAAAAAAAAAAAA1"), "held");
  queue::job_selector all;
  all.all = true;
  r = s.flush(all);
  EXPECT_EQ(r.matched, 2u);
  EXPECT_EQ(r.applied, 1u);  // the other one
  queue::job* j = s.take(d);
  ASSERT_NE(j, nullptr);
  EXPECT_EQ(j->queue_id, "AAAAAAAAAAAAAAA2");
  EXPECT_EQ(state_of("AAAAAAAAAAAAAAA2"), "active");
  EXPECT_EQ(s.take(d), nullptr);  // the held one is never taken

  // delete of a job in flight: pending until its attempt ends; nothing final before.
  queue::job_selector two;
  two.queue_id = "AAAAAAAAAAAAAAA2";
  r = s.remove(two, false);
  EXPECT_EQ(r.pending, 1u);
  EXPECT_TRUE(deleted.empty());
  std::vector<queue::rcpt_result> res(1);
  res[0].reply = "451 4.7.1 later";
  s.finish(j, res);
  EXPECT_EQ(deleted, std::vector<std::string>{"AAAAAAAAAAAAAAA2 c@example.net"});
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].first, "AAAAAAAAAAAAAAA2");
  EXPECT_EQ(s.depth(), 1u);

  // release: due now, taken; requeue forgets the attempts.
  r = s.release(one);
  EXPECT_EQ(r.applied, 1u);
  EXPECT_FALSE(std::get<2>(holds.back()));
  j = s.take(d);
  ASSERT_NE(j, nullptr);
  EXPECT_EQ(j->rcpts[0].attempts, 1u);
  s.give_back(j);
  r = s.requeue(one);
  EXPECT_EQ(r.applied, 1u);
  j = s.take(d);
  ASSERT_NE(j, nullptr);
  EXPECT_EQ(j->rcpts[0].attempts, 0u);
  std::vector<queue::rcpt_result> res2(2);
  res2[0].outcome = queue::rcpt_outcome::delivered;
  res2[1].reply = "451 4.7.1 later";
  s.finish(j, res2);

  // delete with a DSN: the sender hears of the deleted recipient only; DONE after the DSN.
  done.clear();
  queue::job_selector dom;
  dom.domain = "example.net";
  r = s.remove(dom, true);
  EXPECT_EQ(r.applied, 1u);
  EXPECT_EQ(dsn_to, std::vector<std::string>{"sender@origin.test"});
  EXPECT_EQ(deleted.back(), "AAAAAAAAAAAAAAA1 b@example.net");
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].second, std::vector<uint32_t>{1});
  EXPECT_EQ(s.depth(), 0u);
  EXPECT_EQ(s.stats().deleted, 2u);
  EXPECT_EQ(s.remove(dom, false).matched, 0u);
}
