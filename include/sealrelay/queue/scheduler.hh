// The per-shard delivery queue for the recipient domains this shard owns.
// Jobs wait per domain; the scheduler opens up to outbound.max_conns_per_domain
// connections through a `connector`, each pulling jobs with take() (so one
// connection carries several messages) and reporting per-recipient results with
// finish().
// Shaping (issue 14, shaping.hh): every domain queue belongs to a site, its destination.
// A [[shaping]] entry is one site whatever domains it matches (by name, or by MX host, so
// a provider's domains share its limits) and lives on one shard, owner_shard("shaping:" +
// name): a job whose entry is owned elsewhere moves there (home_link::forward_job), so its
// token buckets are touched by one thread only. take() hands out a job only with a message
// token, kick() opens a connection only with a connection token and under the site's
// max_connections; sites that wait are kicked again at each tick. A remote reply matching a
// back-off rule lowers the site's message rate for a while (audited through on_shaping). Deferred recipients wait on a timer heap (outbound.retry, then every
// last interval) until outbound.max_queue_age, when they bounce. The operator's
// commands (sealrelay-queue: hold, release, flush, requeue, delete) act on jobs here, on
// the owner shard's thread, and take effect at once.
#pragma once
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "sealrelay/config/config.hh"
#include "sealrelay/core/shard.hh"
#include "sealrelay/queue/job.hh"
#include "sealrelay/queue/shaping.hh"
#include "sealrelay/report/reason.hh"

namespace sr::queue {

// A connection with nothing to send that waits (briefly) for more jobs of its domain:
// connection reuse across bursts, like Postfix's connection cache.
class idle_waiter {
 public:
  // A job became ready: call take() now.
  virtual void wake() = 0;
  // Close: another domain of the same [[shaping]] destination needs the connection slot
  // (the waiter is already off the idle list).
  virtual void retire() = 0;

 protected:
  ~idle_waiter() = default;
};

struct domain_state {
  std::string name;
  // Reports and notices (kind tlsrpt, escrow-notice) queue apart from the domain's mail:
  // they go out under plain opportunistic policy, without MTA-STS or DANE (RFC 8460 §5.3:
  // a TLS report is delivered despite TLS failures; DESIGN.md §7 escrow notices).
  bool opportunistic_only = false;
  // RFC 8689, per message, so in queues of their own (a link runs under one policy):
  // REQUIRETLS mail leaves only over TLS verified by MTA-STS or DANE to an MX that offers
  // REQUIRETLS, else it bounces (5.7.30); "TLS-Required: No" mail ignores MTA-STS and
  // DANE (never the configured [[policy]]).
  bool requiretls = false;
  bool tls_required_no = false;
  // Source IP pool (issue 14): a connection binds one source address, so the jobs it
  // carries must share the pool; a domain's mail of two pools waits in two queues, each
  // with its own outbound.max_conns_per_domain. Null = no pool (the kernel's choice).
  const config::pool_entry* pool = nullptr;
  site_state* site = nullptr;   // its destination (never null once created)
  unsigned max_conns = 16;      // connections of this queue (the site's max_connections)
  unsigned messages_per_conn = 100;  // transactions per connection (the site's)
  std::deque<job*> ready;       // due jobs, oldest first
  unsigned active = 0;          // connections open or opening
  unsigned in_progress = 0;     // jobs taken by connections and not finished
  std::deque<idle_waiter*> idle;  // open connections waiting for work
};

// The result for one recipient of a job, in the job's rcpts order.
struct rcpt_result {
  rcpt_outcome outcome = rcpt_outcome::deferred;
  std::string reply;            // remote reply line(s) or our own reason
  std::string mx;               // host that gave it ("" when none answered)
  std::string status;           // enhanced status code for DSNs ("5.1.1", "4.4.1")
  report::reason reason = report::reason::none;  // when not a remote reply (null_mx, connect_failed)
  bool notify_sender = false;   // dropped: send the sender a DSN anyway (policy notify_sender)
};

// The suppression list as the scheduler sees it (issue 14): every recipient is checked
// just before its job goes to a connection, so an address listed while its mail waited
// is never delivered to either.
class recipient_screen {
 public:
  // Return whether mail to `address` must not be delivered.
  virtual bool suppressed(std::string_view address) = 0;
  // `removed` (recipients of `j`) were taken out as suppressed; they are final (DONE goes
  // home, no DSN). Called before `j` changes or is freed.
  virtual void screened(const job& j, std::span<const job_rcpt> removed) = 0;

