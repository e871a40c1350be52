// compose(): api::build_message, then the trace header in front (as inbound SMTP does in
// server::connection::begin_message) and the meta the spool record carries. The Received:
// header goes before the built text, so the message bytes themselves are never copied
// twice (dkim::signing_intake, behind the intake this is handed to, signs exactly what is stored).
#include "sealrelay/inject/compose.hh"

#include "sealrelay/smtp/header_section.hh"
#include "sealrelay/smtp/received.hh"

namespace sr::inject {

std::string token_name(std::size_t token_index) { return "api-token-" + std::to_string(token_index + 1); }

compose_result compose(const api::message_request& r, const compose_params& p, const api::limits& l) {
  compose_result out;
  api::build_params bp;
  bp.hostname = p.hostname;
  bp.unique = p.queue_id;
  bp.now = p.now;
  api::build_result built = api::build_message(r, bp, l);
  if (!built.ok()) {
    out.err = std::move(built.err);
    return out;
  }
  std::string name = token_name(p.token_index);
  smtp::received_info ri;
  ri.helo = name;
  ri.client_ip = p.client_ip;
  ri.hostname = p.hostname;
  ri.queue_id = p.queue_id;
  ri.http = true;
  ri.tls = p.tls;
  ri.tls_version = p.tls_version;
  ri.cipher = p.cipher;
  ri.cipher_bits = ri.cipher_alg_bits = p.cipher_bits;
  if (r.to.size() == 1) ri.single_rcpt = r.to[0];
  ri.when = p.now;

  composed c;
  smtp::append_received(c.text, ri);
  c.text.reserve(c.text.size() + built.message->text.size());
  c.text.append(built.message->text);
  c.meta.kind = spool::message_kind::message;
  c.meta.queue_id = std::string(p.queue_id);
  c.meta.mail_from = r.from;
  c.meta.rcpts = r.to;
  c.meta.body_8bitmime = built.message->eight_bit;
  c.meta.tls = p.tls;
  c.meta.auth_user = std::move(name);
  {
    // The same meta as for SMTP (server/intake_store.cc): the Message-ID for the audit, and
    // RFC 8689 §3's "TLS-Required: No" (waives MTA-STS and DANE, never the [[policy]]).
    smtp::header_section h;
    h.feed(std::as_bytes(std::span<const char>(built.message->text)));
    c.meta.msg_id = smtp::message_id(h);
    c.meta.tls_required_no = smtp::tls_required_no(h);
  }
  out.message = std::move(c);
  return out;
}

}  // namespace sr::inject
