// Names, the chain check and the start-up notice of the fallback hand-off.
#include "sealrelay/policy/fallback.hh"

namespace sr::policy {

const char* to_string(handoff_outcome o) {
  switch (o) {
    case handoff_outcome::unavailable:
    case handoff_outcome::defer: return "deferred";
    case handoff_outcome::escrowed: return "escrowed";
    case handoff_outcome::pgp: return "pgp";
    case handoff_outcome::smime: return "smime";
  }
  return "deferred";
}

bool needs_handoff(const effective_policy& p) {
  for (fallback_method m : p.fallback)
    if (m != fallback_method::defer) return true;
  return false;
}

std::string_view fallback_stub_notice() {
  return "fallback sidecar not available yet: a forced policy's message whose MX hosts all "
         "failed TLS stays queued (audit: deferred, fallback-unavailable), is retried over TLS "
         "and bounces at outbound.max_queue_age";
}

}  // namespace sr::policy
