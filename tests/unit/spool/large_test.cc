// Large messages in body files: spool::body_file on a real io_uring (appends, the record put
// in front of the body, the CRC combined without reading back), the partition's
// external-body records (stage, location, recovery), deletion after the last DONE, a
// failed batch, orphan body files, a missing body file (kept, not delivered, logged), and
// the record in the body file as the fallback sidecar checks it.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "sealrelay/core/shard.hh"
#include "sealrelay/spool/body_file.hh"
#include "sealrelay/spool/keyring.hh"
#include "sealrelay/spool/reader.hh"
#include "sealrelay/spool/partition.hh"
#include "sealrelay/spool/record.hh"
#include "spool/crc32c.hh"
#include "support/temp_dir.hh"

namespace fs = std::filesystem;
using namespace sr;
using namespace sr::spool;

namespace {

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

// A body with lines that start with dots and bytes of every value (8BITMIME).
std::string big_body(size_t n, int seed) {
  std::string b = "Subject: large " + std::to_string(seed) + "\r\n\r\n";
  for (size_t i = 0; b.size() < n; ++i) {
    b += (i % 7 == 0) ? ".dot line " : "line ";
    b += std::to_string(i * 31 + unsigned(seed));
    b += char(0x80 + i % 100);
    b += "\r\n";
  }
  b.resize(n);
  return b;
}

class large : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(_state.empty());
    core::shard::options o;
    o.entries = 64;
    _sh = std::make_unique<core::shard>(o);
    ASSERT_TRUE(_sh->init());
  }

  std::unique_ptr<partition> open(recovered_set* rs = nullptr) {
    auto r = partition::open(_state, 0, rs, default_segment_limit, _keys);
    EXPECT_TRUE(r.ok()) << r.err();
    return r.ok() ? std::move(r.value()) : nullptr;
  }

  // Drive the shard's ring by hand until `done` is set (shard::run() stops only once);
  // every wait is bounded (1 s, at most 50 of them).
  void run_until(const bool& done) {
    io_uring& ring = _sh->ring();
    for (int rounds = 0; !done && rounds < 50; ++rounds) {
      __kernel_timespec ts{.tv_sec = 1, .tv_nsec = 0};
      io_uring_cqe* cqe = nullptr;
      io_uring_submit_and_wait_timeout(&ring, &cqe, 1, &ts, nullptr);
      unsigned head, n = 0;
      io_uring_for_each_cqe(&ring, head, cqe) {
        ++n;
        if (cqe->user_data > core::mailbox_cqe)
          reinterpret_cast<core::completion*>(cqe->user_data)->on_complete(cqe->res, cqe->flags);
      }
      io_uring_cq_advance(&ring, n);
    }
  }

  // Stream `body` to a body file of `p` in pieces of `piece` bytes, finish it with `prefix`,
  // and return the meta to stage (external_body set). Asserts every step succeeded.
  message_meta write_large(partition& p, const std::string& prefix, const std::string& body,
                           size_t piece, std::unique_ptr<body_file>& file) {
    message_meta meta;
    meta.queue_id = p.next_queue_id();
    meta.received_ms = 1'700'000'000'123ull;
    meta.mail_from = "big@sender.example";
    meta.rcpts = {"a@one.example", "b@two.example"};
    meta.tls = true;
    meta.msg_id = "large.1@sender.example";
    auto f = body_file::create(*_sh, p.body_path(meta.queue_id),
                               body_file::reserve_for(meta.mail_from.size(), meta.rcpts, prefix.size()),
                               _keys);
    EXPECT_TRUE(f.ok()) << (f.ok() ? "" : f.err());
    if (!f.ok()) return meta;
    file = std::move(*f);
    for (size_t off = 0; off < body.size(); off += piece) {
      // Two iovecs per append: a split inside the piece must not matter.
      size_t n = std::min(piece, body.size() - off);
      iovec v[2] = {{const_cast<char*>(body.data() + off), n / 2},
                    {const_cast<char*>(body.data() + off + n / 2), n - n / 2}};
      bool done = false, ok = false;
      file->append(v, [&](bool r) {
        ok = r;
        done = true;
      });
      EXPECT_FALSE(done);  // never answered from inside append()
      run_until(done);
      EXPECT_TRUE(ok);
    }
    EXPECT_EQ(file->body_bytes(), body.size());
    iovec pv{const_cast<char*>(prefix.data()), prefix.size()};
    bool done = false, ok = false;
    file->finish(meta, {&pv, 1}, [&](bool r) {
      ok = r;
      done = true;
    });
    run_until(done);
    EXPECT_TRUE(ok);
    EXPECT_TRUE(meta.external_body);
    EXPECT_EQ(meta.body_length, prefix.size() + body.size());
    return meta;
  }

  std::shared_ptr<const keyring> _keys;  // sealed body files when it has a sealing key
  sr::test::temp_dir _dir{"sr-large-test"};
  std::string _state = _dir.path().string();
  std::unique_ptr<core::shard> _sh;
};

