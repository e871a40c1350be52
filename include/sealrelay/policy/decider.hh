// The per-connection TLS decision (DESIGN.md §1 table, issue 4): implements the outbound
// session's tls_decider for one connection under one effective policy, and the per-message
// consequence once every MX has failed. opportunistic is Postfix `may`; forced/exclusive,
// and a policy the recipient raised (MTA-STS enforce, DANE), never let MAIL go out without
// a session that meets the floor and the `verify` check. verify = "none" is Postfix
// `encrypt`; "ca" and "dane" need the TLS layer's verdict (CA file and name, or TLSA).
#pragma once
#include <cstdint>

#include "sealrelay/outbound/tls_decider.hh"
#include "sealrelay/policy/table.hh"
#include "sealrelay/report/reason.hh"
#include "sealrelay/util/duration.hh"

namespace sr::policy {

// Reasons are report::reason (report/reason.hh): is_tls_failure() says which ones count
// towards "every MX failed for a TLS reason".

// One connection's TLS decisions. Keeps its own copy of the policy, so it may outlive the
// table it came from.
class decider final : public outbound::tls_decider {
 public:
  // Decide for a connection under `p`.
  explicit decider(const effective_policy& p) : _p(p) {}

  // STARTTLS when offered; without it, plaintext (opportunistic) or abort (forced/exclusive).
  outbound::decision<outbound::ehlo_action> on_ehlo(bool starttls_offered) override;
  // Plaintext after a refusal (opportunistic) or abort "starttls-refused".
  outbound::decision<outbound::refused_action> on_starttls_refused(const smtp::reply& reply) override;
  // Check version, cipher strength and certificate against the policy.
  outbound::decision<outbound::tls_action> on_tls(const outbound::tls_outcome& outcome) override;
  // Under REQUIRETLS, abort "requiretls-not-offered" unless the EHLO over TLS offered it.
  outbound::decision<outbound::tls_action> on_secure_ehlo(bool requiretls_offered) override;
  // Record that the handshake failed (not a decision point: that connection is gone).
  void on_handshake_failed();

  // Return the reason of the last abort (or failed handshake); none when none.
  report::reason abort_reason() const { return _abort; }
  // Return whether this connection failed for a TLS reason (is_tls_failure(abort_reason())).
  bool tls_failure() const { return report::is_tls_failure(_abort); }
  // Return what forced (with this policy's floors, verify = none) would have refused this
  // connection for, or none; under forced/exclusive it is the first TLS failure seen.
  report::reason would_fail_forced() const { return _would_fail; }
  // Return the negotiated cipher's strength as rated by classify_cipher (0 before on_tls).
  unsigned effective_bits() const { return _bits; }
  // Return the policy this connection runs under.
  const effective_policy& policy() const { return _p; }

 private:
  bool enforcing() const { return _p.tls != config::tls_policy::opportunistic || _p.raised; }
  void note_would_fail(report::reason r) {
    if (_would_fail == report::reason::none) _would_fail = r;
  }

  effective_policy _p;
  report::reason _abort = report::reason::none;
  report::reason _would_fail = report::reason::none;
  unsigned _bits = 0;
};

// What the queue does with a message once a delivery attempt is over and it failed.
enum class tls_failure_outcome : uint8_t {
  retry,     // ordinary retry on the normal schedule
  fallback,  // forced: hand to the fallback chain (fallback.hh)
  drop,      // exclusive: remove from the spool, audit outcome = dropped
};
// Return "retry", "fallback" or "drop".
const char* to_string(tls_failure_outcome o);

// Decide the message's fate: when every MX that answered failed for a TLS reason and the
// policy's fallback_after has passed since the first attempt, forced falls back and
// exclusive drops; otherwise (and always under opportunistic, raised by MTA-STS or DANE
// or not) it is an ordinary retry.
tls_failure_outcome outcome_on_tls_failure(const effective_policy& p, bool all_mx_failed_for_tls,
                                           duration since_first_attempt);

}  // namespace sr::policy
