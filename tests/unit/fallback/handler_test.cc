// fallback::handler against real parts: a spool record written with the spool's encoders
// into a temp segment, a GnuPG home with keys made by gpg, S/MIME certificates made by
// openssl, the SQLite store. The outputs are opened the way a recipient would: PGP/MIME with
// `gpg --decrypt`, S/MIME with `openssl cms -decrypt`, the notice's link with escrow::open.
// Also: the chain's order, defer, a record that is corrupt or not the one named (every
// recipient failed), a store that is down (failed, the others unaffected).
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>

#include "sealrelay/fallback/escrow.hh"
#include "sealrelay/fallback/handler.hh"
#include "sealrelay/core/shard.hh"
#include "sealrelay/spool/body_file.hh"
#include "sealrelay/spool/partition.hh"
#include "support/file_io.hh"
#include "support/cert_files.hh"
#include "support/gpg_home.hh"
#include "support/spool_record.hh"
#include "support/temp_dir.hh"

namespace sr::fallback {
namespace {

using sr::test::read_file;
using sr::test::write_file;

using test::run_pipeline;
using test::shell_quote;
using wire::method;
using wire::outcome;



const std::string k_message =
    "Received: from client.test by relay.test; Mon, 7 Dec 2026 00:00:00 +0000\r\n"
    "From: Clinic <clinic@src.test>\r\n"
    "To: Patients <list@dest.test>\r\n"
    "Subject: Lab results for patient 4711\r\n"
    "Date: Mon, 7 Dec 2026 00:00:00 +0000\r\n"
    "Message-ID: <lab-4711@src.test>\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: text/plain; charset=us-ascii\r\n"
    "\r\n"
    "HbA1c 5.4 percent. Nothing else to report.\r\n";

const std::string k_queue_id = "0123456789ABCDEF";
const std::vector<std::string> k_rcpts = {"pgp@dest.test", "smime@dest.test", "both@dest.test",
                                          "esc@dest.test"};

class handler_test : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    gpg = new test::gpg_home("srhnd");
    dir = new test::temp_dir("sealrelay-handler");
    ready = make_world();
  }
  static void TearDownTestSuite() {
    delete gpg;
    delete dir;
    gpg = nullptr;
    dir = nullptr;
  }
  void SetUp() override {
    if (!ready) FAIL() << "could not make keys, certificates or the record; see " << gpg->file("gpg.log");
  }

  static std::string path(const std::string& name) { return (dir->path() / name).string(); }

  static bool make_cert(const std::string& address) {
    std::string key = shell_quote(path("smime/" + address + ".key"));
    std::string crt = shell_quote(path("smime/" + address + ".pem"));
    return run_pipeline("openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out " + key +
                        " 2>/dev/null && openssl req -x509 -new -key " + key + " -out " + crt +
                        " -days 30 -subj " + shell_quote("/CN=" + address) + " 2>/dev/null")
        .has_value();
  }

  static bool make_world() {
    if (!gpg->gpg("--quick-gen-key 'Pgp <pgp@dest.test>' future-default default never")) return false;
    if (!gpg->gpg("--quick-gen-key 'Both <both@dest.test>' future-default default never")) return false;
    std::filesystem::create_directories(path("smime"));
    std::filesystem::create_directories(path("state/fallback/outbox"));
    if (!make_cert("smime@dest.test") || !make_cert("both@dest.test")) return false;
    spool::message_meta meta;
    meta.queue_id = k_queue_id;
    meta.received_ms = 1;
    meta.mail_from = "clinic@src.test";
    meta.rcpts = k_rcpts;
    meta.msg_id = "lab-4711@src.test";
    // Another record first, so the one named does not start at offset 0.
    spool::message_meta other = meta;
    other.queue_id = "FEDCBA9876543210";
    if (!test::append_record(path("seg"), test::message_record(other, "Subject: x\r\n\r\nother\r\n")).length)
      return false;
    loc = test::append_record(path("seg"), test::message_record(meta, k_message));
    return loc.length != 0;
  }

