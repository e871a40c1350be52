// Self-tests of the test peers (support/peers.hh): the fake MX driven by swaks and a raw client, each
// misbehaviour option checked against what a real client sees and what the MX recorded;
// the DNS fixture and the DNSSEC world checked with drill. If these fail, the delivery and policy tests built
// on the peers cannot be trusted.
#include "support/peers.hh"

#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <thread>

namespace sr::integ {
namespace {

// swaks to one of the fake MX's hosts.
run_result swaks_to(const fake_mx& mx, const std::string& host, std::vector<std::string> extra) {
  std::vector<std::string> a{"swaks", "--server", host, "--port", std::to_string(mx.port()),
                             "--helo", "relay.test", "--timeout", "10"};
  a.insert(a.end(), extra.begin(), extra.end());
  return run(a, 30s);
}

std::string ca_file() { return (source_root() / "tests" / "certs" / "ca.crt").string(); }

TEST(Peers, FakeMxPlainRecordsEnvelopeAndUnstuffedData) {
  fake_mx mx({.hosts = {"127.0.0.2", "127.0.0.3"}, .cert = ""});
  ASSERT_TRUE(mx.start()) << mx.error();
  auto r = swaks_to(mx, "127.0.0.3", {"--from", "alice@src.test", "--to", "bob@dst.test,carol@dst.test",
                                      "--data", "Subject: hi\r\n\r\n.leading dot\r\nbody"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  ASSERT_TRUE(mx.wait_messages(1)) << mx.log();
  auto msgs = mx.messages();
  ASSERT_EQ(msgs.size(), 1u);
  const auto& m = msgs[0];
  EXPECT_EQ(m.mx, "127.0.0.3:" + std::to_string(mx.port()));
  EXPECT_EQ(m.helo, "relay.test");
  EXPECT_EQ(m.mail_from, "alice@src.test");
  EXPECT_EQ(m.rcpts, (std::vector<std::string>{"bob@dst.test", "carol@dst.test"}));
  EXPECT_EQ(m.data, "Subject: hi\r\n\r\n.leading dot\r\nbody\r\n");   // swaks stuffed it, the MX unstuffed it
  EXPECT_FALSE(m.tls);
  EXPECT_TRUE(m.accepted);
  EXPECT_EQ(m.reply, 250);
  EXPECT_FALSE(m.bare_lf);
  ASSERT_TRUE(mx.wait_sessions(1));
  auto s = mx.sessions();
  EXPECT_FALSE(s[0].starttls_offered);   // no certificate: no STARTTLS
  EXPECT_TRUE(s[0].plaintext_command("MAIL"));
}

TEST(Peers, FakeMxStartTlsVerifiedAgainstTestCa) {
  fake_mx mx;
  ASSERT_TRUE(mx.start()) << mx.error();
  auto r = swaks_to(mx, "127.0.0.2", {"--from", "a@src.test", "--to", "b@dst.test", "--tls",
                                      "--tls-verify", "--tls-ca-path", ca_file()});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  ASSERT_TRUE(mx.wait_messages(1));
  auto m = mx.messages().at(0);
  EXPECT_TRUE(m.tls);
  EXPECT_EQ(m.tls_version, "TLSv1.3");
  EXPECT_GE(m.cipher_bits, 128);
  ASSERT_TRUE(mx.wait_sessions(1));
  auto s = mx.sessions().at(0);
  EXPECT_TRUE(s.starttls_offered);
  EXPECT_FALSE(s.plaintext_command("MAIL"));
  EXPECT_EQ(s.commands.at(1), "STARTTLS");
  EXPECT_EQ(s.commands.at(2), "TLS EHLO relay.test");
}

TEST(Peers, FakeMxTls10Only) {
  fake_mx mx({.tls_max = "1.0"});
  ASSERT_TRUE(mx.start()) << mx.error();
  // A client that insists on TLS 1.2 gets no session at all...
  auto refused = swaks_to(mx, "127.0.0.2", {"--from", "a@src.test", "--to", "b@dst.test", "--tls",
                                            "--tls-protocol", "tlsv1_2"});
  EXPECT_NE(refused.exit_code, 0) << refused.output;
  // ...one that allows TLS 1.0 (OpenSSL 3 needs security level 0 for it) gets exactly 1.0.
  auto r = swaks_to(mx, "127.0.0.2", {"--from", "a@src.test", "--to", "b@dst.test", "--tls",
                                      "--tls-protocol", "tlsv1", "--tls-cipher", "DEFAULT:@SECLEVEL=0"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  ASSERT_TRUE(mx.wait_messages(1));
  auto msgs = mx.messages();
  ASSERT_EQ(msgs.size(), 1u);
  EXPECT_EQ(msgs[0].tls_version, "TLSv1");
}

TEST(Peers, FakeMxStartTls454) {
  fake_mx mx({.starttls_reply = "454 4.7.0 TLS not available"});
  ASSERT_TRUE(mx.start()) << mx.error();
  auto r = swaks_to(mx, "127.0.0.2", {"--from", "a@src.test", "--to", "b@dst.test", "--tls"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_TRUE(contains(r.output, "454 4.7.0 TLS not available")) << r.output;
  ASSERT_TRUE(mx.wait_sessions(1));
  auto s = mx.sessions().at(0);
  EXPECT_TRUE(s.starttls_offered);
  EXPECT_FALSE(s.tls);
  EXPECT_FALSE(s.plaintext_command("MAIL"));
  EXPECT_TRUE(mx.messages().empty());
}

TEST(Peers, FakeMxTlsAbortCutsTheHandshake) {
  fake_mx mx({.tls_abort = true});
  ASSERT_TRUE(mx.start()) << mx.error();
  auto r = swaks_to(mx, "127.0.0.2", {"--from", "a@src.test", "--to", "b@dst.test", "--tls"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_TRUE(contains(r.output, "220 2.0.0 Ready to start TLS")) << r.output;
  EXPECT_TRUE(contains(r.output, "TLS startup failed")) << r.output;
  ASSERT_TRUE(mx.wait_sessions(1));
  auto s = mx.sessions().at(0);
  EXPECT_FALSE(s.tls);
  ASSERT_FALSE(s.events.empty());
  EXPECT_TRUE(contains(s.events[0], "tls-abort after")) << s.events[0];
  EXPECT_TRUE(mx.messages().empty());
}

TEST(Peers, FakeMxRcpt450OnceThenAccepts) {
  fake_mx mx({.cert = "", .replies = {"rcpt=450:4.2.0 busy x1"}});
  ASSERT_TRUE(mx.start()) << mx.error();
  auto first = swaks_to(mx, "127.0.0.2", {"--from", "a@src.test", "--to", "b@dst.test"});
  EXPECT_NE(first.exit_code, 0);
  EXPECT_TRUE(contains(first.output, "450 4.2.0 busy")) << first.output;
  auto second = swaks_to(mx, "127.0.0.2", {"--from", "a@src.test", "--to", "b@dst.test"});
  ASSERT_EQ(second.exit_code, 0) << second.output;
  ASSERT_TRUE(mx.wait_messages(1));
  auto msgs = mx.messages();
  ASSERT_EQ(msgs.size(), 1u);
  EXPECT_EQ(msgs[0].rcpts, std::vector<std::string>{"b@dst.test"});
}

TEST(Peers, FakeMxPerRecipientAndDotReplies) {
  fake_mx mx({.cert = "", .replies = {"dot=451x1"}, .rcpt_replies = {"gone@dst.test=550:5.1.1 no such user"}});
  ASSERT_TRUE(mx.start()) << mx.error();
  auto r = swaks_to(mx, "127.0.0.2", {"--from", "a@src.test", "--to", "ok@dst.test,gone@dst.test"});
  EXPECT_TRUE(contains(r.output, "550 5.1.1 no such user")) << r.output;
  EXPECT_TRUE(contains(r.output, "451 ")) << r.output;
  ASSERT_TRUE(mx.wait_messages(1));
  auto m = mx.messages().at(0);
  EXPECT_EQ(m.rcpts, std::vector<std::string>{"ok@dst.test"});
  EXPECT_FALSE(m.accepted);   // 451 after the dot: recorded, not accepted
  EXPECT_EQ(m.reply, 451);
}

TEST(Peers, FakeMxMultiLineReplyAndSessionTimes) {
  // A rule's "\n" makes a multi-line reply (Gmail's 421-4.7.28 ...); each session records
  // when it was accepted and when QUIT came, so tests can count concurrent connections.
  fake_mx mx({.hosts = {"127.0.0.1"}, .cert = "", .rcpt_replies = {"slow@dst.test=421:4.7.28 first line\\n4.7.28 last linex1"},
              .delays = {"dot=0.3"}});
  ASSERT_TRUE(mx.start()) << mx.error();
  raw_client c;
  ASSERT_TRUE(c.connect(mx.port()));   // raw_client speaks to 127.0.0.1
  ASSERT_EQ(reply_code(c.read_reply().value_or("")), 220);
  ASSERT_EQ(reply_code(c.command("EHLO relay.test").value_or("")), 250);
  ASSERT_EQ(reply_code(c.command("MAIL FROM:<a@src.test>").value_or("")), 250);
  EXPECT_EQ(c.command("RCPT TO:<slow@dst.test>").value_or(""), "421-4.7.28 first line\r\n421 4.7.28 last line\r\n");
  EXPECT_EQ(reply_code(c.command("RCPT TO:<slow@dst.test>").value_or("")), 250);   // x1: used up
  EXPECT_EQ(reply_code(c.command("DATA").value_or("")), 354);
  EXPECT_EQ(reply_code(c.command("hi\r\n.").value_or("")), 250);   // after the 0.3 s delay
  EXPECT_EQ(reply_code(c.command("QUIT").value_or("")), 221);
  ASSERT_TRUE(mx.wait_sessions(1)) << mx.log();
  auto s = mx.sessions().at(0);
  auto m = mx.messages().at(0);
  EXPECT_GT(s.opened, 1.6e9);
  EXPECT_LE(s.opened, m.ts - 0.3);     // accepted before the delayed dot reply
  EXPECT_GE(s.closed, m.ts);           // QUIT came after the message
  EXPECT_LT(s.closed - s.opened, 10.0);
}

TEST(Peers, FakeMxStripsStartTlsAfterFirstConnection) {
  fake_mx mx({.strip_starttls_after = 1});
  ASSERT_TRUE(mx.start()) << mx.error();
  auto first = swaks_to(mx, "127.0.0.2", {"--quit-after", "EHLO"});
  auto second = swaks_to(mx, "127.0.0.2", {"--quit-after", "EHLO"});
  EXPECT_TRUE(contains(first.output, "250 STARTTLS") || contains(first.output, "250-STARTTLS")) << first.output;
  EXPECT_FALSE(contains(second.output, "STARTTLS")) << second.output;
  ASSERT_TRUE(mx.wait_sessions(2));
  auto s = mx.sessions();
  EXPECT_EQ(s.size(), 2u);
  EXPECT_NE(s[0].starttls_offered, s[1].starttls_offered);
}

TEST(Peers, FakeMxRecordsBareLfAndPipelinedCommands) {
  fake_mx mx({.hosts = {"127.0.0.1"}, .cert = ""});
  ASSERT_TRUE(mx.start()) << mx.error();
  raw_client c;
  ASSERT_TRUE(c.connect(mx.port()));
  ASSERT_TRUE(c.read_reply());
  // One write: EHLO, MAIL, RCPT, DATA pipelined; answered in order.
  ASSERT_TRUE(c.send("EHLO raw.test\r\nMAIL FROM:<a@src.test> BODY=8BITMIME\r\nRCPT TO:<b@dst.test>\r\nDATA\r\n"));
  auto ehlo = c.read_reply();
  ASSERT_TRUE(ehlo);
  EXPECT_TRUE(contains(*ehlo, "PIPELINING"));
  EXPECT_TRUE(contains(*ehlo, "8BITMIME"));
  EXPECT_TRUE(contains(*ehlo, "SIZE "));
  EXPECT_EQ(reply_code(c.read_reply().value_or("")), 250);
  EXPECT_EQ(reply_code(c.read_reply().value_or("")), 250);
  EXPECT_EQ(reply_code(c.read_reply().value_or("")), 354);
  ASSERT_TRUE(c.send("Subject: x\r\n\r\nsmuggled\n.\nline\r\n.\r\n"));
  EXPECT_EQ(reply_code(c.read_reply().value_or("")), 250);
  ASSERT_TRUE(mx.wait_messages(1));
  auto m = mx.messages().at(0);
  EXPECT_TRUE(m.bare_lf);
  EXPECT_EQ(m.mail_params, std::vector<std::string>{"BODY=8BITMIME"});
  EXPECT_EQ(m.data, "Subject: x\r\n\r\nsmuggled\n.\nline\r\n");
}

TEST(Peers, FakeMxWolfSslBackendServes3DesOnly) {
  // Debian's OpenSSL has no 3DES suites; the wolfSSL backend serves them. The harness client
  // (wolfSSL, default suite list) accepts 3DES when it is all the server offers.
  fake_mx mx({.hosts = {"127.0.0.1"}, .tls_max = "1.2", .ciphers = "ECDHE-ECDSA-DES-CBC3-SHA", .tls_backend = "wolfssl"});
  ASSERT_TRUE(mx.start()) << mx.error();
  raw_client c;
  std::string ehlo;
  ASSERT_TRUE(open_session(c, mx.port(), &ehlo));
  EXPECT_TRUE(contains(ehlo, "STARTTLS"));
  EXPECT_EQ(reply_code(c.command("STARTTLS").value_or("")), 220);
  ASSERT_TRUE(c.start_tls()) << mx.log();
  EXPECT_EQ(reply_code(c.command("QUIT").value_or("")), 221);
  c.close();
  ASSERT_TRUE(mx.wait_sessions(1)) << mx.log();
  auto s = mx.sessions().at(0);
  EXPECT_TRUE(s.tls);
  EXPECT_EQ(s.cipher, "ECDHE-ECDSA-DES-CBC3-SHA");
  EXPECT_EQ(s.tls_version, "TLSv1.2");
  EXPECT_EQ(s.cipher_bits, 112);
}

TEST(Peers, FakeMxSilentNeverGreets) {
  fake_mx mx({.hosts = {"127.0.0.1"}, .silent = true});
  ASSERT_TRUE(mx.start()) << mx.error();
  raw_client c;
  ASSERT_TRUE(c.connect(mx.port()));
  EXPECT_EQ(c.read_for(300ms), "");
  EXPECT_FALSE(c.eof());
}

TEST(Peers, DnsFixtureAnswers) {
  dns_fixture dns(R"(
example.test      MX 10 mx1.example.test
example.test      MX 20 mx2.example.test
mx1.example.test  A 127.0.0.2
mx2.example.test  A 127.0.0.3
nomx.test         A 127.0.0.4
nullmx.test       MX 0 .
gone.test         NXDOMAIN
broken.test       SERVFAIL
alias.test        CNAME example.test
signed.test       MX 10 mx1.example.test
signed.test       AD
big.test          TC
big.test          MX 10 mx1.example.test
)");
  ASSERT_TRUE(dns.start()) << dns.error();
  ASSERT_NE(dns.port(), 0);

  auto mx = drill(dns.port(), "MX", "example.test");
  EXPECT_TRUE(contains(mx.output, "rcode: NOERROR")) << mx.output;
  EXPECT_TRUE(contains(mx.output, "MX\t10 mx1.example.test.")) << mx.output;
  EXPECT_TRUE(contains(mx.output, "MX\t20 mx2.example.test.")) << mx.output;
  EXPECT_FALSE(contains(mx.output, " ad ")) << mx.output;

  auto a = drill(dns.port(), "A", "mx1.example.test");
  EXPECT_TRUE(contains(a.output, "A\t127.0.0.2")) << a.output;

  auto nodata = drill(dns.port(), "MX", "nomx.test");   // exists, no MX: NODATA, not NXDOMAIN
  EXPECT_TRUE(contains(nodata.output, "rcode: NOERROR")) << nodata.output;
  EXPECT_TRUE(contains(nodata.output, "ANSWER: 0")) << nodata.output;
  EXPECT_TRUE(contains(nodata.output, "SOA")) << nodata.output;

  auto null_mx = drill(dns.port(), "MX", "nullmx.test");
  EXPECT_TRUE(contains(null_mx.output, "MX\t0 .")) << null_mx.output;

  for (const char* name : {"gone.test", "www.gone.test", "unlisted.test"}) {
    auto nx = drill(dns.port(), "MX", name);
    EXPECT_TRUE(contains(nx.output, "rcode: NXDOMAIN")) << name << "\n" << nx.output;
  }
  auto sf = drill(dns.port(), "MX", "broken.test");
  EXPECT_TRUE(contains(sf.output, "rcode: SERVFAIL")) << sf.output;

  auto cname = drill(dns.port(), "MX", "alias.test");
  EXPECT_TRUE(contains(cname.output, "CNAME\texample.test.")) << cname.output;
  EXPECT_TRUE(contains(cname.output, "MX\t10 mx1.example.test.")) << cname.output;

  auto ad = drill(dns.port(), "MX", "signed.test");
  EXPECT_TRUE(contains(ad.output, "flags: qr rd ra ad")) << ad.output;

  auto udp = drill(dns.port(), "MX", "big.test");
  EXPECT_TRUE(contains(udp.output, " tc ")) << udp.output;
  auto tcp = drill(dns.port(), "MX", "big.test", true);
  EXPECT_FALSE(contains(tcp.output, " tc ")) << tcp.output;
  EXPECT_TRUE(contains(tcp.output, "MX\t10 mx1.example.test.")) << tcp.output;
}

// `drill -D` (DO bit: unbound sets AD only when asked) through the DNSSEC world's unbound.
run_result drill_do(const dnssec_world& w, const std::string& type, const std::string& name) {
  return run({"drill", "-D", "@127.0.0.1", "-p", std::to_string(w.port()), type, name}, 20s);
}

// The PID a pidfile names, or 0.
pid_t pid_in(const std::filesystem::path& file) { return static_cast<pid_t>(std::atoi(read_file(file).c_str())); }

TEST(Peers, DnssecWorldValidatesAndStopsItsServers) {
  if (access("/usr/sbin/nsd", X_OK) != 0 || access("/usr/sbin/unbound", X_OK) != 0)
    GTEST_SKIP() << "nsd or unbound not installed (tools/install-deps)";
  std::string ee = tlsa_rdata(source_root() / "tests" / "certs" / "server.crt", 3, 1, 1);
  ASSERT_EQ(ee.size(), 6u + 64u) << ee;
  EXPECT_EQ(ee.rfind("3 1 1 ", 0), 0u);
  std::string full = tlsa_rdata(source_root() / "tests" / "certs" / "ca.crt", 2, 0, 0);
  EXPECT_EQ(full.rfind("2 0 0 3082", 0), 0u) << full;   // the DER certificate itself
  EXPECT_EQ(tlsa_rdata(source_root() / "tests" / "certs" / "absent.crt", 3, 1, 1), "");

  dnssec_world w("$ZONE good.test\ngood.test MX 10 mx1.good.test\nmx1.good.test A 127.0.0.2\n"
                 "_25._tcp.mx1.good.test TLSA " + ee + "\n_25._tcp.mx1.good.test BOGUS TLSA\n"
                 "$ZONE bad.test bogus\nbad.test MX 10 mx1.bad.test\n"
                 "$ZONE plain.test insecure\nplain.test MX 10 mx1.plain.test\n"
                 "$ZONE gone.test dead\n");
  ASSERT_TRUE(w.start()) << w.error() << "\n" << w.log();
  ASSERT_NE(w.port(), 0);

  auto mx = drill_do(w, "MX", "good.test");
  EXPECT_TRUE(contains(mx.output, "rcode: NOERROR")) << mx.output;
  EXPECT_TRUE(contains(mx.output, "flags: qr rd ra ad")) << mx.output;
  EXPECT_TRUE(contains(mx.output, "MX\t10 mx1.good.test.")) << mx.output;
  EXPECT_TRUE(contains(mx.output, "RRSIG\tMX 13 ")) << mx.output;   // ECDSA P-256
  auto tlsa = drill_do(w, "TLSA", "_25._tcp.mx1.good.test");   // its signature broken after signing
  EXPECT_TRUE(contains(tlsa.output, "rcode: SERVFAIL")) << tlsa.output;
  auto bad = drill_do(w, "MX", "bad.test");
  EXPECT_TRUE(contains(bad.output, "rcode: SERVFAIL")) << bad.output;
  auto plain = drill_do(w, "MX", "plain.test");
  EXPECT_TRUE(contains(plain.output, "rcode: NOERROR")) << plain.output;
  EXPECT_TRUE(contains(plain.output, "flags: qr rd ra ;")) << plain.output;   // no AD
  auto gone = drill_do(w, "MX", "gone.test");
  EXPECT_TRUE(contains(gone.output, "rcode: SERVFAIL")) << gone.output;
  auto outside = drill_do(w, "A", "elsewhere.example");   // never asked beyond loopback
  EXPECT_TRUE(contains(outside.output, "rcode: SERVFAIL")) << outside.output;
  EXPECT_TRUE(contains(w.log(), "validation failure <bad.test. MX IN>")) << w.log();

  pid_t nsd = pid_in(w.dir() / "nsd.pid");
  pid_t unbound = pid_in(w.dir() / "unbound.pid");
  ASSERT_GT(nsd, 0);
  ASSERT_GT(unbound, 0);
  EXPECT_EQ(::kill(nsd, 0), 0);
  EXPECT_EQ(::kill(unbound, 0), 0);
  w.stop();
  // Both servers are gone once the fixture has stopped (it waits for them).
  for (pid_t p : {nsd, unbound}) {
    auto until = clock::now() + 5s;
    while (::kill(p, 0) == 0 && clock::now() < until) std::this_thread::sleep_for(20ms);
    EXPECT_NE(::kill(p, 0), 0) << "pid " << p << " still running after stop()";
  }
}

}  // namespace
}  // namespace sr::integ
