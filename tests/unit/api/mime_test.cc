// The MIME builder, checked by an independent parser: each built message is written to a
// file and read back by Python's email package (tests/tools/mime_parse.py), which must see
// the same addresses, subject, texts, file names and attachment bytes, with no defect,
// CRLF line ends only and no line over 998 octets.
#include <gtest/gtest.h>

#include <cstdio>
#include <nlohmann/json.hpp>
#include <random>
#include <string>

#include "sealrelay/api/mime.hh"
#include "sealrelay/util/text.hh"
#include "support/file_io.hh"
#include "support/temp_dir.hh"

namespace sr::api {
namespace {

const build_params params{"relay.example.org", "Q1W2E3", 1796611257};  // 2026-12-07 02:40:57 UTC

// Parse `text` with Python's email package; the JSON it prints.
nlohmann::json python_parse(const std::string& text) {
  test::temp_dir dir("sealrelay-api");
  auto file = dir.path() / "msg.eml";
  test::write_file(file, text);
  std::string cmd = std::string("python3 ") + SR_MIME_PARSE + " " + file.string();
  std::string out;
  if (FILE* p = ::popen(cmd.c_str(), "r")) {
    char buf[65536];
    for (int i = 0; i < 100000; ++i) {
      std::size_t n = std::fread(buf, 1, sizeof buf, p);
      if (n == 0) break;
      out.append(buf, n);
    }
    EXPECT_EQ(::pclose(p), 0) << cmd;
  }
  auto j = nlohmann::json::parse(out, nullptr, false);
  EXPECT_FALSE(j.is_discarded()) << out;
  return j;
}

// Build `r`, parse the result back and check the rules every built message keeps.
nlohmann::json build_and_parse(const message_request& r, std::string* text = nullptr) {
  build_result b = build_message(r, params, limits{});
  EXPECT_TRUE(b.ok()) << b.err.error;
  if (!b.ok()) return {};
  if (text) *text = b.message->text;
  nlohmann::json j = python_parse(b.message->text);
  EXPECT_TRUE(j["crlf_only"].get<bool>());
  EXPECT_LE(j["max_line"].get<int>(), 998);
  EXPECT_EQ(j["defects"], nlohmann::json::array()) << b.message->text.substr(0, 2000);
  EXPECT_EQ(j["eight_bit"].get<bool>(), b.message->eight_bit);
  return j;
}

message_request structured() {
  message_request r;
  r.from = "app@example.org";
  r.to = {"b@example.net", "c@example.com"};
  return r;
}

TEST(Mime, PlainAsciiTextIsOneSevenBitPart) {
  message_request r = structured();
  r.subject = "Your order";
  r.text = "Hello,\nyour order shipped.\n";
  std::string text;
  auto j = build_and_parse(r, &text);
  EXPECT_EQ(j["headers"]["from"], "app@example.org");
  EXPECT_EQ(j["headers"]["to"], "b@example.net, c@example.com");
  EXPECT_EQ(j["headers"]["subject"], "Your order");
  EXPECT_EQ(j["headers"]["date"], "Mon, 07 Dec 2026 02:40:57 +0000");
  EXPECT_EQ(j["headers"]["message-id"], "<Q1W2E3@relay.example.org>");
  EXPECT_EQ(j["headers"]["mime-version"], "1.0");
  EXPECT_EQ(j["content_type"], "text/plain");
  ASSERT_EQ(j["parts"].size(), 1u);
  EXPECT_EQ(j["parts"][0]["cte"], "7bit");
  EXPECT_EQ(j["parts"][0]["text"], "Hello,\nyour order shipped.\n");
  EXPECT_FALSE(j["eight_bit"].get<bool>());
  EXPECT_NE(text.find("Content-Type: text/plain; charset=utf-8\r\n"), std::string::npos);
}

TEST(Mime, TextAndHtmlAreMultipartAlternative) {
  message_request r = structured();
  r.text = "Grüße aus Köln\r\n";
  r.html = "<p>Grüße aus <b>Köln</b></p>";
  auto j = build_and_parse(r);
  EXPECT_EQ(j["content_type"], "multipart/alternative");
  ASSERT_EQ(j["parts"].size(), 2u);
  EXPECT_EQ(j["parts"][0]["content_type"], "text/plain");
  EXPECT_EQ(j["parts"][0]["cte"], "8bit");
  EXPECT_EQ(j["parts"][0]["text"], "Grüße aus Köln\n");
  EXPECT_EQ(j["parts"][1]["content_type"], "text/html");
  EXPECT_EQ(j["parts"][1]["text"], "<p>Grüße aus <b>Köln</b></p>\n");  // every text part ends a line
  EXPECT_TRUE(j["eight_bit"].get<bool>());
  EXPECT_EQ(j.contains("headers") && j["headers"].contains("subject"), false);
}

TEST(Mime, NonAsciiSubjectIsEncodedWordsThatDecodeBack) {
  message_request r = structured();
  std::string subject;
  for (int i = 0; i < 20; ++i) subject += "Überweisung 😀 日本語 ";
  subject += "=?not-a-word?=";
  r.subject = subject;
  r.text = "x\n";
  std::string text;
  auto j = build_and_parse(r, &text);
  EXPECT_EQ(j["headers"]["subject"], subject);
  EXPECT_NE(text.find("Subject: =?utf-8?B?"), std::string::npos);
  // Folded: no header line longer than 78 octets.
  std::size_t end = text.find("\r\n\r\n");
  for (std::size_t pos = 0; pos < end;) {
    std::size_t eol = text.find("\r\n", pos);
    EXPECT_LE(eol - pos, 78u) << text.substr(pos, eol - pos);
    pos = eol + 2;
  }
  // Printable ASCII that merely looks like an encoded word is encoded too.
  r.subject = "price =?x?= today";
  EXPECT_EQ(build_and_parse(r)["headers"]["subject"], "price =?x?= today");
}

TEST(Mime, LongLinesAndBoundaryLikeLinesGoQuotedPrintable) {
  message_request r = structured();
  std::string longline(3000, 'a');
  longline += " é trailing space \n";
  r.text = longline + "=3D not an escape\n";
  r.html = "--=_sr_Q1W2E3_alt--\n<p>boundary-like line</p>\n";
  auto j = build_and_parse(r);
  ASSERT_EQ(j["parts"].size(), 2u);
  EXPECT_EQ(j["parts"][0]["cte"], "quoted-printable");
  EXPECT_EQ(j["parts"][0]["text"], *r.text);
  EXPECT_LE(j["max_line"].get<int>(), 78);
  EXPECT_EQ(j["parts"][1]["cte"], "quoted-printable");
  EXPECT_EQ(j["parts"][1]["text"], *r.html);
}

TEST(Mime, AttachmentsRoundTripWithTheirNames) {
  std::mt19937 rng(7);
  std::string blob(20000, '\0');
  for (char& c : blob) c = char(rng());
  message_request r = structured();
  r.subject = "Report";
  r.text = "See attached.\n";
  r.html = "<p>See attached.</p>\n";
  std::string long_name;
  for (int i = 0; i < 12; ++i) long_name += "Überblick-";
  long_name += "2026.pdf";
  r.attachments = {{long_name, "application/pdf", blob},
                   {"quote\"and\\backslash.txt", "text/plain", "plain text\r\n"},
                   {"empty.bin", "application/octet-stream", ""}};
  std::string text;
  auto j = build_and_parse(r, &text);
  EXPECT_EQ(j["content_type"], "multipart/mixed");
  ASSERT_EQ(j["parts"].size(), 5u);
  EXPECT_EQ(j["parts"][0]["content_type"], "text/plain");
  EXPECT_EQ(j["parts"][1]["content_type"], "text/html");
  EXPECT_EQ(j["parts"][2]["content_type"], "application/pdf");
  EXPECT_EQ(j["parts"][2]["filename"], long_name);
  EXPECT_EQ(j["parts"][2]["disposition"], "attachment");
  EXPECT_EQ(j["parts"][2]["cte"], "base64");
  std::string expect;
  append_base64(expect, blob);
  EXPECT_EQ(j["parts"][2]["base64"], expect);
  EXPECT_EQ(j["parts"][3]["filename"], "quote\"and\\backslash.txt");
  EXPECT_EQ(j["parts"][3]["text"], "plain text\n");
  EXPECT_EQ(j["parts"][4]["filename"], "empty.bin");
  EXPECT_EQ(j["parts"][4]["base64"], "");
  EXPECT_NE(text.find("filename*0*=utf-8''%C3%9C"), std::string::npos);  // RFC 2231 sections
  EXPECT_LE(j["max_line"].get<int>(), 78);
}

TEST(Mime, JsonBodyToMessageEndToEnd) {
  // What a web application sends, through the parser and the builder, as a client reads it.
  parse_result p = parse_request(
      R"({"from":"shop@example.org","to":["kunde@example.net"],"subject":"Rechnung Nr. 42 \u2013 Gr\u00fc\u00dfe",)"
      R"("text":"Guten Tag,\n\nanbei die Rechnung.\n","html":"<p>Guten Tag,</p><p>anbei die Rechnung.</p>",)"
      R"("attachments":[{"filename":"Rechnung \u00e4\u00f6\u00fc.pdf","content_type":"application/pdf","content":"JVBERi0xLjQK/w=="}]})",
      limits{});
  ASSERT_TRUE(p.ok()) << p.err.error;
  auto j = build_and_parse(*p.request);
  EXPECT_EQ(j["headers"]["subject"], "Rechnung Nr. 42 – Grüße");
  EXPECT_EQ(j["headers"]["to"], "kunde@example.net");
  EXPECT_EQ(j["content_type"], "multipart/mixed");
  ASSERT_EQ(j["parts"].size(), 3u);
  EXPECT_EQ(j["parts"][0]["text"], "Guten Tag,\n\nanbei die Rechnung.\n");
  EXPECT_EQ(j["parts"][1]["content_type"], "text/html");
  EXPECT_EQ(j["parts"][2]["filename"], "Rechnung äöü.pdf");
  EXPECT_EQ(j["parts"][2]["base64"], "JVBERi0xLjQK/w==");
}

TEST(Mime, AttachmentWithoutText) {
  message_request r = structured();
  r.attachments = {{"a.txt", "text/plain", "A"}};
  auto j = build_and_parse(r);
  EXPECT_EQ(j["content_type"], "multipart/mixed");
  ASSERT_EQ(j["parts"].size(), 1u);
  EXPECT_EQ(j["parts"][0]["filename"], "a.txt");
}

TEST(Mime, ManyRecipientsAreNotListedInTo) {
  message_request r = structured();
  r.text = "t\n";
  r.to.clear();
  for (std::size_t i = 0; i < max_listed_recipients; ++i) r.to.push_back("u" + std::to_string(i) + "@example.net");
  auto listed = build_and_parse(r);
  EXPECT_NE(listed["headers"]["to"].get<std::string>().find("u49@example.net"), std::string::npos);
  r.to.push_back("one-more@example.net");
  EXPECT_EQ(build_and_parse(r)["headers"]["to"], "undisclosed-recipients:;");
}

TEST(Mime, RawContentGetsCrlfDateAndMessageId) {
  message_request r;
  r.from = "a@example.org";
  r.to = {"b@example.net"};
  r.raw = true;
  r.content = "From: a@example.org\nTo: b@example.net\nSubject: raw\n\nline 1\nline 2";
  std::string text;
  auto j = build_and_parse(r, &text);
  EXPECT_EQ(text.rfind("Date: Mon, 07 Dec 2026 02:40:57 +0000\r\nMessage-ID: <Q1W2E3@relay.example.org>\r\n"
                       "From: a@example.org\r\n", 0), 0u);
  EXPECT_EQ(j["headers"]["subject"], "raw");
  EXPECT_EQ(j["parts"][0]["text"], "line 1\nline 2\n");

  r.content = "Date: Tue, 1 Dec 2026 10:00:00 +0100\r\nmessage-id: <own@x>\r\n\r\nbody\r\n";
  build_result kept = build_message(r, params, limits{});
  ASSERT_TRUE(kept.ok());
  EXPECT_EQ(kept.message->text, r.content);  // nothing added, bytes untouched
  EXPECT_FALSE(kept.message->eight_bit);
}

TEST(Mime, RawContentRefusals) {
  message_request r;
  r.from = "a@example.org";
  r.to = {"b@example.net"};
  r.raw = true;
  r.content = "Subject: x\r\n\r\n" + std::string(999, 'x') + "\r\n";
  build_result b = build_message(r, params, limits{});
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.err.status, 400);
  EXPECT_EQ(b.err.field, "content");
  EXPECT_NE(b.err.error.find("998"), std::string::npos);

