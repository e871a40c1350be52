// Spool encryption at rest ([spool] encrypt, key_file, previous_keys) against the real
// daemon: a message parked in a sealed spool leaves neither its text nor its addresses in
// any segment, survives kill -9 and reaches the fake MX intact; after a key rotation (key
// 2 current, key 1 previous) an old segment is still delivered; without key 1 the start is
// refused, naming the segment, and the segment stays; bad key files exit 2 naming the file,
// line and key (--check-config too); a large message's body file is sealed as well and
// delivered whole.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "support/harness.hh"
#include "support/peers.hh"
#include "support/temp_dir.hh"
#include "support/world.hh"

namespace fs = std::filesystem;

namespace sr::integ {
namespace {

// Write a key file of `n` bytes (mode `mode`) filled from `seed`; returns its path.
std::string write_key(const fs::path& dir, const std::string& name, char seed, size_t n = 32,
                      mode_t mode = 0600) {
  std::string key;
  for (size_t i = 0; i < n; ++i) key += char(seed + 7 * i);
  fs::path p = dir / name;
  std::ofstream(p, std::ios::binary) << key;
  ::chmod(p.c_str(), mode);
  return p.string();
}

std::string spool_toml(const std::string& key, bool encrypt, const std::string& previous = "") {
  std::string t = "[spool]\nencrypt = " + std::string(encrypt ? "true" : "false") +
                  "\nkey_file = \"" + key + "\"\n";
  if (!previous.empty()) t += "previous_keys = [\"" + previous + "\"]\n";
  return t;
}

// Every segment file of the relay's spool, read whole and concatenated.
std::string all_segments(const relay& r, size_t* count = nullptr) {
  std::string all;
  size_t n = 0;
  std::error_code ec;
  for (const auto& part : fs::directory_iterator(r.state_dir() / "spool", ec))
    for (const auto& f : fs::directory_iterator(part.path(), ec))
      if (f.path().filename().string().starts_with("seg-")) {
        all += read_file(f.path());
        ++n;
      }
  if (count) *count = n;
  return all;
}

// Replace the [spool] table of the relay's config (it is the last table written).
void set_spool(const relay& r, const std::string& spool) {
  std::string cfg = read_file(r.config_path());
  auto at = cfg.find("[spool]");
  ASSERT_NE(at, std::string::npos) << cfg;
  cfg.erase(at);
  std::ofstream(r.config_path()) << cfg << spool;
}

TEST(SpoolSeal, SealedSpoolHoldsNoPlaintextAndDeliversAfterKill9) {
  sr::test::temp_dir keys{"sr-seal-keys"};
  std::string k1 = write_key(keys.path(), "spool.key", 'A');
  uint16_t port = mx_port();
  ASSERT_NE(port, 0);
  relay_options o = parked_options(port, 1, route_to("*", "127.0.0.2", port));
  o.extra_toml += "\n" + spool_toml(k1, true);
  relay r(o);
  ASSERT_TRUE(r.start()) << r.error();
  const std::string secret = unique("biopsy-result-benign");
  const std::string rcpt = "dr.house@far.test", from = "patient.zero@sender.test";
  std::string why;
  std::string id = submit(r, from, {rcpt}, "Subject: " + secret + "\r\n\r\nFindings: " + secret + "\r\n", &why);
  ASSERT_FALSE(id.empty()) << why << r.log();
  r.kill9();

  size_t n = 0;
  std::string raw = all_segments(r, &n);
  ASSERT_GE(n, 1u);
  EXPECT_FALSE(raw.empty());
  EXPECT_EQ(raw.find(secret), std::string::npos) << "message text in a sealed segment";
  EXPECT_EQ(raw.find(rcpt), std::string::npos) << "recipient address in a sealed segment";
  EXPECT_EQ(raw.find(from), std::string::npos) << "sender address in a sealed segment";
  EXPECT_EQ(raw.find("far.test"), std::string::npos);
  EXPECT_EQ(raw.find(id), std::string::npos) << "queue id in a sealed segment";

  fake_mx mx({.hosts = {"127.0.0.2"}, .port = port});
  ASSERT_TRUE(mx.start()) << mx.error();
  ASSERT_TRUE(r.start()) << "restart failed: " << r.error();
  ASSERT_TRUE(mx.wait_messages(1, 60s)) << r.log();
  std::string q;
  EXPECT_TRUE(wait_queue_empty(r, 30s, &q)) << q;
  EXPECT_EQ(r.stop(), 0) << r.log();
  auto got = mx.messages();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].rcpts, std::vector<std::string>{rcpt});
  EXPECT_NE(got[0].data.find("Subject: " + secret + "\r\n\r\nFindings: " + secret + "\r\n"),
            std::string::npos) << got[0].data;
}

