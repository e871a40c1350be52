// One outbound connection to one host: a tls::stream carrying an outbound::session,
// with wolfSSL in between after STARTTLS. It asks the scheduler for jobs while idle
// (connection reuse) and parks briefly when there are none.
#pragma once
#include <sys/uio.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "delivery/agent.hh"
#include "tls/stream.hh"
#include "outbound/session.hh"
#include "outbound/tls_decider.hh"
#include "policy/decider.hh"
#include "policy/table.hh"

namespace sr::tls {
class session;
}

namespace sr::delivery {

// The address of one host to try.
struct target {
  std::string host;           // MX (or route) host name; the IP text for "[ip]:port" routes
  sockaddr_storage addr{};
  socklen_t addr_len = 0;
  std::string ip;
};

class link final : public tls::stream, outbound::events, outbound::tls_decider, queue::idle_waiter {
 public:
  // `failed_tls`: this is the plaintext retry after that failed handshake (null: try STARTTLS).
  link(agent& ag, attempt& at, queue::domain_state& d, int fd, const target& t,
       const link_info* failed_tls);
  ~link() override;
  // The TCP connection is up: start reading the greeting.
  void begin();
  // Check the phase timer against now; time the session out when it has passed.
  void check_deadline(uint64_t now_ms);
  // Did the session get as far as being ready for mail?
  bool reached_idle() const { return _reached_idle; }
  // What this link learnt for the audit: host, address, TLS details, reason.
  const link_info& info() const { return _info; }

 private:
  // tls::stream / net::stream
  void on_plain(net::chunk* c, size_t len) override;
  void on_tls_ready() override;
  void on_tls_failed() override;
  void on_end(int err) override;
  void on_closed() override;
  // outbound::events
  void send(std::string_view bytes) override;
  void send_body(std::span<const iovec> iov) override;
  void start_tls() override;
  void transaction_done(const outbound::txn_result& r) override;
  void idle() override;
  void closed(const outbound::close_info& info) override;
  // outbound::tls_decider (opportunistic, Postfix "may"; the policy engine replaces it)
  outbound::decision<outbound::ehlo_action> on_ehlo(bool starttls_offered) override;
  outbound::decision<outbound::refused_action> on_starttls_refused(const smtp::reply&) override;
  outbound::decision<outbound::tls_action> on_tls(const outbound::tls_outcome&) override;
  // queue::idle_waiter
  void wake() override;

  void next_job();
  void send_job();
  void phase_started();
  // Has the domain's policy changed (SIGHUP) since this link's attempt began?
  bool policy_changed() const;

  agent& _ag;
  attempt& _at;
  queue::domain_state& _d;
  target _t;
  bool _try_tls;
  policy::decider _pd;              // the domain's TLS policy, asked at each decision point
  outbound::session _session;
  bool _handshaking = false;        // STARTTLS sent, handshake not finished (EOF = TLS failure)
  link_info _info;
  std::optional<link_info> _failed_tls;  // the handshake this plaintext retry follows
  queue::job* _job = nullptr;       // the job of the current transaction
  std::vector<std::string_view> _rcpts;
  iovec _body{};
  bool _parked = false;
  bool _reached_idle = false;
  bool _loading = false;
  uint64_t _phase_since = 0;
  uint64_t _park_since = 0;
  outbound::phase _last_phase = outbound::phase::greeting;
 public:
  outbound::close_kind close_kind = outbound::close_kind::quit;
  report::reason close_reason = report::reason::none;  // why it ended
  std::string close_reply;          // the remote reply behind it, if any
};

// The host walk for one connection slot of a domain.
class attempt {
 public:
  attempt(agent& ag, queue::domain_state& d);
  ~attempt();
  void start();
  // The effective TLS policy of this domain (fixed for the attempt, even across SIGHUP).
  const policy::effective_policy& policy() const { return _policy; }
  // Has a SIGHUP changed the domain's policy since this attempt began?
  bool policy_changed() const;
  // A link ended; decide whether to try the next host.
  void on_link_closed(link& l);
  void check_deadline(uint64_t now_ms);

 private:
  void plan_route(const config::route_entry& r);
  void plan_mx();
  void resolve_next_host();
  void connect_next();
  void on_connected(int fd, int res);
  void give_up(report::reason reason, const std::string& reply, bool permanent,
               const std::string& status = {});
  bool _tried_plain_for(const target& t) const;
  void finish();

  struct connect_op final : core::completion {
    attempt* self = nullptr;
    int fd = -1;
    void on_complete(int res, unsigned) override { self->on_connected(fd, res); }
  };

  agent& _ag;
  queue::domain_state& _d;
  std::vector<std::string> _hosts;   // in order (MX preference, or the route's host)
  uint16_t _port = 25;
  size_t _next_host = 0;
  std::vector<target> _targets;      // resolved addresses of hosts so far
  size_t _next_target = 0;
  bool _no_tls_retry_pending = false;  // opportunistic: handshake failed, retry plain once
  std::string _plain_retry_host;       // "host|ip" already retried without STARTTLS
  link_info _failed_tls;               // that host's failed handshake (for the audit)
  connect_op _connect;
  bool _connecting = false;
  uint64_t _connect_since = 0;
  report::reason _last_reason = report::reason::connect_failed;
  std::string _last_reply;
  std::string _last_mx;
  std::string _last_ip;
  bool _done = false;
  policy::effective_policy _policy;
  bool _enforce = false;            // forced or exclusive: never plaintext
  unsigned _tls_failed = 0;         // hosts that answered and failed for a TLS reason
  unsigned _other_failed = 0;       // hosts that answered and failed otherwise
  report::reason _tls_reason = report::reason::none;  // the last TLS reason
  link_info _tls_info;              // the link of that failure (TLS details for the audit)
  void give_up_tls();
  void restart_under_new_policy();
};

}  // namespace sr::delivery
