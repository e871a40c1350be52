// RFC 8460 §3 grammar, as strictly as senders must read it:
//   tlsrpt-record = "v=TLSRPTv1" 1*(field-delim tlsrpt-field) [field-delim]
//   field-delim   = *WSP ";" *WSP
//   tlsrpt-rua    = "rua=" tlsrpt-uri *(*WSP "," *WSP tlsrpt-uri)
//   tlsrpt-extension = (ALPHA / DIGIT) *31(ALPHA / DIGIT / "_" / "-" / ".") "=" 1*(%x21-3A / %x3C / %x3E-7E)
#include "sealrelay/tlsrpt/record.hh"

#include <algorithm>
#include <cctype>

namespace sr::tlsrpt {
namespace {

bool is_wsp(char c) { return c == ' ' || c == '\t'; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_wsp(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_wsp(s.back())) s.remove_suffix(1);
  return s;
}

bool ext_name_ok(std::string_view n) {
  if (n.empty() || n.size() > 32 || !std::isalnum(static_cast<unsigned char>(n[0]))) return false;
  return std::all_of(n.begin(), n.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.';
  });
}

bool ext_value_ok(std::string_view v) {
  if (v.empty()) return false;
  return std::all_of(v.begin(), v.end(), [](char c) {
    auto u = static_cast<unsigned char>(c);
    return u >= 0x21 && u <= 0x7e && u != ';' && u != '=';
  });
}

int hex(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  c = char(std::tolower(static_cast<unsigned char>(c)));
  return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

// %-decode (RFC 3986); false on a broken escape.
bool pct_decode(std::string_view in, std::string& out) {
  out.clear();
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '%') {
      out += in[i];
      continue;
    }
    if (i + 2 >= in.size()) return false;
    int a = hex(in[i + 1]), b = hex(in[i + 2]);
    if (a < 0 || b < 0) return false;
    out += char(a * 16 + b);
    i += 2;
  }
  return true;
}

bool uri_chars_ok(std::string_view u) {
  // RFC 3986 characters only (no spaces, controls, quotes, angle brackets or ',' / ';'
  // which the record itself uses as delimiters).
  return !u.empty() && std::all_of(u.begin(), u.end(), [](char c) {
    auto x = static_cast<unsigned char>(c);
    return x > 0x20 && x < 0x7f && c != '"' && c != '<' && c != '>' && c != ',' && c != ';' &&
           c != '\\' && c != '^' && c != '`' && c != '{' && c != '|' && c != '}';
  });
}

bool mailbox_ok(std::string_view a) {
  size_t at = a.find('@');
  return at != std::string_view::npos && at > 0 && at + 1 < a.size() && a.find('@', at + 1) == std::string_view::npos &&
         std::none_of(a.begin(), a.end(), [](char c) { return static_cast<unsigned char>(c) <= 0x20 || c == '<' || c == '>'; });
}

bool starts_with_nocase(std::string_view s, std::string_view p) {
  if (s.size() < p.size()) return false;
  for (size_t i = 0; i < p.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(s[i])) != p[i]) return false;
  return true;
}

// One URI of a rua list: a usable mailto/https target, an unknown scheme (skipped), or broken.
enum class uri_verdict { usable, skipped, broken };

