// A shard's DKIM signers, one per [[dkim]] entry (a signer is not thread safe, so every
// shard loads its own from the same key files), chosen by the domain of the message's
// From: address (exact match, case-insensitive). sign() is the synchronous way in for
// any producer of mail; the relay's shards go through dkim::signing_intake (intake.hh),
// which does the same but moves RSA signatures off the shard loop.
#pragma once
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "sealrelay/dkim/signer.hh"
#include "sealrelay/util/result.hh"

namespace sr::dkim {

// One [[dkim]] entry as the relay hands it over (config::dkim_entry without config's types).
struct key_entry {
  std::string domain, selector, key_file;
  std::vector<std::string> headers;  // empty: default_headers()
  tls::key_kind kind = tls::key_kind::rsa;  // the configured algorithm: the key must match
};

// Return the domain of the first address in the From: field of the message in `chunks`
// (lowercase), or "" when there is no From: or no address in it. Reads only the header
// section.
std::string from_domain(std::span<const std::span<const std::byte>> chunks);

// Load `e`'s key and build its signer; the error starts with the entry's key at fault
// ("key_file: PATH: ...", "algorithm: ...", "domain: ...").
result<signer> make_signer(const key_entry& e, std::string* warning = nullptr);

class signers {
 public:
  signers() = default;
  // Load every entry's key (once each); the error names the entry and key ("dkim[1].key_file: ...").
  static result<signers> load(std::span<const key_entry> entries);

  bool empty() const { return _signers.empty(); }
  size_t size() const { return _signers.size(); }
  // Return the index of the entry for `domain` (exact, case-insensitive), or npos.
  size_t find(std::string_view domain) const;
  static constexpr size_t npos = size_t(-1);
  signer& at(size_t i) { return _signers[i]; }

  // Sign the message in `chunks` (CRLF text: header section, empty line, body) when its
  // From: domain has an entry: return the DKIM-Signature field to put in front of it.
  // nullopt: no entry, or signing failed (logged; the message goes out unsigned).
  std::optional<std::string> sign(std::span<const std::span<const std::byte>> chunks, int64_t now);
  // The same for a message we built in one string: prepend the field to `text` when it
  // signs; return whether it did.
  bool sign_owned(std::string& text, int64_t now);

 private:
  std::vector<std::string> _domains;  // lowercase, by entry index
  std::vector<signer> _signers;
};

}  // namespace sr::dkim
