// The engine's building blocks on a real io_uring: SPSC rings under two threads,
// cross-shard mailboxes woken by msg_ring, posted work, and a provided-buffer ring
// receiving real bytes from a socketpair through multishot and paced recv.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <deque>
#include <thread>

#include "sealrelay/core/mailbox.hh"
#include "sealrelay/core/shard.hh"
#include "sealrelay/core/spsc_ring.hh"
#include "sealrelay/net/buffer_ring.hh"
#include "sealrelay/net/stream.hh"

using namespace sr;

TEST(spsc_ring, preserves_order_across_threads_and_reports_full) {
  core::spsc_ring<uint64_t> ring(8);
  for (uint64_t i = 0; i < 8; ++i) ASSERT_TRUE(ring.try_push(uint64_t(i)));
  EXPECT_FALSE(ring.try_push(99));
  for (uint64_t i = 0; i < 8; ++i) EXPECT_EQ(ring.try_pop().value(), i);
  EXPECT_FALSE(ring.try_pop().has_value());

  constexpr uint64_t n = 20000;
  core::spsc_ring<uint64_t> r2(64);
  std::thread producer([&] {
    for (uint64_t i = 0; i < n;)
      if (r2.try_push(uint64_t(i))) ++i;
      else std::this_thread::yield();
  });
  uint64_t expect = 0, sum = 0;
  while (expect < n) {
    if (auto v = r2.try_pop()) {
      ASSERT_EQ(*v, expect);
      sum += *v;
      ++expect;
    } else {
      std::this_thread::yield();
    }
  }
  producer.join();
  EXPECT_EQ(sum, n * (n - 1) / 2);
}

static bool make_shard(core::shard& s) {
  if (!s.init()) return false;
  return true;
}

// A typed test message: data the receiver interprets, never code to run.
struct test_msg {
  uint64_t seq = 0;
  std::unique_ptr<int> payload;  // move-only, as the queue's messages are
};

TEST(mailbox, messages_cross_shards_and_wake_the_receiver) {
  core::mailboxes<test_msg> boxes(2, 64);
  std::atomic<int> received{0};
  std::atomic<bool> ready1{false}, fail{false};
  std::atomic<int> on_thread_mismatch{0}, out_of_order{0};
  std::thread::id t1_id;
  core::shard::options o0, o1;
  o0.index = 0;
  o1.index = 1;
  core::shard s0(o0), s1(o1);

  std::thread t1([&] {
    if (!make_shard(s1)) {
      fail = true;
      ready1 = true;
      return;
    }
    t1_id = std::this_thread::get_id();
    uint64_t next = 0;
    boxes.attach(1, s1, [&](test_msg&& m) {
      if (std::this_thread::get_id() != t1_id) ++on_thread_mismatch;
      if (m.seq != next++ || !m.payload || *m.payload != int(m.seq)) ++out_of_order;
      ++received;
    });
    s1.on_tick([&] {
      if (received.load() == 1000) s1.stop();
    });
    ready1 = true;
    s1.run();
  });
  while (!ready1) std::this_thread::yield();
  if (fail) {
    t1.join();
    GTEST_SKIP() << "io_uring is not available here (io_uring_setup failed)";
  }
  std::thread t0([&] {
    ASSERT_TRUE(make_shard(s0));
    boxes.attach(0, s0, [](test_msg&&) {});
    // Send from shard 0's loop, as the engine does: all at once, far more than the
    // ring holds; the rest waits in the overflow queue until shard 1 made room.
    s0.post([&] {
      for (uint64_t i = 0; i < 1000; ++i) boxes.send(s0, 1, test_msg{i, std::make_unique<int>(int(i))});
      EXPECT_GT(boxes.backlog(0), 0u);
    });
    s0.on_tick([&] {
      if (received.load() == 1000) s0.stop();
    });
    s0.run();
    EXPECT_EQ(boxes.backlog(0), 0u);
  });
  t0.join();
  t1.join();
  EXPECT_EQ(received.load(), 1000);
  EXPECT_EQ(on_thread_mismatch.load(), 0);
  EXPECT_EQ(out_of_order.load(), 0);
}

