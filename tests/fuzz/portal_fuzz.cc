// libFuzzer target: what the escrow portal reads from any web client beyond the HTTP framing
// (the request parser has its own target, http): the /m/<id>/<secret>/... path, the code
// form body and the Cookie field (fallback/portal_request.cc). Byte 0 even: the input is an
// HTTP request, parsed by http::request_parser with the portal's kind of limits, then routed
// as portal_server.cc does; odd: path, body and Cookie value split at NUL bytes.
// Invariants: nothing crashes or hangs; the path's segments are at most max + 1 and rejoin
// into a prefix of the path; a token accepted is 1..max base64url characters; a form value
// is no longer than its raw text, equals it when nothing is escaped, and survives
// percent-encoding and decoding unchanged; at most 16 cookie values, each inside the field.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "check.hh"
#include "fallback/portal_request.hh"
#include "sealrelay/http/message.hh"

namespace {

namespace portal = sr::fallback::portal;

void check_token(std::string_view s, size_t max) {
  if (!portal::base64url_token(s, max)) return;
  CHECK(!s.empty() && s.size() <= max);
  for (char c : s)
    CHECK((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_');
}

void check_path(std::string_view path) {
  if (!path.starts_with("/m/")) return;
  std::string_view rest = path.substr(3);
  auto seg = portal::split_path(rest, 4);
  CHECK(seg.size() <= 5);
  std::string joined;
  for (size_t i = 0; i < seg.size(); ++i) {
    if (i) joined += '/';
    joined.append(seg[i]);
  }
  CHECK(rest.substr(0, joined.size()) == joined);
  if (seg.size() >= 2) {
    check_token(seg[0], 64);
    check_token(seg[1], 128);
  }
}

void check_form(std::string_view body) {
  auto v = portal::form_field(body, "code");
  if (!v) return;
  CHECK(v->size() <= body.size());
  // The raw value of the first "code" pair, as form_field() finds it.
  std::string_view raw;
  for (std::string_view b = body;;) {
    size_t amp = b.find('&');
    std::string_view pair = b.substr(0, amp);
    size_t eq = pair.find('=');
    if (pair.substr(0, eq) == "code") {
      raw = eq == std::string_view::npos ? std::string_view{} : pair.substr(eq + 1);
      break;
    }
    CHECK(amp != std::string_view::npos);
    b = b.substr(amp + 1);
  }
  CHECK(v->size() <= raw.size());
  if (raw.find_first_of("%+") == std::string_view::npos) CHECK(*v == raw);
  // What a browser sends for the value decodes back to it.
  std::string enc = "code=";
  static constexpr char hex[] = "0123456789ABCDEF";
  for (unsigned char c : *v) {
    enc += '%';
    enc += hex[c >> 4];
    enc += hex[c & 15];
  }
  auto back = portal::form_field(enc, "code");
  CHECK(back && *back == *v);
}

void check_cookies(std::string_view field) {
  auto vals = portal::cookie_values(field, "sr_portal");
  CHECK(vals.size() <= 16);
  for (std::string_view v : vals) {
    CHECK(v.data() >= field.data() && v.data() + v.size() <= field.data() + field.size());
    CHECK(v.find(';') == std::string_view::npos);
    check_token(v, 64);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size) {
  if (size < 1 || size > 16 * 1024) return -1;
  std::string_view in(reinterpret_cast<const char*>(bytes) + 1, size - 1);
  if (bytes[0] % 2 == 0) {
    sr::http::limits lim;
    lim.max_body = 4096;   // the portal's forms are small
    sr::http::request_parser p(lim);
    p.feed(in);
    if (p.status() != sr::http::parse_status::done) return 0;
    check_path(p.path());
    check_form(p.body());
    if (auto c = p.find("Cookie")) check_cookies(*c);
    return 0;
  }
  std::vector<std::string_view> parts;
  size_t start = 0;
  for (size_t i = 0; i <= in.size() && parts.size() < 3; ++i)
    if (i == in.size() || in[i] == '\0') {
      parts.push_back(in.substr(start, i - start));
      start = i + 1;
    }
  parts.resize(3);
  check_path(parts[0]);
  check_form(parts[1]);
  check_cookies(parts[2]);
  return 0;
}
