// Spool partition: round trip with multi-piece bodies, torn tails at every byte, CRC
// corruption, failed writes/fsyncs failing the whole batch, DONE records and segment
// reclamation, queue ids across restarts, segment roll, and a real full disk (tmpfs).
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "spool/crc32c.hh"
#include "sealrelay/spool/partition.hh"
#include "sealrelay/spool/record.hh"
#include "sealrelay/util/log.hh"
#include "support/temp_dir.hh"

namespace fs = std::filesystem;
using namespace sr::spool;

namespace {

// A message as the inbound side would hold it: envelope + a chain of body pieces.
struct test_msg {
  message_meta meta;
  std::vector<std::string> pieces;  // Received header first, then body pieces
  std::vector<iovec> iov;

  std::string bytes() const {
    std::string s;
    for (const auto& p : pieces) s += p;
    return s;
  }
  std::span<const iovec> data() {
    iov.clear();
    for (auto& p : pieces) iov.push_back(iovec{p.data(), p.size()});
    return iov;
  }
};

test_msg make_msg(partition& p, int n, size_t body_len = 100, int npieces = 3,
                  std::vector<std::string> rcpts = {"a@one.example", "b@two.example"}) {
  test_msg m;
  m.meta.queue_id = p.next_queue_id();
  m.meta.received_ms = 1'700'000'000'000ull + n;
  m.meta.mail_from = n % 5 == 0 ? "" : "sender" + std::to_string(n) + "@example.org";
  m.meta.rcpts = std::move(rcpts);
  m.meta.body_8bitmime = n % 2;
  m.meta.tls = n % 3 == 0;
  m.pieces.push_back("Received: from client.example by relay.example with ESMTPS id " +
                     m.meta.queue_id + "\r\n");
  std::string body = "Subject: message " + std::to_string(n) + "\r\n\r\n";
  while (body.size() < body_len) body += "line of message " + std::to_string(n) + "\r\n";
  body.resize(body_len);
  size_t chunk = (body.size() + npieces - 1) / std::max(npieces, 1);
  for (size_t off = 0; off < body.size(); off += chunk) m.pieces.push_back(body.substr(off, chunk));
  return m;
}

void* cookie(int n) { return reinterpret_cast<void*>(uintptr_t(n) + 1); }

void expect_same(const recovered_message& r, const test_msg& m) {
  EXPECT_EQ(r.meta.queue_id, m.meta.queue_id);
  EXPECT_EQ(r.meta.received_ms, m.meta.received_ms);
  EXPECT_EQ(r.meta.mail_from, m.meta.mail_from);
  EXPECT_EQ(r.meta.rcpts, m.meta.rcpts);
  EXPECT_EQ(r.meta.body_8bitmime, m.meta.body_8bitmime);
  EXPECT_EQ(r.meta.tls, m.meta.tls);
  EXPECT_EQ(r.length, m.bytes().size());
  EXPECT_EQ(read_message(r), m.bytes());
}

std::vector<std::string> ids_of(const recovered_set& rs) {
  std::vector<std::string> v;
  for (const auto& m : rs.messages) v.push_back(m.meta.queue_id);
  return v;
}

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

void spit(const std::string& path, std::string_view data) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(data.data(), std::streamsize(data.size()));
}

std::vector<std::string> segment_files(const std::string& dir) {
  std::vector<std::string> v;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().filename().string().starts_with("seg-")) v.push_back(e.path().string());
  std::sort(v.begin(), v.end());
  return v;
}

class spool : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_FALSE(_state.empty()) << "mkdtemp failed"; }
  sr::test::temp_dir _dir{"sr-spool-test"};   // removed with its contents after the test

  std::unique_ptr<partition> open(recovered_set* rs = nullptr,
                                  uint64_t limit = default_segment_limit, unsigned shard = 0) {
    auto r = partition::open(_state, shard, rs, limit);
    EXPECT_TRUE(r.ok()) << r.err();
    return r.ok() ? std::move(r.value()) : nullptr;
  }

  // Stage `msgs` as one batch, write it and expect every message durable.
  void commit(partition& p, std::vector<test_msg*> msgs) {
    for (size_t i = 0; i < msgs.size(); ++i) ASSERT_TRUE(p.stage(msgs[i]->meta, msgs[i]->data(), cookie(int(i))));
    partition::outcome_list out;
    ASSERT_TRUE(p.flush(out));
    ASSERT_EQ(out.size(), msgs.size());
    for (size_t i = 0; i < msgs.size(); ++i) {
      EXPECT_EQ(out[i].first, cookie(int(i)));
      EXPECT_TRUE(out[i].second);
    }
  }

  std::string _state = _dir.path().string();
};

TEST_F(spool, round_trip_with_multi_piece_bodies) {
  std::vector<test_msg> msgs;
  {
    auto p = open();
    ASSERT_TRUE(p);
    for (int i = 0; i < 6; ++i) msgs.push_back(make_msg(*p, i, 50 + 97 * i, 1 + i % 4));
    commit(*p, {&msgs[0], &msgs[1], &msgs[2]});
    commit(*p, {&msgs[3], &msgs[4], &msgs[5]});
  }
  recovered_set rs;
  auto p = open(&rs);
  ASSERT_TRUE(p);
  EXPECT_EQ(rs.discarded_bytes, 0u);
  ASSERT_EQ(rs.messages.size(), 6u);
  for (int i = 0; i < 6; ++i) {
    expect_same(rs.messages[i], msgs[i]);
    EXPECT_TRUE(rs.messages[i].done_rcpts.empty());
    EXPECT_EQ(rs.messages[i].shard, 0u);
  }
  p.reset();
  auto listed = partition::list(_state);
  ASSERT_TRUE(listed.ok()) << listed.err();
  EXPECT_EQ(ids_of(*listed), ids_of(rs));
}

