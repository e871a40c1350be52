// fallback::pgp_keyring against real GnuPG homes made by gpg in a temp dir under /tmp
// (short, for gpg-agent's sockets): which keys find() accepts, and PGP/MIME output that
// `gpg --decrypt` turns back into the inner entity while the outside shows no subject
// or body. Every gpg run is bounded by `timeout`; the agents started are killed at the end.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "sealrelay/fallback/pgp.hh"
#include "support/file_io.hh"
#include "support/gpg_home.hh"
#include "support/temp_dir.hh"

namespace sr::fallback {
namespace {

using sr::test::read_file;
using sr::test::write_file;



using test::gpg_home;

// Keys: bob (usable), old (expired), rev (revoked), sig (sign-only), all made here and so
// ultimately valid; carol made in a second home and imported as a public key only.
class pgp_test : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    home = new gpg_home("srpgp");
    other = new gpg_home("srpgo");
    ready = make_keys();
  }
  static void TearDownTestSuite() {
    delete home;
    delete other;
    home = other = nullptr;
  }
  void SetUp() override {
    if (!ready) FAIL() << "gpg could not make the test keys; see " << home->file("gpg.log");
  }

  static bool make_keys() {
    auto& h = *home;
    if (!h.gpg("--quick-gen-key 'Bob <bob@dest.test>' future-default default never")) return false;
    if (!h.gpg("--faked-system-time 20200101T000000! "
               "--quick-gen-key 'Old <old@dest.test>' future-default default 2020-06-01"))
      return false;
    if (!h.gpg("--quick-gen-key 'Rev <rev@dest.test>' future-default default never")) return false;
    std::string rev = h.fingerprint("rev@dest.test");
    if (rev.empty()) return false;
    std::string cert = read_file(h.home() + "/openpgp-revocs.d/" + rev + ".rev");
    // gpg stores the certificate with its armor line masked by a leading ':'.
    for (size_t p = cert.find(":-----"); p != std::string::npos; p = cert.find(":-----")) cert.erase(p, 1);
    write_file(h.file("rev.asc"), cert);
    if (!h.gpg("--import '" + h.file("rev.asc").string() + "'")) return false;
    if (!h.gpg("--quick-gen-key 'Sig <sig@dest.test>' ed25519 sign never")) return false;
    // Dan's second user id is revoked, his key is not.
    if (!h.gpg("--quick-gen-key 'Dan <dan@dest.test>' future-default default never")) return false;
    std::string dan = h.fingerprint("dan@dest.test");
    if (dan.empty() || !h.gpg("--quick-add-uid " + dan + " 'Dan <dan.old@dest.test>'") ||
        !h.gpg("--quick-revoke-uid " + dan + " 'Dan <dan.old@dest.test>'"))
      return false;
    // Eve's primary key is valid, her only encryption subkey expired in 2020.
    const std::string past = "--faked-system-time 20200101T000000! ";
    if (!h.gpg(past + "--quick-gen-key 'Eve <eve@dest.test>' ed25519 cert never")) return false;
    std::string eve = h.fingerprint("eve@dest.test");
    if (eve.empty() || !h.gpg(past + "--quick-add-key " + eve + " cv25519 encr 2020-06-01")) return false;
    // Two keys for twice@: one from 2024, one from now.
    if (!h.gpg("--faked-system-time 20240101T000000! "
               "--quick-gen-key 'Twice <twice@dest.test>' future-default default never") ||
        !h.gpg("--yes --quick-gen-key 'Twice <twice@dest.test>' future-default default never"))
      return false;
    // Dis's key is disabled (ownertrust 6 = ultimate, +128 = disabled).
    if (!h.gpg("--quick-gen-key 'Dis <dis@dest.test>' future-default default never")) return false;
    std::string dis = h.fingerprint("dis@dest.test");
    write_file(h.file("ownertrust.txt"), dis + ":134:\n");
    if (dis.empty() || !h.gpg("--import-ownertrust '" + h.file("ownertrust.txt").string() + "'")) return false;
    auto& o = *other;
    if (!o.gpg("--quick-gen-key 'Carol <carol@dest.test>' future-default default never")) return false;
    if (!o.gpg("--armor -o '" + o.file("carol.asc").string() + "' --export carol@dest.test")) return false;
    return h.gpg("--import '" + o.file("carol.asc").string() + "'");
  }

