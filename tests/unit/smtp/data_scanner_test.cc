// DATA scanner: end-of-data detection, in-place dot-unstuffing, bare CR/LF, line and size
// limits, smuggling patterns, and independence from how the input is split into chunks.
#include "sealrelay/smtp/data_scanner.hh"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "reference_scanner.hh"

namespace {

using sr::smtp::data_scanner;
using error = data_scanner::error;

struct outcome {
  std::string body;
  error err = error::none;
  size_t consumed = 0;
  bool done = false;
  bool operator==(const outcome&) const = default;
};

// Scan `input` fed in pieces cut at `cuts` (sorted offsets); stops at done like a session.
outcome scan_split(std::string input, const std::vector<size_t>& cuts, uint64_t max = 1 << 20) {
  data_scanner sc;
  sc.reset(max);
  outcome o;
  size_t start = 0;
  std::vector<size_t> ends = cuts;
  ends.push_back(input.size());
  for (size_t end : ends) {
    if (end < start) continue;
    while (start < end && !o.done) {
      auto* p = reinterpret_cast<std::byte*>(input.data()) + start;
      auto r = sc.scan(std::span<std::byte>(p, end - start));
      o.body.append(reinterpret_cast<const char*>(p), r.body_len);
      start += r.consumed;
      o.consumed += r.consumed;
      o.done = r.done;
      if (r.consumed == 0) break;
    }
    if (o.done) break;
  }
  o.err = sc.err();
  if (o.err != error::none) o.body.clear();
  return o;
}

outcome scan_whole(const std::string& s, uint64_t max = 1 << 20) { return scan_split(s, {}, max); }

outcome reference(const std::string& s, uint64_t max = 1 << 20) {
  auto r = sr::test::reference_scan(s, max);
  outcome o{r.err == error::none ? r.body : std::string(), r.err, r.consumed, r.done};
  return o;
}

TEST(data_scanner, simple_message_ends_at_crlf_dot_crlf) {
  auto o = scan_whole("Subject: x\r\n\r\nHello\r\n.\r\nQUIT\r\n");
  EXPECT_TRUE(o.done);
  EXPECT_EQ(o.err, error::none);
  EXPECT_EQ(o.body, "Subject: x\r\n\r\nHello\r\n");
  EXPECT_EQ(o.consumed, std::string("Subject: x\r\n\r\nHello\r\n.\r\n").size());
}

TEST(data_scanner, empty_message) {
  auto o = scan_whole(".\r\nNOOP\r\n");
  EXPECT_TRUE(o.done);
  EXPECT_EQ(o.body, "");
  EXPECT_EQ(o.consumed, 3u);
  EXPECT_EQ(o.err, error::none);
}

TEST(data_scanner, unterminated_is_not_done) {
  auto o = scan_whole("abc\r\n.\r");
  EXPECT_FALSE(o.done);
  EXPECT_EQ(o.consumed, 7u);
  EXPECT_EQ(o.err, error::none);
}

TEST(data_scanner, dot_unstuffing_in_place) {
  std::string in = "..leading\r\n...\r\n. space\r\nmid.dle\r\n..\r\n.\r\n";
  auto o = scan_whole(in);
  EXPECT_TRUE(o.done);
  EXPECT_EQ(o.err, error::none);
  EXPECT_EQ(o.body, ".leading\r\n..\r\n space\r\nmid.dle\r\n.\r\n");
}

TEST(data_scanner, unstuffed_bytes_are_contiguous_at_buffer_start) {
  std::string in = "a\r\n..b\r\n..c\r\n.\r\n";
  data_scanner sc;
  sc.reset(1000);
  auto r = sc.scan(std::span<std::byte>(reinterpret_cast<std::byte*>(in.data()), in.size()));
  EXPECT_TRUE(r.done);
  EXPECT_EQ(in.substr(0, r.body_len), "a\r\n.b\r\n.c\r\n");
}

TEST(data_scanner, bare_lf_rejected_and_cannot_end_message) {
  // "\n.\r\n": the LF is bare, so the dot line does not end the message.
  std::string in = "hello\n.\r\nMAIL FROM:<evil@x.example>\r\nmore\r\n.\r\nNEXT";
  auto o = scan_whole(in);
  EXPECT_TRUE(o.done);
  EXPECT_EQ(o.err, error::bare_lf);
  EXPECT_EQ(o.consumed, in.size() - 4);
}

TEST(data_scanner, dot_bare_lf_cannot_end_message) {
  std::string in = "hello\r\n.\nMAIL FROM:<evil@x.example>\r\n.\r\nNEXT";
  auto o = scan_whole(in);
  EXPECT_TRUE(o.done);
  EXPECT_EQ(o.err, error::bare_lf);
  EXPECT_EQ(o.consumed, in.size() - 4);
}

TEST(data_scanner, bare_cr_cannot_end_message) {
  std::string in = "hello\r.\r\nMAIL FROM:<evil@x.example>\r\n.\r\nNEXT";
  auto o = scan_whole(in);
  EXPECT_TRUE(o.done);
  EXPECT_EQ(o.err, error::bare_cr);
  EXPECT_EQ(o.consumed, in.size() - 4);
}

TEST(data_scanner, dot_cr_without_lf_is_bare_cr) {
  std::string in = ".\rX\r\n.\r\n";
  auto o = scan_whole(in);
  EXPECT_TRUE(o.done);
  EXPECT_EQ(o.err, error::bare_cr);
  EXPECT_EQ(o.consumed, in.size());
}

TEST(data_scanner, cr_cr_lf_is_bare_cr_then_real_end) {
  std::string in = "a\r\r\n.\r\nrest";
  auto o = scan_whole(in);
  EXPECT_TRUE(o.done);
  EXPECT_EQ(o.err, error::bare_cr);
  EXPECT_EQ(o.consumed, in.size() - 4);
}

TEST(data_scanner, line_of_1000_octets_ok_1001_rejected) {
  std::string ok = std::string(998, 'a') + "\r\n.\r\n";
  auto o = scan_whole(ok);
  EXPECT_EQ(o.err, error::none);
  EXPECT_EQ(o.body.size(), 1000u);
  std::string bad = std::string(999, 'a') + "\r\n.\r\n";
  auto b = scan_whole(bad);
  EXPECT_TRUE(b.done);
  EXPECT_EQ(b.err, error::line_too_long);
  EXPECT_EQ(b.consumed, bad.size());
}

TEST(data_scanner, stuffing_dot_not_counted_in_line_length) {
  std::string in = "." + std::string(998, '.') + "\r\n.\r\n";  // 1001 octets on the wire
  auto o = scan_whole(in);
  EXPECT_EQ(o.err, error::none);
  EXPECT_EQ(o.body, std::string(998, '.') + "\r\n");
}

TEST(data_scanner, size_limit_exact_and_one_over) {
  std::string body = "12345678\r\n";  // 10 octets
  EXPECT_EQ(scan_whole(body + ".\r\n", 10).err, error::none);
  auto o = scan_whole(body + "x\r\n.\r\n", 10);
  EXPECT_TRUE(o.done);
  EXPECT_EQ(o.err, error::too_big);
  EXPECT_EQ(scan_whole(body + ".\r\n", 9).err, error::too_big);
}

TEST(data_scanner, every_two_way_split_gives_the_same_result) {
  std::string in =
      "From: a@b.example\r\n..x\r\n.\r.\n\r\n...\r\n" + std::string(40, 'z') + "\r\n.\r\nTAIL";
  std::string clean = "From: a@b.example\r\n..x\r\n...\r\n" + std::string(40, 'z') + "\r\n.\r\nTAIL";
  for (const std::string& s : {in, clean}) {
    outcome whole = scan_whole(s);
    EXPECT_EQ(whole, reference(s));
    for (size_t cut = 0; cut <= s.size(); ++cut)
      ASSERT_EQ(scan_split(s, {cut}), whole) << "cut at " << cut;
  }
}

TEST(data_scanner, byte_at_a_time_matches) {
  std::string s = "a\r\n..b\r\n.c\r\n\r\n.\r\n";
  std::vector<size_t> cuts;
  for (size_t i = 1; i < s.size(); ++i) cuts.push_back(i);
  EXPECT_EQ(scan_split(s, cuts), scan_whole(s));
  EXPECT_EQ(scan_whole(s).body, "a\r\n.b\r\nc\r\n\r\n");
}

TEST(data_scanner, random_inputs_match_reference_model) {
  std::mt19937 rng(12345);
  const char alphabet[] = {'a', '.', '\r', '\n', 'b', '.', '\r', '\n'};
  for (int iter = 0; iter < 3000; ++iter) {
    size_t len = rng() % 60;
    std::string s;
    for (size_t i = 0; i < len; ++i) s.push_back(alphabet[rng() % sizeof alphabet]);
    if (iter % 3 == 0) s += "\r\n.\r\n";
    uint64_t max = rng() % 40;
    outcome ref = reference(s, max);
    ASSERT_EQ(scan_whole(s, max), ref) << "input #" << iter;
    std::vector<size_t> cuts;
    for (size_t i = 0; i < s.size(); ++i)
      if (rng() % 4 == 0) cuts.push_back(i);
    ASSERT_EQ(scan_split(s, cuts, max), ref) << "split input #" << iter;
  }
}

TEST(data_scanner, long_lines_match_reference_across_splits) {
  std::string s = std::string(1200, 'q') + "\r\n" + std::string(500, 'r') + "\r\n.\r\n";
  outcome ref = reference(s);
  EXPECT_EQ(ref.err, error::line_too_long);
  for (size_t cut : {1u, 16u, 999u, 1000u, 1001u, 1002u, 1201u})
    EXPECT_EQ(scan_split(s, {cut}), ref);
}

TEST(data_scanner, replies) {
  EXPECT_EQ(data_scanner::reply_for(error::bare_lf).substr(0, 9), "550 5.6.0");
  EXPECT_EQ(data_scanner::reply_for(error::bare_cr).substr(0, 9), "550 5.6.0");
  EXPECT_EQ(data_scanner::reply_for(error::line_too_long).substr(0, 9), "500 5.5.2");
  EXPECT_EQ(data_scanner::reply_for(error::too_big).substr(0, 9), "552 5.3.4");
}

}  // namespace

namespace {

// Found by the fuzzer: one long run of text crossing both the size limit and the line limit
// must report the one crossed first, as a byte-at-a-time scan would.
TEST(data_scanner, first_crossed_limit_wins_within_one_run) {
  std::string s = std::string(1100, 'x') + "\r\n.\r\n";
  EXPECT_EQ(scan_whole(s, 457).err, error::too_big);
  EXPECT_EQ(scan_whole(s, 2000).err, error::line_too_long);
  EXPECT_EQ(scan_whole(s, 1000).err, error::line_too_long);  // same byte: the line wins
  EXPECT_EQ(scan_whole(s, 999).err, error::too_big);
  for (uint64_t max : {457u, 999u, 1000u, 2000u}) EXPECT_EQ(scan_whole(s, max), reference(s, max));
}

}  // namespace
