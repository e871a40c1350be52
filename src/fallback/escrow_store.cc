// The escrow rules every backend shares (escrow_store.hh): when a record is usable, how a
// code is issued and judged, and the store operations built on a backend's modify().
#include "sealrelay/fallback/escrow_store.hh"

namespace sr::fallback {

std::string_view to_string(escrow_state s) {
  switch (s) {
    case escrow_state::active: return "active";
    case escrow_state::expired: return "expired";
    case escrow_state::retracted: return "retracted";
    case escrow_state::locked: return "locked";
  }
  return "?";
}

std::optional<escrow_state> escrow_state_from(std::string_view s) {
  for (auto st : {escrow_state::active, escrow_state::expired, escrow_state::retracted,
                  escrow_state::locked})
    if (to_string(st) == s) return st;
  return std::nullopt;
}

std::string_view to_string(access a) {
  switch (a) {
    case access::ok: return "ok";
    case access::unknown: return "unknown";
    case access::expired: return "expired";
    case access::retracted: return "retracted";
    case access::locked: return "locked";
  }
  return "?";
}

std::string_view to_string(code_verdict v) {
  switch (v) {
    case code_verdict::accepted: return "accepted";
    case code_verdict::wrong: return "wrong";
    case code_verdict::locked_now: return "locked-now";
    case code_verdict::no_code: return "no-code";
    case code_verdict::code_expired: return "code-expired";
    case code_verdict::refused: return "refused";
  }
  return "?";
}

access access_of(const escrow_record& r, seconds_t now) {
  switch (r.state) {
    case escrow_state::expired: return access::expired;
    case escrow_state::retracted: return access::retracted;
    case escrow_state::active:
    case escrow_state::locked:
      // Expiry wins over a lock: an expired message says so, whatever happened before.
      if (now >= r.expires) return access::expired;
      return r.state == escrow_state::locked ? access::locked : access::ok;
  }
  return access::unknown;
}

access apply_code_issue(escrow_record& r, const code_hash& code, seconds_t now) {
  if (access a = access_of(r, now); a != access::ok) return a;
  r.code = code;
  r.code_expires = now + code_validity;
  return access::ok;
}

code_try apply_code_try(escrow_record& r, const code_hash& code, seconds_t now) {
  code_try t;
  if (access a = access_of(r, now); a != access::ok) {
    t.verdict = code_verdict::refused;
    t.refused = a;
    return t;
  }
  t.tries_left = max_wrong_codes - r.wrong_codes;
  if (!r.code) {
    t.verdict = code_verdict::no_code;
    return t;
  }
  if (now >= r.code_expires) {
    r.code.reset();
    t.verdict = code_verdict::code_expired;
    return t;
  }
  if (tls::equal_constant_time(*r.code, code)) {
    r.code.reset();  // one-time: a code opens once
    t.verdict = code_verdict::accepted;
    return t;
  }
  ++r.wrong_codes;
  t.tries_left = max_wrong_codes - r.wrong_codes;
  if (t.tries_left > 0) {
    t.verdict = code_verdict::wrong;
    return t;
  }
  t.tries_left = 0;
  r.state = escrow_state::locked;
  r.code.reset();
  t.verdict = code_verdict::locked_now;
  return t;
}

result<access> escrow_store::record_code(const link_hash& link, const code_hash& code,
                                         seconds_t now) {
  access out = access::unknown;
  auto found = modify(link, [&](escrow_record& r) {
    out = apply_code_issue(r, code, now);
    return out == access::ok;
  });
  if (!found) return error{found.err()};
  return out;
}

result<code_try> escrow_store::try_code(const link_hash& link, const code_hash& code,
                                        seconds_t now) {
  code_try out;
  out.refused = access::unknown;
  auto found = modify(link, [&](escrow_record& r) {
    const auto code_before = r.code;
    const int wrong_before = r.wrong_codes;
    const auto state_before = r.state;
    out = apply_code_try(r, code, now);
    return r.code != code_before || r.wrong_codes != wrong_before || r.state != state_before;
  });
  if (!found) return error{found.err()};
  return out;
}

result<view_count> escrow_store::mark_viewed(const link_hash& link, seconds_t now) {
  view_count out{access::unknown, 0};
  auto found = modify(link, [&](escrow_record& r) {
    out.why = access_of(r, now);
    if (out.why != access::ok) return false;
    out.views = ++r.views;
    r.last_viewed = now;
    return true;
  });
  if (!found) return error{found.err()};
  return out;
}

}  // namespace sr::fallback
