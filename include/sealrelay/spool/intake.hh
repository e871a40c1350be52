// spool::intake: the one way a message enters the spool, whoever produced it: the SMTP
// relay and our DSNs today; submission, the HTTP API, TLS-RPT reports and escrow notices
// later. A message is durable (fsync'd, group commit) before its client hears "stored";
// the answer always comes later, never from inside submit(). What a message is travels
// in its message_meta (kind, REQUIRETLS, auth user, ...), written as a v2 record.
#pragma once
#include <sys/uio.h>

#include <cstddef>
#include <functional>
#include <span>
#include <string>

#include "sealrelay/spool/record.hh"

namespace sr::spool {

class intake_client {
 public:
  // The message is durable (ok) or could not be stored (disk full, I/O error).
  virtual void on_stored(bool ok) = 0;

 protected:
  ~intake_client() = default;
};

class intake {
 public:
  virtual ~intake() = default;
  // Return a fresh queue id (needed before the body for the Received: header).
  virtual std::string next_queue_id() = 0;
  // Make `data` durable under `meta` (meta.queue_id from next_queue_id()); `data` must
  // stay valid until client->on_stored(). Durable messages are queued for delivery.
  virtual void submit(message_meta meta, std::span<const iovec> data, intake_client* client) = 0;
  // Make a message we generated durable (the intake keeps `text` until then; an empty
  // queue id gets a fresh one), then call stored(ok).
  virtual void submit_owned(message_meta meta, std::string text, std::function<void(bool)> stored) = 0;
  // Messages submitted and not yet answered.
  virtual size_t in_flight() const = 0;
  // Where a large message with this queue id and header section may stream its bytes
  // (spool::body_file, then submit() with meta.external_body and no data); "" when it
  // must be submitted in memory (an intake that still has to read the whole message,
  // such as DKIM signing for the From domain of `header_section`).
  virtual std::string body_file_path(std::string_view queue_id, std::string_view header_section) {
    (void)queue_id;
    (void)header_section;
    return {};
  }
};

}  // namespace sr::spool
