// SMTP command-line codec: verb split and RFC 5321 path / ESMTP parameter syntax.
// Strict on the path (angle brackets required, ASCII only, no SMTPUTF8), lenient only where
// deployed clients commonly differ (spaces after "FROM:", lower-case verbs and keywords).
#include "sealrelay/smtp/command.hh"

#include <arpa/inet.h>

#include <cstring>

namespace sr::smtp {

namespace {

constexpr char to_upper(char c) { return (c >= 'a' && c <= 'z') ? char(c - 'a' + 'A') : c; }
constexpr bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
constexpr bool is_digit(char c) { return c >= '0' && c <= '9'; }
constexpr bool is_let_dig(char c) { return is_alpha(c) || is_digit(c); }

// RFC 5322 atext.
bool is_atext(char c) {
  if (is_let_dig(c)) return true;
  return c != '\0' && std::strchr("!#$%&'*+-/=?^_`{|}~", c) != nullptr;
}

std::string_view trim_left(std::string_view s) {
  while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
  return s;
}

bool valid_dot_string(std::string_view s) {
  if (s.empty() || s.front() == '.' || s.back() == '.') return false;
  char prev = 0;
  for (char c : s) {
    if (c == '.') {
      if (prev == '.') return false;
    } else if (!is_atext(c)) {
      return false;
    }
    prev = c;
  }
  return true;
}

// Quoted-string including its quotes: qtextSMTP / quoted-pairSMTP.
bool valid_quoted_string(std::string_view s) {
  if (s.size() < 2 || s.front() != '"' || s.back() != '"') return false;
  for (size_t i = 1; i + 1 < s.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c == '\\') {
      if (i + 2 >= s.size()) return false;  // the escape would eat the closing quote
      unsigned char n = static_cast<unsigned char>(s[++i]);
      if (n < 32 || n > 126) return false;
    } else if (c == '"' || c < 32 || c > 126) {
      return false;
    }
  }
  return true;
}

bool valid_ipv4(std::string_view s) {
  int parts = 0;
  size_t i = 0;
  while (true) {
    size_t start = i;
    unsigned v = 0;
    while (i < s.size() && is_digit(s[i]) && i - start < 3) v = v * 10 + unsigned(s[i++] - '0');
    if (i == start || v > 255) return false;
    ++parts;
    if (i == s.size()) break;
    if (s[i] != '.' || parts == 4) return false;
    ++i;
  }
  return parts == 4;
}

// Find the '>' closing a path that starts after '<' at s[0], skipping quoted strings.
size_t find_path_end(std::string_view s) {
  bool quoted = false;
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (quoted) {
      if (c == '\\') ++i;
      else if (c == '"') quoted = false;
    } else if (c == '"') {
      quoted = true;
    } else if (c == '>') {
      return i;
    }
  }
  return std::string_view::npos;
}

struct path_split {
  bool ok = false;
  std::string_view path;  // between < and >, source route removed
  std::string_view rest;  // after '>'
};

// Parse "<[A-d-l:]mailbox>" at the start of `s` (structure only; mailbox checked later).
path_split split_path(std::string_view s) {
  path_split r;
  if (s.empty() || s.front() != '<') return r;
  s.remove_prefix(1);
  size_t end = find_path_end(s);
  if (end == std::string_view::npos) return r;
  std::string_view path = s.substr(0, end);
  std::string_view rest = s.substr(end + 1);
  if (!rest.empty() && rest.front() != ' ') return r;
  if (!path.empty() && path.front() == '@') {
    // Source route (RFC 5321 4.1.1.3: accepted, ignored): "@a,@b:" before the mailbox.
    size_t colon = path.find(':');
    if (colon == std::string_view::npos) return r;
    std::string_view adl = path.substr(0, colon);
    while (!adl.empty()) {
      if (adl.front() != '@') return r;
      adl.remove_prefix(1);
      size_t comma = adl.find(',');
      std::string_view dom = adl.substr(0, comma);
      if (!valid_domain(dom)) return r;
      adl = comma == std::string_view::npos ? std::string_view{} : adl.substr(comma + 1);
      if (comma != std::string_view::npos && adl.empty()) return r;
    }
    path.remove_prefix(colon + 1);
  }
  r.ok = true;
  r.path = path;
  r.rest = rest;
  return r;
}

bool valid_keyword(std::string_view k) {
  if (k.empty() || !is_let_dig(k.front())) return false;
  for (char c : k)
    if (!is_let_dig(c) && c != '-') return false;
  return true;
}

bool valid_value(std::string_view v) {
  if (v.empty()) return false;
  for (char c : v) {
    unsigned char u = static_cast<unsigned char>(c);
    if (u < 33 || u > 126 || u == '=') return false;
  }
  return true;
}

// Take the prefix `word` (e.g. "FROM:") case-insensitively; false when absent.
bool take_prefix(std::string_view& s, std::string_view upper) {
  if (s.size() < upper.size() || !iequals(s.substr(0, upper.size()), upper)) return false;
  s.remove_prefix(upper.size());
  return true;
}

}  // namespace

command_line split_command(std::string_view line) {
  command_line c;
  size_t sp = line.find(' ');
  c.verb = line.substr(0, sp);
  if (sp == std::string_view::npos) return c;
  std::string_view arg = trim_left(line.substr(sp));
  while (!arg.empty() && arg.back() == ' ') arg.remove_suffix(1);
  c.arg = arg;
  return c;
}

bool iequals(std::string_view s, std::string_view upper) {
  if (s.size() != upper.size()) return false;
  for (size_t i = 0; i < s.size(); ++i)
    if (to_upper(s[i]) != upper[i]) return false;
  return true;
}

