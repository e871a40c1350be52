// The fallback end to end (issue 9): a forced domain whose only MX offers no STARTTLS, the
// real relay spawning the real sealrelay-fallback, a GnuPG home with one recipient's key
// and an S/MIME directory with another's certificate. What the fake MX received is
// decrypted with `gpg` and `openssl cms` and compared with what was sent; the escrow
// recipient gets only a notice; nothing of the message ever reaches the MX in the clear.
// The drills kill the sidecar (SIGKILL) in the middle of a stream of hand-offs: nothing is
// lost, nothing goes out in plaintext, duplicates are counted and stay under 1 %.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <fstream>
#include <iostream>
#include <map>
#include <regex>
#include <set>
#include <thread>

#include "support/cert_files.hh"
#include "support/pg_cluster.hh"
#include "support/temp_dir.hh"
#include "support/world.hh"

namespace sr::integ {
namespace {

namespace fs = std::filesystem;
using sr::test::run_pipeline;
using sr::test::shell_quote;

const char* const bank_zone =
    "bank.test MX 10 mx1.bank.test\nmx1.bank.test A 127.0.0.2\n"
    "sender.test MX 10 home.mx.test\nhome.mx.test A 127.0.0.9\n";

// The children of `pid` named sealrelay-fallback (the supervised sidecar).
std::vector<pid_t> sidecar_pids(pid_t relay) {
  std::vector<pid_t> out;
  auto r = run_pipeline("pgrep -P " + std::to_string(relay) + " -f sealrelay-fallback || true");
  if (!r) return out;
  std::istringstream in(*r);
  for (long p; in >> p;) out.push_back(pid_t(p));
  return out;
}

// Wait until the relay's sidecar runs and every shard linked to it.
bool wait_sidecar(const relay& r, std::chrono::milliseconds deadline = 20s) {
  return wait_log(r, [](const std::string& log) {
    size_t n = 0;
    for (size_t p = 0; (p = log.find("fallback: sidecar link up", p)) != std::string::npos; ++p) ++n;
    return n >= 2;  // two shards
  }, deadline);
}

class Fallback : public ::testing::Test, protected world {
 protected:
  Fallback() {
    _outbound_defaults = {{"connect_timeout", "\"2s\""}, {"retry", "[\"1s\"]"}, {"max_queue_age", "\"120s\""}};
  }
  ~Fallback() override {
    if (!_gpg.path().empty())
      run_pipeline("timeout 30 gpgconf --homedir " + shell_quote(_gpg.path().string()) +
                   " --kill all >/dev/null 2>&1");
  }

  // A key for `address` in the GnuPG home (ultimately trusted there: gpg made it).
  bool make_pgp_key(const std::string& address) {
    return run_pipeline("timeout 60 gpg --batch --homedir " + shell_quote(_gpg.path().string()) +
                        " --pinentry-mode loopback --passphrase '' --quick-gen-key " +
                        shell_quote("Recipient <" + address + ">") + " default default 1d 2>&1")
        .has_value();
  }
  // An RSA certificate for `address` in smime_dir/<address>.pem (key beside it, in _keys).
  bool make_smime_cert(const std::string& address) {
    std::string key = (_keys.path() / (address + ".key")).string();
    std::string crt = (_smime.path() / (address + ".pem")).string();
    return run_pipeline("openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out " +
                        shell_quote(key) + " 2>/dev/null && openssl req -x509 -new -key " +
                        shell_quote(key) + " -out " + shell_quote(crt) + " -days 30 -subj " +
                        shell_quote("/CN=" + address) + " 2>/dev/null")
        .has_value();
  }
  std::optional<std::string> gpg_decrypt(const std::string& message) {
    std::string f = (_keys.path() / unique("pgp")).string();
    std::ofstream(f, std::ios::binary) << message;
    return run_pipeline("timeout 60 gpg --batch --homedir " + shell_quote(_gpg.path().string()) +
                        " --pinentry-mode loopback --passphrase '' --decrypt " + shell_quote(f) +
                        " 2>/dev/null");
  }
  std::optional<std::string> cms_decrypt(const std::string& message, const std::string& address) {
    std::string f = (_keys.path() / unique("p7m")).string();
    std::ofstream(f, std::ios::binary) << message;
    return run_pipeline("openssl cms -decrypt -in " + shell_quote(f) + " -inkey " +
                        shell_quote((_keys.path() / (address + ".key")).string()) + " -recip " +
                        shell_quote((_smime.path() / (address + ".pem")).string()) + " 2>/dev/null");
  }

