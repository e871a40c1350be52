// The HTTP API listener's pure pieces: compose() (the spool message of a request: the
// Received: header names the token by position and the HTTP(S) leg, one record's meta for
// every recipient, the Message-ID kept for the audit), the plain-HTTP-only-on-loopback rule,
// the status-code labels, and the tokens file's reload (a bad file keeps the old set).
#include <gtest/gtest.h>
#include <sys/stat.h>

#include "sealrelay/inject/compose.hh"
#include "sealrelay/inject/server.hh"
#include "support/file_io.hh"
#include "support/temp_dir.hh"

namespace sr::inject {
namespace {

api::message_request raw_request(std::string content, std::vector<std::string> to = {"b@example.net"}) {
  api::message_request r;
  r.from = "a@example.org";
  r.to = std::move(to);
  r.raw = true;
  r.content = std::move(content);
  return r;
}

compose_params params() {
  compose_params p;
  p.hostname = "relay.example.org";
  p.queue_id = "0123456789ABCDEF";
  p.client_ip = "192.0.2.7";
  p.token_index = 1;
  p.now = 1796611257;  // Mon, 07 Dec 2026 02:40:57 +0000
  return p;
}

TEST(Compose, RawMessageGetsReceivedWithTheTokensNameAndHttps) {
  compose_params p = params();
  p.tls = true;
  p.tls_version = "TLSv1.3";
  p.cipher = "TLS_AES_256_GCM_SHA384";
  p.cipher_bits = 256;
  auto r = raw_request("From: a@example.org\nSubject: hi\nMessage-ID: <own@x.example>\n\nbody\n");
  compose_result c = compose(r, p, api::limits{});
  ASSERT_TRUE(c.ok()) << c.err.error;
  const std::string& t = c.message->text;
  EXPECT_EQ(t.rfind("Received: from api-token-2 (192.0.2.7)\r\n\tby relay.example.org (sealrelay) with HTTPS id "
                    "0123456789ABCDEF\r\n\t(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits))\r\n"
                    "\tfor <b@example.net>; ",
                    0),
            0u)
      << t;
  EXPECT_NE(t.find("\r\nFrom: a@example.org\r\nSubject: hi\r\nMessage-ID: <own@x.example>\r\n\r\nbody\r\n"),
            std::string::npos);
  EXPECT_EQ(t.find('\n'), t.find("\r\n") + 1);
  EXPECT_EQ(c.message->meta.msg_id, "own@x.example");
  EXPECT_EQ(c.message->meta.queue_id, "0123456789ABCDEF");
  EXPECT_EQ(c.message->meta.mail_from, "a@example.org");
  EXPECT_EQ(c.message->meta.auth_user, "api-token-2");
  EXPECT_TRUE(c.message->meta.tls);
  EXPECT_EQ(c.message->meta.kind, spool::message_kind::message);
}

TEST(Compose, PlainHttpAndManyRecipientsMakeOneMessage) {
  std::vector<std::string> to;
  for (int i = 0; i < 2000; ++i) to.push_back("u" + std::to_string(i) + "@example.net");
  api::message_request r = raw_request("Subject: bulk\r\n\r\nsame body for all\r\n", to);
  compose_result c = compose(r, params(), api::limits{.max_recipients = 5000});
  ASSERT_TRUE(c.ok()) << c.err.error;
  EXPECT_EQ(c.message->meta.rcpts, to);  // one record, every recipient
  const std::string& t = c.message->text;
  EXPECT_NE(t.find("with HTTP id 0123456789ABCDEF;"), std::string::npos) << t;
  EXPECT_EQ(t.find(" for <"), std::string::npos);  // no single recipient named
  EXPECT_EQ(t.find("same body for all"), t.rfind("same body for all"));
  // Message-ID and Date added (the queue id and our host name), and kept in the meta.
  EXPECT_NE(t.find("\r\nMessage-ID: <0123456789ABCDEF@relay.example.org>\r\n"), std::string::npos);
  EXPECT_NE(t.find("\r\nDate: Mon, 07 Dec 2026 02:40:57 +0000\r\n"), std::string::npos);
  EXPECT_EQ(c.message->meta.msg_id, "0123456789ABCDEF@relay.example.org");
  EXPECT_FALSE(c.message->meta.tls);
}

TEST(Compose, StructuredRequestIsBuiltAsMime) {
  api::message_request r;
  r.from = "a@example.org";
  r.to = {"b@example.net"};
  r.subject = "Gr\xc3\xbc\xc3\x9f" "e";
  r.text = "hello\n";
  r.html = "<p>hello</p>";
  compose_result c = compose(r, params(), api::limits{});
  ASSERT_TRUE(c.ok()) << c.err.error;
  EXPECT_NE(c.message->text.find("multipart/alternative"), std::string::npos);
  EXPECT_NE(c.message->text.find("Subject: =?utf-8?B?"), std::string::npos);
  EXPECT_EQ(c.message->meta.msg_id, "0123456789ABCDEF@relay.example.org");
}

TEST(Compose, BuilderRefusalsComeBackWithTheirField) {
  compose_result bare_cr = compose(raw_request("Subject: x\r\n\r\na\rb\r\n"), params(), api::limits{});
  ASSERT_FALSE(bare_cr.ok());
  EXPECT_EQ(bare_cr.err.status, 400);
  EXPECT_EQ(bare_cr.err.field, "content");
  compose_result big =
      compose(raw_request("Subject: x\r\n\r\n" + std::string(200, 'b') + "\r\n"), params(), api::limits{.max_message_size = 100});
  ASSERT_FALSE(big.ok());
  EXPECT_EQ(big.err.status, 413);
}

TEST(Listen, PlainHttpOnlyOnLoopback) {
  EXPECT_TRUE(check_listen("127.0.0.1:8025", false));
  EXPECT_TRUE(check_listen("127.3.4.5:8025", false));
  EXPECT_TRUE(check_listen("[::1]:8025", false));
  EXPECT_TRUE(check_listen("0.0.0.0:8443", true));
  EXPECT_FALSE(check_listen("0.0.0.0:8080", false));
  EXPECT_FALSE(check_listen("192.0.2.1:8080", false));
  EXPECT_FALSE(check_listen("[::]:8080", false));
  EXPECT_FALSE(check_listen("localhost:8080", true));
}

TEST(Metrics, CodeIndexPutsUnlistedCodesLast) {
  EXPECT_EQ(counted_codes[code_index(202)], 202);
  EXPECT_EQ(counted_codes[code_index(415)], 415);
  EXPECT_EQ(code_index(418), counted_codes_size - 1);
}

TEST(Tokens, ReloadKeepsTheOldSetWhenTheFileIsBad) {
  test::temp_dir dir;
  auto path = dir.path() / "tokens";
  test::write_file(path, "first-token-0123456789\n");
  ::chmod(path.c_str(), 0600);
  token_source src(path.string());
  EXPECT_EQ(src.current(), nullptr);
  ASSERT_TRUE(src.reload());
  uint64_t g = src.generation();
  EXPECT_EQ(src.current()->check("Bearer first-token-0123456789"), api::auth_outcome::ok);

  test::write_file(path, "short\n");
  EXPECT_FALSE(src.reload());
  EXPECT_EQ(src.generation(), g);
  EXPECT_EQ(src.current()->check("Bearer first-token-0123456789"), api::auth_outcome::ok);

  test::write_file(path, "# rotated\nsecond-token-0123456789\n");
  ::chmod(path.c_str(), 0644);
  EXPECT_FALSE(src.reload());  // readable by others: refused, old set kept
  ::chmod(path.c_str(), 0600);
  ASSERT_TRUE(src.reload());
  EXPECT_GT(src.generation(), g);
  EXPECT_EQ(src.current()->check("Bearer first-token-0123456789"), api::auth_outcome::wrong);
  EXPECT_EQ(src.current()->check("Bearer second-token-0123456789"), api::auth_outcome::ok);
}

// RFC 8689: a raw message's "TLS-Required: No" header reaches the record's meta, as over SMTP.
TEST(Compose, TlsRequiredNoHeaderIsKeptInTheMeta) {
  auto r = raw_request("From: a@example.org\nTLS-Required: No\nSubject: hi\n\nbody\n");
  compose_result c = compose(r, params(), api::limits{});
  ASSERT_TRUE(c.ok()) << c.err.error;
  EXPECT_TRUE(c.message->meta.tls_required_no);
  EXPECT_FALSE(c.message->meta.requiretls);
  auto plain = raw_request("From: a@example.org\nSubject: TLS-Required: No\n\nTLS-Required: No\n");
  compose_result d = compose(plain, params(), api::limits{});
  ASSERT_TRUE(d.ok()) << d.err.error;
  EXPECT_FALSE(d.message->meta.tls_required_no) << "only the header field counts";
}

}  // namespace
}  // namespace sr::inject
