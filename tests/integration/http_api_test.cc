// The HTTP injection API ([http], DESIGN §7) against the real daemon, driven by real `curl`:
// HTTPS with the test CA, a token file, raw and structured JSON messages delivered to a fake
// MX over TLS (the domain's policy is forced), a 2,000-recipient request stored once, the
// refusals (no token 401 with WWW-Authenticate, wrong token 403, invalid JSON 400 naming the
// field, oversized 413 before and after reading, wrong Content-Type 415, too many
// recipients), audit lines and metrics like SMTP's, keep-alive, plain HTTP on loopback,
// and SIGHUP reloading the tokens file.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <thread>
#include <csignal>

#include "support/harness.hh"
#include "support/peers.hh"
#include "support/world.hh"

namespace sr::integ {
namespace {

namespace fs = std::filesystem;

constexpr const char* token = "test-token-0123456789abcdef";
constexpr const char* other_token = "second-token-0123456789abcdef";
constexpr const char* domain = "api.test";

struct http_answer {
  int code = 0;
  std::string body;
  std::string headers;  // the response head(s), as curl dumped them
  std::string raw;      // curl's whole output, for failure messages
};


// POST `body` (from a file: no argv size limit) with curl; `auth` "" sends no Authorization.
http_answer post(const fs::path& dir, const std::string& url, const std::string& body, const std::string& auth,
                 const std::string& content_type = "application/json", std::vector<std::string> extra = {}) {
  static int n = 0;
  fs::path in = dir / ("req" + std::to_string(++n) + ".json");
  fs::path head = dir / ("head" + std::to_string(n) + ".txt");
  fs::path out = dir / ("out" + std::to_string(n) + ".txt");
  std::ofstream(in, std::ios::binary) << body;
  std::vector<std::string> argv{"curl", "-sS", "--max-time", "20", "--cacert",
                                (source_root() / "tests" / "certs" / "ca.crt").string(),
                                "-D", head.string(), "-o", out.string(), "-w", "%{http_code}",
                                "--data-binary", "@" + in.string()};
  if (!auth.empty()) argv.insert(argv.end(), {"-H", "Authorization: Bearer " + auth});
  if (!content_type.empty()) argv.insert(argv.end(), {"-H", "Content-Type: " + content_type});
  argv.insert(argv.end(), extra.begin(), extra.end());
  argv.push_back(url);
  run_result r = run(argv, 30s);
  http_answer a;
  a.raw = r.output;
  a.code = std::atoi(r.output.c_str());
  a.body = read_file(out);
  a.headers = read_file(head);
  return a;
}

// The "queue_ids" of a 202 body ({"queue_ids":["..."]}): the first one.
std::string queue_id_of(const std::string& body) {
  auto at = body.find("\"queue_ids\":[\"");
  if (at == std::string::npos) return "";
  at += 14;
  return body.substr(at, body.find('"', at) - at);
}

// A JSON string literal of `s` (quotes, backslashes, control characters escaped).
std::string json_string(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else {
      out += c;
    }
  }
  return out + "\"";
}

std::string recipients(size_t n, const std::string& prefix = "u") {
  std::string to = "[";
  for (size_t i = 0; i < n; ++i) to += (i ? ",\"" : "\"") + prefix + std::to_string(i) + "@" + domain + "\"";
  return to + "]";
}

// Occurrences of `needle` in every spool file of `r` (the record format keeps bytes as is).
size_t spool_occurrences(const relay& r, const std::string& needle) {
  size_t n = 0;
  std::error_code ec;
  for (fs::recursive_directory_iterator it(r.state_dir() / "spool", ec), end; !ec && it != end; it.increment(ec)) {
    if (!it->is_regular_file(ec)) continue;
    std::string text = read_file(it->path());
    for (size_t pos = 0; (pos = text.find(needle, pos)) != std::string::npos; pos += needle.size()) ++n;
  }
  return n;
}

// Messages the MX received whose text has `marker`, and their recipients in total.
std::pair<size_t, size_t> received_with(const fake_mx& mx, const std::string& marker) {
  size_t msgs = 0, rcpts = 0;
  for (const auto& m : mx.messages())
    if (m.data.find(marker) != std::string::npos) {
      ++msgs;
      rcpts += m.rcpts.size();
    }
  return {msgs, rcpts};
}

bool wait_received(const fake_mx& mx, const std::string& marker, size_t rcpts, std::chrono::milliseconds deadline) {
  auto until = std::chrono::steady_clock::now() + deadline;
  while (std::chrono::steady_clock::now() < until) {
    if (received_with(mx, marker).second >= rcpts) return true;
    std::this_thread::sleep_for(50ms);
  }
  return received_with(mx, marker).second >= rcpts;
}

// One relay with an HTTPS API, a forced-TLS domain routed to a fake MX, and an admin
// endpoint, shared by the suite's tests (each test uses its own markers).
class HttpApi : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir = std::make_unique<temp_dir>();
    uint16_t mx_p = mx_port();
    ASSERT_NE(mx_p, 0);
    mx = std::make_unique<fake_mx>(fake_mx_options{.hosts = {"127.0.0.2"}, .port = mx_p});
    ASSERT_TRUE(mx->start()) << mx->error();
    write_private_file(dir->path() / "api-tokens", std::string("# test tokens\n") + token + "\n");
    api_port = free_port();
    admin_port = free_port();
    relay_options o = delivery_options("127.0.0.1:9", mx_p);
    o.limits = {"max_recipients = 2500", "max_message_size = 200000"};
    o.admin_listen = "127.0.0.1:" + std::to_string(admin_port);
    o.extra_toml = route_to(domain, "127.0.0.2", mx_p) + "[[policy]]\ndomain = \"" + domain +
                   "\"\ntls = \"forced\"\nfallback = [\"defer\"]\n\n[http]\nlisten = \"127.0.0.1:" +
                   std::to_string(api_port) + "\"\ntokens_file = \"" + (dir->path() / "api-tokens").string() + "\"\n";
    r = std::make_unique<relay>(o);
    ASSERT_TRUE(r->start()) << r->error() << r->log();
  }
  static void TearDownTestSuite() {
    if (r) r->stop();
    r.reset();
    mx.reset();
    dir.reset();
  }
  void SetUp() override {
    if (!r || !r->running()) GTEST_SKIP() << "the relay did not start";
  }
  static std::string url() { return "https://127.0.0.1:" + std::to_string(api_port) + "/api/v1/messages"; }

  static std::unique_ptr<temp_dir> dir;
  static std::unique_ptr<fake_mx> mx;
  static std::unique_ptr<relay> r;
  static uint16_t api_port, admin_port;
};
std::unique_ptr<temp_dir> HttpApi::dir;
std::unique_ptr<fake_mx> HttpApi::mx;
std::unique_ptr<relay> HttpApi::r;
uint16_t HttpApi::api_port = 0, HttpApi::admin_port = 0;

