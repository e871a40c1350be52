// server::intake_store: what inbound SMTP accepted, handed to the spool's intake API
// as a v2 record of kind "message" (the envelope and a few header fields become the
// record's meta: Message-ID, REQUIRETLS, TLS-Required).
#include "sealrelay/server/store.hh"
#include "sealrelay/util/duration.hh"

#include <chrono>
#include <memory>

namespace sr::server {
namespace {

spool::message_meta make_meta(const std::string& queue_id, const inbound::envelope& env,
                              const smtp::header_section& headers) {
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
  return meta;
}

}  // namespace

void intake_store::submit(const std::string& queue_id, const inbound::envelope& env,
                          const smtp::header_section& headers, std::span<const iovec> data,
                          store_client* client) {
  _in.submit(make_meta(queue_id, env, headers), data, client);
}

void message_store::submit_large(const std::string&, const inbound::envelope&,
                                 const smtp::header_section&, std::span<const iovec>,
                                 spool::body_file&, store_client* client) {
  client->on_stored(false);  // a store without body_file_path() never gets here
}

void intake_store::submit_large(const std::string& queue_id, const inbound::envelope& env,
                                const smtp::header_section& headers, std::span<const iovec> prefix,
                                spool::body_file& file, store_client* client) {
  // The body file gets its own complete record (the fallback sidecar reads it there) and
  // is durable before the segment's record names it; the 250 waits for both.
  auto meta = std::make_shared<spool::message_meta>(make_meta(queue_id, env, headers));
  meta->received_ms = unix_ms();
  file.finish(*meta, prefix, [this, meta, &file, client](bool ok) {
    if (!ok) {
      client->on_stored(false);
      return;
    }
    file.keep();
    _in.submit(std::move(*meta), {}, client);
  });
}

}  // namespace sr::server