// The receiver is not running yet while the sender fills its ring and overflows: every
// message waits (none dropped, none re-sent in a loop) and arrives, in order, once the
// receiver attaches and makes room.
TEST(mailbox, nothing_is_lost_when_the_receiver_starts_late) {
  core::mailboxes<test_msg> boxes(2, 4);
  core::shard::options o0, o1;
  o0.index = 0;
  o0.tick_ms = 5;
  o1.index = 1;
  o1.tick_ms = 5;
  core::shard s0(o0), s1(o1);
  if (!s0.init()) GTEST_SKIP() << "io_uring is not available here";
  boxes.attach(0, s0, [](test_msg&&) {});
  for (uint64_t i = 0; i < 50; ++i) boxes.send(s0, 1, test_msg{i, std::make_unique<int>(int(i))});
  EXPECT_EQ(boxes.backlog(0), 46u) << "a ring of 4 takes 4, the rest waits in the overflow queue";

  std::vector<uint64_t> got;
  std::atomic<size_t> count{0};
  std::thread t1([&] {
    ASSERT_TRUE(s1.init());
    boxes.attach(1, s1, [&](test_msg&& m) {
      got.push_back(m.seq);
      ++count;
    });
    int t = 0;
    s1.on_tick([&] {
      if (count.load() == 50 || ++t > 1000) s1.stop();
    });
    s1.run();
  });
  int t = 0;
  s0.on_tick([&] {
    if (count.load() == 50 || ++t > 1000) s0.stop();
  });
  s0.run();
  t1.join();
  ASSERT_EQ(got.size(), 50u);
  for (uint64_t i = 0; i < 50; ++i) EXPECT_EQ(got[i], i);
  EXPECT_EQ(boxes.backlog(0), 0u);
}

TEST(shard, posted_work_runs_after_the_batch_and_ticks_fire) {
  core::shard::options o;
  o.tick_ms = 5;
  core::shard s(o);
  if (!s.init()) GTEST_SKIP() << "io_uring is not available here";
  int posted = 0, ticks = 0;
  s.post([&] { ++posted; });
  s.on_tick([&] {
    if (++ticks == 3) s.stop();
  });
  s.run();
  EXPECT_EQ(posted, 1);
  EXPECT_EQ(ticks, 3);
}

// An object left to an in-flight operation's CQE (core::shard::adopt): a recv on a
// socket that never gets data, its owner gone. A shard destroyed before that CQE frees the
// object after the ring is gone; one whose CQE came and disowned it does not free it twice.
TEST(shard, adopted_objects_are_freed_by_a_shard_stopped_before_their_cqe) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  struct orphan final : core::completion {
    core::shard* sh = nullptr;
    char buf[16];
    int* freed = nullptr;
    void on_complete(int, unsigned) override {
      sh->disown(this);
      ++*freed;  // freed by its CQE
      delete this;
    }
  };
  int freed_by_shard = 0, freed_by_cqe = 0;
  {
    core::shard s(core::shard::options{});
    if (!s.init()) GTEST_SKIP() << "io_uring is not available here";
    auto* o = new orphan;
    o->sh = &s;
    o->freed = &freed_by_cqe;
    io_uring_prep_recv(s.sqe(o), sv[0], o->buf, sizeof o->buf, 0);
    s.adopt(o, [o, &freed_by_shard] {
      ++freed_by_shard;
      delete o;
    });
    s.post([&s] { s.stop(); });
    s.run();  // submits the recv; nothing arrives
  }
  EXPECT_EQ(freed_by_shard, 1);
  EXPECT_EQ(freed_by_cqe, 0);

  freed_by_shard = 0;
  {
    core::shard::options opt;
    opt.tick_ms = 5;
    core::shard s(opt);
    ASSERT_TRUE(s.init());
    auto* o = new orphan;
    o->sh = &s;
    o->freed = &freed_by_cqe;
    io_uring_prep_recv(s.sqe(o), sv[0], o->buf, sizeof o->buf, 0);
    s.adopt(o, [o, &freed_by_shard] {
      ++freed_by_shard;
      delete o;
    });
    ASSERT_EQ(::write(sv[1], "x", 1), 1);
    int ticks = 0;
    s.on_tick([&] {
      if (freed_by_cqe == 1 || ++ticks == 400) s.stop();  // bounded: 2 s
    });
    s.run();
  }
  EXPECT_EQ(freed_by_cqe, 1);
  EXPECT_EQ(freed_by_shard, 0);
  ::close(sv[0]);
  ::close(sv[1]);
}

// A stream that records what it received.
class recorder final : public net::stream {
 public:
  using net::stream::stream;
  std::string got;
  bool eof = false, closed = false;

 private:
  void on_data(net::chunk* c, size_t len) override {
    got.append(reinterpret_cast<const char*>(c->data), len);
    _pool.release(c);
    _br.refill();
  }
  void on_eof(int) override {
    eof = true;
    close();
  }
  void on_closed() override { closed = true; }
};