  for (const char* bad : {"no header here\r\n\r\nbody", " folded first: x\r\n\r\n", "\r\nbody only",
                          ": empty name\r\n\r\n", "Bad Name: x\r\n\r\n"}) {
    r.content = bad;
    build_result e = build_message(r, params, limits{});
    ASSERT_FALSE(e.ok()) << bad;
    EXPECT_EQ(e.err.field, "content") << bad;
  }
  limits l;
  l.max_message_size = 100;
  r.content = "Date: x\r\nMessage-ID: <y>\r\n\r\n" + std::string(80, 'b');  // 114 bytes with CRLF
  build_result big = build_message(r, params, l);
  ASSERT_FALSE(big.ok());
  EXPECT_EQ(big.err.status, 413);
}

TEST(Mime, RawContentWithBareCrOrMixedLineEndsIsRefused) {
  message_request r;
  r.from = "a@example.org";
  r.to = {"b@example.net"};
  r.raw = true;
  for (const char* bad : {"Subject: x\r\n\r\nline\rmore\r\n", "Subject: x\r\n\r\nbody\n.\r\nMAIL FROM:<x>\r\n",
                          "Subject: x\n\nbody\r\n.\r\n", "Subject: x\r\n\r\nends in CR\r"}) {
    r.content = bad;
    build_result e = build_message(r, params, limits{});
    ASSERT_FALSE(e.ok()) << bad;
    EXPECT_EQ(e.err.status, 400) << bad;
    EXPECT_EQ(e.err.field, "content") << bad;
  }
  r.content = "Subject: x\n\nLF only\n";
  EXPECT_TRUE(build_message(r, params, limits{}).ok());
}

TEST(Mime, BuiltMessageOverTheLimitIs413) {
  message_request r = structured();
  r.text = std::string(900, 'x');
  limits l;
  l.max_message_size = 1000;
  build_result b = build_message(r, params, l);
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.err.status, 413);
}

}  // namespace
}  // namespace sr::api
