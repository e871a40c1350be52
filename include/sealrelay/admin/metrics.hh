// The metrics registry behind /metrics: named counters and gauges with optional labels.
// Every series has one cell per shard, written only by that shard with relaxed atomics
// (a plain load + store: no lock, no locked instruction, no allocation), plus one shared
// cell any other thread may update with fetch_add; a scrape sums the cells. A shard's
// cells sit together, away from other shards' cache lines. Series are registered at
// start-up only; seal() (done by the admin server when it starts) closes registration.
#pragma once
#include <atomic>
#include <cstdint>
#include <initializer_list>
#include <iterator>
#include <memory>
#include <string>
#include <span>
#include <string_view>
#include <vector>

#include "sealrelay/report/bounce.hh"
#include "sealrelay/report/reason.hh"

namespace sr::admin {

enum class metric_type : uint8_t { counter, gauge };

struct label {
  std::string_view name;
  std::string_view value;
};

class registry;

namespace detail {
// Where a series' cells are: cell of shard s is base[s * stride].
struct series_ref {
  std::atomic<uint64_t>* base;
  size_t stride;
  unsigned shards;   // base[shards * stride] is the shared (any-thread) cell
  std::atomic<uint64_t>& at(unsigned shard) const { return base[shard * stride]; }
  uint64_t sum() const;
};
// The cell inert (default-constructed) handles write to.
series_ref inert_series();
}  // namespace detail

// A monotonically increasing count.
class counter {
 public:
  counter() : _s(detail::inert_series()) {}
  // Add n from shard `shard` (the caller's own shard; one writer per cell).
  void inc(unsigned shard, uint64_t n = 1) const {
    auto& c = _s.at(shard);
    c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  // Add n from a thread that is not a shard (locked add on the shared cell).
  void inc_shared(uint64_t n = 1) const { _s.at(_s.shards).fetch_add(n, std::memory_order_relaxed); }
  // Return shard `shard`'s cell, for code that keeps its own count (audit::writer).
  std::atomic<uint64_t>& cell(unsigned shard) const { return _s.at(shard); }
  // Return the sum over all cells (what a scrape shows).
  uint64_t value() const { return _s.sum(); }

 private:
  friend class registry;
  explicit counter(detail::series_ref s) : _s(s) {}
  detail::series_ref _s;
};

// A value that goes up and down; each shard keeps its share, the scrape shows the sum.
class gauge {
 public:
  gauge() : _s(detail::inert_series()) {}
  // Add d (may be negative) to shard `shard`'s share.
  void add(unsigned shard, int64_t d) const {
    auto& c = _s.at(shard);
    c.store(c.load(std::memory_order_relaxed) + uint64_t(d), std::memory_order_relaxed);
  }
  // Set shard `shard`'s share to v.
  void set(unsigned shard, int64_t v) const { _s.at(shard).store(uint64_t(v), std::memory_order_relaxed); }
  // Return shard `shard`'s cell, for code that keeps its own value (audit::writer).
  std::atomic<uint64_t>& cell(unsigned shard) const { return _s.at(shard); }
  // Add d from a thread that is not a shard.
  void add_shared(int64_t d) const {
    _s.at(_s.shards).fetch_add(uint64_t(d), std::memory_order_relaxed);
  }
  // Return the sum of all shares.
  int64_t value() const { return int64_t(_s.sum()); }

 private:
  friend class registry;
  explicit gauge(detail::series_ref s) : _s(s) {}
  detail::series_ref _s;
};

class registry {
 public:
  // Cells for `shards` shards plus the shared cell, for up to `max_series` series.
  explicit registry(unsigned shards, unsigned max_series = 1024);
  ~registry();
  registry(const registry&) = delete;
  registry& operator=(const registry&) = delete;

  unsigned shards() const { return _shards; }