 protected:
  ~recipient_screen() = default;
};

class connector {
 public:
  virtual ~connector() = default;
  // Start one connection for `d`; it calls take(d) until null, finish() for each job,
  // and connection_closed(d) exactly once at the end.
  virtual void open(domain_state& d) = 0;
};

// How results reach the home shard of a message (cross-shard calls).
struct home_link {
  // Recipients `indices` of `queue_id` are final: write a DONE record at home.
  std::function<void(unsigned home, const std::string& queue_id, std::vector<uint32_t> indices)> mark_done;
  // Recipients still pending of `queue_id` made these many attempts so far, as
  // (recipient index, attempts): record it at home so a restart keeps the count.
  std::function<void(unsigned home, const std::string& queue_id,
                     std::vector<std::pair<uint32_t, uint32_t>> counts)> record_attempts;
  // Spool `text` as a new message from <> to `rcpt` and queue it; call stored(durable)
  // once it is durable (or could not be stored).
  std::function<void(unsigned home, std::string text, std::string rcpt,
                     std::function<void(bool durable)> stored)> spool_dsn;
  // Recipients `indices` of `queue_id` are held (or released): write a HOLD record at home
  // so that a restart keeps them held (sealrelay-queue hold/release).
  std::function<void(unsigned home, const std::string& queue_id, std::vector<uint32_t> indices,
                     bool held)> record_hold;
  // Queue `j` on shard `owner` instead (its [[shaping]] destination lives there).
  std::function<void(unsigned owner, std::unique_ptr<job> j)> forward_job;
};

// The MX host names of a domain, in preference order, for [[shaping]] mx entries (matched
// without regard to case); ok = false when the lookup failed (the domain is then unshaped for a minute).
using mx_lookup = std::function<void(const std::string& domain,
                                     std::function<void(bool ok, std::vector<std::string> hosts)> done)>;

// A back-off started or ended (issue 14 item 2): one audit line.
struct shaping_event {
  bool restore = false;          // false: "backoff", true: "restore"
  std::string destination;       // the site's name
  std::string domain;            // the domain whose reply matched ("" for a restore)
  std::string rule;              // the rule's label ("backoff[0]", "builtin:gmail-4.7.28")
  std::string reply;             // the reply that matched
  uint64_t rate_per_hour = 0;    // the rate now (0 = no limit)
  uint64_t previous_rate_per_hour = 0;
  uint64_t until_unix_ms = 0;    // backoff: when the configured rate returns
};

// One destination as /metrics shows it (the series index of site_state::metric).
struct shaping_stats {
  uint64_t backoffs = 0;         // back-offs started
  uint64_t rate_per_hour = 0;    // the message rate allowed now (0 = no limit)
  uint64_t connections = 0;      // open connections
};

// Which jobs an operator command acts on (sealrelay-queue); exactly one field is set.
struct job_selector {
  std::string queue_id;       // every job of this message on this shard
  std::string domain;         // every job of this recipient domain (lower case)
  bool all_deferred = false;  // every job waiting for its next retry (not held, not in flight)
  bool all = false;           // every job
};

// Where a job is, as `sealrelay-queue list` shows it.
enum class job_state : uint8_t {
  ready,     // due: waiting for a connection
  deferred,  // waiting for its next retry
  held,      // held by the operator: never taken until released
  active,    // taken by a connection right now
};
// Return "ready", "deferred", "held", "active".
const char* to_string(job_state s);

// What an operator command did on one shard.
struct control_result {
  size_t matched = 0;  // jobs the selector named
  size_t applied = 0;  // jobs changed now
  size_t pending = 0;  // jobs in flight: applied when their attempt ends (delete, hold)
};

struct queue_stats {
  uint64_t delivered = 0, deferred = 0, bounced = 0, dropped = 0, dsn_sent = 0;
  uint64_t handed_off = 0;  // recipients the fallback took (escrowed, pgp, smime)
  uint64_t deleted = 0;     // recipients the operator deleted (sealrelay-queue delete)
  uint64_t suppressed = 0;  // recipients dropped before delivery (suppression list)
};

class scheduler {
 public:
  scheduler(core::shard& sh, const config::config& cfg, home_link link);
  ~scheduler();
  void set_connector(connector* c) { _conn = c; }
  // How many shards there are (where a [[shaping]] entry lives: owner_shard()).
  void set_shards(unsigned n);
  // Check recipients against the suppression list before delivery (null: none).
  void set_screen(recipient_screen* s) { _screen = s; }
  // How a bounce reads the original message back when the job no longer holds it
  // (deferred jobs drop their bytes; give-ups never load them): into j->body, then done(ok).
  using body_loader = std::function<void(job* j, std::function<void(bool ok)> done)>;
  void set_body_loader(body_loader l) { _load = std::move(l); }

