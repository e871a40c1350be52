// Internal to src/fallback: what the escrow store's backends (sqlite_store, pg_store) share
// of their schema — the record's columns in the order both read and write them, the event
// columns a sweep or retraction returns, which states are still usable — and the Unix-time
// conversion of the timestamps both store as 64-bit seconds.
#pragma once
#include <chrono>
#include <cstdint>

#include "sealrelay/fallback/escrow_store.hh"

namespace sr::fallback::schema {

inline constexpr const char* columns =
    "link_hash, salt, sealed, msg_id, sender, recipient, created, expires, state, code_hash, "
    "code_expires, wrong_codes, views, last_viewed";
inline constexpr const char* events = "link_hash, msg_id, sender, recipient";
// Usable records: what a sweep or a retraction may change.
inline constexpr const char* usable = "state IN ('active', 'locked')";

inline int64_t to_unix(seconds_t t) { return t.time_since_epoch().count(); }
inline seconds_t from_unix(int64_t s) { return seconds_t{std::chrono::seconds{s}}; }

}  // namespace sr::fallback::schema
