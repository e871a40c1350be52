// Internal to src/tls: one session-ticket key set for every server context of the
// process, so a ticket issued by one shard resumes on any other (ticket_keys.cc).
#pragma once

struct WOLFSSL_CTX;

namespace sr::tls {

// Seal and open ctx's session tickets with the process-wide rotating keys; false on error.
bool use_shared_ticket_keys(WOLFSSL_CTX* ctx);

}  // namespace sr::tls
