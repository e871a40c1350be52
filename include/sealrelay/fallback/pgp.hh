// PGP for the fallback sidecar (DESIGN §7): find a recipient's key in the GnuPG home
// `fallback.pgp_home` and turn a message into PGP/MIME (RFC 3156) encrypted to it.
// Contract: everything here is synchronous (GPGME runs gpg as a child process and waits),
// so the sidecar calls it off any event loop, one pgp_keyring per thread (not shared).
// The public API carries no GPGME type: keys cross it as fingerprints.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "sealrelay/util/result.hh"

namespace sr::fallback {

// Which keys count as valid, the one choice DESIGN §7 leaves to the operator.
enum class pgp_trust : uint8_t {
  // GnuPG's own validity in pgp_home: the user id must be fully or ultimately valid
  // (certified by a trusted key, e.g. `gpg --quick-lsign-key`); gpg checks it again when
  // it encrypts (no GPGME_ENCRYPT_ALWAYS_TRUST).
  gnupg,
  // Being in pgp_home is the trust decision (the operator curates it): find() checks
  // validity itself (not invalid, revoked, expired, disabled; a usable encryption subkey)
  // and the encryption passes GPGME_ENCRYPT_ALWAYS_TRUST.
  pgp_home,
};

// A recipient key that find() accepted, as plain data.
struct pgp_key {
  std::string fingerprint;         // the primary key
  std::string subkey_fingerprint;  // the encryption subkey the message is encrypted to
  std::string address;             // the user id's address, as the key spells it
  pgp_trust trust = pgp_trust::gnupg;
};

// What find() answers when the keyring itself worked.
struct pgp_lookup {
  std::optional<pgp_key> key;  // empty: no usable key for the address
  std::string refused;         // why keys with that address were refused ("" when none had it)
};

// A GnuPG home opened through GPGME (OpenPGP, ASCII armor, offline). Movable, not copyable.
class pgp_keyring {
 public:
  // Open `pgp_home`; an error when GPGME or gpg is unusable (not when the home is empty).
  static result<pgp_keyring> open(std::string pgp_home, pgp_trust trust = pgp_trust::gnupg);

  // Find the usable key whose user id has exactly `address` (mailbox exact, domain in
  // any case); the newest when several qualify. An error only when the keyring fails.
  result<pgp_lookup> find(std::string_view address);

  // Build the PGP/MIME message for `message` (RFC 5322, CRLF or LF lines) encrypted to
  // `key`: From/To/Cc/Date/Message-ID and `Subject: ...` outside, the rest inside.
  result<std::string> pgp_mime(std::string_view message, const pgp_key& key);

  pgp_keyring(pgp_keyring&&) noexcept;
  pgp_keyring& operator=(pgp_keyring&&) noexcept;
  ~pgp_keyring();

 private:
  struct impl;
  explicit pgp_keyring(std::unique_ptr<impl> i);
  std::unique_ptr<impl> _impl;
};

// Return the inner MIME entity pgp_mime() encrypts (CRLF lines): the original header
// section with the Content-Type marked `protected-headers="v1"`, then the body.
std::string pgp_inner_entity(std::string_view message);

}  // namespace sr::fallback
