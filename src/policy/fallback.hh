// The hand-off point from the queue to the fallback (DESIGN.md §2 "fallback sidecar", issue
// 4): when a forced policy gives up on TLS, the queue passes the message and the reason
// here. The sidecar (escrow / PGP / S/MIME) comes later; until then `deferring_handoff`
// answers `defer` for every method: the message stays queued, is retried on the normal
// schedule and bounces at outbound.max_queue_age. The relay logs fallback_stub_notice() once.
#pragma once
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "policy/table.hh"
#include "report/reason.hh"

namespace sr::policy {

// The fallback's answer, named after the audit `outcome` it leads to (DESIGN.md §5).
enum class handoff_outcome : uint8_t {
  defer,     // not handled now: keep the message queued and retry over TLS
  escrowed,  // stored in escrow, the recipient got a notice
  pgp,       // re-encrypted with the recipient's PGP key and queued (opportunistic)
  smime,     // re-encrypted with the recipient's S/MIME certificate and queued
};
// Return the audit token: "deferred", "escrowed", "pgp", "smime".
const char* to_string(handoff_outcome o);

// One message for the fallback. Views are valid during the call only; the body is the
// spool's chunk chain as byte spans (the sidecar streams it, no copy is made here).
struct handoff_request {
  std::string_view queue_id;                          // the relay's id
  std::string_view from;                              // envelope sender ("" = null sender)
  std::span<const std::string_view> recipients;      // of this domain, without <>
  std::string_view domain;                            // recipient domain
  std::span<const std::span<const std::byte>> body;   // the message, in order
  report::reason reason = report::reason::none;       // last TLS reason, e.g. weak_cipher
  const effective_policy* policy = nullptr;           // fallback chain to walk
};

// Implemented by the sidecar client; one per shard.
class fallback_handoff {
 public:
  virtual ~fallback_handoff() = default;
  // Hand `req` to the fallback; the answer says what became of it.
  virtual handoff_outcome hand_off(const handoff_request& req) = 0;
};

// Until the sidecar exists: every method behaves as "defer".
class deferring_handoff final : public fallback_handoff {
 public:
  // Keep the message queued (normal retries, bounce at max_queue_age).
  handoff_outcome hand_off(const handoff_request&) override { return handoff_outcome::defer; }
};

// Return the one-line start-up notice that fallback methods currently defer.
std::string_view fallback_stub_notice();

}  // namespace sr::policy