  // Register a counter series (start-up only). Series of one name form a family and
  // share its help and type. Misuse (bad name, type clash, duplicate labels, after
  // seal(), full) is a programming error: logged, then abort().
  counter add_counter(std::string_view name, std::string_view help,
                      std::initializer_list<label> labels = {});
  // Register a gauge series (start-up only); as add_counter.
  gauge add_gauge(std::string_view name, std::string_view help,
                  std::initializer_list<label> labels = {});
  // Close registration: from now on other threads may render() concurrently.
  void seal() { _sealed = true; }
  bool sealed() const { return _sealed; }

  // Append the Prometheus text exposition (format 0.0.4) of every series to `out`.
  void render(std::string& out) const;
  std::string render() const {
    std::string s;
    render(s);
    return s;
  }

 private:
  struct series {
    std::string labels;   // rendered: {a="b",c="d"} or ""
    uint32_t index;
  };
  struct family {
    std::string name;
    std::string help;
    metric_type type;
    std::vector<series> members;
  };
  detail::series_ref add(std::string_view name, std::string_view help, metric_type type,
                         std::initializer_list<label> labels);

  unsigned _shards;
  unsigned _max_series;
  size_t _stride;                 // cells per shard block (a multiple of a cache line)
  std::atomic<uint64_t>* _cells;  // (shards + 1) blocks of _stride cells, 64-byte aligned
  unsigned _used = 0;
  bool _sealed = false;
  std::vector<family> _families;  // in registration order
};

// Values of the tls label of sealrelay_deliveries_total ("plaintext" = no TLS).
inline constexpr std::string_view tls_labels[] = {"plaintext", "TLSv1.0", "TLSv1.1",
                                                  "TLSv1.2",   "TLSv1.3", "other"};
// Values of the tls label of sealrelay_inbound_tls_handshakes_total, in the order of
// server::inbound_tls_counts::by_version.
inline constexpr std::string_view inbound_tls_labels[] = {"TLSv1.0", "TLSv1.1", "TLSv1.2", "TLSv1.3",
                                                          "other"};
// Values of the policy and source labels of sealrelay_deliveries_by_policy_total, in the
// order of config::tls_policy and report::policy_source.
inline constexpr std::string_view policy_labels[] = {"opportunistic", "forced", "exclusive"};
inline constexpr std::string_view policy_source_labels[] = {"default", "config", "mta-sts", "dane",
                                                            "requiretls"};
// sealrelay_tls_failures_total has one series per report::reason that is_tls_failure()
// (labelled with its audit token) and one labelled "other" for the rest.

// Values of the code label of sealrelay_http_requests_total: the statuses the HTTP API
// answers with (the same order as inject::counted_codes), "other" last.
inline constexpr std::string_view http_code_labels[] = {"202", "400", "401", "403", "404", "405", "408",
                                                        "413", "415", "431", "500", "503", "other"};

// The relay's own metric families, registered in one place so names stay consistent.
struct relay_metrics {
  // Register every family in `r` (start-up, before r.seal()).
  explicit relay_metrics(registry& r);

