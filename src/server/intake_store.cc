// server::intake_store: what inbound SMTP accepted, handed to the spool's intake API
// as a v2 record of kind "message" (the envelope and a few header fields become the
// record's meta: Message-ID, REQUIRETLS, TLS-Required).
#include "sealrelay/server/store.hh"

#include <strings.h>

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
  if (auto id = headers.field("message-id")) {
    std::string_view v = *id;  // "<local@host>" -> "local@host" (the audit's msg_id)
    if (v.size() >= 2 && v.front() == '<' && v.back() == '>') v = v.substr(1, v.size() - 2);
    if (v.size() <= 998) meta.msg_id = std::string(v);
  }
  // RFC 8689 §3, §4.2.2: "TLS-Required: No" asks that MTA-STS and DANE be ignored (never the
  // configured [[policy]]); with REQUIRETLS on MAIL the field is ignored.
  if (!env.requiretls)
    if (auto v = headers.field("tls-required"); v && strcasecmp(v->c_str(), "no") == 0)
      meta.tls_required_no = true;
  _in.submit(std::move(meta), data, client);
}

}  // namespace sr::server
