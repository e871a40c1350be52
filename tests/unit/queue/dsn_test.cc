// The bounce's MIME structure holds whatever the original's header section says: the
// boundary is chosen so that no quoted line can act as one of its delimiter lines.
#include <gtest/gtest.h>

#include <string>

#include "queue/dsn.hh"

namespace sr::queue {
namespace {

dsn_input input(std::string_view original) {
  dsn_input in;
  in.reporting_mta = "relay.example.org";
  in.queue_id = "6B0AD79A00000001";
  in.original_sender = "alice@example.org";
  in.arrival = 1796611257;
  in.now = 1796614857;
  in.original_message = original;
  in.recipients.push_back({"bob@example.net", "5.1.1", "550 5.1.1 unknown user", "mx.example.net"});
  return in;
}

size_t count_lines(const std::string& m, const std::string& line) {
  size_t n = 0;
  for (size_t pos = 0; (pos = m.find("\r\n" + line + "\r\n", pos)) != std::string::npos; pos += 2) ++n;
  return n;
}

TEST(dsn, default_boundary_when_the_headers_do_not_hold_it) {
  std::string m = build_dsn(input("From: a@example.org\r\nSubject: x\r\n\r\nbody\r\n"));
  EXPECT_NE(m.find("boundary=\"6B0AD79A00000001.1796614857/relay.example.org\""), std::string::npos);
}

// Found by tests/fuzz/dsn_fuzz: the default boundary is predictable (the queue id is in the
// 250 reply), and a header line "--<boundary>--" closed the report inside the quoted headers.
TEST(dsn, a_header_line_with_the_boundary_changes_it) {
  const std::string base = "6B0AD79A00000001.1796614857/relay.example.org";
  std::string original = "X: 1\r\n--" + base + "--\r\n--" + base + "=1\r\n--" + base + "=23\r\n\r\nbody\r\n";
  std::string m = build_dsn(input(original));
  const std::string chosen = base + "=3";   // =1, =2 (prefix of 23), =23 taken; 3 is free
  EXPECT_NE(m.find("boundary=\"" + chosen + "\""), std::string::npos) << m;
  EXPECT_EQ(count_lines(m, "--" + chosen), 3u);
  EXPECT_EQ(m.substr(m.size() - chosen.size() - 8), "\r\n--" + chosen + "--\r\n");
}

}  // namespace
}  // namespace sr::queue
