// MTA-STS parsing (RFC 8461 §3): the `_mta-sts.<domain>` TXT record and the policy file
// served at https://mta-sts.<domain>/.well-known/mta-sts.txt. Pure functions, no I/O.
// Both are strict: anything the RFC's grammar does not allow makes the record or the
// policy invalid, which the caller treats as "no (new) policy" (RFC 8461 §3.1, §5).
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "sealrelay/policy/resolver.hh"
#include "sealrelay/util/result.hh"

namespace sr::sts {

// Largest max_age a policy may carry (RFC 8461 §3.2: about one year).
inline constexpr uint32_t max_max_age = 31557600;
// Largest policy body we fetch and parse (issue 8: 64 KiB).
inline constexpr size_t max_policy_bytes = 64 * 1024;

// What the TXT records of `_mta-sts.<domain>` say.
enum class txt_verdict : uint8_t {
  none,     // no record starting "v=STSv1": the domain publishes no MTA-STS policy
  valid,    // exactly one record, syntactically valid: `id` is set
  invalid,  // one malformed record, or more than one: no available policy (§3.1)
};
const char* to_string(txt_verdict v);

struct txt_record {
  txt_verdict verdict = txt_verdict::none;
  std::string id;      // 1–32 letters and digits (valid only)
  std::string detail;  // why it is invalid, for the log
};

// Read the TXT records of `_mta-sts.<domain>` (each one's strings already concatenated).
txt_record parse_txt(std::span<const std::string> records);

// A parsed policy file (RFC 8461 §3.2).
struct policy_file {
  policy::mta_sts_rules rules;  // mode and lower-case mx patterns
  uint32_t max_age = 0;         // seconds, <= max_max_age
};

// Parse a policy file; CRLF or LF line endings, unknown keys ignored, a missing or repeated
// version/mode/max_age, a bad value or a malformed line makes it invalid. `mx` is required
// unless mode is none.
result<policy_file> parse_policy(std::string_view text);

// Return whether `pattern` is a valid `mx:` value: a host name, or "*." and a host name.
bool valid_mx_pattern(std::string_view pattern);

}  // namespace sr::sts
