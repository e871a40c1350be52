// The hand-off point from the queue to the fallback (DESIGN.md §2 "fallback sidecar"):
// when a forced policy gives up on TLS, delivery passes the message and the reason here
// and the answer comes back later, as a completion, to set each recipient's outcome. The
// sidecar client (src/handoff) implements it; `unavailable_handoff` (no sidecar: the
// fallback.spawn = false relay before its sidecar connects, unit tests) answers
// `unavailable`: the message stays queued, is retried over TLS on the normal schedule
// (audit: deferred, reason fallback-unavailable) and bounces at max_queue_age.
#pragma once
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "sealrelay/policy/table.hh"
#include "sealrelay/report/reason.hh"

namespace sr::policy {

// The fallback's answer, named after the audit `outcome` it leads to (DESIGN.md §5).
enum class handoff_outcome : uint8_t {
  unavailable,  // no fallback answered: stays queued (deferred, reason fallback-unavailable)
  defer,        // the chain reached "defer": keep the message queued and retry over TLS
  escrowed,     // stored in escrow, the recipient got a notice
  pgp,          // re-encrypted with the recipient's PGP key and queued (opportunistic)
  smime,        // re-encrypted with the recipient's S/MIME certificate and queued
};
// Return the audit outcome token: "deferred" (unavailable, defer), "escrowed", "pgp", "smime".
const char* to_string(handoff_outcome o);

// One message for the fallback. Views are valid during hand_off() only (the sidecar client
// copies what it sends). The message is passed by reference: (segment, offset, length) are
// the message bytes inside its spool record, where the queue found them; the sidecar reads
// them there (and checks the record around them: header, CRC, envelope, queue id), never
// through the socket.
struct handoff_request {
  std::string_view queue_id;                          // the relay's id
  std::string_view from;                              // envelope sender ("" = null sender)
  std::span<const std::string_view> recipients;      // of this domain, without <>
  std::string_view domain;                            // recipient domain
  std::string_view segment;                           // spool segment holding the record
  uint64_t offset = 0, length = 0;                    // the message bytes within it
  report::reason reason = report::reason::none;       // last TLS reason, e.g. weak_cipher
  const effective_policy* policy = nullptr;           // fallback chain to walk
};

// Where the answer to one hand-off goes (the engine's object for that message).
class handoff_completion {
 public:
  // The fallback answered: one outcome per recipient of the request, in its order.
  virtual void handoff_done(std::span<const handoff_outcome> per_rcpt) = 0;

 protected:
  ~handoff_completion() = default;
};

// Implemented by the sidecar client; one per shard.
class fallback_handoff {
 public:
  virtual ~fallback_handoff() = default;
  // Hand `req` over; `done` gets the answer exactly once, on the shard's thread, possibly
  // before this returns (a fallback that cannot be reached answers at once).
  virtual void hand_off(const handoff_request& req, handoff_completion& done) = 0;
};

// Answer `o` for every recipient of `req`.
void answer_all(const handoff_request& req, handoff_completion& done, handoff_outcome o);

// No sidecar: no fallback can be reached.
class unavailable_handoff final : public fallback_handoff {
 public:
  // Answer `unavailable` at once.
  void hand_off(const handoff_request& req, handoff_completion& done) override {
    answer_all(req, done, handoff_outcome::unavailable);
  }
};


// Return whether `p`'s fallback chain has a method that needs the sidecar (anything but
// "defer"): a chain of only "defer" keeps retrying without a hand-off.
bool needs_handoff(const effective_policy& p);


}  // namespace sr::policy
