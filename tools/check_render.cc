// The two renderings of a sealrelay-check result: an indented report for people and one
// JSON object per domain for scripts (field names are the report's own words; absent
// values are null, never omitted). Pure: no I/O.
#include <cstdio>
#include <string>

#include "check.hh"
#include "sealrelay/policy/fallback.hh"
#include "sealrelay/util/json.hh"

namespace check {

namespace {

using sr::report::reason;

const char* policy_name(sr::config::tls_policy p) { return sr::config::to_string(p); }

std::string hex(const std::vector<uint8_t>& b, size_t from) {
  static const char digits[] = "0123456789abcdef";
  std::string s;
  for (size_t i = from; i < b.size(); ++i) {
    s += digits[b[i] >> 4];
    s += digits[b[i] & 15];
  }
  return s;
}

// "3 1 1 a1b2..." as in zone files (usage selector matching-type data).
std::string tlsa_text(const std::vector<uint8_t>& r) {
  if (r.size() < 3) return "(malformed: " + hex(r, 0) + ")";
  return std::to_string(r[0]) + " " + std::to_string(r[1]) + " " + std::to_string(r[2]) + " " + hex(r, 3);
}

std::string floors(const sr::policy::effective_policy& p) {
  std::string s = "min_version ";
  s += sr::config::to_string(p.min_version);
  s += ", min_cipher_bits " + std::to_string(p.min_cipher_bits);
  if (p.tls != sr::config::tls_policy::opportunistic && !p.raised) {
    s += ", verify ";
    s += sr::config::to_string(p.verify);
  }
  if (p.raised) s += ", raised by MTA-STS enforce (verify ca)";
  return s;
}

std::string fallback_list(const sr::policy::effective_policy& p) {
  std::string s;
  for (auto m : p.fallback) {
    if (!s.empty()) s += ", ";
    s += sr::policy::to_string(m);
  }
  return s.empty() ? "none" : s;
}

// What happens to a message when the domain cannot be reached under `p`.
std::string consequence(const sr::policy::effective_policy& p) {
  switch (p.tls) {
    case sr::config::tls_policy::opportunistic: return "retried, bounced at outbound.max_queue_age";
    case sr::config::tls_policy::forced:
      // Until the fallback sidecar exists the hand-off finds none: the relay keeps such a
      // message queued (audit fallback-unavailable) and retries it over TLS.
      return "fallback: " + fallback_list(p) +
             (sr::policy::needs_handoff(p) ? " (no fallback sidecar in this version: kept queued, retried over TLS)"
                                           : "");
    case sr::config::tls_policy::exclusive: return "dropped (audited)";
  }
  return "";
}

const char* ad_text(bool ad) { return ad ? "AD (DNSSEC validated)" : "no AD (not DNSSEC validated)"; }

// JSON helpers: a string literal with escapes, or null for "".
void jstr(std::string& o, std::string_view s) { sr::append_json_string(o, s); }
void jstr_or_null(std::string& o, std::string_view s) {
  if (s.empty()) o += "null";
  else jstr(o, s);
}
void jkey(std::string& o, std::string_view k) {
  if (o.back() != '{' && o.back() != '[') o += ',';
  jstr(o, k);
  o += ':';
}
void jbool(std::string& o, bool b) { o += b ? "true" : "false"; }
void jreason(std::string& o, reason r) { jstr_or_null(o, sr::report::to_string(r)); }

void json_policy(std::string& o, const sr::policy::effective_policy& p) {
  o += '{';
  jkey(o, "tls");
  jstr(o, policy_name(p.tls));
  jkey(o, "min_version");
  jstr(o, sr::config::to_string(p.min_version));
  jkey(o, "min_cipher_bits");
  o += std::to_string(p.min_cipher_bits);
  jkey(o, "verify");
  jstr(o, sr::config::to_string(p.verify));
  jkey(o, "raised");
  jbool(o, p.raised);
  o += '}';
}

void json_cert(std::string& o, const sr::tls::cert_info& c) {
  o += '{';
  jkey(o, "subject");
  jstr(o, c.subject);
  jkey(o, "issuer");
  jstr(o, c.issuer);
  jkey(o, "names");
  o += '[';
  for (const auto& n : c.names) {
    if (o.back() != '[') o += ',';
    jstr(o, n);
  }
  o += ']';
  jkey(o, "not_before");
  jstr_or_null(o, c.not_before);
  jkey(o, "not_after");
  jstr_or_null(o, c.not_after);
  o += '}';
}

void json_address(std::string& o, const domain_result& d, size_t h, size_t a) {
  const probe_result& p = d.hosts[h].addresses[a];
  o += '{';
  jkey(o, "ip");
  jstr(o, p.ip);
  jkey(o, "connected");
  jbool(o, p.connected);
  jkey(o, "error");
  jstr_or_null(o, p.error);
  jkey(o, "greeting");
  jstr_or_null(o, p.greeting);
  jkey(o, "starttls_offered");
  jbool(o, p.starttls_offered);
  jkey(o, "starttls_reply");
  jstr_or_null(o, p.starttls_reply);
  jkey(o, "tls");
  if (!p.tls_attempted) {
    o += "null";
  } else {
    o += '{';
    jkey(o, "ok");
    jbool(o, p.tls_ok);
    jkey(o, "failure");
    jstr_or_null(o, p.tls_failure);
    jkey(o, "version");
    jstr_or_null(o, p.version);
    jkey(o, "cipher");
    jstr_or_null(o, p.cipher);
    jkey(o, "cipher_bits");
    o += std::to_string(p.rated_bits);
    jkey(o, "library_bits");
    o += std::to_string(p.library_bits);
    jkey(o, "cert");
    if (p.tls_ok) jstr(o, sr::tls::to_string(p.verdict));
    else o += "null";
    jkey(o, "dane");
    if (p.tls_ok && !d.hosts[h].usable.empty()) {
      o += '{';
      jkey(o, "verdict");
      jstr(o, sr::tls::to_string(p.dane.verdict));
      jkey(o, "record");
      o += std::to_string(p.dane.record);
      jkey(o, "depth");
      o += std::to_string(p.dane.depth);
      o += '}';
    } else {
      o += "null";
    }
    jkey(o, "chain");
    o += '[';
    for (const auto& c : p.chain) {
      if (o.back() != '[') o += ',';
      json_cert(o, c);
    }
    o += "]}";
  }
  jkey(o, "verdicts");
  o += '{';
  for (size_t k = 0; k < policies.size(); ++k) {
    const auto& v = d.verdicts[k];
    jkey(o, policy_name(policies[k]));
    if (h >= v.per_host.size() || a >= v.per_host[h].size()) {
      o += "null";
      continue;
    }
    const address_verdict& av = v.per_host[h][a];
    o += '{';
    jkey(o, "ok");
    jbool(o, av.ok);
    jkey(o, "tls");
    jbool(o, av.tls);
    jkey(o, "reason");
    jreason(o, av.reason);
    o += '}';
  }
  o += "}}";
}

// One address, for people.
void text_address(std::string& o, const domain_result& d, size_t h, size_t a) {
  const probe_result& p = d.hosts[h].addresses[a];
  o += "    " + p.ip + ":";
  if (!p.connected) {
    o += " not reachable: " + p.error + "\n";
    return;
  }
  o += "\n      greeting     " + (p.greeting.empty() ? std::string("(none)") : p.greeting) + "\n";
  if (p.greeting_code == 220) {
    o += "      STARTTLS     ";
    if (p.ehlo_code != 250) o += "unknown: EHLO answered " + std::to_string(p.ehlo_code);
    else if (!p.starttls_offered) o += "not offered";
    else if (p.starttls_code == 220) o += "offered, accepted";
    else if (p.starttls_code == 0) o += "offered, no answer";
    else o += "offered, refused: " + p.starttls_reply;
    o += "\n";
  }
  if (p.tls_attempted) {
    if (!p.tls_ok) {
      o += "      TLS          handshake failed (" + p.tls_failure + ")\n";
    } else {
      char buf[256];
      std::snprintf(buf, sizeof buf, "      TLS          %s, %s, %u bits (library says %d)\n",
                    p.version.c_str(), p.cipher.c_str(), p.rated_bits, p.library_bits);
      o += buf;
      o += "      certificate  ";
      o += sr::tls::to_string(p.verdict);
      o += " for " + d.hosts[h].name + " (tls.ca_file)\n";
      if (!d.hosts[h].usable.empty()) {
        o += "      DANE         ";
        o += sr::tls::to_string(p.dane.verdict);
        if (p.dane.record >= 0)
          o += " (record " + std::to_string(p.dane.record) + ", chain depth " + std::to_string(p.dane.depth) + ")";
        o += "\n";
      }
      for (size_t i = 0; i < p.chain.size(); ++i) {
        const auto& c = p.chain[i];
        o += "        [" + std::to_string(i) + "] subject " + c.subject + "\n";
        o += "            issuer  " + c.issuer + "\n";
        std::string names;
        for (const auto& n : c.names) names += (names.empty() ? "" : ", ") + n;
        o += "            names   " + (names.empty() ? std::string("(none)") : names) + "\n";
        o += "            valid   " + c.not_before + " .. " + c.not_after + "\n";
      }
    }
  }
  if (!p.error.empty()) o += "      stopped      " + p.error + "\n";
  o += "      verdicts    ";
  for (size_t k = 0; k < policies.size(); ++k) {
    const auto& v = d.verdicts[k];
    if (h >= v.per_host.size() || a >= v.per_host[h].size()) continue;
    const address_verdict& av = v.per_host[h][a];
    o += std::string(" ") + policy_name(policies[k]) + "=";
    if (av.ok) o += av.tls ? "tls" : "plaintext";
    else o += "refused";
    if (av.reason != reason::none) o += "(" + std::string(sr::report::to_string(av.reason)) + ")";
  }
  o += "\n";
}


// Whether DANE decides for a host, and why not.
std::string dane_status(const domain_result& d, const host_result& h) {
  if (h.usable.empty()) return "DANE: no usable record (RFC 7672 §3.1: DANE-TA/DANE-EE only)";
  if (!h.dane_secure) {
    std::string why = !d.mx_ad ? "the MX answer" : !h.addr_ad ? "the address answer" : "the TLSA answer";
    return "DANE: not used: " + why + " is not DNSSEC-validated (no AD bit)";
  }
  if (!d.dane_enabled) return "DANE: would apply, but dane.enabled = false";
  return "DANE: applies: authenticated TLS with these records is mandatory for this host";
}

const char* sts_mode_name(sr::policy::sts_mode m) {
  switch (m) {
    case sr::policy::sts_mode::none: return "none";
    case sr::policy::sts_mode::testing: return "testing";
    case sr::policy::sts_mode::enforce: return "enforce";
  }
  return "?";
}

void text_sts(std::string& o, const domain_result& d) {
  const sts_result& s = d.sts;
  if (!d.route.empty()) {
    o += "  MTA-STS: not used for a [[route]] next hop (not looked up)\n";
    return;
  }
  o += "  MTA-STS TXT _mta-sts." + d.domain + ":";
  if (d.sts_txt_status == sr::dns::status::ok) {
    o += "\n";
    for (const auto& t : d.sts_txt) o += "    \"" + t + "\"\n";
  } else if (d.sts_txt_status == sr::dns::status::nodata || d.sts_txt_status == sr::dns::status::nxdomain) {
    o += " none\n";
  } else {
    o += std::string(" lookup failed (") + sr::dns::to_string(d.sts_txt_status) + ")\n";
  }
  o += "  MTA-STS: ";
  if (d.sts_txt_status != sr::dns::status::ok || s.record == sr::sts::txt_verdict::none) {
    o += "no policy published\n";
    return;
  }
  if (s.record == sr::sts::txt_verdict::invalid) {
    o += "record invalid (" + s.record_detail + "): no policy in force (RFC 8461 §3.1)\n";
    return;
  }
  o += "record valid, id " + s.id + "\n";
  o += "    policy " + s.url + ": ";
  if (!s.fetch_ok) {
    o += "fetch failed: " + s.fetch_detail + "\n";
    return;
  }
  if (!s.rules) {
    o += "invalid policy: " + s.policy_error + "\n";
    return;
  }
  o += "mode " + std::string(sts_mode_name(s.rules->mode)) + ", max_age " + std::to_string(s.max_age) + ", mx";
  for (const auto& m : s.rules->mx) o += " " + m;
  o += "\n";
  for (const auto& h : d.hosts)
    o += "    " + h.name + (h.sts_match ? ": matches" : ": matches no mx pattern") + "\n";
  if (!s.enabled) o += "    not applied: mta_sts.enabled = false\n";
  else if (s.rules->mode == sr::policy::sts_mode::enforce)
    o += "    applied: enforce raises every policy below to verify = ca (DANE hosts: dane) and skips MX hosts it does not name\n";
  else if (s.rules->mode == sr::policy::sts_mode::testing)
    o += "    applied: testing: the relay delivers and records what would have failed\n";
}


void json_sts(std::string& o, const domain_result& d) {
  const sts_result& s = d.sts;
  o += '{';
  jkey(o, "txt_status");
  jstr(o, sr::dns::to_string(d.sts_txt_status));
  jkey(o, "txt");
  o += '[';
  for (const auto& t : d.sts_txt) {
    if (o.back() != '[') o += ',';
    jstr(o, t);
  }
  o += ']';
  jkey(o, "record");
  jstr(o, d.sts_txt_status == sr::dns::status::ok ? sr::sts::to_string(s.record) : "none");
  jkey(o, "id");
  jstr_or_null(o, s.id);
  jkey(o, "record_error");
  jstr_or_null(o, s.record_detail);
  jkey(o, "url");
  jstr_or_null(o, s.url);
  jkey(o, "fetch");
  if (!s.fetched) {
    o += "null";
  } else {
    o += '{';
    jkey(o, "ok");
    jbool(o, s.fetch_ok);
    jkey(o, "status");
    o += std::to_string(s.http_status);
    jkey(o, "error");
    jstr_or_null(o, s.fetch_detail);
    o += '}';
  }
  jkey(o, "policy");
  if (!s.rules) {
    o += "null";
  } else {
    o += '{';
    jkey(o, "mode");
    jstr(o, sts_mode_name(s.rules->mode));
    jkey(o, "max_age");
    o += std::to_string(s.max_age);
    jkey(o, "mx");
    o += '[';
    for (const auto& m : s.rules->mx) {
      if (o.back() != '[') o += ',';
      jstr(o, m);
    }
    o += "]}";
  }
  jkey(o, "policy_error");
  jstr_or_null(o, s.policy_error);
  jkey(o, "enabled");
  jbool(o, s.enabled);
  o += '}';
}

}  // namespace

std::string render_text(const domain_result& d) {
  std::string o;
  o += d.domain + " (SMTP port " + std::to_string(d.port) + ")\n";
  if (!d.route.empty()) {
    o += "  route: [[route]] domain = \"" + d.route_pattern + "\" sends it to " + d.route;
    o += d.route_invalid ? ": not a usable next_hop ([ip]:port or host:port)\n"
                         : " (no MX lookup, no MTA-STS, no DANE)\n";
  }
  o += "  MX: ";
  switch (d.mx_status) {
    case sr::dns::status::ok:
      if (!d.route.empty()) o += "(not looked up) ";
      o += std::to_string(d.hosts.size()) + (d.hosts.size() == 1 ? " host" : " hosts");
      if (d.mx_implicit) o += " (no MX records: the domain itself)";
      if (d.mx_truncated) o += " (more not shown)";
      break;
    case sr::dns::status::null_mx: o += "null MX: the domain accepts no mail"; break;
    case sr::dns::status::nxdomain: o += "the domain does not exist"; break;
    default: o += std::string("lookup failed (") + sr::dns::to_string(d.mx_status) + ")";
  }
  o += ", ";
  o += ad_text(d.mx_ad);
  o += "\n";
  for (size_t h = 0; h < d.hosts.size(); ++h) {
    const host_result& hr = d.hosts[h];
    o += "  " + std::to_string(hr.preference) + " " + hr.name + ": ";
    if (hr.addr_status != sr::dns::status::ok) {
      o += std::string("no address (") + sr::dns::to_string(hr.addr_status) + ")\n";
    } else {
      for (size_t a = 0; a < hr.addresses.size(); ++a) o += (a ? ", " : "") + hr.addresses[a].ip;
      o += std::string(", ") + ad_text(hr.addr_ad) + "\n";
    }
    o += "    DANE TLSA " + hr.tlsa_name + ": ";
    if (!d.route.empty()) {
      o += "not used for a [[route]] next hop (not looked up)\n";
    } else if (hr.tlsa_status == sr::dns::status::ok) {
      o += std::to_string(hr.tlsa.size()) + " record(s) (" + std::to_string(hr.usable.size()) +
           " usable), " + ad_text(hr.tlsa_ad) + "\n";
      for (const auto& r : hr.tlsa) o += "      " + tlsa_text(r) + "\n";
      o += "      " + dane_status(d, hr) + "\n";
    } else if (hr.tlsa_status == sr::dns::status::nodata || hr.tlsa_status == sr::dns::status::nxdomain) {
      o += "none\n";
    } else {
      o += std::string("lookup failed (") + sr::dns::to_string(hr.tlsa_status) + ")\n";
    }
    for (size_t a = 0; a < hr.addresses.size(); ++a) text_address(o, d, h, a);
  }
  text_sts(o, d);
  o += "  configured policy: " + std::string(policy_name(d.configured.tls)) + " (";
  o += d.pattern.empty() ? std::string("default: outbound.default_policy")
                         : "[[policy]] domain = \"" + d.pattern + "\"";
  o += "), " + floors(d.configured) + "\n";
  o += "  verdicts:\n";
  for (size_t k = 0; k < policies.size(); ++k) {
    const policy_verdict& v = d.verdicts[k];
    char head[64];
    std::snprintf(head, sizeof head, "    %-14s", policy_name(policies[k]));
    o += head;
    if (v.reachable) {
      o += "reachable " + std::string(v.tls ? "over TLS" : "in plaintext") + " via " + v.via;
    } else {
      o += "NOT reachable: ";
      if (v.failures.empty()) o += sr::report::to_string(v.reason);
      for (size_t i = 0; i < v.failures.size(); ++i)
        o += (i ? "; " : "") + std::string(sr::report::to_string(v.failures[i].first)) + " at " +
             v.failures[i].second;
      o += " -> " + consequence(v.policy);
    }
    o += "  [" + floors(v.policy) + "]";
    if (policies[k] == d.configured.tls) o += "  <- configured";
    o += "\n";
  }
  o += std::string("  result: ") + (d.reachable ? "reachable" : "NOT reachable") +
       " under its configured policy (" + policy_name(d.configured.tls) + ")\n";
  return o;
}

std::string render_json(const domain_result& d) {
  std::string o = "{";
  jkey(o, "domain");
  jstr(o, d.domain);
  jkey(o, "port");
  o += std::to_string(d.port);
  jkey(o, "route");
  if (d.route.empty()) {
    o += "null";
  } else {
    o += '{';
    jkey(o, "pattern");
    jstr(o, d.route_pattern);
    jkey(o, "next_hop");
    jstr(o, d.route);
    jkey(o, "valid");
    jbool(o, !d.route_invalid);
    o += '}';
  }
  jkey(o, "mx");
  o += '{';
  jkey(o, "status");
  jstr(o, sr::dns::to_string(d.mx_status));
  jkey(o, "ad");
  jbool(o, d.mx_ad);
  jkey(o, "implicit");
  jbool(o, d.mx_implicit);
  jkey(o, "hosts");
  o += '[';
  for (size_t h = 0; h < d.hosts.size(); ++h) {
    const host_result& hr = d.hosts[h];
    if (o.back() != '[') o += ',';
    o += '{';
    jkey(o, "name");
    jstr(o, hr.name);
    jkey(o, "preference");
    o += std::to_string(hr.preference);
    jkey(o, "address_status");
    jstr(o, sr::dns::to_string(hr.addr_status));
    jkey(o, "address_ad");
    jbool(o, hr.addr_ad);
    jkey(o, "addresses");
    o += '[';
    for (size_t a = 0; a < hr.addresses.size(); ++a) {
      if (o.back() != '[') o += ',';
      json_address(o, d, h, a);
    }
    o += ']';
    jkey(o, "tlsa");
    o += '{';
    jkey(o, "name");
    jstr(o, hr.tlsa_name);
    jkey(o, "status");
    jstr(o, sr::dns::to_string(hr.tlsa_status));
    jkey(o, "ad");
    jbool(o, hr.tlsa_ad);
    jkey(o, "records");
    o += '[';
    for (const auto& r : hr.tlsa) {
      if (o.back() != '[') o += ',';
      jstr(o, tlsa_text(r));
    }
    o += ']';
    jkey(o, "usable");
    o += std::to_string(hr.usable.size());
    jkey(o, "secure");
    jbool(o, hr.dane_secure);
    jkey(o, "applies");
    jbool(o, hr.dane_applies);
    jkey(o, "sts_match");
    if (d.sts.rules) jbool(o, hr.sts_match);
    else o += "null";
    o += "}}";
  }
  o += "]}";
  jkey(o, "mta_sts");
  if (d.route.empty()) json_sts(o, d);
  else o += "null";  // not looked up for a next hop
  jkey(o, "dane_enabled");
  jbool(o, d.dane_enabled);
  jkey(o, "configured");
  o += '{';
  jkey(o, "policy");
  json_policy(o, d.configured);
  jkey(o, "source");
  jstr(o, d.pattern.empty() ? "default" : "config");
  jkey(o, "pattern");
  jstr_or_null(o, d.pattern);
  o += '}';
  jkey(o, "verdicts");
  o += '{';
  for (size_t k = 0; k < policies.size(); ++k) {
    const policy_verdict& v = d.verdicts[k];
    jkey(o, policy_name(policies[k]));
    o += '{';
    jkey(o, "reachable");
    jbool(o, v.reachable);
    jkey(o, "tls");
    jbool(o, v.reachable && v.tls);
    jkey(o, "via");
    jstr_or_null(o, v.via);
    jkey(o, "reason");
    jreason(o, v.reason);
    jkey(o, "where");
    jstr_or_null(o, v.where);
    jkey(o, "failures");
    o += '[';
    for (const auto& [r, at] : v.failures) {
      if (o.back() != '[') o += ',';
      o += '{';
      jkey(o, "reason");
      jreason(o, r);
      jkey(o, "where");
      jstr(o, at);
      o += '}';
    }
    o += ']';
    jkey(o, "on_failure");
    jstr(o, consequence(v.policy));
    jkey(o, "floors");
    json_policy(o, v.policy);
    o += '}';
  }
  o += '}';
  jkey(o, "reachable");
  jbool(o, d.reachable);
  o += '}';
  return o;
}

}  // namespace check
