// Relaxed canonicalisation (RFC 6376 §3.4.2, §3.4.4): the §3.4.5 example, the empty-body
// and trailing-empty-line rules, WSP and CRLF split across chunks at every position, and
// the streaming canonicaliser against a one-shot reference of the RFC's rules on
// generated bodies (bounded count, fixed seed).
#include <gtest/gtest.h>

#include <random>
#include <regex>
#include <string>

#include "sealrelay/dkim/canon.hh"

namespace {

using sr::dkim::canon_header_relaxed;
using sr::dkim::relaxed_body;

struct string_sink final : sr::dkim::body_sink {
  std::string out;
  void write(std::string_view b) override { out.append(b); }
};

std::string body_of(std::string_view in) {
  string_sink s;
  relaxed_body b(s);
  b.feed(in);
  b.finish();
  return s.out;
}

std::string header_of(std::string_view field) {
  std::string out;
  canon_header_relaxed(field, out);
  return out;
}

// The RFC's rules applied to a whole CRLF-terminated body, line by line.
std::string reference_body(const std::string& in) {
  std::string out, pending;
  std::size_t pos = 0;
  while (pos < in.size()) {
    std::size_t e = in.find("\r\n", pos);
    std::string line = in.substr(pos, e - pos);
    pos = e + 2;
    line = std::regex_replace(line, std::regex("[ \t]+"), " ");
    if (!line.empty() && line.back() == ' ') line.pop_back();
    if (line.empty()) {
      pending += "\r\n";
    } else {
      out += pending + line + "\r\n";
      pending.clear();
    }
  }
  return out;
}

TEST(DkimCanon, Rfc6376Section345Example) {
  // A: <SP> X <CRLF> / B <SP> : <SP> Y <TAB><CRLF> <TAB> Z <SP><SP><CRLF> / <CRLF> / body
  EXPECT_EQ(header_of("A: X"), "a:X\r\n");
  EXPECT_EQ(header_of("B : Y\t\r\n\tZ  "), "b:Y Z\r\n");
  EXPECT_EQ(body_of(" C \r\nD \t E\r\n\r\n\r\n"), " C\r\nD E\r\n");
}

TEST(DkimCanon, HeaderRules) {
  EXPECT_EQ(header_of("SUBJECT:hello"), "subject:hello\r\n");
  EXPECT_EQ(header_of("Subject:\t  hello   world \t"), "subject:hello world\r\n");
  EXPECT_EQ(header_of("Subject \t:x"), "subject:x\r\n");
  EXPECT_EQ(header_of("Subject:"), "subject:\r\n");
  EXPECT_EQ(header_of("Subject:   "), "subject:\r\n");
  // Folds: CRLF removed, the WSP that follows joins the run.
  EXPECT_EQ(header_of("To: a@x.example,\r\n b@y.example,\r\n\t\tc@z.example"),
            "to:a@x.example, b@y.example, c@z.example\r\n");
  // Case of the value is kept; 8-bit bytes pass through.
  EXPECT_EQ(header_of("Subject: Gr\xc3\xbc\xc3\x9f" "e AUS"), "subject:Gr\xc3\xbc\xc3\x9f" "e AUS\r\n");
  std::string out;
  canon_header_relaxed("DKIM-Signature: v=1; b=", out, false);
  EXPECT_EQ(out, "dkim-signature:v=1; b=");
}

TEST(DkimCanon, EmptyBodyAndEmptyLines) {
  EXPECT_EQ(body_of(""), "");
  EXPECT_EQ(body_of("\r\n"), "");
  EXPECT_EQ(body_of("\r\n\r\n\r\n"), "");
  EXPECT_EQ(body_of(" \t \r\n\t\r\n"), "");  // lines of WSP only are empty lines
  EXPECT_EQ(body_of("a\r\n\r\n\r\n"), "a\r\n");
  EXPECT_EQ(body_of("a\r\n \r\n\r\nb\r\n\r\n"), "a\r\n\r\n\r\nb\r\n");  // inner empty lines kept
  EXPECT_EQ(body_of("\r\n\r\na\r\n"), "\r\n\r\na\r\n");                  // leading ones too
}

TEST(DkimCanon, WhitespaceAndLineEnds) {
  EXPECT_EQ(body_of("a  \t b \t\r\n"), "a b\r\n");
  EXPECT_EQ(body_of("\t lead\r\n"), " lead\r\n");  // leading WSP is one SP, not dropped
  EXPECT_EQ(body_of("abc"), "abc\r\n");            // a CRLF is added to a last line
  EXPECT_EQ(body_of("abc  "), "abc\r\n");          // whose trailing WSP is at a line end
  // Only CRLF ends a line: bare LF and bare CR are content.
  EXPECT_EQ(body_of("a\nb\r\n"), "a\nb\r\n");
  EXPECT_EQ(body_of("a \rb\r\n"), "a \rb\r\n");
  EXPECT_EQ(body_of("a\r\r\n"), "a\r\r\n");
  EXPECT_EQ(body_of("a\r"), "a\r\r\n");
  EXPECT_EQ(body_of("\r\n\r"), "\r\n\r\r\n");
}

TEST(DkimCanon, EverySplitPointGivesTheSameBytes) {
  const std::string body = "x \t y  \r\n\r\n \t\r\nlast \t line\r\n\r\n\r\n";
  const std::string whole = body_of(body);
  ASSERT_EQ(whole, "x y\r\n\r\n\r\nlast line\r\n");
  for (std::size_t i = 0; i <= body.size(); ++i) {
    for (std::size_t j = i; j <= body.size(); ++j) {
      string_sink s;
      relaxed_body b(s);
      b.feed(std::string_view(body).substr(0, i));
      b.feed(std::string_view(body).substr(i, j - i));
      b.feed(std::string_view(body).substr(j));
      b.finish();
      ASSERT_EQ(s.out, whole) << "split at " << i << "," << j;
      EXPECT_EQ(b.length(), whole.size());
    }
  }
}

TEST(DkimCanon, StreamingMatchesTheReferenceOnGeneratedBodies) {
  std::mt19937 rng(6376);
  const char alphabet[] = {'a', 'b', ' ', '\t', '\r', '\n', '\xe9', '.'};
  for (int round = 0; round < 2000; ++round) {
    std::string body;
    const int lines = static_cast<int>(rng() % 8);
    for (int l = 0; l < lines; ++l) {
      const int n = static_cast<int>(rng() % 12);
      for (int k = 0; k < n; ++k) {
        char c = alphabet[rng() % sizeof alphabet];
        if (c == '\r' || c == '\n') c = ' ';  // lines hold no CR/LF in the reference
        body.push_back(c);
      }
      body += "\r\n";
    }
    string_sink s;
    relaxed_body b(s);
    std::size_t pos = 0;
    while (pos < body.size()) {  // random chunk sizes, 1..5
      const std::size_t n = std::min<std::size_t>(1 + rng() % 5, body.size() - pos);
      b.feed(std::string_view(body).substr(pos, n));
      pos += n;
    }
    b.finish();
    ASSERT_EQ(s.out, reference_body(body)) << "round " << round;
  }
}

}  // namespace