TEST(SpoolSeal, LargeMessageBodyFileIsSealedAndDeliveredWhole) {
  // Over 128 KiB: the body streams to a body file (large/<queue id>), sealed in frames.
  sr::test::temp_dir keys{"sr-seal-keys"};
  std::string k1 = write_key(keys.path(), "spool.key", 'A');
  uint16_t port = mx_port();
  ASSERT_NE(port, 0);
  relay_options o = parked_options(port, 1, route_to("*", "127.0.0.2", port));
  o.extra_toml += "\n" + spool_toml(k1, true);
  relay r(o);
  ASSERT_TRUE(r.start()) << r.error();
  const std::string secret = unique("large-sealed");
  std::string text = "Subject: " + secret + "\r\n\r\n";
  for (int i = 0; text.size() < 700 * 1024; ++i) text += "confidential line " + std::to_string(i) + " of " + secret + "\r\n";
  std::string why;
  std::string id = submit(r, "big@sender.test", {"dr.big@far.test"}, text, &why);
  ASSERT_FALSE(id.empty()) << why << r.log();
  r.kill9();
  fs::path body = r.state_dir() / "spool" / "0" / "large" / id;
  ASSERT_TRUE(fs::exists(body)) << body;
  std::string raw = read_file(body);
  EXPECT_GT(raw.size(), text.size());
  EXPECT_EQ(raw.find(secret), std::string::npos) << "message text in a sealed body file";
  EXPECT_EQ(raw.find("confidential line"), std::string::npos);
  EXPECT_EQ(raw.find("dr.big@far.test"), std::string::npos);
  EXPECT_EQ(all_segments(r).find("dr.big@far.test"), std::string::npos);

  fake_mx mx({.hosts = {"127.0.0.2"}, .port = port});
  ASSERT_TRUE(mx.start()) << mx.error();
  ASSERT_TRUE(r.start()) << "restart failed: " << r.error();
  ASSERT_TRUE(mx.wait_messages(1, 60s)) << r.log();
  std::string q;
  EXPECT_TRUE(wait_queue_empty(r, 30s, &q)) << q;
  EXPECT_EQ(r.stop(), 0) << r.log();
  auto got = mx.messages();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_NE(got[0].data.find(text), std::string::npos) << "delivered bytes differ (" << got[0].data.size() << " bytes)";
  EXPECT_FALSE(fs::exists(body)) << "body file kept after delivery";
}

TEST(SpoolSeal, RotationKeepsOldSegmentsReadableAndAMissingKeyRefusesTheStart) {
  sr::test::temp_dir keys{"sr-seal-keys"};
  std::string k1 = write_key(keys.path(), "key1", 'A');
  std::string k2 = write_key(keys.path(), "key2", 'q');
  uint16_t port = mx_port();
  ASSERT_NE(port, 0);
  relay_options o = parked_options(port, 1, route_to("*", "127.0.0.2", port));
  o.extra_toml += "\n" + spool_toml(k1, true);
  relay r(o);
  ASSERT_TRUE(r.start()) << r.error();
  const std::string secret = unique("rotated");
  std::string why;
  std::string id = submit(r, "old@sender.test", {"old@far.test"}, "Subject: " + secret + "\r\n\r\nold key\r\n", &why);
  ASSERT_FALSE(id.empty()) << why << r.log();
  ASSERT_EQ(r.stop(), 0) << r.log();
  const std::string before = all_segments(r);

  // Key 2 current and key 1 gone: refused, naming a segment; nothing is cut or deleted.
  set_spool(r, spool_toml(k2, true));
  EXPECT_FALSE(r.start(10s));
  EXPECT_FALSE(r.running());
  EXPECT_NE(r.error().find("sealrelay exited with code 1"), std::string::npos) << r.error();
  EXPECT_NE(r.log().find("is sealed with key id"), std::string::npos) << r.log();
  EXPECT_NE(r.log().find("seg-"), std::string::npos) << r.log();
  EXPECT_EQ(all_segments(r), before) << "a segment changed while its key was missing";
  std::string listed;
  EXPECT_FALSE(r.list_queue(&listed)) << listed;  // --list-queue refuses it too

  // Key 1 as a previous key: the old message is delivered.
  set_spool(r, spool_toml(k2, true, k1));
  fake_mx mx({.hosts = {"127.0.0.2"}, .port = port});
  ASSERT_TRUE(mx.start()) << mx.error();
  ASSERT_TRUE(r.start()) << r.error();
  ASSERT_TRUE(mx.wait_messages(1, 60s)) << r.log();
  std::string q;
  EXPECT_TRUE(wait_queue_empty(r, 30s, &q)) << q;
  EXPECT_EQ(r.stop(), 0) << r.log();
  auto got = mx.messages();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_NE(got[0].data.find("Subject: " + secret + "\r\n\r\nold key\r\n"), std::string::npos) << got[0].data;
}

TEST(SpoolSeal, BadKeyFilesExitTwoNamingFileLineAndKey) {
  sr::test::temp_dir keys{"sr-seal-keys"};
  std::string shorter = write_key(keys.path(), "short.key", 'A', 31);
  std::string open_key = write_key(keys.path(), "open.key", 'A', 32, 0644);
  relay r;
  // The relay's config: [spool] appended last, its key_file on the 3rd line of the table.
  struct bad {
    std::string spool, text;
  } cases[] = {
      {spool_toml(shorter, true), "spool.key_file: " + shorter + " holds 31 bytes"},
      {spool_toml(open_key, false), "spool.key_file: " + open_key + ": permissions 0644 are too open"},
  };
  std::string base = read_file(r.config_path());
  for (const auto& c : cases) {
    std::ofstream(r.config_path()) << base << c.spool;
    size_t line = size_t(std::count(base.begin(), base.end(), '\n')) + 3;
    std::string where = r.config_path().string() + ":" + std::to_string(line) + ": ";
    for (bool check : {true, false}) {
      std::vector<std::string> argv{relay_binary(), "-c", r.config_path().string()};
      if (check) argv.push_back("--check-config");
      auto res = run(argv, 20s, r.dir());
      EXPECT_EQ(res.exit_code, 2) << res.output;
      EXPECT_NE(res.output.find(where + c.text), std::string::npos) << where << "\n" << res.output;
    }
  }
}

}  // namespace
}  // namespace sr::integ
