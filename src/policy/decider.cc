// The DESIGN.md §1 table as code. Checks run in the order an operator reads the audit:
// STARTTLS offered, STARTTLS accepted, protocol version, cipher strength, certificate.
#include "sealrelay/policy/decider.hh"

#include "floor.hh"

namespace sr::policy {

using outbound::decision;
using outbound::ehlo_action;
using outbound::refused_action;
using outbound::tls_action;

using report::reason;

namespace {
// A certificate reason from the TLS layer, or cert_invalid when it gave none that fits.
reason cert_failure(reason r) {
  switch (r) {
    case reason::cert_untrusted:
    case reason::cert_expired:
    case reason::cert_name_mismatch:
    case reason::tlsa_mismatch: return r;
    default: return reason::cert_invalid;
  }
}
}  // namespace

decision<ehlo_action> decider::on_ehlo(bool starttls_offered) {
  if (starttls_offered) return {ehlo_action::starttls};
  note_would_fail(reason::starttls_not_offered);
  if (!enforcing()) return {ehlo_action::proceed_plain};
  _abort = reason::starttls_not_offered;
  return {ehlo_action::abort, _abort};
}

decision<refused_action> decider::on_starttls_refused(const smtp::reply&) {
  note_would_fail(reason::starttls_refused);
  if (!enforcing()) return {refused_action::proceed_plain};
  _abort = reason::starttls_refused;
  return {refused_action::abort, _abort};
}

decision<tls_action> decider::on_tls(const outbound::tls_outcome& o) {
  _bits = classify_cipher(o.cipher);
  reason fail = reason::none;
  if (!version_meets(o.version, _p.min_version)) fail = reason::old_protocol;
  else if (_bits < _p.min_cipher_bits || _bits == 0) fail = reason::weak_cipher;
  if (!enforcing()) {
    // Postfix `may`: accept, but remember what forced would have said, for the audit.
    if (fail != reason::none) note_would_fail(fail);
    return {tls_action::proceed};
  }
  // verify = ca: the chain and the MX name, checked by the TLS layer against tls.ca_file.
  // verify = dane: the TLS layer checked the chain against the host's TLSA records (the
  // walk never connects a DANE host without them: dane-required).
  if (fail == reason::none && _p.verify != config::verify_mode::none &&
      o.cert != outbound::cert_verdict::verified)
    fail = cert_failure(o.cert_reason);
  if (fail == reason::none) return {tls_action::proceed};
  note_would_fail(fail);
  _abort = fail;
  return {tls_action::abort, _abort};
}

decision<tls_action> decider::on_secure_ehlo(bool requiretls_offered) {
  if (!_p.requiretls || requiretls_offered) return {tls_action::proceed};
  _abort = reason::requiretls_not_offered;
  return {tls_action::abort, _abort};
}

void decider::on_handshake_failed() {
  note_would_fail(reason::handshake_failed);
  _abort = reason::handshake_failed;
}

const char* to_string(tls_failure_outcome o) {
  switch (o) {
    case tls_failure_outcome::retry: return "retry";
    case tls_failure_outcome::fallback: return "fallback";
    case tls_failure_outcome::drop: return "drop";
  }
  return "?";
}

tls_failure_outcome outcome_on_tls_failure(const effective_policy& p, bool all_mx_failed_for_tls,
                                           duration since_first_attempt) {
  if (p.tls == config::tls_policy::opportunistic || !all_mx_failed_for_tls ||
      since_first_attempt < p.fallback_after)
    return tls_failure_outcome::retry;
  return p.tls == config::tls_policy::forced ? tls_failure_outcome::fallback
                                             : tls_failure_outcome::drop;
}

}  // namespace sr::policy