  static pgp_keyring open(pgp_trust t = pgp_trust::gnupg) {
    auto k = pgp_keyring::open(home->home(), t);
    EXPECT_TRUE(k.ok()) << (k.ok() ? "" : k.err());
    return std::move(k.value());
  }

  static inline gpg_home* home = nullptr;
  static inline gpg_home* other = nullptr;
  static inline bool ready = false;
};

TEST_F(pgp_test, finds_the_key_of_exactly_that_address) {
  auto ring = open();
  auto r = ring.find("bob@dest.test");
  ASSERT_TRUE(r.ok()) << r.err();
  ASSERT_TRUE(r->key.has_value()) << r->refused;
  EXPECT_EQ(r->key->fingerprint, home->fingerprint("bob@dest.test"));
  EXPECT_EQ(r->key->address, "bob@dest.test");
  EXPECT_FALSE(r->key->subkey_fingerprint.empty());
  EXPECT_NE(r->key->subkey_fingerprint, r->key->fingerprint);  // the cv25519 subkey

  auto upper_domain = ring.find("bob@DEST.Test");
  ASSERT_TRUE(upper_domain.ok());
  EXPECT_TRUE(upper_domain->key.has_value()) << "the domain is compared in any case";
}

TEST_F(pgp_test, refuses_other_addresses) {
  auto ring = open();
  for (const char* a : {"bob@dest.test.evil", "alice@dest.test", "Bob@dest.test", "bob@dest",
                        "ob@dest.test", "bob@est.test", "nobody@nowhere.test"}) {
    auto r = ring.find(a);
    ASSERT_TRUE(r.ok()) << a << ": " << r.err();
    EXPECT_FALSE(r->key.has_value()) << a;
  }
  for (const char* a : {"", "bob", "@dest.test", "bob@", "<bob@dest.test>", "bob @dest.test"}) {
    auto r = ring.find(a);
    ASSERT_TRUE(r.ok()) << a;
    EXPECT_FALSE(r->key.has_value()) << a;
  }
}

TEST_F(pgp_test, refuses_expired_revoked_and_sign_only_keys) {
  auto ring = open();
  struct {
    const char* address;
    const char* why;
  } cases[] = {{"old@dest.test", "expired"},
               {"rev@dest.test", "revoked"},
               {"sig@dest.test", "cannot encrypt"},
               {"dan.old@dest.test", "user id is revoked"},
               {"eve@dest.test", "encryption subkeys are revoked or expired"},
               {"dis@dest.test", "disabled"}};
  for (const auto& c : cases) {
    auto r = ring.find(c.address);
    ASSERT_TRUE(r.ok()) << c.address << ": " << r.err();
    EXPECT_FALSE(r->key.has_value()) << c.address;
    EXPECT_NE(r->refused.find(c.why), std::string::npos) << c.address << ": " << r->refused;
  }
  // Under placement trust too: those keys are unusable whatever the trust model.
  auto placed = open(pgp_trust::pgp_home);
  for (const auto& c : cases) {
    auto r = placed.find(c.address);
    ASSERT_TRUE(r.ok());
    EXPECT_FALSE(r->key.has_value()) << c.address;
  }
}

TEST_F(pgp_test, a_revoked_user_id_leaves_the_others_usable) {
  auto ring = open();
  auto r = ring.find("dan@dest.test");
  ASSERT_TRUE(r.ok()) << r.err();
  ASSERT_TRUE(r->key.has_value()) << r->refused;
  EXPECT_EQ(r->key->fingerprint, home->fingerprint("dan@dest.test"));
}

TEST_F(pgp_test, picks_the_newest_of_several_usable_keys) {
  auto ring = open();
  auto r = ring.find("twice@dest.test");
  ASSERT_TRUE(r.ok()) << r.err();
  ASSERT_TRUE(r->key.has_value()) << r->refused;
  // Listed oldest first: the 2024 key is the first fingerprint gpg prints.
  std::string older = home->fingerprint("twice@dest.test");
  ASSERT_FALSE(older.empty());
  EXPECT_NE(r->key->fingerprint, older);
}

