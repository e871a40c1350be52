// The host walk of one delivery attempt as an I/O-free state machine (like
// outbound::session): DNS answers, connect results and link ends go in; "resolve this",
// "connect there", "give up" and "fall back" come out through walk_events. It walks a
// [[route]] next hop or the MX hosts in preference order and each host's addresses until
// a link reaches idle (it then carries the jobs). Opportunistic: a failed handshake is
// retried once in plaintext on a new connection to the same address (Postfix "may").
// Forced/exclusive, and hosts whose floor the recipient raised (MTA-STS enforce, DANE):
// never plaintext; when every host that answered failed for a TLS reason, the walk ends
// in fall_back() (fallback, drop, or a temporary failure: the caller's policy decides).
// The recipient's own policy, per host: DANE (RFC 7672) when the MX and address answers
// were DNSSEC-secure and the host has usable TLSA records (it wins over MTA-STS); else
// MTA-STS (RFC 8461): under enforce an MX that matches no `mx` pattern is never used,
// under testing it is used and what enforce would have refused is recorded.
// REQUIRETLS (RFC 8689, policy.requiretls): an MX is used only when DANE or the domain's
// MTA-STS policy (enforce, or testing read as enforce) vouches for it, or it is the
// configured [[route]]; the others are ruled out (requiretls-unverified), so a domain
// without either ends in fall_back(), which the attempt turns into a bounce.
#pragma once
#include <sys/socket.h>

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "sealrelay/config/config.hh"
#include "sealrelay/delivery/report.hh"
#include "sealrelay/outbound/session.hh"
#include "sealrelay/policy/resolver.hh"
#include "sealrelay/policy/table.hh"

namespace sr::delivery {

// How the TLS session of a link verifies the host (DESIGN.md §1 `verify`): the reference
// names the certificate must carry (chained to tls.ca_file), or the usable TLSA records
// it must match (DANE, RFC 7672). The verdict is always computed and recorded; the
// target's policy decides whether it is enforced.
struct tls_verify {
  config::verify_mode mode = config::verify_mode::none;
  std::vector<std::string> names;              // the MX (or route) host name
  std::vector<std::vector<uint8_t>> tlsa;      // usable TLSA rdata (usage, selector, mtype, data)
};

// The address of one host to try, the policy its link runs under, and how its TLS
// session verifies it.
struct target {
  std::string host;           // MX (or route) host name; the IP text for "[ip]:port" routes
  sockaddr_storage addr{};
  socklen_t addr_len = 0;
  std::string ip;
  tls_verify verify;
  // The domain's policy, raised for this host by DANE (verify = dane, source = dane).
  policy::effective_policy policy;
  // MTA-STS testing: what enforce would have refused this host for (mx-not-in-sts-policy).
  report::reason sts_testing = report::reason::none;
  // What the recipient publishes for this host (TLS-RPT policy-type).
  published_policy published = published_policy::none;
};

// A DNS answer as the walk needs it (dns/ stays out of this file).
enum class lookup : uint8_t { ok, null_mx, nxdomain, temp_fail };

// What the walk needs of the recipient's own policy.
struct walk_options {
  bool dane = false;                                 // [dane] enabled: look up TLSA
  std::shared_ptr<const policy::mta_sts_rules> sts;  // the domain's MTA-STS rules, if any
};

// How a link ended.
struct link_end {
  bool reached_idle = false;   // ready for mail: the link carries the jobs from here
  outbound::close_kind kind = outbound::close_kind::quit;
  report::reason reason = report::reason::none;
  std::string reply;           // the remote reply behind it, if any
  session_report report;       // what the link negotiated before it ended
};

// What the walk asks of the engine. Calls never re-enter the walk synchronously from
// inside these callbacks except where noted; the walk is done after give_up, fall_back
// and done (exactly one of them, once).
class walk_events {
 public:
  virtual ~walk_events() = default;
  // Look up the MX hosts of `domain`; answer with walk::on_mx().
  virtual void resolve_mx(const std::string& domain) = 0;
  // Look up the addresses of `host`; answer with walk::on_addrs().
  virtual void resolve_host(const std::string& host) = 0;
  // Look up the TLSA records of `_<port>._tcp.<host>`; answer with walk::on_tlsa().
  virtual void resolve_tlsa(const std::string& host, uint16_t port) = 0;
  // Open a link to `t`; `plain_retry` is the failed handshake this plaintext retry follows
  // (null: try STARTTLS). Answer with on_connect_failed() or, later, on_link_closed().
  virtual void connect(const target& t, const session_report* plain_retry) = 0;
  // The recipient's policy ruled a host out before any connection (mx-not-in-sts-policy,
  // dane-required, tlsa-lookup-failed): `r` says which and why (TLS-RPT counts it).
  virtual void host_ruled_out(const session_report& r) = 0;
  // Every host failed (or DNS said no): the ready jobs share `why`'s fate.
  virtual void give_up(report::reason why, const std::string& reply, bool permanent,
                       const std::string& status, const session_report& last) = 0;
  // Every host that answered failed for a TLS reason under forced/exclusive; `last` is the
  // session the policy refused (TLS details for the audit).
  virtual void fall_back(const session_report& last) = 0;
  // A link reached idle and carries the jobs; the walk is over.
  virtual void done() = 0;
};

class walk {
 public:
  // Walk for `domain` under `p`, connecting to `port` unless a route names another.
  walk(std::string domain, const policy::effective_policy& p, uint16_t port, walk_events& ev,
       walk_options opt = {});
  // Begin: the route's next hop when given, else an MX lookup.
  void start(const config::route_entry* route);
  // The MX answer: hosts in preference order when ok; `secure`: it had the AD bit.
  void on_mx(lookup status, std::span<const std::string> hosts, bool secure = false);
  // The address answer for `host` (ports are set here); `why` describes a failure;
  // `secure`: it had the AD bit.
  void on_addrs(const std::string& host, lookup status, std::span<const sockaddr_storage> addrs,
                std::string_view why = {}, bool secure = false);
  // The TLSA answer for `host`: ok with its usable records (none usable: nodata), nodata /
  // nxdomain (no TLSA), or temp_fail (SERVFAIL, bogus, timeout: never "no TLSA").
  void on_tlsa(const std::string& host, lookup status, std::vector<std::vector<uint8_t>> usable);
  // The TCP connect to the last target failed with `why` (e.g. strerror text).
  void on_connect_failed(std::string_view why);
  // The link to the last target ended.
  void on_link_closed(const link_end& e);

