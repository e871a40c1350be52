// The delivery side of a shard: implements queue::connector. For each connection the
// scheduler asks for, an `attempt` walks the destination's hosts (a [[route]] next
// hop, or the MX hosts in preference order and their addresses) until one link gets
// through greeting, EHLO and TLS; that link then carries jobs until the queue has
// none or outbound.messages_per_conn is reached. Every recipient of every attempt is
// audited. Message bytes are read back through the shard's spool::reader.
#pragma once
#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "sealrelay/audit/writer.hh"
#include "sealrelay/config/config.hh"
#include "sealrelay/core/shard.hh"
#include "sealrelay/dns/resolver.hh"
#include "sealrelay/net/buffer_ring.hh"
#include "sealrelay/net/chunk.hh"
#include "sealrelay/policy/fallback.hh"
#include "sealrelay/policy/registry.hh"
#include "sealrelay/delivery/report.hh"
#include "sealrelay/delivery/source.hh"
#include "sealrelay/policy/resolver.hh"
#include "sealrelay/queue/scheduler.hh"
#include "sealrelay/report/bounce.hh"
#include "sealrelay/report/policy_source.hh"
#include "sealrelay/report/reason.hh"
#include "sealrelay/spool/reader.hh"

namespace sr::tls {
class context;
class session_cache;
}  // namespace sr::tls

namespace sr::delivery {

class attempt;
struct link_end;
class link;

struct delivery_counters {
  std::array<uint64_t, report::reason_count> tls_failures_by_reason{};  // indexed by report::reason
  uint64_t tls_deliveries = 0, plain_deliveries = 0;
  uint64_t tls13 = 0, tls12 = 0, tls_other = 0;  // recipients delivered, by TLS version
  // Recipients delivered by effective policy and its source, indexed
  // [config::tls_policy * policy_sources + report::policy_source].
  static constexpr size_t policies = 3, policy_sources = 5;
  std::array<uint64_t, policies * policy_sources> delivered_by_policy{};
  uint64_t connections = 0, connect_failures = 0, tls_failures = 0;
  uint64_t fallback_handoffs = 0;  // messages handed to the fallback (forced, TLS failed everywhere)
  // Recipients bounced, by report::bounce_class (sealrelay_bounces_total{class}).
  std::array<uint64_t, report::bounce_class_count> bounces_by_class{};
};

// The suppression list as delivery uses it (issue 14); the relay wires src/suppress in.
// Called on the agent's shard only.
class suppression {
 public:
  // Return whether mail to `address` must not be delivered.
  virtual bool suppressed(std::string_view address) = 0;
  // `address` hard-bounced as a bad mailbox (`reply`: the MX's answer): list it.
  virtual void add_bounced(std::string_view address, std::string_view reply) = 0;

 protected:
  ~suppression() = default;
};

// What the end of one outbound session tells a session_observer beyond its report.
struct session_end {
  bool reached_idle = false;   // the session got ready for mail
  bool plain_retry = false;    // the opportunistic plaintext retry after a failed handshake
  report::reason close_reason = report::reason::none;  // why it ended (a TLS failure, ...)
  std::string_view sending_ip;                         // our address on it ("" unknown)
  const policy::mta_sts_rules* sts = nullptr;          // the domain's MTA-STS rules, if any
  bool routed = false;  // a [[route]] next hop, not the domain's MX hosts, took the session
};

// Told of every outbound session's end (TLS-RPT counts them), on the agent's shard.
class session_observer {
 public:
  // One session (link) to a host of `domain` ended; called once per link.
  virtual void session_done(std::string_view domain, const session_report& r, const session_end& e) = 0;

 protected:
  ~session_observer() = default;
};

// The fields every audit record about recipient `rc` of `j` carries (queue id, Message-ID,
// kind, sender, recipient, domain, this attempt's number); the caller adds the rest.
audit::record job_record(const queue::job& j, const queue::job_rcpt& rc);

class agent final : public queue::connector, queue::recipient_screen {
 public:
  agent(core::shard& sh, const config::config& cfg, queue::scheduler& sched, dns::resolver& res,
        net::chunk_pool& pool, net::buffer_ring& ring, audit::writer* audit);
  ~agent() override;
  // Build the TLS client context; start-up only.
  status start();

  void open(queue::domain_state& d) override;