  handler_options options() const {
    handler_options o;
    o.outbox_dir = path("state/fallback/outbox");
    o.hostname = "relay.test";
    o.portal_url = "https://portal.test:8443";
    o.escrow_expiry = std::chrono::hours(24);
    o.pgp_home = gpg->home();
    o.smime_dir = path("smime");
    o.state_dir = path("state");
    return o;
  }

  static wire::handoff handoff(std::vector<std::string> rcpts, std::vector<method> chain) {
    wire::handoff h;
    h.request_id = 7;
    h.queue_id = k_queue_id;
    h.from = "clinic@src.test";
    h.domain = "dest.test";
    h.rcpts = std::move(rcpts);
    h.segment = path("seg");
    h.offset = loc.offset;
    h.length = loc.length;
    h.chain = std::move(chain);
    return h;
  }

  // What `gpg --decrypt` makes of the armored part of a PGP/MIME message.
  static std::string gpg_decrypt(const std::string& mime) {
    size_t b = mime.find("-----BEGIN PGP MESSAGE-----");
    size_t e = mime.find("-----END PGP MESSAGE-----");
    if (b == std::string::npos || e == std::string::npos) return "(no PGP message)";
    write_file(gpg->file("out.asc"), mime.substr(b, e + 25 - b) + "\r\n");
    std::filesystem::remove(gpg->file("out.txt"));
    if (!gpg->gpg("-o '" + gpg->file("out.txt").string() + "' --decrypt '" + gpg->file("out.asc").string() + "'"))
      return "(gpg failed)";
    return read_file(gpg->file("out.txt"));
  }

  static std::optional<std::string> cms_decrypt(const std::string& file, const std::string& address) {
    return run_pipeline("openssl cms -decrypt -in " + shell_quote(file) + " -inkey " +
                        shell_quote(path("smime/" + address + ".key")) + " -recip " +
                        shell_quote(path("smime/" + address + ".pem")) + " 2>/dev/null");
  }

  audit_log audit_to(const std::string& name) {
    auto a = audit_log::open(path(name));
    EXPECT_TRUE(a.ok());
    return std::move(a.value());
  }

  static inline test::gpg_home* gpg = nullptr;
  static inline test::temp_dir* dir = nullptr;
  static inline test::record_location loc;
  static inline bool ready = false;
};

TEST_F(handler_test, pgp_output_decrypts_to_the_original) {
  handler h(options(), nullptr);
  auto r = h.handle(handoff({"pgp@dest.test"}, {method::pgp, method::smime, method::escrow}));
  EXPECT_EQ(r.request_id, 7u);
  ASSERT_EQ(r.outcomes, std::vector<outcome>{outcome::pgp}) << r.detail;
  ASSERT_EQ(r.outputs.size(), 1u);
  const auto& o = r.outputs[0];
  EXPECT_EQ(o.kind, 4);
  EXPECT_EQ(o.from, "clinic@src.test");
  EXPECT_EQ(o.rcpts, std::vector<std::string>{"pgp@dest.test"});
  EXPECT_EQ(o.msg_id, "lab-4711@src.test");
  EXPECT_EQ(std::filesystem::path(o.path).parent_path(), options().outbox_dir);
  std::string mime = read_file(o.path);
  EXPECT_NE(mime.find("Content-Type: multipart/encrypted"), std::string::npos);
  EXPECT_NE(mime.find("Subject: ...\r\n"), std::string::npos);
  for (const char* secret : {"HbA1c", "Lab results"}) EXPECT_EQ(mime.find(secret), std::string::npos) << secret;
  std::string inner = gpg_decrypt(mime);
  EXPECT_NE(inner.find("Subject: Lab results for patient 4711\r\n"), std::string::npos) << inner;
  EXPECT_TRUE(inner.ends_with("\r\n\r\nHbA1c 5.4 percent. Nothing else to report.\r\n")) << inner;
}