TEST_F(HttpApi, RawContentIsDeliveredOverTlsWithReceivedAndAudit) {
  std::string marker = unique("raw");
  std::string content = "From: Shop <shop@sender.test>\nTo: a@api.test\nSubject: order " + marker +
                        "\n\nYour order " + marker + " has shipped.\n";
  http_answer a = post(dir->path(), url(),
                       "{\"from\":\"shop@sender.test\",\"to\":[\"a@api.test\"],\"content\":" + json_string(content) + "}",
                       token);
  ASSERT_EQ(a.code, 202) << a.raw << a.body << r->log();
  EXPECT_NE(a.headers.find("application/json"), std::string::npos);
  std::string qid = queue_id_of(a.body);
  ASSERT_EQ(qid.size(), 16u) << a.body;

  ASSERT_TRUE(wait_received(*mx, marker, 1, 20s)) << r->log();
  mx_message got;
  for (const auto& m : mx->messages())
    if (m.data.find(marker) != std::string::npos) got = m;
  EXPECT_TRUE(got.tls);  // forced policy: never in the clear
  EXPECT_EQ(got.mail_from, "shop@sender.test");
  EXPECT_EQ(got.rcpts, std::vector<std::string>{"a@api.test"});
  EXPECT_FALSE(got.bare_lf);
  EXPECT_EQ(got.data.rfind("Received: from api-token-1 (127.0.0.1)\r\n\tby relay.test (sealrelay) with HTTPS id " + qid, 0),
            0u)
      << got.data;
  EXPECT_EQ(got.data.find(token), std::string::npos);  // the token itself never travels
  EXPECT_NE(got.data.find("\r\nMessage-ID: <" + qid + "@relay.test>\r\n"), std::string::npos);
  EXPECT_NE(got.data.find("\r\nDate: "), std::string::npos);
  EXPECT_NE(got.data.find("Your order " + marker + " has shipped.\r\n"), std::string::npos);

  auto lines = wait_audit(*r, 1, [&](const audit_line& l) { return l.queue_id == qid && l.outcome == "delivered"; });
  ASSERT_EQ(lines.size(), 1u) << dump_audit(*r);
  expect_audit_fields(lines[0]);
  EXPECT_EQ(lines[0].policy, "forced");
  EXPECT_TRUE(lines[0].tls);
  EXPECT_EQ(lines[0].msg_id, qid + "@relay.test");
}

