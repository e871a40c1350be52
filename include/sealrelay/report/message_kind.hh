// report::message_kind: what a message is, one enum for the spool record (v2 `kind`
// byte: the values are on disk and never change), the queue and the audit's `kind`.
#pragma once
#include <cstdint>

namespace sr::report {

enum class message_kind : uint8_t {
  message = 0,        // relayed or submitted mail
  dsn = 1,            // a bounce we generated
  escrow_notice = 2,  // the escrow link sent in place of a message
  tlsrpt = 3,         // an RFC 8460 report we send
  pgp = 4,            // a forced domain's message re-encrypted as PGP/MIME by the fallback
  smime = 5,          // a forced domain's message re-encrypted as S/MIME by the fallback
};
// Return the audit token of `k` ("message", "dsn", "escrow-notice", "tlsrpt", "pgp",
// "smime").
const char* to_string(message_kind k);

}  // namespace sr::report
