// A delivery job: the recipients of one spooled message that share one domain,
// owned by that domain's shard (hash(domain) % shards), or by the shard of its [[shaping]]
// destination (scheduler.hh: a provider's limits live on one shard). The message bytes stay in
// the home shard's spool segment; the owner reads them back when it sends.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "sealrelay/report/reason.hh"
#include "sealrelay/spool/record.hh"

namespace sr::config {
struct pool_entry;
struct shaping_entry;
}

namespace sr::queue {

// What a message is (message, dsn, escrow-notice, tlsrpt): the spool's record kind.
using message_kind = spool::message_kind;

// What became of one recipient in one attempt.
// dropped: exclusive policy found no acceptable TLS; final, no DSN unless the policy asks.
// escrowed, pgp, smime: forced policy's fallback took the message; final.
enum class rcpt_outcome : uint8_t { delivered, deferred, bounced, dropped, escrowed, pgp, smime };

struct job_rcpt {
  std::string address;
  uint32_t index = 0;      // position in the spooled envelope (for DONE records)
  unsigned attempts = 0;   // attempts made so far (recorded in the spool: survives a restart)
  std::string last_reply;  // for the DSN when it finally bounces
  std::string last_mx;
  report::reason last_reason = report::reason::none;  // our own reason when no reply (list, stats)
};

struct job {
  message_kind kind = message_kind::message;
  std::string queue_id;
  unsigned home = 0;          // shard whose spool partition holds the message
  std::string segment;        // spool segment path
  uint64_t offset = 0, length = 0;
  std::string mail_from;      // "" = null sender
  std::string domain;         // lower-case recipient domain
  std::vector<job_rcpt> rcpts;
  uint64_t received_ms = 0;   // unix ms (max_queue_age counts from here)
  uint64_t next_attempt_ms = 0;  // monotonic ms of the owner shard; 0 = now
  bool body_8bitmime = false;
  std::string msg_id;         // Message-ID header without <> (audit)
  bool requiretls = false;       // MAIL FROM ... REQUIRETLS (RFC 8689): verified TLS or bounce
  bool tls_required_no = false;  // "TLS-Required: No" (RFC 8689): MTA-STS and DANE ignored
  // The source IP pool its connections use (scheduler::choose_pool at enqueue); null =
  // none, the kernel picks the source address. Points into the process's config.
  const config::pool_entry* pool = nullptr;
  // Its [[shaping]] destination (null: none), once `shaping_known` (scheduler::enqueue may
  // first look up the domain's MX hosts). Not spooled: found again after a restart.
  const config::shaping_entry* shaping = nullptr;
  bool shaping_known = false;
  std::string body;           // message bytes once loaded (empty while waiting)
  // Operator control (sealrelay-queue, scheduler.hh): a held job is never taken (Postfix's
  // hold queue); a job taken by a connection is in flight until finish()/give_back(), and
  // a delete asked for meanwhile is applied then (delete_after: 1 = delete, 2 = with DSN).
  bool held = false;
  bool in_flight = false;
  bool unmetered = false;  // taken by take_unmetered (no message token to give back)
  uint8_t delete_after = 0;
};

// Return the lower-cased domain part of an address ("" when there is none).
std::string domain_of(const std::string& address);

// Return shard index that owns `domain` among `shards`.
unsigned owner_shard(const std::string& domain, unsigned shards);

}  // namespace sr::queue
