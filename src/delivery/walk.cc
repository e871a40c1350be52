// The host walk (walk.hh): the order is the route's host or the MX hosts by preference,
// each host's addresses in DNS order; an opportunistic plaintext retry reuses the address
// it follows. Every decision is here; the attempt only does the I/O it is asked for.
#include "walk.hh"

#include <netinet/in.h>

#include "sealrelay/util/cidr.hh"

namespace sr::delivery {

walk::walk(std::string domain, const policy::effective_policy& p, uint16_t port, walk_events& ev,
           walk_options opt)
    : _domain(std::move(domain)), _policy(p), _ev(ev), _port(port), _opt(std::move(opt)) {}

void walk::start(const config::route_entry* route) {
  _routed = route != nullptr;
  if (!route) {
    _ev.resolve_mx(_domain);
    return;
  }
  const std::string& hop = route->next_hop;
  if (!hop.empty() && hop[0] == '[') {
    // "[ip]:port": no DNS at all.
    auto close = hop.find(']');
    std::string ip = hop.substr(1, close == std::string::npos ? std::string::npos : close - 1);
    std::string rest = close == std::string::npos ? std::string() : hop.substr(close + 1);
    std::string ep = (ip.find(':') != std::string::npos ? "[" + ip + "]" : ip) + rest;
    socklen_t len = 0;
    auto ss = parse_endpoint(ep, &len);
    if (!ss) {
      end_give_up(report::reason::route_invalid, "bad next_hop " + hop, false);
      return;
    }
    target t;
    t.host = ip;
    t.ip = ip;
    t.addr = *ss;
    t.addr_len = len;
    add_target(std::move(t));
    connect_next();
    return;
  }
  auto colon = hop.rfind(':');
  unsigned port = 0;
  for (size_t i = colon == std::string::npos ? hop.size() : colon + 1; i < hop.size(); ++i)
    port = port * 10 + unsigned(hop[i] - '0');
  if (colon == std::string::npos || port == 0 || port > 65535) {
    end_give_up(report::reason::route_invalid, "bad next_hop " + hop, false);
    return;
  }
  _hosts.push_back(hop.substr(0, colon));
  _port = uint16_t(port);
  resolve_next_host();
}

void walk::on_mx(lookup status, std::span<const std::string> hosts, bool secure) {
  switch (status) {
    case lookup::ok:
      _mx_secure = secure;
      _hosts.assign(hosts.begin(), hosts.end());
      resolve_next_host();
      return;
    case lookup::null_mx:
      end_give_up(report::reason::null_mx,
                  "domain " + _domain + " accepts no mail (null MX, RFC 7505)", true, "5.1.10");
      return;
    case lookup::nxdomain:
      end_give_up(report::reason::nxdomain, "domain " + _domain + " does not exist", true, "5.1.2");
      return;
    case lookup::temp_fail:
      end_give_up(report::reason::dns_temp_fail,
                  "temporary DNS failure looking up MX for " + _domain, false);
      return;
  }
}

void walk::resolve_next_host() {
  while (_next_host < _hosts.size()) {
    const std::string& host = _hosts[_next_host++];
    // MTA-STS enforce (RFC 8461 §4.1): an MX the policy does not name is never used. DANE
    // wins over MTA-STS, so a host that may still turn out DANE-secured is decided after
    // its TLSA lookup (add_host_targets).
    bool dane_possible = _opt.dane && _mx_secure;
    if (!dane_possible && (sts_refuses(host) || requiretls_refuses(host))) continue;
    if (!dane_possible && _policy.verify == config::verify_mode::dane) {
      skip_host(host, report::reason::dane_required,
                host + ": verify = dane, but the MX answer of " + _domain + " is not DNSSEC-signed");
      continue;
    }
    _ev.resolve_host(host);
    return;
  }
  if (_tls_failed > 0 && _other_failed == 0) {
    // Every host that answered (or was ruled out by the recipient's policy) failed for a
    // TLS reason under a policy that forbids plaintext.
    _finished = true;
    session_report li = _tls_info;
    _ev.fall_back(li);
  } else {
    end_give_up(_last_reason, _last_reply, false);
  }
}

void walk::skip_host(const std::string& host, report::reason why, const std::string& reply) {
  _last_reason = why;
  _last_reply = reply;
  _last_mx = host;
  _last_ip.clear();
  session_report r;
  r.mx = host;
  r.reason = why;
  r.policy = _policy.tls;
  r.source = _policy.source;
  if (why == report::reason::mx_not_in_sts_policy) {
    r.published = published_policy::sts;
  } else if (why == report::reason::tlsa_lookup_failed || why == report::reason::dane_required) {
    // DANE decided for this host: the audit says so (policy_source = "dane").
    r.published = published_policy::tlsa;
    if (!_policy.requiretls) r.source = report::policy_source::dane;
  }
  if (report::is_tls_failure(why)) {
    ++_tls_failed;
    _tls_info = r;
  } else {
    ++_other_failed;
  }
  _ev.host_ruled_out(r);
}

void walk::on_addrs(const std::string& host, lookup status, std::span<const sockaddr_storage> addrs,
                    std::string_view why, bool secure) {
  if (status != lookup::ok) {
    _last_reason = report::reason::mx_address_lookup_failed;
    _last_reply = "no address for " + host + (why.empty() ? "" : " (" + std::string(why) + ")");
    connect_next();
    return;
  }
  _pending_addrs.assign(addrs.begin(), addrs.end());
  if (_opt.dane && _mx_secure && secure) {
    // RFC 7672 §2.2: TLSA records count only when the MX and address answers were
    // secure too; the TLSA answer decides how this host is verified.
    _ev.resolve_tlsa(host, _port);
    return;
  }
  without_dane(host, "its address answer is not DNSSEC-signed");
}

void walk::without_dane(const std::string& host, const char* why) {
  if (_policy.verify == config::verify_mode::dane) {
    skip_host(host, report::reason::dane_required, host + ": verify = dane, but " + why);
    connect_next();
    return;
  }
  // MTA-STS rules this host (resolve_next_host left it to us while DANE was possible).
  if (sts_refuses(host) || requiretls_refuses(host)) {
    connect_next();
    return;
  }
  add_host_targets(host, nullptr);
}

bool walk::sts_refuses(const std::string& host) {
  if (!_opt.sts || _opt.sts->matches(host)) return false;
  // REQUIRETLS reads a testing policy as enforce: it is the only vouching there is.
  bool enforce = _opt.sts->mode == policy::sts_mode::enforce ||
                 (_policy.requiretls && _opt.sts->mode == policy::sts_mode::testing);
  if (!enforce) return false;
  skip_host(host, report::reason::mx_not_in_sts_policy, host + " is not an mx of " + _domain + "'s MTA-STS policy");
  return true;
}

bool walk::requiretls_refuses(const std::string& host) {
  if (!_policy.requiretls || _routed) return false;
  if (_opt.sts && _opt.sts->mode != policy::sts_mode::none && _opt.sts->matches(host)) return false;
  skip_host(host, report::reason::requiretls_unverified,
            host + ": REQUIRETLS needs an MX verified by MTA-STS or DANE, and " + _domain +
                " publishes neither for it");
  return true;
}

void walk::on_tlsa(const std::string& host, lookup status, std::vector<std::vector<uint8_t>> usable) {
  if (status == lookup::temp_fail) {
    // SERVFAIL or bogus: never read as "no TLSA" (a downgrade an attacker could force);
    // this host is deferred like an unreachable one.
    skip_host(host, report::reason::tlsa_lookup_failed,
              "TLSA lookup for _" + std::to_string(_port) + "._tcp." + host +
                  " failed (SERVFAIL or bogus DNSSEC): deferred");
    connect_next();
    return;
  }
  if (status == lookup::ok && !usable.empty()) {
    add_host_targets(host, &usable);
    return;
  }
  without_dane(host, "it has no usable TLSA records");
}

void walk::add_host_targets(const std::string& host, const std::vector<std::vector<uint8_t>>* tlsa) {
  for (const auto& a : _pending_addrs) {
    target t;
    t.host = host;
    t.addr = a;
    auto port = htons(_port);
    if (a.ss_family == AF_INET) {
      reinterpret_cast<sockaddr_in*>(&t.addr)->sin_port = port;
      t.addr_len = sizeof(sockaddr_in);
    } else {
      reinterpret_cast<sockaddr_in6*>(&t.addr)->sin6_port = port;
      t.addr_len = sizeof(sockaddr_in6);
    }
    t.ip = address_to_string(reinterpret_cast<const sockaddr*>(&t.addr));
    if (tlsa) {
      // DANE (RFC 7672 §2.2): authenticated TLS is mandatory for this host, whatever the
      // configured policy; it wins over MTA-STS.
      t.verify.tlsa = *tlsa;
      t.policy = _policy;
      t.policy.verify = config::verify_mode::dane;
      t.policy.raised = true;
      // REQUIRETLS mail is audited as such, whatever verified the host.
      if (!t.policy.requiretls) t.policy.source = report::policy_source::dane;
      t.published = published_policy::tlsa;
    }
    add_target(std::move(t));
  }
  _pending_addrs.clear();
  connect_next();
}

void walk::add_target(target t) {
  if (t.verify.tlsa.empty()) {
    t.policy = _policy;
    if (_opt.sts && _opt.sts->mode != policy::sts_mode::none) {
      t.published = published_policy::sts;
      if (_opt.sts->mode == policy::sts_mode::testing && !_opt.sts->matches(t.host))
        t.sts_testing = report::reason::mx_not_in_sts_policy;
    }
  }
  t.verify.mode = t.policy.verify;
  t.verify.names = {t.host};
  _targets.push_back(std::move(t));
}

void walk::connect_next() {
  if (_no_tls_retry_pending) {
    _no_tls_retry_pending = false;
    --_next_target;  // the same address again, this time without STARTTLS
  } else if (_next_target >= _targets.size()) {
    resolve_next_host();
    return;
  }
  const target& t = _targets[_next_target++];
  _ev.connect(t, tried_plain_for(t) ? &_failed_tls : nullptr);
}

void walk::on_connect_failed(std::string_view why) {
  const target& t = _targets[_next_target - 1];
  _last_reason = report::reason::connect_failed;
  _last_reply = "connect to " + t.host + "[" + t.ip + "]:" + std::to_string(_port) + ": " + std::string(why);
  _last_mx = t.host;
  _last_ip = t.ip;
  connect_next();
}

void walk::on_link_closed(const link_end& e) {
  if (e.reached_idle) {
    _finished = true;
    _ev.done();
    return;
  }
  _last_reason = e.reason == report::reason::none ? report::reason::connection_lost : e.reason;
  _last_reply = e.reply;
  const target& t = _targets[_next_target - 1];
  _last_mx = t.host;
  _last_ip = t.ip;
  bool tls_end = e.kind == outbound::close_kind::tls_failed || e.kind == outbound::close_kind::tls_policy;
  if (enforcing(t.policy)) {
    // Forced/exclusive, MTA-STS enforce, DANE: a TLS failure moves on to the next MX,
    // never to plaintext.
    if (tls_end && report::is_tls_failure(_last_reason)) {
      ++_tls_failed;
      _tls_info = e.report;  // what was negotiated before the policy said no, if anything
      _tls_info.mx = t.host;
      _tls_info.ip = t.ip;
      _tls_info.reason = _last_reason;
      _tls_info.policy = t.policy.tls;
      _tls_info.source = t.policy.source;
      _tls_info.published = t.published;
    } else {
      ++_other_failed;
    }
  } else if (e.kind == outbound::close_kind::tls_failed && !tried_plain_for(t)) {
    // Opportunistic: one plaintext retry on a new connection to the same address.
    _plain_retry_host = t.host + "|" + t.ip;
    _no_tls_retry_pending = true;
    _failed_tls = session_report{};
    _failed_tls.mx = t.host;
    _failed_tls.ip = t.ip;
    _failed_tls.reason = e.reason == report::reason::none ? report::reason::handshake_failed : e.reason;
    _failed_tls.policy = _policy.tls;
    _failed_tls.source = _policy.source;
    _failed_tls.published = t.published;
  } else {
    ++_other_failed;
  }
  connect_next();
}

void walk::end_give_up(report::reason why, const std::string& reply, bool permanent,
                       const std::string& status) {
  _finished = true;
  session_report li;
  li.reason = why;
  li.policy = _policy.tls;
  li.source = why == report::reason::tlsa_lookup_failed && !_policy.requiretls ? report::policy_source::dane
                                                                                : _policy.source;
  li.mx = _last_mx;  // the last host tried, if any (null MX, NXDOMAIN: none)
  li.ip = _last_ip;
  _ev.give_up(why, reply, permanent,
              !status.empty() ? status : permanent ? "5.4.4" : "4.4.1", li);
}

}  // namespace sr::delivery