TEST_F(spool, batch_points_at_caller_buffers_without_copying) {
  auto p = open();
  ASSERT_TRUE(p);
  test_msg m = make_msg(*p, 1, 3000, 4);
  auto data = m.data();
  ASSERT_TRUE(p->stage(m.meta, data, cookie(1)));
  batch* b = p->take_batch();
  ASSERT_NE(b, nullptr);
  std::set<const void*> bases;
  uint64_t total = 0;
  for (const auto& piece : b->pieces)
    for (int i = 0; i < piece.iovcnt; ++i) {
      bases.insert(piece.iov[i].iov_base);
      total += piece.iov[i].iov_len;
    }
  EXPECT_EQ(total, b->size);
  for (const iovec& v : data) EXPECT_TRUE(bases.contains(v.iov_base)) << "body piece was copied";
  auto [w, f] = partition::write_and_sync(b);
  partition::outcome_list out;
  p->complete(b, w, f, out);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_TRUE(out[0].second);
}

TEST_F(spool, staging_continues_while_a_batch_is_in_flight) {
  auto p = open();
  ASSERT_TRUE(p);
  test_msg m1 = make_msg(*p, 1), m2 = make_msg(*p, 2);
  ASSERT_TRUE(p->stage(m1.meta, m1.data(), cookie(1)));
  batch* b1 = p->take_batch();
  ASSERT_NE(b1, nullptr);
  EXPECT_TRUE(p->in_flight());
  ASSERT_TRUE(p->stage(m2.meta, m2.data(), cookie(2)));
  EXPECT_EQ(p->take_batch(), nullptr) << "only one batch may be in flight";
  auto [w1, f1] = partition::write_and_sync(b1);
  uint64_t end1 = b1->offset + b1->size;
  partition::outcome_list out;
  p->complete(b1, w1, f1, out);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0], std::make_pair(cookie(1), true));
  batch* b2 = p->take_batch();
  ASSERT_NE(b2, nullptr);
  EXPECT_EQ(b2->offset, end1);
  auto [w2, f2] = partition::write_and_sync(b2);
  p->complete(b2, w2, f2, out);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0], std::make_pair(cookie(2), true));
  EXPECT_EQ(p->take_batch(), nullptr) << "nothing staged";
}

TEST_F(spool, torn_tail_is_discarded_at_every_byte_offset) {
  std::vector<test_msg> msgs;
  std::string seg_path, content;
  uint64_t last_start = 0;
  {
    auto p = open();
    ASSERT_TRUE(p);
    for (int i = 0; i < 3; ++i) msgs.push_back(make_msg(*p, i + 1, 40, 2, {"r@x.example"}));
    msgs[2].pieces = {"Received: x\r\n", "\r\nhi\r\n"};  // a short last record: fewer cuts
    commit(*p, {&msgs[0], &msgs[1]});
    seg_path = p->active_segment();
    last_start = fs::file_size(seg_path);
    commit(*p, {&msgs[2]});
  }
  content = slurp(seg_path);
  ASSERT_GT(content.size(), last_start);
  const std::string part_dir = partition::partition_dir(_state, 0);
  sr::set_log_level(sr::log_level::error);  // one warning per cut is noise here
  for (uint64_t cut = last_start; cut < content.size(); ++cut) {
    for (const auto& f : segment_files(part_dir)) fs::remove(f);
    spit(seg_path, std::string_view(content).substr(0, cut));
    recovered_set rs;
    auto p = open(&rs);
    ASSERT_TRUE(p);
    ASSERT_EQ(rs.messages.size(), 2u) << "cut at " << cut;
    EXPECT_EQ(rs.messages[0].meta.queue_id, msgs[0].meta.queue_id);
    EXPECT_EQ(rs.messages[1].meta.queue_id, msgs[1].meta.queue_id);
    EXPECT_EQ(read_message(rs.messages[1]), msgs[1].bytes());
    EXPECT_EQ(rs.discarded_bytes, cut - last_start) << "cut at " << cut;
    EXPECT_EQ(fs::file_size(seg_path), last_start) << "torn tail not truncated, cut " << cut;
    EXPECT_NE(p->active_segment(), seg_path) << "appends must go to a fresh segment";
    if (cut == last_start + (content.size() - last_start) / 2) {
      // New messages after a repair are recovered along with the old ones.
      test_msg m4 = make_msg(*p, 4);
      commit(*p, {&m4});
      p.reset();
      recovered_set rs2;
      auto p2 = open(&rs2);
      ASSERT_TRUE(p2);
      EXPECT_EQ(rs2.discarded_bytes, 0u);
      EXPECT_EQ(ids_of(rs2), (std::vector<std::string>{msgs[0].meta.queue_id,
                                                       msgs[1].meta.queue_id, m4.meta.queue_id}));
    }
  }
  sr::set_log_level(sr::log_level::info);
}

