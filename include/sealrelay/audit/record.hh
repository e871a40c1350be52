// One audit record (DESIGN.md §5) and its JSON-lines formatter.
// A record is a view: its strings point into the caller's data and only have to live
// until append()/format() returns. format() appends exactly one line ending in '\n' to a
// caller-owned buffer and allocates nothing once that buffer has grown to its working size.
// Absent optional fields are written as JSON null; field order is DESIGN.md §5's order.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "sealrelay/config/config.hh"
#include "sealrelay/report/bounce.hh"
#include "sealrelay/report/message_kind.hh"
#include "sealrelay/report/policy_source.hh"
#include "sealrelay/report/reason.hh"

namespace sr::audit {

// What the audited message is: the one enum of report/message_kind.hh.
using kind = report::message_kind;
// Where the effective policy came from: the one enum of report/policy_source.hh.
using report::policy_source;
// The certificate verdict: checked and recorded even when not enforced.
enum class cert_status : uint8_t {
  none,      // no TLS, so no certificate
  verified,  // chains to tls.ca_file (or DANE) and names the host
  invalid,   // checked and failed; the record's `reason` says why
};
// What became of this recipient on this attempt. deleted: the operator deleted it from
// the queue (sealrelay-queue delete, issue 13); final, no attempt made (mx and ip null).
// suppressed: the address is on the suppression list ([suppression], issue 14); final, no
// host contacted (mx and ip null).
enum class outcome : uint8_t { delivered, deferred, bounced, escrowed, pgp, smime, dropped, deleted, suppressed };

using report::to_string;  // kind, policy_source: their JSON tokens
// Return the JSON token: "none", "verified", "invalid".
const char* to_string(cert_status c);
// Return the JSON token: "delivered", "deferred", "bounced", "escrowed", "pgp", "smime",
// "dropped", "deleted", "suppressed".
const char* to_string(outcome o);

struct record {
  int64_t ts_ms = 0;                          // Unix time in ms (UTC); 0 = stamp at append
  std::string_view queue_id;                  // the relay's id
  std::optional<std::string_view> msg_id;     // Message-ID without <>; null when none
  audit::kind kind = audit::kind::message;
  std::string_view from;                      // envelope sender without <>; "" = null sender
  std::string_view rcpt;                      // envelope recipient without <>
  std::string_view domain;                    // recipient domain
  std::optional<std::string_view> mx;         // MX host tried; null when none was contacted
  std::optional<std::string_view> ip;         // address tried; null when none was contacted
  std::optional<std::string_view> source_ip;  // our address on that connection (a [[pool]]'s or the kernel's)
  unsigned attempt = 1;                       // 1 for this recipient's first attempt
  config::tls_policy policy = config::tls_policy::opportunistic;  // config::to_string
  policy_source source = policy_source::default_policy;  // JSON "policy_source"
  bool tls = false;
  std::optional<std::string_view> tls_version;  // "TLSv1.3"; null without TLS
  std::optional<std::string_view> cipher;       // IANA name; null without TLS
  std::optional<unsigned> cipher_bits;          // symmetric strength; null without TLS
  cert_status cert = cert_status::none;
  audit::outcome outcome = audit::outcome::delivered;
  report::reason reason = report::reason::none;  // its token; null when none
  std::optional<std::string_view> smtp_reply;   // the remote's last reply line, if any
  // Why a bounced recipient bounced (report/bounce.hh: "bad-mailbox", ...); null otherwise.
  std::optional<report::bounce_class> bounce_class;
};

// Longest input taken from one string field; longer values are cut at a UTF-8 boundary,
// which bounds a line (and so the writer's buffers) whatever a remote server sends.
inline constexpr size_t max_field_bytes = 1024;
// Upper bound of one formatted line (every field at max_field_bytes, all \u-escaped).
inline constexpr size_t max_line_bytes = 20 * (max_field_bytes * 6 + 32) + 512;

// Append one JSON line for `r` (ending in '\n') to `out`; ts_ms 0 is written as now.
void format(const record& r, std::string& out);
// Append `s`, cut to max_field_bytes, to `out` as a JSON string (quotes included),
// escaped by sr::append_json_string (util/json.hh).
void append_json_string(std::string_view s, std::string& out);
// Append `unix_ms` as RFC 3339 UTC with milliseconds, "2026-11-28T11:02:35.123Z".
void append_timestamp(int64_t unix_ms, std::string& out);
// Return the wall-clock time in Unix milliseconds.
int64_t now_unix_ms();

}  // namespace sr::audit
