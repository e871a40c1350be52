// The escrow portal in headless Chromium (issue 9, item 5), through the whole relay: a
// forced domain whose MX has no STARTTLS, a message with a text part, an HTML part (with a
// script, an event handler and a remote image the sanitiser must drop) and a PDF-like
// attachment is escrowed by the sidecar; the notice reaches the fake MX; the browser
// (tests/tools/browser.py: JavaScript off, a 390x844 phone viewport, the test CA trusted
// through an NSS db) opens the link, asks for a code, reads it from the fake MX, enters it,
// reads the message and downloads the attachment byte for byte. Also: a wrong code, five
// wrong codes locking the message, an expired message and a retracted one (admin endpoint),
// and two relay nodes sharing one portal through a PostgreSQL store.
// Screenshots stay under $SEALRELAY_ARTIFACTS (meson: build/tests/integration/portal-browser/).
// Skipped (GTEST_SKIP) only when chromium or python3-websocket is missing.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "sealrelay/util/text.hh"
#include "support/json_tree.hh"
#include "support/pg_cluster.hh"
#include "support/temp_dir.hh"
#include "support/world.hh"

namespace sr::integ {
namespace {

namespace fs = std::filesystem;
using json_tree::node;

const char* const rcpt = "bob@bank.test";
const char* const sender = "alice@sender.test";
const char* const portal_host = "portal.mx.test";   // in tests/certs/server.crt (*.mx.test)
const char* const forced_escrow = "[[policy]]\ndomain = \"bank.test\"\ntls = \"forced\"\nfallback = [\"escrow\"]\n";

// Where screenshots and downloads of `test` go: $SEALRELAY_ARTIFACTS/<test>, else a temp dir.
fs::path artifacts_dir(const std::string& test, const fs::path& fallback) {
  const char* a = std::getenv("SEALRELAY_ARTIFACTS");
  fs::path d = a && *a ? fs::path(a) / test : fallback / test;
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

// The node at a path of object keys, or null.
const node* at(const node* n, std::initializer_list<const char*> path) {
  for (const char* k : path) {
    if (!n || !n->is(node::object)) return nullptr;
    n = n->get(k);
  }
  return n;
}
std::string text_at(const node* n, std::initializer_list<const char*> path) {
  const node* v = at(n, path);
  return v && (v->is(node::string) || v->is(node::number)) ? v->text : std::string();
}
bool bool_at(const node* n, std::initializer_list<const char*> path) {
  const node* v = at(n, path);
  return v && v->is(node::boolean) && v->text == "true";
}

// PDF-like bytes with every byte value (a download must come back identical).
std::string attachment_bytes() {
  std::string b = "%PDF-1.4\n%\xe2\xe3\xcf\xd3\n";
  for (int r = 0; r < 40; ++r)
    for (int c = 0; c < 256; ++c) b += char(c);
  b += "\n%%EOF\n";
  return b;
}

// The escrowed message: text, HTML with what the sanitiser must remove, the attachment.
std::string message_text(const std::string& msg_id, const std::string& secret) {
  std::string m;
  m += "From: Alice <" + std::string(sender) + ">\r\n";
  m += "To: Bob <" + std::string(rcpt) + ">\r\n";
  m += "Subject: Your December statement, ref. " + secret + "\r\n";
  m += "Message-ID: <" + msg_id + ">\r\n";
  m += "Date: Mon, 07 Dec 2026 01:00:00 +0000\r\n";
  m += "MIME-Version: 1.0\r\n";
  m += "Content-Type: multipart/mixed; boundary=\"outer-b\"\r\n\r\n";
  m += "--outer-b\r\nContent-Type: multipart/alternative; boundary=\"alt-b\"\r\n\r\n";
  m += "--alt-b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n";
  m += "Dear Bob,\r\n\r\nyour December statement is attached (text part, ref. " + secret + ").\r\n\r\n";
  m += "--alt-b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n";
  m += "<html><body><p>Dear Bob,</p><p>your <b>December statement</b> is attached (HTML part, ref. " +
       secret + ").</p>"
       "<script>document.title='pwned'</script>"
       "<img src=\"https://tracker.example/pixel.gif\" onerror=\"alert(1)\">"
       "<p onclick=\"alert(2)\">Questions? Reply to this message.</p></body></html>\r\n";
  m += "--alt-b--\r\n\r\n";
  m += "--outer-b\r\nContent-Type: application/pdf; name=\"statement.pdf\"\r\n";
  m += "Content-Disposition: attachment; filename=\"statement.pdf\"\r\n";
  m += "Content-Transfer-Encoding: base64\r\n\r\n";
  append_base64_lines(m, attachment_bytes());
  m += "--outer-b--\r\n";
  return m;
}

// What one run of browser.py gave: its exit code, output (stderr) and JSON summary.
struct drive_result {
  int exit_code = -1;
  std::string output;
  std::shared_ptr<node> summary;
};

// A loopback world (world.hh) with the sidecar and its portal.
class PortalBrowser : public ::testing::Test, protected world {
 protected:
  PortalBrowser() {
    _outbound_defaults = {{"connect_timeout", "\"2s\""}, {"retry", "[\"1s\"]"}, {"max_queue_age", "\"300s\""}};
  }

  // Stop the relay with SIGTERM: it stops its sidecar (and the portal) before the temp
  // dirs go, so nothing writes into them while they are removed.
  void TearDown() override {
    if (_relay && _relay->running()) _relay->stop();
  }

  void SetUp() override {
    run_result r = run({python_binary(), tool_path("browser.py").string(), "check"}, 10s);
    if (r.exit_code == 77) GTEST_SKIP() << r.output;
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }

  // Start DNS, the MX of bank.test (no STARTTLS) and the relay with the escrow portal;
  // `expiry` is fallback.escrow_expiry.
  void start_world(const std::string& expiry = "1h", const std::string& store = {}) {
    ASSERT_NE(_port, 0);
    ASSERT_TRUE(start_dns("bank.test MX 10 mx1.mx.test\nmx1.mx.test A 127.0.0.2\n"));
    _mx = start_mx({.hosts = {"127.0.0.2"}, .no_starttls = true});
    ASSERT_TRUE(_mx);
    // Free on 127.0.0.1 and 127.0.0.3: a second relay node may serve its portal there.
    _portal_port = free_port_on({"127.0.0.1", "127.0.0.3"});
    _admin_port = free_port();
    ASSERT_NE(_portal_port, 0);
    _admin_listen = "127.0.0.1:" + std::to_string(_admin_port);
    // Escrow only: the key directories are empty (no recipient has a key or certificate).
    fs::create_directories(_keys.path() / "gnupg");
    fs::create_directories(_keys.path() / "smime");
    _fallback = "spawn = true\nportal_listen = \"127.0.0.1:" + std::to_string(_portal_port) + "\"\n" + store +
                "portal_url = \"https://" + portal_host + ":" + std::to_string(_portal_port) + "\"\n" +
                "escrow_expiry = \"" + expiry + "\"\npgp_home = \"" + (_keys.path() / "gnupg").string() +
                "\"\nsmime_dir = \"" + (_keys.path() / "smime").string() + "\"\n";
    ASSERT_TRUE(start_relay(forced_escrow));
    ASSERT_TRUE(wait_sidecar(*_relay)) << _relay->log();
    _art = artifacts_dir(::testing::UnitTest::GetInstance()->current_test_info()->name(), _relay->dir());
  }

  // Every shard of `r` linked to its sidecar (else a hand-off waits for the next retry).
  static bool wait_sidecar(const relay& r) {
    return wait_log(r, [](const std::string& log) {
      size_t n = 0;
      for (size_t p = 0; (p = log.find("fallback: sidecar link up", p)) != std::string::npos; ++p) ++n;
      return n >= 2;   // the harness's two shards
    }, 20s);
  }

  // Send the message and wait for its notice at the MX; the link from it ("" on failure).
  std::string send_and_read_link(const std::string& msg_id, const std::string& secret) {
    std::string why;
    _qid = submit(*_relay, sender, {rcpt}, message_text(msg_id, secret), &why);
    EXPECT_FALSE(_qid.empty()) << why;
    if (_qid.empty()) return {};
    std::regex link_re("https://" + std::string(portal_host) + ":" + std::to_string(_portal_port) +
                       "/m/[A-Za-z0-9_-]+/[A-Za-z0-9_-]+");
    for (auto until = clock::now() + 60s; clock::now() < until;) {
      for (const auto& m : _mx->messages()) {
        if (!contains(m.data, "Subject: Secure message from")) continue;
        std::smatch sm;
        if (std::regex_search(m.data, sm, link_re)) {
          _notice = m;
          return sm.str();
        }
      }
      _mx->wait_messages(_mx->messages().size() + 1, 1s);
    }
    ADD_FAILURE() << "no escrow notice at the MX\n" << dump_audit(*_relay) << _relay->log();
    return {};
  }

  // The shell command that prints the newest code mailed to the recipient.
  std::string code_cmd() const {
    return "'" + python_binary() + "' '" + tool_path("browser.py").string() + "' mx-code --record '" +
           _mx->record_path().string() + "' --rcpt " + rcpt;
  }

  // Run browser.py FLOW --link LINK ... with the test CA and the portal's name resolved.
  drive_result drive(const std::string& flow, const std::string& link, std::vector<std::string> extra,
                     const std::string& name, const std::string& portal_ip = "127.0.0.1") {
    fs::path out = _art / name;
    fs::path summary = _art / (name + ".json");
    std::vector<std::string> argv{python_binary(), tool_path("browser.py").string(), flow, "--link", link,
                                  "--out", out.string(), "--json", summary.string(),
                                  "--ca", (source_root() / "tests" / "certs" / "ca.crt").string(),
                                  "--resolve", std::string(portal_host) + "=" + portal_ip};
    argv.insert(argv.end(), extra.begin(), extra.end());
    argv.insert(argv.end(), {"--code-timeout", "60"});
    run_result r = run(argv, 180s);
    drive_result d{r.exit_code, r.output, nullptr};
    if (r.exit_code == 0) d.summary = json_tree::parser(read_file(summary)).parse();
    return d;
  }

  // Escrow audit lines (kind "escrow") of the message `msg_id` whose event is `event`,
  // waiting until at least `n` are there (fewer at the deadline).
  size_t wait_escrow_audit(const std::string& msg_id, const std::string& event, size_t n,
                           std::chrono::milliseconds deadline = 15s, const std::string& detail = {},
                           const relay* r = nullptr) {
    size_t count = 0;
    for (auto until = clock::now() + deadline;;) {
      count = 0;
      std::string all = read_file(audit_file(r ? *r : *_relay));
      size_t pos = 0;
      while (pos < all.size()) {
        size_t nl = all.find('\n', pos);
        std::string line = all.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos);
        pos = nl == std::string::npos ? all.size() : nl + 1;
        if (contains(line, "\"kind\":\"escrow\"") && contains(line, "\"event\":\"" + event + "\"") &&
            contains(line, msg_id) && (detail.empty() || contains(line, "\"detail\":\"" + detail + "\"")))
          ++count;
      }
      if (count >= n || clock::now() >= until) return count;
      std::this_thread::sleep_for(100ms);   // polling the audit file
    }
  }

  // Nothing of the message's content reached the MX (it has no TLS): only the notice and
  // code mails, which carry none of it.
  void expect_no_content_at_mx(const std::string& secret) {
    for (const auto& m : _mx->messages()) {
      EXPECT_FALSE(contains(m.data, secret)) << m.data;
      EXPECT_FALSE(contains(m.data, "JVBERi0xLjQ")) << "the attachment's base64 reached the MX";
    }
  }

  // POST `form` to `path` on the portal over TLS (the test CA), outside any browser (a
  // reader's browser cannot post without a form); the whole response.
  std::string portal_post(const std::string& path, const std::string& form) {
    raw_client c;
    if (!c.connect(_portal_port, 5s) || !c.start_tls(10s)) return {};
    c.send("POST " + path + " HTTP/1.1\r\nHost: " + portal_host + "\r\n"
           "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: " + std::to_string(form.size()) +
           "\r\nConnection: close\r\n\r\n" + form);
    return c.read_for(5s);
  }

  // POST /escrow/retract {"msg_id": ...} on the admin listener; the whole response.
  std::string retract(const std::string& msg_id) {
    std::string body = "{\"msg_id\": \"" + msg_id + "\"}";
    raw_client c;
    if (!c.connect(_admin_port, 5s)) return {};
    c.send("POST /escrow/retract HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
           "Content-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body);
    return c.read_for(5s);
  }

  // Check a page of a summary fits the phone viewport and carries the security headers.
  static void expect_phone_page(const node* page, const std::string& what) {
    SCOPED_TRACE(what);
    ASSERT_TRUE(page);
    EXPECT_EQ(text_at(page, {"layout", "viewport_width"}), "390");
    EXPECT_TRUE(bool_at(page, {"layout", "fits_width"})) << text_at(page, {"layout", "content_width"});
    std::string csp = text_at(page, {"headers", "content-security-policy"});
    EXPECT_TRUE(contains(csp, "frame-ancestors 'none'")) << csp;
    EXPECT_TRUE(contains(csp, "default-src 'none'")) << csp;
    EXPECT_TRUE(contains(text_at(page, {"headers", "cache-control"}), "no-store"));
    std::string shot = text_at(page, {"screenshot"});
    std::string png = read_file(shot);
    EXPECT_GT(png.size(), 5000u) << shot;
    EXPECT_EQ(png.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8)) << shot;
  }

  // The pages of a portal-flow run: link page, code page, the message (text, sanitised HTML
  // in its frame, no script), the attachment byte for byte, all fitting a phone.
  void expect_full_flow(const drive_result& d, const std::string& secret) {
  ASSERT_EQ(d.exit_code, 0) << d.output << _relay->log();
  ASSERT_TRUE(d.summary) << d.output;
  const node* pages = at(d.summary.get(), {"pages"});
  const node* first = at(pages, {"link"});
  EXPECT_EQ(text_at(first, {"status"}), "200");
  EXPECT_TRUE(contains(text_at(first, {"text"}), "Email me a code")) << text_at(first, {"text"});
  EXPECT_FALSE(contains(text_at(first, {"text"}), secret));
  expect_phone_page(first, "link page");
  const node* enter = at(pages, {"code_requested"});
  EXPECT_TRUE(contains(text_at(enter, {"text"}), "6-digit code")) << text_at(enter, {"text"});
  expect_phone_page(enter, "code page");

  const node* msg = at(pages, {"message"});
  ASSERT_TRUE(msg);
  expect_phone_page(msg, "message page");
  EXPECT_EQ(text_at(msg, {"status"}), "200");
  std::string text = text_at(msg, {"text"});
  EXPECT_TRUE(contains(text, "(text part, ref. " + secret + ")")) << text;
  EXPECT_TRUE(contains(text, "Your December statement, ref. " + secret)) << text;   // the subject, inside only
  EXPECT_TRUE(contains(text, sender)) << text;
  EXPECT_TRUE(contains(text, "statement.pdf")) << text;
  EXPECT_FALSE(bool_at(msg, {"has_script"})) << text_at(msg, {"html"});
  const node* frames = at(msg, {"frames"});
  ASSERT_TRUE(frames && frames->is(node::array) && frames->items.size() == 1) << text_at(msg, {"html"});
  std::string frame = frames->items[0]->text;
  EXPECT_TRUE(contains(frame, "(HTML part, ref. " + secret + ")")) << frame;
  EXPECT_TRUE(contains(frame, "<b>December statement</b>")) << frame;
  EXPECT_TRUE(contains(frame, "Questions? Reply to this message.")) << frame;
  EXPECT_FALSE(contains(frame, "<script")) << frame;
  EXPECT_FALSE(contains(frame, "onerror")) << frame;
  EXPECT_FALSE(contains(frame, "onclick")) << frame;
  EXPECT_FALSE(contains(frame, "tracker.example")) << frame;
  EXPECT_FALSE(contains(text_at(msg, {"html"}), "tracker.example"));

  const node* a = at(d.summary.get(), {"attachment"});
  ASSERT_TRUE(a && a->is(node::object)) << d.output;
  EXPECT_EQ(text_at(a, {"suggested_filename"}), "statement.pdf");
  EXPECT_TRUE(read_file(text_at(a, {"path"})) == attachment_bytes()) << "the download differs from the attachment";

  }

  fake_mx* _mx = nullptr;
  uint16_t _portal_port = 0;
  uint16_t _admin_port = 0;
  fs::path _art;
  std::string _qid;
  mx_message _notice;
  sr::test::temp_dir _keys{"sr-portal-keys", "/tmp"};
};

// The whole flow: notice link, code request, code from the MX, message, attachment.
TEST_F(PortalBrowser, ReadsTheMessageAndDownloadsTheAttachment) {
  ASSERT_NO_FATAL_FAILURE(start_world());
  std::string secret = unique("portal-secret");
  std::string msg_id = unique("portal") + "@sender.test";
  std::string link = send_and_read_link(msg_id, secret);
  ASSERT_FALSE(link.empty());
  EXPECT_TRUE(contains(_notice.data, "Subject: Secure message from " + std::string(sender))) << _notice.data;
  EXPECT_EQ(_notice.rcpts, std::vector<std::string>{rcpt});
  EXPECT_FALSE(_notice.tls);   // the MX has no TLS: the notice goes in the clear, without content

  drive_result d = drive("portal-flow", link, {"--code-cmd", code_cmd()}, "flow");
  ASSERT_NO_FATAL_FAILURE(expect_full_flow(d, secret));
  expect_no_content_at_mx(secret);
  EXPECT_GE(wait_escrow_audit(msg_id, "notice", 1), 1u) << dump_audit(*_relay);
  EXPECT_GE(wait_escrow_audit(msg_id, "code-request", 1), 1u) << dump_audit(*_relay);
  EXPECT_GE(wait_escrow_audit(msg_id, "view", 1), 1u) << dump_audit(*_relay);
  EXPECT_GE(wait_escrow_audit(msg_id, "download", 1), 1u) << dump_audit(*_relay);

  // README's picture (docs/portal.png): the whole message page on a phone.
  std::string full = text_at(d.summary.get(), {"pages", "message", "screenshot_full"});
  EXPECT_EQ(read_file(full).substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8)) << full;
  std::error_code ec;
  fs::copy_file(full, _art / "portal.png", fs::copy_options::overwrite_existing, ec);
}

// One wrong code says how many tries are left; the right code still opens the message.
TEST_F(PortalBrowser, AWrongCodeThenTheRightOne) {
  ASSERT_NO_FATAL_FAILURE(start_world());
  std::string secret = unique("wrong-secret");
  std::string msg_id = unique("wrong") + "@sender.test";
  std::string link = send_and_read_link(msg_id, secret);
  ASSERT_FALSE(link.empty());
  drive_result d = drive("wrong-code", link, {"--tries", "1", "--code-cmd", code_cmd(), "--then-right"}, "wrong1");
  ASSERT_EQ(d.exit_code, 0) << d.output << _relay->log();
  ASSERT_TRUE(d.summary) << d.output;
  const node* tries = at(d.summary.get(), {"tries"});
  ASSERT_TRUE(tries && tries->items.size() == 1);
  EXPECT_EQ(text_at(tries->items[0].get(), {"status"}), "403");
  EXPECT_TRUE(contains(text_at(tries->items[0].get(), {"text"}), "4 tries left")) << text_at(tries->items[0].get(), {"text"});
  const node* right = at(d.summary.get(), {"pages", "right_code"});
  ASSERT_TRUE(right) << d.output;
  EXPECT_EQ(text_at(right, {"status"}), "200");
  EXPECT_TRUE(contains(text_at(right, {"text"}), "(text part, ref. " + secret + ")")) << text_at(right, {"text"});
  EXPECT_GE(wait_escrow_audit(msg_id, "code-wrong", 1), 1u) << dump_audit(*_relay);
  EXPECT_GE(wait_escrow_audit(msg_id, "view", 1), 1u) << dump_audit(*_relay);
  expect_no_content_at_mx(secret);
}

// Five wrong codes lock the message: no sixth try, and the link shows it locked after.
TEST_F(PortalBrowser, FiveWrongCodesLockTheMessage) {
  ASSERT_NO_FATAL_FAILURE(start_world());
  std::string secret = unique("lock-secret");
  std::string msg_id = unique("lock") + "@sender.test";
  std::string link = send_and_read_link(msg_id, secret);
  ASSERT_FALSE(link.empty());
  drive_result d = drive("wrong-code", link, {"--tries", "6", "--code-cmd", code_cmd(), "--then-right"}, "locked");
  ASSERT_EQ(d.exit_code, 0) << d.output << _relay->log();
  ASSERT_TRUE(d.summary) << d.output;
  const node* tries = at(d.summary.get(), {"tries"});
  ASSERT_TRUE(tries && tries->items.size() == 6) << d.output;
  const char* left[] = {"4 tries left", "3 tries left", "2 tries left", "1 try left"};
  for (int i = 0; i < 4; ++i) {
    std::string t = text_at(tries->items[i].get(), {"text"});
    EXPECT_TRUE(contains(t, left[i])) << i << ": " << t;
    EXPECT_EQ(text_at(tries->items[i].get(), {"status"}), "403");
  }
  std::string fifth = text_at(tries->items[4].get(), {"text"});
  EXPECT_TRUE(contains(fifth, "locked")) << fifth;
  EXPECT_EQ(text_at(tries->items[5].get(), {"stopped"}), "no code form") << text_at(tries->items[5].get(), {"text"});
  const node* reopened = at(d.summary.get(), {"pages", "reopened"});
  ASSERT_TRUE(reopened) << d.output;
  EXPECT_TRUE(contains(text_at(reopened, {"text"}), "locked")) << text_at(reopened, {"text"});
  EXPECT_FALSE(at(d.summary.get(), {"pages", "right_code"})) << "a locked message offered a code form";
  for (const auto& t : tries->items) EXPECT_FALSE(contains(text_at(t.get(), {"text"}), secret));
  // Even the right code no longer opens it (posted without the browser: no form is left).
  std::string code = text_at(d.summary.get(), {"code"});
  ASSERT_EQ(code.size(), 6u) << d.output;
  std::string path = link.substr(link.find("/m/"));
  std::string right = portal_post(path, "code=" + code);
  EXPECT_EQ(right.rfind("HTTP/1.1 403", 0), 0u) << right;
  EXPECT_TRUE(contains(right, "locked")) << right;
  EXPECT_FALSE(contains(right, secret)) << right;
  EXPECT_GE(wait_escrow_audit(msg_id, "code-wrong", 4), 4u) << dump_audit(*_relay);
  EXPECT_GE(wait_escrow_audit(msg_id, "code-locked", 1), 1u) << dump_audit(*_relay);
  EXPECT_EQ(wait_escrow_audit(msg_id, "view", 1, 0ms), 0u) << dump_audit(*_relay);
}

// From the moment a message expires its link shows no content (the neutral page).
TEST_F(PortalBrowser, AnExpiredMessageShowsNothing) {
  ASSERT_NO_FATAL_FAILURE(start_world("5s"));
  std::string secret = unique("expired-secret");
  std::string msg_id = unique("expired") + "@sender.test";
  auto sent = std::chrono::system_clock::now();
  std::string link = send_and_read_link(msg_id, secret);
  ASSERT_FALSE(link.empty());
  // Expiry is a moment on the clock: wait until it has surely passed.
  std::this_thread::sleep_until(sent + 7s);
  drive_result d = drive("open", link, {"--name", "expired"}, "expired");
  ASSERT_EQ(d.exit_code, 0) << d.output << _relay->log();
  const node* page = at(d.summary.get(), {"pages", "link"});
  ASSERT_TRUE(page) << d.output;
  EXPECT_EQ(text_at(page, {"status"}), "404");
  EXPECT_TRUE(contains(text_at(page, {"text"}), "Message not available")) << text_at(page, {"text"});
  EXPECT_FALSE(bool_at(page, {"has_request_form"}));
  EXPECT_FALSE(bool_at(page, {"has_code_form"}));
  expect_phone_page(page, "expired page");
  EXPECT_GE(wait_escrow_audit(msg_id, "notice", 1), 1u) << dump_audit(*_relay);
  EXPECT_GE(wait_escrow_audit(msg_id, "refused", 1, 15s, "expired"), 1u) << dump_audit(*_relay);
}

// A retracted message (POST /escrow/retract on the admin listener) shows no content.
TEST_F(PortalBrowser, ARetractedMessageShowsNothing) {
  ASSERT_NO_FATAL_FAILURE(start_world());
  std::string secret = unique("retracted-secret");
  std::string msg_id = unique("retracted") + "@sender.test";
  std::string link = send_and_read_link(msg_id, secret);
  ASSERT_FALSE(link.empty());
  // Before: the link asks for a code.
  drive_result before = drive("open", link, {"--name", "before"}, "before");
  ASSERT_EQ(before.exit_code, 0) << before.output;
  EXPECT_TRUE(bool_at(at(before.summary.get(), {"pages", "link"}), {"has_request_form"})) << before.output;
  std::string reply = retract(msg_id);
  EXPECT_TRUE(reply.rfind("HTTP/1.1 2", 0) == 0) << reply << _relay->log();
  EXPECT_GE(wait_escrow_audit(msg_id, "retraction", 1), 1u) << dump_audit(*_relay);
  drive_result d = drive("open", link, {"--name", "retracted"}, "retracted");
  ASSERT_EQ(d.exit_code, 0) << d.output;
  const node* page = at(d.summary.get(), {"pages", "link"});
  ASSERT_TRUE(page) << d.output;
  EXPECT_EQ(text_at(page, {"status"}), "404");
  EXPECT_TRUE(contains(text_at(page, {"text"}), "Message not available")) << text_at(page, {"text"});
  EXPECT_FALSE(bool_at(page, {"has_request_form"}));
  EXPECT_FALSE(contains(text_at(page, {"html"}), secret));
  EXPECT_GE(wait_escrow_audit(msg_id, "refused", 1, 15s, "retracted"), 1u) << dump_audit(*_relay);
}

// Several relay nodes share one portal through PostgreSQL (fallback.store): node A
// escrows the message, and the reader's browser, sent by the portal's name to node B's
// portal, asks for the code there (B's sidecar mails it through B), enters it and downloads
// the attachment: the whole flow against a store that neither node keeps alone.
TEST_F(PortalBrowser, TwoNodesShareOnePortalThroughPostgresql) {
  sr::test::pg_cluster pg;
  ASSERT_TRUE(pg.start()) << pg.error();
  std::string store = "store = \"postgresql://postgres@127.0.0.1:" + std::to_string(pg.port()) + "/postgres\"\n";
  ASSERT_NO_FATAL_FAILURE(start_world("1h", store));
  std::string secret = unique("pg-secret");
  std::string msg_id = unique("pg") + "@sender.test";
  std::string link = send_and_read_link(msg_id, secret);
  ASSERT_FALSE(link.empty());
  EXPECT_GE(wait_escrow_audit(msg_id, "notice", 1), 1u) << dump_audit(*_relay);

  // Node B: the same portal name and port on 127.0.0.3, the same store.
  std::unique_ptr<relay> a = std::move(_relay);
  std::string b_fallback = _fallback;
  size_t at_listen = b_fallback.find("127.0.0.1:" + std::to_string(_portal_port));
  ASSERT_NE(at_listen, std::string::npos);
  b_fallback.replace(at_listen, 9, "127.0.0.3");
  _fallback = b_fallback;
  _admin_listen = "127.0.0.1:" + std::to_string(free_port());
  ASSERT_TRUE(start_relay(forced_escrow));
  ASSERT_TRUE(wait_sidecar(*_relay)) << _relay->log();

  drive_result d = drive("portal-flow", link, {"--code-cmd", code_cmd()}, "flow-node-b", "127.0.0.3");
  ASSERT_NO_FATAL_FAILURE(expect_full_flow(d, secret));
  // B's sidecar served it: the code request, view and download are in B's audit file.
  EXPECT_GE(wait_escrow_audit(msg_id, "code-request", 1), 1u) << dump_audit(*_relay);
  EXPECT_GE(wait_escrow_audit(msg_id, "view", 1), 1u) << dump_audit(*_relay);
  EXPECT_GE(wait_escrow_audit(msg_id, "download", 1), 1u) << dump_audit(*_relay);
  EXPECT_EQ(wait_escrow_audit(msg_id, "view", 1, 0ms, {}, a.get()), 0u) << dump_audit(*a);
  expect_no_content_at_mx(secret);
  // Both nodes stop before their store does (the cluster goes with this scope).
  if (a->running()) a->stop();
  if (_relay->running()) _relay->stop();
}

}  // namespace
}  // namespace sr::integ
