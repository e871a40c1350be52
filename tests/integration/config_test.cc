// `sealrelay --check-config` and start-up with a bad config: exit 2 and a message that
// names the file, the line and the key (DESIGN.md §3); a good config exits 0.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "support/harness.hh"

namespace sr::integ {
namespace {

namespace fs = std::filesystem;

// Write `text` as a config file in `dir` and return its path.
std::string write_config(const temp_dir& dir, const std::string& name, const std::string& text) {
  auto path = (dir.path() / name).string();
  std::ofstream(path) << text;
  return path;
}

const char* const listen_block =
    "[[listen]]\n"
    "address = \"127.0.0.1:1\"\n"
    "tls = \"none\"\n";

TEST(CheckConfig, GeneratedTestConfigIsValid) {
  relay r;   // writes its config but is not started
  auto res = run({relay_binary(), "--check-config", "-c", r.config_path().string()}, 30s, r.dir());
  EXPECT_EQ(res.exit_code, 0) << res.output;
}

TEST(CheckConfig, UnknownKeyNamesFileLineAndKey) {
  temp_dir d;
  auto path = write_config(d, "bad.toml",
                           std::string("[server]\n"            // line 1
                                       "hostname = \"x\"\n"     // line 2
                                       "bogus_knob = 1\n")      // line 3
                               + listen_block);
  auto res = run({relay_binary(), "--check-config", "-c", path}, 30s, d.path());
  EXPECT_EQ(res.exit_code, 2) << res.output;
  EXPECT_NE(res.output.find(path + ":3:"), std::string::npos) << res.output;
  EXPECT_NE(res.output.find("bogus_knob"), std::string::npos) << res.output;
}

TEST(CheckConfig, BadLimitValueNamesFileLineAndKey) {
  temp_dir d;
  auto path = write_config(d, "bad.toml",
                           std::string(listen_block) +     // lines 1-3
                               "\n"                        // line 4
                               "[limits]\n"                // line 5
                               "max_recipients = 10\n"     // line 6
                               "idle_timeout = \"soon\"\n");  // line 7
  auto res = run({relay_binary(), "--check-config", "-c", path}, 30s, d.path());
  EXPECT_EQ(res.exit_code, 2) << res.output;
  EXPECT_NE(res.output.find(path + ":7:"), std::string::npos) << res.output;
  EXPECT_NE(res.output.find("idle_timeout"), std::string::npos) << res.output;
}

TEST(CheckConfig, WrongTypeNamesFileLineAndKey) {
  temp_dir d;
  auto path = write_config(d, "bad.toml",
                           std::string(listen_block) +     // lines 1-3
                               "[limits]\n"                // line 4
                               "max_errors = \"many\"\n");  // line 5
  auto res = run({relay_binary(), "--check-config", "-c", path}, 30s, d.path());
  EXPECT_EQ(res.exit_code, 2) << res.output;
  EXPECT_NE(res.output.find(path + ":5:"), std::string::npos) << res.output;
  EXPECT_NE(res.output.find("max_errors"), std::string::npos) << res.output;
}

TEST(CheckConfig, DaemonRefusesToStartOnBadConfig) {
  temp_dir d;
  auto path = write_config(d, "bad.toml",
                           std::string(listen_block) +  // lines 1-3
                               "[server]\n"             // line 4
                               "shards = -3\n");        // line 5
  auto res = run({relay_binary(), "-c", path}, 30s, d.path());
  EXPECT_EQ(res.exit_code, 2) << res.output;
  EXPECT_NE(res.output.find(path + ":5:"), std::string::npos) << res.output;
  EXPECT_NE(res.output.find("shards"), std::string::npos) << res.output;
}

TEST(CheckConfig, ShardsBeyondWhatTheSpoolSupportsAreRefused) {
  temp_dir d;
  auto path = write_config(d, "bad.toml",
                           std::string(listen_block) +  // lines 1-3
                               "[server]\n"             // line 4
                               "shards = 300\n");       // line 5: queue ids name 256 shards
  auto res = run({relay_binary(), "--check-config", "-c", path}, 30s, d.path());
  EXPECT_EQ(res.exit_code, 2) << res.output;
  EXPECT_NE(res.output.find(path + ":5:"), std::string::npos) << res.output;
  EXPECT_NE(res.output.find("shards"), std::string::npos) << res.output;
}

TEST(CheckConfig, MissingCertificateFileIsReported) {
  temp_dir d;
  auto path = write_config(d, "bad.toml",
                           "[tls]\n"                                    // line 1
                           "cert_file = \"/nonexistent/relay.crt\"\n"   // line 2
                           "key_file = \"/nonexistent/relay.key\"\n" +
                               std::string(listen_block));
  auto res = run({relay_binary(), "--check-config", "-c", path}, 30s, d.path());
  EXPECT_EQ(res.exit_code, 2) << res.output;
  EXPECT_NE(res.output.find("cert_file"), std::string::npos) << res.output;
}

// Submission is built (issue 10): a submission listener needs a users file the daemon can
// read and others cannot; a readable one or a bad line stops --check-config and the start
// (exit 2, naming the key, the file and the line).
TEST(CheckConfig, SubmissionUsersFileIsChecked) {
  temp_dir d;
  fs::path users = d.path() / "users";
  auto path = write_config(d, "sub.toml",
                           std::string(listen_block) +
                               "[[listen]]\naddress = \"127.0.0.1:2\"\nmode = \"submission\"\n"
                               "tls = \"none\"\n[auth]\nusers_file = \"" + users.string() + "\"\n");
  // mkpasswd -m sha-512 -S saltsaltsalt secret
  const std::string line =
      "alice@example.org:$6$saltsaltsalt$PMWE8DTlam1JU37Piyk43bHcMxTJq6sgu5DKB0/"
      "tGPjanN35jcY68QkpDfPFUGPWX5uCxIQkSPzMmqEiVNgts.\n";
  auto write_users = [&](const std::string& text, fs::perms mode) {
    { std::ofstream(users) << text; }
    fs::permissions(users, mode);
  };
  write_users(line, fs::perms::owner_read | fs::perms::owner_write);
  auto ok = run({relay_binary(), "--check-config", "-c", path}, 30s, d.path());
  EXPECT_EQ(ok.exit_code, 0) << ok.output;
  struct refused {
    std::string users;
    fs::perms mode;
    std::string expect;
  };
  const refused cases[] = {
      {line, fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read, "too open"},
      {"# users\nalice@example.org\n", fs::perms::owner_read | fs::perms::owner_write,
       users.string() + ":2:"},
  };
  for (const auto& c : cases) {
    write_users(c.users, c.mode);
    for (bool check : {true, false}) {  // --check-config, and the daemon at start
      std::vector<std::string> argv{relay_binary(), "-c", path};
      if (check) argv.push_back("--check-config");
      auto res = run(argv, 30s, d.path());
      EXPECT_EQ(res.exit_code, 2) << res.output;
      EXPECT_NE(res.output.find("auth.users_file"), std::string::npos) << res.output;
      EXPECT_NE(res.output.find(c.expect), std::string::npos) << res.output;
    }
  }
}

TEST(CheckConfig, FallbackMethodsAreValid) {
  // A forced policy that leaves fallback unset, "defer", the fallback methods and the
  // [fallback] keys (the sidecar is built) are valid.
  temp_dir d;
  auto path = write_config(d, "ok.toml",
                           std::string(listen_block) +
                               "[[policy]]\ndomain = \"bank.example\"\ntls = \"forced\"\n"
                               "[[policy]]\ndomain = \"clinic.example\"\nfallback = [\"defer\"]\n"
                               "[[policy]]\ndomain = \"lab.example\"\nfallback = [\"pgp\", \"escrow\"]\n"
                               "[fallback]\nspawn = false\nstore = \"sqlite\"\nportal_listen = \"\"\n");
  auto res = run({relay_binary(), "--check-config", "-c", path}, 30s, d.path());
  EXPECT_EQ(res.exit_code, 0) << res.output;
}

// A private key that group or others may read is refused (as OpenSSH refuses one), at
// --check-config and at start; mode 0600 passes.
TEST(CheckConfig, PrivateKeyReadableByOthersIsRefused) {
  temp_dir d;
  fs::path certs = source_root() / "tests" / "certs";
  fs::path key = d.path() / "relay.key";
  fs::copy_file(certs / "server.key", key);
  auto path = write_config(d, "relay.toml",
                           "[tls]\n"
                           "cert_file = \"" + (certs / "server.crt").string() + "\"\n"
                           "key_file = \"" + key.string() + "\"\n"
                           "ca_file = \"" + (certs / "ca.crt").string() + "\"\n"
                           "[[listen]]\n"
                           "address = \"127.0.0.1:1\"\n"
                           "tls = \"starttls\"\n");
  for (auto perms : {fs::perms(0644), fs::perms(0640), fs::perms(0604)}) {
    fs::permissions(key, perms);
    for (bool check : {true, false}) {
      std::vector<std::string> argv{relay_binary(), "-c", path};
      if (check) argv.push_back("--check-config");
      auto res = run(argv, 30s, d.path());
      EXPECT_EQ(res.exit_code, 2) << res.output;
      EXPECT_NE(res.output.find(path + ": tls.key_file: " + key.string() + ": permissions 0"),
                std::string::npos)
          << res.output;
      EXPECT_NE(res.output.find("too open"), std::string::npos) << res.output;
    }
  }
  fs::permissions(key, fs::perms(0600));
  auto res = run({relay_binary(), "--check-config", "-c", path}, 30s, d.path());
  EXPECT_EQ(res.exit_code, 0) << res.output;
}

// `sealrelay --version` names the wolfSSL the dynamic loader really picked (the project's
// build-deps/wolfssl through the binary's RUNPATH, never Debian's library) and its fast
// paths: AES-NI in use whenever this CPU has it, the Intel asm and SP assembly built.
TEST(CheckConfig, VersionNamesTheProjectsWolfssl) {
  if (const char* sys = std::getenv("SEALRELAY_SYSTEM_WOLFSSL"); sys && std::string(sys) == "1")
    GTEST_SKIP() << "built with -Dsystem_wolfssl=true (comparison build)";
  temp_dir d;
  auto res = run({relay_binary(), "--version"}, 30s, d.path());
  EXPECT_EQ(res.exit_code, 0) << res.output;
  EXPECT_EQ(res.output.rfind("sealrelay ", 0), 0u) << res.output;
  EXPECT_NE(res.output.find("wolfSSL 5."), std::string::npos) << res.output;
  EXPECT_NE(res.output.find("/build-deps/wolfssl/lib/libwolfssl.so"), std::string::npos)
      << res.output;
  EXPECT_EQ(res.output.find("not built"), std::string::npos) << res.output;
  EXPECT_NE(res.output.find("SP x86-64 asm"), std::string::npos) << res.output;
  __builtin_cpu_init();
  if (__builtin_cpu_supports("aes"))
    EXPECT_NE(res.output.find("AES-NI in use"), std::string::npos) << res.output;
  if (__builtin_cpu_supports("avx2"))
    EXPECT_NE(res.output.find("Intel asm (AVX2) in use"), std::string::npos) << res.output;
}

}  // namespace
}  // namespace sr::integ
