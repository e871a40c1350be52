// compose(): api::build_message, then the trace header in front (as inbound SMTP does in
// server::connection::begin_message) and the meta the spool record carries. The Received:
// header goes before the built text, so the message bytes themselves are never copied
// twice; a DKIM signer hooked here would see exactly what is stored.
#include "sealrelay/inject/compose.hh"

#include "sealrelay/smtp/header_section.hh"
#include "sealrelay/smtp/received.hh"
#include "sealrelay/util/text.hh"

namespace sr::inject {

std::string token_name(std::size_t token_index) { return "api-token-" + std::to_string(token_index + 1); }

std::string message_id_of(std::string_view text) {
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t eol = text.find("\r\n", pos);
    if (eol == std::string_view::npos) eol = text.size();
    std::string_view line = text.substr(pos, eol - pos);
    if (line.empty()) break;  // end of the header section
    std::size_t colon = line.find(':');
    if (line[0] != ' ' && line[0] != '\t' && colon != std::string_view::npos) {
      std::string_view name = line.substr(0, colon);
      while (!name.empty() && (name.back() == ' ' || name.back() == '\t')) name.remove_suffix(1);
      if (iequals(name, "Message-ID")) {
        // The value with its continuation lines, without whitespace and angle brackets.
        std::string v(line.substr(colon + 1));
        std::size_t next = eol + 2;
        while (next < text.size() && (text[next] == ' ' || text[next] == '\t')) {
          std::size_t e = text.find("\r\n", next);
          if (e == std::string_view::npos) e = text.size();
          v.append(text.substr(next, e - next));
          next = e + 2;
        }
        std::string id;
        for (char c : v)
          if (c != ' ' && c != '\t' && c != '<' && c != '>') id.push_back(c);
        return id;
      }
    }
    pos = eol + 2;
  }
  return {};
}

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
  c.meta.msg_id = message_id_of(built.message->text);
  {
    // RFC 8689 §3, as for SMTP (server/intake_store.cc): "TLS-Required: No" waives MTA-STS
    // and DANE for this message (never the configured [[policy]]).
    smtp::header_section h;
    h.feed(std::as_bytes(std::span<const char>(built.message->text)));
    if (auto v = h.field("tls-required"); v && iequals(*v, "no")) c.meta.tls_required_no = true;
  }
  out.message = std::move(c);
  return out;
}

}  // namespace sr::inject
