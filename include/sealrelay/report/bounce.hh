// Bounce classification (issue 14): every permanent failure the relay reports (a remote 5xx,
// our own null MX / DNS / TLS give-ups, a queue-age expiry) falls into one class, written to
// the audit record (`bounce_class`) and counted in /metrics (sealrelay_bounces_total{class}).
// Pure: no I/O, no allocation. Order of evidence: our own reason (we know why we gave up),
// then the enhanced status code (RFC 3463, RFC 5248), then well-known reply texts of large
// providers (for replies without a code, or with a generic one such as 5.0.0 or 5.5.0).
#pragma once
#include <cstdint>
#include <optional>
#include <string_view>

#include "sealrelay/report/reason.hh"

namespace sr::report {

enum class bounce_class : uint8_t {
  bad_mailbox,   // the address does not exist or is disabled (5.1.1, 5.1.10, "user unknown"):
                 // the only class added to the suppression list
  mailbox_full,  // the mailbox exists but is over quota (5.2.2, "mailbox full")
  policy,        // refused for policy, spam, reputation, authentication (5.7.x, "blocked")
  dns,           // the domain cannot be reached by name: null MX, NXDOMAIN, no MX address (5.4.4)
  tls,           // no acceptable TLS: our policy's give-up, or the remote demands it (5.7.10)
  other,         // anything else (message too large, protocol errors, unknown texts)
};
inline constexpr unsigned bounce_class_count = unsigned(bounce_class::other) + 1;

// Return the audit token and metric label: "bad-mailbox", "mailbox-full", "policy", "dns",
// "tls", "other". Static storage.
std::string_view to_string(bounce_class c);
// Return the class whose token is `token`, or nullopt.
std::optional<bounce_class> bounce_class_from_token(std::string_view token);

// What is known about one failed recipient.
struct bounce_facts {
  report::reason reason = report::reason::none;  // our own reason (null_mx, a TLS failure, ...)
  std::string_view status;  // enhanced status code "5.1.1" ("" when none)
  std::string_view reply;   // the remote's reply line(s) "550 5.1.1 <a@b>: User unknown" ("" when none)
};

// Return the class of a permanent failure.
bounce_class classify_bounce(const bounce_facts& f);
// Return the class that the enhanced status code `status` alone gives ("5.1.1" -> bad_mailbox),
// or nullopt when the code is generic (X.0.0, X.5.x, ...) or not one of ours: then the text decides.
std::optional<bounce_class> class_of_status(std::string_view status);
// Return the class that well-known reply texts give ("no such user" -> bad_mailbox), or nullopt.
// Case-insensitive substring match over the whole reply.
std::optional<bounce_class> class_of_text(std::string_view reply);
// Return the enhanced status code at the start of a reply's text ("550-5.1.1 The..." -> "5.1.1"),
// or "" when the reply carries none. A view into `reply`.
std::string_view status_of_reply(std::string_view reply);

}  // namespace sr::report
