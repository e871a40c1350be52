// The DKIM signer (RFC 6376; RFC 8463 for Ed25519): relaxed/relaxed, one key per
// (domain, selector). sign() takes the message as a chain of byte spans (header section,
// empty line, body: the spool's pinned chunks), copies only the header section, hashes
// the body incrementally, and returns the DKIM-Signature field (folded to 78 columns,
// ending in CRLF) to put in front of the message. One signer per thread (the key is
// used as scratch by wolfCrypt); build one per shard from the same key file.
#pragma once
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "sealrelay/dkim/canon.hh"
#include "sealrelay/tls/sign.hh"
#include "sealrelay/util/result.hh"

namespace sr::dkim {

// The header fields signed by default, lowercase: what OpenDKIM and Postfix users
// expect of a relay's signature (RFC 6376 §5.4.1's list, plus the list headers).
std::span<const std::string_view> default_headers();

struct signer_config {
  std::string domain;    // d=
  std::string selector;  // s=
  // h=: fields signed when present (each instance, bottom up); case-insensitive.
  std::vector<std::string> headers{default_headers().begin(), default_headers().end()};
  // Fields named once more than they occur (when present), so no instance can be added
  // later without breaking the signature (OpenDKIM's OversignHeaders).
  std::vector<std::string> oversign{"from"};
};

// A message fed in pieces as it arrives (a large message streamed to a spool body file):
// the header section is copied (up to 1 MiB), the body canonicalised and hashed as it
// comes, never kept. signer::prepare(message_hash&) then builds the field. Not movable
// (the canonicaliser points at the hash); keep it behind a pointer.
class message_hash {
 public:
  message_hash() = default;
  message_hash(const message_hash&) = delete;
  message_hash& operator=(const message_hash&) = delete;
  // Feed the next bytes of the message (CRLF lines: header section, empty line, body).
  void feed(std::span<const std::byte> bytes);

 private:
  friend class signer;
  struct sink final : body_sink {
    tls::sha256_stream hash;
    void write(std::string_view bytes) override { hash.update(bytes); }
  };
  std::string _headers;  // up to and including the empty line
  sink _sink;
  relaxed_body _body{_sink};
  int _matched = 2;      // bytes of "\r\n\r\n" matched; 2 at the start (no headers at all)
  bool _in_body = false;
  bool _too_long = false;  // header section over 1 MiB: prepare() fails
};

class signer {
 public:
  // Check the configuration (domain and selector are DNS labels, no ';' or WSP; the key
  // decides a=) and take the key.
  static result<signer> create(signer_config config, tls::signing_key key);

  // A message hashed, its field built up to the empty "b=", waiting for the signature.
  struct prepared {
    std::string field;          // "DKIM-Signature: v=1; ... b=" (folded, no CRLF yet)
    tls::sha256_digest digest;  // what the key signs (sign_digest)
  };

  // Hash the message in `chunks` and build the field: no key operation (the cheap part,
  // fit for a shard loop; an RSA signature is ~1.5 ms and may go to a worker thread that
  // owns its own signing_key loaded from the same file).
  result<prepared> prepare(std::span<const std::span<const std::byte>> chunks, int64_t now);
  // The same for a message fed to `m` (all of it); `m` is spent.
  result<prepared> prepare(message_hash& m, int64_t now);
  // Append `signature` (of p.digest, by the selector's key) as b=, folded; add the CRLF.
  static std::string complete(prepared p, std::span<const uint8_t> signature);
  // Sign p.digest with this signer's own key and complete the field (the inline path).
  result<std::string> finish(prepared p);

  // Sign the message in `chunks` (CRLF lines; headers, empty line, body) at time `now`
  // (t=, seconds since the epoch); returns "DKIM-Signature: ...\r\n".
  result<std::string> sign(std::span<const std::span<const std::byte>> chunks, int64_t now);
  // The same for a message in one piece.
  result<std::string> sign(std::string_view message, int64_t now);

  std::string_view algorithm() const;  // "rsa-sha256" or "ed25519-sha256"
  tls::key_kind kind() const { return _key.kind(); }
  const signer_config& config() const { return _config; }

 private:
  signer(signer_config config, tls::signing_key key);

  signer_config _config;
  tls::signing_key _key;
  std::string _headers;  // scratch: the header section, reused between messages
  std::string _canon;    // scratch: one canonical header field
};

}  // namespace sr::dkim