bool valid_domain(std::string_view d) {
  // 253 octets: a name's longest text form (255 on the wire, RFC 1035 2.3.4); anything
  // longer could never be looked up, and its policy never found.
  if (d.empty() || d.size() > 253) return false;
  size_t label = 0;
  char prev = '.';
  for (char c : d) {
    if (c == '.') {
      if (label == 0 || prev == '-') return false;
      label = 0;
    } else if (is_let_dig(c) || (c == '-' && label > 0)) {
      if (++label > 63) return false;
    } else {
      return false;
    }
    prev = c;
  }
  return label > 0 && prev != '-';
}

bool valid_address_literal(std::string_view lit) {
  if (lit.size() < 3 || lit.front() != '[' || lit.back() != ']') return false;
  std::string_view in = lit.substr(1, lit.size() - 2);
  if (take_prefix(in, "IPV6:")) {
    char buf[64];
    if (in.empty() || in.size() >= sizeof buf) return false;
    std::memcpy(buf, in.data(), in.size());
    buf[in.size()] = 0;
    unsigned char addr[16];
    return inet_pton(AF_INET6, buf, addr) == 1;
  }
  return valid_ipv4(in);
}

bool valid_mailbox(std::string_view m) {
  size_t at = m.rfind('@');
  if (at == std::string_view::npos) return false;
  std::string_view local = m.substr(0, at);
  std::string_view domain = m.substr(at + 1);
  if (local.empty() || local.size() > 64) return false;
  bool local_ok = local.front() == '"' ? valid_quoted_string(local) : valid_dot_string(local);
  if (!local_ok) return false;
  if (!domain.empty() && domain.front() == '[') return valid_address_literal(domain);
  return valid_domain(domain);
}

mail_parse parse_mail_from(std::string_view arg) {
  mail_parse r;
  if (!take_prefix(arg, "FROM:")) {
    r.err = path_error::syntax;
    return r;
  }
  path_split p = split_path(trim_left(arg));
  if (!p.ok || (!p.path.empty() && !valid_mailbox(p.path))) {
    r.err = path_error::bad_sender;
    return r;
  }
  r.value.address = p.path;
  std::string_view rest = trim_left(p.rest);
  while (!rest.empty()) {
    size_t sp = rest.find(' ');
    std::string_view param = rest.substr(0, sp);
    rest = sp == std::string_view::npos ? std::string_view{} : trim_left(rest.substr(sp));
    size_t eq = param.find('=');
    std::string_view key = param.substr(0, eq);
    std::string_view val = eq == std::string_view::npos ? std::string_view{} : param.substr(eq + 1);
    r.bad_param = param;
    if (!valid_keyword(key)) {
      r.err = path_error::bad_param;
      return r;
    }
    if (iequals(key, "SIZE")) {
      if (r.value.has_size || val.empty() || val.size() > 20) {
        r.err = path_error::bad_param;
        return r;
      }
      uint64_t v = 0;
      for (char c : val) {
        if (!is_digit(c)) {
          r.err = path_error::bad_param;
          return r;
        }
        unsigned d = unsigned(c - '0');
        v = (v > (UINT64_MAX - d) / 10) ? UINT64_MAX : v * 10 + d;
      }
      r.value.size = v;
      r.value.has_size = true;
    } else if (iequals(key, "BODY")) {
      if (r.value.body != body_type::none) {
        r.err = path_error::bad_param;
        return r;
      }
      if (iequals(val, "7BIT")) {
        r.value.body = body_type::seven_bit;
      } else if (iequals(val, "8BITMIME")) {
        r.value.body = body_type::eight_bit_mime;
      } else {
        r.err = path_error::bad_param;
        return r;
      }
    } else if (iequals(key, "REQUIRETLS")) {
      // RFC 8689 §2: a keyword without a value, at most once.
      if (r.value.requiretls || eq != std::string_view::npos) {
        r.err = path_error::bad_param;
        return r;
      }
      r.value.requiretls = true;
    } else {
      if (eq != std::string_view::npos && !valid_value(val)) {
        r.err = path_error::bad_param;
        return r;
      }
      r.err = path_error::unknown_param;
      return r;
    }
  }
  r.bad_param = {};
  return r;
}

rcpt_parse parse_rcpt_to(std::string_view arg) {
  rcpt_parse r;
  if (!take_prefix(arg, "TO:")) {
    r.err = path_error::syntax;
    return r;
  }
  path_split p = split_path(trim_left(arg));
  if (!p.ok || !valid_mailbox(p.path)) {
    r.err = path_error::bad_recipient;
    return r;
  }
  r.value.address = p.path;
  std::string_view rest = trim_left(p.rest);
  if (!rest.empty()) {
    r.bad_param = rest.substr(0, rest.find(' '));
    r.err = path_error::unknown_param;
  }
  return r;
}

std::string_view reply_for(path_error e) {
  switch (e) {
    case path_error::none: return "250 2.1.0 Ok";
    case path_error::syntax: return "501 5.5.4 Syntax error in parameters or arguments";
    case path_error::bad_sender: return "501 5.1.7 Bad sender address syntax";
    case path_error::bad_recipient: return "501 5.1.3 Bad recipient address syntax";
    case path_error::unknown_param: return "555 5.5.4 Unsupported option";
    case path_error::bad_param: return "501 5.5.4 Bad parameter syntax";
  }
  return "501 5.5.4 Syntax error";
}

}  // namespace sr::smtp
