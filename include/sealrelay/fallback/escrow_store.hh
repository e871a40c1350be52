// The escrow store (DESIGN.md §7): one record per escrowed message and recipient, holding
// only what cannot open it — the SHA-256 of the link id, the HKDF salt and the sealed bytes
// (escrow.hh seals with a key derived from the link secret, which is never stored). One
// interface, several backends (SQLite, PostgreSQL) and one test suite; the rules
// for codes, locking and expiry live here once (apply_*), the backends only keep bytes and
// run each change atomically. A store object is used from one thread at a time.
#pragma once
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "sealrelay/tls/seal.hh"
#include "sealrelay/util/result.hh"

namespace sr::fallback {

using link_hash = tls::sha256_digest;  // SHA-256 of the link id's text
using code_hash = tls::sha256_digest;  // SHA-256 of link hash || the 6-digit code
using seconds_t = std::chrono::sys_seconds;

inline constexpr int max_wrong_codes = 5;                        // then the record locks
inline constexpr std::chrono::seconds code_validity{10 * 60};  // a code lives 10 minutes

enum class escrow_state : uint8_t {
  active,     // readable with the link secret after a code
  expired,    // past escrow_expiry: sealed bytes wiped, the link shows no content
  retracted,  // the sender withdrew it: sealed bytes wiped
  locked,     // max_wrong_codes wrong codes: never opens again (bytes kept until expiry)
};
// Name a state as the store and the audit write it ("active", "locked", ...).
std::string_view to_string(escrow_state s);
// Parse what to_string() wrote; nullopt for anything else.
std::optional<escrow_state> escrow_state_from(std::string_view s);

// One escrowed message for one recipient.
struct escrow_record {
  link_hash link{};
  std::vector<uint8_t> salt;    // HKDF salt, random per record
  std::vector<uint8_t> sealed;  // tls::seal output; empty once expired or retracted
  std::string msg_id;           // Message-ID without <>, for retraction
  std::string sender;
  std::string recipient;
  seconds_t created{};
  seconds_t expires{};
  escrow_state state = escrow_state::active;
  std::optional<code_hash> code;  // the code issued last, until used or replaced
  seconds_t code_expires{};
  int wrong_codes = 0;  // over the record's life: a new code does not reset it
  int views = 0;
  seconds_t last_viewed{};
};

// Whether a record may be used now.
enum class access : uint8_t {
  ok,
  unknown,    // no record has that link hash
  expired,    // state expired, or active/locked past its expiry (before the sweep ran)
  retracted,
  locked,
};
// Name an access answer for logs and the audit ("ok", "expired", ...).
std::string_view to_string(access a);

// The answer to one code entered on the portal.
enum class code_verdict : uint8_t {
  accepted,      // right code in time: the code is spent
  wrong,         // counted; tries_left more before the lock
  locked_now,    // this wrong code was the last try: the record is locked
  no_code,       // none issued, or already spent (not counted)
  code_expired,  // the code is older than code_validity (not counted; it is dropped)
  refused,       // the record is unknown or unusable (why in code_try::refused)
};
// Name a code verdict for the audit ("accepted", "locked-now", ...).
std::string_view to_string(code_verdict v);

struct code_try {
  code_verdict verdict = code_verdict::refused;
  int tries_left = 0;              // wrong codes still allowed
  access refused = access::ok;     // why, when verdict is refused
};

// A record a sweep or a retraction changed, for the caller's audit line.
struct escrow_event {
  link_hash link{};
  std::string msg_id;
  std::string sender;
  std::string recipient;
};

// A counted view: the count after it, or why the record could not be viewed.
struct view_count {
  access why = access::unknown;
  int views = 0;
};

// Say whether `r` may be used at `now` (expiry counts even before expire() swept it).
access access_of(const escrow_record& r, seconds_t now);
// Issue a code on `r` (expires at now + code_validity); returns why not when not ok.
access apply_code_issue(escrow_record& r, const code_hash& code, seconds_t now);
// Judge a code entered at `now` against `r`, counting wrong ones and locking at the last.
code_try apply_code_try(escrow_record& r, const code_hash& code, seconds_t now);

class escrow_store {
 public:
  virtual ~escrow_store() = default;

  // Store a new record; an error when its link hash is already taken or the store fails.
  virtual status put(const escrow_record& r) = 0;
  // Return the record with that link hash, nullopt when there is none.
  virtual result<std::optional<escrow_record>> find_by_link_hash(const link_hash& link) = 0;
  // Retract every usable record of that Message-ID (wipes their sealed bytes); returns them.
  virtual result<std::vector<escrow_event>> retract_by_msg_id(std::string_view msg_id) = 0;
  // Expire every usable record whose expiry is <= now (wipes their sealed bytes); returns them.
  virtual result<std::vector<escrow_event>> expire(seconds_t now) = 0;

  // Record a newly issued code's hash (replacing an earlier one); `access::ok` when stored.
  result<access> record_code(const link_hash& link, const code_hash& code, seconds_t now);
  // Check an entered code atomically (two portal requests cannot both spend one try).
  result<code_try> try_code(const link_hash& link, const code_hash& code, seconds_t now);
  // Count a view of a usable record; returns the new count (the audit's "view" line).
  result<view_count> mark_viewed(const link_hash& link, seconds_t now);

 protected:
  // Run `change` on the record with that link hash inside one transaction and write back
  // its mutable fields (state, sealed, code, code_expires, wrong_codes, views, last_viewed)
  // when it returns true. false when there is no such record.
  virtual result<bool> modify(const link_hash& link,
                              const std::function<bool(escrow_record&)>& change) = 0;
};

}  // namespace sr::fallback