TEST_F(handler_test, smime_output_opens_with_openssl_cms) {
  handler h(options(), nullptr);
  auto r = h.handle(handoff({"smime@dest.test"}, {method::pgp, method::smime, method::escrow}));
  ASSERT_EQ(r.outcomes, std::vector<outcome>{outcome::smime}) << r.detail;
  ASSERT_EQ(r.outputs.size(), 1u);
  EXPECT_EQ(r.outputs[0].kind, 5);
  EXPECT_EQ(r.outputs[0].rcpts, std::vector<std::string>{"smime@dest.test"});
  EXPECT_EQ(r.outputs[0].msg_id, "lab-4711@src.test");
  std::string out = read_file(r.outputs[0].path);
  EXPECT_NE(out.find("application/pkcs7-mime"), std::string::npos);
  EXPECT_EQ(out.find("HbA1c"), std::string::npos);
  auto plain = cms_decrypt(r.outputs[0].path, "smime@dest.test");
  ASSERT_TRUE(plain.has_value());
  EXPECT_EQ(*plain, k_message);
}

TEST_F(handler_test, the_chain_order_decides) {
  handler h(options(), nullptr);
  auto a = h.handle(handoff({"both@dest.test"}, {method::smime, method::pgp}));
  ASSERT_EQ(a.outcomes, std::vector<outcome>{outcome::smime}) << a.detail;
  ASSERT_EQ(a.outputs.size(), 1u);
  EXPECT_EQ(cms_decrypt(a.outputs[0].path, "both@dest.test").value_or(""), k_message);
  auto b = h.handle(handoff({"both@dest.test"}, {method::pgp, method::smime}));
  ASSERT_EQ(b.outcomes, std::vector<outcome>{outcome::pgp}) << b.detail;
  ASSERT_EQ(b.outputs.size(), 1u);
  EXPECT_NE(gpg_decrypt(read_file(b.outputs[0].path)).find("HbA1c"), std::string::npos);
  // Escrow first: escrowed even though a key exists.
  auto c = h.handle(handoff({"both@dest.test"}, {method::escrow, method::pgp}));
  EXPECT_EQ(c.outcomes, std::vector<outcome>{outcome::escrowed}) << c.detail;
}

TEST_F(handler_test, escrow_notice_carries_the_link_that_opens_the_store) {
  audit_log audit = audit_to("audit-escrow.jsonl");
  handler h(options(), &audit);
  auto r = h.handle(handoff({"esc@dest.test"}, {method::pgp, method::smime, method::escrow}));
  ASSERT_EQ(r.outcomes, std::vector<outcome>{outcome::escrowed}) << r.detail;
  ASSERT_EQ(r.outputs.size(), 1u);
  const auto& o = r.outputs[0];
  EXPECT_EQ(o.kind, 2);
  EXPECT_EQ(o.from, "clinic@src.test");
  EXPECT_EQ(o.rcpts, std::vector<std::string>{"esc@dest.test"});
  std::string notice = read_file(o.path);
  EXPECT_EQ(header_message_id(notice), o.msg_id);
  EXPECT_NE(o.msg_id, "lab-4711@src.test");
  EXPECT_NE(notice.find("From: <noreply-escrow@relay.test>"), std::string::npos) << notice;
  EXPECT_NE(notice.find("Subject: Secure message from clinic@src.test"), std::string::npos) << notice;
  for (const char* secret : {"HbA1c", "Lab results", "4711"}) EXPECT_EQ(notice.find(secret), std::string::npos) << secret;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(notice, m, std::regex("https://portal\\.test:8443/m/([A-Za-z0-9_-]{22})/([A-Za-z0-9_-]{43})")))
      << notice;
  escrow_store* st = h.store();
  ASSERT_NE(st, nullptr);
  auto opened = escrow::open(*st, m[1].str(), m[2].str(),
                             std::chrono::floor<std::chrono::seconds>(std::chrono::system_clock::now()));
  ASSERT_TRUE(opened.ok()) << opened.err();
  ASSERT_EQ(opened->status, escrow::open_status::ok);
  EXPECT_EQ(std::string(opened->message.begin(), opened->message.end()), k_message);
  std::string lines = read_file(path("audit-escrow.jsonl"));
  EXPECT_NE(lines.find("\"event\":\"notice\""), std::string::npos) << lines;
  EXPECT_NE(lines.find("esc@dest.test"), std::string::npos) << lines;
  EXPECT_NE(lines.find(k_queue_id), std::string::npos) << lines;

  // The sender retracts it: the link no longer opens, the audit says so.
  auto rr = h.retract(wire::retract{3, "lab-4711@src.test"});
  EXPECT_TRUE(rr.ok) << rr.detail;
  EXPECT_EQ(rr.request_id, 3u);
  EXPECT_GE(rr.count, 1u);
  auto again = escrow::open(*st, m[1].str(), m[2].str(),
                            std::chrono::floor<std::chrono::seconds>(std::chrono::system_clock::now()));
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->status, escrow::open_status::retracted);
  EXPECT_NE(read_file(path("audit-escrow.jsonl")).find("\"event\":\"retraction\""), std::string::npos);
}

