// Submission listeners with AUTH (issue 10 item 1) against the real daemon: real `swaks
// --auth` over STARTTLS and implicit TLS, Python smtplib (starttls() and SMTP_SSL), a
// Thunderbird-like AUTH LOGIN exchange on the raw client, AUTH before STARTTLS (538 5.7.11),
// a wrong password (535 5.7.8, audited without the password), a spoofed envelope sender
// and a spoofed From: (553 5.7.1, nothing delivered), what the fake MX receives (Received:
// with the TLS cipher and the user), the brute-force brake (delays then 421 while another
// client on the same shard is served at once), the spool record keeping the user, and SIGHUP
// reloading the users file.
#include <gtest/gtest.h>

#include <csignal>
#include <filesystem>
#include <thread>

#include "sealrelay/spool/partition.hh"
#include "support/harness.hh"
#include "support/peers.hh"
#include "support/world.hh"

namespace sr::integ {
namespace {

namespace fs = std::filesystem;

constexpr const char* alice = "alice@example.org";
constexpr const char* alice_pw = "alice-Secret-1";
constexpr const char* bob_pw = "bob-Secret-2";
constexpr const char* carol_pw = "carol-Secret-3";
// mkpasswd -m yescrypt (Debian's whois package), one per password above.
constexpr const char* alice_line = "alice@example.org:$y$j9T$qzvCj2vW6dC1ux1QjI.1s1$pCPUAnPL8RZsCaLdl5Wol7y7wrh1Wn9.gNXJk8vafs2\n";
// bob may send as news-*@example.org and anyone at lists.example.org (his own name is no address).
constexpr const char* bob_line =
    "bob:$y$j9T$FwOjhRAcL.zSyprnE0n440$wXKJDQuBnP1qP91gEgLoQ2Cv6A2xTyMY5p4OnlpzFk2:news-*@example.org,*@lists.example.org\n";
constexpr const char* carol_line = "carol@example.org:$y$j9T$NeHAZHX4pzQSPpjtjrBMp/$2FOhInZmAxT5j./.0B2p.42v0G20KyAzlhdlYDMEnX8\n";
constexpr const char* domain = "dest.test";


std::string b64(std::string_view s) {
  static const char* t = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string o;
  size_t i = 0;
  for (; i + 2 < s.size(); i += 3) {
    unsigned v = (unsigned char)s[i] << 16 | (unsigned char)s[i + 1] << 8 | (unsigned char)s[i + 2];
    o += t[v >> 18];
    o += t[(v >> 12) & 63];
    o += t[(v >> 6) & 63];
    o += t[v & 63];
  }
  if (i + 1 == s.size()) {
    unsigned v = (unsigned char)s[i] << 16;
    o += t[v >> 18];
    o += t[(v >> 12) & 63];
    o += "==";
  } else if (i + 2 == s.size()) {
    unsigned v = (unsigned char)s[i] << 16 | (unsigned char)s[i + 1] << 8;
    o += t[v >> 18];
    o += t[(v >> 12) & 63];
    o += t[(v >> 6) & 63];
    o += '=';
  }
  return o;
}

std::string plain_response(std::string_view user, std::string_view pw) {
  std::string m;
  m += '\0';
  m += user;
  m += '\0';
  m += pw;
  return b64(m);
}

// A relay with a STARTTLS submission listener (0), an implicit-TLS one (1) and a relay
// listener (2), every domain routed to a fake MX, one shard (the brute-force test needs
// its clients on one shard), and the brake's numbers given by the test.
struct world_for_submission {
  std::unique_ptr<temp_dir> dir = std::make_unique<temp_dir>();
  std::unique_ptr<fake_mx> mx;
  std::unique_ptr<relay> r;
  fs::path users;
  uint16_t admin_port = 0;