TEST_F(pgp_test, an_uncertified_key_counts_only_under_placement_trust) {
  auto strict = open(pgp_trust::gnupg);
  auto r = strict.find("carol@dest.test");
  ASSERT_TRUE(r.ok()) << r.err();
  EXPECT_FALSE(r->key.has_value());
  EXPECT_NE(r->refused.find("not valid"), std::string::npos) << r->refused;

  auto placed = open(pgp_trust::pgp_home);
  auto p = placed.find("carol@dest.test");
  ASSERT_TRUE(p.ok()) << p.err();
  ASSERT_TRUE(p->key.has_value()) << p->refused;
  EXPECT_EQ(p->key->trust, pgp_trust::pgp_home);

  // Encrypting to it needs ALWAYS_TRUST; carol's own home decrypts the result.
  auto m = placed.pgp_mime("From: a@src.test\r\nTo: carol@dest.test\r\nSubject: hi\r\n\r\nfor carol\r\n", *p->key);
  ASSERT_TRUE(m.ok()) << m.err();
  size_t begin = m->find("-----BEGIN PGP MESSAGE-----");
  size_t end = m->find("-----END PGP MESSAGE-----");
  ASSERT_NE(begin, std::string::npos);
  ASSERT_NE(end, std::string::npos);
  write_file(other->file("carol.msg.asc"), m->substr(begin, end + 25 - begin) + "\r\n");
  auto plain = other->file("carol.msg.txt");
  ASSERT_TRUE(other->gpg("-o '" + plain.string() + "' --decrypt '" + other->file("carol.msg.asc").string() + "'"));
  EXPECT_NE(read_file(plain).find("for carol"), std::string::npos);
}

constexpr std::string_view k_message =
    "Received: from clinic.src.test by relay.src.test; Mon, 7 Dec 2026 00:00:00 +0000\r\n"
    "From: Clinic <clinic@src.test>\r\n"
    "To: Bob <bob@dest.test>\r\n"
    "Cc: Records <records@dest.test>\r\n"
    "Subject: Lab results for patient 4711\r\n"
    "Date: Mon, 7 Dec 2026 00:00:00 +0000\r\n"
    "Message-ID: <lab-4711@src.test>\r\n"
    "X-Patient: 4711\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: text/plain;\r\n"
    " charset=utf-8\r\n"
    "\r\n"
    "Your HbA1c is 6.1 percent.\r\n"
    "Nothing else to report.\r\n";

constexpr std::string_view k_inner =
    "Received: from clinic.src.test by relay.src.test; Mon, 7 Dec 2026 00:00:00 +0000\r\n"
    "From: Clinic <clinic@src.test>\r\n"
    "To: Bob <bob@dest.test>\r\n"
    "Cc: Records <records@dest.test>\r\n"
    "Subject: Lab results for patient 4711\r\n"
    "Date: Mon, 7 Dec 2026 00:00:00 +0000\r\n"
    "Message-ID: <lab-4711@src.test>\r\n"
    "X-Patient: 4711\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: text/plain;\r\n"
    " charset=utf-8; protected-headers=\"v1\"\r\n"
    "\r\n"
    "Your HbA1c is 6.1 percent.\r\n"
    "Nothing else to report.\r\n";

TEST(pgp_inner_entity_test, keeps_every_header_and_marks_the_content_type) {
  EXPECT_EQ(pgp_inner_entity(k_message), k_inner);
  // LF lines become CRLF; a message without Content-Type gets the MIME default, marked.
  EXPECT_EQ(pgp_inner_entity("Subject: s\nFrom: a@b.test\n\nbody\n"),
            "Subject: s\r\nFrom: a@b.test\r\n"
            "Content-Type: text/plain; charset=us-ascii; protected-headers=\"v1\"\r\n\r\nbody\r\n");
}

