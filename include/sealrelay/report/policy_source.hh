// Where a domain's effective TLS policy came from (DESIGN.md §5 `policy_source`): one enum
// for the policy resolver, the decider, the audit and the metrics.
#pragma once
#include <cstdint>
#include <string_view>

namespace sr::report {

enum class policy_source : uint8_t {
  default_policy,  // outbound.default_policy: no [[policy]] matched
  config,          // a [[policy]] entry
  mta_sts,         // the domain's MTA-STS policy in enforce mode raised the floor
  dane,            // usable TLSA records (RFC 7672)
  requiretls,      // the message asked for REQUIRETLS (RFC 8689)
};

// Return the audit token: "default", "config", "mta-sts", "dane", "requiretls".
constexpr std::string_view to_string(policy_source s) {
  switch (s) {
    case policy_source::default_policy: return "default";
    case policy_source::config: return "config";
    case policy_source::mta_sts: return "mta-sts";
    case policy_source::dane: return "dane";
    case policy_source::requiretls: return "requiretls";
  }
  return "default";
}

}  // namespace sr::report
