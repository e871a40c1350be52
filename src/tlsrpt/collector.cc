// Counting is on the delivery path (once per outbound session): lookups compare against
// what is stored and allocate only when a domain, policy or detail is first seen.
#include "sealrelay/tlsrpt/collector.hh"

#include <algorithm>

namespace sr::tlsrpt {

std::string_view to_string(policy_type t) {
  switch (t) {
    case policy_type::sts: return "sts";
    case policy_type::tlsa: return "tlsa";
    case policy_type::no_policy_found: break;
  }
  return "no-policy-found";
}

verdict classify(const delivery::session_report& r, bool reached_idle, bool plain_retry,
                 report::reason close_reason, bool published) {
  verdict v;
  if (plain_retry) return v;
  report::reason why = report::reason::none;
  // Any reason RFC 8460 has a result type for: the TLS failures, and a TLSA lookup that
  // failed (dnssec-invalid), which defers the host rather than failing TLS.
  if (report::result_type_of(close_reason) != report::result_type::none) why = close_reason;
  else if (report::result_type_of(r.reason) != report::result_type::none) why = r.reason;
  else if (published && r.sts_testing != report::reason::none)
    // MTA-STS testing used an MX the policy does not name: reported as enforce would fail.
    why = r.sts_testing;
  else if (published && r.tls && r.cert_checked && !r.cert_ok)
    // A published policy in testing mode lets the session go on; the report still says
    // the certificate failed (RFC 8460 §4.3).
    why = r.cert_reason == report::reason::none ? report::reason::cert_invalid : r.cert_reason;
  if (why != report::reason::none) {
    report::result_type t = report::result_type_of(why);
    if (t != report::result_type::none) {
      v.counted = true;
      v.type = t;
      return v;
    }
  }
  if (reached_idle && r.tls) {
    v.counted = true;
    v.success = true;
  }
  return v;
}

std::vector<std::string> sts_policy_strings(const policy::mta_sts_rules& rules) {
  std::vector<std::string> s;
  s.emplace_back("version: STSv1");
  const char* mode = rules.mode == policy::sts_mode::enforce   ? "enforce"
                     : rules.mode == policy::sts_mode::testing ? "testing"
                                                                          : "none";
  s.push_back(std::string("mode: ") + mode);
  for (const auto& m : rules.mx) s.push_back("mx: " + m);
  s.push_back("max_age: " + std::to_string(rules.max_age));
  return s;
}

namespace {

// Does `p` hold the policy `type` / `sts` describes? (No allocation: compares in place.)
bool same_policy(const policy_counts& p, policy_type type, const policy::mta_sts_rules* sts,
                 std::span<const std::string> tlsa) {
  if (p.type != type) return false;
  // Each MX host's TLSA RRset is a policy of its own (RFC 8460 §4.4 policy-string).
  if (type == policy_type::tlsa) return std::equal(p.strings.begin(), p.strings.end(), tlsa.begin(), tlsa.end());
  if (type != policy_type::sts) return true;
  if (!sts) return p.strings.empty();
  if (p.mx_host != sts->mx || p.strings.size() < 2) return false;
  if (p.strings.back() != "max_age: " + std::to_string(sts->max_age)) return false;
  std::string_view mode = p.strings[1];
  std::string_view want = sts->mode == policy::sts_mode::enforce   ? "mode: enforce"
                          : sts->mode == policy::sts_mode::testing ? "mode: testing"
                                                                              : "mode: none";
  return mode == want;
}

policy_counts& find_policy(domain_counts& d, policy_type type, const policy::mta_sts_rules* sts,
                           std::span<const std::string> tlsa = {}) {
  for (auto& p : d.policies)
    if (same_policy(p, type, sts, tlsa)) return p;
  policy_counts& p = d.policies.emplace_back();
  p.type = type;
  if (type == policy_type::tlsa) p.strings.assign(tlsa.begin(), tlsa.end());
  if (type == policy_type::sts && sts) {
    p.strings = sts_policy_strings(*sts);
    p.mx_host = sts->mx;
  }
  return p;
}

failure_detail& find_detail(policy_counts& p, report::result_type t, std::string_view sending_ip,
                            std::string_view mx, std::string_view ip) {
  for (auto& d : p.details)
    if (d.type == t && d.sending_ip == sending_ip && d.mx == mx && d.ip == ip) return d;
  failure_detail& d = p.details.emplace_back();
  d.type = t;
  d.sending_ip = std::string(sending_ip);
  d.mx = std::string(mx);
  d.ip = std::string(ip);
  return d;
}

void merge_policy(domain_counts& into, const policy_counts& from) {
  policy_counts* p = nullptr;
  for (auto& q : into.policies)
    if (q.type == from.type && q.strings == from.strings && q.mx_host == from.mx_host) p = &q;
  if (!p) {
    p = &into.policies.emplace_back();
    p->type = from.type;
    p->strings = from.strings;
    p->mx_host = from.mx_host;
  }
  p->successes += from.successes;
  p->failures += from.failures;
  for (const auto& d : from.details) {
    failure_detail& x = find_detail(*p, d.type, d.sending_ip, d.mx, d.ip);
    x.count += d.count;
    if (x.info.empty()) x.info = d.info;
  }
}

}  // namespace

domain_counts* collector::find_domain(std::string_view domain) {
  auto it = _domains.find(domain);
  if (it != _domains.end()) return &it->second;
  if (_domains.size() >= _max_domains) {
    ++_dropped;
    return nullptr;
  }
  return &_domains.emplace(std::string(domain), domain_counts{}).first->second;
}

void collector::add(std::string_view domain, policy_type type, const policy::mta_sts_rules* sts, const verdict& v,
                    std::string_view sending_ip, std::string_view mx, std::string_view ip,
                    std::span<const std::string> tlsa) {
  if (!v.counted) return;
  domain_counts* d = find_domain(domain);
  if (!d) return;
  policy_counts& p = find_policy(*d, type, type == policy_type::sts ? sts : nullptr, tlsa);
  if (v.success) {
    ++p.successes;
    return;
  }
  ++p.failures;
  ++find_detail(p, v.type, sending_ip, mx, ip).count;
}

void collector::add_policy_failure(std::string_view domain, report::result_type type, std::string_view info) {
  domain_counts* d = find_domain(domain);
  if (!d) return;
  policy_counts& p = find_policy(*d, policy_type::sts, nullptr);
  ++p.failures;
  failure_detail& x = find_detail(p, type, {}, {}, {});
  ++x.count;
  if (x.info.empty()) x.info = std::string(info);
}

void collector::merge(const counts_map& other) {
  for (const auto& [name, counts] : other) {
    domain_counts* d = find_domain(name);
    if (!d) continue;
    for (const auto& p : counts.policies) merge_policy(*d, p);
  }
}

counts_map collector::take() {
  counts_map out;
  out.swap(_domains);
  return out;
}

}  // namespace sr::tlsrpt
