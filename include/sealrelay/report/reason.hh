// Why a delivery step ended as it did, as one enum shared by control flow, the audit
// (DESIGN.md §5 `reason`), the metrics and TLS-RPT (RFC 8460 result types). Code decides
// on the enum; the text token exists only at the edges (audit line, metric label, log).
// reason_from_token() is the one way in from text (the TLS library's failure token, tests).
#pragma once
#include <cstdint>
#include <optional>
#include <string_view>

namespace sr::report {

enum class reason : uint8_t {
  none,                      // nothing to say (delivered over verified TLS)
  // TLS failures: count towards "every MX failed for a TLS reason" (fallback / drop).
  starttls_not_offered,      // EHLO did not offer STARTTLS
  starttls_refused,          // STARTTLS answered other than 220
  handshake_failed,          // the handshake failed (or the peer closed during it)
  old_protocol,              // negotiated (or only offered) a version under the floor
  weak_cipher,               // negotiated cipher under min_cipher_bits
  cert_untrusted,            // certificate does not chain to tls.ca_file
  cert_expired,              // certificate outside its validity period
  cert_name_mismatch,        // certificate does not name the MX host
  cert_invalid,              // certificate otherwise broken
  tls_rejected,              // the decider refused the session without a finer reason
  tlsa_mismatch,             // DANE: no usable TLSA record matched the certificate chain
  dane_required,             // verify = "dane" (or DANE-required): the host has no usable TLSA
  mx_not_in_sts_policy,      // MTA-STS enforce: MX host not matched by the policy's mx:
  // Not TLS failures: ordinary retries or final answers.
  tls_error,                 // TLS record error after the handshake (a lost connection)
  tlsa_lookup_failed,        // DANE: TLSA (or the DNSSEC status behind it) SERVFAIL/bogus: defer
  connect_failed,            // TCP connect failed or timed out
  connection_lost,           // EOF or I/O error mid-session
  timeout,                   // a phase timer fired
  protocol_error,            // malformed or unexpected reply
  remote_4xx,                // the remote refused temporarily
  remote_5xx,                // the remote refused permanently
  quit,                      // the normal end of a link
  local,                     // our own failure (body unreadable, ...)
  null_mx,                   // the domain accepts no mail (RFC 7505)
  nxdomain,                  // the domain does not exist
  dns_temp_fail,             // MX lookup failed temporarily
  mx_address_lookup_failed,  // no address for any MX host
  route_invalid,             // a [[route]] next_hop that cannot be used
  expired,                   // past outbound.max_queue_age
  spool_read_failed,         // the message could not be read back from the spool
  fallback_unavailable,      // forced gave up on TLS but no fallback sidecar answered
  // REQUIRETLS (RFC 8689) failures; TLS failures too (a REQUIRETLS message then bounces).
  requiretls_not_offered,    // the MX's EHLO over TLS did not offer REQUIRETLS
  requiretls_unverified,     // the MX is vouched for by neither MTA-STS nor DANE
};
inline constexpr unsigned reason_count = unsigned(reason::requiretls_unverified) + 1;

// Return the audit token ("starttls-not-offered", ...; "" for none). Static storage.
std::string_view to_string(reason r);
// Return the reason whose token is `token`, or nullopt for an unknown token.
std::optional<reason> reason_from_token(std::string_view token);
// Return whether `r` is a TLS failure: one that, at every MX, sends a forced message to
// its fallback and drops an exclusive one (DESIGN.md §1).
constexpr bool is_tls_failure(reason r) {
  return (r >= reason::starttls_not_offered && r <= reason::mx_not_in_sts_policy) ||
         r == reason::requiretls_not_offered || r == reason::requiretls_unverified;
}

// RFC 8460 §4.3 result types (TLS-RPT failure-details).
enum class result_type : uint8_t {
  none,                       // not a TLS failure: not reported
  starttls_not_supported,
  certificate_host_mismatch,
  certificate_expired,
  certificate_not_trusted,
  validation_failure,
  sts_policy_fetch_error,
  sts_policy_invalid,
  sts_webpki_invalid,
  tlsa_invalid,
  dnssec_invalid,
  dane_required,
};
// Return the RFC 8460 spelling ("starttls-not-supported", ...; "" for none).
std::string_view to_string(result_type t);
// Return the RFC 8460 result type a TLS-RPT report files `r` under (none for non-TLS reasons).
result_type result_type_of(reason r);

}  // namespace sr::report