const std::string prefix = "Received: from client.example by relay.example with ESMTPS\r\n";

}  // namespace

TEST(crc32c_combine, equals_one_pass_at_many_splits) {
  std::string s = big_body(70000, 3);
  for (size_t cut : {size_t(0), size_t(1), size_t(7), size_t(4096), size_t(65537), s.size()}) {
    uint32_t a = crc32c(s.data(), cut), b = crc32c(s.data() + cut, s.size() - cut);
    EXPECT_EQ(crc32c_combine(a, b, s.size() - cut), crc32c(s.data(), s.size())) << cut;
  }
}

TEST(record_flags, external_body_only_on_v2_message_records) {
  record_header h;
  h.flags = record_flag_external_body;
  EXPECT_TRUE(header_plausible(h));
  h.version = format_v1;
  EXPECT_FALSE(header_plausible(h));
  h.version = format_v2;
  h.type = record_type::done;
  EXPECT_FALSE(header_plausible(h));
  h.type = record_type::message;
  h.flags = 4;  // unknown flag (2 is record_flag_sealed)
  EXPECT_FALSE(header_plausible(h));
  std::vector<std::byte> ref;
  append_external_ref(ref, 4096, 1234);
  uint64_t off = 0, len = 0;
  ASSERT_TRUE(decode_external_ref(ref, off, len));
  EXPECT_EQ(off, 4096u);
  EXPECT_EQ(len, 1234u);
  ref.push_back(std::byte{0});
  EXPECT_FALSE(decode_external_ref(ref, off, len));
}