TEST_F(spool, corrupted_crc_costs_that_record_only) {
  std::vector<test_msg> msgs;
  std::string seg;
  {
    auto p = open();
    ASSERT_TRUE(p);
    for (int i = 0; i < 3; ++i) msgs.push_back(make_msg(*p, i + 1, 200));
    commit(*p, {&msgs[0], &msgs[1], &msgs[2]});
    seg = p->active_segment();
  }
  auto before = partition::list(_state);
  ASSERT_TRUE(before.ok());
  ASSERT_EQ(before->messages.size(), 3u);
  const recovered_message& m1 = before->messages[0];
  const recovered_message& m2 = before->messages[1];
  const uint64_t size = fs::file_size(seg);
  const uint64_t m2_record = m2.offset + m2.length - (m1.offset + m1.length);

  // Flip one bit in the middle of message 2's body.
  std::string content = slurp(seg);
  content[m2.offset + m2.length / 2] ^= 0x04;
  spit(seg, content);

  auto listed = partition::list(_state);  // read-only: reports, never repairs
  ASSERT_TRUE(listed.ok());
  EXPECT_EQ(ids_of(*listed), (std::vector<std::string>{msgs[0].meta.queue_id, msgs[2].meta.queue_id}));
  EXPECT_EQ(listed->discarded_bytes, m2_record);
  EXPECT_EQ(listed->records_skipped, 1u);
  EXPECT_EQ(fs::file_size(seg), size);

  recovered_set rs;
  auto p = open(&rs);
  ASSERT_TRUE(p);
  EXPECT_EQ(ids_of(rs), (std::vector<std::string>{msgs[0].meta.queue_id, msgs[2].meta.queue_id}));
  EXPECT_EQ(rs.discarded_bytes, m2_record);
  EXPECT_EQ(fs::file_size(seg), size) << "records after the bad one must not be cut";
  expect_same(rs.messages[0], msgs[0]);
  expect_same(rs.messages[1], msgs[2]);
}

TEST_F(spool, a_flipped_byte_mid_segment_of_100_messages_loses_one) {
  std::vector<test_msg> msgs;
  std::string seg;
  {
    auto p = open();
    ASSERT_TRUE(p);
    for (int i = 0; i < 100; ++i) msgs.push_back(make_msg(*p, i + 1, 300 + 7 * i, 2, {"r@x.example"}));
    // Acknowledged in batches of 10, as group commit would.
    for (int b = 0; b < 10; ++b) {
      std::vector<test_msg*> batch;
      for (int i = 0; i < 10; ++i) batch.push_back(&msgs[size_t(b * 10 + i)]);
      commit(*p, batch);
    }
    seg = p->active_segment();
  }
  const uint64_t size = fs::file_size(seg);
  std::string content = slurp(seg);
  content[size / 2] ^= 0x20;  // lands inside one record: header, envelope or body
  spit(seg, content);

  sr::set_log_level(sr::log_level::error);
  recovered_set rs;
  auto p = open(&rs);
  sr::set_log_level(sr::log_level::info);
  ASSERT_TRUE(p);
  ASSERT_EQ(rs.messages.size(), 99u);
  EXPECT_EQ(rs.records_skipped, 1u);
  EXPECT_EQ(fs::file_size(seg), size);
  std::set<std::string> back;
  for (const auto& m : rs.messages) back.insert(m.meta.queue_id);
  int lost = -1;
  for (int i = 0; i < 100; ++i)
    if (!back.contains(msgs[size_t(i)].meta.queue_id)) lost = i;
  ASSERT_GE(lost, 0);
  for (const auto& m : rs.messages) {
    for (const auto& t : msgs) {
      if (t.meta.queue_id == m.meta.queue_id) EXPECT_EQ(read_message(m), t.bytes());
    }
  }

  // Appending after the repair must leave the good records after the bad one in place.
  test_msg extra = make_msg(*p, 101);
  commit(*p, {&extra});
  EXPECT_NE(p->active_segment(), seg);
  p.reset();
  recovered_set rs2;
  sr::set_log_level(sr::log_level::error);
  auto p2 = open(&rs2);
  sr::set_log_level(sr::log_level::info);
  ASSERT_TRUE(p2);
  EXPECT_EQ(rs2.messages.size(), 100u);  // the 99 and the new one
  EXPECT_EQ(rs2.messages.back().meta.queue_id, extra.meta.queue_id);
  EXPECT_EQ(read_message(rs2.messages.back()), extra.bytes());
}

TEST_F(spool, garbage_header_after_records_is_discarded) {
  test_msg m;
  std::string seg;
  {
    auto p = open();
    ASSERT_TRUE(p);
    m = make_msg(*p, 1);
    commit(*p, {&m});
    seg = p->active_segment();
  }
  const uint64_t good = fs::file_size(seg);
  std::string content = slurp(seg) + std::string(4096, '\0');  // preallocated, never written
  spit(seg, content);
  recovered_set rs;
  auto p = open(&rs);
  ASSERT_TRUE(p);
  EXPECT_EQ(ids_of(rs), std::vector<std::string>{m.meta.queue_id});
  EXPECT_EQ(rs.discarded_bytes, 4096u);
  EXPECT_EQ(fs::file_size(seg), good);
}