  const policy::effective_policy& policy() const { return _policy; }
  bool finished() const { return _finished; }

 private:
  void resolve_next_host();
  void connect_next();
  void end_give_up(report::reason why, const std::string& reply, bool permanent,
                   const std::string& status = {});
  void add_target(target t);
  // Add the pending addresses of `host` as targets under the recipient's policy for it.
  void add_host_targets(const std::string& host, const std::vector<std::vector<uint8_t>>* tlsa);
  // Count `host` as failed for `why` without connecting (TLS failure or not), then go on.
  void skip_host(const std::string& host, report::reason why, const std::string& reply);
  // Go on with `host` without DANE (`why`): dane-required under verify = dane, else the
  // MTA-STS check, else its addresses become targets.
  void without_dane(const std::string& host, const char* why);
  // MTA-STS enforce: skip `host` (mx-not-in-sts-policy) when no `mx` pattern names it.
  bool sts_refuses(const std::string& host);
  // REQUIRETLS without DANE: skip `host` (requiretls-unverified) unless MTA-STS names it.
  bool requiretls_refuses(const std::string& host);
  bool tried_plain_for(const target& t) const { return _plain_retry_host == t.host + "|" + t.ip; }
  static bool enforcing(const policy::effective_policy& p) {
    return p.tls != config::tls_policy::opportunistic || p.raised;
  }

  std::string _domain;
  policy::effective_policy _policy;
  walk_events& _ev;
  uint16_t _port;
  walk_options _opt;
  bool _mx_secure = false;             // the MX answer had the AD bit (DANE may apply)
  bool _routed = false;                // a [[route]] names the next hop (no MX lookup)
  bool _finished = false;
  std::vector<sockaddr_storage> _pending_addrs;  // the current host's addresses, awaiting TLSA
  std::vector<std::string> _hosts;     // in order (MX preference, or the route's host)
  size_t _next_host = 0;
  std::vector<target> _targets;        // resolved addresses of hosts so far
  size_t _next_target = 0;
  bool _no_tls_retry_pending = false;  // opportunistic: handshake failed, retry plain once
  std::string _plain_retry_host;       // "host|ip" already retried without STARTTLS
  session_report _failed_tls;          // that host's failed handshake (for the audit)
  report::reason _last_reason = report::reason::connect_failed;
  std::string _last_reply, _last_mx, _last_ip;
  unsigned _tls_failed = 0;            // hosts that answered and failed for a TLS reason
  unsigned _other_failed = 0;          // hosts that answered and failed otherwise
  session_report _tls_info;            // the last TLS failure's session (for the audit)
};

}  // namespace sr::delivery
