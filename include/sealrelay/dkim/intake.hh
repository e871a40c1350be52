// dkim::signing_intake: DKIM signing at the one door every message passes, the spool's
// intake. It stands in front of a shard's spool::intake and is handed to every producer
// (inbound SMTP relay and submission, the HTTP API, TLS-RPT reports, DSNs, the sidecar's
// notices and PGP/S/MIME mails): a message whose From: domain has a [[dkim]] entry gets its
// DKIM-Signature field as one more iovec in front of the pieces it came in (so the spool
// holds the signed bytes and every delivery attempt sends them; nothing is signed twice),
// the body hashed where it lies. The field goes on top, above our Received: (RFC 6376
// §5.6: a signature is a trace field, placed before the existing Received fields).
// A large message streamed to a spool body file is hashed as it streams (signer_for()) and
// gets its field in front of the body file's record the same way. Ed25519 is signed inline; RSA goes to the sign_pool and the message waits (its client
// hears "stored" later, as the intake contract says anyway). A message whose signing
// fails is stored unsigned, with a warning: mail is not refused for want of a signature.
#pragma once
#include <sys/uio.h>

#include <list>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "sealrelay/core/shard.hh"
#include "sealrelay/dkim/pool.hh"
#include "sealrelay/dkim/signers.hh"
#include "sealrelay/spool/intake.hh"

namespace sr::dkim {

class signing_intake final : public spool::intake {
 public:
  // `inner` (the spool store) and `pool` (may be null: all inline) outlive this object;
  // `pool` must be attached to `sh` already.
  signing_intake(core::shard& sh, spool::intake& inner, signers s, sign_pool* pool);
  ~signing_intake() override;

  std::string next_queue_id() override { return _inner.next_queue_id(); }
  void submit(spool::message_meta meta, std::span<const iovec> data, spool::intake_client* client) override;
  void submit_owned(spool::message_meta meta, std::string text, std::function<void(bool)> stored) override;
  // Messages waiting for their signature plus those the spool has not answered.
  size_t in_flight() const override { return _inner.in_flight() + _signing; }
  std::string body_file_path(std::string_view queue_id, std::string_view header_section) override {
    return _inner.body_file_path(queue_id, header_section);
  }
  std::shared_ptr<const spool::keyring> body_file_keys() override { return _inner.body_file_keys(); }
  // A message streamed to a body file is signed on the way: its bytes are hashed as they
  // go to the file, the field computed at the end (same signers, pool and failure rule).
  std::unique_ptr<spool::stream_signer> signer_for(std::string_view header_section) override;

  struct counters {
    uint64_t signed_inline = 0, signed_pool = 0, failed = 0;
  };
  const counters& stats() const { return _stats; }

 private:
  struct pending;
  struct streamed;
  using pending_list = std::list<pending>;
  // Hash the message, then sign inline or on the pool; `then(field)` ("" when unsigned)
  // runs now or later on this shard.
  void sign(size_t entry, std::span<const std::span<const std::byte>> chunks, std::function<void(std::string)> then);
  void sign(size_t entry, result<signer::prepared> p, std::function<void(std::string)> then);
  void forward(pending_list::iterator it, std::string field);

  core::shard& _shard;
  spool::intake& _inner;
  signers _signers;
  sign_pool* _pool;
  size_t _signing = 0;                              // waiting for the pool
  std::vector<std::span<const std::byte>> _spans;   // scratch: the iovecs as byte spans
  pending_list _pending;                            // SMTP messages until the spool answers
  std::shared_ptr<bool> _alive = std::make_shared<bool>(true);  // pool answers after us are dropped
  counters _stats;
};

}  // namespace sr::dkim
