// The client-side certificate verdict a tls::session records (never enforces): from the
// CA file (PKIX) or, when usable TLSA records were given, from DANE (RFC 7672). Its own
// header so dane.hh and session.hh share it without including each other.
#pragma once
#include <cstdint>

namespace sr::tls {

// Result of the client-side certificate check, always computed, never enforced here.
// Order is severity: a chain with several faults reports the worst.
enum class cert_verdict : uint8_t {
  none,           // no certificate checked (server side, or handshake not done)
  verified,       // chains to the CA file (DANE: matches a TLSA record) and names the host
  name_mismatch,  // chains to the CA file (DANE-TA: to a matched TA) but does not name the host
  expired,        // outside its validity period (expired or not yet valid)
  invalid,        // otherwise broken (bad signature, unparsable, bad usage)
  untrusted,      // does not chain to the CA file (self-signed, unknown issuer)
  tlsa_mismatch,  // DANE: no usable TLSA record matched the presented chain
};

// Return the audit token: "verified", "cert-name-mismatch", "cert-expired", "cert-invalid",
// "cert-untrusted", "tlsa-mismatch", "none".
const char* to_string(cert_verdict v);

}  // namespace sr::tls