uri_verdict parse_uri(std::string_view u, rua_uri& out) {
  if (!uri_chars_ok(u)) return uri_verdict::broken;
  size_t colon = u.find(':');
  if (colon == std::string_view::npos || colon == 0) return uri_verdict::broken;
  out.text = std::string(u);
  if (starts_with_nocase(u, "mailto:")) {
    std::string_view rest = u.substr(7);
    rest = rest.substr(0, rest.find('?'));  // ?subject=... parameters are not ours to honour
    std::string addr;
    if (!pct_decode(rest, addr) || !mailbox_ok(addr)) return uri_verdict::broken;
    out.scheme = rua_uri::scheme::mailto;
    out.address = std::move(addr);
    return uri_verdict::usable;
  }
  if (starts_with_nocase(u, "https://")) {
    std::string_view rest = u.substr(8);
    size_t slash = rest.find_first_of("/?#");
    std::string_view authority = rest.substr(0, slash);
    std::string_view path = slash == std::string_view::npos ? std::string_view("/") : rest.substr(slash);
    path = path.substr(0, path.find('#'));
    if (authority.empty() || authority.find('@') != std::string_view::npos) return uri_verdict::broken;
    std::string_view host = authority;
    unsigned port = 443;
    if (host.front() == '[') return uri_verdict::broken;  // an IPv6 literal cannot carry a certificate name
    if (size_t c = host.rfind(':'); c != std::string_view::npos) {
      std::string_view p = host.substr(c + 1);
      host = host.substr(0, c);
      if (p.empty() || p.size() > 5 || !std::all_of(p.begin(), p.end(), [](char ch) { return ch >= '0' && ch <= '9'; }))
        return uri_verdict::broken;
      port = unsigned(std::stoul(std::string(p)));
      if (port == 0 || port > 65535) return uri_verdict::broken;
    }
    if (host.empty()) return uri_verdict::broken;
    out.scheme = rua_uri::scheme::https;
    out.host.clear();
    for (char c : host) out.host += char(std::tolower(static_cast<unsigned char>(c)));
    out.port = uint16_t(port);
    out.path = path.empty() ? std::string("/") : std::string(path);
    if (out.path.front() == '?') out.path.insert(out.path.begin(), '/');
    return uri_verdict::usable;
  }
  return uri_verdict::skipped;
}

// Does `txt` begin with the version tag (followed by the end or a delimiter)?
bool has_version(std::string_view txt) {
  constexpr std::string_view v = "v=TLSRPTv1";
  if (!txt.starts_with(v)) return false;
  std::string_view rest = trim(txt.substr(v.size()));
  return rest.empty() || rest.front() == ';';
}

}  // namespace

std::string record_name(std::string_view domain) {
  std::string n = "_smtp._tls.";
  n += domain;
  return n;
}

result<record> parse_record(std::string_view txt) {
  if (!has_version(txt)) return error{"does not begin with v=TLSRPTv1"};
  std::string_view rest = txt.substr(10);
  record rec;
  bool have_rua = false;
  bool first = true;
  while (!rest.empty()) {
    size_t semi = rest.find(';');
    std::string_view field = trim(rest.substr(0, semi));
    rest = semi == std::string_view::npos ? std::string_view{} : rest.substr(semi + 1);
    if (first) {
      // What follows the version tag before the first ';' must be blank.
      first = false;
      if (!field.empty()) return error{"text after v=TLSRPTv1 before ';'"};
      continue;
    }
    if (field.empty()) {
      // Only the optional trailing delimiter may leave an empty field.
      if (!trim(rest).empty()) return error{"empty field"};
      break;
    }
    size_t eq = field.find('=');
    if (eq == std::string_view::npos) return error{"field without '=': " + std::string(field)};
    std::string_view name = field.substr(0, eq), value = field.substr(eq + 1);
    if (name == "rua") {
      if (have_rua) return error{"more than one rua"};
      have_rua = true;
      size_t usable = 0;
      while (true) {
        size_t comma = value.find(',');
        std::string_view u = trim(value.substr(0, comma));
        rua_uri uri;
        switch (parse_uri(u, uri)) {
          case uri_verdict::broken: return error{"bad rua URI: \"" + std::string(u) + "\""};
          case uri_verdict::skipped: break;
          case uri_verdict::usable:
            ++usable;
            if (std::none_of(rec.rua.begin(), rec.rua.end(), [&](const rua_uri& r) { return r.text == uri.text; }))
              rec.rua.push_back(std::move(uri));
            break;
        }
        if (comma == std::string_view::npos) break;
        value = value.substr(comma + 1);
      }
      if (!usable) return error{"rua has no mailto: or https: URI"};
    } else if (!ext_name_ok(name) || !ext_value_ok(value)) {
      return error{"bad field: " + std::string(field)};
    }
  }
  if (first) return error{"no fields after v=TLSRPTv1"};
  if (!have_rua) return error{"no rua"};
  return rec;
}

result<record> pick_record(std::span<const std::string> texts) {
  const std::string* found = nullptr;
  for (const auto& t : texts) {
    if (!has_version(t)) continue;
    if (found) return error{"more than one v=TLSRPTv1 record"};
    found = &t;
  }
  if (!found) return error{"no v=TLSRPTv1 record"};
  return parse_record(*found);
}

}  // namespace sr::tlsrpt