TEST_F(spool, failed_write_or_fsync_fails_the_whole_batch) {
  std::vector<test_msg> m;
  std::string first_seg;
  {
    auto p = open();
    ASSERT_TRUE(p);
    for (int i = 0; i < 9; ++i) m.push_back(make_msg(*p, i, 300));
    commit(*p, {&m[1]});
    first_seg = p->active_segment();
    const uint64_t good = fs::file_size(first_seg);
    partition::outcome_list out;

    // 1. The write fails outright.
    ASSERT_TRUE(p->stage(m[2].meta, m[2].data(), cookie(2)));
    ASSERT_TRUE(p->stage(m[3].meta, m[3].data(), cookie(3)));
    batch* b = p->take_batch();
    ASSERT_NE(b, nullptr);
    p->complete(b, -ENOSPC, 0, out);
    EXPECT_EQ(out, (partition::outcome_list{{cookie(2), false}, {cookie(3), false}}));
    EXPECT_EQ(fs::file_size(first_seg), good);

    // 2. A short write leaves half a batch on disk: it must be cut off.
    ASSERT_TRUE(p->stage(m[4].meta, m[4].data(), cookie(4)));
    ASSERT_TRUE(p->stage(m[5].meta, m[5].data(), cookie(5)));
    b = p->take_batch();
    ASSERT_NE(b, nullptr);
    EXPECT_EQ(b->offset, good);
    uint64_t half = b->size / 2, written = 0;
    for (const auto& piece : b->pieces)
      for (int i = 0; i < piece.iovcnt && written < half; ++i) {
        size_t n = std::min<uint64_t>(piece.iov[i].iov_len, half - written);
        ASSERT_EQ(::pwrite(b->fd, piece.iov[i].iov_base, n, off_t(b->offset + written)), ssize_t(n));
        written += n;
      }
    ASSERT_EQ(fs::file_size(first_seg), good + half);
    p->complete(b, int64_t(half), 0, out);
    EXPECT_EQ(out, (partition::outcome_list{{cookie(4), false}, {cookie(5), false}}));
    EXPECT_EQ(fs::file_size(first_seg), good) << "partial batch not truncated";

    // The next batch lands right after the last good record.
    ASSERT_TRUE(p->stage(m[6].meta, m[6].data(), cookie(6)));
    b = p->take_batch();
    ASSERT_NE(b, nullptr);
    EXPECT_EQ(b->offset, good);
    auto [w, f] = partition::write_and_sync(b);
    p->complete(b, w, f, out);
    EXPECT_EQ(out, (partition::outcome_list{{cookie(6), true}}));
    const uint64_t good2 = fs::file_size(first_seg);

    // 3. The data is written but fdatasync fails: fail, cut, and move to a new segment.
    ASSERT_TRUE(p->stage(m[7].meta, m[7].data(), cookie(7)));
    b = p->take_batch();
    ASSERT_NE(b, nullptr);
    auto [w7, f7] = partition::write_and_sync(b);
    ASSERT_EQ(w7, int64_t(b->size));
    ASSERT_EQ(f7, 0);
    p->complete(b, w7, -EIO, out);
    EXPECT_EQ(out, (partition::outcome_list{{cookie(7), false}}));
    EXPECT_EQ(fs::file_size(first_seg), good2);
    commit(*p, {&m[8]});
    EXPECT_NE(p->active_segment(), first_seg) << "no roll after an fsync error";
  }
  recovered_set rs;
  auto p = open(&rs);
  ASSERT_TRUE(p);
  EXPECT_EQ(rs.discarded_bytes, 0u);
  EXPECT_EQ(ids_of(rs), (std::vector<std::string>{m[1].meta.queue_id, m[6].meta.queue_id,
                                                   m[8].meta.queue_id}));
  for (const auto& r : rs.messages)
    for (int i : {1, 6, 8})
      if (r.meta.queue_id == m[i].meta.queue_id) expect_same(r, m[i]);
}

TEST_F(spool, done_records_remove_messages_and_finished_segments) {
  test_msg m1, m2, m3;
  std::string seg1;
  {
    auto p = open();
    ASSERT_TRUE(p);
    m1 = make_msg(*p, 1);
    m2 = make_msg(*p, 2);
    m3 = make_msg(*p, 3, 100, 2, {"x@a.example", "y@b.example", "z@c.example"});
    commit(*p, {&m1, &m2, &m3});
    seg1 = p->active_segment();
    p->mark_done(m2.meta.queue_id);
    const uint32_t some[] = {0, 2};
    p->mark_done(m3.meta.queue_id, some);
    partition::outcome_list out;
    ASSERT_TRUE(p->flush(out));
    EXPECT_TRUE(out.empty()) << "DONE records without cookies report nothing";
  }
  {
    recovered_set rs;
    auto p = open(&rs);
    ASSERT_TRUE(p);
    ASSERT_EQ(ids_of(rs), (std::vector<std::string>{m1.meta.queue_id, m3.meta.queue_id}));
    EXPECT_TRUE(rs.messages[0].done_rcpts.empty());
    EXPECT_EQ(rs.messages[1].done_rcpts, (std::vector<uint32_t>{0, 2}));
    expect_same(rs.messages[1], m3);

    const uint32_t rest[] = {1};
    p->mark_done(m3.meta.queue_id, rest);
    p->mark_done(m1.meta.queue_id, {}, cookie(9));
    partition::outcome_list out;
    ASSERT_TRUE(p->flush(out));
    EXPECT_EQ(out, (partition::outcome_list{{cookie(9), true}}));
    EXPECT_FALSE(fs::exists(seg1)) << "a segment with every message done is deleted at once";
  }
  recovered_set rs;
  auto p = open(&rs);
  ASSERT_TRUE(p);
  EXPECT_TRUE(rs.messages.empty());
  EXPECT_EQ(rs.segments_removed, 1u) << "the segment holding only DONE records";
  EXPECT_EQ(segment_files(p->dir()), std::vector<std::string>{p->active_segment()});
}

