// spool::reader on a real io_uring: many more segments than the reader keeps open, every
// read queued before any is submitted (so the cache evicts segments that queued reads
// still name), and each read must return exactly its own message's bytes.
#include <gtest/gtest.h>
#include <sys/uio.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "sealrelay/core/shard.hh"
#include "sealrelay/spool/partition.hh"
#include "sealrelay/spool/reader.hh"
#include "support/temp_dir.hh"

namespace fs = std::filesystem;
using namespace sr;

namespace {

class spool_reader : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_FALSE(_state.empty()) << "mkdtemp failed"; }
  sr::test::temp_dir _dir{"sr-reader-test"};   // removed with its contents after the test
  std::string _state = _dir.path().string();
};

// Same length for every body, different bytes: a read served from the wrong segment
// would come back complete and wrong, not short.
std::string body_of(int n) {
  std::string b = "Subject: message " + std::to_string(1000 + n) + "\r\n\r\n";
  while (b.size() < 4000) b += char('a' + n % 26);
  return b;
}

}  // namespace

TEST_F(spool_reader, reads_return_their_own_bytes_when_segments_outnumber_the_cache) {
  constexpr int n_segments = 24;
  constexpr size_t cache = 3;
  // A 1-byte limit: every batch starts a new segment.
  auto opened = spool::partition::open(_state, 0, nullptr, 1);
  ASSERT_TRUE(opened.ok()) << opened.err();
  auto& part = *opened.value();
  std::vector<std::string> bodies;
  std::vector<spool::body_ref> where;
  for (int i = 0; i < n_segments; ++i) {
    bodies.push_back(body_of(i));
    spool::message_meta meta;
    meta.queue_id = part.next_queue_id();
    meta.rcpts = {"r@example.net"};
    iovec iov{bodies.back().data(), bodies.back().size()};
    ASSERT_TRUE(part.stage(meta, std::span<const iovec>(&iov, 1), &iov));
    spool::partition::outcome_list out;
    ASSERT_TRUE(part.flush(out));
    ASSERT_EQ(part.last_locations().size(), 1u);
    const auto& loc = part.last_locations()[0];
    where.push_back({loc.segment, loc.offset, loc.length});
  }
  ASSERT_GE(part.segment_count(), size_t(n_segments));

  core::shard::options o;
  o.entries = 256;
  core::shard sh(o);
  ASSERT_TRUE(sh.init());
  spool::reader rd(sh, cache);
  // Three passes over every segment, in an order that keeps evicting: 3 * 24 reads queued
  // before the loop submits any of them.
  constexpr int passes = 3;
  std::vector<std::string> got(size_t(n_segments * passes));
  std::vector<int> ok(got.size(), -1);
  int finished = 0;
  for (int p = 0; p < passes; ++p) {
    for (int i = 0; i < n_segments; ++i) {
      size_t k = size_t(p * n_segments + i);
      got[k].assign(where[i].length, '\0');
      rd.read(where[i], got[k].data(), [&, k](bool r) {
        ok[k] = r;
        if (++finished == int(got.size())) sh.stop();
      });
    }
  }
  EXPECT_GT(rd.open_segments(), cache);  // queued reads pin segments the cache dropped
  uint64_t ticks = 0;
  sh.on_tick([&] {
    if (++ticks > 100) sh.stop();  // 10 s: the test fails below instead of hanging
  });
  sh.run();
  ASSERT_EQ(finished, int(got.size()));
  for (size_t k = 0; k < got.size(); ++k) {
    EXPECT_EQ(ok[k], 1) << "read " << k;
    EXPECT_EQ(got[k], bodies[k % n_segments]) << "read " << k << " got another message's bytes";
  }
  EXPECT_LE(rd.open_segments(), cache);  // pins released with their reads
  EXPECT_EQ(rd.cached_segments(), cache);
}

TEST_F(spool_reader, a_missing_segment_fails_the_read_later_not_inline) {
  core::shard::options o;
  o.entries = 64;
  core::shard sh(o);
  ASSERT_TRUE(sh.init());
  spool::reader rd(sh, 4);
  std::string buf(10, '\0');
  int result = -1;
  rd.read({_state + "/spool/0/seg-00000000000000FF.log", 0, 10}, buf.data(), [&](bool r) {
    result = r;
    sh.stop();
  });
  EXPECT_EQ(result, -1);  // not called from inside read()
  int ticks = 0;
  sh.on_tick([&] {
    if (++ticks > 50) sh.stop();
  });
  sh.run();
  EXPECT_EQ(result, 0);
}
