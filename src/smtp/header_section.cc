// smtp::header_section and mailbox_addresses (header_section.hh). The section ends at the
// first empty line (CRLF CRLF, or a CRLF as the very first bytes); each new piece is searched
// together with the last three bytes kept, so a CRLF CRLF split across chunks is still found.
#include "sealrelay/smtp/header_section.hh"

#include <algorithm>
#include <strings.h>

namespace sr::smtp {
namespace {

bool wsp(char c) { return c == ' ' || c == '\t'; }

std::string_view trim(std::string_view v) {
  while (!v.empty() && (wsp(v.front()) || v.front() == '\r' || v.front() == '\n')) v.remove_prefix(1);
  while (!v.empty() && (wsp(v.back()) || v.back() == '\r' || v.back() == '\n')) v.remove_suffix(1);
  return v;
}

bool same_name(std::string_view a, std::string_view b) {
  return a.size() == b.size() && strncasecmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace

void header_section::clear() {
  _text.clear();
  _end = 0;
  _complete = false;
  _truncated = false;
}

void header_section::feed(std::span<const std::byte> bytes) {
  if (_complete || _truncated || bytes.empty()) return;
  std::string_view in(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  size_t old = _text.size();
  if (old < 2) {  // a CRLF as the very first bytes: no fields at all
    std::string head = _text + std::string(in.substr(0, 2 - old));
    if (head == "\r\n") {
      _complete = true;
      _end = 0;
      _text.clear();
      return;
    }
  }
  // Find the blank line in `in` before copying anything, so only the section is copied
  // (the body that shares its chunk is not): first where it straddles the bytes kept so
  // far, then inside `in`. `stop` = bytes of `in` up to and including the blank line.
  size_t stop = std::string_view::npos;
  size_t k = std::min<size_t>(old, 3);
  std::string window = _text.substr(old - k) + std::string(in.substr(0, 3));
  if (size_t w = window.find("\r\n\r\n"); w != std::string::npos) stop = w + 4 - k;
  else if (size_t f = in.find("\r\n\r\n"); f != std::string_view::npos) stop = f + 4;
  if (stop != std::string_view::npos && old + stop - 2 <= _cap) {
    // The last field's CRLF kept, the blank line's not (its CR may already be in _text).
    size_t len = old + stop - 2;
    if (len <= old) _text.resize(len);
    else _text.append(in.substr(0, stop - 2));
    _end = len;
    _complete = true;
    return;
  }
  // One byte past the cap is enough to know the section is too long.
  size_t take = std::min(in.size(), _cap + 1 - std::min(old, _cap + 1));
  _text.append(in.substr(0, take));
  // The last CRLF that ends within the cap, not the last one: when a single piece runs past
  // the cap, the lines before it are still the section's (tests/fuzz/headers_fuzz found the
  // whole piece losing them while the same bytes in two pieces kept them).
  size_t last = _cap >= 2 ? _text.rfind("\r\n", _cap - 2) : std::string::npos;
  if (last != std::string::npos) _end = std::max(_end, last + 2);
  if (_text.size() > _cap) {
    _truncated = true;
    _text.resize(_end);
  }
}

template <class F>
void header_section::each_field(F&& f) const {
  std::string_view t = text();
  size_t pos = 0;
  while (pos < t.size()) {
    size_t start = pos;
    // A field runs to the first CRLF not followed by white space (folding, RFC 5322 §2.2.3).
    size_t eol = t.find("\r\n", pos);
    while (eol != std::string_view::npos && eol + 2 < t.size() && wsp(t[eol + 2]))
      eol = t.find("\r\n", eol + 2);
    size_t stop = eol == std::string_view::npos ? t.size() : eol;
    pos = eol == std::string_view::npos ? t.size() : eol + 2;
    std::string_view line = t.substr(start, stop - start);
    if (line.empty() || wsp(line[0])) continue;  // a stray continuation: not a field
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    std::string_view name = line.substr(0, colon);
    while (!name.empty() && wsp(name.back())) name.remove_suffix(1);  // obs-optional WSP
    if (!f(name, line.substr(colon + 1))) return;
  }
}

std::optional<std::string> header_section::field(std::string_view name) const {
  std::optional<std::string> out;
  each_field([&](std::string_view n, std::string_view v) {
    if (!same_name(n, name)) return true;
    std::string s;
    s.reserve(v.size());
    for (size_t i = 0; i < v.size(); ++i) {
      if (v[i] == '\r' && i + 1 < v.size() && v[i + 1] == '\n') {
        ++i;
        continue;
      }
      s += v[i];
    }
    out = std::string(trim(s));
    return false;
  });
  return out;
}

size_t header_section::count(std::string_view name) const {
  size_t n = 0;
  each_field([&](std::string_view f, std::string_view) {
    if (same_name(f, name)) ++n;
    return true;
  });
  return n;
}

std::string message_id(const header_section& h) {
  auto v = h.field("message-id");
  if (!v) return {};
  std::string id;
  for (char c : *v)
    if (!wsp(c) && c != '<' && c != '>') id += c;
  if (id.size() > 998) return {};
  return id;
}

bool tls_required_no(const header_section& h) {
  auto v = h.field("tls-required");
  return v && same_name(*v, "no");
}

std::vector<std::string> mailbox_addresses(std::string_view value) {
  // Split at top-level ',' (and ';' ending a group), outside quotes, comments and <...>;
  // drop a group's "display-name:"; of each element keep the <angle-addr> when there is
  // one, else the addr-spec with comments and white space removed.
  std::vector<std::string> out;
  std::string plain;      // the element without comments, quotes kept
  std::string angle;      // inside <...>
  bool in_angle = false, had_angle = false, quoted = false;
  int comment = 0;
  auto finish = [&] {
    std::string a = had_angle ? angle : plain;
    std::string_view v = trim(a);
    if (!v.empty() && v.find('@') != std::string_view::npos) out.emplace_back(v);
    plain.clear();
    angle.clear();
    had_angle = in_angle = false;
  };
  for (size_t i = 0; i < value.size(); ++i) {
    char c = value[i];
    if (quoted) {
      if (c == '\\' && i + 1 < value.size()) {
        (in_angle ? angle : plain) += c;
        c = value[++i];
      } else if (c == '"') {
        quoted = false;
      }
      (in_angle ? angle : plain) += c;
      continue;
    }
    if (comment > 0) {
      if (c == '\\') ++i;
      else if (c == '(') ++comment;
      else if (c == ')') --comment;
      continue;
    }
    switch (c) {
      case '(': ++comment; break;
      case '"':
        quoted = true;
        (in_angle ? angle : plain) += c;
        break;
      case '<':
        in_angle = had_angle = true;
        angle.clear();
        break;
      case '>': in_angle = false; break;
      case ',':
      case ';':
        if (in_angle) angle += c;
        else finish();
        break;
      case ':':
        if (in_angle) angle += c;  // a source route "<@a:b@c>": keep the last part below
        else plain.clear();        // "group-name:" opens a group
        break;
      case ' ':
      case '\t':
      case '\r':
      case '\n':
        if (in_angle) break;
        plain += ' ';
        break;
      default: (in_angle ? angle : plain) += c;
    }
  }
  finish();
  for (auto& a : out) {
    size_t colon = a.rfind(':');  // obs-route inside <>
    if (colon != std::string::npos && a.find('"') == std::string::npos) a.erase(0, colon + 1);
    // A display name without angle brackets is not an address: "John a@b" keeps "a@b".
    if (a.find(' ') != std::string::npos && a.find('"') == std::string::npos) a = a.substr(a.rfind(' ') + 1);
  }
  // The route and display-name cuts above can leave a word without '@' ("<a@b:c>" -> "c",
  // "x@y z" -> "z"): that is no address (found by tests/fuzz/headers_fuzz), so it goes too,
  // and a From: of nothing else reads as unreadable (refused) rather than as a local name.
  std::erase_if(out, [](const std::string& a) {
    return a.empty() || a.front() == '@' || a.back() == '@' || a.find('@') == std::string::npos;
  });
  return out;
}

}  // namespace sr::smtp
