// The escrow portal's HTTPS server over real TLS on loopback (tests/certs, the client
// verifies the server's certificate against the test CA), with a SQLite store in a temp
// dir and a submit_mail hook standing in for the engine: it reads the code mail from the
// outbox as the engine would, keeps it and unlinks the file. Time is the test's clock.
// Covered: the whole reader flow (page, code mail, wrong code, right code, sanitised HTML,
// byte-identical download, download refused without the cookie), the lock after five wrong
// codes, expired/retracted/unknown links alike, code expiry, rate limits per link and per
// address, security headers on every response, malformed and oversized requests, a failed
// submit, and the audit lines.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "sealrelay/fallback/audit_event.hh"
#include "sealrelay/fallback/escrow.hh"
#include "sealrelay/fallback/mime_view.hh"
#include "sealrelay/fallback/portal_pages.hh"
#include "sealrelay/fallback/portal_server.hh"
#include "sealrelay/fallback/sqlite_store.hh"
#include "sealrelay/http/message.hh"
#include "sealrelay/tls/context.hh"
#include "sealrelay/tls/socket_session.hh"
#include "sealrelay/util/text.hh"
#include "support/https_client.hh"
#include "support/temp_dir.hh"

namespace {

using namespace sr::fallback;
using namespace std::chrono_literals;
using clk = sr::tls::socket_session::clock;
namespace fs = std::filesystem;
using sr::test::reply;
using https_client = sr::test::https_client;

const seconds_t t0{std::chrono::seconds{1'900'000'000}};

std::string cert(const char* name) { return std::string(SR_TEST_CERTS) + "/" + name; }

std::string pdf_bytes() {
  std::string pdf = "%PDF-1.4\n";
  for (int i = 0; i < 70'000; ++i) pdf += static_cast<char>((i * 131 + 7) & 0xFF);
  return pdf + "\n%%EOF\n";
}

std::string escrowed_message() {
  std::string b64;
  sr::append_base64_lines(b64, pdf_bytes());
  return "From: Lab <lab@bank.example>\r\n"
         "To: pat@clinic.example\r\n"
         "Subject: =?UTF-8?Q?Befund_f=C3=BCr_Sie?=\r\n"
         "Date: Mon, 7 Dec 2026 01:00:00 +0000\r\n"
         "Message-ID: <flow@bank.example>\r\n"
         "MIME-Version: 1.0\r\n"
         "Content-Type: multipart/mixed; boundary=\"mix\"\r\n"
         "\r\n"
         "--mix\r\n"
         "Content-Type: multipart/alternative; boundary=\"alt\"\r\n"
         "\r\n"
         "--alt\r\n"
         "Content-Type: text/plain; charset=utf-8\r\n"
         "\r\n"
         "All results are fine.\r\n"
         "--alt\r\n"
         "Content-Type: text/html; charset=utf-8\r\n"
         "\r\n"
         "<p>All <b>results</b> are fine.</p><script>alert(1)</script>"
         "<img src=\"https://tracker.example/p.gif\" onerror=\"alert(2)\">\r\n"
         "--alt--\r\n"
         "--mix\r\n"
         "Content-Type: application/pdf; name=\"befund.pdf\"\r\n"
         "Content-Disposition: attachment; filename=\"befund.pdf\"\r\n"
         "Content-Transfer-Encoding: base64\r\n"
         "\r\n" + b64 +
         "--mix--\r\n";
}

struct captured_mail {
  wire::output out;
  std::string bytes;
};

class PortalServer : public testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(_dir.path().empty());
    _db = (_dir.path() / "escrow.db").string();
    auto st = open_sqlite_store(_db);
    ASSERT_TRUE(st) << st.err();
    _store = std::move(*st);
    auto log = audit_log::open((_dir.path() / "audit.jsonl").string());
    ASSERT_TRUE(log) << log.err();
    _audit.emplace(std::move(*log));
  }
  void TearDown() override {
    if (_server) _server->stop();
  }

  portal::server_options options() {
    portal::server_options o;
    o.listen = "127.0.0.1:0";
    o.cert_file = cert("server.crt");
    o.key_file = cert("server.key");
    o.state_dir = _dir.path().string();
    o.hostname = "relay.test";
    o.open_store = [db = _db]() { return open_sqlite_store(db); };
    o.submit_mail = [this](const wire::output& out, std::chrono::milliseconds) {
      // What the engine does: read the file, spool it, unlink it.
      std::ifstream f(out.path, std::ios::binary);
      std::stringstream ss;
      ss << f.rdbuf();
      std::lock_guard lock(_mu);
      _mails.push_back({out, ss.str()});
      if (!_submit_ok) return false;
      fs::remove(out.path);
      return true;
    };
    o.audit = &*_audit;
    o.clock = [this] { return seconds_t{std::chrono::seconds{_now.load()}}; };
    o.workers = 2;
    o.idle_timeout = 3s;
    o.request_timeout = 3s;
    return o;
  }

  void start(portal::server_options o) {
    _server = std::make_unique<portal::server>(std::move(o));
    auto st = _server->start();
    ASSERT_TRUE(st) << st.err();
    ASSERT_NE(_server->port(), 0);
  }
  void start() { start(options()); }

  escrow::link deposit(std::string_view msg_id = "<flow@bank.example>",
                       seconds_t when = t0, std::chrono::seconds expiry = 30 * 24h) {
    std::string m = escrowed_message();
    auto l = escrow::deposit(*_store, {reinterpret_cast<const uint8_t*>(m.data()), m.size()},
                             msg_id, "lab@bank.example", "pat@clinic.example", when, expiry);
    EXPECT_TRUE(l) << l.err();
    return l ? *l : escrow::link{};
  }

  static std::string path(const escrow::link& l) { return "/m/" + l.id + "/" + l.secret; }

  reply get(const std::string& target, std::string_view cookie = {}) {
    return https_client(_server->port(), cert("ca.crt")).request("GET", target, {}, cookie);
  }
  reply post(const std::string& target, std::string_view body = {}) {
    return https_client(_server->port(), cert("ca.crt")).request("POST", target, body);
  }

  size_t mail_count() {
    std::lock_guard lock(_mu);
    return _mails.size();
  }
  // The code in the last captured code mail (read as a reader would, from its text part).
  std::string last_code() {
    std::lock_guard lock(_mu);
    if (_mails.empty()) return {};
    auto v = mime::parse(_mails.back().bytes);
    auto at = v.page.text.find("is:\n\n    ");
    return at == std::string::npos ? std::string{} : v.page.text.substr(at + 9, 6);
  }
  static std::string other_code(const std::string& code) {
    std::string c = code;
    c[0] = c[0] == '9' ? '0' : static_cast<char>(c[0] + 1);
    return c;
  }

  std::string audit_text() {
    std::ifstream f(_dir.path() / "audit.jsonl");
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
  }

  static void expect_security_headers(const reply& r) {
    EXPECT_EQ(r.header("Content-Security-Policy"), portal::content_security_policy) << r.code;
    EXPECT_NE(r.header("Cache-Control").find("no-store"), std::string::npos) << r.code;
    EXPECT_EQ(r.header("X-Frame-Options"), "DENY") << r.code;
    EXPECT_EQ(r.header("X-Content-Type-Options"), "nosniff") << r.code;
    EXPECT_EQ(r.header("Referrer-Policy"), "no-referrer") << r.code;
    EXPECT_EQ(r.count("Content-Length"), 1) << r.code;
  }

  sr::test::temp_dir _dir{"sealrelay-portal"};
  std::string _db;
  std::unique_ptr<escrow_store> _store;
  std::optional<audit_log> _audit;
  std::unique_ptr<portal::server> _server;
  std::atomic<long long> _now{(t0 + 1h).time_since_epoch().count()};
  std::mutex _mu;
  std::vector<captured_mail> _mails;
  std::atomic<bool> _submit_ok{true};
};

TEST_F(PortalServer, WholeReaderFlow) {
  start();
  auto l = deposit();

  reply page = get(path(l));
  ASSERT_TRUE(page.ok);
  EXPECT_EQ(page.code, 200);
  expect_security_headers(page);
  EXPECT_NE(page.body.find("action=\"" + path(l) + "/code\""), std::string::npos);

  reply asked = post(path(l) + "/code");
  EXPECT_EQ(asked.code, 200);
  expect_security_headers(asked);
  EXPECT_NE(asked.body.find("name=\"code\""), std::string::npos);
  ASSERT_EQ(mail_count(), 1u);
  {
    std::lock_guard lock(_mu);
    const auto& m = _mails[0];
    EXPECT_EQ(m.out.kind, 2);  // escrow_notice
    EXPECT_EQ(m.out.from, "");
    EXPECT_EQ(m.out.rcpts, std::vector<std::string>{"pat@clinic.example"});
    EXPECT_EQ(fs::path(m.out.path).parent_path(), _dir.path() / "fallback" / "outbox");
    EXPECT_NE(m.bytes.find("From: <noreply-escrow@relay.test>\r\n"), std::string::npos) << m.bytes;
    EXPECT_NE(m.bytes.find("To: <pat@clinic.example>\r\n"), std::string::npos);
    EXPECT_NE(m.bytes.find("Message-ID: <" + m.out.msg_id + ">"), std::string::npos);
    EXPECT_EQ(m.bytes.find("Befund"), std::string::npos);  // nothing of the message
  }
  std::string code = last_code();
  ASSERT_EQ(code.size(), 6u);
  EXPECT_TRUE(fs::is_empty(_dir.path() / "fallback" / "outbox"));  // nothing left behind

  reply wrong = post(path(l), "code=" + other_code(code));
  EXPECT_EQ(wrong.code, 403);
  EXPECT_NE(wrong.body.find("4 tries left."), std::string::npos) << wrong.body;
  expect_security_headers(wrong);

  reply early = get(path(l) + "/a/0");
  EXPECT_EQ(early.code, 403);
  EXPECT_EQ(early.body.find("%PDF"), std::string::npos);

  reply shown = post(path(l), "code=" + code.substr(0, 3) + "+" + code.substr(3));
  ASSERT_EQ(shown.code, 200) << shown.body;
  expect_security_headers(shown);
  EXPECT_NE(shown.body.find("Befund f\xC3\xBCr Sie"), std::string::npos);
  EXPECT_NE(shown.body.find("All results are fine."), std::string::npos);
  EXPECT_NE(shown.body.find("&lt;b&gt;results&lt;/b&gt;"), std::string::npos);  // in srcdoc
  EXPECT_EQ(shown.body.find("script"), std::string::npos);
  EXPECT_EQ(shown.body.find("alert("), std::string::npos);
  EXPECT_EQ(shown.body.find("tracker.example"), std::string::npos);
  EXPECT_NE(shown.body.find("href=\"" + path(l) + "/a/0\""), std::string::npos);
  EXPECT_NE(shown.body.find("befund.pdf"), std::string::npos);
  std::string set_cookie = shown.header("Set-Cookie");
  EXPECT_NE(set_cookie.find("; Path=/m/" + l.id + "/;"), std::string::npos) << set_cookie;
  EXPECT_NE(set_cookie.find("HttpOnly"), std::string::npos);
  EXPECT_NE(set_cookie.find("Secure"), std::string::npos);
  EXPECT_NE(set_cookie.find("SameSite=Strict"), std::string::npos);
  EXPECT_NE(set_cookie.find("Max-Age=1800"), std::string::npos);
  std::string cookie = set_cookie.substr(0, set_cookie.find(';'));
  ASSERT_EQ(cookie.substr(0, 10), "sr_portal=");
  EXPECT_EQ(cookie.size(), 10u + 43u);  // 32 random bytes, URL-safe base64

  reply file = get(path(l) + "/a/0", "other=1; " + cookie);
  ASSERT_EQ(file.code, 200);
  expect_security_headers(file);
  EXPECT_TRUE(file.body == pdf_bytes()) << file.body.size();
  EXPECT_EQ(file.header("Content-Type"), "application/pdf");
  EXPECT_NE(file.header("Content-Disposition").find("attachment"), std::string::npos);
  EXPECT_EQ(file.header("Content-Length"), std::to_string(pdf_bytes().size()));

  // A forged cookie, another link's cookie path, a missing attachment, a spent code.
  std::string forged = "sr_portal=" + std::string(43, 'A');
  EXPECT_EQ(get(path(l) + "/a/0", forged).code, 403);
  auto other = deposit("<other@bank.example>");
  EXPECT_EQ(get(path(other) + "/a/0", cookie).code, 403);
  EXPECT_EQ(get(path(l) + "/a/1", cookie).code, 404);
  EXPECT_EQ(get(path(l) + "/a/x", cookie).code, 404);
  EXPECT_EQ(post(path(l), "code=" + code).code, 403);  // used once
  // The session ends after 30 minutes.
  _now += 31 * 60;
  EXPECT_EQ(get(path(l) + "/a/0", cookie).code, 403);

  std::string a = audit_text();
  for (const char* ev : {"\"event\":\"code-request\"", "\"event\":\"code-wrong\"",
                         "\"event\":\"view\"", "\"event\":\"download\"",
                         "\"event\":\"refused\""})
    EXPECT_NE(a.find(ev), std::string::npos) << ev << "\n" << a;
  EXPECT_NE(a.find("\"ip\":\"127.0.0.1\""), std::string::npos) << a;
  EXPECT_NE(a.find("\"msg_id\":\"flow@bank.example\""), std::string::npos) << a;
  EXPECT_NE(a.find("\"rcpt\":\"pat@clinic.example\""), std::string::npos) << a;
  EXPECT_NE(a.find("\"from\":\"lab@bank.example\""), std::string::npos) << a;
  EXPECT_NE(a.find("befund.pdf"), std::string::npos) << a;
  EXPECT_EQ(a.find(l.secret), std::string::npos);  // the secret never leaves the link
  EXPECT_EQ(a.find(cookie.substr(10)), std::string::npos);
}

TEST_F(PortalServer, FiveWrongCodesLock) {
  start();
  auto l = deposit();
  ASSERT_EQ(post(path(l) + "/code").code, 200);
  std::string code = last_code();
  ASSERT_EQ(code.size(), 6u);
  for (int i = 4; i >= 1; --i) {
    reply r = post(path(l), "code=" + other_code(code));
    EXPECT_EQ(r.code, 403);
    std::string left = i == 1 ? "1 try left." : std::to_string(i) + " tries left.";
    EXPECT_NE(r.body.find(left), std::string::npos) << r.body;
  }
  reply fifth = post(path(l), "code=" + other_code(code));
  EXPECT_EQ(fifth.code, 403);
  EXPECT_EQ(fifth.body, portal::locked_page().body);
  // Even the right code no longer opens it, and the link says locked.
  EXPECT_EQ(post(path(l), "code=" + code).body, portal::locked_page().body);
  EXPECT_EQ(get(path(l)).body, portal::locked_page().body);
  EXPECT_EQ(post(path(l) + "/code").body, portal::locked_page().body);
  std::string guessed = l.secret;
  guessed[0] = guessed[0] == 'A' ? 'B' : 'A';
  EXPECT_EQ(get("/m/" + l.id + "/" + guessed).body, portal::unavailable_page().body);
  EXPECT_EQ(mail_count(), 1u);
  EXPECT_NE(audit_text().find("\"event\":\"code-locked\""), std::string::npos);
}

TEST_F(PortalServer, ExpiredRetractedUnknownAndWrongSecretLookAlike) {
  start();
  auto expired = deposit("<old@bank.example>", t0 - 48h, 24h);
  auto retracted = deposit("<gone@bank.example>");
  ASSERT_TRUE(escrow::retract(*_store, "gone@bank.example"));
  auto live = deposit("<live@bank.example>");
  std::string neutral = portal::unavailable_page().body;
  std::string bad_secret = live.secret;
  bad_secret[0] = bad_secret[0] == 'A' ? 'B' : 'A';
  for (const std::string& target :
       {path(expired), path(retracted), "/m/" + live.id + "/" + bad_secret,
        "/m/AAAAAAAAAAAAAAAAAAAAAA/" + live.secret, std::string("/m/x/y"), std::string("/"),
        std::string("/favicon.ico"), "/m/" + live.id, path(live) + "/other"}) {
    reply r = get(target);
    EXPECT_EQ(r.code, 404) << target;
    EXPECT_EQ(r.body, neutral) << target;
    expect_security_headers(r);
  }
  for (const std::string& target : {path(expired), path(retracted)}) {
    EXPECT_EQ(post(target + "/code").body, neutral);
    EXPECT_EQ(post(target, "code=123456").body, neutral);
  }
  EXPECT_EQ(post("/m/" + live.id + "/" + bad_secret + "/code").body, neutral);
  EXPECT_EQ(mail_count(), 0u);  // a wrong secret mails no code
  EXPECT_EQ(get(path(live)).code, 200);
  std::string a = audit_text();
  EXPECT_NE(a.find("\"detail\":\"expired\""), std::string::npos) << a;
  EXPECT_NE(a.find("\"detail\":\"retracted\""), std::string::npos) << a;
  EXPECT_NE(a.find("\"detail\":\"wrong-secret\""), std::string::npos) << a;
}

TEST_F(PortalServer, CodeExpiresAfterTenMinutes) {
  start();
  auto l = deposit();
  ASSERT_EQ(post(path(l) + "/code").code, 200);
  std::string code = last_code();
  _now += 10 * 60 + 1;
  reply r = post(path(l), "code=" + code);
  EXPECT_EQ(r.code, 403);
  EXPECT_EQ(r.body, portal::code_expired_page(l).body);
  // A form without the field counts nothing and asks again.
  EXPECT_EQ(post(path(l), "other=1").body, portal::enter_code_page(l).body);
}

TEST_F(PortalServer, RateLimitsCodeRequestsPerLinkAndPerAddress) {
  auto o = options();
  o.codes_per_ip = 5;
  start(std::move(o));
  auto a = deposit("<a@bank.example>");
  auto b = deposit("<b@bank.example>");
  for (int i = 0; i < 3; ++i) EXPECT_EQ(post(path(a) + "/code").code, 200) << i;
  reply limited = post(path(a) + "/code");
  EXPECT_EQ(limited.code, 429);
  EXPECT_EQ(limited.body, portal::rate_limited_page(a).body);
  expect_security_headers(limited);
  EXPECT_EQ(mail_count(), 3u);
  // Another link from the same address: two more fit the address's five.
  EXPECT_EQ(post(path(b) + "/code").code, 200);
  EXPECT_EQ(post(path(b) + "/code").code, 200);
  EXPECT_EQ(post(path(b) + "/code").code, 429);
  EXPECT_EQ(mail_count(), 5u);
  // Ten minutes later the windows are open again.
  _now += 10 * 60;
  EXPECT_EQ(post(path(a) + "/code").code, 200);
  EXPECT_EQ(mail_count(), 6u);
  EXPECT_NE(audit_text().find("rate-limited"), std::string::npos);
}

TEST_F(PortalServer, MalformedAndOversizedRequestsAndTheServerStaysUp) {
  start();
  auto l = deposit();
  {
    reply r = https_client(_server->port(), cert("ca.crt")).raw("BLAH\r\n\r\n");
    EXPECT_EQ(r.code, 400);
    expect_security_headers(r);
  }
  {
    reply r = https_client(_server->port(), cert("ca.crt")).raw("POST " + path(l) +
                                          " HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n");
    EXPECT_EQ(r.code, 413);
    expect_security_headers(r);
  }
  {
    std::string big = "GET / HTTP/1.1\r\nHost: x\r\n";
    for (int i = 0; i < 200; ++i) big += "X-Pad-" + std::to_string(i) + ": " + std::string(60, 'p') + "\r\n";
    reply r = https_client(_server->port(), cert("ca.crt")).raw(big + "\r\n");
    EXPECT_TRUE(r.code == 431 || r.code == 400) << r.code;
  }
  {
    reply r = https_client(_server->port(), cert("ca.crt")).raw(
        "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n");
    EXPECT_EQ(r.code, 400);
  }
  {
    // Plain text on the TLS port, and a client that connects and says nothing.
    int fd = https_client::dial(_server->port());
    std::string req = "GET / HTTP/1.1\r\n\r\n";
    ASSERT_GT(::send(fd, req.data(), req.size(), MSG_NOSIGNAL), 0);
    char buf[256];
    ::recv(fd, buf, sizeof buf, 0);
    ::close(fd);
  }
  int silent = https_client::dial(_server->port());
  EXPECT_EQ(get(path(l)).code, 200);  // the other worker still serves
  ::close(silent);
  // Keep-alive: two requests on one connection; HEAD has no body.
  https_client c(_server->port(), cert("ca.crt"));
  reply first = c.request("GET", path(l), {}, {}, true);
  EXPECT_EQ(first.code, 200);
  EXPECT_EQ(first.header("Connection"), "");
  reply head = c.request("HEAD", path(l), {}, {}, true);
  EXPECT_EQ(head.code, 200);
  EXPECT_TRUE(head.body.empty());
  reply third = c.request("GET", "/nothing", {}, {}, false);
  EXPECT_EQ(third.code, 404);
  expect_security_headers(third);
}

TEST_F(PortalServer, BoundsConnectionsPerClient) {
  auto o = options();
  o.connections_per_client = 2;
  start(std::move(o));
  auto l = deposit();
  // Two silent connections: one worker each, stuck in the handshake until they go.
  int a = https_client::dial(_server->port()), b = https_client::dial(_server->port());
  ASSERT_GE(a, 0);
  ASSERT_GE(b, 0);
  std::this_thread::sleep_for(1s);  // both accepted and counted (the acceptor polls at once)
  auto ctx = sr::tls::context::client(cert("ca.crt"), sr::tls::tls_version::v1_2);
  ASSERT_TRUE(ctx);
  int third = https_client::dial(_server->port());
  ASSERT_GE(third, 0);
  auto s = sr::tls::socket_session::connect(*ctx, third, "localhost", clk::now() + 5s);
  EXPECT_FALSE(s.ok()) << "a third connection from the same client is closed at once";
  ::close(a);
  ::close(b);
  // Once they are gone the client is served again (bounded wait for the workers to notice).
  int code = 0;
  for (int i = 0; i < 50 && code != 200; ++i) {
    std::this_thread::sleep_for(100ms);
    https_client c(_server->port(), cert("ca.crt"), "localhost", true);
    if (c.connected()) code = c.request("GET", path(l)).code;
  }
  EXPECT_EQ(code, 200);
}

TEST_F(PortalServer, FailedSubmitShowsTheErrorPageAndLeavesNoFile) {
  start();
  auto l = deposit();
  _submit_ok = false;
  reply r = post(path(l) + "/code");
  EXPECT_EQ(r.code, 500);
  EXPECT_EQ(r.body, portal::server_error_page().body);
  EXPECT_EQ(mail_count(), 1u);  // it was offered
  EXPECT_TRUE(fs::is_empty(_dir.path() / "fallback" / "outbox"));
  EXPECT_EQ(audit_text().find("\"event\":\"code-request\""), std::string::npos);
  _submit_ok = true;
  EXPECT_EQ(post(path(l) + "/code").code, 200);
}

TEST_F(PortalServer, StopEndsIdleConnectionsPromptly) {
  start();
  auto l = deposit();
  https_client c(_server->port(), cert("ca.crt"));
  EXPECT_EQ(c.request("GET", path(l), {}, {}, true).code, 200);  // then idles (keep-alive)
  auto begin = clk::now();
  _server->stop();
  EXPECT_LT(clk::now() - begin, 2s);
  _server.reset();
}

TEST_F(PortalServer, RefusesABadListenAddressAndMissingCertificate) {
  auto o = options();
  o.listen = "not-an-address";
  portal::server s1(o);
  EXPECT_FALSE(s1.start());
  auto p = options();
  p.cert_file = cert("missing.crt");
  portal::server s2(p);
  EXPECT_FALSE(s2.start());
}

}  // namespace