TEST_F(large, body_file_round_trip_recovery_and_deletion_after_the_last_done) {
  const std::string body = big_body(3 * 1024 * 1024 + 17, 1);
  std::string path;
  message_meta meta;
  {
    auto p = open();
    ASSERT_TRUE(p);
    std::unique_ptr<body_file> file;
    meta = write_large(*p, prefix, body, 200 * 1024 + 3, file);
    path = file->path();
    EXPECT_EQ(path, p->body_path(meta.queue_id));
    ASSERT_TRUE(p->stage(meta, {}, &meta));
    file->keep();
    file.reset();
    partition::outcome_list out;
    ASSERT_TRUE(p->flush(out));
    ASSERT_EQ(out.size(), 1u);
    EXPECT_TRUE(out[0].second);
    ASSERT_EQ(p->last_locations().size(), 1u);
    const auto& loc = p->last_locations()[0];
    EXPECT_EQ(loc.segment, path);
    EXPECT_EQ(loc.offset, meta.body_offset);
    EXPECT_EQ(loc.length, prefix.size() + body.size());
    EXPECT_EQ(slurp(path).substr(loc.offset), prefix + body);
  }
  // The segment's record is small: the bytes stay in the body file.
  recovered_set rs;
  auto p = open(&rs);
  ASSERT_TRUE(p);
  ASSERT_EQ(rs.messages.size(), 1u);
  const auto& r = rs.messages[0];
  EXPECT_EQ(r.meta.queue_id, meta.queue_id);
  EXPECT_EQ(r.meta.mail_from, meta.mail_from);
  EXPECT_EQ(r.meta.rcpts, meta.rcpts);
  EXPECT_EQ(r.meta.msg_id, meta.msg_id);
  EXPECT_TRUE(r.meta.tls);
  EXPECT_TRUE(r.meta.external_body);
  EXPECT_EQ(r.segment, path);
  EXPECT_EQ(read_message(r), prefix + body);
  for (const auto& seg : fs::directory_iterator(p->dir()))
    if (seg.is_regular_file()) EXPECT_LT(seg.file_size(), 4096u) << seg.path();

  // The body file holds a complete record just before the bytes, as the fallback sidecar
  // reads it: header, envelope with the same queue id, CRC32C over envelope + bytes.
  const std::string file = slurp(path);
  bool found = false;
  for (size_t at = r.offset - header_size; at-- > 0 && !found;) {
    record_header h = decode_header(reinterpret_cast<const std::byte*>(file.data() + at));
    if (!header_plausible(h) || at + header_size + h.payload_len != r.offset + r.length) continue;
    std::span<const std::byte> payload(reinterpret_cast<const std::byte*>(file.data() + at + header_size),
                                       h.payload_len);
    ASSERT_TRUE(payload_crc_ok(h, payload));
    EXPECT_EQ(h.flags, 0);
    message_meta m2;
    size_t env_len = 0;
    ASSERT_TRUE(decode_envelope(payload, m2, env_len, h.version));
    EXPECT_EQ(m2.queue_id, meta.queue_id);
    EXPECT_EQ(at + header_size + env_len, r.offset);
    found = true;
  }
  EXPECT_TRUE(found);

  // One recipient done: the file stays. Both: it goes once that DONE is durable.
  partition::outcome_list out;
  p->mark_done(meta.queue_id, std::vector<uint32_t>{0});
  ASSERT_TRUE(p->flush(out));
  EXPECT_TRUE(fs::exists(path));
  p->mark_done(meta.queue_id, std::vector<uint32_t>{1});
  EXPECT_TRUE(fs::exists(path));  // staged, not durable yet
  ASSERT_TRUE(p->flush(out));
  EXPECT_FALSE(fs::exists(path));
  p.reset();
  recovered_set rs2;
  ASSERT_TRUE(open(&rs2));
  EXPECT_TRUE(rs2.messages.empty());
}

TEST_F(large, a_failed_batch_deletes_the_body_file_and_an_unkept_file_is_removed) {
  auto p = open();
  ASSERT_TRUE(p);
  std::unique_ptr<body_file> file;
  message_meta meta = write_large(*p, prefix, big_body(300 * 1024, 2), 64 * 1024, file);
  std::string path = file->path();
  file->keep();
  file.reset();
  ASSERT_TRUE(p->stage(meta, {}, &meta));
  batch* b = p->take_batch();
  ASSERT_TRUE(b);
  partition::outcome_list out;
  p->complete(b, -EIO, -ECANCELED, out);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_FALSE(out[0].second);
  EXPECT_FALSE(fs::exists(path));  // its client hears 452

  // A message aborted before finish(): the body file goes with its writer.
  message_meta m2;
  m2.queue_id = p->next_queue_id();
  auto f = body_file::create(*_sh, p->body_path(m2.queue_id), 4096);
  ASSERT_TRUE(f.ok());
  std::string path2 = (*f)->path();
  EXPECT_TRUE(fs::exists(path2));
  f->reset();
  EXPECT_FALSE(fs::exists(path2));
  // External-body staging takes no bytes.
  const std::string x = "x";
  iovec v{const_cast<char*>(x.data()), 1};
  m2.rcpts = {"r@example.net"};
  m2.external_body = true;
  EXPECT_FALSE(p->stage(m2, {&v, 1}, nullptr));
}

