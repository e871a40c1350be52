// Escrow deposits and openings over an escrow_store (DESIGN.md §7). A deposit draws a link
// id (16 random bytes) and secret (32 random bytes), both URL-safe base64 without padding,
// for `<portal_url>/m/<id>/<secret>`; the store gets only SHA-256 of the id, a random salt
// and the message sealed (AES-256-GCM) with HKDF-SHA256(secret, salt), the record's link
// hash, recipient, sender and Message-ID bound as associated data. The secret and the id
// leave only in the returned link, so whoever holds just the store cannot read a message.
#pragma once
#include <chrono>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "sealrelay/fallback/escrow_store.hh"
#include "sealrelay/util/result.hh"

namespace sr::fallback::escrow {

inline constexpr std::size_t id_bytes = 16;      // 22 characters in the link
inline constexpr std::size_t secret_bytes = 32;  // 43 characters in the link

// What the notice's link carries.
struct link {
  std::string id;
  std::string secret;
};

// Seal `message` into a new record for `recipient`, usable until now + expiry; returns the
// link (the only copy of its secret). `msg_id` may carry its <>; they are dropped.
result<link> deposit(escrow_store& store, std::span<const uint8_t> message,
                     std::string_view msg_id, std::string_view sender,
                     std::string_view recipient, seconds_t now, std::chrono::seconds expiry);

enum class open_status : uint8_t {
  ok,
  unknown,       // no record for that id (or the id is malformed)
  expired,
  retracted,
  locked,        // 5 wrong codes
  wrong_secret,  // the record exists but the secret does not open it
};
// Name an open answer for the portal's log and the audit ("wrong-secret", ...).
std::string_view to_string(open_status s);

struct opened {
  open_status status = open_status::unknown;
  std::vector<uint8_t> message;  // only when status is ok
  int views = 0;                 // the view count after this one (for the audit line)
};

// Open the message of link (id, secret) at `now` and count the view; a store failure is an
// error, every refusal an open_status (locked only for the right secret, else wrong_secret).
result<opened> open(escrow_store& store, std::string_view id, std::string_view secret,
                    seconds_t now);
// Open like open() without counting a view (views stays 0): the portal checks a link's
// secret before it offers a code, and serves attachment downloads (audited on their own).
result<opened> peek(escrow_store& store, std::string_view id, std::string_view secret,
                    seconds_t now);

// A code to mail to the recipient, or why none was issued.
struct issued_code {
  access why = access::unknown;
  std::string code;       // six digits, when why is ok
  std::string recipient;  // where to mail it
};

// Draw a 6-digit code for the record of `id`, valid code_validity from `now` (it replaces
// an earlier one; wrong tries still count).
result<issued_code> issue_code(escrow_store& store, std::string_view id, seconds_t now);

// Check a code entered for the record of `id` (wrong ones count; the fifth locks).
result<code_try> check_code(escrow_store& store, std::string_view id, std::string_view code,
                            seconds_t now);

// Retract every record of a Message-ID (<> optional); returns them for the audit.
result<std::vector<escrow_event>> retract(escrow_store& store, std::string_view msg_id);

// Return the link hash of an id (SHA-256 of its text).
link_hash hash_link_id(std::string_view id);

}  // namespace sr::fallback::escrow