TEST_F(pgp_test, pgp_mime_hides_subject_and_body_and_decrypts_to_the_inner_entity) {
  auto ring = open();
  auto r = ring.find("bob@dest.test");
  ASSERT_TRUE(r.ok() && r->key.has_value());
  auto m = ring.pgp_mime(k_message, *r->key);
  ASSERT_TRUE(m.ok()) << m.err();
  const std::string& out = *m;

  size_t header_end = out.find("\r\n\r\n");
  ASSERT_NE(header_end, std::string::npos);
  std::string outer = out.substr(0, header_end + 2);
  EXPECT_NE(outer.find("From: Clinic <clinic@src.test>\r\n"), std::string::npos) << outer;
  EXPECT_NE(outer.find("To: Bob <bob@dest.test>\r\n"), std::string::npos);
  EXPECT_NE(outer.find("Cc: Records <records@dest.test>\r\n"), std::string::npos);
  EXPECT_NE(outer.find("Date: Mon, 7 Dec 2026 00:00:00 +0000\r\n"), std::string::npos);
  EXPECT_NE(outer.find("Message-ID: <lab-4711@src.test>\r\n"), std::string::npos);
  EXPECT_NE(outer.find("Subject: ...\r\n"), std::string::npos);
  EXPECT_NE(outer.find("MIME-Version: 1.0\r\n"), std::string::npos);
  EXPECT_NE(outer.find("Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\""),
            std::string::npos);
  // Nothing of the original beyond those fields, anywhere in the clear.
  for (const char* secret : {"Lab results", "4711\r\n", "X-Patient", "Received:", "HbA1c", "Nothing else",
                             "charset=utf-8"})
    EXPECT_EQ(out.find(secret), std::string::npos) << secret;
  EXPECT_EQ(outer.find("Subject: Lab"), std::string::npos);

  // RFC 3156 §4 structure: two parts in order, then the close delimiter.
  size_t b = outer.find("boundary=\"");
  ASSERT_NE(b, std::string::npos);
  std::string boundary = outer.substr(b + 10, outer.find('"', b + 10) - (b + 10));
  std::string d = "\r\n--" + boundary + "\r\n";
  size_t p1 = out.find(d), p2 = out.find(d, p1 + 1);
  ASSERT_NE(p1, std::string::npos);
  ASSERT_NE(p2, std::string::npos);
  EXPECT_EQ(out.substr(p1 + d.size(), p2 - p1 - d.size()),
            "Content-Type: application/pgp-encrypted\r\n"
            "Content-Description: PGP/MIME version identification\r\n\r\nVersion: 1\r\n");
  std::string second = out.substr(p2 + d.size());
  EXPECT_EQ(second.rfind("Content-Type: application/octet-stream; name=\"encrypted.asc\"\r\n", 0), 0u) << second;
  EXPECT_TRUE(out.ends_with("\r\n--" + boundary + "--\r\n"));
  EXPECT_EQ(out.find('\n'), out.find("\r\n") + 1);  // CRLF lines (first line at least)
  for (size_t i = out.find('\n'); i != std::string::npos; i = out.find('\n', i + 1))
    ASSERT_EQ(out[i - 1], '\r') << "bare LF at " << i;

  // Decrypt the second part with gpg: exactly the inner entity.
  write_file(home->file("msg.asc"), second.substr(second.find("\r\n\r\n") + 4));
  auto plain = home->file("msg.txt");
  ASSERT_TRUE(home->gpg("-o '" + plain.string() + "' --decrypt '" + home->file("msg.asc").string() + "'"))
      << read_file(home->file("gpg.log"));
  std::string inner = read_file(plain);
  EXPECT_EQ(inner, k_inner);
  EXPECT_NE(inner.find("Subject: Lab results for patient 4711\r\n"), std::string::npos);
}

TEST_F(pgp_test, pgp_mime_refuses_a_key_that_became_unusable) {
  auto ring = open();
  pgp_key fake{home->fingerprint("rev@dest.test"), "", "rev@dest.test", pgp_trust::gnupg};
  ASSERT_FALSE(fake.fingerprint.empty());
  auto m = ring.pgp_mime(k_message, fake);
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.err().find("revoked"), std::string::npos) << m.err();
}

}  // namespace
}  // namespace sr::fallback
