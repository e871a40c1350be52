// sealrelay-check against the loopback world (issue 8, item 4): a DNS fixture and fake MX
// hosts with a good certificate (127.0.0.2), no STARTTLS (127.0.0.3), an expired
// certificate (127.0.0.4) and a wrong-name certificate (127.0.0.5), all on one port. Checks
// the human report and the --json fields (MX, STARTTLS, TLS, chain, verdict tokens, TLSA
// and MTA-STS records), the verdicts under each policy with the floors of -c FILE, the
// exit codes 0/1/2 and --file with two domains. JSON is read strictly (support/json_tree.hh).
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>

#include "support/json_tree.hh"
#include "support/world.hh"

namespace sr::integ {
namespace {

namespace fs = std::filesystem;

std::string check_binary() {
  const char* bin = std::getenv("SEALRELAY_CHECK_BIN");
  return bin ? bin : "sealrelay-check";
}

// Every scalar of `n` as PATH -> JSON text ("\"x\"", 3, true, null); PATH joins object keys
// and array indexes with '.' ("mx.hosts.0.name"); empty arrays/objects are "[]" / "{}".
void flatten_into(const json_tree::node& n, const std::string& path, std::map<std::string, std::string>& out) {
  auto sub = [&](const std::string& k) { return path.empty() ? k : path + "." + k; };
  switch (n.type) {
    case json_tree::node::object:
      if (n.keys.empty()) out[path] = "{}";
      for (const auto& k : n.keys) flatten_into(*n.get(k), sub(k), out);
      return;
    case json_tree::node::array:
      if (n.items.empty()) out[path] = "[]";
      for (size_t i = 0; i < n.items.size(); ++i) flatten_into(*n.items[i], sub(std::to_string(i)), out);
      return;
    case json_tree::node::string: out[path] = "\"" + n.text + "\""; return;
    case json_tree::node::null: out[path] = "null"; return;
    default: out[path] = n.text; return;
  }
}

// The --json output flattened; empty (and a test failure) when it is not strict JSON.
std::map<std::string, std::string> flatten(const std::string& json) {
  std::map<std::string, std::string> out;
  auto root = json_tree::parse(json);
  if (!root) {
    ADD_FAILURE() << "not JSON:\n" << json;
    return out;
  }
  flatten_into(*root, "", out);
  return out;
}

// SHA-256 of tests/certs/server.crt's SubjectPublicKeyInfo (a DANE-EE 3 1 1 record):
// openssl x509 -in server.crt -noout -pubkey | openssl pkey -pubin -outform DER | sha256sum
const std::string server_spki_sha256 = "2aaa2771397cbbbd0df76f0b6600dfe4bc37942db7181bbcc22d939316c64b0d";

// SHA-256 of tests/certs/inter.crt (DER): a DANE-TA 2 0 1 record for the intermediate CA.
const std::string inter_sha256 = "73dbd16550c034c2a15dfc4535011b3b28e97c38e55967cd67536c40e008b074";

class SealrelayCheck : public ::testing::Test, public world {
 protected:
  void SetUp() override {
    ASSERT_NE(_port, 0);
    std::string p = std::to_string(_port);
    ASSERT_TRUE(start_dns(
        "good.test MX 10 mx1.mx.test\n"
        "mx1.mx.test A 127.0.0.2\n"
        "mx1.mx.test AD\n"
        "_" + p + "._tcp.mx1.mx.test TLSA 3 1 1 "
        "0102030405060708091011121314151617181920212223242526272829303132\n"
        "_mta-sts.good.test TXT \"v=STSv1; id=20261206T000000\"\n"
        "plain.test MX 10 mx2.mx.test\n"
        "mx2.mx.test A 127.0.0.3\n"
        "expired.test MX 10 mx3.mx.test\n"
        "mx3.mx.test A 127.0.0.4\n"
        "wrong.test MX 10 mx4.mx.test\n"
        "mx4.mx.test A 127.0.0.5\n"
        "both.test MX 10 mx2.mx.test\n"
        "both.test MX 20 mx1.mx.test\n"
        "old.test MX 10 mx5.mx.test\n"
        "mx5.mx.test A 127.0.0.6\n"
        "aes128.test MX 10 mx6.mx.test\n"
        "mx6.mx.test A 127.0.0.7\n"
        "gone.test NXDOMAIN\n"
        "mixed.test MX 10 mx2.mx.test\n"
        "mixed.test MX 20 mx4.mx.test\n"
        "silent.test MX 10 mx10.mx.test\n"
        "mx10.mx.test A 127.0.0.8\n"
        // MTA-STS: policies on https_host (127.0.0.1, tests/certs/sts.crt names mta-sts.dN.sts.test)
        "d1.sts.test MX 10 mx1.mx.test\n"
        "_mta-sts.d1.sts.test TXT \"v=STSv1; id=pol1\"\n"
        "mta-sts.d1.sts.test A 127.0.0.1\n"
        "d2.sts.test MX 10 mx1.mx.test\n"
        "_mta-sts.d2.sts.test TXT \"v=STSv1; id=pol2\"\n"
        "mta-sts.d2.sts.test A 127.0.0.1\n"
        "d3.sts.test MX 10 mx1.mx.test\n"
        "_mta-sts.d3.sts.test TXT \"v=STSv1; id=nofile\"\n"
        "mta-sts.d3.sts.test A 127.0.0.1\n"
        "d4.sts.test MX 10 mx1.mx.test\n"
        "_mta-sts.d4.sts.test TXT \"v=STSv1; id=one\"\n"
        "_mta-sts.d4.sts.test TXT \"v=STSv1; id=two\"\n"
        "d5.sts.test MX 10 mx3.mx.test\n"
        "_mta-sts.d5.sts.test TXT \"v=STSv1; id=expired\"\n"
        "mta-sts.d5.sts.test A 127.0.0.1\n"
        "d6.sts.test MX 10 mx1.mx.test\n"
        "_mta-sts.d6.sts.test TXT \"v=STSv1; id=elsewhere\"\n"
        "mta-sts.d6.sts.test A 127.0.0.1\n"
        // DANE: signed answers (AD) for the MX, the address and the TLSA records.
        "dane.test MX 10 mx7.mx.test\n"
        "dane.test AD\n"
        "mx7.mx.test A 127.0.0.2\n"
        "mx7.mx.test AD\n"
        "_" + p + "._tcp.mx7.mx.test TLSA 3 1 1 " + server_spki_sha256 + "\n"
        "_" + p + "._tcp.mx7.mx.test AD\n"
        "danebad.test MX 10 mx8.mx.test\n"
        "danebad.test AD\n"
        "mx8.mx.test A 127.0.0.2\n"
        "mx8.mx.test AD\n"
        "_" + p + "._tcp.mx8.mx.test TLSA 3 1 1 "
        "0102030405060708091011121314151617181920212223242526272829303132\n"
        "_" + p + "._tcp.mx8.mx.test AD\n"
        "daneta.test MX 10 mx11.mx.test\n"
        "daneta.test AD\n"
        "mx11.mx.test A 127.0.0.9\n"
        "mx11.mx.test AD\n"
        "_" + p + "._tcp.mx11.mx.test TLSA 2 0 1 " + inter_sha256 + "\n"
        "_" + p + "._tcp.mx11.mx.test AD\n"
        "danefail.test MX 10 mx9.mx.test\n"
        "danefail.test AD\n"
        "mx9.mx.test A 127.0.0.2\n"
        "mx9.mx.test AD\n"
        "_" + p + "._tcp.mx9.mx.test SERVFAIL\n"));
    fake_mx_options good;
    good.hosts = {"127.0.0.2"};
    ASSERT_NE(start_mx(good), nullptr);
    fake_mx_options plain;
    plain.hosts = {"127.0.0.3"};
    plain.no_starttls = true;
    ASSERT_NE(start_mx(plain), nullptr);
    fake_mx_options expired;
    expired.hosts = {"127.0.0.4"};
    expired.cert = "expired";
    ASSERT_NE(start_mx(expired), nullptr);
    fake_mx_options wrong;
    wrong.hosts = {"127.0.0.5"};
    wrong.cert = "wrongname";
    ASSERT_NE(start_mx(wrong), nullptr);
  }

