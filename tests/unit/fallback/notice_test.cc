// The escrow notice and code mails (notice.hh): exact Subject and link, nothing of the
// escrowed message (deposited for real, its subject and body searched for in the notice),
// CRLF framing, refusal of CR/LF and other unsafe header input, RFC 2047 for UTF-8 senders.
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "sealrelay/fallback/escrow.hh"
#include "sealrelay/fallback/notice.hh"
#include "sealrelay/fallback/sqlite_store.hh"
#include "support/base64.hh"
#include "support/temp_dir.hh"

namespace sr::fallback {
namespace {

using namespace std::chrono_literals;

const seconds_t t0{std::chrono::seconds{1'796'601'600}};  // Mon, 07 Dec 2026 00:00:00 UTC
const escrow::link k_link{"AAAAAAAAAAAAAAAAAAAAAA", "b-_9b-_9b-_9b-_9b-_9b-_9b-_9b-_9b-_9b-_9abc"};

notice_params params() {
  notice_params p;
  p.notice_from = "escrow@relay.example";
  p.recipient = "patient@mail.example";
  p.sender = "dr.who@clinic.example";
  p.portal_url = "https://portal.example";
  p.hostname = "relay.example";
  p.link = k_link;
  p.now = t0;
  p.expires = t0 + 24h * 5 + 14min;
  p.msg_id_local = "notice.1";
  return p;
}

// The header block of a message, unfolded, as (name, value) pairs in order.
std::vector<std::pair<std::string, std::string>> headers_of(const std::string& m) {
  std::vector<std::pair<std::string, std::string>> out;
  std::size_t end = m.find("\r\n\r\n");
  std::string block = m.substr(0, end + 2);
  std::size_t i = 0;
  while (i < block.size()) {
    std::size_t eol = block.find("\r\n", i);
    std::string line = block.substr(i, eol - i);
    i = eol + 2;
    if (!line.empty() && (line[0] == ' ' || line[0] == '\t')) {
      out.back().second += line;
      continue;
    }
    auto colon = line.find(':');
    out.emplace_back(line.substr(0, colon), line.substr(colon + 2));
  }
  return out;
}

int count_header(const std::string& m, std::string_view name) {
  int n = 0;
  for (auto& [k, v] : headers_of(m)) n += k == name;
  return n;
}

std::string header(const std::string& m, std::string_view name) {
  for (auto& [k, v] : headers_of(m))
    if (k == name) return v;
  return {};
}

// Every line ends in CRLF, no bare CR or LF, no line over 998 octets.
void expect_crlf_framing(const std::string& m) {
  ASSERT_TRUE(m.ends_with("\r\n"));
  std::size_t line = 0;
  for (std::size_t i = 0; i < m.size(); ++i) {
    if (m[i] == '\r') {
      ASSERT_LT(i + 1, m.size());
      EXPECT_EQ(m[i + 1], '\n') << "bare CR at " << i;
      ++i;
      line = 0;
    } else if (m[i] == '\n') {
      ADD_FAILURE() << "bare LF at " << i;
    } else {
      EXPECT_LE(++line, 998u);
    }
  }
}

TEST(EscrowNotice, SubjectLinkAndHeaders) {
  auto p = params();
  p.portal_url = "https://portal.example//";  // trailing slashes do not double up
  auto n = escrow_notice(p);
  ASSERT_TRUE(n) << n.err();
  const std::string& m = n->message;
  expect_crlf_framing(m);
  EXPECT_EQ(header(m, "Subject"), "Secure message from dr.who@clinic.example");
  EXPECT_NE(m.find("\r\nSubject: Secure message from dr.who@clinic.example\r\n"),
            std::string::npos);
  std::string url = "https://portal.example/m/" + k_link.id + "/" + k_link.secret;
  EXPECT_NE(m.find("\r\n" + url + "\r\n"), std::string::npos) << "text part link";
  EXPECT_NE(m.find("<a href=\"" + url + "\">"), std::string::npos) << "html part link";
  EXPECT_EQ(m.find("example//m/"), std::string::npos);
  EXPECT_EQ(header(m, "From"), "<escrow@relay.example>");
  EXPECT_EQ(header(m, "To"), "<patient@mail.example>");
  EXPECT_EQ(header(m, "Date"), "Mon, 7 Dec 2026 00:00:00 +0000");  // smtp::append_rfc5322_date, as DSNs
  EXPECT_EQ(header(m, "Message-ID"), "<notice.1@relay.example>");
  EXPECT_EQ(n->msg_id, "notice.1@relay.example");
  EXPECT_EQ(header(m, "Auto-Submitted"), "auto-generated");
  EXPECT_EQ(header(m, "MIME-Version"), "1.0");
  for (auto name : {"From", "To", "Date", "Message-ID", "Subject", "Auto-Submitted",
                    "MIME-Version", "Content-Type"})
    EXPECT_EQ(count_header(m, name), 1) << name;
  EXPECT_EQ(headers_of(m).size(), 8u);
  // multipart/alternative: text then HTML, closed.
  std::string ct = header(m, "Content-Type");
  ASSERT_TRUE(ct.starts_with("multipart/alternative; boundary=\"")) << ct;
  std::string boundary = ct.substr(ct.find('"') + 1);
  boundary.pop_back();
  auto text_at = m.find("--" + boundary + "\r\nContent-Type: text/plain; charset=utf-8\r\n");
  auto html_at = m.find("--" + boundary + "\r\nContent-Type: text/html; charset=utf-8\r\n");
  ASSERT_NE(text_at, std::string::npos);
  ASSERT_NE(html_at, std::string::npos);
  EXPECT_LT(text_at, html_at);
  EXPECT_TRUE(m.ends_with("\r\n--" + boundary + "--\r\n"));
  EXPECT_NE(m.find("Content-Transfer-Encoding: 7bit"), std::string::npos);
  // The expiry, for people, in both parts.
  std::string expiry = "12 December 2026, 00:14 UTC";
  EXPECT_NE(m.find(expiry), std::string::npos);
  EXPECT_NE(m.find(expiry, html_at), std::string::npos);
  EXPECT_NE(m.find("viewport"), std::string::npos);
  EXPECT_EQ(m.find("<script"), std::string::npos);
}

TEST(EscrowNotice, CarriesNothingOfTheEscrowedMessage) {
  sr::test::temp_dir dir("sealrelay-notice");
  ASSERT_FALSE(dir.path().empty());
  auto store = open_sqlite_store((dir.path() / "escrow.db").string());
  ASSERT_TRUE(store) << store.err();
  const std::string subject = "Your biopsy results: malignant";
  const std::string body = "Dear patient, the histology shows carcinoma in situ.";
  std::string msg = "From: <dr.who@clinic.example>\r\nTo: <patient@mail.example>\r\n"
                    "Subject: " + subject + "\r\nMessage-ID: <orig.7@clinic.example>\r\n\r\n" +
                    body + "\r\n";
  auto link = escrow::deposit(**store,
                              {reinterpret_cast<const uint8_t*>(msg.data()), msg.size()},
                              "<orig.7@clinic.example>", "dr.who@clinic.example",
                              "patient@mail.example", t0, 120h);
  ASSERT_TRUE(link) << link.err();
  auto p = params();
  p.link = *link;
  p.msg_id_local = {};
  auto n = escrow_notice(p);
  ASSERT_TRUE(n) << n.err();
  const std::string& m = n->message;
  EXPECT_NE(m.find("https://portal.example/m/" + link->id + "/" + link->secret),
            std::string::npos);
  for (std::string_view secret : {std::string_view(subject), std::string_view("biopsy"),
                                  std::string_view("malignant"), std::string_view(body),
                                  std::string_view("carcinoma"),
                                  std::string_view("orig.7@clinic.example")})
    EXPECT_EQ(m.find(secret), std::string::npos) << secret;
  // A fresh Message-ID on the relay's host name, different every time.
  EXPECT_TRUE(n->msg_id.ends_with("@relay.example")) << n->msg_id;
  auto n2 = escrow_notice(p);
  ASSERT_TRUE(n2);
  EXPECT_NE(n->msg_id, n2->msg_id);
  EXPECT_EQ(header(m, "Message-ID"), "<" + n->msg_id + ">");
}

TEST(EscrowNotice, HeaderInjectionIsRefused) {
  for (std::string bad : std::vector<std::string>{"a@b.example\r\nBcc: victim@evil.example",
                          "a@b.example\nBcc: victim@evil.example", "a@b.example\rX: y",
                          std::string("a@b.example\0x", 13), "a@b.example\tx",
                          "\r\nSubject: hi@x"}) {
    auto p = params();
    p.sender = bad;
    EXPECT_FALSE(escrow_notice(p)) << "sender " << bad;
    p = params();
    p.recipient = bad;
    EXPECT_FALSE(escrow_notice(p)) << "recipient " << bad;
    p = params();
    p.notice_from = bad;
    EXPECT_FALSE(escrow_notice(p)) << "from " << bad;
    p = params();
    p.hostname = bad;
    EXPECT_FALSE(escrow_notice(p)) << "hostname " << bad;
    p = params();
    p.msg_id_local = bad;
    EXPECT_FALSE(escrow_notice(p)) << "msg id " << bad;
    // portal_url is a string_view: the URL must outlive the call (a temporary here was
    // freed before escrow_notice read it; ASan's heap-use-after-free, issue 12).
    const std::string portal = "https://portal.example/" + bad;
    p = params();
    p.portal_url = portal;
    EXPECT_FALSE(escrow_notice(p)) << "portal " << bad;
  }
  // Not an address, or a second one / a display name smuggled in.
  for (std::string bad : std::vector<std::string>{"", "no-at-sign",
                                                  "a@b.example>, <c@d.example", "\"x\" <a@b>",
                          "a@b.example (comment)", std::string(255, 'a') + "@x"}) {
    auto p = params();
    p.sender = bad;
    EXPECT_FALSE(escrow_notice(p)) << "sender " << bad;
  }
  auto p = params();
  p.sender = "a@b.example\xff";  // not UTF-8
  EXPECT_FALSE(escrow_notice(p));
}

TEST(EscrowNotice, UnsafePortalUrlOrLinkIsRefused) {
  for (std::string bad : std::vector<std::string>{"javascript:alert(1)", "ftp://portal.example",
                                                  "https://",
                          "https://portal.example/\"><b>", "https://portal example",
                          "https://portal.example/<x>", "https://pörtal.example",
                          "//portal.example"}) {
    auto p = params();
    p.portal_url = bad;
    EXPECT_FALSE(escrow_notice(p)) << bad;
  }
  for (escrow::link bad : {escrow::link{"", "abc"}, escrow::link{"abc", ""},
                           escrow::link{"a/b", "abc"}, escrow::link{"abc", "a.b"},
                           escrow::link{"abc", "a\"b"}, escrow::link{"a=", "abc"}}) {
    auto p = params();
    p.link = bad;
    EXPECT_FALSE(escrow_notice(p)) << bad.id << " " << bad.secret;
  }
  auto l = portal_link("http://127.0.0.1:8443/", k_link);
  ASSERT_TRUE(l);
  EXPECT_EQ(*l, "http://127.0.0.1:8443/m/" + k_link.id + "/" + k_link.secret);
}

// Decode the encoded words of an RFC 2047 header value (B, UTF-8), dropping the folds.
std::string decode_words(const std::string& v, std::size_t* words) {
  std::string out;
  *words = 0;
  std::size_t i = 0;
  while ((i = v.find("=?UTF-8?B?", i)) != std::string::npos) {
    std::size_t end = v.find("?=", i + 10);
    EXPECT_LE(end + 2 - i, 75u) << "encoded word too long";
    out += sr::test::base64_decode(v.substr(i + 10, end - i - 10));
    ++*words;
    i = end + 2;
  }
  return out;
}

TEST(EscrowNotice, Utf8SenderIsEncodedWords) {
  auto p = params();
  p.sender = "jörg.müller@bänk.example";
  auto n = escrow_notice(p);
  ASSERT_TRUE(n) << n.err();
  expect_crlf_framing(n->message);
  std::size_t header_end = n->message.find("\r\n\r\n");
  for (std::size_t i = 0; i < header_end; ++i)
    EXPECT_LT(static_cast<unsigned char>(n->message[i]), 0x80) << "non-ASCII header at " << i;
  std::string subject = header(n->message, "Subject");
  ASSERT_TRUE(subject.starts_with("Secure message from =?UTF-8?B?")) << subject;
  std::size_t words = 0;
  EXPECT_EQ(decode_words(subject, &words), "jörg.müller@bänk.example");
  EXPECT_EQ(words, 1u);
  EXPECT_NE(n->message.find("Content-Transfer-Encoding: 8bit"), std::string::npos);

  // A long one is split into several words, never inside a character.
  std::string local;
  for (int i = 0; i < 40; ++i) local += "é";
  const std::string long_sender = local + "@bänk.example";
  p.sender = long_sender;
  n = escrow_notice(p);
  ASSERT_TRUE(n) << n.err();
  subject = header(n->message, "Subject");
  auto raw = n->message.substr(n->message.find("\r\nSubject: "));
  EXPECT_NE(raw.find("?=\r\n =?UTF-8?B?"), std::string::npos) << "folded between words";
  EXPECT_EQ(decode_words(subject, &words), std::string(p.sender));
  EXPECT_GE(words, 2u);
  for (std::size_t i = 0, at = 0; (at = subject.find("=?UTF-8?B?", i)) != std::string::npos;
       i = at + 1) {
    auto end = subject.find("?=", at + 10);
    auto part = sr::test::base64_decode(subject.substr(at + 10, end - at - 10));
    ASSERT_FALSE(part.empty());
    EXPECT_NE(static_cast<unsigned char>(part[0]) & 0xc0, 0x80u) << "word starts mid-character";
  }
}

TEST(HeaderText, AsciiPassesControlsRefused) {
  EXPECT_EQ(*header_text("plain text"), "plain text");
  EXPECT_FALSE(header_text("a\r\nb"));
  EXPECT_FALSE(header_text("a\x7f"));
  EXPECT_FALSE(header_text("\xc3"));  // truncated UTF-8
  EXPECT_FALSE(header_text("\xc0\xaf"));  // overlong
  EXPECT_EQ(*header_text("é"), "=?UTF-8?B?w6k=?=");
}

TEST(CodeMail, SubjectCodeValidityAndRefusals) {
  code_mail_params p;
  p.notice_from = "escrow@relay.example";
  p.recipient = "patient@mail.example";
  p.hostname = "relay.example";
  p.code = "042917";
  p.now = t0;
  p.msg_id_local = "code.1";
  auto n = code_mail(p);
  ASSERT_TRUE(n) << n.err();
  const std::string& m = n->message;
  expect_crlf_framing(m);
  EXPECT_EQ(header(m, "Subject"), "Your code for a secure message");
  EXPECT_EQ(header(m, "To"), "<patient@mail.example>");
  EXPECT_EQ(header(m, "Message-ID"), "<code.1@relay.example>");
  EXPECT_EQ(header(m, "Auto-Submitted"), "auto-generated");
  EXPECT_EQ(count_header(m, "Subject"), 1);
  EXPECT_NE(m.find("\r\n    042917\r\n"), std::string::npos);
  EXPECT_NE(m.find("10 minutes"), std::string::npos);
  EXPECT_NE(m.find("7 December 2026, 00:10 UTC"), std::string::npos);
  EXPECT_EQ(m.find("<script"), std::string::npos);
  for (std::string_view bad : {"", "12345", "1234567", "12a456", "12345\n", " 12345"}) {
    p.code = bad;
    EXPECT_FALSE(code_mail(p)) << bad;
  }
  p.code = "123456";
  p.recipient = "patient@mail.example\r\nBcc: x@y";
  EXPECT_FALSE(code_mail(p));
}

}  // namespace
}  // namespace sr::fallback
