// Spool encryption at rest (keyring.hh): a sealed segment holds none of the message's text,
// addresses or queue id in the clear; it recovers, lists and reads back (read_message and
// spool::reader, whole and prefix); DONE records finish sealed messages; key rotation reads
// old segments under a previous key; a missing key or a damaged KEY record refuses the
// start and leaves the segment as it was; a tampered record is refused like a bad CRC;
// plaintext and sealed segments mix in both directions.
#include <gtest/gtest.h>
#include <sys/uio.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "sealrelay/core/shard.hh"
#include "sealrelay/spool/keyring.hh"
#include "sealrelay/spool/partition.hh"
#include "sealrelay/spool/reader.hh"
#include "sealrelay/spool/record.hh"
#include "spool/crc32c.hh"
#include "support/temp_dir.hh"

namespace fs = std::filesystem;
using namespace sr::spool;

namespace {

sr::tls::seal_key key_of(char c) {
  sr::tls::seal_key k;
  for (size_t i = 0; i < k.size(); ++i) k[i] = uint8_t(c + i);
  return k;
}

std::shared_ptr<const keyring> ring(const sr::tls::seal_key* current, bool seal,
                                    std::vector<sr::tls::seal_key> previous = {}) {
  return std::make_shared<const keyring>(current, seal, previous);
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

struct msg {
  message_meta meta;
  std::string text;
};

msg make(partition& p, int n) {
  msg m;
  m.meta.queue_id = p.next_queue_id();
  m.meta.received_ms = 1'700'000'000'000ull + n;
  m.meta.mail_from = "patient.sender" + std::to_string(n) + "@clinic.example";
  m.meta.rcpts = {"dr.recipient" + std::to_string(n) + "@hospital.example", "second@lab.example"};
  m.meta.msg_id = "mid" + std::to_string(n) + "@clinic.example";
  m.text = "Received: from client by relay\r\nSubject: diagnosis " + std::to_string(n) +
           "\r\n\r\nThe biopsy result for patient " + std::to_string(n) + " is benign.\r\n";
  while (m.text.size() < 3000) m.text += "More confidential findings line.\r\n";
  return m;
}

class spool_seal : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_FALSE(_state.empty()) << "mkdtemp failed"; }
  sr::test::temp_dir _dir{"sr-seal-test"};
  std::string _state = _dir.path().string();
  std::string _part = _state + "/spool/0";
  sr::tls::seal_key _k1 = key_of('A'), _k2 = key_of('b');

  sr::result<std::unique_ptr<partition>> open(std::shared_ptr<const keyring> keys,
                                              recovered_set* rs = nullptr) {
    return partition::open(_state, 0, rs, default_segment_limit, std::move(keys));
  }
  // Stage and flush `msgs` (two pieces each); every one must become durable.
  void commit(partition& p, std::vector<msg>& msgs) {
    std::vector<std::array<iovec, 2>> iov(msgs.size());
    for (size_t i = 0; i < msgs.size(); ++i) {
      auto& t = msgs[i].text;
      iov[i] = {iovec{t.data(), 40}, iovec{t.data() + 40, t.size() - 40}};
      ASSERT_TRUE(p.stage(msgs[i].meta, iov[i], &msgs[i]));
    }
    partition::outcome_list out;
    ASSERT_TRUE(p.flush(out));
    ASSERT_EQ(out.size(), msgs.size());
    for (auto& o : out) EXPECT_TRUE(o.second);
  }
};

}  // namespace