TEST_F(spool, done_records_outlive_segments_they_finish_messages_in) {
  // Segment limit 1: every batch rolls to a new segment.
  test_msg m1, m2, m3, m4;
  std::string s1, s2, s3, s4;
  {
    auto p = open(nullptr, 1);
    ASSERT_TRUE(p);
    m1 = make_msg(*p, 1);
    m2 = make_msg(*p, 2);
    m3 = make_msg(*p, 3);
    m4 = make_msg(*p, 4);
    commit(*p, {&m1, &m2});
    s1 = p->active_segment();
    commit(*p, {&m3});
    s2 = p->active_segment();
    p->mark_done(m2.meta.queue_id);
    p->mark_done(m3.meta.queue_id);
    partition::outcome_list out;
    ASSERT_TRUE(p->flush(out));
    s3 = p->active_segment();
    EXPECT_FALSE(fs::exists(s2)) << "every message of s2 is done";
    commit(*p, {&m4});
    s4 = p->active_segment();
    EXPECT_NE(s3, s4);
    EXPECT_TRUE(fs::exists(s1));
    EXPECT_TRUE(fs::exists(s3)) << "s3's DONE for m2 must stay while s1 holds m2";
  }
  recovered_set rs;
  auto p = open(&rs, 1);
  ASSERT_TRUE(p);
  EXPECT_EQ(ids_of(rs), (std::vector<std::string>{m1.meta.queue_id, m4.meta.queue_id}));
  EXPECT_TRUE(fs::exists(s3));
  p->mark_done(m1.meta.queue_id);
  partition::outcome_list out;
  ASSERT_TRUE(p->flush(out));
  EXPECT_FALSE(fs::exists(s1));
  EXPECT_FALSE(fs::exists(s3)) << "its DONE records finished only messages of deleted segments";
  EXPECT_TRUE(fs::exists(s4));
}

TEST_F(spool, queue_ids_are_unique_and_continue_after_restart) {
  std::set<std::string> all;
  const uint64_t now = uint64_t(::time(nullptr));
  for (unsigned shard : {0u, 3u}) {
    auto p = open(nullptr, default_segment_limit, shard);
    ASSERT_TRUE(p);
    std::string prev;
    for (int i = 0; i < 2000; ++i) {
      std::string id = p->next_queue_id();
      ASSERT_EQ(id.size(), 16u);
      for (char c : id) ASSERT_TRUE((c >= '0' && c <= '9') || (c >= 'A' && c <= 'F')) << id;
      uint64_t sec = std::stoull(id.substr(0, 8), nullptr, 16);
      EXPECT_LE(sec, now + 5);
      EXPECT_GE(sec, now);
      EXPECT_EQ(std::stoul(id.substr(8, 2), nullptr, 16), shard);
      EXPECT_GT(id, prev) << "ids of a shard increase";
      EXPECT_TRUE(all.insert(id).second) << "duplicate " << id;
      prev = id;
    }
  }

  // A message carrying an id from "the future" (clock stepped back since): the counter
  // must continue past it after a restart, in that same second.
  char future[17];
  std::snprintf(future, sizeof future, "%08llX%02X%06X", (unsigned long long)(now + 1000), 0u,
                0x123u);
  {
    auto p = open();
    ASSERT_TRUE(p);
    test_msg m = make_msg(*p, 1);
    m.meta.queue_id = future;
    commit(*p, {&m});
  }
  auto p = open();
  ASSERT_TRUE(p);
  std::string next = p->next_queue_id();
  EXPECT_EQ(next.substr(0, 10), std::string(future).substr(0, 10));
  EXPECT_EQ(next.substr(10), "000124");
  EXPECT_GT(p->next_queue_id(), next);
}

TEST_F(spool, ids_after_restart_in_the_same_second_exceed_recovered_ones) {
  std::string last;
  {
    auto p = open();
    ASSERT_TRUE(p);
    std::vector<test_msg> v;
    for (int i = 0; i < 5; ++i) v.push_back(make_msg(*p, i));
    for (auto& m : v) commit(*p, {&m});
    last = v.back().meta.queue_id;
  }
  auto p = open();
  ASSERT_TRUE(p);
  EXPECT_GT(p->next_queue_id(), last);
}

TEST_F(spool, segments_roll_at_the_size_limit) {
  std::vector<test_msg> msgs;
  std::string dir;
  size_t segs_before = 0;
  {
    auto p = open(nullptr, 2048);
    ASSERT_TRUE(p);
    dir = p->dir();
    for (int i = 0; i < 30; ++i) msgs.push_back(make_msg(*p, i, 500, 2));
    for (int i = 0; i < 30; i += 3) commit(*p, {&msgs[i], &msgs[i + 1], &msgs[i + 2]});
    segs_before = segment_files(dir).size();
    EXPECT_GE(segs_before, 5u);
    EXPECT_EQ(segs_before, p->segment_count());
    for (const auto& s : segment_files(dir)) EXPECT_LT(fs::file_size(s), 2048u + 3 * 1024);
  }
  recovered_set rs;
  auto p = open(&rs, 2048);
  ASSERT_TRUE(p);
  ASSERT_EQ(rs.messages.size(), 30u);
  for (int i = 0; i < 30; ++i) expect_same(rs.messages[i], msgs[i]);
  for (int i = 0; i < 15; ++i) p->mark_done(msgs[i].meta.queue_id);
  partition::outcome_list out;
  ASSERT_TRUE(p->flush(out));
  EXPECT_LT(segment_files(dir).size(), segs_before) << "finished segments deleted";
  p.reset();
  recovered_set rs2;
  p = open(&rs2, 2048);
  ASSERT_TRUE(p);
  ASSERT_EQ(rs2.messages.size(), 15u);
  for (int i = 0; i < 15; ++i) expect_same(rs2.messages[i], msgs[15 + i]);
}

TEST_F(spool, batches_beyond_iov_max_are_split_into_pieces) {
  test_msg m;
  {
    auto p = open();
    ASSERT_TRUE(p);
    m = make_msg(*p, 1, 10, 1);
    m.pieces.resize(1);  // keep the Received header, then 2.5 * IOV_MAX small pieces
    for (int i = 0; i < IOV_MAX * 5 / 2; ++i) m.pieces.push_back("piece " + std::to_string(i) + "\r\n");
    ASSERT_TRUE(p->stage(m.meta, m.data(), cookie(1)));
    batch* b = p->take_batch();
    ASSERT_NE(b, nullptr);
    EXPECT_GE(b->pieces.size(), 3u);
    uint64_t off = b->offset;
    for (const auto& piece : b->pieces) {
      EXPECT_LE(piece.iovcnt, IOV_MAX);
      EXPECT_EQ(piece.offset, off);
      off += piece.size;
    }
    EXPECT_EQ(off, b->offset + b->size);
    auto [w, f] = partition::write_and_sync(b);
    partition::outcome_list out;
    p->complete(b, w, f, out);
    ASSERT_EQ(out.size(), 1u);
    EXPECT_TRUE(out[0].second);
  }
  recovered_set rs;
  auto p = open(&rs);
  ASSERT_EQ(rs.messages.size(), 1u);
  expect_same(rs.messages[0], m);
}

