// Dispatch across shards on real io_urings: messages split into one job per domain,
// jobs travel to their owner shard as typed messages, and DONE marks travel back home.
// The rings are tiny, so every send beyond the first few waits in an overflow queue.
#include <gtest/gtest.h>

#include <atomic>
#include <set>
#include <thread>

#include "sealrelay/queue/dispatch.hh"
#include "sealrelay/queue/scheduler.hh"

using namespace sr;

namespace {

config::config make_cfg() {
  config::config c;
  c.server.hostname = "relay.test";
  c.outbound.max_conns_per_domain = 2;
  c.outbound.retry = {std::chrono::milliseconds(1000)};
  c.outbound.max_queue_age = std::chrono::hours(1);
  return c;
}

// A connector standing in for delivery: every job it takes is delivered at once, and
// it records what "the MX" received (queue id and recipient).
struct instant_mx final : queue::connector {
  core::shard& sh;
  queue::scheduler* sched = nullptr;
  std::vector<std::string> received;
  explicit instant_mx(core::shard& s) : sh(s) {}
  void open(queue::domain_state& d) override {
    sh.post([this, &d] {
      while (queue::job* j = sched->take(d)) {
        for (const auto& r : j->rcpts) received.push_back(j->queue_id + " " + r.address);
        std::vector<queue::rcpt_result> res(j->rcpts.size());
        for (auto& r : res) r.outcome = queue::rcpt_outcome::delivered;
        sched->finish(j, res);
      }
      sched->connection_closed(d);
    });
  }
};

// Domains owned by shard `owner` of 2.
std::vector<std::string> domains_of_shard(unsigned owner, size_t n) {
  std::vector<std::string> out;
  for (unsigned i = 0; out.size() < n; ++i) {
    std::string d = "d" + std::to_string(i) + ".test";
    if (queue::owner_shard(d, 2) == owner) out.push_back(d);
  }
  return out;
}

// One shard of the test: its scheduler, dispatcher and what reached it.
struct test_shard {
  core::shard sh;
  config::config cfg = make_cfg();
  instant_mx mx{sh};
  std::unique_ptr<queue::scheduler> sched;
  std::unique_ptr<queue::dispatcher> dispatch;
  std::set<std::string> done_home;  // queue ids whose recipients came back final
  std::atomic<size_t> done_count{0};

  static core::shard::options opts(unsigned i) {
    core::shard::options o;
    o.index = i;
    o.tick_ms = 5;
    return o;
  }
  explicit test_shard(unsigned i) : sh(opts(i)) {}

  // Build the queue side, then "recover" `n` messages whose domains the other shard owns.
  void start(queue::shard_mailboxes& boxes, size_t n, bool attach_first) {
    queue::home_link link;
    link.mark_done = [this](unsigned home, const std::string& qid, std::vector<uint32_t> idx) {
      dispatch->send_done(home, qid, std::move(idx));
    };
    sched = std::make_unique<queue::scheduler>(sh, cfg, std::move(link));
    mx.sched = sched.get();
    sched->set_connector(&mx);
    dispatch = std::make_unique<queue::dispatcher>(sh, boxes, *sched, [this](const std::string& qid, std::vector<uint32_t>) {
      done_home.insert(qid);
      done_count = done_home.size();
    });
    if (attach_first) dispatch->attach();
    unsigned me = sh.index();
    auto domains = domains_of_shard(1 - me, n);
    for (size_t i = 0; i < n; ++i) {
      queue::spooled_message m;
      m.queue_id = "Q" + std::to_string(me) + "-" + std::to_string(i);
      m.home = me;
      m.mail_from = "sender@origin.test";
      m.rcpts = {"rcpt" + std::to_string(i) + "@" + domains[i]};
      dispatch->dispatch(m);
    }
    if (!attach_first) dispatch->attach();
  }
};

}  // namespace

