// Token buckets, a site's message counting, and the back-off rules (shaping.hh). The
// built-in rules quote what the providers document for "you are sending too fast"; each
// only ever lowers a rate for a while, so a false match costs throughput, never mail.
#include "sealrelay/queue/shaping.hh"

#include <algorithm>
#include <cmath>

namespace sr::queue {

void token_bucket::refill(uint64_t now_ms) {
  if (_rate <= 0) return;
  if (now_ms > _last_ms) {
    _tokens = std::min(_capacity, _tokens + double(now_ms - _last_ms) * _rate / 1000.0);
    _last_ms = now_ms;
  }
}

void token_bucket::set_rate(double per_second, uint64_t now_ms) {
  refill(now_ms);
  if (_rate <= 0) _last_ms = now_ms;  // an unlimited bucket starts full now
  _rate = per_second > 0 ? per_second : 0;
  _capacity = std::max(1.0, _rate);
  _tokens = std::min(_tokens, _capacity);
}

uint64_t token_bucket::whole(uint64_t now_ms) {
  if (_rate <= 0) return UINT32_MAX;
  refill(now_ms);
  // A hair under 1 is 1: the sum of fractional refills must not lose a token to rounding.
  return uint64_t(std::floor(_tokens + 1e-9));
}

void token_bucket::take(uint64_t now_ms) {
  if (_rate <= 0) return;
  refill(now_ms);
  _tokens -= 1;
}

void token_bucket::refund() {
  if (_rate > 0) _tokens = std::min(_capacity, _tokens + 1);
}

void site_state::roll_minute(uint64_t now_ms) {
  if (now_ms < minute_start_ms + 60'000) return;
  last_minute = now_ms >= minute_start_ms + 120'000 ? 0 : this_minute;
  this_minute = 0;
  minute_start_ms = now_ms;
}

double site_state::observed_rate(uint64_t now_ms) {
  roll_minute(now_ms);
  // The busier of the last full minute and the current one so far, scaled to a minute.
  double elapsed = std::max<double>(1.0, double(now_ms - minute_start_ms) / 1000.0);
  double current = double(this_minute) / std::min(60.0, elapsed);
  double last = double(last_minute) / 60.0;
  return std::max({current, last, 1.0 / 60.0});
}

uint64_t per_hour(double per_second) { return per_second > 0 ? uint64_t(std::llround(per_second * 3600.0)) : 0; }

const std::vector<config::backoff_rule>& builtin_backoff_rules() {
  static const std::vector<config::backoff_rule> rules = [] {
    auto rule = [](const char* label, const char* match) {
      config::backoff_rule r;
      r.label = std::string("builtin:") + label;
      r.match = match;
      r.factor = 0.5;
      r.lasts = std::chrono::minutes(30);
      return r;
    };
    return std::vector<config::backoff_rule>{
        // Gmail: "421-4.7.28 ... unusual rate of unsolicited mail originating from your IP".
        rule("gmail-4.7.28", R"(^4[0-9][0-9][ -]4\.7\.28\b)"),
        // Yahoo and AOL: "421 4.7.0 [TSS04] Messages from ... temporarily deferred due to
        // unexpected volume or user complaints" (TS01-TS03 and TSS04 are their deferral codes).
        rule("yahoo-ts", R"(^4[0-9][0-9][ -].*\[TSS?0[1-9]\])"),
        // Microsoft (Outlook.com, Hotmail, Office 365): "451 4.7.650 ... temporarily rate
        // limited due to IP reputation", and the 4.7.500-4.7.699 "try again later" range.
        rule("microsoft-4.7.5xx-6xx", R"(^4[0-9][0-9][ -]4\.7\.[56][0-9][0-9]\b)"),
        // Anything that says so: "rate limited", "rate limit exceeded", "too many messages".
        rule("rate-limited", R"(^4[0-9][0-9][ -].*(rate[ -]?limit|too many messages|sending rate))"),
    };
  }();
  return rules;
}

backoff_rules::backoff_rules(const config::config& cfg) {
  auto add = [&](const config::backoff_rule& r) {
    // The loader compiled every operator rule once already: this cannot throw for those,
    // and the built-in ones are tested (tests/unit/queue/shaping_test.cc).
    _rules.emplace_back(&r, std::regex(r.match, std::regex::ECMAScript | std::regex::icase | std::regex::optimize));
  };
  for (const auto& r : cfg.backoff) add(r);
  if (cfg.outbound.backoff_defaults)
    for (const auto& r : builtin_backoff_rules()) add(r);
}

const config::backoff_rule* backoff_rules::match(std::string_view reply) const {
  if (reply.empty()) return nullptr;
  for (const auto& [rule, re] : _rules)
    if (std::regex_search(reply.begin(), reply.end(), re)) return rule;
  return nullptr;
}

}  // namespace sr::queue
