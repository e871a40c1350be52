// The AUTH codec (sasl.hh).
#include "sealrelay/smtp/sasl.hh"

#include "sealrelay/util/text.hh"

namespace sr::smtp {

std::string_view reply_of(auth_error e) {
  switch (e) {
    case auth_error::none: return {};
    case auth_error::syntax: return sasl_reply::syntax;
    case auth_error::unknown_mech: return sasl_reply::unknown_mech;
    case auth_error::bad_base64: return sasl_reply::bad_base64;
    case auth_error::cancelled: return sasl_reply::cancelled;
  }
  return sasl_reply::syntax;
}

auth_parse parse_auth(std::string_view arg) {
  auth_parse p;
  size_t sp = arg.find(' ');
  std::string_view mech = arg.substr(0, sp);
  std::string_view rest = sp == std::string_view::npos ? std::string_view{} : arg.substr(sp + 1);
  if (mech.empty() || rest.find(' ') != std::string_view::npos || (sp != std::string_view::npos && rest.empty())) {
    p.error = auth_error::syntax;
    return p;
  }
  if (iequals(mech, "PLAIN")) p.cmd.mech = sasl_mech::plain;
  else if (iequals(mech, "LOGIN")) p.cmd.mech = sasl_mech::login;
  else {
    p.error = auth_error::unknown_mech;
    return p;
  }
  if (rest.empty()) return p;
  if (rest == "=") {
    p.cmd.initial = std::string();
    return p;
  }
  auto r = parse_response(rest);
  if (r.error != auth_error::none) {
    p.error = r.error;
    return p;
  }
  p.cmd.initial = std::move(r.data);
  return p;
}

response_parse parse_response(std::string_view line) {
  response_parse r;
  if (line == "*") {
    r.error = auth_error::cancelled;
    return r;
  }
  auto d = decode_base64_strict(line);
  if (!d) r.error = auth_error::bad_base64;
  else r.data = std::move(*d);
  return r;
}

std::optional<credentials> parse_plain(std::string_view m) {
  size_t a = m.find('\0');
  if (a == std::string_view::npos) return std::nullopt;
  size_t b = m.find('\0', a + 1);
  if (b == std::string_view::npos || m.find('\0', b + 1) != std::string_view::npos) return std::nullopt;
  std::string_view authz = m.substr(0, a), authc = m.substr(a + 1, b - a - 1), pw = m.substr(b + 1);
  if (authc.empty() || pw.empty()) return std::nullopt;
  if (!authz.empty() && authz != authc) return std::nullopt;
  return credentials{std::string(authc), std::string(pw)};
}

}  // namespace sr::smtp
