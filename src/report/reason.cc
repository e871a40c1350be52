// Tokens and RFC 8460 mapping of report::reason. The token table is indexed by the enum,
// so a new reason without a token fails to compile (the array size is checked).
#include "sealrelay/report/reason.hh"

#include <array>

namespace sr::report {
namespace {
constexpr std::array<std::string_view, reason_count> tokens = {
    "",
    "starttls-not-offered",
    "starttls-refused",
    "handshake-failed",
    "old-protocol",
    "weak-cipher",
    "cert-untrusted",
    "cert-expired",
    "cert-name-mismatch",
    "cert-invalid",
    "tls-rejected",
    "tlsa-mismatch",
    "dane-required",
    "mx-not-in-sts-policy",
    "tls-error",
    "tlsa-lookup-failed",
    "connect-failed",
    "connection-lost",
    "timeout",
    "protocol-error",
    "remote-4xx",
    "remote-5xx",
    "quit",
    "local",
    "null-mx",
    "nxdomain",
    "dns-temp-fail",
    "mx-address-lookup-failed",
    "route-invalid",
    "expired",
    "spool-read-failed",
    "fallback-unavailable",
    "requiretls-not-offered",
    "requiretls-unverified",
};
static_assert(tokens.back() == "requiretls-unverified", "one token per reason, in enum order");
}  // namespace

std::string_view to_string(reason r) {
  auto i = size_t(r);
  return i < tokens.size() ? tokens[i] : std::string_view();
}

std::optional<reason> reason_from_token(std::string_view token) {
  if (token.empty()) return std::nullopt;
  for (size_t i = 1; i < tokens.size(); ++i)
    if (tokens[i] == token) return reason(i);
  return std::nullopt;
}

std::string_view to_string(result_type t) {
  switch (t) {
    case result_type::none: return "";
    case result_type::starttls_not_supported: return "starttls-not-supported";
    case result_type::certificate_host_mismatch: return "certificate-host-mismatch";
    case result_type::certificate_expired: return "certificate-expired";
    case result_type::certificate_not_trusted: return "certificate-not-trusted";
    case result_type::validation_failure: return "validation-failure";
    case result_type::sts_policy_fetch_error: return "sts-policy-fetch-error";
    case result_type::sts_policy_invalid: return "sts-policy-invalid";
    case result_type::sts_webpki_invalid: return "sts-webpki-invalid";
    case result_type::tlsa_invalid: return "tlsa-invalid";
    case result_type::dnssec_invalid: return "dnssec-invalid";
    case result_type::dane_required: return "dane-required";
  }
  return "";
}

result_type result_type_of(reason r) {
  switch (r) {
    case reason::starttls_not_offered:
    case reason::starttls_refused: return result_type::starttls_not_supported;
    case reason::cert_name_mismatch: return result_type::certificate_host_mismatch;
    case reason::cert_expired: return result_type::certificate_expired;
    case reason::cert_untrusted: return result_type::certificate_not_trusted;
    case reason::handshake_failed:
    case reason::old_protocol:
    case reason::weak_cipher:
    case reason::cert_invalid:
    case reason::tls_rejected:
    case reason::mx_not_in_sts_policy:
    case reason::tlsa_mismatch: return result_type::validation_failure;
    case reason::dane_required: return result_type::dane_required;
    case reason::tlsa_lookup_failed: return result_type::dnssec_invalid;
    default: return result_type::none;
  }
}

}  // namespace sr::report