  counter messages_accepted;   // sealrelay_messages_accepted_total: 250 after DATA
  counter messages_delivered;  // sealrelay_messages_delivered_total: per recipient, final
  counter messages_deferred;   // sealrelay_messages_deferred_total: per recipient per attempt
  counter messages_bounced;    // sealrelay_messages_bounced_total: per recipient, final
  counter deliveries_by_tls[std::size(tls_labels)];  // sealrelay_deliveries_total{tls}
  gauge queue_depth;           // sealrelay_queue_depth: messages in the spool not yet final
  // sealrelay_queue_oldest_age_seconds{shard}: one series per shard, written by that shard
  // only (a sum of ages means nothing: dashboards take max()).
  std::vector<gauge> queue_oldest_age;
  // sealrelay_deliveries_by_policy_total{policy,source}: recipients delivered, indexed
  // [policy * std::size(policy_source_labels) + source].
  counter deliveries_by_policy[std::size(policy_labels) * std::size(policy_source_labels)];
  // sealrelay_inbound_tls_handshakes_total{tls}: inbound SMTP TLS sessions established.
  counter inbound_tls_handshakes[std::size(inbound_tls_labels)];
  counter inbound_tls_failures;  // sealrelay_inbound_tls_failures_total: inbound handshakes failed
  gauge connections_inbound;   // sealrelay_connections{direction="inbound"}
  gauge connections_outbound;  // sealrelay_connections{direction="outbound"}
  counter dns_cache_hits;      // sealrelay_dns_cache_hits_total
  counter dns_cache_misses;    // sealrelay_dns_cache_misses_total
  counter mta_sts_fetches;     // sealrelay_mta_sts_fetches_total: policy fetches started
  counter mta_sts_fetch_failures;  // sealrelay_mta_sts_fetch_failures_total: failed or invalid
  gauge mta_sts_policies;      // sealrelay_mta_sts_policies: cache entries (policies, recent failures)
  counter tls_failures_by_reason[report::reason_count];  // sealrelay_tls_failures_total{reason}; index none = "other"
  counter audit_dropped;       // sealrelay_audit_dropped_total: records lost to failed writes
  counter audit_write_errors;  // sealrelay_audit_write_errors_total
  gauge audit_failing;         // sealrelay_audit_failing: shards whose last audit write failed
  counter messages_dropped;    // sealrelay_messages_dropped_total: per recipient (exclusive policy)
  counter fallback_handoffs;   // sealrelay_fallback_handoffs_total: forced, TLS failed at every MX
  gauge fallback_link_up;      // sealrelay_fallback_links_up: shards linked to the sidecar
  gauge fallback_pending;      // sealrelay_fallback_pending: hand-offs awaiting the sidecar
  counter fallback_unavailable;  // sealrelay_fallback_unavailable_total: hand-offs kept queued
  counter fallback_outcome_pgp, fallback_outcome_smime, fallback_outcome_escrowed,
      fallback_outcome_defer;  // sealrelay_fallback_outcomes_total{outcome}: per recipient
  counter fallback_restarts;   // sealrelay_fallback_restarts_total: sidecar restarts
  counter auth_success, auth_failure, auth_rate_limited,
      auth_busy;  // sealrelay_auth_total{outcome}: submission AUTH attempts
  counter http_requests[std::size(http_code_labels)];  // sealrelay_http_requests_total{code}: API answers
  gauge http_connections;      // sealrelay_http_connections: open HTTP API connections
  counter dkim_signed;         // sealrelay_dkim_signed_total: messages DKIM-signed at intake
  counter dkim_failed;         // sealrelay_dkim_failed_total: signing failed, stored unsigned
  // sealrelay_bounces_total{class}: recipients bounced, by report::bounce_class (its token).
  counter bounces_by_class[report::bounce_class_count];
  // sealrelay_suppressed_total{action}: recipients on the suppression list refused at RCPT
  // ("refused") or dropped before delivery ("dropped").
  counter suppressed_refused, suppressed_dropped;
  counter suppression_added;   // sealrelay_suppression_added_total: addresses the bounces added
  gauge suppression_entries;   // sealrelay_suppression_entries: addresses on the list
  // Shaping (issue 14), one series per destination: the [[shaping]] names (a domain = "*"
  // entry sums its domains), then "default" (unshaped domains), in that order
  // (queue::shaping_stats).
  std::vector<counter> shaping_backoffs;   // sealrelay_shaping_backoffs_total{destination}
  std::vector<gauge> shaping_rate;         // sealrelay_shaping_message_rate_per_hour{destination}
  std::vector<gauge> shaping_connections;  // sealrelay_shaping_connections{destination}
  // Register the shaping series for `destinations` (start-up, before r.seal()).
  void add_shaping(registry& r, std::span<const std::string> destinations);

  // Return the deliveries counter for a negotiated version ("TLSv1.3"; "" = plaintext).
  const counter& deliveries(std::string_view tls_version) const;
  // Return the failures counter for `r` (a reason that is not a TLS failure: "other").
  const counter& tls_failure(report::reason r) const;
  // Store shard `shard`'s failure counts, indexed by report::reason, into its cells.
  void store_tls_failures(unsigned shard, std::span<const uint64_t, report::reason_count> by_reason) const;
};

}  // namespace sr::admin