  // Accept a job on its owner shard.
  void enqueue(std::unique_ptr<job> j);
  // Next job for a connection of `d`, or null when none is due or its site has no message
  // token now (the connection parks; a tick wakes it when a token is there).
  job* take(domain_state& d);
  // Next job of `d` whatever the shaping (a failed attempt defers or hands off every ready
  // job of its domain: no message goes to the destination, so no token is due).
  job* take_unmetered(domain_state& d);
  // Look up MX hosts for [[shaping]] mx entries (unset: mx entries never match).
  void set_mx_lookup(mx_lookup fn) { _mx_lookup = std::move(fn); }
  // Called for every back-off change (the audit line).
  void on_shaping(std::function<void(const shaping_event&)> fn) { _on_shaping = std::move(fn); }
  // Per metric series: cfg.shaping in order (a "*" entry sums its domains' connections and
  // back-offs, with no rate), then "default" (unshaped domains);
  // kept up to date as connections open and close and rates change (no scan).
  const std::vector<shaping_stats>& shaping_metrics() const { return _metrics; }
  // Turn the deferred results of a job past outbound.max_queue_age into bounces (status
  // 4.4.7, reason "expired"), so that the audit of this attempt shows the final outcome.
  void expire(const job& j, std::span<rcpt_result> results) const;
  // A transaction for `j` ended; `results` has one entry per j->rcpts (same order).
  void finish(job* j, std::span<const rcpt_result> results);
  // Give `j` back untried (the connection failed before its transaction).
  void give_back(job* j);
  // Park an idle connection until a job is ready (wake()) or it gives up (unpark()).
  void park(domain_state& d, idle_waiter* w) { d.idle.push_back(w); }
  void unpark(domain_state& d, idle_waiter* w);
  // A connection of `d` is gone.
  void connection_closed(domain_state& d);
  // Hold delivery (take() answers null, no connection opens) while `paused`, e.g. while
  // the shard's audit log cannot keep up; resuming kicks every domain with ready jobs.
  void pause(bool paused);
  bool paused() const { return _paused; }

  // Operator control (sealrelay-queue), on this shard's thread.
  // Call fn for every job: its state and the unix ms of its next attempt (0 = due now).
  void for_each_job(const std::function<void(const job&, job_state, uint64_t next_unix_ms)>& fn) const;
  // Hold: the jobs leave the ready and retry queues and are never taken until released
  // (held jobs do not expire while held; on release an expired one bounces at its next
  // attempt). A job in flight is held when its attempt ends. Recorded at home (record_hold).
  control_result hold(const job_selector& sel);
  // Release held jobs: due now.
  control_result release(const job_selector& sel);
  // Make waiting jobs due now (held ones stay held).
  control_result flush(const job_selector& sel);
  // Postfix's postsuper -r, adapted: release, forget the attempt count (the retry backoff
  // starts again; the spool keeps the highest count it recorded) and the next-retry time,
  // due now. The TLS policy is resolved again at every attempt anyway.
  control_result requeue(const job_selector& sel);
  // Delete: the recipients become final (DONE at home, so the spool reclaims the message)
  // and the delete observer audits each one; with `dsn` the sender gets a DSN (status
  // 5.0.0, not for the null sender), and DONE waits for it to be durable. A job in flight
  // is deleted when its attempt ends: recipients delivered by it stay delivered.
  control_result remove(const job_selector& sel, bool dsn);
  // Called with each job just before it is deleted (its rcpts are the deleted recipients).
  void on_delete(std::function<void(const job&)> fn) { _on_delete = std::move(fn); }

  size_t depth() const { return _jobs.size(); }
  // Unix ms the oldest queued job was received (0: none). A full scan of the jobs runs at
  // most every oldest_rescan_ms of `now_ms` (monotonic): in between, an enqueue can only
  // lower it and a finished job leaves it as it was, so it may overstate the age for that
  // long. That keeps the cost O(depth) per rescan, not per message.
  uint64_t oldest_received_ms(uint64_t now_ms);
  static constexpr uint64_t oldest_rescan_ms = 5000;
  const queue_stats& stats() const { return _stats; }
  // Monotonic ms delay before retry number `attempts` (1 = after the first failure).
  uint64_t retry_delay_ms(unsigned attempts, const std::vector<duration>* schedule = nullptr) const;