TEST_F(spool, a_partition_is_opened_by_one_owner_at_a_time) {
  auto p = open();
  ASSERT_TRUE(p);
  auto again = partition::open(_state, 0, nullptr);
  EXPECT_FALSE(again.ok());
  auto other = partition::open(_state, 1, nullptr);
  EXPECT_TRUE(other.ok()) << other.err();
}

TEST_F(spool, real_full_disk_fails_only_the_batch_that_did_not_fit) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to mount a size-limited tmpfs";
  const std::string mnt = _state + "/mnt";
  ASSERT_TRUE(fs::create_directory(mnt));
  if (::mount("tmpfs", mnt.c_str(), "tmpfs", 0, "size=256k") != 0)
    GTEST_SKIP() << "cannot mount tmpfs (size=256k): " << std::strerror(errno);
  struct unmount_at_exit {
    std::string path;
    ~unmount_at_exit() { ::umount2(path.c_str(), MNT_DETACH); }
  } unmount{mnt};

  std::vector<test_msg> accepted, failed;
  {
    auto r = partition::open(mnt, 0, nullptr);
    ASSERT_TRUE(r.ok()) << r.err();
    auto& p = *r.value();
    for (int round = 0; round < 100 && failed.empty(); ++round) {
      test_msg a = make_msg(p, 2 * round, 9000, 3), b = make_msg(p, 2 * round + 1, 9000, 3);
      ASSERT_TRUE(p.stage(a.meta, a.data(), cookie(0)));
      ASSERT_TRUE(p.stage(b.meta, b.data(), cookie(1)));
      batch* bt = p.take_batch();
      ASSERT_NE(bt, nullptr);
      auto [w, f] = partition::write_and_sync(bt);
      partition::outcome_list out;
      p.complete(bt, w, f, out);
      ASSERT_EQ(out.size(), 2u);
      EXPECT_EQ(out[0].second, out[1].second) << "a batch succeeds or fails as a whole";
      if (out[0].second) {
        accepted.push_back(std::move(a));
        accepted.push_back(std::move(b));
      } else {
        EXPECT_EQ(w, -ENOSPC);
        failed.push_back(std::move(a));
        failed.push_back(std::move(b));
      }
    }
  }
  ASSERT_FALSE(failed.empty()) << "256 KiB never filled up";
  ASSERT_FALSE(accepted.empty());

  auto listed = partition::list(mnt);
  ASSERT_TRUE(listed.ok()) << listed.err();
  EXPECT_EQ(listed->discarded_bytes, 0u) << "the failed batch was cut off";
  recovered_set rs;
  auto r = partition::open(mnt, 0, &rs);
  ASSERT_TRUE(r.ok()) << r.err();
  ASSERT_EQ(rs.messages.size(), accepted.size());
  for (size_t i = 0; i < accepted.size(); ++i) expect_same(rs.messages[i], accepted[i]);
  for (const auto& f : failed)
    for (const auto& m : rs.messages) EXPECT_NE(m.meta.queue_id, f.meta.queue_id);
}

}  // namespace

// The delivery queue reads a message back from where complete() says it landed.
TEST_F(spool, locations_of_a_completed_batch_point_at_the_message_bytes) {
  auto p = open();
  ASSERT_TRUE(p);
  std::vector<test_msg> msgs;
  for (int i = 0; i < 3; ++i) msgs.push_back(make_msg(*p, i, 300 + 50 * i));
  p->mark_done(msgs[0].meta.queue_id);  // a DONE record in between shifts later offsets
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(p->stage(msgs[i].meta, msgs[i].data(), cookie(i)));
  partition::outcome_list out;
  ASSERT_TRUE(p->flush(out));
  const auto& loc = p->last_locations();
  ASSERT_EQ(loc.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(loc[i].cookie, cookie(i));
    EXPECT_EQ(loc[i].segment, p->active_segment());
    recovered_message r;
    r.segment = loc[i].segment;
    r.offset = loc[i].offset;
    r.length = loc[i].length;
    EXPECT_EQ(read_message(r), msgs[i].bytes());
  }
}

namespace {

void put_le(std::string& o, uint64_t v, int n) {
  for (int i = 0; i < n; ++i) o.push_back(char((v >> (8 * i)) & 0xFF));
}

// A record exactly as a v1 build wrote it (header byte 6 = 0, v1 envelope), byte by byte,
// independent of today's encoder.
std::string v1_message_record(const std::string& id, const std::string& from,
                              const std::vector<std::string>& rcpts, const std::string& body,
                              bool eight_bit) {
  std::string payload;
  put_le(payload, id.size(), 1);
  payload += id;
  put_le(payload, 1'700'000'000'123ull, 8);
  put_le(payload, eight_bit ? 1 : 0, 1);
  put_le(payload, from.size(), 2);
  payload += from;
  put_le(payload, rcpts.size(), 4);
  for (const auto& r : rcpts) {
    put_le(payload, r.size(), 2);
    payload += r;
  }
  payload += body;
  std::string rec = "SRP1";
  put_le(rec, 1, 1);  // MESSAGE
  put_le(rec, 0, 1);  // flags
  put_le(rec, 0, 2);  // reserved (v1): the version byte reads 0
  put_le(rec, payload.size(), 4);
  put_le(rec, sr::spool::crc32c(payload.data(), payload.size()), 4);
  return rec + payload;
}

std::string v1_done_record(const std::string& id, std::vector<uint32_t> idx) {
  std::string payload;
  put_le(payload, id.size(), 1);
  payload += id;
  put_le(payload, idx.empty() ? 0 : 1, 1);
  put_le(payload, idx.size(), 4);
  for (uint32_t i : idx) put_le(payload, i, 4);
  std::string rec = "SRP1";
  put_le(rec, 2, 1);
  put_le(rec, 0, 3);
  put_le(rec, payload.size(), 4);
  put_le(rec, sr::spool::crc32c(payload.data(), payload.size()), 4);
  return rec + payload;
}

}  // namespace