  bool start(const std::string& auth_extra = "") {
    uint16_t mx_p = mx_port();
    if (mx_p == 0) return false;
    mx = std::make_unique<fake_mx>(fake_mx_options{.hosts = {"127.0.0.2"}, .port = mx_p});
    if (!mx->start()) {
      ADD_FAILURE() << mx->error();
      return false;
    }
    users = dir->path() / "users";
    write_private_file(users, std::string("# submission users\n") + alice_line + bob_line);
    admin_port = free_port();
    relay_options o = delivery_options("127.0.0.1:9", mx_p);
    o.shards = 1;
    o.listeners = {listener{.tls = "starttls", .mode = "submission"},
                   listener{.tls = "implicit", .mode = "submission"}, listener{.tls = "starttls"}};
    o.admin_listen = "127.0.0.1:" + std::to_string(admin_port);
    o.extra_toml = route_to("*", "127.0.0.2", mx_p) + "[auth]\nusers_file = \"" + users.string() + "\"\n" + auth_extra;
    r = std::make_unique<relay>(o);
    if (!r->start()) {
      ADD_FAILURE() << r->error() << r->log();
      return false;
    }
    return true;
  }
  ~world_for_submission() {
    if (r) r->stop();
  }
  // swaks with AUTH over STARTTLS (listener 0) or implicit TLS (listener 1).
  run_result swaks(const std::string& user, const std::string& pw, const std::string& from,
                   const std::string& subject, std::vector<std::string> extra = {}, size_t listener = 0) const {
    std::vector<std::string> a{"--from", from, "--to", "rcpt@" + std::string(domain), "--auth-user", user,
                               "--auth-password", pw, "--header", "Subject: " + subject};
    if (std::find(extra.begin(), extra.end(), "--auth") == extra.end()) a.insert(a.end(), {"--auth", "PLAIN"});
    a.push_back(listener == 1 ? "--tlsc" : "--tls");
    a.insert(a.end(), extra.begin(), extra.end());
    return r->swaks(a, listener);
  }
  // The messages the MX received whose text has `marker`.
  std::vector<mx_message> received(const std::string& marker) const {
    std::vector<mx_message> out;
    for (const auto& m : mx->messages())
      if (contains(m.data, marker)) out.push_back(m);
    return out;
  }
  bool wait_received(const std::string& marker, std::chrono::milliseconds deadline = 20s) const {
    auto until = clock::now() + deadline;
    while (clock::now() < until) {
      if (!received(marker).empty()) return true;
      std::this_thread::sleep_for(50ms);
    }
    return !received(marker).empty();
  }
  // The audit lines of kind "auth" (raw JSON).
  std::vector<std::string> auth_audit() const {
    std::vector<std::string> out;
    for (const auto& l : read_audit(audit_file(*r)))
      if (contains(l.raw, "\"kind\":\"auth\"")) out.push_back(l.raw);
    return out;
  }
  bool wait_auth_audit(size_t n, const std::string& needle, std::chrono::milliseconds deadline = 10s) const {
    auto until = clock::now() + deadline;
    for (;;) {
      size_t k = 0;
      for (const auto& l : auth_audit()) k += contains(l, needle);
      if (k >= n) return true;
      if (clock::now() >= until) return false;
      std::this_thread::sleep_for(50ms);
    }
  }
};

// STARTTLS, EHLO again; the second EHLO reply in *ehlo.
bool open_tls_session(raw_client& c, uint16_t port, std::string* ehlo = nullptr) {
  if (!open_session(c, port)) return false;
  auto r = c.command("STARTTLS");
  if (!r || !starts_with(*r, "220") || !c.start_tls()) return false;
  auto e = c.command("EHLO client.test");
  if (!e || !starts_with(*e, "250")) return false;
  if (ehlo) *ehlo = *e;
  return true;
}

TEST(Submission, SwaksAuthPlainAndLoginOverStartTlsAndImplicitTls) {
  world_for_submission w;
  ASSERT_TRUE(w.start());
  struct attempt {
    std::string mech;
    size_t listener;
  };
  for (const attempt& a : {attempt{"PLAIN", 0}, attempt{"LOGIN", 0}, attempt{"PLAIN", 1}, attempt{"LOGIN", 1}}) {
    std::string marker = unique("swaks-" + a.mech + std::to_string(a.listener));
    auto res = w.swaks(alice, alice_pw, alice, marker, {"--auth", a.mech}, a.listener);
    EXPECT_EQ(res.exit_code, 0) << res.output << w.r->log();
    EXPECT_TRUE(contains(res.output, "235 2.7.0 Authentication successful")) << res.output;
    ASSERT_TRUE(w.wait_received(marker)) << w.r->log();
    const mx_message m = w.received(marker)[0];
    EXPECT_EQ(m.mail_from, alice);
    // The submission leg's TLS and the user, in the Received: line the relay added on top.
    auto eoh = m.data.find("\r\n\r\n");
    std::string received = m.data.substr(0, m.data.find("\r\n", m.data.find("(Authenticated sender:")));
    EXPECT_EQ(m.data.rfind("Received: from client.test (127.0.0.1)\r\n\tby relay.test (sealrelay) with ESMTPSA id ", 0), 0u)
        << m.data.substr(0, eoh);
    EXPECT_TRUE(contains(received, "\r\n\t(using TLSv1.3 with cipher TLS_")) << received;
    EXPECT_TRUE(contains(received, "\r\n\t(Authenticated sender: alice@example.org)")) << received;
  }
  EXPECT_TRUE(w.wait_auth_audit(4, "\"outcome\":\"success\",\"user\":\"alice@example.org\",\"ip\":\"127.0.0.1\""))
      << read_file(audit_file(*w.r));
}

TEST(Submission, PythonSmtplibStartTlsAndSmtpSsl) {
  world_for_submission w;
  ASSERT_TRUE(w.start());
  fs::path tool = source_root() / "tests" / "tools" / "smtp_submit.py";
  fs::path ca = source_root() / "tests" / "certs" / "ca.crt";
  struct attempt {
    std::string mode, mech;
    size_t listener;
  };
  for (const attempt& a : {attempt{"starttls", "", 0}, attempt{"ssl", "", 1}, attempt{"starttls", "LOGIN", 0}}) {
    std::string marker = unique("smtplib-" + a.mode + a.mech);
    std::vector<std::string> argv{"python3", tool.string(), "--port", std::to_string(w.r->port(a.listener)),
                                  "--mode", a.mode, "--user", "bob", "--password", bob_pw,
                                  "--from", "news-weekly@example.org", "--to", std::string("r@") + domain,
                                  "--subject", marker, "--cafile", ca.string()};
    if (!a.mech.empty()) argv.insert(argv.end(), {"--mech", a.mech});
    auto res = run(argv, 30s);
    EXPECT_EQ(res.exit_code, 0) << res.output << w.r->log();
    ASSERT_TRUE(w.wait_received(marker)) << w.r->log();
    const mx_message m = w.received(marker)[0];
    EXPECT_EQ(m.mail_from, "news-weekly@example.org");
    EXPECT_TRUE(contains(m.data, "(Authenticated sender: bob)")) << m.data;
  }
}

// What Thunderbird sends: EHLO, STARTTLS, EHLO, AUTH LOGIN, the user and password each in
// its own base64 line after 334 Username:/Password:, then the transaction.
TEST(Submission, ThunderbirdLikeAuthLoginExchange) {
  world_for_submission w;
  ASSERT_TRUE(w.start());
  raw_client c;
  std::string ehlo;
  ASSERT_TRUE(open_tls_session(c, w.r->port(0), &ehlo));
  EXPECT_TRUE(contains(ehlo, "250-AUTH PLAIN LOGIN\r\n")) << ehlo;
  EXPECT_EQ(c.command("AUTH LOGIN").value_or(""), "334 VXNlcm5hbWU6\r\n");
  EXPECT_EQ(c.command(b64(alice)).value_or(""), "334 UGFzc3dvcmQ6\r\n");
  EXPECT_EQ(c.command(b64(alice_pw)).value_or(""), "235 2.7.0 Authentication successful\r\n");
  std::string marker = unique("tb");
  auto reply = send_message(c, alice, {std::string("x@") + domain},
                            "From: Alice <alice@example.org>\r\nSubject: " + marker + "\r\n\r\nhello\r\n");
  ASSERT_TRUE(reply && starts_with(*reply, "250 2.0.0")) << reply.value_or("(none)");
  EXPECT_TRUE(starts_with(c.command("QUIT").value_or(""), "221"));
  ASSERT_TRUE(w.wait_received(marker)) << w.r->log();
}

// No AUTH is offered before TLS; one sent anyway is refused before any password check, and
// MAIL needs AUTH. The relay listener offers no AUTH at all (as Postfix's port 25).
TEST(Submission, AuthBeforeStartTlsIsRefusedAndMailNeedsAuth) {
  world_for_submission w;
  ASSERT_TRUE(w.start());
  raw_client c;
  std::string ehlo;
  ASSERT_TRUE(open_session(c, w.r->port(0), &ehlo));
  EXPECT_FALSE(contains(ehlo, "AUTH")) << ehlo;
  EXPECT_TRUE(contains(ehlo, "STARTTLS")) << ehlo;
  EXPECT_EQ(c.command("AUTH PLAIN " + plain_response(alice, alice_pw)).value_or(""),
            "538 5.7.11 Encryption required for requested authentication mechanism\r\n");
  EXPECT_EQ(c.command("MAIL FROM:<alice@example.org>").value_or(""), "530 5.7.0 Authentication required\r\n");
  // Under TLS, still no MAIL before AUTH.
  raw_client t;
  ASSERT_TRUE(open_tls_session(t, w.r->port(0)));
  EXPECT_EQ(t.command("MAIL FROM:<alice@example.org>").value_or(""), "530 5.7.0 Authentication required\r\n");
  // The relay listener, under TLS too: no AUTH offered, AUTH refused.
  raw_client rl;
  std::string rehlo;
  ASSERT_TRUE(open_tls_session(rl, w.r->port(2), &rehlo));
  EXPECT_FALSE(contains(rehlo, "AUTH")) << rehlo;
  EXPECT_EQ(rl.command("AUTH PLAIN " + plain_response(alice, alice_pw)).value_or(""),
            "503 5.5.1 Error: authentication not enabled\r\n");
  EXPECT_TRUE(w.auth_audit().empty()) << read_file(audit_file(*w.r));  // no check ran
}

TEST(Submission, WrongPasswordIs535AndAuditedWithoutThePassword) {
  world_for_submission w;
  ASSERT_TRUE(w.start());
  const std::string wrong = "Wr0ng-Horse-Battery-Staple";
  auto res = w.swaks(alice, wrong, alice, unique("wrong"));
  EXPECT_NE(res.exit_code, 0) << res.output;
  EXPECT_TRUE(contains(res.output, "535 5.7.8 Authentication credentials invalid")) << res.output;
  res = w.swaks("nobody@example.org", wrong, "nobody@example.org", unique("unknown"), {"--auth", "LOGIN"});
  EXPECT_TRUE(contains(res.output, "535 5.7.8 Authentication credentials invalid")) << res.output;
  ASSERT_TRUE(w.wait_auth_audit(1, "\"reason\":\"unknown_user\"")) << read_file(audit_file(*w.r));
  auto lines = w.auth_audit();
  ASSERT_EQ(lines.size(), 2u) << read_file(audit_file(*w.r));
  EXPECT_TRUE(contains(lines[0], "\"outcome\":\"failure\",\"user\":\"alice@example.org\",\"ip\":\"127.0.0.1\""))
      << lines[0];
  EXPECT_TRUE(contains(lines[0], "\"reason\":\"bad_password\"")) << lines[0];
  EXPECT_TRUE(contains(lines[1], "\"user\":\"nobody@example.org\"")) << lines[1];
  // Neither the password nor its base64 forms are anywhere in the audit or the log.
  std::string audit = read_file(audit_file(*w.r));
  for (const std::string& secret : {wrong, b64(wrong), plain_response(alice, wrong)}) {
    EXPECT_FALSE(contains(audit, secret)) << secret;
    EXPECT_FALSE(contains(w.r->log(), secret)) << secret;
  }
  // Counted in /metrics.
  auto metrics = run({"curl", "-s", "--max-time", "5", "http://127.0.0.1:" + std::to_string(w.admin_port) + "/metrics"});
  EXPECT_TRUE(contains(metrics.output, "sealrelay_auth_total{outcome=\"failure\"} 2")) << metrics.output;
}

TEST(Submission, SpoofedEnvelopeSenderAndFromAreRefusedAndNothingIsDelivered) {
  world_for_submission w;
  ASSERT_TRUE(w.start());
  std::string spoof_env = unique("spoof-env");
  auto res = w.swaks(alice, alice_pw, "ceo@example.org", spoof_env);
  EXPECT_NE(res.exit_code, 0);
  EXPECT_TRUE(contains(res.output,
                       "553 5.7.1 <ceo@example.org>: Sender address rejected: not owned by user alice@example.org"))
      << res.output;
  std::string spoof_hdr = unique("spoof-from");
  res = w.swaks(alice, alice_pw, alice, spoof_hdr, {"--header", "From: The CEO <ceo@example.org>"});
  EXPECT_NE(res.exit_code, 0);
  EXPECT_TRUE(contains(res.output, "553 5.7.1 <ceo@example.org>: From: header address not owned by user alice@example.org"))
      << res.output;
  // A From: naming the user too, with someone else beside, and two From: fields.
  std::string spoof_two = unique("spoof-two");
  res = w.swaks(alice, alice_pw, alice, spoof_two, {"--header", "From: alice@example.org, ceo@example.org"});
  EXPECT_TRUE(contains(res.output, "553 5.7.1 <ceo@example.org>")) << res.output;
  // bob's pattern: news-*@example.org yes, news@example.org no.
  res = w.swaks("bob", bob_pw, "news@example.org", unique("bob-no"));
  EXPECT_TRUE(contains(res.output, "553 5.7.1 <news@example.org>: Sender address rejected: not owned by user bob"))
      << res.output;
  // Then a good message (the domain compared without case): once it arrived, none of the
  // refused ones can still be on the way.
  std::string good = unique("good");
  res = w.swaks(alice, alice_pw, alice, good, {"--header", "From: Alice <alice@EXAMPLE.ORG>"});
  EXPECT_EQ(res.exit_code, 0) << res.output;
  ASSERT_TRUE(w.wait_received(good)) << w.r->log();
  EXPECT_EQ(w.mx->messages().size(), 1u);
  for (const auto& m : {spoof_env, spoof_hdr, spoof_two}) EXPECT_TRUE(w.received(m).empty()) << m;
  EXPECT_FALSE(w.r->spool_contains(spoof_hdr));
}

// Four failures at most (two free, then each 535 held back 2 s), then 421 and close; while
// one client waits out its delay, another client on the same (single) shard submits at once.
TEST(Submission, BruteForceIsDelayedThen421WhileOthersAreServed) {
  world_for_submission w;
  ASSERT_TRUE(w.start("max_failures = 4\nfailure_delay = \"2s\"\n"));
  raw_client a;
  ASSERT_TRUE(open_tls_session(a, w.r->port(0)));
  const std::string guess = "AUTH PLAIN " + plain_response("mallory@example.org", "guess");
  for (int i = 0; i < 2; ++i)
    EXPECT_EQ(a.command(guess, 5s).value_or(""), "535 5.7.8 Authentication credentials invalid\r\n") << i;
  // The third failure is held back; meanwhile another client (another address) submits.
  auto sent = clock::now();
  ASSERT_TRUE(a.send(guess + "\r\n"));
  std::string marker = unique("meanwhile");
  auto res = w.swaks(alice, alice_pw, alice, marker, {"--local-interface", "127.0.0.3"});
  auto other_done = clock::now();
  EXPECT_EQ(res.exit_code, 0) << res.output << w.r->log();
  auto third = a.read_reply(10s);
  auto third_at = clock::now();
  EXPECT_EQ(third.value_or(""), "535 5.7.8 Authentication credentials invalid\r\n");
  EXPECT_GE(third_at - sent, 1500ms);
  EXPECT_LT(other_done, third_at) << "the other client waited for the delayed one";
  // The fourth: 421 and the connection closes.
  EXPECT_EQ(a.command(guess, 5s).value_or(""), "421 4.7.0 Too many authentication failures, closing connection\r\n");
  a.read_until_eof(5s);
  EXPECT_TRUE(a.eof());
  // Reconnecting does not buy more guesses: refused before any password check.
  raw_client again;
  ASSERT_TRUE(open_tls_session(again, w.r->port(0)));
  EXPECT_EQ(again.command("AUTH PLAIN " + plain_response(alice, alice_pw), 5s).value_or(""),
            "421 4.7.0 Too many authentication failures, closing connection\r\n");
  ASSERT_TRUE(w.wait_received(marker)) << w.r->log();
  EXPECT_TRUE(w.wait_auth_audit(2, "\"outcome\":\"rate_limited\"")) << read_file(audit_file(*w.r));
  EXPECT_TRUE(w.wait_auth_audit(1, "\"delay_ms\":2000")) << read_file(audit_file(*w.r));
}

// The spool record of a submitted message keeps who submitted it (meta.auth_user); mail
// from a relay listener has none. The MX is down, so both stay queued for the check.
TEST(Submission, SpoolRecordKeepsTheUser) {
  world_for_submission w;
  ASSERT_TRUE(w.start());
  w.mx->stop();
  std::string marker = unique("spooled");
  auto res = w.swaks("bob", bob_pw, "news-1@example.org", marker);
  ASSERT_EQ(res.exit_code, 0) << res.output;
  auto sub_id = queued_id(res.output);
  res = w.r->swaks({"--from", "relay@example.org", "--to", std::string("r@") + domain, "--tls"}, 2);
  ASSERT_EQ(res.exit_code, 0) << res.output;
  auto relay_id = queued_id(res.output);
  ASSERT_TRUE(sub_id && relay_id);
  ASSERT_EQ(w.r->stop(), 0) << w.r->log();
  auto set = spool::partition::list(w.r->state_dir().string());
  ASSERT_TRUE(set) << set.err();
  size_t seen = 0;
  for (const auto& m : set->messages) {
    if (m.meta.queue_id == *sub_id) {
      EXPECT_EQ(m.meta.auth_user, "bob");
      EXPECT_EQ(m.meta.mail_from, "news-1@example.org");
      ++seen;
    } else if (m.meta.queue_id == *relay_id) {
      EXPECT_EQ(m.meta.auth_user, "");
      ++seen;
    }
  }
  EXPECT_EQ(seen, 2u);
}

TEST(Submission, SighupReloadsTheUsersFile) {
  world_for_submission w;
  ASSERT_TRUE(w.start());
  auto res = w.swaks("carol@example.org", carol_pw, "carol@example.org", unique("carol-before"));
  EXPECT_TRUE(contains(res.output, "535 5.7.8")) << res.output;
  // carol added, alice removed.
  write_private_file(w.users, std::string(bob_line) + carol_line);
  w.r->signal(SIGHUP);
  ASSERT_TRUE(wait_log(*w.r, [](const std::string& l) { return contains(l, "auth.users_file reloaded (2 users)"); }))
      << w.r->log();
  std::string marker = unique("carol-after");
  res = w.swaks("carol@example.org", carol_pw, "carol@example.org", marker);
  EXPECT_EQ(res.exit_code, 0) << res.output;
  res = w.swaks(alice, alice_pw, alice, unique("alice-after"));
  EXPECT_TRUE(contains(res.output, "535 5.7.8")) << res.output;
  ASSERT_TRUE(w.wait_received(marker)) << w.r->log();
  // A file others may read is refused on reload: the current users stay.
  fs::permissions(w.users, fs::perms::group_read, fs::perm_options::add);
  write_private_file(w.users, alice_line);
  fs::permissions(w.users, fs::perms::others_read, fs::perm_options::add);
  w.r->signal(SIGHUP);
  ASSERT_TRUE(wait_log(*w.r, [](const std::string& l) { return contains(l, "keeping the current submission users"); }))
      << w.r->log();
  res = w.swaks("carol@example.org", carol_pw, "carol@example.org", unique("carol-kept"));
  EXPECT_EQ(res.exit_code, 0) << res.output;
}

}  // namespace
}  // namespace sr::integ
