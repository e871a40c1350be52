// DKIM signing end to end (issue 10 item 4): the real relay with two [[dkim]] entries (RSA
// and Ed25519 keys made by openssl), mail relayed by swaks to a fake MX; what the MX
// received is checked by an independent verifier (dkimpy through tests/tools/dkim_verify.py,
// the selector's TXT record handed over from a file). Mail from a domain without an entry
// goes out unsigned; large messages streamed to a spool body file (with and without SIZE=)
// are signed on the way and arrive byte for byte; a message injected through the HTTP API is signed, and counted in
// /metrics; our DSN is signed when server.hostname has an entry; a TLS-RPT report is signed when tlsrpt.from's domain has an entry; a
// key that does not fit its entry stops the start with file, line and key.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "support/world.hh"

namespace sr::integ {
namespace {

namespace fs = std::filesystem;

// Keys for sender.test (RSA 2048) and ed.test (Ed25519), made once, mode 0600, with the
// TXT records a verifier needs.
struct dkim_keys {
  temp_dir dir;
  std::string rsa, ed, rsa_txt, ed_txt, why;
  bool ok = false;

  dkim_keys() {
    const std::string d = dir.path().string();
    auto sh = [&](const std::string& cmd) { return run({"/bin/sh", "-c", "cd '" + d + "' && " + cmd}, 30s); };
    if (sh("openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out rsa.pem && "
           "openssl genpkey -algorithm ed25519 -out ed.pem && chmod 600 rsa.pem ed.pem")
            .exit_code != 0) {
      why = "openssl genpkey failed or is missing";
      return;
    }
    auto rsa_p = sh("openssl pkey -in rsa.pem -pubout -outform DER 2>/dev/null | base64 -w0");
    // RFC 8463 §4: p= is the raw 32-byte Ed25519 key, the tail of its SPKI.
    auto ed_p = sh("openssl pkey -in ed.pem -pubout -outform DER 2>/dev/null | tail -c 32 | base64 -w0");
    if (rsa_p.exit_code != 0 || ed_p.exit_code != 0) {
      why = "openssl pkey -pubout failed";
      return;
    }
    rsa = d + "/rsa.pem";
    ed = d + "/ed.pem";
    rsa_txt = "v=DKIM1; k=rsa; p=" + rsa_p.output;
    ed_txt = "v=DKIM1; k=ed25519; p=" + ed_p.output;
    ok = true;
  }
};

dkim_keys& keys() {
  static dkim_keys k;
  return k;
}

std::string dkim_toml(const std::string& more = {}) {
  return more + "[[dkim]]\ndomain = \"sender.test\"\nselector = \"s2026\"\nkey_file = \"" + keys().rsa +
         "\"\nalgorithm = \"rsa-sha256\"\n\n"
         "[[dkim]]\ndomain = \"ed.test\"\nselector = \"e2026\"\nkey_file = \"" + keys().ed +
         "\"\nalgorithm = \"ed25519-sha256\"\n\n";
}

// dkimpy's verdict on `message` with `txt` as the selector's record: 0 all signatures
// verify, 1 one does not (reason in *diag), 77 dkimpy or PyNaCl missing.
int verify(const std::string& message, const std::string& txt, std::string* diag) {
  temp_dir d;
  std::ofstream(d.path() / "msg.eml", std::ios::binary) << message;
  std::ofstream(d.path() / "key.txt") << txt;
  auto res = run({"/bin/sh", "-c",
                  "/usr/bin/python3 '" + (source_root() / "tests/tools/dkim_verify.py").string() + "' '" +
                      (d.path() / "key.txt").string() + "' < '" + (d.path() / "msg.eml").string() + "'"},
                 30s);
  *diag = res.output;
  return res.exit_code;
}

// Check that `m` carries exactly one DKIM-Signature, on top, for `domain`/`algorithm`, and
// that dkimpy verifies it with `txt`.
void expect_signed(const mx_message& m, const std::string& domain, const std::string& algorithm,
                   const std::string& txt) {
  ASSERT_TRUE(m.data.starts_with("DKIM-Signature: v=1; a=" + algorithm + "; c=relaxed/relaxed; d=" + domain + ";"))
      << m.data.substr(0, 600);
  EXPECT_EQ(m.data.find("DKIM-Signature:", 1), std::string::npos) << m.data.substr(0, 1200);
  std::string diag;
  int rc = verify(m.data, txt, &diag);
  if (rc == 77) GTEST_SKIP() << diag;
  EXPECT_EQ(rc, 0) << diag << "\n" << m.data.substr(0, 2000);
}

class Dkim : public ::testing::Test, protected world {
 protected:
  void SetUp() override {
    if (!keys().ok) GTEST_SKIP() << keys().why;
    ASSERT_NE(_port, 0);
  }