TEST_F(spool_seal, sealed_segment_holds_no_plaintext_and_recovers) {
  std::vector<msg> msgs;
  {
    auto p = open(ring(&_k1, true));
    ASSERT_TRUE(p) << p.err();
    for (int i = 0; i < 3; ++i) msgs.push_back(make(**p, i));
    commit(**p, msgs);
    (*p)->mark_done(msgs[1].meta.queue_id);  // a sealed DONE record
    partition::outcome_list out;
    ASSERT_TRUE((*p)->flush(out));
  }
  auto segs = segment_files(_part);
  ASSERT_EQ(segs.size(), 1u);
  std::string raw = slurp(segs[0]);
  for (const auto& m : msgs) {
    EXPECT_EQ(raw.find("biopsy"), std::string::npos);
    EXPECT_EQ(raw.find("confidential"), std::string::npos);
    EXPECT_EQ(raw.find(m.meta.rcpts[0]), std::string::npos);
    EXPECT_EQ(raw.find("hospital.example"), std::string::npos);
    EXPECT_EQ(raw.find(m.meta.mail_from), std::string::npos);
    EXPECT_EQ(raw.find(m.meta.queue_id), std::string::npos);  // DONE records are sealed too
    EXPECT_EQ(raw.find("Subject"), std::string::npos);
  }
  // The KEY record names key 1.
  segment_seal seg = classify_segment(std::as_bytes(std::span(raw.data(), raw.size())), nullptr);
  EXPECT_TRUE(seg.sealed);
  EXPECT_EQ(seg.id, keyring::id_of(_k1));

  recovered_set rs;
  auto p = open(ring(&_k1, true), &rs);
  ASSERT_TRUE(p) << p.err();
  EXPECT_EQ(rs.discarded_bytes, 0u);
  ASSERT_EQ(rs.messages.size(), 2u);  // message 1 is done
  for (int j = 0; j < 2; ++j) {
    const auto& r = rs.messages[size_t(j)];
    const msg& m = msgs[j == 0 ? 0 : 2];
    EXPECT_EQ(r.meta.queue_id, m.meta.queue_id);
    EXPECT_EQ(r.meta.mail_from, m.meta.mail_from);
    EXPECT_EQ(r.meta.rcpts, m.meta.rcpts);
    EXPECT_EQ(r.meta.msg_id, m.meta.msg_id);
    EXPECT_EQ(r.length, m.text.size());
    EXPECT_EQ(read_message(r, ring(&_k1, true)), m.text);
    EXPECT_EQ(read_message(r), "");  // no key: nothing comes back
  }
  p->reset();
  auto listed = partition::list(_state, ring(&_k1, false));
  ASSERT_TRUE(listed) << listed.err();
  ASSERT_EQ(listed->messages.size(), 2u);
  EXPECT_EQ(listed->messages[1].meta.rcpts, msgs[2].meta.rcpts);
}

TEST_F(spool_seal, reader_opens_sealed_records_whole_and_prefix) {
  auto opened = open(ring(&_k1, true));
  ASSERT_TRUE(opened) << opened.err();
  auto& part = **opened;
  std::vector<msg> msgs{make(part, 7), make(part, 8)};
  // A long envelope (the reader's first read guesses 1 KiB for it): a second read.
  for (int i = 0; i < 200; ++i) msgs[1].meta.rcpts.push_back("recipient" + std::to_string(i) + "@many.example");
  commit(part, msgs);
  auto locs = part.last_locations();
  ASSERT_EQ(locs.size(), 2u);

  sr::core::shard::options o;
  o.entries = 64;
  sr::core::shard sh(o);
  ASSERT_TRUE(sh.init());
  reader rd(sh, 4);
  rd.set_keys(ring(&_k1, true));
  reader nokey(sh, 4);
  nokey.set_keys(ring(&_k2, true));  // another key: the segment is not readable
  std::string whole(msgs[1].text.size(), '\0'), prefix(100, '\0'), refused(10, '\0');
  int ok_whole = -1, ok_prefix = -1, ok_refused = -1, finished = 0;
  auto done = [&](int& slot) {
    return [&](bool r) {
      slot = r;
      if (++finished == 3) sh.stop();
    };
  };
  rd.read({locs[1].segment, locs[1].offset, locs[1].length}, whole.data(), done(ok_whole));
  rd.read({locs[0].segment, locs[0].offset, 100}, prefix.data(), done(ok_prefix));
  nokey.read({locs[0].segment, locs[0].offset, 10}, refused.data(), done(ok_refused));
  int ticks = 0;
  sh.on_tick([&] {
    if (++ticks > 50) sh.stop();
  });
  sh.run();
  EXPECT_EQ(ok_whole, 1);
  EXPECT_EQ(whole, msgs[1].text);
  EXPECT_EQ(ok_prefix, 1);
  EXPECT_EQ(prefix, msgs[0].text.substr(0, 100));
  EXPECT_EQ(ok_refused, 0);
  EXPECT_EQ(refused, std::string(10, '\0'));
}

