// server::intake_store: what inbound SMTP accepted, handed to the spool's intake API
// as a v2 record of kind "message" (the envelope becomes the record's meta).
#include "sealrelay/server/store.hh"

namespace sr::server {

void intake_store::submit(const std::string& queue_id, const inbound::envelope& env,
                          std::span<const iovec> data, store_client* client) {
  spool::message_meta meta;
  meta.kind = spool::message_kind::message;
  meta.queue_id = queue_id;
  meta.mail_from = env.mail_from;
  meta.rcpts = env.rcpt_to;
  meta.body_8bitmime = env.body_8bitmime;
  meta.tls = env.tls;
  meta.auth_user = env.auth_user;
  _in.submit(std::move(meta), data, client);
}

}  // namespace sr::server