  // A config as the daemon would load it, resolving through the fixture, with `policies`
  // ([[policy]] tables) appended; its path.
  fs::path config(const std::string& policies = {}) {
    fs::path f = _dir.path() / ("check-" + unique("c") + ".toml");
    fs::path certs = source_root() / "tests" / "certs";
    std::ofstream(f) << "[server]\nstate_dir = \"" << (_dir.path() / "var").string() << "\"\n"
                     << "hostname = \"checker.test\"\n"
                     << "[tls]\ncert_file = \"" << (certs / "server.crt").string() << "\"\n"
                     << "key_file = \"" << (certs / "server.key").string() << "\"\n"
                     << "ca_file = \"" << (certs / "ca.crt").string() << "\"\n"
                     << "[[listen]]\naddress = \"127.0.0.1:" << free_port() << "\"\n"
                     << "[dns]\nresolvers = [\"" << _dns->address() << "\"]\n"
                     << "[outbound]\nsmtp_port = " << _port << "\n"
                     << policies;
    return f;
  }

  run_result check(std::vector<std::string> args, const char* timeout_s = "5") {
    args.insert(args.begin(), check_binary());
    args.push_back("--timeout");
    args.push_back(timeout_s);
    return run(args, 60s);
  }

  temp_dir _dir;
};

TEST_F(SealrelayCheck, GoodHostHumanReport) {
  run_result r = check({"-c", config().string(), "good.test"});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  const std::string& o = r.output;
  EXPECT_NE(o.find("good.test (SMTP port " + std::to_string(_port) + ")"), std::string::npos) << o;
  EXPECT_NE(o.find("10 mx1.mx.test: 127.0.0.2, AD (DNSSEC validated)"), std::string::npos) << o;
  EXPECT_NE(o.find("STARTTLS     offered, accepted"), std::string::npos) << o;
  EXPECT_NE(o.find("TLSv1.3"), std::string::npos) << o;
  EXPECT_NE(o.find("certificate  verified for mx1.mx.test"), std::string::npos) << o;
  EXPECT_NE(o.find("subject /O=sealrelay tests/CN=mx.test"), std::string::npos) << o;
  EXPECT_NE(o.find("issuer  /O=sealrelay tests/CN=sealrelay test CA"), std::string::npos) << o;
  EXPECT_NE(o.find("names   localhost, mx.test, *.mx.test, 127.0.0.1"), std::string::npos) << o;
  EXPECT_NE(o.find("valid   2026-"), std::string::npos) << o;
  EXPECT_NE(o.find("3 1 1 0102030405"), std::string::npos) << o;
  EXPECT_NE(o.find("\"v=STSv1; id=20261206T000000\""), std::string::npos) << o;
  EXPECT_NE(o.find("opportunistic reachable over TLS via mx1.mx.test[127.0.0.2]"), std::string::npos) << o;
  EXPECT_NE(o.find("forced        reachable over TLS"), std::string::npos) << o;
  EXPECT_NE(o.find("exclusive     reachable over TLS"), std::string::npos) << o;
  EXPECT_NE(o.find("configured policy: opportunistic (default"), std::string::npos) << o;
  EXPECT_NE(o.find("result: reachable under its configured policy (opportunistic)"), std::string::npos) << o;
}

TEST_F(SealrelayCheck, GoodHostJson) {
  auto cfg = config("[[policy]]\ndomain = \"good.test\"\ntls = \"forced\"\nverify = \"ca\"\n");
  run_result r = check({"-c", cfg.string(), "--json", "good.test"});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  auto j = flatten(r.output);
  EXPECT_EQ(j["domain"], "\"good.test\"");
  EXPECT_EQ(j["port"], std::to_string(_port));
  EXPECT_EQ(j["mx.status"], "\"ok\"");
  EXPECT_EQ(j["mx.hosts.0.name"], "\"mx1.mx.test\"");
  EXPECT_EQ(j["mx.hosts.0.preference"], "10");
  EXPECT_EQ(j["mx.hosts.0.address_ad"], "true");
  const std::string a = "mx.hosts.0.addresses.0.";
  EXPECT_EQ(j[a + "ip"], "\"127.0.0.2\"");
  EXPECT_EQ(j[a + "connected"], "true");
  EXPECT_EQ(j[a + "starttls_offered"], "true");
  EXPECT_EQ(j[a + "tls.ok"], "true");
  EXPECT_EQ(j[a + "tls.version"], "\"TLSv1.3\"");
  EXPECT_EQ(j[a + "tls.cipher_bits"].empty(), false);
  EXPECT_GE(std::atoi(j[a + "tls.cipher_bits"].c_str()), 128);
  EXPECT_EQ(j[a + "tls.cert"], "\"verified\"");
  EXPECT_EQ(j[a + "tls.chain.0.subject"], "\"/O=sealrelay tests/CN=mx.test\"");
  EXPECT_EQ(j[a + "tls.chain.0.names.1"], "\"mx.test\"");
  EXPECT_EQ(j[a + "tls.chain.0.not_after"].substr(0, 5), "\"2126");
  EXPECT_EQ(j[a + "verdicts.forced.ok"], "true");
  EXPECT_EQ(j["mx.hosts.0.tlsa.status"], "\"ok\"");
  EXPECT_EQ(j["mx.hosts.0.tlsa.records.0"].substr(0, 12), "\"3 1 1 01020");
  EXPECT_EQ(j["mta_sts.txt.0"], "\"v=STSv1; id=20261206T000000\"");
  EXPECT_EQ(j["configured.policy.tls"], "\"forced\"");
  EXPECT_EQ(j["configured.policy.verify"], "\"ca\"");
  EXPECT_EQ(j["configured.source"], "\"config\"");
  EXPECT_EQ(j["configured.pattern"], "\"good.test\"");
  EXPECT_EQ(j["verdicts.forced.reachable"], "true");
  EXPECT_EQ(j["verdicts.forced.tls"], "true");
  EXPECT_EQ(j["verdicts.forced.floors.verify"], "\"ca\"");
  EXPECT_EQ(j["verdicts.exclusive.reachable"], "true");
  EXPECT_EQ(j["verdicts.opportunistic.reachable"], "true");
  EXPECT_EQ(j["reachable"], "true");
}

TEST_F(SealrelayCheck, NoStarttlsUnderEachPolicy) {
  // Default (opportunistic): reachable in plaintext, exit 0.
  run_result r = check({"-c", config().string(), "--json", "plain.test"});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  auto j = flatten(r.output);
  EXPECT_EQ(j["mx.hosts.0.addresses.0.starttls_offered"], "false");
  EXPECT_EQ(j["mx.hosts.0.addresses.0.tls"], "null");
  EXPECT_EQ(j["verdicts.opportunistic.reachable"], "true");
  EXPECT_EQ(j["verdicts.opportunistic.tls"], "false");
  EXPECT_EQ(j["verdicts.forced.reachable"], "false");
  EXPECT_EQ(j["verdicts.forced.reason"], "\"starttls-not-offered\"");
  EXPECT_EQ(j["verdicts.forced.where"], "\"mx2.mx.test[127.0.0.3]\"");
  EXPECT_EQ(j["verdicts.exclusive.reason"], "\"starttls-not-offered\"");
  EXPECT_EQ(j["verdicts.exclusive.on_failure"], "\"dropped (audited)\"");
  EXPECT_EQ(j["reachable"], "true");
  // Configured forced: not reachable, exit 1.
  auto forced = config("[[policy]]\ndomain = \".test\"\ntls = \"forced\"\n");
  r = check({"-c", forced.string(), "plain.test"});
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("STARTTLS     not offered"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("forced        NOT reachable: starttls-not-offered at mx2.mx.test[127.0.0.3]"),
            std::string::npos) << r.output;
  EXPECT_NE(r.output.find("result: NOT reachable under its configured policy (forced)"), std::string::npos)
      << r.output;
  // A second MX with TLS makes it reachable under forced again.
  r = check({"-c", forced.string(), "both.test"});
  EXPECT_EQ(r.exit_code, 0) << r.output;

  EXPECT_NE(r.output.find("forced        reachable over TLS via mx1.mx.test[127.0.0.2]"), std::string::npos)
      << r.output;

  // Every failing address is listed, in the order the relay tries them.
  auto strict = config("[[policy]]\ndomain = \"mixed.test\"\ntls = \"exclusive\"\nverify = \"ca\"\n");
  r = check({"-c", strict.string(), "--json", "mixed.test"});
  EXPECT_EQ(r.exit_code, 1) << r.output;
  auto m = flatten(r.output);
  EXPECT_EQ(m["verdicts.exclusive.failures.0.reason"], "\"starttls-not-offered\"");
  EXPECT_EQ(m["verdicts.exclusive.failures.0.where"], "\"mx2.mx.test[127.0.0.3]\"");
  EXPECT_EQ(m["verdicts.exclusive.failures.1.reason"], "\"cert-name-mismatch\"");
  EXPECT_EQ(m["verdicts.exclusive.failures.1.where"], "\"mx4.mx.test[127.0.0.5]\"");
  EXPECT_EQ(m["verdicts.opportunistic.failures"], "[]");
}

TEST_F(SealrelayCheck, CertificateVerdictsAndFloors) {
  auto verify_ca = config("[[policy]]\ndomain = \".test\"\ntls = \"exclusive\"\nverify = \"ca\"\n");
  run_result r = check({"-c", verify_ca.string(), "--json", "expired.test"});
  EXPECT_EQ(r.exit_code, 1) << r.output;
  auto j = flatten(r.output);
  EXPECT_EQ(j["mx.hosts.0.addresses.0.tls.cert"], "\"cert-expired\"");
  EXPECT_EQ(j["mx.hosts.0.addresses.0.tls.chain.0.not_after"], "\"2001-01-01T00:00:00Z\"");
  EXPECT_EQ(j["verdicts.exclusive.reachable"], "false");
  EXPECT_EQ(j["verdicts.exclusive.reason"], "\"cert-expired\"");
  EXPECT_EQ(j["verdicts.forced.reason"], "\"cert-expired\"");  // judged with verify = ca too
  EXPECT_EQ(j["verdicts.opportunistic.reachable"], "true");
  EXPECT_EQ(j["verdicts.opportunistic.tls"], "true");
  EXPECT_EQ(j["mx.hosts.0.addresses.0.verdicts.opportunistic.reason"], "\"cert-expired\"");

  r = check({"-c", verify_ca.string(), "--json", "wrong.test"});
  EXPECT_EQ(r.exit_code, 1) << r.output;
  j = flatten(r.output);
  EXPECT_EQ(j["mx.hosts.0.addresses.0.tls.cert"], "\"cert-name-mismatch\"");
  EXPECT_EQ(j["mx.hosts.0.addresses.0.tls.chain.0.names.0"], "\"wrong.example\"");
  EXPECT_EQ(j["verdicts.exclusive.reason"], "\"cert-name-mismatch\"");

  // verify = none (Postfix `encrypt`): the same host is good enough.
  auto encrypt = config("[[policy]]\ndomain = \".test\"\ntls = \"exclusive\"\n");
  r = check({"-c", encrypt.string(), "wrong.test"});
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

TEST_F(SealrelayCheck, VersionAndCipherFloors) {
  fake_mx_options old;
  old.hosts = {"127.0.0.6"};
  old.tls_min = "1.1";
  old.tls_max = "1.1";
  ASSERT_NE(start_mx(old), nullptr);
  fake_mx_options aes128;
  aes128.hosts = {"127.0.0.7"};
  aes128.tls_max = "1.2";
  aes128.ciphers = "ECDHE-ECDSA-AES128-GCM-SHA256";
  ASSERT_NE(start_mx(aes128), nullptr);
  auto cfg = config("[[policy]]\ndomain = \"old.test\"\ntls = \"forced\"\n"
                    "[[policy]]\ndomain = \"aes128.test\"\ntls = \"exclusive\"\nmin_cipher_bits = 256\n");
  run_result r = check({"-c", cfg.string(), "--json", "old.test"});
  EXPECT_EQ(r.exit_code, 1) << r.output;
  auto j = flatten(r.output);
  EXPECT_EQ(j["verdicts.forced.reason"], "\"old-protocol\"");
  EXPECT_EQ(j["verdicts.opportunistic.reachable"], "true");

  r = check({"-c", cfg.string(), "--json", "aes128.test"});
  EXPECT_EQ(r.exit_code, 1) << r.output;
  j = flatten(r.output);
  EXPECT_EQ(j["mx.hosts.0.addresses.0.tls.version"], "\"TLSv1.2\"");
  EXPECT_EQ(j["mx.hosts.0.addresses.0.tls.cipher"], "\"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256\"");
  EXPECT_EQ(j["mx.hosts.0.addresses.0.tls.cipher_bits"], "128");
  EXPECT_EQ(j["verdicts.exclusive.floors.min_cipher_bits"], "256");
  EXPECT_EQ(j["verdicts.exclusive.reason"], "\"weak-cipher\"");
  EXPECT_EQ(j["verdicts.forced.reason"], "\"weak-cipher\"");
  EXPECT_EQ(j["verdicts.opportunistic.reachable"], "true");
}

TEST_F(SealrelayCheck, UnknownDomainAndExitCodes) {
  run_result r = check({"-c", config().string(), "gone.test"});
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("the domain does not exist"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("NOT reachable: nxdomain"), std::string::npos) << r.output;

  r = check({"--bogus", "good.test"});
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("unknown option '--bogus'"), std::string::npos) << r.output;
  r = check({});
  EXPECT_EQ(r.exit_code, 2) << r.output;
  r = check({"--port", "0", "good.test"});
  EXPECT_EQ(r.exit_code, 2) << r.output;

  // A bad key names file, line and key, as the daemon does.
  fs::path bad = _dir.path() / "bad.toml";
  std::ofstream(bad) << "[outbound]\nsmtp_port = 25\nno_such_key = 1\n[[listen]]\naddress = \"127.0.0.1:2525\"\n";
  r = check({"-c", bad.string(), "good.test"});
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find(bad.string() + ":3:"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("no_such_key"), std::string::npos) << r.output;
  r = check({"-c", (_dir.path() / "missing.toml").string(), "good.test"});
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("missing.toml"), std::string::npos) << r.output;
}

TEST_F(SealrelayCheck, SilentMxTimesOut) {
  fake_mx_options silent;
  silent.hosts = {"127.0.0.8"};
  silent.silent = true;
  ASSERT_NE(start_mx(silent), nullptr);
  run_result r = check({"-c", config().string(), "--json", "silent.test"}, "1");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  auto j = flatten(r.output);
  EXPECT_EQ(j["mx.hosts.0.addresses.0.connected"], "true");
  EXPECT_EQ(j["mx.hosts.0.addresses.0.error"], "\"timeout waiting for the greeting\"");
  EXPECT_EQ(j["verdicts.opportunistic.reachable"], "false");
  EXPECT_EQ(j["verdicts.opportunistic.reason"], "\"timeout\"");
}

TEST_F(SealrelayCheck, RouteNextHopInsteadOfMx) {
  // A [[route]] sends the domain to a next hop: no MX lookup (routed.test has no MX at all),
  // no MTA-STS, no DANE; the next hop's name (or IP) is what the certificate must carry.
  std::string p = std::to_string(_port);
  auto cfg = config("[[route]]\ndomain = \"routed.test\"\nnext_hop = \"[127.0.0.2]:" + p + "\"\n"
                    "[[route]]\ndomain = \".hop.test\"\nnext_hop = \"mx4.mx.test:" + p + "\"\n"
                    "[[policy]]\ndomain = \".hop.test\"\ntls = \"forced\"\nverify = \"ca\"\n");
  run_result r = check({"-c", cfg.string(), "--json", "routed.test"});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  auto j = flatten(r.output);
  EXPECT_EQ(j["route.next_hop"], "\"[127.0.0.2]:" + p + "\"");
  EXPECT_EQ(j["route.pattern"], "\"routed.test\"");
  EXPECT_EQ(j["mx.hosts.0.name"], "\"127.0.0.2\"");
  EXPECT_EQ(j["mx.hosts.0.addresses.0.tls.cert"], "\"verified\"");  // IP subjectAltName
  EXPECT_EQ(j["mta_sts"], "null");
  EXPECT_EQ(j["mx.hosts.0.tlsa.records"], "[]");

  r = check({"-c", cfg.string(), "a.hop.test"});
  EXPECT_EQ(r.exit_code, 1) << r.output;  // wrong-name certificate under verify = ca
  EXPECT_NE(r.output.find("route: [[route]] domain = \".hop.test\" sends it to mx4.mx.test:" + p),
            std::string::npos) << r.output;
  EXPECT_NE(r.output.find("forced        NOT reachable: cert-name-mismatch at mx4.mx.test[127.0.0.5]"),
            std::string::npos) << r.output;
  EXPECT_NE(r.output.find("MTA-STS: not used for a [[route]] next hop"), std::string::npos) << r.output;
}

TEST_F(SealrelayCheck, FileOfDomains) {
  auto cfg = config("[[policy]]\ndomain = \"plain.test\"\ntls = \"forced\"\n");
  fs::path list = _dir.path() / "domains.txt";
  std::ofstream(list) << "# the domains we send to\ngood.test\n\n  plain.test   # a clinic\n";
  run_result r = check({"-c", cfg.string(), "--json", "--file", list.string()});
  EXPECT_EQ(r.exit_code, 1) << r.output;  // plain.test is not reachable under forced
  auto j = flatten(r.output);
  EXPECT_EQ(j["domains.0.domain"], "\"good.test\"");
  EXPECT_EQ(j["domains.0.reachable"], "true");
  EXPECT_EQ(j["domains.1.domain"], "\"plain.test\"");
  EXPECT_EQ(j["domains.1.reachable"], "false");
  EXPECT_EQ(j["domains.1.verdicts.forced.reason"], "\"starttls-not-offered\"");
  EXPECT_EQ(j["reachable"], "false");
  EXPECT_EQ(j.count("domains.2.domain"), 0u);

  // Both reachable under their configured policies: exit 0, human output for each.
  r = check({"-c", config().string(), "--file", list.string()});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("good.test (SMTP port"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("plain.test (SMTP port"), std::string::npos) << r.output;
}

TEST_F(SealrelayCheck, MtaStsRecordPolicyAndMxMatch) {
  https_host_options ho;
  ho.certs = {"sts"};
  temp_dir pol;
  std::ofstream(pol.path() / "d1.sts.test.txt") << "version: STSv1\r\nmode: enforce\r\nmx: mx1.mx.test\r\nmax_age: 86400\r\n";
  std::ofstream(pol.path() / "d2.sts.test.txt") << "version: STSv1\nmode: testing\nmx: *.other.example\nmax_age: 600\n";
  ho.policy_dir = pol.path().string();
  https_host web(ho);
  ASSERT_TRUE(web.start()) << web.error() << web.log();
  std::string sts_port = std::to_string(web.port());
  auto cfg = config();

  run_result r = check({"-c", cfg.string(), "--sts-port", sts_port, "--json", "d1.sts.test"});
  auto j = flatten(r.output);
  EXPECT_EQ(j["mta_sts.txt.0"], "\"v=STSv1; id=pol1\"");
  EXPECT_EQ(j["mta_sts.record"], "\"valid\"");
  EXPECT_EQ(j["mta_sts.id"], "\"pol1\"");
  EXPECT_EQ(j["mta_sts.url"], "\"https://mta-sts.d1.sts.test:" + sts_port + "/.well-known/mta-sts.txt\"");
  EXPECT_EQ(j["mta_sts.fetch.ok"], "true");
  EXPECT_EQ(j["mta_sts.fetch.status"], "200");
  EXPECT_EQ(j["mta_sts.policy.mode"], "\"enforce\"");
  EXPECT_EQ(j["mta_sts.policy.max_age"], "86400");
  EXPECT_EQ(j["mta_sts.policy.mx.0"], "\"mx1.mx.test\"");
  EXPECT_EQ(j["mx.hosts.0.tlsa.sts_match"], "true");

  r = check({"-c", cfg.string(), "--sts-port", sts_port, "d2.sts.test"});
  EXPECT_NE(r.output.find("mode testing, max_age 600, mx *.other.example"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("mx1.mx.test: matches no mx pattern"), std::string::npos) << r.output;

  // A valid record whose policy is not there: the fetch fails (HTTP 404).
  r = check({"-c", cfg.string(), "--sts-port", sts_port, "--json", "d3.sts.test"});
  j = flatten(r.output);
  EXPECT_EQ(j["mta_sts.record"], "\"valid\"");
  EXPECT_EQ(j["mta_sts.fetch.ok"], "false");
  EXPECT_EQ(j["mta_sts.fetch.status"], "404");
  EXPECT_EQ(j["mta_sts.policy"], "null");

  // Two records: invalid, nothing fetched (RFC 8461 §3.1).
  r = check({"-c", cfg.string(), "--sts-port", sts_port, "--json", "d4.sts.test"});
  j = flatten(r.output);
  EXPECT_EQ(j["mta_sts.record"], "\"invalid\"");
  EXPECT_EQ(j["mta_sts.fetch"], "null");
  EXPECT_EQ(web.requests().size(), 3u) << "d1, d2, d3 fetched; d4 not";

  // No record at all.
  r = check({"-c", cfg.string(), "--sts-port", sts_port, "good.test"});
  EXPECT_NE(r.output.find("MTA-STS: record valid, id 20261206T000000"), std::string::npos) << r.output;
  r = check({"-c", cfg.string(), "--sts-port", sts_port, "plain.test"});
  EXPECT_NE(r.output.find("MTA-STS: no policy published"), std::string::npos) << r.output;
}

TEST_F(SealrelayCheck, MtaStsEnforceRaisesThePolicy) {
  https_host_options ho;
  ho.certs = {"sts"};
  temp_dir pol;
  std::ofstream(pol.path() / "d1.sts.test.txt") << "version: STSv1\nmode: enforce\nmx: *.mx.test\nmax_age: 86400\n";
  std::ofstream(pol.path() / "d5.sts.test.txt") << "version: STSv1\nmode: enforce\nmx: *.mx.test\nmax_age: 86400\n";
  std::ofstream(pol.path() / "d6.sts.test.txt") << "version: STSv1\nmode: enforce\nmx: *.other.example\nmax_age: 86400\n";
  ho.policy_dir = pol.path().string();
  https_host web(ho);
  ASSERT_TRUE(web.start()) << web.error() << web.log();
  // MTA-STS is on by default; the policy hosts listen on a high port.
  auto cfg = config("[mta_sts]\nhttps_port = " + std::to_string(web.port()) + "\n");

  // A good MX the policy names: reachable, every policy raised to verify = ca.
  run_result r = check({"-c", cfg.string(), "--json", "d1.sts.test"});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  auto j = flatten(r.output);
  EXPECT_EQ(j["mta_sts.enabled"], "true");
  EXPECT_EQ(j["verdicts.opportunistic.reachable"], "true");
  EXPECT_EQ(j["verdicts.opportunistic.floors.raised"], "true");
  EXPECT_EQ(j["verdicts.opportunistic.floors.verify"], "\"ca\"");

  // An expired certificate: the configured opportunistic policy is raised and fails.
  r = check({"-c", cfg.string(), "--json", "d5.sts.test"});
  EXPECT_EQ(r.exit_code, 1) << r.output;
  j = flatten(r.output);
  EXPECT_EQ(j["verdicts.opportunistic.reachable"], "false");
  EXPECT_EQ(j["verdicts.opportunistic.reason"], "\"cert-expired\"");
  EXPECT_EQ(j["verdicts.opportunistic.on_failure"], "\"retried, bounced at outbound.max_queue_age\"");

  // An MX the policy does not name is never used.
  r = check({"-c", cfg.string(), "d6.sts.test"});
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("mx1.mx.test: matches no mx pattern"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("NOT reachable: mx-not-in-sts-policy at mx1.mx.test[127.0.0.2]"), std::string::npos)
      << r.output;

  // With MTA-STS off in the relay's config, the same domains are judged without it.
  auto off = config("[mta_sts]\nenabled = false\n");
  r = check({"-c", off.string(), "--sts-port", std::to_string(web.port()), "d5.sts.test"});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("not applied: mta_sts.enabled = false"), std::string::npos) << r.output;
}

TEST_F(SealrelayCheck, DaneMatchMismatchAndServfail) {
  auto cfg = config("[dane]\nenabled = true\n");
  run_result r = check({"-c", cfg.string(), "--json", "dane.test"});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  auto j = flatten(r.output);
  EXPECT_EQ(j["mx.ad"], "true");
  EXPECT_EQ(j["mx.hosts.0.tlsa.usable"], "1");
  EXPECT_EQ(j["mx.hosts.0.tlsa.secure"], "true");
  EXPECT_EQ(j["mx.hosts.0.tlsa.applies"], "true");
  EXPECT_EQ(j["mx.hosts.0.addresses.0.tls.dane.verdict"], "\"verified\"");
  EXPECT_EQ(j["mx.hosts.0.addresses.0.tls.dane.depth"], "0");
  // The CA check names mx7.mx.test too (wildcard): both agree here.
  EXPECT_EQ(j["mx.hosts.0.addresses.0.tls.cert"], "\"verified\"");
  EXPECT_EQ(j["verdicts.opportunistic.reachable"], "true");
  EXPECT_EQ(j["verdicts.exclusive.reachable"], "true");

  // A TLSA record that matches nothing: DANE makes TLS mandatory, so even opportunistic fails.
  r = check({"-c", cfg.string(), "--json", "danebad.test"});
  EXPECT_EQ(r.exit_code, 1) << r.output;
  j = flatten(r.output);
  EXPECT_EQ(j["mx.hosts.0.addresses.0.tls.dane.verdict"], "\"tlsa-mismatch\"");
  EXPECT_EQ(j["verdicts.opportunistic.reachable"], "false");
  EXPECT_EQ(j["verdicts.opportunistic.reason"], "\"tlsa-mismatch\"");
  EXPECT_EQ(j["verdicts.forced.reason"], "\"tlsa-mismatch\"");
  r = check({"-c", cfg.string(), "danebad.test"});
  EXPECT_NE(r.output.find("DANE: applies"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("DANE         tlsa-mismatch"), std::string::npos) << r.output;

  // Without [dane] enabled the same records are shown but do not decide.
  r = check({"-c", config().string(), "danebad.test"});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("DANE: would apply, but dane.enabled = false"), std::string::npos) << r.output;

  // DANE-TA: the intermediate the MX sends (chained-chain.crt: leaf, intermediate, CA)
  // matches at depth 1; the whole chain is shown.
  fake_mx_options chained;
  chained.hosts = {"127.0.0.9"};
  fs::path certs = source_root() / "tests" / "certs";
  chained.extra_args = {"--cert", (certs / "chained-chain.crt").string(), "--key", (certs / "chained.key").string()};
  ASSERT_NE(start_mx(chained), nullptr);
  r = check({"-c", cfg.string(), "--json", "daneta.test"});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  j = flatten(r.output);
  EXPECT_EQ(j["mx.hosts.0.addresses.0.tls.dane.verdict"], "\"verified\"");
  EXPECT_EQ(j["mx.hosts.0.addresses.0.tls.dane.depth"], "1");
  EXPECT_EQ(j["mx.hosts.0.addresses.0.tls.chain.1.subject"], "\"/O=sealrelay tests/CN=sealrelay test intermediate\"");
  EXPECT_EQ(j["mx.hosts.0.addresses.0.tls.chain.2.subject"], "\"/O=sealrelay tests/CN=sealrelay test CA\"");
  EXPECT_EQ(j["mx.hosts.0.addresses.0.tls.chain.0.issuer"], j["mx.hosts.0.addresses.0.tls.chain.1.subject"]);

  // SERVFAIL for the TLSA name of a signed host: deferred, never read as "no TLSA".
  r = check({"-c", cfg.string(), "--json", "danefail.test"});
  EXPECT_EQ(r.exit_code, 1) << r.output;
  j = flatten(r.output);
  EXPECT_EQ(j["mx.hosts.0.tlsa.status"], "\"temp_fail\"");
  EXPECT_EQ(j["verdicts.opportunistic.reason"], "\"tlsa-lookup-failed\"");
}

}  // namespace
}  // namespace sr::integ
