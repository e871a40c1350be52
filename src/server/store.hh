// Where accepted messages go: the durable spool (the relay) or nowhere (the sink).
// A store answers asynchronously, never from inside submit(), so the inbound session
// is never re-entered while it is feeding.
#pragma once
#include <sys/uio.h>

#include <span>
#include <string>

#include "inbound/session.hh"

namespace sr::server {

class store_client {
 public:
  // The message is durable (ok) or could not be stored (disk full, I/O error).
  virtual void on_stored(bool ok) = 0;

 protected:
  ~store_client() = default;
};

class message_store {
 public:
  virtual ~message_store() = default;
  // A fresh queue id (needed before the body for the Received: header).
  virtual std::string next_queue_id() = 0;
  // Make `data` (Received: header + body pieces, CRLF line ends) durable under
  // `queue_id`; `data` must stay valid until client->on_stored().
  virtual void submit(const std::string& queue_id, const inbound::envelope& env,
                      std::span<const iovec> data, store_client* client) = 0;
  // Messages submitted and not yet answered.
  virtual size_t in_flight() const = 0;
};

}  // namespace sr::server