TEST_F(HttpApi, StructuredMessageIsBuiltAsMime) {
  std::string marker = unique("mime");
  http_answer a = post(dir->path(), url(),
                       "{\"from\":\"app@sender.test\",\"to\":[\"b@api.test\"],\"subject\":\"Gr\\u00fc\\u00dfe " + marker +
                           "\",\"text\":\"plain " + marker + "\\n\",\"html\":\"<p>html " + marker +
                           "</p>\",\"attachments\":[{\"filename\":\"a.txt\",\"content_type\":\"text/plain\","
                           "\"content\":\"aGVsbG8K\"}]}",
                       token);
  ASSERT_EQ(a.code, 202) << a.raw << a.body;
  ASSERT_TRUE(wait_received(*mx, marker, 1, 20s)) << r->log();
  for (const auto& m : mx->messages()) {
    if (m.data.find(marker) == std::string::npos) continue;
    EXPECT_TRUE(m.tls);
    EXPECT_NE(m.data.find("multipart/mixed"), std::string::npos);
    EXPECT_NE(m.data.find("multipart/alternative"), std::string::npos);
    EXPECT_NE(m.data.find("Subject: =?utf-8?B?"), std::string::npos);
    EXPECT_NE(m.data.find("filename=\"a.txt\""), std::string::npos) << m.data;
    EXPECT_NE(m.data.find("aGVsbG8K"), std::string::npos);
  }
}

TEST_F(HttpApi, BulkRequestStoresTheBodyOnceAndReachesEveryRecipient) {
  constexpr size_t n = 2000;
  std::string marker = unique("bulk");
  std::string body_text;
  for (int i = 0; i < 200; ++i) body_text += "line " + std::to_string(i) + " of " + marker + "\n";
  http_answer a = post(dir->path(), url(),
                       "{\"from\":\"news@sender.test\",\"to\":" + recipients(n, "b" + marker.substr(5, 6)) +
                           ",\"content\":" + json_string("Subject: bulk " + marker + "\n\n" + body_text) + "}",
                       token, "application/json", {"-H", "Expect: 100-continue"});
  ASSERT_EQ(a.code, 202) << a.raw << a.body << r->log();
  // Asked before sending the body (Expect: 100-continue, as curl does over 1 MiB), the
  // relay said go on once the head passed its checks.
  EXPECT_NE(a.headers.find("HTTP/1.1 100 Continue"), std::string::npos) << a.headers;
  // One record holds the body once for all 2,000 recipients ("line 7 of <marker>" once).
  EXPECT_EQ(spool_occurrences(*r, "line 7 of " + marker), 1u);
  ASSERT_TRUE(wait_received(*mx, marker, n, 60s)) << received_with(*mx, marker).second << r->log();
  auto [msgs, rcpts] = received_with(*mx, marker);
  EXPECT_EQ(rcpts, n);
  EXPECT_LT(msgs, n / 10);  // several recipients per transaction, not one copy each
}

