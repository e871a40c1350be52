// Names, the chain check and the start-up notice of the fallback hand-off.
#include "sealrelay/policy/fallback.hh"

#include <vector>

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

void answer_all(const handoff_request& req, handoff_completion& done, handoff_outcome o) {
  std::vector<handoff_outcome> all(req.recipients.size(), o);
  done.handoff_done(all);
}

}  // namespace sr::policy
