// The TLS-RPT collector: per recipient (policy) domain, per applied policy, the counts
// RFC 8460 §4.4 reports: successful and failed sessions, and failure details grouped by
// result type, sending address, receiving MX host and receiving address. One collector
// per shard, touched only by its shard (outbound work for a domain runs on the domain's
// owner shard, so each domain is counted and reported by one shard): no locks. A domain's
// entries are found without allocating; a new domain, policy or detail allocates once.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "sealrelay/delivery/report.hh"
#include "sealrelay/policy/resolver.hh"
#include "sealrelay/report/reason.hh"

namespace sr::tlsrpt {

// RFC 8460 §4.3 policy-type.
enum class policy_type : uint8_t { no_policy_found, sts, tlsa };
// Return the RFC 8460 spelling ("no-policy-found", "sts", "tlsa").
std::string_view to_string(policy_type t);

struct failure_detail {
  report::result_type type = report::result_type::validation_failure;
  std::string sending_ip;    // our address ("" unknown: left out of the report)
  std::string mx;            // receiving-mx-hostname ("" none)
  std::string ip;            // receiving-ip ("" none)
  std::string info;          // additional-information ("" none; not part of the grouping key)
  uint64_t count = 0;        // failed-session-count
};

struct policy_counts {
  policy_type type = policy_type::no_policy_found;
  std::vector<std::string> strings;  // policy-string (MTA-STS policy lines; TLSA records)
  std::vector<std::string> mx_host;  // mx-host (MTA-STS mx patterns)
  uint64_t successes = 0;            // total-successful-session-count
  uint64_t failures = 0;             // total-failure-session-count
  std::vector<failure_detail> details;
};

struct domain_counts {
  std::vector<policy_counts> policies;
};

// Domain (lower case, no trailing dot) -> counts; ordered, so reports and the state file
// come out the same for the same counts.
using counts_map = std::map<std::string, domain_counts, std::less<>>;

// What one session contributes: counted or not, and as a success or a failure of which type.
struct verdict {
  bool counted = false;
  bool success = false;
  report::result_type type = report::result_type::none;
};

// Classify a session's end for TLS-RPT. A session counts when it got ready for mail over
// TLS (success, unless a published policy's certificate check failed: testing mode) or
// ended for a reason RFC 8460 has a result type for (failure, by result_type_of: the TLS
// failures, and a failed TLSA lookup as dnssec-invalid). Sessions that never reached TLS for
// other reasons (connect refused, 4xx greeting) and the plaintext retry after a failed
// handshake (already counted as that failure) are not counted.
// `published`: the domain published a policy (MTA-STS or TLSA) for this session.
verdict classify(const delivery::session_report& r, bool reached_idle, bool plain_retry,
                 report::reason close_reason, bool published);

// Return the policy-string lines of an MTA-STS policy as delivery knows it (version, mode, mx).
std::vector<std::string> sts_policy_strings(const policy::mta_sts_rules& rules);

class collector {
 public:
  // Most domains tracked in one window; sessions to further domains are not counted
  // (bounds memory under a flood of distinct recipient domains).
  explicit collector(size_t max_domains = 100000) : _max_domains(max_domains) {}

  // Count one session to `domain` under policy `type` (`sts`: the rules it ran under;
  // `tlsa`: the TLSA records it ran under, in presentation form, as the policy-string).
  void add(std::string_view domain, policy_type type, const policy::mta_sts_rules* sts, const verdict& v,
           std::string_view sending_ip, std::string_view mx, std::string_view ip,
           std::span<const std::string> tlsa = {});
  // Count a failure that happened before any session: MTA-STS policy fetch/validation
  // failures (sts-policy-fetch-error, sts-policy-invalid, sts-webpki-invalid), filed
  // under policy-type sts with no policy string.
  void add_policy_failure(std::string_view domain, report::result_type type, std::string_view info);
  // Add every count of `other` (a restored or adopted state) to this one.
  void merge(const counts_map& other);
  // Take the counts and start empty (the end of a reporting window).
  counts_map take();
  const counts_map& counts() const { return _domains; }
  bool empty() const { return _domains.empty(); }
  // Sessions not counted because max_domains was reached.
  uint64_t dropped() const { return _dropped; }

 private:
  domain_counts* find_domain(std::string_view domain);
  counts_map _domains;
  size_t _max_domains;
  uint64_t _dropped = 0;
};

}  // namespace sr::tlsrpt
