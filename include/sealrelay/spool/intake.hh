// spool::intake: the one way a message enters the spool, whoever produced it: the SMTP
// relay and our DSNs today; submission, the HTTP API, TLS-RPT reports and escrow notices
// later. A message is durable (fsync'd, group commit) before its client hears "stored";
// the answer always comes later, never from inside submit(). What a message is travels
// in its message_meta (kind, REQUIRETLS, auth user, ...), written as a v2 record.
#pragma once
#include <sys/uio.h>

#include <cstddef>
#include <functional>
#include <memory>
#include <span>
#include <string>

#include "sealrelay/spool/record.hh"

namespace sr::spool {

class keyring;

class intake_client {
 public:
  // The message is durable (ok) or could not be stored (disk full, I/O error).
  virtual void on_stored(bool ok) = 0;

 protected:
  ~intake_client() = default;
};

// The signature of a message streamed to a body file (dkim::signing_intake): fed the
// message's bytes (header section, empty line, body) as they go to the file; at the end,
// finish() yields the trace field(s) to put in front of it ("" when none: not signed).
class stream_signer {
 public:
  virtual ~stream_signer() = default;
  virtual void feed(std::span<const std::byte> bytes) = 0;
  // Call `done(field)` once, now or later on this shard (an RSA signature on a pool);
  // not after this object is gone.
  virtual void finish(std::function<void(std::string field)> done) = 0;
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
  // must be submitted in memory.
  virtual std::string body_file_path(std::string_view queue_id, std::string_view header_section) {
    (void)queue_id;
    (void)header_section;
    return {};
  }
  // The keys a body file is sealed with (spool encryption at rest); null: plaintext.
  virtual std::shared_ptr<const keyring> body_file_keys() { return nullptr; }
  // For a message streamed to a body file: what must see its bytes on the way (DKIM
  // signing for the From domain of `header_section`), or null.
  virtual std::unique_ptr<stream_signer> signer_for(std::string_view header_section) {
    (void)header_section;
    return nullptr;
  }
};

}  // namespace sr::spool