TEST_F(spool_seal, rotation_reads_old_segments_under_a_previous_key) {
  std::vector<msg> old_msgs;
  {
    auto p = open(ring(&_k1, true));
    ASSERT_TRUE(p) << p.err();
    old_msgs.push_back(make(**p, 1));
    commit(**p, old_msgs);
  }
  std::vector<msg> new_msgs;
  {
    recovered_set rs;
    auto p = open(ring(&_k2, true, {_k1}), &rs);  // key 2 current, key 1 previous
    ASSERT_TRUE(p) << p.err();
    ASSERT_EQ(rs.messages.size(), 1u);
    EXPECT_EQ(rs.messages[0].meta.rcpts, old_msgs[0].meta.rcpts);
    EXPECT_EQ(read_message(rs.messages[0], ring(&_k2, true, {_k1})), old_msgs[0].text);
    new_msgs.push_back(make(**p, 2));
    commit(**p, new_msgs);
  }
  auto segs = segment_files(_part);
  ASSERT_EQ(segs.size(), 2u);
  std::string first = slurp(segs[0]), second = slurp(segs[1]);
  EXPECT_EQ(classify_segment(std::as_bytes(std::span(first.data(), first.size())), nullptr).id,
            keyring::id_of(_k1));
  EXPECT_EQ(classify_segment(std::as_bytes(std::span(second.data(), second.size())), nullptr).id,
            keyring::id_of(_k2));  // new segments take the new key

  // Key 1 gone: the start is refused, naming the segment and the key id; nothing is cut.
  for (auto keys : {ring(&_k2, true), std::shared_ptr<const keyring>()}) {
    recovered_set rs;
    auto p = open(keys, &rs);
    ASSERT_FALSE(p);
    EXPECT_NE(p.err().find(segs[0]), std::string::npos) << p.err();
    EXPECT_NE(p.err().find(to_hex(keyring::id_of(_k1))), std::string::npos) << p.err();
    EXPECT_NE(p.err().find("refusing to start"), std::string::npos) << p.err();
    EXPECT_EQ(slurp(segs[0]), first);
    EXPECT_EQ(segment_files(_part).size(), 2u);
  }
  // With key 1 back (encrypt off, both keys to read): both messages recover.
  recovered_set rs;
  auto p = open(ring(&_k1, false, {_k2}), &rs);
  ASSERT_TRUE(p) << p.err();
  ASSERT_EQ(rs.messages.size(), 2u);
  EXPECT_EQ(read_message(rs.messages[1], ring(&_k1, false, {_k2})), new_msgs[0].text);
}

TEST_F(spool_seal, a_tampered_record_is_refused_like_a_bad_checksum) {
  std::vector<msg> msgs;
  {
    auto p = open(ring(&_k1, true));
    ASSERT_TRUE(p) << p.err();
    msgs = {make(**p, 1), make(**p, 2), make(**p, 3)};
    commit(**p, msgs);
  }
  auto seg = segment_files(_part)[0];
  std::string raw = slurp(seg);
  // The second record: flip one ciphertext byte and fix the CRC, as an attacker would.
  size_t first_len = header_size + decode_header(reinterpret_cast<const std::byte*>(raw.data() + key_record_size)).payload_len;
  size_t at = key_record_size + first_len;
  record_header h = decode_header(reinterpret_cast<const std::byte*>(raw.data() + at));
  ASSERT_TRUE(h.flags & record_flag_sealed);
  raw[at + header_size + 200] ^= 0x01;
  h.crc = sr::spool::crc32c(raw.data() + at + header_size, h.payload_len);
  std::byte head[header_size];
  encode_header(h, head);
  std::memcpy(raw.data() + at, head, header_size);
  spit(seg, raw);

  recovered_set rs;
  auto p = open(ring(&_k1, true), &rs);
  ASSERT_TRUE(p) << p.err();
  EXPECT_EQ(rs.records_skipped, 1u);
  EXPECT_EQ(rs.discarded_bytes, header_size + h.payload_len);
  ASSERT_EQ(rs.messages.size(), 2u);  // the tampered one is never delivered
  EXPECT_EQ(rs.messages[0].meta.queue_id, msgs[0].meta.queue_id);
  EXPECT_EQ(rs.messages[1].meta.queue_id, msgs[2].meta.queue_id);
  EXPECT_EQ(read_message(rs.messages[1], ring(&_k1, true)), msgs[2].text);
}

TEST_F(spool_seal, a_damaged_key_record_refuses_the_start_instead_of_cutting) {
  {
    auto p = open(ring(&_k1, true));
    ASSERT_TRUE(p) << p.err();
    std::vector<msg> msgs{make(**p, 1)};
    commit(**p, msgs);
  }
  auto seg = segment_files(_part)[0];
  std::string raw = slurp(seg);
  raw[header_size + 3] ^= 0x40;  // the key id: the KEY record's CRC no longer matches
  spit(seg, raw);
  auto p = open(ring(&_k1, true));
  ASSERT_FALSE(p);
  EXPECT_NE(p.err().find("refusing to start"), std::string::npos) << p.err();
  EXPECT_EQ(slurp(seg), raw);
}