TEST_F(large, orphan_body_files_go_and_a_missing_body_file_keeps_its_record) {
  std::string kept_path, orphan_path;
  message_meta meta;
  const std::string body = big_body(500 * 1024, 4);
  {
    auto p = open();
    ASSERT_TRUE(p);
    std::unique_ptr<body_file> file;
    meta = write_large(*p, prefix, body, 128 * 1024, file);
    kept_path = file->path();
    file->keep();
    file.reset();
    ASSERT_TRUE(p->stage(meta, {}, &meta));
    partition::outcome_list out;
    ASSERT_TRUE(p->flush(out));
    // A body file whose record never became durable (a crash before the group commit).
    std::unique_ptr<body_file> orphan;
    write_large(*p, prefix, body, 256 * 1024, orphan);
    orphan_path = orphan->path();
    orphan->keep();
  }
  ASSERT_TRUE(fs::exists(orphan_path));
  {
    recovered_set rs;
    auto p = open(&rs);
    ASSERT_TRUE(p);
    ASSERT_EQ(rs.messages.size(), 1u);
    EXPECT_EQ(rs.messages[0].meta.queue_id, meta.queue_id);
    EXPECT_FALSE(fs::exists(orphan_path));
    EXPECT_TRUE(fs::exists(kept_path));
  }
  // The body file is lost (an operator's mistake, a disk error): the message is not
  // delivered (it has no bytes) but its record stays, so restoring the file brings it back.
  fs::rename(kept_path, _state + "/saved");
  for (int round = 0; round < 2; ++round) {
    recovered_set rs;
    auto p = open(&rs);
    ASSERT_TRUE(p);
    EXPECT_TRUE(rs.messages.empty());
  }
  fs::rename(_state + "/saved", kept_path);
  recovered_set rs;
  auto p = open(&rs);
  ASSERT_TRUE(p);
  ASSERT_EQ(rs.messages.size(), 1u);
  EXPECT_EQ(read_message(rs.messages[0]), prefix + body);
  // A body file cut short counts as missing.
  p.reset();
  ASSERT_EQ(::truncate(kept_path.c_str(), off_t(rs.messages[0].offset + 10)), 0);
  recovered_set rs3;
  ASSERT_TRUE(open(&rs3));
  EXPECT_TRUE(rs3.messages.empty());
  EXPECT_TRUE(fs::exists(kept_path));
}

TEST_F(large, list_reports_external_messages_at_their_body_file) {
  auto p = open();
  ASSERT_TRUE(p);
  std::unique_ptr<body_file> file;
  const std::string body = big_body(200 * 1024, 5);
  message_meta meta = write_large(*p, prefix, body, 100 * 1024, file);
  file->keep();
  ASSERT_TRUE(p->stage(meta, {}, &meta));
  partition::outcome_list out;
  ASSERT_TRUE(p->flush(out));
  auto l = partition::list(_state);
  ASSERT_TRUE(l.ok());
  ASSERT_EQ(l->messages.size(), 1u);
  EXPECT_EQ(l->messages[0].segment, file->path());
  EXPECT_EQ(read_message(l->messages[0]), prefix + body);
}