TEST_F(handler_test, the_sweep_expires_and_audits) {
  audit_log audit = audit_to("audit-expiry.jsonl");
  auto opts = options();
  opts.state_dir = path("state-expiry");
  std::filesystem::create_directories(opts.state_dir);
  auto now = std::chrono::floor<std::chrono::seconds>(std::chrono::system_clock::now());
  handler h(opts, &audit, [&] { return now; });
  auto r = h.handle(handoff({"esc@dest.test"}, {method::escrow}));
  ASSERT_EQ(r.outcomes, std::vector<outcome>{outcome::escrowed}) << r.detail;
  auto none = h.sweep();
  ASSERT_TRUE(none.ok()) << none.err();
  EXPECT_EQ(*none, 0u);
  now += opts.escrow_expiry + std::chrono::seconds(1);
  auto one = h.sweep();
  ASSERT_TRUE(one.ok()) << one.err();
  EXPECT_EQ(*one, 1u);
  EXPECT_NE(read_file(path("audit-expiry.jsonl")).find("\"event\":\"expiry\""), std::string::npos);
}

TEST_F(handler_test, defer_and_an_exhausted_chain_keep_the_message) {
  handler h(options(), nullptr);
  auto a = h.handle(handoff({"esc@dest.test"}, {method::pgp, method::smime, method::defer, method::escrow}));
  EXPECT_EQ(a.outcomes, std::vector<outcome>{outcome::defer}) << a.detail;
  EXPECT_TRUE(a.outputs.empty());
  auto b = h.handle(handoff({"esc@dest.test"}, {method::pgp}));
  EXPECT_EQ(b.outcomes, std::vector<outcome>{outcome::defer}) << b.detail;
  EXPECT_TRUE(b.outputs.empty());
}

TEST_F(handler_test, every_recipient_answered_in_order) {
  handler h(options(), nullptr);
  auto r = h.handle(handoff({"esc@dest.test", "smime@dest.test", "nobody@dest.test", "pgp@dest.test"},
                            {method::pgp, method::smime, method::escrow}));
  ASSERT_EQ(r.outcomes, (std::vector<outcome>{outcome::escrowed, outcome::smime, outcome::failed, outcome::pgp}))
      << r.detail;
  ASSERT_EQ(r.outputs.size(), 3u);
  EXPECT_EQ(r.outputs[0].rcpts[0], "esc@dest.test");
  EXPECT_EQ(r.outputs[1].rcpts[0], "smime@dest.test");
  EXPECT_EQ(r.outputs[2].rcpts[0], "pgp@dest.test");
  EXPECT_NE(r.detail.find("nobody@dest.test: not a recipient"), std::string::npos) << r.detail;
  for (const auto& o : r.outputs) EXPECT_TRUE(std::filesystem::exists(o.path)) << o.path;
}