TEST(dispatch, split_by_domain_skips_finished_recipients_and_groups_by_domain) {
  queue::spooled_message m;
  m.queue_id = "ABC";
  m.home = 3;
  m.segment = "/spool/seg";
  m.offset = 10;
  m.length = 20;
  m.mail_from = "a@origin.test";
  m.rcpts = {"x@One.test", "y@two.test", "z@one.test", "w@two.test"};
  std::vector<uint32_t> done = {3};
  auto jobs = queue::split_by_domain(m, done);
  ASSERT_EQ(jobs.size(), 2u);
  EXPECT_EQ(jobs[0]->domain, "one.test");
  ASSERT_EQ(jobs[0]->rcpts.size(), 2u);
  EXPECT_EQ(jobs[0]->rcpts[0].address, "x@One.test");
  EXPECT_EQ(jobs[0]->rcpts[1].index, 2u);
  EXPECT_EQ(jobs[1]->domain, "two.test");
  ASSERT_EQ(jobs[1]->rcpts.size(), 1u);
  EXPECT_EQ(jobs[1]->rcpts[0].index, 1u);
  EXPECT_EQ(jobs[1]->home, 3u);
  EXPECT_EQ(jobs[1]->segment, "/spool/seg");
  EXPECT_EQ(jobs[1]->offset, 10u);
}

// Two shards that each recover more jobs for the other than a ring holds both start;
// shard 1 is not even running while shard 0 dispatches. Every job is delivered by its
// owner exactly once and every DONE mark reaches the message's home.
TEST(dispatch, two_shards_recovering_more_than_a_ring_deliver_every_job) {
  constexpr size_t ring = 8, n = 100;
  queue::shard_mailboxes boxes(2, ring);
  test_shard a(0), b(1);
  if (!a.sh.init()) GTEST_SKIP() << "io_uring is not available here";
  // Shard 0 dispatches everything before it attaches and before shard 1 exists.
  a.start(boxes, n, false);
  EXPECT_EQ(a.dispatch->backlog(), n - ring) << "the rest waits in shard 0's overflow queue";

  std::atomic<bool> b_failed{false};
  std::thread tb([&] {
    if (!b.sh.init()) {
      b_failed = true;
      return;
    }
    b.start(boxes, n, true);
    int t = 0;
    b.sh.on_tick([&] {
      if ((b.done_count.load() == n && a.done_count.load() == n) || ++t > 2000) b.sh.stop();
    });
    b.sh.run();
  });
  int t = 0;
  a.sh.on_tick([&] {
    if ((b.done_count.load() == n && a.done_count.load() == n) || ++t > 2000 || b_failed) a.sh.stop();
  });
  a.sh.run();
  tb.join();
  ASSERT_FALSE(b_failed.load());

  // What each shard's "MX" received: exactly the other shard's messages, once each.
  auto expect_all = [&](const std::vector<std::string>& got, unsigned home) {
    std::set<std::string> uniq(got.begin(), got.end());
    EXPECT_EQ(got.size(), n);
    EXPECT_EQ(uniq.size(), n);
    auto domains = domains_of_shard(1 - home, n);
    for (size_t i = 0; i < n; ++i)
      EXPECT_TRUE(uniq.count("Q" + std::to_string(home) + "-" + std::to_string(i) + " rcpt" +
                             std::to_string(i) + "@" + domains[i]))
          << "job " << i << " of shard " << home << " was not delivered";
  };
  expect_all(b.mx.received, 0);
  expect_all(a.mx.received, 1);
  EXPECT_EQ(a.done_home.size(), n);
  EXPECT_EQ(b.done_home.size(), n);
  EXPECT_EQ(a.sched->stats().delivered, n);
  EXPECT_EQ(b.sched->stats().delivered, n);
  EXPECT_EQ(a.dispatch->backlog(), 0u);
  EXPECT_EQ(b.dispatch->backlog(), 0u);
}
