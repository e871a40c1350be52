// Names and the start-up notice of the fallback hand-off stub.
#include "policy/fallback.hh"

namespace sr::policy {

const char* to_string(handoff_outcome o) {
  switch (o) {
    case handoff_outcome::defer: return "deferred";
    case handoff_outcome::escrowed: return "escrowed";
    case handoff_outcome::pgp: return "pgp";
    case handoff_outcome::smime: return "smime";
  }
  return "?";
}

std::string_view fallback_stub_notice() {
  return "fallback sidecar not available yet: forced policies' fallback (pgp, smime, escrow) "
         "behaves as \"defer\" (keep retrying over TLS, bounce at outbound.max_queue_age)";
}

}  // namespace sr::policy
