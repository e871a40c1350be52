// What the escrow portal reads from a request besides the HTTP framing (src/http does
// that): the /m/<id>/<secret>/... path, the form body of the code page and the Cookie
// field. Pure functions, apart from portal_server.cc so tests/fuzz/portal_fuzz reaches them.
#include "portal_request.hh"

#include <algorithm>

namespace sr::fallback::portal {

bool base64url_token(std::string_view s, std::size_t max) {
  if (s.empty() || s.size() > max) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '_';
  });
}

std::vector<std::string_view> split_path(std::string_view path, std::size_t max) {
  std::vector<std::string_view> out;
  // Bounded by `max` segments.
  while (!path.empty() && out.size() <= max) {
    std::size_t slash = path.find('/');
    out.push_back(path.substr(0, slash));
    if (slash == std::string_view::npos) break;
    path.remove_prefix(slash + 1);
  }
  return out;
}

namespace {

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

std::optional<std::string> form_field(std::string_view body, std::string_view name) {
  // Bounded by the body (max_body).
  while (!body.empty()) {
    std::size_t amp = body.find('&');
    std::string_view pair = body.substr(0, amp);
    body = amp == std::string_view::npos ? std::string_view{} : body.substr(amp + 1);
    std::size_t eq = pair.find('=');
    if (pair.substr(0, eq) != name) continue;
    std::string_view raw = eq == std::string_view::npos ? std::string_view{} : pair.substr(eq + 1);
    std::string value;
    for (std::size_t i = 0; i < raw.size(); ++i) {
      if (raw[i] == '+') {
        value += ' ';
      } else if (raw[i] == '%' && i + 2 < raw.size() + 0 && hex_digit(raw[i + 1]) >= 0 &&
                 hex_digit(raw[i + 2]) >= 0) {
        value += static_cast<char>(hex_digit(raw[i + 1]) * 16 + hex_digit(raw[i + 2]));
        i += 2;
      } else {
        value += raw[i];
      }
    }
    return value;
  }
  return std::nullopt;
}

std::vector<std::string_view> cookie_values(std::string_view field, std::string_view name) {
  std::vector<std::string_view> out;
  // Bounded by the field's length.
  while (!field.empty() && out.size() < 16) {
    std::size_t semi = field.find(';');
    std::string_view pair = field.substr(0, semi);
    field = semi == std::string_view::npos ? std::string_view{} : field.substr(semi + 1);
    while (!pair.empty() && pair.front() == ' ') pair.remove_prefix(1);
    std::size_t eq = pair.find('=');
    if (eq != std::string_view::npos && pair.substr(0, eq) == name)
      out.push_back(pair.substr(eq + 1));
  }
  return out;
}

}  // namespace sr::fallback::portal
