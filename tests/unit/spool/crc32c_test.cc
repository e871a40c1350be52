// CRC32C: known vectors, hardware == table path at every length/alignment, and
// extend() over pieces equals one pass (the spool sums envelope + body chunks that way).
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <string>

#include "spool/crc32c.hh"

using namespace sr::spool;

TEST(crc32c, known_vectors) {
  EXPECT_EQ(crc32c("123456789", 9), 0xE3069283u);  // RFC 3720 check value
  EXPECT_EQ(crc32c("", 0), 0u);
  std::string zeros(32, '\0');
  EXPECT_EQ(crc32c(zeros.data(), zeros.size()), 0x8A9136AAu);  // RFC 3720 B.4
  std::string ones(32, '\xFF');
  EXPECT_EQ(crc32c(ones.data(), ones.size()), 0x62A8AB43u);
  EXPECT_EQ(detail::crc32c_sw(0, "123456789", 9), 0xE3069283u);
}

TEST(crc32c, hardware_matches_table_at_every_length_and_alignment) {
  if (!detail::crc32c_hw_available()) GTEST_SKIP() << "CPU lacks SSE4.2: only the table path runs";
  std::mt19937 rng(42);
  std::string buf(600, '\0');
  for (auto& c : buf) c = char(rng());
  for (size_t align = 0; align < 8; ++align)
    for (size_t len = 0; len + align <= 300; ++len)
      ASSERT_EQ(detail::crc32c_hw(7, buf.data() + align, len),
                detail::crc32c_sw(7, buf.data() + align, len))
          << "align " << align << " len " << len;
}

TEST(crc32c, extend_over_pieces_equals_one_pass) {
  std::string s = "Received: from x\r\nSubject: hi\r\n\r\nbody line one\r\nbody line two\r\n";
  uint32_t whole = crc32c(s.data(), s.size());
  for (size_t cut1 = 0; cut1 <= s.size(); cut1 += 5)
    for (size_t cut2 = cut1; cut2 <= s.size(); cut2 += 7) {
      uint32_t c = crc32c(s.data(), cut1);
      c = crc32c_extend(c, s.data() + cut1, cut2 - cut1);
      c = crc32c_extend(c, s.data() + cut2, s.size() - cut2);
      ASSERT_EQ(c, whole);
    }
}