TEST_F(handler_test, a_corrupt_or_wrong_record_fails_every_recipient) {
  handler h(options(), nullptr);
  const std::vector<method> chain{method::pgp, method::smime, method::escrow};
  const std::vector<outcome> all_failed(2, outcome::failed);
  auto expect_failed = [&](const wire::handoff& ho, const char* what) {
    auto r = h.handle(ho);
    EXPECT_EQ(r.outcomes, all_failed) << what << ": " << r.detail;
    EXPECT_TRUE(r.outputs.empty()) << what;
  };
  auto ho = handoff({"pgp@dest.test", "esc@dest.test"}, chain);
  auto wrong_id = ho;
  wrong_id.queue_id = "FEDCBA9876543210";
  expect_failed(wrong_id, "another record's queue id");
  auto off = ho;
  off.offset += 1;
  expect_failed(off, "offset off by one");
  auto shorter = ho;
  shorter.length -= 1;
  expect_failed(shorter, "length short by one");
  auto longer = ho;
  longer.length += 100;
  expect_failed(longer, "length beyond the file");
  auto missing = ho;
  missing.segment = path("no-such-segment");
  expect_failed(missing, "missing segment");
  auto relative = ho;
  relative.segment = "seg";
  expect_failed(relative, "relative path");

  // One flipped byte in the message: the CRC catches it.
  std::string copy = path("seg-corrupt");
  std::filesystem::copy_file(path("seg"), copy, std::filesystem::copy_options::overwrite_existing);
  {
    std::fstream f(copy, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(std::streamoff(loc.offset + loc.length - 5));
    f.put('X');
  }
  auto corrupt = ho;
  corrupt.segment = copy;
  expect_failed(corrupt, "flipped byte");
  // The original still works.
  auto ok = h.handle(ho);
  EXPECT_EQ(ok.outcomes, (std::vector<outcome>{outcome::pgp, outcome::escrowed})) << ok.detail;
}

TEST_F(handler_test, a_handoff_may_name_only_the_message_bytes) {
  // The spool's message_location names the raw message bytes after the envelope; the
  // handler finds the record before them and checks it all the same.
  handler h(options(), nullptr);
  auto ho = handoff({"pgp@dest.test"}, {method::pgp});
  ho.offset = loc.offset + loc.length - k_message.size();
  ho.length = k_message.size();
  auto r = h.handle(ho);
  ASSERT_EQ(r.outcomes, std::vector<outcome>{outcome::pgp}) << r.detail;
  EXPECT_NE(gpg_decrypt(read_file(r.outputs.at(0).path)).find("HbA1c"), std::string::npos);
  for (int64_t d : {-1, 1}) {
    auto off = ho;
    off.offset += d;
    off.length -= d;
    EXPECT_EQ(h.handle(off).outcomes, std::vector<outcome>{outcome::failed}) << d;
  }
  auto wrong = ho;
  wrong.queue_id = "FEDCBA9876543210";
  EXPECT_EQ(h.handle(wrong).outcomes, std::vector<outcome>{outcome::failed});
}

TEST_F(handler_test, a_sealed_segment_is_opened_with_the_spool_keys) {
  // Spool encryption at rest: the hand-off names the sealed record (as the spool's
  // message_location does); the handler authenticates and opens it with [spool]'s keys.
  tls::seal_key key{};
  for (size_t i = 0; i < key.size(); ++i) key[i] = uint8_t(3 * i + 1);
  auto keys = std::make_shared<const spool::keyring>(&key, true, std::span<const tls::seal_key>{});
  std::string state = path("sealed-state");
  spool::message_location where{};
  {
    auto part = spool::partition::open(state, 0, nullptr, spool::default_segment_limit, keys);
    ASSERT_TRUE(part) << part.err();
    spool::message_meta meta;
    meta.queue_id = k_queue_id;
    meta.received_ms = 1;
    meta.mail_from = "clinic@src.test";
    meta.rcpts = k_rcpts;
    iovec iov{const_cast<char*>(k_message.data()), k_message.size()};
    ASSERT_TRUE((*part)->stage(meta, std::span<const iovec>(&iov, 1), &iov));
    spool::partition::outcome_list out;
    ASSERT_TRUE((*part)->flush(out));
    ASSERT_EQ((*part)->last_locations().size(), 1u);
    where = (*part)->last_locations()[0];
  }
  EXPECT_EQ(read_file(where.segment).find("HbA1c"), std::string::npos);  // sealed on disk
  auto ho = handoff({"pgp@dest.test"}, {method::pgp});
  ho.segment = where.segment;
  ho.offset = where.offset;
  ho.length = where.length;
  auto o = options();
  o.spool_keys = keys;
  handler h(o, nullptr);
  auto r = h.handle(ho);
  ASSERT_EQ(r.outcomes, std::vector<outcome>{outcome::pgp}) << r.detail;
  EXPECT_NE(gpg_decrypt(read_file(r.outputs.at(0).path)).find("HbA1c"), std::string::npos);

  handler without(options(), nullptr);  // no key configured: refused, nothing sent
  r = without.handle(ho);
  EXPECT_EQ(r.outcomes, std::vector<outcome>{outcome::failed}) << r.detail;
  EXPECT_NE(r.detail.find("not configured"), std::string::npos) << r.detail;
  auto shorter = ho;
  shorter.length -= 1;
  EXPECT_EQ(h.handle(shorter).outcomes, std::vector<outcome>{outcome::failed});
  // One flipped ciphertext byte (CRC fixed up, as a forger would): authentication fails.
  std::string copy = path("seg-sealed-tampered");
  std::filesystem::copy_file(where.segment, copy, std::filesystem::copy_options::overwrite_existing);
  std::string raw = read_file(copy);
  raw[where.offset + spool::header_size + 40] ^= 1;
  spool::record_header rh = spool::decode_header(reinterpret_cast<const std::byte*>(raw.data() + where.offset));
  rh.crc = spool::payload_crc(std::as_bytes(std::span(raw.data() + where.offset + spool::header_size, rh.payload_len)));
  std::byte head[spool::header_size];
  spool::encode_header(rh, head);
  std::memcpy(raw.data() + where.offset, head, sizeof head);
  write_file(copy, raw);
  auto tampered = ho;
  tampered.segment = copy;
  r = h.handle(tampered);
  EXPECT_EQ(r.outcomes, std::vector<outcome>{outcome::failed});
  EXPECT_NE(r.detail.find("authentication"), std::string::npos) << r.detail;
}

TEST_F(handler_test, a_sealed_body_file_is_opened_frame_by_frame) {
  // A large message's sealed body file (framed, keyring.hh): the hand-off names it from 0
  // in message bytes, as the spool's message_location does.
  tls::seal_key key{};
  for (size_t i = 0; i < key.size(); ++i) key[i] = uint8_t(5 * i + 2);
  auto keys = std::make_shared<const spool::keyring>(&key, true, std::span<const tls::seal_key>{});
  core::shard::options so;
  so.entries = 16;
  core::shard sh(so);
  ASSERT_TRUE(sh.init());
  auto drive = [&](const bool& done) {  // the shard's ring by hand, bounded
    for (int rounds = 0; !done && rounds < 50; ++rounds) {
      __kernel_timespec ts{.tv_sec = 1, .tv_nsec = 0};
      io_uring_cqe* cqe = nullptr;
      io_uring_submit_and_wait_timeout(&sh.ring(), &cqe, 1, &ts, nullptr);
      unsigned head, n = 0;
      io_uring_for_each_cqe(&sh.ring(), head, cqe) {
        ++n;
        if (cqe->user_data > core::mailbox_cqe)
          reinterpret_cast<core::completion*>(cqe->user_data)->on_complete(cqe->res, cqe->flags);
      }
      io_uring_cq_advance(&sh.ring(), n);
    }
  };
  std::string body = k_message;
  while (body.size() < 100 * 1024) body += "HbA1c follow-up line\r\n";
  const std::string prefix = "Received: from clinic by relay\r\n";
  std::filesystem::create_directories(path("framed"));
  const std::string file_path = path("framed/" + std::string(k_queue_id));
  spool::message_meta meta;
  meta.queue_id = k_queue_id;
  meta.received_ms = 1;
  meta.mail_from = "clinic@src.test";
  meta.rcpts = k_rcpts;
  {
    auto f = spool::body_file::create(sh, file_path, spool::body_file::reserve_for(15, k_rcpts, prefix.size()), keys);
    ASSERT_TRUE(f) << f.err();
    bool done = false, ok = false;
    iovec v{body.data(), body.size()};
    (*f)->append({&v, 1}, [&](bool r) { ok = r, done = true; });
    drive(done);
    ASSERT_TRUE(ok);
    done = ok = false;
    iovec pv{const_cast<char*>(prefix.data()), prefix.size()};
    (*f)->finish(meta, {&pv, 1}, [&](bool r) { ok = r, done = true; });
    drive(done);
    ASSERT_TRUE(ok);
    (*f)->keep();
  }
  EXPECT_EQ(read_file(file_path).find("HbA1c"), std::string::npos);  // sealed on disk
  auto ho = handoff({"pgp@dest.test"}, {method::pgp});
  ho.segment = file_path;
  ho.offset = 0;
  ho.length = prefix.size() + body.size();
  auto o = options();
  o.spool_keys = keys;
  handler h(o, nullptr);
  auto r = h.handle(ho);
  ASSERT_EQ(r.outcomes, std::vector<outcome>{outcome::pgp}) << r.detail;
  EXPECT_NE(gpg_decrypt(read_file(r.outputs.at(0).path)).find("HbA1c follow-up line"), std::string::npos);
  handler without(options(), nullptr);
  EXPECT_EQ(without.handle(ho).outcomes, std::vector<outcome>{outcome::failed});
  auto shorter = ho;
  shorter.length -= 1;
  EXPECT_EQ(h.handle(shorter).outcomes, std::vector<outcome>{outcome::failed});
}

TEST_F(handler_test, a_store_that_is_down_fails_only_escrow) {
  auto opts = options();
  opts.store_spec = "postgresql://sealrelay@127.0.0.1:1/none?connect_timeout=2";
  handler h(opts, nullptr);
  auto r = h.handle(handoff({"esc@dest.test", "pgp@dest.test"}, {method::pgp, method::smime, method::escrow}));
  ASSERT_EQ(r.outcomes, (std::vector<outcome>{outcome::failed, outcome::pgp})) << r.detail;
  ASSERT_EQ(r.outputs.size(), 1u);
  EXPECT_EQ(r.outputs[0].rcpts[0], "pgp@dest.test");
  auto bad = options();
  bad.store_spec = "mysql://x";
  handler h2(bad, nullptr);
  auto r2 = h2.handle(handoff({"esc@dest.test"}, {method::escrow}));
  EXPECT_EQ(r2.outcomes, std::vector<outcome>{outcome::failed}) << r2.detail;
}

TEST_F(handler_test, a_missing_pgp_home_or_smime_dir_passes_to_the_next) {
  auto opts = options();
  opts.pgp_home = path("no-gnupg");
  opts.smime_dir = path("no-smime");
  handler h(opts, nullptr);
  auto r = h.handle(handoff({"pgp@dest.test", "smime@dest.test"}, {method::pgp, method::smime, method::defer}));
  EXPECT_EQ(r.outcomes, (std::vector<outcome>{outcome::defer, outcome::defer})) << r.detail;
}

TEST(write_outbox, writes_whole_files_inside_the_outbox_only) {
  test::temp_dir d("sealrelay-outbox");
  auto a = write_outbox(d.path().string(), "../../etc/code", "mail one\r\n");
  auto b = write_outbox(d.path().string(), "../../etc/code", "mail two\r\n");
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NE(*a, *b);
  for (const auto& p : {*a, *b}) EXPECT_EQ(std::filesystem::path(p).parent_path(), d.path()) << p;
  EXPECT_EQ(read_file(*a), "mail one\r\n");
  size_t n = 0;
  for (const auto& e : std::filesystem::directory_iterator(d.path())) {
    ++n;
    EXPECT_NE(e.path().filename().string().rfind(".tmp-", 0), 0u) << "temp file left";
  }
  EXPECT_EQ(n, 2u);
  EXPECT_FALSE(write_outbox((d.path() / "missing").string(), "x", "y").ok());
}

TEST(header_message_id, finds_folded_and_plain_values) {
  EXPECT_EQ(header_message_id("From: a\r\nMessage-ID: <x@y>\r\n\r\nbody"), "x@y");
  EXPECT_EQ(header_message_id("message-id:\r\n <folded@y>\r\n\r\n"), "folded@y");
  EXPECT_EQ(header_message_id("From: a\r\n\r\nMessage-ID: <in-body@y>\r\n"), "");
  EXPECT_EQ(header_message_id(""), "");
}

}  // namespace
}  // namespace sr::fallback