TEST(stream, multishot_recv_through_provided_buffers_and_send_back) {
  core::shard::options o;
  o.tick_ms = 5;
  core::shard s(o);
  if (!s.init()) GTEST_SKIP() << "io_uring is not available here";
  net::chunk_pool pool(4096, 16);
  net::buffer_ring br(pool, 8, 3);
  if (int rc = br.register_with(s.ring()); rc < 0)
    GTEST_SKIP() << "provided buffer rings are not supported by this kernel: " << strerror(-rc);
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
  recorder r(s, br, pool, sv[0]);
  r.start_recv();
  // 20 KiB in several writes: more than one buffer, and more than the ring holds at
  // once unless buffers are recycled.
  std::string payload;
  for (int i = 0; i < 20 * 1024; ++i) payload += char('a' + i % 26);
  size_t off = 0;
  int rounds = 0;
  r.queue("hello from the stream");
  r.flush();
  s.on_tick([&] {
    if (off < payload.size()) {
      ssize_t w = ::write(sv[1], payload.data() + off, std::min<size_t>(3000, payload.size() - off));
      if (w > 0) off += size_t(w);
      if (off == payload.size()) ::shutdown(sv[1], SHUT_WR);
    }
    if (r.closed || ++rounds > 400) s.stop();
  });
  s.run();
  EXPECT_EQ(r.got, payload);
  EXPECT_TRUE(r.eof);
  EXPECT_TRUE(r.closed);
  char buf[64] = {};
  ssize_t n = ::read(sv[1], buf, sizeof buf - 1);
  EXPECT_EQ(std::string(buf, n > 0 ? size_t(n) : 0), "hello from the stream");
  ::close(sv[1]);
  EXPECT_EQ(pool.free_count() + br.available(), pool.total()) << "a chunk leaked";
}

// A consumer that holds what it receives and pauses at once, as the inbound connection
// does while a large message's disk write is in flight; take_all() is the write ending.
class holder final : public net::stream {
 public:
  using net::stream::stream;
  std::deque<std::pair<net::chunk*, size_t>> held;
  std::string got;
  size_t max_held_paced = 0;  // most chunks held at once while paced
  bool eof = false, closed = false;

  void take_all() {
    for (auto& [c, len] : held) {
      got.append(reinterpret_cast<const char*>(c->data), len);
      _pool.release(c);
    }
    held.clear();
    _br.refill();
  }

 private:
  void on_data(net::chunk* c, size_t len) override {
    held.emplace_back(c, len);
    if (recv_paced()) max_held_paced = std::max(max_held_paced, held.size());
    pause_recv();
  }
  void on_eof(int) override {
    eof = true;
    close();
  }
  void on_closed() override { closed = true; }
};

TEST(stream, paced_recv_holds_a_chunk_or_two_while_paused_and_keeps_the_order) {
  core::shard::options o;
  o.tick_ms = 2;
  core::shard s(o);
  if (!s.init()) GTEST_SKIP() << "io_uring is not available here";
  net::chunk_pool pool(4096, 16);
  net::buffer_ring br(pool, 8, 4);
  if (int rc = br.register_with(s.ring()); rc < 0)
    GTEST_SKIP() << "provided buffer rings are not supported by this kernel: " << strerror(-rc);
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
  holder h(s, br, pool, sv[0]);
  h.start_recv();
  // 640 KiB: multishot for the first 64 KiB, paced (switched while a multishot recv is
  // armed) up to 512 KiB, multishot again for the rest. The peer writes as fast as the
  // socket takes it, far faster than the consumer takes it.
  std::string payload;
  for (int i = 0; i < 640 * 1024; ++i) payload += char('a' + (i * 7 + i / 4096) % 26);
  size_t off = 0;
  int rounds = 0;
  bool paced_ever = false;
  s.on_tick([&] {
    while (off < payload.size()) {
      ssize_t w = ::write(sv[1], payload.data() + off, std::min<size_t>(64 * 1024, payload.size() - off));
      if (w <= 0) break;
      off += size_t(w);
    }
    if (off == payload.size()) ::shutdown(sv[1], SHUT_WR);
    if (++rounds % 2 == 0) {
      h.take_all();
      if (!paced_ever && h.got.size() >= 64 * 1024) {
        h.set_recv_paced(true);
        paced_ever = true;
      } else if (h.recv_paced() && h.got.size() >= 512 * 1024) {
        h.set_recv_paced(false);
      }
      h.resume_recv();
    }
    if (h.closed || rounds > 5000) s.stop();
  });
  s.run();
  h.take_all();
  EXPECT_TRUE(paced_ever);
  EXPECT_EQ(h.got.size(), payload.size());
  EXPECT_TRUE(h.got == payload) << "bytes lost or reordered across pauses and mode switches";
  EXPECT_TRUE(h.eof);
  EXPECT_TRUE(h.closed);
  // Paced: the chunk that made the consumer pause plus at most the recv in flight (and
  // whatever the cancelled multishot had read when pacing began).
  EXPECT_LE(h.max_held_paced, 3u);
  ::close(sv[1]);
  EXPECT_EQ(pool.free_count() + br.available(), pool.total()) << "a chunk leaked";
}
