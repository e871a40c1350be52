// sealrelay-check's data: what the probe found for one domain (MX hosts, addresses, what
// each address negotiated, the MTA-STS and TLSA records), the verdicts judged from it under
// each TLS policy, and the two renderings (text for people, JSON for scripts). The probe
// (check.cc) fills the findings; judge() is pure and decides with the relay's own decider.
#pragma once
#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "sealrelay/config/config.hh"
#include "sealrelay/dns/resolver.hh"
#include "sealrelay/policy/resolver.hh"
#include "sealrelay/policy/table.hh"
#include "sealrelay/report/reason.hh"
#include "sealrelay/sts/policy.hh"
#include "sealrelay/tls/chain.hh"
#include "sealrelay/tls/dane.hh"
#include "sealrelay/tls/session.hh"

namespace check {

struct options {
  std::vector<std::string> resolvers;  // --resolver; empty = dns.resolvers of the config
  uint16_t port = 25;                  // outbound.smtp_port, or --port
  uint16_t sts_port = 443;             // mta_sts.https_port, or --sts-port
  uint64_t timeout_ms = 10000;         // per step: DNS answer, connect, each SMTP reply, handshake
  std::string ehlo;                    // server.hostname, else gethostname()
  size_t max_hosts = 10;               // MX hosts probed per domain
  size_t max_addresses = 8;            // addresses probed per MX host
  bool json = false;
};

// One address of one MX host: how far the conversation got and what TLS it negotiated.
struct probe_result {
  std::string ip;
  sockaddr_storage addr{};
  bool connected = false;
  std::string error;                   // why the conversation stopped early ("" = it did not)
  unsigned greeting_code = 0;
  std::string greeting;                // "220 mx.test ESMTP"
  unsigned ehlo_code = 0;
  bool starttls_offered = false;
  unsigned starttls_code = 0;          // 0 = not sent
  std::string starttls_reply;
  bool tls_attempted = false;
  bool tls_ok = false;
  std::string tls_failure;             // failure token of the handshake ("old-protocol", ...)
  std::string version;                 // "TLSv1.3"
  std::string cipher;                  // IANA name
  int library_bits = 0;                // what wolfSSL says
  unsigned rated_bits = 0;             // what the policy floors say (classify_cipher)
  sr::tls::cert_verdict verdict = sr::tls::cert_verdict::none;
  std::vector<sr::tls::cert_info> chain;
  unsigned ehlo_tls_code = 0;
  sr::tls::dane_match dane;            // the chain against the host's usable TLSA records
};

// One MX host: its addresses and its TLSA records (_<port>._tcp.<host>).
struct host_result {
  std::string name;
  uint16_t preference = 0;
  sr::dns::status addr_status = sr::dns::status::temp_fail;
  bool addr_ad = false;
  std::vector<probe_result> addresses;
  std::string tlsa_name;
  sr::dns::status tlsa_status = sr::dns::status::temp_fail;
  bool tlsa_ad = false;
  std::vector<std::vector<uint8_t>> tlsa;  // raw rdata: usage, selector, mtype, data
  // Filled by judge():
  std::vector<sr::tls::tlsa_record> usable;  // RFC 7672 §3.1 usable records among `tlsa`
  bool dane_secure = false;   // MX, address and TLSA answers all DNSSEC-validated (AD)
  bool dane_applies = false;  // [dane] enabled, secure and usable records: DANE verifies it
  bool sts_match = false;     // matches an mx pattern of the MTA-STS policy (if there is one)
};

// The domain's MTA-STS state (RFC 8461): TXT record, policy fetch, parsed policy.
struct sts_result {
  sr::sts::txt_verdict record = sr::sts::txt_verdict::none;
  std::string id;                      // of a valid record
  std::string record_detail;           // why the record is invalid
  bool fetched = false;                // a fetch was attempted (valid record)
  std::string url;
  bool fetch_ok = false;
  unsigned http_status = 0;
  std::string fetch_detail;            // why the fetch failed ("cert: cert-untrusted", ...)
  std::string policy_error;            // why the fetched file is not a valid policy
  std::shared_ptr<const sr::policy::mta_sts_rules> rules;  // a valid policy
  uint32_t max_age = 0;
  bool enabled = false;                // mta_sts.enabled: the relay applies it
};

// The policies judged, in this order.
inline constexpr std::array<sr::config::tls_policy, 3> policies{
    sr::config::tls_policy::opportunistic, sr::config::tls_policy::forced,
    sr::config::tls_policy::exclusive};

// One address under one policy.
struct address_verdict {
  bool ok = false;      // a message would go out here
  bool tls = false;     // ... over TLS (false: in plaintext, opportunistic only)
  sr::report::reason reason = sr::report::reason::none;  // why not (or, when ok, what was noted)
};

// The domain under one policy: reachable when some address is.
struct policy_verdict {
  sr::policy::effective_policy policy;  // the floors it was judged with
  bool reachable = false;
  bool tls = false;
  std::string via;                      // "mx1.example.net[127.0.0.2]" of the first good address
  sr::report::reason reason = sr::report::reason::none;  // why not: the first address's reason
  std::string where;                    // the address of that reason, or "" for a domain-level one
  std::vector<std::pair<sr::report::reason, std::string>> failures;  // every address that failed
  std::vector<std::vector<address_verdict>> per_host;     // [host][address]
};

struct domain_result {
  std::string domain;
  uint16_t port = 25;
  sr::policy::effective_policy configured;  // from the config table
  std::string pattern;                      // the [[policy]] domain that matched ("" = default)
  // A [[route]] sends the domain's mail to a next hop instead of its MX hosts: no MX
  // lookup, no MTA-STS, no DANE (as the relay's walk and resolver do).
  std::string route;                        // next_hop as written ("" = MX hosts)
  std::string route_pattern;                // the [[route]] domain that matched
  bool route_invalid = false;               // next_hop is not [ip]:port or host:port
  sr::dns::status mx_status = sr::dns::status::temp_fail;
  bool mx_ad = false;
  bool mx_implicit = false;
  bool mx_truncated = false;                // more hosts than max_hosts
  std::vector<host_result> hosts;
  sr::dns::status sts_txt_status = sr::dns::status::temp_fail;
  bool sts_txt_ad = false;
  std::vector<std::string> sts_txt;
  sts_result sts;
  bool dane_enabled = false;                // dane.enabled
  std::array<policy_verdict, 3> verdicts;   // by `policies`
  bool reachable = false;                   // under the configured policy
};

// Fill the DANE matches, rated bits, MTA-STS mx matches, d.verdicts and d.reachable from
// the findings, as the relay's host walk would decide (src/delivery/walk.cc).
void judge(domain_result& d);

// Return the report for people.
std::string render_text(const domain_result& d);
// Return the report as one JSON object.
std::string render_json(const domain_result& d);

}  // namespace check