TEST_F(HttpApi, MissingTokenIs401AndWrongTokenIs403) {
  std::string req = "{\"from\":\"a@sender.test\",\"to\":[\"c@api.test\"],\"content\":\"Subject: x\\n\\nx\\n\"}";
  http_answer none = post(dir->path(), url(), req, "");
  EXPECT_EQ(none.code, 401) << none.raw;
  EXPECT_NE(none.headers.find("WWW-Authenticate: Bearer"), std::string::npos) << none.headers;
  EXPECT_NE(none.body.find("\"field\":\"Authorization\""), std::string::npos) << none.body;
  http_answer wrong = post(dir->path(), url(), req, "not-the-token-0123456789");
  EXPECT_EQ(wrong.code, 403) << wrong.raw;
  EXPECT_NE(wrong.body.find("\"error\""), std::string::npos);
  http_answer basic = post(dir->path(), url(), req, "", "application/json", {"-u", "user:pw"});
  EXPECT_EQ(basic.code, 401);
}

TEST_F(HttpApi, RefusalsNameTheirFieldWithTheirStatus) {
  http_answer syntax = post(dir->path(), url(), "{\"from\":\"a@sender.test\",\"to\":[", token);
  EXPECT_EQ(syntax.code, 400) << syntax.raw;
  EXPECT_NE(syntax.body.find("\"error\":"), std::string::npos) << syntax.body;
  http_answer bad_rcpt =
      post(dir->path(), url(), "{\"from\":\"a@sender.test\",\"to\":[\"ok@api.test\",\"not an address\"],\"text\":\"x\"}", token);
  EXPECT_EQ(bad_rcpt.code, 400);
  EXPECT_NE(bad_rcpt.body.find("\"field\":\"to[1]\""), std::string::npos) << bad_rcpt.body;
  http_answer smuggle = post(dir->path(), url(),
                             "{\"from\":\"a@sender.test\",\"to\":[\"d@api.test\"],\"content\":\"Subject: x\\r\\n\\r\\n"
                             "a\\n.\\r\\nMAIL FROM:<evil@x>\\r\\n\"}",
                             token);
  EXPECT_EQ(smuggle.code, 400) << smuggle.body;
  EXPECT_NE(smuggle.body.find("\"field\":\"content\""), std::string::npos);
  http_answer type = post(dir->path(), url(), "{}", token, "text/plain");
  EXPECT_EQ(type.code, 415) << type.raw;
  EXPECT_NE(type.body.find("\"field\":\"Content-Type\""), std::string::npos);
  http_answer many = post(dir->path(), url(),
                          "{\"from\":\"a@sender.test\",\"to\":" + recipients(2501) + ",\"text\":\"x\"}", token);
  EXPECT_EQ(many.code, 400) << many.body;
  EXPECT_NE(many.body.find("\"field\":\"to"), std::string::npos) << many.body;
  // Larger than max_message_size once built (read, then refused) ...
  std::string big(210000, 'x');
  for (size_t i = 500; i < big.size(); i += 501) big[i] = '\n';
  http_answer built = post(dir->path(), url(),
                           "{\"from\":\"a@sender.test\",\"to\":[\"e@api.test\"],\"content\":" +
                               json_string("Subject: big\n\n" + big) + "}",
                           token);
  EXPECT_EQ(built.code, 413) << built.body;
  // ... and a body over the request cap, refused from its Content-Length, never read.
  std::string huge = "{\"from\":\"a@sender.test\",\"to\":[\"e@api.test\"],\"content\":\"" + std::string(500000, 'x') + "\"}";
  http_answer cap = post(dir->path(), url(), huge, token);
  EXPECT_EQ(cap.code, 413) << cap.raw;
  // Nothing of these reached the spool's queue.
  EXPECT_EQ(spool_occurrences(*r, "evil@x"), 0u);
  http_answer other = post(dir->path(), "https://127.0.0.1:" + std::to_string(api_port) + "/api/v2/x", "{}", token);
  EXPECT_EQ(other.code, 404);
  run_result get = run({"curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert",
                        (source_root() / "tests" / "certs" / "ca.crt").string(), url()},
                       30s);
  EXPECT_EQ(get.output, "405");
}

