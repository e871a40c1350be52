// The certificate chain a TLS peer sent, as plain data (sealrelay-check, diagnostics):
// subject, issuer, subjectAltName names, validity and the DER bytes of each certificate,
// leaf first. Read from the session after its handshake; no wolfSSL type appears here.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "sealrelay/tls/session.hh"

namespace sr::tls {

// One certificate of a peer's chain.
struct cert_info {
  std::string subject;              // "/O=sealrelay tests/CN=mx.test" (one-line form)
  std::string issuer;               // same form
  std::vector<std::string> names;   // subjectAltName DNS names, then IP addresses
  std::string not_before;           // "2026-11-28T12:52:17Z" ("" when unreadable)
  std::string not_after;
  int64_t not_before_s = 0;         // the same instants as Unix seconds
  int64_t not_after_s = 0;
  std::vector<uint8_t> der;         // the certificate as sent
};

// Return the chain the peer sent, leaf first; empty before the handshake, on the server
// side without a client certificate, or after a resumption (no certificate was sent).
std::vector<cert_info> peer_chain(const session& s);

}  // namespace sr::tls
