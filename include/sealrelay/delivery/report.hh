// The session report: what one outbound link (or a give-up without one) learnt, written
// once at its end. It feeds the audit record of every recipient it carried, the metrics
// (TLS failures by reason, deliveries by version) and, later, TLS-RPT (result_type_of).
// Pure data: no I/O, so the host walk and its unit tests use it too.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "sealrelay/config/config.hh"
#include "sealrelay/report/policy_source.hh"
#include "sealrelay/report/reason.hh"

namespace sr::delivery {

// Which policy the recipient published for the session (TLS-RPT `policy-type`).
enum class published_policy : uint8_t {
  none,  // no-policy-found
  sts,   // an MTA-STS policy (testing or enforce)
  tlsa,  // usable DANE TLSA records
};

struct session_report {
  std::string mx;           // host name ("" when none was contacted)
  std::string ip;           // address ("" when none)
  std::string source_ip;    // our address on the connection: its pool's, or the kernel's ("" when none)
  bool tls = false;
  std::string tls_version, cipher;
  unsigned cipher_bits = 0;
  bool cert_checked = false, cert_ok = false;
  report::reason cert_reason = report::reason::none;  // cert_untrusted, ... when !cert_ok
  report::reason reason = report::reason::none;       // why the link (or attempt) ended badly
  config::tls_policy policy = config::tls_policy::opportunistic;  // effective policy
  report::policy_source source = report::policy_source::default_policy;  // where it came from
  published_policy published = published_policy::none;  // what the recipient publishes
  // MTA-STS testing: what enforce would have refused this session for (recorded in the
  // audit `reason` and TLS-RPT, never enforced); none when nothing.
  report::reason sts_testing = report::reason::none;
  // DANE: the host's usable TLSA records in presentation form, "_25._tcp.mx.example. IN
  // TLSA ( 3 1 1 <hex> )" (TLS-RPT policy-string); empty otherwise.
  std::vector<std::string> tlsa_policy;
};

}  // namespace sr::delivery