TEST_F(HttpApi, KeepAliveCarriesSeveralRequestsAndMetricsCountThem) {
  std::string marker = unique("keep");
  std::string req = "{\"from\":\"k@sender.test\",\"to\":[\"k@api.test\"],\"content\":\"Subject: " + marker +
                    "\\n\\nbody\\n\"}";
  fs::path in = dir->path() / "keep.json";
  std::ofstream(in) << req;
  // Two requests on one connection (curl reuses it: "Re-using existing connection").
  std::vector<std::string> argv{"curl", "-sS", "-v", "--max-time", "20", "--cacert",
                                (source_root() / "tests" / "certs" / "ca.crt").string(),
                                "-H", std::string("Authorization: Bearer ") + token,
                                "-H", "Content-Type: application/json", "--data-binary", "@" + in.string(),
                                url(), "--next", "--cacert", (source_root() / "tests" / "certs" / "ca.crt").string(),
                                "-H", std::string("Authorization: Bearer ") + token,
                                "-H", "Content-Type: application/json", "--data-binary", "@" + in.string(), url()};
  run_result res = run(argv, 30s);
  EXPECT_NE(res.output.find("Re-using existing connection"), std::string::npos) << res.output;
  size_t accepted = 0;
  for (size_t pos = 0; (pos = res.output.find("\"queue_ids\"", pos)) != std::string::npos; ++pos) ++accepted;
  EXPECT_EQ(accepted, 2u) << res.output;
  ASSERT_TRUE(wait_received(*mx, marker, 2, 20s));

  run_result m = run({"curl", "-sS", "http://127.0.0.1:" + std::to_string(admin_port) + "/metrics"}, 10s);
  EXPECT_NE(m.output.find("sealrelay_http_requests_total{code=\"202\"}"), std::string::npos) << m.output;
  EXPECT_EQ(m.output.find("sealrelay_http_requests_total{code=\"202\"} 0\n"), std::string::npos);
  EXPECT_EQ(m.output.find("sealrelay_messages_accepted_total 0\n"), std::string::npos);
}

TEST_F(HttpApi, SighupReloadsTheTokensFile) {
  std::string req = "{\"from\":\"a@sender.test\",\"to\":[\"r@api.test\"],\"content\":\"Subject: reload\\n\\nx\\n\"}";
  EXPECT_EQ(post(dir->path(), url(), req, other_token).code, 403);
  write_private_file(dir->path() / "api-tokens", std::string(token) + "\n" + other_token + "\n");
  r->signal(SIGHUP);
  int code = 0;
  for (int i = 0; i < 50 && code != 202; ++i) {  // picked up on the shards' next tick
    code = post(dir->path(), url(), req, other_token).code;
    if (code != 202) std::this_thread::sleep_for(100ms);
  }
  EXPECT_EQ(code, 202) << r->log();
  EXPECT_TRUE(wait_log(*r, [](const std::string& l) { return l.find("api-token-2") != std::string::npos; }));
}

