// Message signing primitives over wolfCrypt for DKIM (src/dkim): an incremental SHA-256,
// and a private key (RSA >= 1024 bits or Ed25519, PEM from a file) that signs a SHA-256
// digest: RSASSA-PKCS1-v1_5 (RFC 8017) for RSA, PureEd25519 over the 32 digest bytes for
// Ed25519 (what RFC 8463 ed25519-sha256 asks). No wolfSSL type leaves src/tls/. A key is
// used by one thread at a time (wolfCrypt keeps per-operation state in the key object).
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "sealrelay/tls/seal.hh"
#include "sealrelay/util/result.hh"

namespace sr::tls {

// An incremental SHA-256; the wolfCrypt state lives in place (no allocation).
class sha256_stream {
 public:
  sha256_stream();
  ~sha256_stream();
  sha256_stream(const sha256_stream&) = delete;
  sha256_stream& operator=(const sha256_stream&) = delete;

  // Add bytes to the hash.
  void update(std::span<const uint8_t> data);
  void update(std::string_view data) {
    update({reinterpret_cast<const uint8_t*>(data.data()), data.size()});
  }
  // Return the digest and start over (ready for a new message).
  sha256_digest finish();

 private:
  alignas(16) std::array<std::byte, 160> _state;
};

enum class key_kind : uint8_t {
  rsa,      // RSASSA-PKCS1-v1_5 with SHA-256 (DKIM a=rsa-sha256)
  ed25519,  // Ed25519 over the SHA-256 digest (DKIM a=ed25519-sha256, RFC 8463)
};
// Return "rsa" or "ed25519" (the k= of the key's TXT record).
std::string_view to_string(key_kind k);

class signing_key {
 public:
  struct impl;
  // Load a PEM private key (PKCS#8 "PRIVATE KEY" or PKCS#1 "RSA PRIVATE KEY") from a
  // file; RSA under 1024 bits is refused. `warning` gets a note for RSA under 2048 bits.
  static result<signing_key> load_pem_file(const std::string& path, std::string* warning = nullptr);
  // The same from PEM text in memory.
  static result<signing_key> load_pem(std::string_view pem, std::string* warning = nullptr);

  signing_key(signing_key&&) noexcept;
  signing_key& operator=(signing_key&&) noexcept;
  ~signing_key();

  key_kind kind() const;
  // The modulus size for RSA, 256 for Ed25519.
  unsigned bits() const;
  // The signature size in bytes (modulus bytes for RSA, 64 for Ed25519).
  std::size_t signature_size() const;
  // Sign a SHA-256 digest (RSA: PKCS#1 v1.5 with the SHA-256 DigestInfo; Ed25519: the
  // 32 digest bytes as the message). Not const: wolfCrypt uses the key as scratch.
  result<std::vector<uint8_t>> sign_digest(const sha256_digest& digest);

 private:
  explicit signing_key(std::unique_ptr<impl> p);
  std::unique_ptr<impl> _impl;
};

}  // namespace sr::tls
