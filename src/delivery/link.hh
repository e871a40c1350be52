// One outbound connection to one host: a tls::stream carrying an outbound::session,
// with wolfSSL in between after STARTTLS. It asks the scheduler for jobs while idle
// (connection reuse) and parks briefly when there are none.
#pragma once
#include <sys/uio.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "sealrelay/delivery/agent.hh"
#include "sealrelay/tls/stream.hh"
#include "sealrelay/outbound/body.hh"
#include "sealrelay/outbound/session.hh"
#include "sealrelay/outbound/tls_decider.hh"
#include "sealrelay/policy/decider.hh"
#include "sealrelay/policy/resolver.hh"
#include "sealrelay/policy/table.hh"
#include "walk.hh"

namespace sr::tls {
class session;
}

namespace sr::delivery {

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
  // Is this the opportunistic plaintext retry after a failed handshake?
  bool plain_retry() const { return !_try_tls; }
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
  outbound::decision<outbound::tls_action> on_secure_ehlo(bool requiretls_offered) override;
  // queue::idle_waiter
  void wake() override;
  void retire() override;

  void next_job();
  void send_job();
  // A large message streams from the spool: one window read, dot-stuffed and sent at a
  // time; the next is read once the previous is handed to TLS, and sent only when what
  // is unsent has drained below a window (memory per link: about three windows).
  void stream_next();
  void stream_send();
  void on_drained() override;
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
  std::vector<queue::rcpt_result> _res;  // the last transaction's results (buffers reused)
  iovec _body{};
  std::unique_ptr<char[]> _window;  // large messages: the window being read or sent
  uint64_t _stream_pos = 0;         // body bytes read so far
  size_t _stream_ready = 0;         // bytes in _window waiting to be sent
  bool _streaming = false;          // the body is being streamed (after the 354)
  bool _stream_reading = false;     // a window read is in flight
  bool _stream_broken = false;      // the transaction ended mid-body: close, never reuse
  bool _streamed = false;           // some message streamed here: release memory at the end
  outbound::stuff_state _stuff;
  std::vector<iovec> _siov;
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

// One connection slot of a domain: resolves the policy (policy::resolver), then does the
// I/O its delivery::walk asks for (DNS, connect, links) and applies the walk's ending to
// the ready jobs (give up, fall back, or done: a link carries them).
class attempt final : policy::resolve_completion, walk_events {
 public:
  attempt(agent& ag, queue::domain_state& d);
  ~attempt() override;
  // Resolve the policy and start the walk.
  void start();
  // The effective TLS policy of this domain (fixed for the attempt, even across SIGHUP).
  const policy::effective_policy& policy() const { return _walk->policy(); }
  // Has a SIGHUP changed the domain's policy since this attempt began?
  bool policy_changed() const;
  // A link ended: tell the walk (and the agent, for the metrics).
  void on_link_closed(link& l);
  // Cancel a connect that has taken longer than outbound.connect_timeout.
  void check_deadline(uint64_t now_ms);
  // The EHLO name of the current connection: its pool source address's, else server.hostname.
  std::string_view ehlo_name() const;
  // Our address on the current connection ("" when unknown).
  const std::string& local_ip() const { return _local_ip; }

 private:
  // policy::resolve_completion
  void policy_resolved(const policy::resolution& r) override;
  // walk_events
  void resolve_mx(const std::string& domain) override;
  void resolve_host(const std::string& host) override;
  void resolve_tlsa(const std::string& host, uint16_t port) override;
  void host_ruled_out(const session_report& r) override;
  void connect(const target& t, const session_report* plain_retry) override;
  void give_up(report::reason why, const std::string& reply, bool permanent, const std::string& status,
               const session_report& last) override;
  void fall_back(const session_report& last) override;
  void done() override;

  void on_connected(int fd, int res);
  std::string bind_source(int fd, const target& t);
  // The TLS-RPT observer for a session that ended for `why`, or null when it must not count.
  session_observer* observer_for(report::reason why) const;
  void restart_under_new_policy();
  void finish();

  struct connect_op final : core::completion {
    attempt* self = nullptr;
    int fd = -1;
    void on_complete(int res, unsigned) override { self->on_connected(fd, res); }
  };

  agent& _ag;
  queue::domain_state& _d;
  std::optional<walk> _walk;           // once the policy is known
  policy::effective_policy _configured;  // the config table's policy when the attempt began
  target _target;                      // being connected to
  std::string _local_ip;               // our address on the current connection
  const config::pool_address* _source = nullptr;  // the pool address it is bound to (null: none)
  std::shared_ptr<const policy::mta_sts_rules> _sts;  // the rules the walk runs under (observer)
  const config::route_entry* _route = nullptr;  // the [[route]] the walk follows, if any
  std::optional<session_report> _plain_retry;  // the handshake a plaintext retry follows
  connect_op _connect;
  bool _connecting = false;
  uint64_t _connect_since = 0;
  bool _done = false;
};

}  // namespace sr::delivery