  // Read `j`'s message bytes from the spool into j->body, then call `done(ok)`.
  void load(queue::job* j, std::function<void(bool)> done);
  // The shard's spool reader (links stream large messages through it in windows).
  spool::reader& spool_reader() { return _spool_reader; }
  // End this attempt for `j`: expire what is past max_queue_age, audit every recipient,
  // hand the results to the scheduler (which may free `j`). `res` has one entry per
  // recipient (else it is copied and padded with deferrals); it may be changed (expiry).
  void complete(queue::job* j, std::span<queue::rcpt_result> res, const session_report& li);
  // Count what a link's session report says for /metrics (TLS failures by reason).
  void report_session(const link_end& e);
  // The policy resolver (null: the shard's config table through policies()).
  void set_policy_resolver(policy::resolver* r) { _resolver_override = r; }
  policy::resolver* policy_resolver() { return _resolver_override; }
  // Hand `j` (taken from the scheduler, its attempt already audited as `li`) to the
  // fallback under `p`; the answer, whenever it comes, audits the hand-off and finishes
  // the job: unavailable -> deferred (fallback-unavailable), defer -> deferred (the TLS
  // reason), escrowed/pgp/smime -> final.
  void hand_off(queue::job* j, const policy::effective_policy& p, const session_report& li);
  // Write one audit record per recipient of `j` for this attempt.
  void audit_job(const queue::job& j, std::span<const queue::rcpt_result> res, const session_report& li);
  // The suppression list (null: none): recipients on it are dropped before delivery (audit
  // outcome "suppressed"), and bad-mailbox hard bounces are added to it.
  void set_suppression(delivery::suppression* s);
  // Return the bounce class of a bounced result of an attempt over `li` (report/bounce.hh).
  static report::bounce_class bounce_class_of(const queue::rcpt_result& r, const session_report& li);

  core::shard& shard() { return _shard; }
  const config::config& cfg() const { return _cfg; }
  queue::scheduler& sched() { return _sched; }
  dns::resolver& resolver() { return _res; }
  net::chunk_pool& pool() { return _pool; }
  net::buffer_ring& ring() { return _ring; }
  tls::context* tls_client() { return _tls.get(); }
  tls::session_cache& tls_cache() { return *_tls_cache; }
  delivery_counters& counters() { return _counters; }
  // The shard's view of the TLS policy table (null: everything is opportunistic).
  void set_policies(policy::reader* r) { _policies = r; }
  policy::reader* policies() { return _policies; }
  // Where forced policies hand a message once TLS failed everywhere (DESIGN.md §2). Until
  // the sidecar client exists it is a policy::unavailable_handoff owned here.
  void set_fallback(policy::fallback_handoff* f) { _fallback = f ? f : &_unavailable; }
  policy::fallback_handoff& fallback() { return *_fallback; }
  size_t open_links() const { return _links.size(); }
  // Who hears of each session's end (null: nobody; TLS-RPT when enabled).
  void set_session_observer(delivery::session_observer* o) { _observer = o; }
  // Return the next source address of `pool` for a destination of `family` (this shard's
  // round-robin or weighted turn), or null when the pool has none of that family.
  const config::pool_address* next_source(const config::pool_entry& pool, int family);
  delivery::session_observer* observer() const { return _observer; }

  // True while fewer than 20 hand-off lines were logged this second (the rest are counted
  // and summed up on the next tick).
  bool may_log_handoff() {
    if (_handoff_logged < 20) {
      ++_handoff_logged;
      return true;
    }
    ++_handoff_suppressed;
    return false;
  }
  // Registry of live links and attempts for the tick (deadlines).
  void add(link* l) { _links.push_back(l); }
  void remove(link* l);
  void add(attempt* a) { _attempts.push_back(a); }
  void remove(attempt* a);

 private:
  struct handoff_op;
  void on_tick();
  // queue::recipient_screen
  bool suppressed(std::string_view address) override;
  void screened(const queue::job& j, std::span<const queue::job_rcpt> removed) override;

  core::shard& _shard;
  const config::config& _cfg;
  queue::scheduler& _sched;
  dns::resolver& _res;
  net::chunk_pool& _pool;
  net::buffer_ring& _ring;
  audit::writer* _audit;
  spool::reader _spool_reader;  // message bytes, from any shard's partition
  std::unique_ptr<tls::context> _tls;
  std::unique_ptr<tls::session_cache> _tls_cache;
  std::vector<link*> _links;
  std::vector<attempt*> _attempts;
  delivery_counters _counters;
  policy::reader* _policies = nullptr;
  policy::resolver* _resolver_override = nullptr;
  unsigned _handoff_logged = 0;       // hand-off log lines in the current second
  uint64_t _handoff_suppressed = 0;   // not logged since the last summary
  uint64_t _handoff_second = 0;
  policy::unavailable_handoff _unavailable;
  policy::fallback_handoff* _fallback = &_unavailable;
  delivery::session_observer* _observer = nullptr;
  std::vector<source_picker> _sources;  // one per config pool, in cfg.pools order
  delivery::suppression* _suppression = nullptr;
};

// What an audit record needs to know about the link that carried an attempt.
using link_info = session_report;

}  // namespace sr::delivery