  // [fallback] lines: spawned sidecar, no portal, keys in the temp dirs.
  void use_sidecar(bool spawn = true) {
    _fallback = std::string(spawn ? "spawn = true" : "spawn = false") + "\nportal_listen = \"\"\nportal_url = \"https://portal.test:8443\"\n"
                "escrow_expiry = \"1h\"\npgp_home = " + std::string("\"") + _gpg.path().string() +
                "\"\nsmime_dir = \"" + _smime.path().string() + "\"\n";
  }

  std::string policy(const std::string& chain = "[\"pgp\", \"smime\", \"escrow\"]") {
    return "[[policy]]\ndomain = \"bank.test\"\ntls = \"forced\"\nfallback = " + chain + "\n";
  }

  sr::test::temp_dir _gpg{"sr-gpg", "/tmp"};  // short: gpg-agent's socket lives in it
  sr::test::temp_dir _smime{"sr-smime"};
  sr::test::temp_dir _keys{"sr-keys"};
};

std::string body_with(const std::string& secret, const std::string& subject) {
  return "From: Alice <alice@sender.test>\r\nTo: <many@bank.test>\r\nSubject: " + subject +
         "\r\nDate: Mon, 7 Dec 2026 01:00:00 +0000\r\nMessage-ID: <" + unique("fb") +
         "@sender.test>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" +
         "Lab results: " + secret + "\r\n";
}

// Each method once: PGP for the recipient with a key, S/MIME for the one with a
// certificate, escrow for the third; the MX saw only ciphertext and a notice.
TEST_F(Fallback, ForcedDomainWithoutTlsGetsPgpSmimeAndEscrow) {
  ASSERT_NE(_port, 0);
  ASSERT_TRUE(make_pgp_key("pgp@bank.test"));
  ASSERT_TRUE(make_smime_cert("smime@bank.test"));
  ASSERT_TRUE(start_dns(bank_zone));
  fake_mx* mx = start_mx({.hosts = {"127.0.0.2"}, .cert = "", .no_starttls = true});
  ASSERT_TRUE(mx);
  use_sidecar();
  relay* r = start_relay(policy());
  ASSERT_TRUE(r);
  ASSERT_TRUE(wait_sidecar(*r)) << r->log();

  std::string secret = unique("phi-secret");
  std::string subject = unique("Patient-4711");
  std::string why;
  std::string qid = submit(*r, "alice@sender.test", {"pgp@bank.test", "smime@bank.test", "esc@bank.test"},
                           body_with(secret, subject), &why);
  ASSERT_FALSE(qid.empty()) << why;

  // The original's hand-off outcomes, one per recipient.
  auto handled = wait_audit(*r, 3, [&](const audit_line& a) {
    return a.queue_id == qid && (a.outcome == "pgp" || a.outcome == "smime" || a.outcome == "escrowed");
  }, 30s);
  ASSERT_EQ(handled.size(), 3u) << dump_audit(*r) << r->log();
  std::map<std::string, std::string> outcome_of;
  for (const auto& a : handled) {
    SCOPED_TRACE(a.raw);
    outcome_of[a.rcpt] = a.outcome;
    EXPECT_EQ(a.policy, "forced");
    EXPECT_EQ(a.reason, "starttls-not-offered");
  }
  EXPECT_EQ(outcome_of["pgp@bank.test"], "pgp");
  EXPECT_EQ(outcome_of["smime@bank.test"], "smime");
  EXPECT_EQ(outcome_of["esc@bank.test"], "escrowed");

  // The three mails the sidecar made are delivered (in the clear: this MX has no TLS, and
  // they go under opportunistic policy), each to its one recipient.
  ASSERT_TRUE(mx->wait_messages(3, 30s)) << dump_audit(*r) << r->log();
  auto msgs = mx->messages();
  ASSERT_EQ(msgs.size(), 3u);
  std::map<std::string, mx_message> by_rcpt;
  for (const auto& m : msgs) {
    ASSERT_EQ(m.rcpts.size(), 1u);
    by_rcpt[m.rcpts[0]] = m;
    EXPECT_FALSE(m.tls);
    // Nothing of the message in the clear: not its text, not its subject.
    EXPECT_FALSE(contains(m.data, secret)) << m.data;
    EXPECT_FALSE(contains(m.data, subject)) << m.data;
    EXPECT_EQ(m.mail_from, "alice@sender.test");
  }
  ASSERT_EQ(by_rcpt.size(), 3u);

  const std::string& pgp = by_rcpt["pgp@bank.test"].data;
  EXPECT_TRUE(contains(pgp, "multipart/encrypted")) << pgp;
  EXPECT_TRUE(contains(pgp, "application/pgp-encrypted")) << pgp;
  EXPECT_TRUE(contains(pgp, "Subject: ...")) << pgp;
  auto clear = gpg_decrypt(pgp);
  ASSERT_TRUE(clear) << "gpg --decrypt failed";
  EXPECT_TRUE(contains(*clear, "Lab results: " + secret)) << *clear;
  EXPECT_TRUE(contains(*clear, subject)) << *clear;

  const std::string& sm = by_rcpt["smime@bank.test"].data;
  EXPECT_TRUE(contains(sm, "application/pkcs7-mime")) << sm;
  EXPECT_TRUE(contains(sm, "enveloped-data")) << sm;
  auto opened = cms_decrypt(sm, "smime@bank.test");
  ASSERT_TRUE(opened) << "openssl cms -decrypt failed";
  EXPECT_TRUE(contains(*opened, "Lab results: " + secret)) << *opened;

  const std::string& notice = by_rcpt["esc@bank.test"].data;
  EXPECT_TRUE(contains(notice, "Subject: Secure message from alice@sender.test")) << notice;
  std::smatch link;
  ASSERT_TRUE(std::regex_search(notice, link, std::regex("https://portal\\.test:8443/m/[A-Za-z0-9_-]{22}/[A-Za-z0-9_-]{43}")))
      << notice;

  // Audit: the sidecar's mails are delivered under opportunistic policy with their kinds,
  // and the escrow has its notice line.
  auto delivered = wait_audit(*r, 3, [&](const audit_line& a) {
    return (a.kind == "pgp" || a.kind == "smime" || a.kind == "escrow-notice") && a.outcome == "delivered";
  });
  ASSERT_EQ(delivered.size(), 3u) << dump_audit(*r);
  for (const auto& a : delivered) {
    SCOPED_TRACE(a.raw);
    EXPECT_EQ(a.policy, "opportunistic");
    EXPECT_EQ(a.domain, "bank.test");
  }
  auto notices = wait_audit(*r, 1, [&](const audit_line& a) { return a.kind == "escrow" && a.event == "notice"; });
  ASSERT_EQ(notices.size(), 1u) << dump_audit(*r);
  EXPECT_EQ(notices[0].rcpt, "esc@bank.test");
  EXPECT_FALSE(contains(notices[0].raw, secret));
  EXPECT_FALSE(contains(notices[0].raw, subject));
  // The original is finished: nothing of it stays queued.
  std::string last;
  EXPECT_TRUE(wait_queue_empty(*r, 20s, &last)) << last;
}

// The chain is walked in the configured order: smime first finds the certificate even
// though a PGP key exists; "defer" with no method that applies keeps the message queued.
TEST_F(Fallback, ChainOrderAndDefer) {
  ASSERT_NE(_port, 0);
  ASSERT_TRUE(make_pgp_key("both@bank.test"));
  ASSERT_TRUE(make_smime_cert("both@bank.test"));
  ASSERT_TRUE(start_dns(bank_zone));
  fake_mx* mx = start_mx({.hosts = {"127.0.0.2"}, .cert = "", .no_starttls = true});
  ASSERT_TRUE(mx);
  use_sidecar();
  relay* r = start_relay(policy("[\"smime\", \"pgp\", \"defer\"]"));
  ASSERT_TRUE(r);
  ASSERT_TRUE(wait_sidecar(*r)) << r->log();
  std::string secret = unique("order");
  std::string q = submit(*r, "alice@sender.test", {"both@bank.test", "nokey@bank.test"},
                         body_with(secret, "order"));
  ASSERT_FALSE(q.empty());
  auto sm = wait_audit(*r, 1, [&](const audit_line& a) { return a.queue_id == q && a.outcome == "smime"; }, 30s);
  ASSERT_EQ(sm.size(), 1u) << dump_audit(*r) << r->log();
  EXPECT_EQ(sm[0].rcpt, "both@bank.test");
  // nokey@ has no key and no certificate: the chain reaches defer, retried over TLS.
  auto deferred = wait_audit(*r, 2, [&](const audit_line& a) {
    return a.queue_id == q && a.rcpt == "nokey@bank.test" && a.outcome == "deferred" &&
           a.reason != "fallback-unavailable";
  }, 30s);
  EXPECT_GE(deferred.size(), 2u) << dump_audit(*r);
  ASSERT_TRUE(mx->wait_messages(1, 20s));
  for (const auto& m : mx->messages()) EXPECT_FALSE(contains(m.data, secret));
  EXPECT_EQ(mx->messages()[0].rcpts, std::vector<std::string>{"both@bank.test"});
}

// Dead sidecar: the relay keeps working; the hand-off is deferred (fallback-unavailable),
// /healthz and /metrics say so; once the supervisor has it back the message goes out.
TEST_F(Fallback, SidecarKilledMidStreamLosesNothingAndSendsNothingInClear) {
  ASSERT_NE(_port, 0);
  ASSERT_TRUE(start_dns(bank_zone));
  fake_mx* mx = start_mx({.hosts = {"127.0.0.2"}, .cert = "", .no_starttls = true});
  ASSERT_TRUE(mx);
  use_sidecar();
  _admin_listen = "127.0.0.1:" + std::to_string(free_port());
  relay* r = start_relay(policy("[\"escrow\"]"));
  ASSERT_TRUE(r);
  ASSERT_TRUE(wait_sidecar(*r)) << r->log();

  // A burst of 1,000 messages, the sidecar killed three times while it flows.
  const int total = 1000;
  std::string secret = unique("drill");
  std::set<std::string> qids;
  int kills = 0;
  pid_t last_killed = 0;
  for (int i = 0; i < total; ++i) {
    std::string why;
    std::string q = submit(*r, "alice@sender.test", {"r" + std::to_string(i) + "@bank.test"},
                           body_with(secret + "-" + std::to_string(i), "drill"), &why);
    ASSERT_FALSE(q.empty()) << why;
    qids.insert(q);
    if (i % 250 == 125 && kills < 3) {
      // The supervisor restarts it with backoff: wait for the new one before killing it.
      std::vector<pid_t> pids;
      for (int t = 0; t < 200; ++t) {
        pids = sidecar_pids(r->pid());
        if (pids.size() == 1 && pids[0] != last_killed) break;
        std::this_thread::sleep_for(50ms);
      }
      ASSERT_EQ(pids.size(), 1u) << r->log();
      ASSERT_NE(pids[0], last_killed);
      ::kill(pids[0], SIGKILL);
      last_killed = pids[0];
      ++kills;
    }
  }
  EXPECT_EQ(kills, 3);
  // Every recipient ends escrowed and its notice reaches the MX; none is lost.
  auto escrowed = wait_audit(*r, total, [&](const audit_line& a) {
    return qids.count(a.queue_id) && a.outcome == "escrowed";
  }, 180s);
  std::map<std::string, int> per_rcpt;
  for (const auto& a : escrowed) ++per_rcpt[a.rcpt];
  EXPECT_EQ(per_rcpt.size(), size_t(total)) << r->log();
  ASSERT_TRUE(mx->wait_messages(size_t(total), 120s)) << mx->messages().size();
  std::map<std::string, int> notices;
  for (const auto& m : mx->messages()) {
    EXPECT_FALSE(contains(m.data, secret)) << "plaintext reached the MX";
    EXPECT_TRUE(contains(m.data, "Subject: Secure message from alice@sender.test"));
    for (const auto& rc : m.rcpts) ++notices[rc];
  }
  EXPECT_EQ(notices.size(), size_t(total));
  size_t dups = 0;
  for (const auto& [rc, n] : notices) dups += size_t(n - 1);
  RecordProperty("duplicates", int(dups));
  std::cout << "drill: " << total << " forced messages, sidecar killed " << kills << " times, "
            << dups << " duplicate notices, nothing in the clear\n";
  EXPECT_LT(double(dups), total * 0.01) << dups << " duplicate notices";
  // The supervisor restarted it each time; /metrics counts that.
  auto metrics = run_pipeline("curl -s --max-time 5 http://" + _admin_listen + "/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_TRUE(contains(*metrics, "sealrelay_fallback_restarts_total 3")) << *metrics;
  EXPECT_TRUE(contains(*metrics, "sealrelay_fallback_links_up 2")) << *metrics;
  auto health = run_pipeline("curl -s --max-time 5 http://" + _admin_listen + "/healthz");
  ASSERT_TRUE(health);
  EXPECT_TRUE(contains(*health, "fallback: up")) << *health;
}

// Several relay nodes share one portal through PostgreSQL (fallback.store): two relays,
// one cluster; each escrows a message and both records are in the shared store.
TEST_F(Fallback, EscrowStoreOnPostgresqlSharedByTwoRelays) {
  ASSERT_NE(_port, 0);
  sr::test::pg_cluster pg;
  ASSERT_TRUE(pg.start()) << pg.error();
  ASSERT_TRUE(start_dns(bank_zone));
  fake_mx* mx = start_mx({.hosts = {"127.0.0.2"}, .cert = "", .no_starttls = true});
  ASSERT_TRUE(mx);
  use_sidecar();
  _fallback += "store = \"postgresql://postgres@127.0.0.1:" + std::to_string(pg.port()) + "/postgres\"\n";
  relay* a = start_relay(policy("[\"escrow\"]"));
  ASSERT_TRUE(a);
  auto first = std::move(_relay);  // start_relay keeps one; the second node gets its own
  relay* b = start_relay(policy("[\"escrow\"]"));
  ASSERT_TRUE(b);
  ASSERT_TRUE(wait_sidecar(*a)) << a->log();
  ASSERT_TRUE(wait_sidecar(*b)) << b->log();
  std::string secret = unique("pg");
  std::string qa = submit(*a, "alice@sender.test", {"one@bank.test"}, body_with(secret, "pg"));
  std::string qb = submit(*b, "alice@sender.test", {"two@bank.test"}, body_with(secret, "pg"));
  ASSERT_FALSE(qa.empty());
  ASSERT_FALSE(qb.empty());
  EXPECT_EQ(wait_audit(*a, 1, [&](const audit_line& l) { return l.queue_id == qa && l.outcome == "escrowed"; }, 30s).size(), 1u)
      << dump_audit(*a) << a->log();
  EXPECT_EQ(wait_audit(*b, 1, [&](const audit_line& l) { return l.queue_id == qb && l.outcome == "escrowed"; }, 30s).size(), 1u)
      << dump_audit(*b) << b->log();
  ASSERT_TRUE(mx->wait_messages(2, 30s));
  for (const auto& m : mx->messages()) EXPECT_FALSE(contains(m.data, secret));
  // Both records are in the one store, sealed (the secret text is nowhere in it).
  auto n = run_pipeline("psql -h 127.0.0.1 -p " + std::to_string(pg.port()) +
                        " -U postgres -d postgres -At -c \"SELECT recipient FROM escrow ORDER BY recipient\" 2>&1");
  ASSERT_TRUE(n);
  EXPECT_EQ(*n, "one@bank.test\ntwo@bank.test\n");
  auto dump = run_pipeline("pg_dump -h 127.0.0.1 -p " + std::to_string(pg.port()) + " -U postgres -a postgres 2>&1");
  ASSERT_TRUE(dump);
  EXPECT_FALSE(contains(*dump, secret));
}

// With the sidecar gone for good (fallback.spawn = false and nothing listening) the relay
// defers: audit fallback-unavailable, /healthz says "fallback: down", nothing goes out.
TEST_F(Fallback, NoSidecarDefersAndHealthSaysSo) {
  ASSERT_NE(_port, 0);
  ASSERT_TRUE(start_dns(bank_zone));
  fake_mx* mx = start_mx({.hosts = {"127.0.0.2"}, .cert = "", .no_starttls = true});
  ASSERT_TRUE(mx);
  use_sidecar(false);
  _admin_listen = "127.0.0.1:" + std::to_string(free_port());
  relay* r = start_relay(policy());
  ASSERT_TRUE(r);
  std::string q = submit(*r, "alice@sender.test", {"x@bank.test"}, body_with(unique("down"), "down"));
  ASSERT_FALSE(q.empty());
  auto lines = wait_audit(*r, 2, [&](const audit_line& a) {
    return a.queue_id == q && a.reason == "fallback-unavailable" && a.outcome == "deferred";
  }, 30s);
  EXPECT_GE(lines.size(), 2u) << dump_audit(*r);
  auto health = run_pipeline("curl -s --max-time 5 http://" + _admin_listen + "/healthz");
  ASSERT_TRUE(health);
  EXPECT_TRUE(contains(*health, "fallback: down")) << *health;
  auto metrics = run_pipeline("curl -s --max-time 5 http://" + _admin_listen + "/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_TRUE(contains(*metrics, "sealrelay_fallback_links_up 0")) << *metrics;
  EXPECT_TRUE(mx->messages().empty());
}

}  // namespace
}  // namespace sr::integ
