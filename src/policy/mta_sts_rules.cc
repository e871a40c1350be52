// MX pattern matching of MTA-STS (RFC 8461 §4.1): a pattern is a host name, or "*." and a
// name, which matches exactly one more leftmost label ("*.example.net" matches
// "mx.example.net", never "example.net" or "a.b.example.net"). Case-insensitive; a
// trailing dot on the host is ignored.
#include "sealrelay/policy/resolver.hh"
#include "sealrelay/util/text.hh"

namespace sr::policy {

bool mta_sts_rules::matches(std::string_view host) const {
  if (!host.empty() && host.back() == '.') host.remove_suffix(1);
  if (host.empty()) return false;
  for (const std::string& p : mx) {
    std::string_view pat = p;
    if (pat.size() > 2 && pat[0] == '*' && pat[1] == '.') {
      size_t dot = host.find('.');
      if (dot == 0 || dot == std::string_view::npos) continue;  // needs a label before the suffix
      if (iequals(host.substr(dot + 1), pat.substr(2))) return true;
    } else if (iequals(host, pat)) {
      return true;
    }
  }
  return false;
}

}  // namespace sr::policy