TEST_F(spool, v1_segments_are_recovered) {
  const std::string dir = partition::partition_dir(_state, 0);
  fs::create_directories(dir);
  const std::string body1 = "Received: by old\r\nSubject: one\r\n\r\nhello\r\n";
  const std::string body2 = "Received: by old\r\nSubject: two\r\n\r\nworld\r\n";
  std::string seg = v1_message_record("6000000000000001", "a@old.example",
                                      {"x@one.example", "y@two.example"}, body1, true) +
                    v1_message_record("6000000000000002", "", {"z@three.example"}, body2, false) +
                    v1_done_record("6000000000000001", {0});
  spit(dir + "/seg-0000000000000001.log", seg);

  recovered_set rs;
  auto p = open(&rs);
  ASSERT_TRUE(p);
  EXPECT_EQ(rs.discarded_bytes, 0u);
  ASSERT_EQ(rs.messages.size(), 2u);
  const auto& m1 = rs.messages[0];
  EXPECT_EQ(m1.meta.queue_id, "6000000000000001");
  EXPECT_EQ(m1.meta.mail_from, "a@old.example");
  EXPECT_EQ(m1.meta.rcpts, (std::vector<std::string>{"x@one.example", "y@two.example"}));
  EXPECT_EQ(m1.done_rcpts, std::vector<uint32_t>{0});
  EXPECT_TRUE(m1.meta.body_8bitmime);
  EXPECT_EQ(m1.meta.kind, message_kind::message);
  EXPECT_EQ(m1.meta.attempts, (std::vector<uint32_t>{0, 0}));
  EXPECT_EQ(read_message(m1), body1);
  EXPECT_EQ(rs.messages[1].meta.mail_from, "");
  EXPECT_EQ(read_message(rs.messages[1]), body2);

  // A v2 build appends v2 records (and marks v1 messages done) in a fresh segment.
  test_msg m3 = make_msg(*p, 3);
  commit(*p, {&m3});
  p->mark_done("6000000000000002");
  partition::outcome_list out;
  ASSERT_TRUE(p->flush(out));
  p.reset();
  recovered_set rs2;
  auto p2 = open(&rs2);
  ASSERT_TRUE(p2);
  EXPECT_EQ(ids_of(rs2), (std::vector<std::string>{"6000000000000001", m3.meta.queue_id}));
}

TEST_F(spool, v2_fields_and_attempt_counts_survive_a_restart) {
  test_msg m;
  {
    auto p = open();
    ASSERT_TRUE(p);
    m = make_msg(*p, 1, 100, 2, {"a@one.example", "b@two.example", "c@three.example"});
    m.meta.kind = message_kind::dsn;
    m.meta.requiretls = true;
    m.meta.tls_required_no = true;
    m.meta.auth_user = "alice";
    m.meta.msg_id = "abc.123@client.example";
    commit(*p, {&m});
    std::pair<uint32_t, uint32_t> first[] = {{0, 1}, {1, 1}, {2, 1}};
    p->record_attempts(m.meta.queue_id, first);
    p->mark_done(m.meta.queue_id, std::vector<uint32_t>{1});
    std::pair<uint32_t, uint32_t> second[] = {{0, 2}, {2, 2}};
    p->record_attempts(m.meta.queue_id, second);
    partition::outcome_list out;
    ASSERT_TRUE(p->flush(out));
  }
  recovered_set rs;
  auto p = open(&rs);
  ASSERT_TRUE(p);
  ASSERT_EQ(rs.messages.size(), 1u);
  const auto& r = rs.messages[0];
  expect_same(r, m);
  EXPECT_EQ(r.meta.kind, message_kind::dsn);
  EXPECT_TRUE(r.meta.requiretls);
  EXPECT_TRUE(r.meta.tls_required_no);
  EXPECT_EQ(r.meta.auth_user, "alice");
  EXPECT_EQ(r.meta.msg_id, "abc.123@client.example");
  EXPECT_EQ(r.meta.attempts, (std::vector<uint32_t>{2, 1, 2}));
  EXPECT_EQ(r.done_rcpts, std::vector<uint32_t>{1});
  EXPECT_STREQ(to_string(message_kind::escrow_notice), "escrow-notice");
  EXPECT_STREQ(to_string(message_kind::tlsrpt), "tlsrpt");
}