// Spool encryption at rest: a sealed body file holds no message text, prefix or address;
// delivery's 128 KiB windows read back through spool::reader frame by frame (the head read
// once per file), recovery and read_message() open it, a window beyond the message, a
// reader without the key and a flipped byte in a frame all fail.
TEST_F(large, sealed_body_file_reads_back_in_windows_and_refuses_tampering) {
  tls::seal_key key{};
  for (size_t i = 0; i < key.size(); ++i) key[i] = uint8_t(7 * i + 3);
  _keys = std::make_shared<const keyring>(&key, true, std::span<const tls::seal_key>{});
  const std::string body = big_body(1024 * 1024 + 4097, 5);
  std::string path;
  message_meta meta;
  {
    auto p = open();
    ASSERT_TRUE(p);
    std::unique_ptr<body_file> file;
    meta = write_large(*p, prefix, body, 200 * 1024 + 3, file);
    path = file->path();
    EXPECT_EQ(meta.body_offset, 0u);  // sealed: counted in message bytes
    ASSERT_TRUE(p->stage(meta, {}, &meta));
    file->keep();
    file.reset();
    partition::outcome_list out;
    ASSERT_TRUE(p->flush(out));
    ASSERT_EQ(out.size(), 1u);
    EXPECT_TRUE(out[0].second);
  }
  const std::string raw = slurp(path);
  EXPECT_EQ(raw.find("Subject: large"), std::string::npos);
  EXPECT_EQ(raw.find(".dot line"), std::string::npos);
  EXPECT_EQ(raw.find("Received: from client.example"), std::string::npos);
  EXPECT_EQ(raw.find("a@one.example"), std::string::npos);
  EXPECT_EQ(raw.find(meta.queue_id), std::string::npos);
  EXPECT_TRUE(classify_segment(std::as_bytes(std::span(raw.data(), raw.size())), nullptr).framed);

  recovered_set rs;
  auto p = open(&rs);
  ASSERT_TRUE(p);
  ASSERT_EQ(rs.messages.size(), 1u);
  const auto& r = rs.messages[0];
  EXPECT_EQ(r.segment, path);
  EXPECT_EQ(r.meta.rcpts, meta.rcpts);
  EXPECT_EQ(read_message(r, _keys), prefix + body);
  EXPECT_EQ(read_message(r), "");  // no key

  // Delivery's windows: every 128 KiB of the message, all queued before the ring runs.
  const std::string whole = prefix + body;
  constexpr uint64_t window = 128 * 1024;
  reader rd(*_sh, 4);
  rd.set_keys(_keys);
  reader nokey(*_sh, 4);
  std::vector<std::string> got;
  std::vector<int> ok;
  const size_t n_windows = (whole.size() + window - 1) / window;
  got.resize(n_windows + 2);
  ok.assign(n_windows + 2, -1);
  int finished = 0;
  auto cb = [&](size_t k) {
    return [&, k](bool res) {
      ok[k] = res;
      if (++finished == int(got.size())) _sh->stop();
    };
  };
  for (size_t k = 0; k < n_windows; ++k) {
    uint64_t off = k * window, n = std::min<uint64_t>(window, whole.size() - off);
    got[k].assign(n, '\0');
    rd.read({path, off, n}, got[k].data(), cb(k));
  }
  got[n_windows].assign(10, '\0');
  rd.read({path, whole.size() - 5, 10}, got[n_windows].data(), cb(n_windows));  // beyond the end
  got[n_windows + 1].assign(10, '\0');
  nokey.read({path, 0, 10}, got[n_windows + 1].data(), cb(n_windows + 1));
  int ticks = 0;
  _sh->on_tick([&] {
    if (++ticks > 100) _sh->stop();
  });
  _sh->run();
  ASSERT_EQ(finished, int(got.size()));
  std::string joined;
  for (size_t k = 0; k < n_windows; ++k) {
    EXPECT_EQ(ok[k], 1) << "window " << k;
    joined += got[k];
  }
  EXPECT_TRUE(joined == whole) << "windows differ from the message";
  EXPECT_EQ(ok[n_windows], 0);
  EXPECT_EQ(ok[n_windows + 1], 0);

  // One flipped byte in frame 5: that frame no longer opens.
  std::string tampered = raw;
  const uint64_t body_start = tampered.size() - ((body.size() / body_frame_size) * body_frame_stored +
                                                 body.size() % body_frame_size + 16);
  tampered[body_start + 5 * body_frame_stored + 100] ^= 0x20;
  std::ofstream(path, std::ios::binary | std::ios::trunc) << tampered;
  EXPECT_EQ(read_message(r, _keys), "");
  std::ofstream(path, std::ios::binary | std::ios::trunc) << raw;
  EXPECT_EQ(read_message(r, _keys), whole);
}