TEST(HttpApiPlain, PlainHttpOnLoopbackWorks) {
  temp_dir dir;
  uint16_t mx_p = mx_port();
  ASSERT_NE(mx_p, 0);
  fake_mx mx({.hosts = {"127.0.0.3"}, .port = mx_p});
  ASSERT_TRUE(mx.start()) << mx.error();
  write_private_file(dir.path() / "tokens", std::string(token) + "\n");
  uint16_t port = free_port();
  relay_options o = delivery_options("127.0.0.1:9", mx_p);
  o.limits = {"data_timeout = \"1s\"", "idle_timeout = \"2s\""};
  o.extra_toml = route_to(domain, "127.0.0.3", mx_p) + "[http]\nlisten = \"127.0.0.1:" + std::to_string(port) +
                 "\"\ntls = false\ntokens_file = \"" + (dir.path() / "tokens").string() + "\"\n";
  relay r(o);
  ASSERT_TRUE(r.start()) << r.error() << r.log();
  std::string marker = unique("plain");
  http_answer a = post(dir.path(), "http://127.0.0.1:" + std::to_string(port) + "/api/v1/messages",
                       "{\"from\":\"p@sender.test\",\"to\":[\"p@api.test\"],\"text\":\"" + marker + "\"}", token);
  ASSERT_EQ(a.code, 202) << a.raw << r.log();
  ASSERT_TRUE(wait_received(mx, marker, 1, 20s)) << r.log();
  for (const auto& m : mx.messages()) {
    if (m.data.find(marker) != std::string::npos) {
      EXPECT_NE(m.data.find(" (sealrelay) with HTTP id "), std::string::npos) << m.data;
    }
  }

  // Two requests pipelined in one write, then the client half-closes: both are answered,
  // in order, before the relay closes.
  std::string one = "{\"from\":\"p@sender.test\",\"to\":[\"p@api.test\"],\"text\":\"" + marker + " pipelined\"}";
  std::string req = "POST /api/v1/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + std::string(token) +
                    "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(one.size()) + "\r\n\r\n" + one;
  std::ofstream(dir.path() / "pipelined.txt", std::ios::binary) << req << req;
  run_result py = run({"python3", "-c",
                       "import socket,sys\n"
                       "s=socket.create_connection(('127.0.0.1'," + std::to_string(port) + "),timeout=10)\n"
                       "s.sendall(open(sys.argv[1],'rb').read()); s.shutdown(socket.SHUT_WR)\n"
                       "out=b''\n"
                       "while True:\n"
                       "  b=s.recv(65536)\n"
                       "  if not b: break\n"
                       "  out+=b\n"
                       "sys.stdout.write(out.decode())\n",
                       (dir.path() / "pipelined.txt").string()},
                      20s);
  size_t answers = 0;
  for (size_t pos = 0; (pos = py.output.find("HTTP/1.1 202 Accepted\r\n", pos)) != std::string::npos; ++pos) ++answers;
  EXPECT_EQ(answers, 2u) << py.output;
  EXPECT_TRUE(wait_received(mx, marker + " pipelined", 2, 20s)) << r.log();

  // A request that stops arriving gets 408 after limits.data_timeout; a kept-alive
  // connection without a request is closed after limits.idle_timeout.
  auto started = std::chrono::steady_clock::now();
  raw_client slow;
  ASSERT_TRUE(slow.connect(port));
  ASSERT_TRUE(slow.send("POST /api/v1/messages HTTP/1.1\r\nHost: x\r\n"));
  std::string got = slow.read_for(5s);
  EXPECT_EQ(got.rfind("HTTP/1.1 408 ", 0), 0u) << got;
  EXPECT_TRUE(slow.eof());
  EXPECT_LT(std::chrono::steady_clock::now() - started, 3s);
  raw_client idle;
  ASSERT_TRUE(idle.connect(port));
  started = std::chrono::steady_clock::now();
  EXPECT_EQ(idle.read_for(6s), "");
  EXPECT_TRUE(idle.eof());
  EXPECT_GE(std::chrono::steady_clock::now() - started, 1900ms);
  EXPECT_LT(std::chrono::steady_clock::now() - started, 4s);
  EXPECT_EQ(r.stop(), 0) << r.log();

  // Plain HTTP anywhere but loopback is a config error.
  o.extra_toml = "[http]\nlisten = \"0.0.0.0:" + std::to_string(port) + "\"\ntls = false\ntokens_file = \"" +
                 (dir.path() / "tokens").string() + "\"\n";
  relay bad(o);
  EXPECT_FALSE(bad.start(10s));
  EXPECT_NE((bad.error() + bad.log()).find("loopback"), std::string::npos) << bad.error() << bad.log();
}

}  // namespace
}  // namespace sr::integ