// sealrelay-queue hold/release (issue 13): HOLD records, the last one per recipient wins;
// a spool without them (every spool written before) recovers with nothing held.
TEST_F(spool, hold_records_survive_a_restart_and_the_last_one_wins) {
  test_msg m, n;
  {
    auto p = open();
    ASSERT_TRUE(p);
    m = make_msg(*p, 1, 100, 2, {"a@one.example", "b@two.example", "c@two.example"});
    n = make_msg(*p, 2, 100, 2, {"d@one.example"});
    commit(*p, {&m, &n});
    p->record_hold(m.meta.queue_id, std::vector<uint32_t>{1, 2}, true);
    p->record_hold(m.meta.queue_id, std::vector<uint32_t>{0}, true);
    p->record_hold(m.meta.queue_id, std::vector<uint32_t>{0}, false);  // released again
    partition::outcome_list out;
    ASSERT_TRUE(p->flush(out));
  }
  recovered_set rs;
  auto p = open(&rs);
  ASSERT_TRUE(p);
  ASSERT_EQ(rs.messages.size(), 2u);
  EXPECT_EQ(rs.messages[0].meta.held, (std::vector<uint8_t>{0, 1, 1}));
  EXPECT_TRUE(rs.messages[1].meta.held.empty());  // never held
  EXPECT_EQ(rs.discarded_bytes, 0u);
}

TEST_F(spool, attempts_records_keep_their_segment_until_the_message_is_done) {
  test_msg m;
  std::string first_seg;
  {
    // A tiny segment limit: the message, and then each ATTEMPTS record, land in
    // segments of their own.
    auto p = open(nullptr, 1);
    ASSERT_TRUE(p);
    m = make_msg(*p, 1, 100, 1, {"a@one.example"});
    commit(*p, {&m});
    first_seg = p->active_segment();
    for (uint32_t n = 1; n <= 3; ++n) {
      std::pair<uint32_t, uint32_t> c[] = {{0, n}};
      p->record_attempts(m.meta.queue_id, c);
      partition::outcome_list out;
      ASSERT_TRUE(p->flush(out));
      // A filler message finished at once, so segments roll and reclaim runs.
      test_msg f = make_msg(*p, 10 + int(n), 50, 1, {"f@x.example"});
      commit(*p, {&f});
      p->mark_done(f.meta.queue_id);
      ASSERT_TRUE(p->flush(out));
    }
  }
  recovered_set rs;
  auto p = open(&rs, 1);
  ASSERT_TRUE(p);
  ASSERT_EQ(rs.messages.size(), 1u);
  EXPECT_EQ(rs.messages[0].meta.attempts, std::vector<uint32_t>{3});
  EXPECT_TRUE(fs::exists(first_seg));
}

// Found by tests/fuzz/spool_fuzz: a record whose CRC is right but whose queue id is not 16
// upper-case hex digits is refused, because the id names the external body file (a "../"
// id would point recovery and delivery at any file); a writer cannot store one either.
TEST(spool_record, queue_id_must_be_upper_case_hex) {
  message_meta meta;
  meta.queue_id = "6B0AD79A00000001";
  meta.rcpts = {"bob@example.net"};
  ASSERT_TRUE(envelope_fits(meta));
  std::vector<std::byte> good;
  append_envelope(good, meta);
  message_meta back;
  size_t env_len = 0;
  EXPECT_TRUE(decode_envelope(good, back, env_len));
  for (std::string id : {"../../../etc/pa", "6b0ad79a00000001", "6B0AD79A0000000G"}) {
    if (id.size() < queue_id_len) id.resize(queue_id_len, '/');
    meta.queue_id = id;
    EXPECT_FALSE(envelope_fits(meta)) << id;
    std::vector<std::byte> bad;
    append_envelope(bad, meta);
    EXPECT_FALSE(decode_envelope(bad, back, env_len)) << id;
    std::vector<std::byte> done;
    append_done(done, id, {});
    done_record d;
    EXPECT_FALSE(decode_done(done, d)) << id;
    std::vector<std::byte> att;
    append_attempts(att, id, {});
    attempts_record a;
    EXPECT_FALSE(decode_attempts(att, a)) << id;
  }
}

// DONE and ATTEMPTS records in a batch that failed (disk full) are carried into the next
// batch: once a write succeeds the disk knows the message is finished and its attempt count,
// so a restart neither delivers it again nor forgets the count. (Before: they were dropped
// with the batch; tools/drill-faults found 293 of 405 delivered messages still queued on disk
// after a disk-full episode, to be delivered again at the next start.)
TEST_F(spool, done_and_attempts_records_of_a_failed_batch_are_written_with_the_next_one) {
  std::vector<test_msg> m;
  {
    auto p = open();
    ASSERT_TRUE(p);
    for (int i = 0; i < 3; ++i) m.push_back(make_msg(*p, i, 300));
    commit(*p, {&m[0], &m[1]});
    p->mark_done(m[0].meta.queue_id, {});
    const std::pair<uint32_t, uint32_t> three[] = {{0, 3}};
    p->record_attempts(m[1].meta.queue_id, three);
    ASSERT_TRUE(p->stage(m[2].meta, m[2].data(), cookie(2)));
    batch* b = p->take_batch();
    ASSERT_NE(b, nullptr);
    partition::outcome_list out;
    p->complete(b, -ENOSPC, 0, out);
    EXPECT_EQ(out, (partition::outcome_list{{cookie(2), false}}));  // the message's client hears it
    EXPECT_EQ(p->staged_messages(), 0u);
    EXPECT_EQ(p->staged_records(), 2u);
    // Room again: the carried records alone make the next batch, and no client is named twice.
    ASSERT_TRUE(p->flush(out));
    EXPECT_TRUE(out.empty());
  }
  recovered_set rs;
  auto p = open(&rs);
  ASSERT_TRUE(p);
  ASSERT_EQ(ids_of(rs), (std::vector<std::string>{m[1].meta.queue_id}));
  ASSERT_EQ(rs.messages[0].meta.attempts.size(), m[1].meta.rcpts.size());
  EXPECT_EQ(rs.messages[0].meta.attempts[0], 3u);
}
