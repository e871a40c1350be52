// server::intake_store: what inbound SMTP accepted, handed to the spool's intake API
// as a v2 record of kind "message" (the envelope and a few header fields become the
// record's meta: Message-ID, REQUIRETLS, TLS-Required).
#include "sealrelay/server/store.hh"

namespace sr::server {

void intake_store::submit(const std::string& queue_id, const inbound::envelope& env,
                          const smtp::header_section& headers, std::span<const iovec> data,
                          store_client* client) {
  spool::message_meta meta;
  meta.kind = spool::message_kind::message;
  meta.queue_id = queue_id;
  meta.mail_from = env.mail_from;
  meta.rcpts = env.rcpt_to;
  meta.body_8bitmime = env.body_8bitmime;
  meta.tls = env.tls;
  meta.requiretls = env.requiretls;
  meta.auth_user = env.auth_user;
  meta.msg_id = smtp::message_id(headers);  // the audit's msg_id
  // RFC 8689 §3, §4.2.2: "TLS-Required: No" asks that MTA-STS and DANE be ignored (never the
  // configured [[policy]]); with REQUIRETLS on MAIL the field is ignored.
  meta.tls_required_no = !env.requiretls && smtp::tls_required_no(headers);
  _in.submit(std::move(meta), data, client);
}

}  // namespace sr::server
