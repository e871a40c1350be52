// The TLS decision points of one outbound connection (DESIGN.md §1, issue 4). The session
// never decides about TLS itself: at each point it asks the engine-supplied tls_decider
// and does exactly what the answer says. `abort` always means "QUIT and close without
// MAIL", so nothing of a message ever goes out when policy forbids. A failed handshake is
// not a decision point: that connection is unusable; a plaintext retry (opportunistic) is
// the queue's choice on a new connection. `opportunistic_decider` is Postfix `may`.
#pragma once
#include <cstdint>
#include <string_view>

#include "sealrelay/report/reason.hh"
#include "sealrelay/smtp/reply.hh"

namespace sr::outbound {

// The certificate verdict the TLS layer computed (always checked, enforced by policy only).
enum class cert_verdict : uint8_t {
  none,      // no certificate check happened (no TLS)
  verified,  // chains to the trust anchors and the name matches
  invalid,   // checked and failed; tls_outcome::cert_reason says why
};

// What a completed handshake negotiated; the engine's TLS layer fills it in.
struct tls_outcome {
  std::string_view version;        // "TLSv1.2", "TLSv1.3"
  std::string_view cipher;         // IANA name, e.g. "TLS_AES_256_GCM_SHA384"
  unsigned cipher_bits = 0;        // strength as the library reports it (policy rates by name)
  cert_verdict cert = cert_verdict::none;
  report::reason cert_reason = report::reason::none;  // with invalid: cert_untrusted, cert_expired, ...
};

// Point 1, after EHLO (or HELO) in plaintext.
enum class ehlo_action : uint8_t {
  starttls,       // send STARTTLS (normally only when offered)
  proceed_plain,  // go on without TLS
  abort,          // QUIT, close; reason e.g. starttls_not_offered
};
// Point 2, after a STARTTLS reply other than 220 (454, 5xx; 421 closes regardless).
enum class refused_action : uint8_t {
  proceed_plain,  // go on without TLS on this connection (RFC 3207 allows it)
  abort,          // QUIT, close; reason e.g. starttls_refused
};
// Point 3, after the handshake succeeded, before the post-TLS EHLO.
enum class tls_action : uint8_t {
  proceed,  // EHLO again over TLS and deliver
  abort,    // QUIT (over TLS), close; reason e.g. weak_cipher, old_protocol, cert_untrusted
  defer,    // QUIT (over TLS), close: this side cannot judge the session (e.g. tlsa_lookup_failed);
            // not the MX's TLS failure, so never a reason to fall back, drop or go plaintext
};

// An answer: the action, and for abort its reason (DESIGN.md §5). reason::none gets the
// point's default (starttls_not_offered, starttls_refused, tls_rejected).
template <typename Action>
struct decision {
  Action action;
  report::reason reason = report::reason::none;
};

// Implemented by the policy engine, one instance per connection (it knows domain and MX).
class tls_decider {
 public:
  virtual ~tls_decider() = default;
  // Decide what to do after the plaintext EHLO/HELO; HELO servers pass false.
  virtual decision<ehlo_action> on_ehlo(bool starttls_offered) = 0;
  // Decide what to do after STARTTLS was answered with `reply` (not 220, not 421).
  virtual decision<refused_action> on_starttls_refused(const smtp::reply& reply) = 0;
  // Decide whether the negotiated session is good enough to send mail over.
  virtual decision<tls_action> on_tls(const tls_outcome& outcome) = 0;
  // Point 4, after the EHLO over TLS: may mail go out, given what it offered? (REQUIRETLS,
  // RFC 8689 §4.2.1: the MX must offer it.) abort = QUIT, close, no MAIL.
  virtual decision<tls_action> on_secure_ehlo(bool requiretls_offered) {
    (void)requiretls_offered;
    return {tls_action::proceed};
  }
};

// The default policy (Postfix `smtp_tls_security_level = may`): TLS whenever offered,
// plaintext when not offered or refused, any negotiated session accepted.
class opportunistic_decider final : public tls_decider {
 public:
  // Use STARTTLS when offered, plaintext otherwise.
  decision<ehlo_action> on_ehlo(bool starttls_offered) override {
    return {starttls_offered ? ehlo_action::starttls : ehlo_action::proceed_plain};
  }
  // Carry on in plaintext.
  decision<refused_action> on_starttls_refused(const smtp::reply&) override {
    return {refused_action::proceed_plain};
  }
  // Accept whatever was negotiated (the audit still records it).
  decision<tls_action> on_tls(const tls_outcome&) override { return {tls_action::proceed}; }
};

}  // namespace sr::outbound
