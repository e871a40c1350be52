// core::worker_pool (the machinery under auth::hasher and dkim::sign_pool): answers run on
// the asking shard's thread, the bound refuses at once, jobs never run are handed to drop()
// (refused, not attached, or still queued at destruction), and each worker has its index.
#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <set>
#include <thread>

#include "sealrelay/core/shard.hh"
#include "sealrelay/core/worker_pool.hh"

using namespace sr;

namespace {

// Holds every worker inside run() until open(), so a test can fill the queue for sure.
struct gate {
  std::mutex mu;
  std::condition_variable cv;
  bool is_open = false;
  void wait() {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait_for(lock, std::chrono::seconds(10), [this] { return is_open; });
  }
  void open() {
    {
      std::lock_guard<std::mutex> lock(mu);
      is_open = true;
    }
    cv.notify_all();
  }
};

struct job {
  int n = 0;
};

TEST(worker_pool, answers_on_the_shard_thread_and_refuses_beyond_the_bound) {
  core::shard sh(core::shard::options{.tick_ms = 5});
  ASSERT_TRUE(sh.init()) << "io_uring unavailable";
  gate g;
  std::mutex seen_mu;
  std::set<unsigned> workers;
  std::atomic<int> dropped{0};
  core::worker_pool<job, int> pool(
      2, 6,
      [&](unsigned worker, job& j) {
        g.wait();
        std::lock_guard<std::mutex> lock(seen_mu);
        workers.insert(worker);
        return j.n * 10;
      },
      [&](job&) { ++dropped; });
  EXPECT_EQ(pool.threads(), 2u);

  core::shard other(core::shard::options{});
  EXPECT_FALSE(pool.submit(other, job{1}, [](int) {}));  // never attached
  EXPECT_EQ(dropped, 1);

  pool.attach(sh);
  pool.attach(sh);  // again: no second inbox, each answer runs once
  std::thread::id loop_thread = std::this_thread::get_id();
  int answered = 0, sum = 0, refused = 0;
  bool wrong_thread = false;
  uint64_t deadline = 0;
  sh.on_tick([&] {
    if (answered == 6 || sh.now_ms() > deadline) sh.stop();
  });
  sh.post([&] {
    deadline = sh.now_ms() + 10000;
    for (int i = 1; i <= 8; ++i) {
      bool queued = pool.submit(sh, job{i}, [&](int a) {
        wrong_thread = wrong_thread || std::this_thread::get_id() != loop_thread;
        ++answered;
        sum += a;
      });
      if (!queued) ++refused;
    }
    EXPECT_EQ(pool.in_flight(), 6u);
    g.open();
  });
  sh.run();
  EXPECT_EQ(refused, 2);
  EXPECT_EQ(dropped, 3);  // the unattached one and the two refused
  EXPECT_EQ(answered, 6);
  EXPECT_EQ(sum, (1 + 2 + 3 + 4 + 5 + 6) * 10);
  EXPECT_FALSE(wrong_thread);
  EXPECT_EQ(pool.in_flight(), 0u);
  for (unsigned w : workers) EXPECT_LT(w, 2u);
}

TEST(worker_pool, destruction_drops_queued_jobs_and_joins) {
  core::shard sh(core::shard::options{});
  ASSERT_TRUE(sh.init()) << "io_uring unavailable";
  gate g;
  std::atomic<int> ran{0}, dropped{0}, answered{0};
  {
    core::worker_pool<job, int> pool(
        1, 10,
        [&](unsigned, job&) {
          ++ran;
          g.wait();
          return 0;
        },
        [&](job&) {
          // Only the destructor drops here; the running job may finish once all are dropped.
          if (++dropped == 3) g.open();
        });
    pool.attach(sh);
    for (int i = 0; i < 4; ++i) EXPECT_TRUE(pool.submit(sh, job{i}, [&](int) { ++answered; }));
    for (int i = 0; i < 200 && ran == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    ASSERT_EQ(ran, 1);
    // The destructor drops the three still queued, then waits for the running one.
  }
  EXPECT_EQ(ran, 1);
  EXPECT_EQ(dropped, 3);
  EXPECT_EQ(answered, 0);  // the shard never ran its wake handlers
}

}  // namespace