 private:
  void on_tick();
  void kick(domain_state& d);
  // Which of a domain's queues (see domain_state).
  enum class lane : uint8_t { mail, reports, requiretls, tls_required_no };
  domain_state& domain(const std::string& name, lane l, const config::pool_entry* pool,
                       const config::shaping_entry* shaping);
  // Pick the source IP pool of a job: config::pool_for (the recipient's [[policy]], then the
  // job's [[shaping]] entry, then the sender domain).
  const config::pool_entry* choose_pool(const job& j) const;
  // Find `j`'s [[shaping]] entry (j->shaping_known), or start the MX lookup it needs (the
  // job waits in _resolving: false). Then move it to the entry's shard when that is
  // another one (false: gone). True: queue it here.
  bool place(std::unique_ptr<job>& j);
  // The MX answer for `domain` arrived: place the jobs that waited for it.
  void mx_known(const std::string& domain, bool ok, const std::vector<std::string>& hosts);
  // The site of a new domain queue.
  site_state& site_for(const std::string& domain, const config::shaping_entry* e);
  // take() (metered: a message token per job) and take_unmetered().
  job* take_job(domain_state& d, bool metered);
  // Show `s`'s message rate now in its metric series (shared entries only).
  void publish_rate(const site_state& s);
  // Kick the site's queues that have ready jobs, round-robin, while it can send.
  void kick_site(site_state& s);
  // Close one idle connection of another queue of `s` (one with nothing ready) for `need`.
  void retire_idle(site_state& s, const domain_state& need);
  // Put `s` on the per-tick list (it has ready jobs it cannot send now).
  void wait_on(site_state& s);
  // Lower `s`'s rate when `reply` matches a back-off rule (once per call).
  void check_backoff(site_state& s, const std::string& domain, std::string_view reply);
  // The rate `s` is allowed now (per second, 0 = none), after an ended back-off is undone.
  void refresh_rate(site_state& s, uint64_t now);
  // The domain queue `j` belongs to (its domain, apart for reports and notices, and for
  // REQUIRETLS and TLS-Required: No mail).
  domain_state& domain_of(const job& j);
  // Send the sender a DSN for `failed`; the recipients `finish_after` are marked done only
  // once the DSN is durable, so the original is never reclaimed before its bounce exists.
  void bounce(job& j, std::vector<const job_rcpt*> failed, std::span<const rcpt_result> why,
              std::vector<uint32_t> finish_after);
  // Take `j`'s suppressed recipients out (final, audited by the screen); true when none is
  // left, and then `j` is gone.
  bool screen_out(job* j);

  // Jobs `sel` names, in a stable order (control commands change the containers).
  std::vector<job*> select(const job_selector& sel) const;
  // Take `j` out of the ready or retry queue (it stays in _jobs).
  void detach(job* j);
  // Put `j` on its domain's ready queue and open connections for it.
  void make_due(job* j);
  // Write HOLD (held) or its release for every recipient of `j` at home.
  void persist_hold(const job& j, bool held);
  // Delete `j` now (see remove()); `j` is gone afterwards.
  void delete_now(job* j, bool dsn);

  core::shard& _shard;
  const config::config& _cfg;
  home_link _link;
  connector* _conn = nullptr;
  unsigned _shards = 1;
  recipient_screen* _screen = nullptr;
  body_loader _load;
  std::unordered_map<std::string, std::unique_ptr<domain_state>> _domains;
  std::unordered_map<std::string, std::unique_ptr<site_state>> _sites;
  std::vector<site_state*> _waiting;   // sites with ready jobs they could not send (tick)
  std::vector<site_state*> _backed_off;  // sites under a back-off (tick checks the end)
  // [[shaping]] mx entries: the entry each domain's MX hosts matched (null: none) and until
  // when that answer holds (monotonic ms); jobs waiting for a lookup in flight.
  struct mx_answer {
    const config::shaping_entry* entry = nullptr;
    uint64_t until_ms = 0;
  };
  std::unordered_map<std::string, mx_answer> _mx_sites;
  std::unordered_map<std::string, std::vector<std::unique_ptr<job>>> _resolving;
  mx_lookup _mx_lookup;
  std::function<void(const shaping_event&)> _on_shaping;
  std::unique_ptr<backoff_rules> _rules;
  std::vector<shaping_stats> _metrics;  // see shaping_metrics()
  uint64_t _mx_pruned_ms = 0;
  shaping_stats& metric(const site_state& s);
  std::unordered_map<job*, std::unique_ptr<job>> _jobs;
  using timed = std::pair<uint64_t, job*>;
  // Ordered by time: a set (not a heap) so that hold, flush and delete can take a job out.
  std::set<timed> _deferred;
  std::function<void(const job&)> _on_delete;
  queue_stats _stats;
  bool _paused = false;
  uint64_t _oldest_ms = 0;       // see oldest_received_ms()
  uint64_t _oldest_scanned = 0;  // monotonic ms of the last scan (0: never)
};

}  // namespace sr::queue
