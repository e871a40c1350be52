// Where inbound SMTP puts accepted messages: the durable spool (the relay, through
// spool::intake) or nowhere (the sink). A store answers asynchronously, never from
// inside submit(), so the inbound session is never re-entered while it is feeding.
#pragma once
#include <sys/uio.h>

#include <span>
#include <string>

#include "sealrelay/inbound/session.hh"
#include "sealrelay/smtp/header_section.hh"
#include "sealrelay/spool/body_file.hh"
#include "sealrelay/spool/intake.hh"

namespace sr::server {

// The spool intake's client: on_stored(ok) once the message is durable (or failed).
using store_client = spool::intake_client;

class message_store {
 public:
  virtual ~message_store() = default;
  // A fresh queue id (needed before the body for the Received: header).
  virtual std::string next_queue_id() = 0;
  // Make `data` (Received: header + body pieces, CRLF line ends) durable under
  // `queue_id`; `data` must stay valid until client->on_stored(). `headers` is the
  // client's header section (for the record's meta: Message-ID, TLS-Required).
  virtual void submit(const std::string& queue_id, const inbound::envelope& env,
                      const smtp::header_section& headers, std::span<const iovec> data,
                      store_client* client) = 0;
  // Messages submitted and not yet answered.
  virtual size_t in_flight() const = 0;
  // Where a large message may stream its body (spool::body_file); "" = keep it in memory
  // and submit() it whole (the default).
  virtual std::string body_file_path(const std::string& queue_id, const smtp::header_section& headers) {
    (void)queue_id;
    (void)headers;
    return {};
  }
  // The keys that body file is sealed with (spool encryption at rest); null: plaintext.
  virtual std::shared_ptr<const spool::keyring> body_file_keys() { return nullptr; }
  // What must see a streamed message's bytes as they go to its body file (DKIM), or null;
  // its field goes in the prefix of submit_large(), above the Received: header.
  virtual std::unique_ptr<spool::stream_signer> signer_for(const smtp::header_section& headers) {
    (void)headers;
    return nullptr;
  }
  // Make a message durable whose body is in `file` (every append done): `prefix` (the
  // DKIM-Signature field if any, the Received: header) goes in front of it; both stay
  // valid until client->on_stored().
  virtual void submit_large(const std::string& queue_id, const inbound::envelope& env,
                            const smtp::header_section& headers, std::span<const iovec> prefix,
                            spool::body_file& file, store_client* client);
};

// Inbound SMTP onto the spool's intake: the envelope becomes the record's meta.
class intake_store final : public message_store {
 public:
  explicit intake_store(spool::intake& in) : _in(in) {}
  std::string next_queue_id() override { return _in.next_queue_id(); }
  void submit(const std::string& queue_id, const inbound::envelope& env,
              const smtp::header_section& headers, std::span<const iovec> data,
              store_client* client) override;
  size_t in_flight() const override { return _in.in_flight(); }
  std::string body_file_path(const std::string& queue_id, const smtp::header_section& headers) override {
    return _in.body_file_path(queue_id, headers.text());
  }
  std::shared_ptr<const spool::keyring> body_file_keys() override { return _in.body_file_keys(); }
  std::unique_ptr<spool::stream_signer> signer_for(const smtp::header_section& headers) override {
    return _in.signer_for(headers.text());
  }
  void submit_large(const std::string& queue_id, const inbound::envelope& env,
                    const smtp::header_section& headers, std::span<const iovec> prefix,
                    spool::body_file& file, store_client* client) override;

 private:
  spool::intake& _in;
};

}  // namespace sr::server