TEST_F(spool_seal, plaintext_and_sealed_segments_mix_both_ways) {
  std::vector<msg> plain, sealed, plain_again;
  {
    auto p = open(nullptr);  // encrypt off, no key
    ASSERT_TRUE(p) << p.err();
    plain.push_back(make(**p, 1));
    commit(**p, plain);
  }
  {
    auto p = open(ring(&_k1, true));  // encrypt on
    ASSERT_TRUE(p) << p.err();
    sealed.push_back(make(**p, 2));
    commit(**p, sealed);
  }
  {
    auto p = open(ring(&_k1, false));  // encrypt off again, key kept to read
    ASSERT_TRUE(p) << p.err();
    plain_again.push_back(make(**p, 3));
    commit(**p, plain_again);
  }
  auto segs = segment_files(_part);
  ASSERT_EQ(segs.size(), 3u);
  EXPECT_NE(slurp(segs[0]).find("biopsy"), std::string::npos);  // plaintext, as configured
  EXPECT_EQ(slurp(segs[1]).find("biopsy"), std::string::npos);
  EXPECT_NE(slurp(segs[2]).find("biopsy"), std::string::npos);
  recovered_set rs;
  auto p = open(ring(&_k1, false), &rs);
  ASSERT_TRUE(p) << p.err();
  ASSERT_EQ(rs.messages.size(), 3u);
  auto keys = ring(&_k1, false);
  EXPECT_EQ(read_message(rs.messages[0], keys), plain[0].text);
  EXPECT_EQ(read_message(rs.messages[1], keys), sealed[0].text);
  EXPECT_EQ(read_message(rs.messages[2], keys), plain_again[0].text);
}

TEST_F(spool_seal, records_seal_for_the_segment_they_land_in) {
  // A tiny segment limit: every batch rolls to a new segment (new salt) after staging.
  auto opened = partition::open(_state, 0, nullptr, 1, ring(&_k1, true));
  ASSERT_TRUE(opened) << opened.err();
  auto& part = **opened;
  std::vector<msg> all;
  for (int i = 0; i < 4; ++i) {
    std::vector<msg> one{make(part, i)};
    commit(part, one);
    all.push_back(one[0]);
    part.mark_done(one[0].meta.queue_id, std::vector<uint32_t>{0});
  }
  opened.value().reset();
  recovered_set rs;
  auto p = open(ring(&_k1, true), &rs);
  ASSERT_TRUE(p) << p.err();
  EXPECT_EQ(rs.discarded_bytes, 0u);
  ASSERT_EQ(rs.messages.size(), 4u);
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(read_message(rs.messages[i], ring(&_k1, true)), all[i].text);
    EXPECT_EQ(rs.messages[i].done_rcpts, (i < 3 ? std::vector<uint32_t>{0} : std::vector<uint32_t>{}));
  }
}

// DONE and ATTEMPTS records of a failed batch are carried into the next one (partition.cc,
// carry_records) and sealed again there: after an fdatasync error the next batch goes to a
// new segment, with a new salt, where their first sealing would not open.
TEST_F(spool_seal, carried_done_records_are_sealed_again_for_the_segment_they_land_in) {
  std::vector<msg> msgs;
  {
    auto p = open(ring(&_k1, true));
    ASSERT_TRUE(p) << p.err();
    for (int i = 0; i < 3; ++i) msgs.push_back(make(**p, i));
    commit(**p, msgs);
    const std::string first = (*p)->active_segment();
    (*p)->mark_done(msgs[1].meta.queue_id);
    const std::pair<uint32_t, uint32_t> two[] = {{0, 2}};
    (*p)->record_attempts(msgs[2].meta.queue_id, two);
    batch* b = (*p)->take_batch();
    ASSERT_NE(b, nullptr);
    auto [w, f] = partition::write_and_sync(b);
    ASSERT_EQ(w, int64_t(b->size));
    partition::outcome_list out;
    (*p)->complete(b, w, -EIO, out);  // as if fdatasync failed: cut, and a new segment next
    ASSERT_TRUE((*p)->flush(out));
    EXPECT_NE((*p)->active_segment(), first);
  }
  recovered_set rs;
  auto p = open(ring(&_k1, true), &rs);
  ASSERT_TRUE(p) << p.err();
  EXPECT_EQ(rs.discarded_bytes, 0u);
  EXPECT_EQ(rs.records_skipped, 0u);
  ASSERT_EQ(rs.messages.size(), 2u);  // message 1 is done
  EXPECT_EQ(rs.messages[0].meta.queue_id, msgs[0].meta.queue_id);
  EXPECT_EQ(rs.messages[1].meta.queue_id, msgs[2].meta.queue_id);
  EXPECT_EQ(rs.messages[1].meta.attempts[0], 2u);
}
