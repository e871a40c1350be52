// The per-connection TLS decision (DESIGN.md §1 table, issue 4): implements the outbound
// session's tls_decider for one connection under one effective policy, and the per-message
// consequence once every MX has failed. opportunistic is Postfix `may`; forced/exclusive
// never let MAIL go out without a session that meets the floor and the `verify` check.
// verify = "none" is Postfix `encrypt`; verify = "ca" needs the TLS layer's verdict;
// verify = "dane" is not implemented yet (and refused by the config): such sessions end
// with tls_action::defer, "dane-unavailable", an ordinary retry and never a TLS failure.
#pragma once
#include <cstdint>
#include <string_view>

#include "outbound/tls_decider.hh"
#include "policy/table.hh"
#include "util/duration.hh"

namespace sr::policy {

// Audit reason tokens (DESIGN.md §5) this module produces. Static storage: views stay valid.
namespace reason {
inline constexpr std::string_view starttls_not_offered = "starttls-not-offered";
inline constexpr std::string_view starttls_refused = "starttls-refused";
inline constexpr std::string_view handshake_failed = "handshake-failed";
inline constexpr std::string_view old_protocol = "old-protocol";
inline constexpr std::string_view weak_cipher = "weak-cipher";
inline constexpr std::string_view cert_untrusted = "cert-untrusted";
inline constexpr std::string_view cert_expired = "cert-expired";
inline constexpr std::string_view cert_name_mismatch = "cert-name-mismatch";
inline constexpr std::string_view cert_invalid = "cert-invalid";
// DANE is not there yet: the failure is ours, not the MX's, so it is not a TLS reason and
// never sends a message to its fallback or drops it; it retries and bounces at max_queue_age.
inline constexpr std::string_view dane_unavailable = "dane-unavailable";
}  // namespace reason

// Return whether `token` is a TLS reason: a failure that counts towards "every MX failed
// for a TLS reason" (fallback for forced, drop for exclusive).
bool is_tls_reason(std::string_view token);

// Map the TLS layer's certificate reason to a static audit token ("cert-invalid" when
// unknown or empty).
std::string_view cert_reason_token(std::string_view cert_reason);

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
  // Record that the handshake failed (not a decision point: that connection is gone).
  void on_handshake_failed();

  // Return the reason of the last abort (or failed handshake); empty when none.
  std::string_view abort_reason() const { return _abort; }
  // Return whether this connection failed for a TLS reason (is_tls_reason(abort_reason())).
  bool tls_failure() const { return !_abort.empty() && is_tls_reason(_abort); }
  // Return what forced (with this policy's floors, verify = none) would have refused this
  // connection for, or empty; under forced/exclusive it is the first TLS failure seen.
  std::string_view would_fail_forced() const { return _would_fail; }
  // Return the negotiated cipher's strength as rated by classify_cipher (0 before on_tls).
  unsigned effective_bits() const { return _bits; }
  // Return the policy this connection runs under.
  const effective_policy& policy() const { return _p; }

 private:
  bool enforcing() const { return _p.tls != config::tls_policy::opportunistic; }
  void note_would_fail(std::string_view r) {
    if (_would_fail.empty()) _would_fail = r;
  }

  effective_policy _p;
  std::string_view _abort;       // static tokens only
  std::string_view _would_fail;  // static tokens only
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
// exclusive drops; otherwise (and always under opportunistic) it is an ordinary retry.
tls_failure_outcome outcome_on_tls_failure(const effective_policy& p, bool all_mx_failed_for_tls,
                                           duration since_first_attempt);

}  // namespace sr::policy