  // The message `mx` received whose text contains `marker`; null when none came in time.
  const mx_message* wait_for(fake_mx& mx, const std::string& marker, std::chrono::seconds deadline = 20s) {
    for (auto until = std::chrono::steady_clock::now() + deadline;;) {
      _got = mx.messages();
      for (const auto& m : _got)
        if (contains(m.data, marker)) return &m;
      if (std::chrono::steady_clock::now() >= until) return nullptr;
      std::this_thread::sleep_for(100ms);
    }
  }
  std::vector<mx_message> _got;
};

TEST_F(Dkim, RelayedMailIsSignedPerFromDomain) {
  ASSERT_TRUE(start_dns("dest.test MX 10 mx.dest.test\nmx.dest.test A 127.0.0.2\n"));
  fake_mx* mx = start_mx({.hosts = {"127.0.0.2"}});
  ASSERT_TRUE(mx);
  // The HTTP API too (plain HTTP on loopback): it submits through the same intake.
  const uint16_t api_port = free_port();
  const fs::path tokens = keys().dir.path() / "api-tokens";
  write_private_file(tokens, "dkim-test-token-0123456789\n");
  const uint16_t admin_port = free_port();
  _admin_listen = "127.0.0.1:" + std::to_string(admin_port);
  relay* r = start_relay(dkim_toml() + "[http]\nlisten = \"127.0.0.1:" + std::to_string(api_port) +
                         "\"\ntls = false\ntokens_file = \"" + tokens.string() + "\"\n");
  ASSERT_TRUE(r);
  const std::string mark = unique("dkim");
  {
    const fs::path req = r->dir() / "req.json";
    std::ofstream(req) << "{\"from\":\"shop@ed.test\",\"to\":[\"rcpt@dest.test\"],\"subject\":\"api\","
                          "\"text\":\"" + mark + " from the API\\n\"}";
    auto res = run({"curl", "-sS", "--max-time", "20", "-o", "/dev/null", "-w", "%{http_code}", "-H",
                    "Authorization: Bearer dkim-test-token-0123456789", "-H", "Content-Type: application/json",
                    "--data-binary", "@" + req.string(), "http://127.0.0.1:" + std::to_string(api_port) + "/api/v1/messages"},
                   30s);
    ASSERT_EQ(res.output, "202") << res.output << r->log();
  }
  // 8 KiB bodies span several receive chunks; the third domain has no [[dkim]] entry.
  std::string filler;
  for (int i = 0; i < 100; ++i) filler += std::string(76, char('a' + i % 26)) + "  \t x\n";
  for (const char* from : {"alice@sender.test", "bob@ED.test", "carol@other.test"}) {
    auto res = r->swaks({"--from", from, "--to", "rcpt@dest.test", "--header", std::string("Subject: ") + from,
                         "--body", mark + " from " + from + "\n" + filler + "\n  trailing  \n\n\n"});
    ASSERT_EQ(res.exit_code, 0) << res.output.substr(0, 3000);
  }
  const mx_message* rsa = wait_for(*mx, mark + " from alice@sender.test");
  ASSERT_TRUE(rsa) << r->log() << dump_audit(*r);
  const mx_message rsa_copy = *rsa;
  const mx_message* ed = wait_for(*mx, mark + " from bob@ED.test");
  ASSERT_TRUE(ed) << r->log();
  const mx_message ed_copy = *ed;
  const mx_message* plain = wait_for(*mx, mark + " from carol@other.test");
  ASSERT_TRUE(plain) << r->log();
  const mx_message plain_copy = *plain;
  const mx_message* api = wait_for(*mx, mark + " from the API");
  ASSERT_TRUE(api) << r->log();
  const mx_message api_copy = *api;

  {
    SCOPED_TRACE("rsa-sha256, sender.test");
    expect_signed(rsa_copy, "sender.test", "rsa-sha256", keys().rsa_txt);
    // The signature is a trace field on top, above our own Received: (RFC 6376 §5.6).
    EXPECT_TRUE(contains(rsa_copy.data, "\r\nReceived: from ")) << rsa_copy.data.substr(0, 800);
    EXPECT_LT(rsa_copy.data.find("DKIM-Signature:"), rsa_copy.data.find("Received: from "));
  }
  {
    SCOPED_TRACE("ed25519-sha256, ed.test (From: domain matched case-insensitively)");
    expect_signed(ed_copy, "ed.test", "ed25519-sha256", keys().ed_txt);
  }
  {
    SCOPED_TRACE("the HTTP API's message, ed.test");
    expect_signed(api_copy, "ed.test", "ed25519-sha256", keys().ed_txt);
  }
  EXPECT_FALSE(contains(plain_copy.data, "DKIM-Signature")) << plain_copy.data.substr(0, 800);
  // Counted: three messages signed (shards publish on their 100 ms tick), none failed.
  std::string metrics;
  for (auto until = std::chrono::steady_clock::now() + 5s; std::chrono::steady_clock::now() < until;) {
    metrics = run({"curl", "-sS", "--max-time", "5", "http://127.0.0.1:" + std::to_string(admin_port) + "/metrics"}).output;
    if (contains(metrics, "\nsealrelay_dkim_signed_total 3\n")) break;
    std::this_thread::sleep_for(100ms);
  }
  EXPECT_TRUE(contains(metrics, "\nsealrelay_dkim_signed_total 3\n")) << metrics;
  EXPECT_TRUE(contains(metrics, "\nsealrelay_dkim_failed_total 0\n")) << metrics;
  // A signature that no longer fits the body fails at the verifier: the check is real.
  std::string tampered = rsa_copy.data;
  tampered.replace(tampered.find(mark), 1, "Z");
  std::string diag;
  EXPECT_EQ(verify(tampered, keys().rsa_txt, &diag), 1) << diag;
}

// A message of about `size` bytes from `from`: lines that start with dots (stuffed on the
// wire), lines of 998 characters, trailing WSP and empty lines at the end (relaxed body).
std::string large_message(const std::string& from, const std::string& subject, size_t size) {
  std::string m = "From: <" + from + ">\r\nTo: <rcpt@dest.test>\r\nSubject: " + subject + "\r\n\r\n";
  for (size_t i = 0; m.size() < size; ++i) {
    if (i % 5 == 0) m += ".";
    if (i % 97 == 0) m += std::string(997, char('a' + i % 26));
    else m += "line " + std::to_string(i) + " \t of " + subject + "  ";
    m += "\r\n";
  }
  return m + "\r\n\r\n";
}

// Files in every partition's large/ directory of the relay's spool.
std::vector<std::string> body_files(const relay& r) {
  std::vector<std::string> v;
  std::error_code ec;
  for (const auto& part : fs::directory_iterator(r.state_dir() / "spool", ec))
    for (const auto& f : fs::directory_iterator(part.path() / "large", ec)) v.push_back(f.path().string());
  return v;
}

TEST_F(Dkim, LargeMessagesStreamToABodyFileAndAreSignedOnTheWay) {
  ASSERT_TRUE(start_dns("dest.test MX 10 mx.dest.test\nmx.dest.test A 127.0.0.2\n"));
  // The MX answers the dot after 3 s: each message's body file is still there at its 250.
  fake_mx* mx = start_mx({.hosts = {"127.0.0.2"}, .delays = {"dot=3"}});
  ASSERT_TRUE(mx);
  const uint16_t admin_port = free_port();
  _admin_listen = "127.0.0.1:" + std::to_string(admin_port);
  relay* r = start_relay(dkim_toml());
  ASSERT_TRUE(r);
  struct sent_message {
    std::string from, domain, algorithm, txt;
    bool announce_size;
    std::string subject, text;
  };
  std::vector<sent_message> msgs = {
      {"big@sender.test", "sender.test", "rsa-sha256", keys().rsa_txt, false, {}, {}},
      {"big@sender.test", "sender.test", "rsa-sha256", keys().rsa_txt, true, {}, {}},
      {"big@ed.test", "ed.test", "ed25519-sha256", keys().ed_txt, true, {}, {}},
      {"big@ed.test", "ed.test", "ed25519-sha256", keys().ed_txt, false, {}, {}},
  };
  for (size_t i = 0; i < msgs.size(); ++i) {
    auto& m = msgs[i];
    m.subject = unique("dkim-large-" + std::to_string(i));
    m.text = large_message(m.from, m.subject, 2 * 1024 * 1024 + i * 4099);
    raw_client c;
    ASSERT_TRUE(open_session(c, r->port()));
    const std::string stuffed = dot_stuff(m.text);
    std::string reply;
    if (m.announce_size) {
      auto mail = c.command("MAIL FROM:<" + m.from + "> SIZE=" + std::to_string(stuffed.size()));
      ASSERT_TRUE(mail && reply_code(*mail) == 250) << mail.value_or("none");
      auto rcpt = c.command("RCPT TO:<rcpt@dest.test>");
      ASSERT_TRUE(rcpt && reply_code(*rcpt) == 250) << rcpt.value_or("none");
      auto data = c.command("DATA");
      ASSERT_TRUE(data && reply_code(*data) == 354) << data.value_or("none");
      ASSERT_TRUE(c.send(stuffed) && c.send(".\r\n"));
      reply = c.read_reply(30s).value_or("no reply");
    } else {
      reply = send_message(c, m.from, {"rcpt@dest.test"}, stuffed).value_or("no reply");
    }
    auto id = queued_id(reply);
    ASSERT_TRUE(id) << reply << r->log();
    // Streamed, not held in memory: its body file exists (until the MX has it).
    bool named = false;
    for (const auto& f : body_files(*r)) named = named || f.ends_with("/" + *id);
    EXPECT_TRUE(named) << m.subject << ": no body file for " << *id;
    c.command("QUIT");
  }
  for (const auto& m : msgs) {
    SCOPED_TRACE(m.subject + " (" + m.algorithm + (m.announce_size ? ", SIZE=)" : ")"));
    const mx_message* got = wait_for(*mx, "Subject: " + m.subject + "\r\n", 60s);
    ASSERT_TRUE(got) << r->log();
    const mx_message copy = *got;
    expect_signed(copy, m.domain, m.algorithm, m.txt);
    // Byte for byte: the signature, our Received: field, then exactly what was sent.
    ASSERT_GE(copy.data.size(), m.text.size());
    EXPECT_TRUE(copy.data.ends_with(m.text)) << copy.data.size() << " bytes";
    const size_t received = copy.data.find("\r\nReceived: from ");
    ASSERT_NE(received, std::string::npos);
    // Nothing between the signature (its continuation lines start with HTAB) and Received:.
    for (size_t p = copy.data.find("\r\n"); p < received; p = copy.data.find("\r\n", p + 2))
      EXPECT_EQ(copy.data[p + 2], '\t') << copy.data.substr(0, received + 2);
    EXPECT_EQ(copy.data.find("\r\nFrom: <" + m.from + ">"), copy.data.size() - m.text.size() - 2);
  }
  std::string metrics;
  for (auto until = std::chrono::steady_clock::now() + 5s; std::chrono::steady_clock::now() < until;) {
    metrics = run({"curl", "-sS", "--max-time", "5", "http://127.0.0.1:" + std::to_string(admin_port) + "/metrics"}).output;
    if (contains(metrics, "\nsealrelay_dkim_signed_total 4\n")) break;
    std::this_thread::sleep_for(100ms);
  }
  EXPECT_TRUE(contains(metrics, "\nsealrelay_dkim_signed_total 4\n")) << metrics;
  EXPECT_TRUE(contains(metrics, "\nsealrelay_dkim_failed_total 0\n")) << metrics;
}

TEST_F(Dkim, TlsrptReportIsSignedForTheReportersDomain) {
  ASSERT_TRUE(start_dns("dest.test MX 10 mx.dest.test\nmx.dest.test A 127.0.0.2\n"
                        "_smtp._tls.dest.test TXT \"v=TLSRPTv1;rua=mailto:tlsrpt@reports.test\"\n"
                        "reports.test MX 10 mx.reports.test\nmx.reports.test A 127.0.0.4\n"));
  fake_mx* mx = start_mx({.hosts = {"127.0.0.2"}});
  fake_mx* rua = start_mx({.hosts = {"127.0.0.4"}});
  ASSERT_TRUE(mx && rua);
  relay* r = start_relay(dkim_toml() +
                         "[tlsrpt]\nenabled = true\norganization = \"Test Org\"\ncontact = \"tls-admin@sender.test\"\n"
                         "from = \"tlsrpt@sender.test\"\ninterval = \"2s\"\n");
  ASSERT_TRUE(r);
  auto res = r->swaks({"--from", "carol@other.test", "--to", "rcpt@dest.test"});
  ASSERT_EQ(res.exit_code, 0) << res.output;
  const mx_message* report = wait_for(*rua, "TLS-Report-Domain: dest.test", 30s);
  ASSERT_TRUE(report) << r->log() << dump_audit(*r);
  const mx_message copy = *report;
  expect_signed(copy, "sender.test", "rsa-sha256", keys().rsa_txt);
}

TEST_F(Dkim, OurDsnIsSignedForTheRelaysDomain) {
  ASSERT_TRUE(start_dns("dest.test MX 10 mx.dest.test\nmx.dest.test A 127.0.0.2\n"
                        "other.test MX 10 mx.other.test\nmx.other.test A 127.0.0.3\n"));
  fake_mx* mx = start_mx({.hosts = {"127.0.0.2"}, .replies = {"rcpt=550"}});
  fake_mx* back = start_mx({.hosts = {"127.0.0.3"}});
  ASSERT_TRUE(mx && back);
  // The DSN's From: is MAILER-DAEMON@<server.hostname> (relay.test in the harness).
  relay* r = start_relay(dkim_toml("[[dkim]]\ndomain = \"relay.test\"\nselector = \"bounce\"\nkey_file = \"" +
                                   keys().ed + "\"\nalgorithm = \"ed25519-sha256\"\n\n"));
  ASSERT_TRUE(r);
  // From a domain that does not sign: the DSN's copy of the headers carries no signature.
  auto res = r->swaks({"--from", "carol@other.test", "--to", "rcpt@dest.test"});
  ASSERT_EQ(res.exit_code, 0) << res.output;
  const mx_message* dsn = wait_for(*back, "MAILER-DAEMON@relay.test");
  ASSERT_TRUE(dsn) << r->log() << dump_audit(*r);
  const mx_message copy = *dsn;
  EXPECT_EQ(copy.mail_from, "");
  expect_signed(copy, "relay.test", "ed25519-sha256", keys().ed_txt);
}

TEST_F(Dkim, KeyThatDoesNotFitItsEntryStopsTheStart) {
  // An Ed25519 key under algorithm = "rsa-sha256": refused with the entry's line.
  relay_options o;
  o.extra_toml = "[[dkim]]\ndomain = \"sender.test\"\nselector = \"s1\"\nkey_file = \"" + keys().ed +
                 "\"\nalgorithm = \"rsa-sha256\"\n";
  relay r(o);
  auto res = run({relay_binary(), "--check-config", "-c", r.config_path().string()}, 30s, r.dir());
  EXPECT_EQ(res.exit_code, 2) << res.output;
  const std::string cfg = read_file(r.config_path());
  const size_t line = size_t(std::count(cfg.begin(), cfg.begin() + cfg.find("[[dkim]]"), '\n')) + 1;
  EXPECT_TRUE(contains(res.output, r.config_path().string() + ":" + std::to_string(line) + ": dkim[0].algorithm:"))
      << res.output;
}

}  // namespace
}  // namespace sr::integ
