// Registry storage and the Prometheus text rendering. Registration runs once at start-up
// (allocation and validation here); the hot path only touches cells.
#include "sealrelay/admin/metrics.hh"

#include <charconv>
#include <cstdlib>
#include <new>

#include "sealrelay/util/log.hh"

namespace sr::admin {

namespace detail {

uint64_t series_ref::sum() const {
  uint64_t s = 0;
  for (unsigned i = 0; i <= shards; ++i) s += at(i).load(std::memory_order_relaxed);
  return s;
}

series_ref inert_series() {
  // Writes from unregistered handles land here and are never shown.
  static std::atomic<uint64_t> sink[1];
  return series_ref{sink, 0, 0};
}

}  // namespace detail

namespace {

constexpr size_t cells_per_line = 64 / sizeof(std::atomic<uint64_t>);

[[noreturn]] void misuse(std::string_view name, const char* what) {
  SR_ERROR("metrics: %.*s: %s", int(name.size()), name.data(), what);
  std::abort();
}

bool valid_name(std::string_view n, bool allow_colon) {
  if (n.empty()) return false;
  for (size_t i = 0; i < n.size(); ++i) {
    char c = n[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
              (allow_colon && c == ':') || (i > 0 && c >= '0' && c <= '9');
    if (!ok) return false;
  }
  return true;
}

// Label values escape \, " and newline (exposition format 0.0.4).
void append_label_value(std::string_view v, std::string& out) {
  for (char c : v) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
}

// HELP text escapes \ and newline.
void append_help(std::string_view v, std::string& out) {
  for (char c : v) {
    if (c == '\\') out += "\\\\";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
}

}  // namespace

registry::registry(unsigned shards, unsigned max_series) : _shards(shards), _max_series(max_series) {
  _stride = (size_t(max_series) + cells_per_line - 1) / cells_per_line * cells_per_line;
  if (_stride == 0) _stride = cells_per_line;
  size_t n = (size_t(shards) + 1) * _stride;
  void* mem = ::operator new(n * sizeof(std::atomic<uint64_t>), std::align_val_t(64));
  _cells = static_cast<std::atomic<uint64_t>*>(mem);
  for (size_t i = 0; i < n; ++i) new (&_cells[i]) std::atomic<uint64_t>(0);
}

registry::~registry() { ::operator delete(_cells, std::align_val_t(64)); }

detail::series_ref registry::add(std::string_view name, std::string_view help, metric_type type,
                                 std::initializer_list<label> labels) {
  if (_sealed) misuse(name, "registered after seal()");
  if (!valid_name(name, true)) misuse(name, "not a valid metric name");
  if (_used >= _max_series) misuse(name, "registry full (raise max_series)");
  std::string rendered;
  if (labels.size()) {
    rendered += '{';
    bool first = true;
    for (const label& l : labels) {
      if (!valid_name(l.name, false) || l.name.starts_with("__")) misuse(name, "bad label name");
      if (!first) rendered += ',';
      first = false;
      rendered += l.name;
      rendered += "=\"";
      append_label_value(l.value, rendered);
      rendered += '"';
    }
    rendered += '}';
  }
  family* fam = nullptr;
  for (auto& f : _families)
    if (f.name == name) fam = &f;
  if (fam) {
    if (fam->type != type) misuse(name, "registered as both counter and gauge");
    for (const auto& s : fam->members)
      if (s.labels == rendered) misuse(name, "series registered twice");
  } else {
    _families.push_back(family{std::string(name), std::string(help), type, {}});
    fam = &_families.back();
  }
  uint32_t index = _used++;
  fam->members.push_back(series{std::move(rendered), index});
  return detail::series_ref{_cells + index, _stride, _shards};
}

counter registry::add_counter(std::string_view name, std::string_view help,
                              std::initializer_list<label> labels) {
  return counter(add(name, help, metric_type::counter, labels));
}

gauge registry::add_gauge(std::string_view name, std::string_view help,
                          std::initializer_list<label> labels) {
  return gauge(add(name, help, metric_type::gauge, labels));
}

void registry::render(std::string& out) const {
  char num[24];
  for (const auto& f : _families) {
    out += "# HELP ";
    out += f.name;
    out += ' ';
    append_help(f.help, out);
    out += "\n# TYPE ";
    out += f.name;
    out += f.type == metric_type::counter ? " counter\n" : " gauge\n";
    for (const auto& s : f.members) {
      detail::series_ref ref{_cells + s.index, _stride, _shards};
      uint64_t v = ref.sum();
      auto [end, ec] = f.type == metric_type::counter
                           ? std::to_chars(num, num + sizeof num, v)
                           : std::to_chars(num, num + sizeof num, int64_t(v));
      (void)ec;
      out += f.name;
      out += s.labels;
      out += ' ';
      out.append(num, size_t(end - num));
      out += '\n';
    }
  }
}

relay_metrics::relay_metrics(registry& r) {
  messages_accepted = r.add_counter("sealrelay_messages_accepted_total",
                                    "Messages accepted (made durable and answered 250, or 202 by the HTTP API).");
  messages_delivered = r.add_counter("sealrelay_messages_delivered_total",
                                     "Recipients delivered to their MX (one per recipient).");
  messages_deferred = r.add_counter("sealrelay_messages_deferred_total",
                                    "Recipient delivery attempts deferred for a retry.");
  messages_bounced = r.add_counter("sealrelay_messages_bounced_total",
                                   "Recipients bounced (permanent failure or queue age).");
  for (size_t i = 0; i < std::size(tls_labels); ++i)
    deliveries_by_tls[i] = r.add_counter(
        "sealrelay_deliveries_total",
        "Recipients delivered, by negotiated TLS version (plaintext = no TLS).",
        {{"tls", tls_labels[i]}});
  queue_depth = r.add_gauge("sealrelay_queue_depth", "Messages in the spool not yet final.");
  queue_oldest_age.reserve(r.shards());
  for (unsigned s = 0; s < r.shards(); ++s) {
    std::string shard = std::to_string(s);
    queue_oldest_age.push_back(r.add_gauge(
        "sealrelay_queue_oldest_age_seconds",
        "Age of the oldest message queued on the shard (0: none); rescanned every few seconds.",
        {{"shard", shard}}));
  }
  for (size_t p = 0; p < std::size(policy_labels); ++p)
    for (size_t s = 0; s < std::size(policy_source_labels); ++s)
      deliveries_by_policy[p * std::size(policy_source_labels) + s] = r.add_counter(
          "sealrelay_deliveries_by_policy_total",
          "Recipients delivered, by effective TLS policy and where it came from.",
          {{"policy", policy_labels[p]}, {"source", policy_source_labels[s]}});
  for (size_t i = 0; i < std::size(inbound_tls_labels); ++i)
    inbound_tls_handshakes[i] = r.add_counter("sealrelay_inbound_tls_handshakes_total",
                                              "Inbound SMTP TLS handshakes completed, by negotiated version.",
                                              {{"tls", inbound_tls_labels[i]}});
  inbound_tls_failures = r.add_counter("sealrelay_inbound_tls_failures_total",
                                       "Inbound SMTP TLS handshakes that failed.");
  connections_inbound = r.add_gauge("sealrelay_connections", "Open SMTP connections.",
                                    {{"direction", "inbound"}});
  connections_outbound = r.add_gauge("sealrelay_connections", "Open SMTP connections.",
                                     {{"direction", "outbound"}});
  dns_cache_hits = r.add_counter("sealrelay_dns_cache_hits_total",
                                 "DNS lookups answered from the shard's cache.");
  dns_cache_misses = r.add_counter("sealrelay_dns_cache_misses_total",
                                   "DNS lookups that went to a resolver.");
  mta_sts_fetches = r.add_counter("sealrelay_mta_sts_fetches_total", "MTA-STS policy fetches started.");
  mta_sts_fetch_failures = r.add_counter("sealrelay_mta_sts_fetch_failures_total",
                                         "MTA-STS policy fetches that failed or returned an invalid policy.");
  mta_sts_policies = r.add_gauge("sealrelay_mta_sts_policies",
                                 "MTA-STS cache entries in the shards (policies, and recent fetch failures).");
  for (unsigned i = 0; i < report::reason_count; ++i) {
    auto why = report::reason(i);
    if (why != report::reason::none && !report::is_tls_failure(why)) continue;
    tls_failures_by_reason[i] = r.add_counter(
        "sealrelay_tls_failures_total", "Outbound TLS failures and policy refusals, by reason.",
        {{"reason", why == report::reason::none ? std::string_view("other") : report::to_string(why)}});
  }
  audit_dropped = r.add_counter("sealrelay_audit_dropped_total",
                                "Audit records lost because a write to the audit file failed.");
  audit_write_errors = r.add_counter("sealrelay_audit_write_errors_total",
                                     "Writes to the audit file that failed.");
  audit_failing = r.add_gauge("sealrelay_audit_failing",
                              "Shards whose last audit write failed (/healthz is unhealthy while > 0).");
  messages_dropped = r.add_counter("sealrelay_messages_dropped_total",
                                   "Recipients dropped under an exclusive policy (no acceptable TLS).");
  fallback_handoffs = r.add_counter("sealrelay_fallback_handoffs_total",
                                    "Messages handed to the fallback after TLS failed at every MX (forced).");
  fallback_link_up = r.add_gauge("sealrelay_fallback_links_up",
                                 "Shards whose link to the fallback sidecar is up (0: sidecar down, "
                                 "forced messages stay queued).");
  fallback_pending = r.add_gauge("sealrelay_fallback_pending", "Hand-offs awaiting the sidecar's answer.");
  fallback_unavailable = r.add_counter("sealrelay_fallback_unavailable_total",
                                       "Hand-offs kept queued because the sidecar was down, slow or failed.");
  const char* help = "Recipients the fallback sidecar handled, by outcome.";
  fallback_outcome_pgp = r.add_counter("sealrelay_fallback_outcomes_total", help, {{"outcome", "pgp"}});
  fallback_outcome_smime = r.add_counter("sealrelay_fallback_outcomes_total", help, {{"outcome", "smime"}});
  fallback_outcome_escrowed =
      r.add_counter("sealrelay_fallback_outcomes_total", help, {{"outcome", "escrowed"}});
  fallback_outcome_defer = r.add_counter("sealrelay_fallback_outcomes_total", help, {{"outcome", "defer"}});
  fallback_restarts = r.add_counter("sealrelay_fallback_restarts_total",
                                    "Times the supervisor restarted the fallback sidecar.");
  const char* auth_help = "Submission AUTH attempts, by outcome (rate_limited: 421 and close; busy: 454).";
  auth_success = r.add_counter("sealrelay_auth_total", auth_help, {{"outcome", "success"}});
  auth_failure = r.add_counter("sealrelay_auth_total", auth_help, {{"outcome", "failure"}});
  auth_rate_limited = r.add_counter("sealrelay_auth_total", auth_help, {{"outcome", "rate_limited"}});
  auth_busy = r.add_counter("sealrelay_auth_total", auth_help, {{"outcome", "busy"}});
  for (size_t i = 0; i < std::size(http_code_labels); ++i)
    http_requests[i] = r.add_counter("sealrelay_http_requests_total",
                                     "HTTP injection API requests answered, by status code.",
                                     {{"code", http_code_labels[i]}});
  http_connections = r.add_gauge("sealrelay_http_connections", "Open HTTP injection API connections.");
  dkim_signed = r.add_counter("sealrelay_dkim_signed_total", "Messages DKIM-signed as they entered the spool.");
  dkim_failed = r.add_counter("sealrelay_dkim_failed_total",
                              "Messages of a [[dkim]] domain whose signing failed (stored unsigned).");
  for (unsigned i = 0; i < report::bounce_class_count; ++i)
    bounces_by_class[i] = r.add_counter("sealrelay_bounces_total",
                                        "Recipients bounced, by bounce class (bad-mailbox, mailbox-full, "
                                        "policy, dns, tls, other).",
                                        {{"class", report::to_string(report::bounce_class(i))}});
  const char* sup_help = "Recipients on the suppression list: refused at RCPT, or dropped before delivery.";
  suppressed_refused = r.add_counter("sealrelay_suppressed_total", sup_help, {{"action", "refused"}});
  suppressed_dropped = r.add_counter("sealrelay_suppressed_total", sup_help, {{"action", "dropped"}});
  suppression_added = r.add_counter("sealrelay_suppression_added_total",
                                    "Addresses added to the suppression list by bad-mailbox bounces.");
  suppression_entries = r.add_gauge("sealrelay_suppression_entries", "Addresses on the suppression list.");
}

const counter& relay_metrics::deliveries(std::string_view tls_version) const {
  if (tls_version.empty() || tls_version == "none") return deliveries_by_tls[0];
  for (size_t i = 1; i + 1 < std::size(tls_labels); ++i)
    if (tls_labels[i] == tls_version) return deliveries_by_tls[i];
  return deliveries_by_tls[std::size(tls_labels) - 1];
}

const counter& relay_metrics::tls_failure(report::reason r) const {
  return tls_failures_by_reason[report::is_tls_failure(r) ? unsigned(r) : 0u];
}

void relay_metrics::store_tls_failures(unsigned shard,
                                       std::span<const uint64_t, report::reason_count> by_reason) const {
  uint64_t other = 0;
  for (unsigned i = 0; i < report::reason_count; ++i) {
    if (report::is_tls_failure(report::reason(i)))
      tls_failures_by_reason[i].cell(shard).store(by_reason[i], std::memory_order_relaxed);
    else
      other += by_reason[i];
  }
  tls_failures_by_reason[0].cell(shard).store(other, std::memory_order_relaxed);
}

void relay_metrics::add_shaping(registry& r, std::span<const std::string> destinations) {
  for (const auto& d : destinations) {
    shaping_backoffs.push_back(r.add_counter("sealrelay_shaping_backoffs_total",
                                             "Back-offs started: a reply matched a back-off rule and the "
                                             "destination's message rate was lowered.",
                                             {{"destination", d}}));
    shaping_rate.push_back(r.add_gauge("sealrelay_shaping_message_rate_per_hour",
                                       "Messages per hour the destination may take now, after any back-off "
                                       "(0: no limit).",
                                       {{"destination", d}}));
    shaping_connections.push_back(r.add_gauge("sealrelay_shaping_connections",
                                              "Open outbound connections to the destination.",
                                              {{"destination", d}}));
  }
}

}  // namespace sr::admin
