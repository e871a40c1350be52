// The verdicts of sealrelay-check, decided by the relay's own policy::decider replaying
// what each conversation saw (EHLO, STARTTLS reply, handshake, negotiated session), so
// the checker and the daemon cannot disagree on a floor. Pure: no I/O.
#include <string>

#include "check.hh"
#include "sealrelay/outbound/tls_decider.hh"
#include "sealrelay/policy/decider.hh"
#include "sealrelay/smtp/reply.hh"
#include "sealrelay/sts/resolver.hh"

namespace check {

namespace {

using sr::report::reason;

// The certificate reason the delivery link would record (delivery/link.cc does the same).
reason cert_reason(sr::tls::cert_verdict v) {
  switch (v) {
    case sr::tls::cert_verdict::name_mismatch: return reason::cert_name_mismatch;
    case sr::tls::cert_verdict::expired: return reason::cert_expired;
    case sr::tls::cert_verdict::untrusted: return reason::cert_untrusted;
    case sr::tls::cert_verdict::tlsa_mismatch: return reason::tlsa_mismatch;
    case sr::tls::cert_verdict::none:
    case sr::tls::cert_verdict::verified: return reason::none;
    case sr::tls::cert_verdict::invalid: break;
  }
  return reason::cert_invalid;
}

// Why a conversation ended before a step answered: a timeout, or the connection went.
reason stopped(const probe_result& p) {
  return p.error.rfind("timeout", 0) == 0 ? reason::timeout : reason::connection_lost;
}

// A refusal code (0: the reply never came).
reason refused(unsigned code, const probe_result& p) {
  if (code == 0) return stopped(p);
  if (code >= 400 && code < 500) return reason::remote_4xx;
  if (code >= 500 && code < 600) return reason::remote_5xx;
  return reason::protocol_error;
}

// `cert` is the verdict that counts for this host: the CA file's, or DANE's.
address_verdict judge_address(probe_result& p, const sr::policy::effective_policy& pol,
                              sr::tls::cert_verdict cert) {
  if (!p.connected) return {false, false, p.error.rfind("timeout", 0) == 0 ? reason::timeout : reason::connect_failed};
  if (p.greeting_code != 220) return {false, false, refused(p.greeting_code, p)};
  if (p.ehlo_code != 250) return {false, false, refused(p.ehlo_code, p)};
  sr::policy::decider d(pol);
  auto e = d.on_ehlo(p.starttls_offered);
  if (e.action == sr::outbound::ehlo_action::abort) return {false, false, e.reason};
  if (e.action == sr::outbound::ehlo_action::proceed_plain)
    return {true, false, reason::starttls_not_offered};
  if (p.starttls_code == 0) return {false, false, stopped(p)};
  if (p.starttls_code == 421) return {false, false, reason::remote_4xx};  // closes regardless
  if (p.starttls_code != 220) {
    sr::smtp::reply_parser parser;
    size_t used = 0;
    std::string text = p.starttls_reply + "\r\n";
    parser.feed(text, used);
    auto r = d.on_starttls_refused(parser.get());
    if (r.action == sr::outbound::refused_action::abort) return {false, false, r.reason};
    return {true, false, reason::starttls_refused};
  }
  if (!p.tls_ok) {
    d.on_handshake_failed();
    reason why = sr::report::reason_from_token(p.tls_failure).value_or(reason::handshake_failed);
    if (!sr::report::is_tls_failure(why)) why = reason::handshake_failed;
    // Opportunistic retries in plaintext on a new connection (Postfix `may`), unless the
    // recipient raised it (MTA-STS enforce, DANE): then plaintext is never tried.
    return {pol.tls == sr::config::tls_policy::opportunistic && !pol.raised, false, why};
  }
  sr::outbound::tls_outcome o;
  o.version = p.version;
  o.cipher = p.cipher;
  o.cipher_bits = unsigned(p.library_bits > 0 ? p.library_bits : 0);
  reason cr = cert_reason(cert);
  o.cert = cr == reason::none ? sr::outbound::cert_verdict::verified : sr::outbound::cert_verdict::invalid;
  o.cert_reason = cr;
  auto t = d.on_tls(o);
  p.rated_bits = d.effective_bits();
  if (t.action != sr::outbound::tls_action::proceed) return {false, true, t.reason};
  if (p.ehlo_tls_code != 250) return {false, true, refused(p.ehlo_tls_code, p)};
  // Delivered; note what a stricter policy would have refused (floors first, then the cert).
  reason note = d.would_fail_forced();
  if (note == reason::none) note = cr;
  return {true, true, note};
}

// The domain-level reason when no address could even be tried.
reason domain_reason(const domain_result& d) {
  if (d.route_invalid) return reason::route_invalid;
  switch (d.mx_status) {
    case sr::dns::status::ok: break;
    case sr::dns::status::nxdomain: return reason::nxdomain;
    case sr::dns::status::null_mx: return reason::null_mx;
    default: return reason::dns_temp_fail;
  }
  for (const auto& h : d.hosts)
    if (!h.addresses.empty()) return reason::none;
  return reason::mx_address_lookup_failed;
}

// Where the walk stands on one host under one policy: skipped for a reason, or probed
// under `policy` with the DANE verdict when `dane` (src/delivery/walk.cc, same order).
struct host_plan {
  reason skip = reason::none;
  sr::policy::effective_policy policy;
  bool dane = false;
};

host_plan plan_host(const domain_result& d, const host_result& h, const sr::policy::effective_policy& p) {
  host_plan out{reason::none, p, false};
  const auto* rules = d.sts.enabled ? d.sts.rules.get() : nullptr;
  bool sts_enforce = rules && rules->mode == sr::policy::sts_mode::enforce;
  bool dane_possible = d.dane_enabled && d.mx_ad;
  if (dane_possible && h.addr_ad) {
    // RFC 7672 §2.2: the TLSA answer decides; SERVFAIL or bogus defers, never "no TLSA".
    if (h.tlsa_status != sr::dns::status::ok && h.tlsa_status != sr::dns::status::nodata &&
        h.tlsa_status != sr::dns::status::nxdomain) {
      out.skip = reason::tlsa_lookup_failed;
      return out;
    }
    if (h.dane_applies) {
      out.policy.verify = sr::config::verify_mode::dane;
      out.policy.raised = true;
      out.policy.source = sr::report::policy_source::dane;
      out.dane = true;
      return out;  // DANE wins over MTA-STS
    }
  }
  if (p.verify == sr::config::verify_mode::dane) {
    out.skip = reason::dane_required;
    return out;
  }
  if (sts_enforce && !h.sts_match) out.skip = reason::mx_not_in_sts_policy;
  return out;
}

}  // namespace

void judge(domain_result& d) {
  const auto* rules = d.sts.enabled ? d.sts.rules.get() : nullptr;
  for (auto& h : d.hosts) {
    h.usable.clear();
    for (const auto& rd : h.tlsa)
      if (auto rec = sr::tls::tlsa_record::from_rdata(rd); rec && rec->usable()) h.usable.push_back(*rec);
    h.dane_secure = d.mx_ad && h.addr_ad && h.tlsa_status == sr::dns::status::ok && h.tlsa_ad;
    h.dane_applies = d.dane_enabled && h.dane_secure && !h.usable.empty();
    h.sts_match = d.sts.rules && d.sts.rules->matches(h.name);
    for (auto& p : h.addresses) {
      p.dane = sr::tls::dane_match{};
      if (!p.tls_ok || h.usable.empty() || p.chain.empty()) continue;
      std::vector<std::span<const uint8_t>> chain;
      for (const auto& c : p.chain) chain.emplace_back(c.der);
      p.dane = sr::tls::match_tlsa(chain, h.usable, h.name);
    }
  }
  reason dr = domain_reason(d);
  for (size_t k = 0; k < policies.size(); ++k) {
    policy_verdict& v = d.verdicts[k];
    v = policy_verdict{};
    v.policy = d.configured;
    v.policy.tls = policies[k];
    // The configured floors apply to every row; verify belongs to forced/exclusive only,
    // and to the configured one's (an opportunistic domain is judged forced with none).
    if (policies[k] == sr::config::tls_policy::opportunistic ||
        d.configured.tls == sr::config::tls_policy::opportunistic)
      v.policy.verify = sr::config::verify_mode::none;
    if (policies[k] == d.configured.tls) v.policy = d.configured;
    // MTA-STS enforce raises every row as it raises the relay's resolution.
    if (rules) v.policy = sr::sts::resolver::combine(v.policy, d.sts.rules).policy;
    if (dr != reason::none) {
      v.reason = dr;
      continue;
    }
    for (auto& h : d.hosts) {
      v.per_host.emplace_back();
      host_plan plan = plan_host(d, h, v.policy);
      for (auto& p : h.addresses) {
        address_verdict a;
        if (plan.skip != reason::none) {
          a = {false, false, plan.skip};
        } else {
          a = judge_address(p, plan.policy, plan.dane ? p.dane.verdict : p.verdict);
        }
        v.per_host.back().push_back(a);
        std::string at = h.name + "[" + p.ip + "]";
        if (a.ok && !v.reachable) {
          v.reachable = true;
          v.tls = a.tls;
          v.via = at;
        }
        if (!a.ok) {
          v.failures.emplace_back(a.reason, at);
          if (v.reason == reason::none) {
            v.reason = a.reason;
            v.where = at;
          }
        }
      }
    }
    if (v.reachable) {
      v.reason = reason::none;
      v.where.clear();
    }
  }
  for (size_t k = 0; k < policies.size(); ++k)
    if (policies[k] == d.configured.tls) d.reachable = d.verdicts[k].reachable;
}

}  // namespace check
