// The host walk (walk.hh): the order is the route's host or the MX hosts by preference,
// each host's addresses in DNS order; an opportunistic plaintext retry reuses the address
// it follows. Every decision is here; the attempt only does the I/O it is asked for.
#include "walk.hh"

#include <netinet/in.h>

#include "sealrelay/util/cidr.hh"

namespace sr::delivery {

walk::walk(std::string domain, const policy::effective_policy& p, uint16_t port, walk_events& ev)
    : _domain(std::move(domain)),
      _policy(p),
      _ev(ev),
      _port(port),
      _enforce(p.tls != config::tls_policy::opportunistic) {}

void walk::start(const config::route_entry* route) {
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

void walk::on_mx(lookup status, std::span<const std::string> hosts) {
  switch (status) {
    case lookup::ok:
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
  if (_next_host >= _hosts.size()) {
    if (_enforce && _tls_failed > 0 && _other_failed == 0) {
      _finished = true;
      session_report li = _tls_info;
      li.policy = _policy.tls;
      li.source = _policy.source;
      _ev.fall_back(li);
    } else {
      end_give_up(_last_reason, _last_reply, false);
    }
    return;
  }
  _ev.resolve_host(_hosts[_next_host++]);
}

void walk::on_addrs(const std::string& host, lookup status, std::span<const sockaddr_storage> addrs,
                    std::string_view why) {
  if (status == lookup::ok) {
    for (const auto& a : addrs) {
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
      add_target(std::move(t));
    }
  } else {
    _last_reason = report::reason::mx_address_lookup_failed;
    _last_reply = "no address for " + host + (why.empty() ? "" : " (" + std::string(why) + ")");
  }
  connect_next();
}

void walk::add_target(target t) {
  t.verify.mode = _policy.verify;
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
  if (_enforce) {
    // Forced/exclusive: a TLS failure moves on to the next MX, never to plaintext.
    if (tls_end && report::is_tls_failure(_last_reason)) {
      ++_tls_failed;
      _tls_info = e.report;  // what was negotiated before the policy said no, if anything
      _tls_info.mx = t.host;
      _tls_info.ip = t.ip;
      _tls_info.reason = _last_reason;
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
  }
  connect_next();
}

void walk::end_give_up(report::reason why, const std::string& reply, bool permanent,
                       const std::string& status) {
  _finished = true;
  session_report li;
  li.reason = why;
  li.policy = _policy.tls;
  li.source = _policy.source;
  li.mx = _last_mx;  // the last host tried, if any (null MX, NXDOMAIN: none)
  li.ip = _last_ip;
  _ev.give_up(why, reply, permanent,
              !status.empty() ? status : permanent ? "5.4.4" : "4.4.1", li);
}

}  // namespace sr::delivery
