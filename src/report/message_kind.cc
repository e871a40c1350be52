// The audit tokens of report::message_kind (DESIGN.md §5 `kind`).
#include "sealrelay/report/message_kind.hh"

namespace sr::report {

const char* to_string(message_kind k) {
  switch (k) {
    case message_kind::message: return "message";
    case message_kind::dsn: return "dsn";
    case message_kind::escrow_notice: return "escrow-notice";
    case message_kind::tlsrpt: return "tlsrpt";
    case message_kind::pgp: return "pgp";
    case message_kind::smime: return "smime";
  }
  return "message";
}

}  // namespace sr::report
