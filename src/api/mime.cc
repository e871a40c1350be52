// Builds the message the spool takes from a parsed API request. Every line ends in CRLF
// and stays within RFC 5322's 998 octets: text parts go 7bit (ASCII) or 8bit (UTF-8) when
// their lines fit and cannot be mistaken for a boundary, quoted-printable otherwise;
// attachments go base64 in 76-character lines; header text is RFC 2047-encoded unless it
// is short printable ASCII, file names RFC 2231-encoded unless they are plain ASCII.
#include "sealrelay/api/mime.hh"

#include <cstdio>

#include "sealrelay/util/text.hh"

namespace sr::api {
namespace {

constexpr std::size_t max_line = 998;

// Append `in` with every line end (CRLF, bare LF, bare CR) made CRLF, ending in CRLF;
// return the longest line's length (without its CRLF).
std::size_t append_crlf_lines(std::string& out, std::string_view in) {
  std::size_t longest = 0, line = 0;
  for (std::size_t i = 0; i < in.size(); ++i) {
    char c = in[i];
    if (c == '\r' || c == '\n') {
      if (c == '\r' && i + 1 < in.size() && in[i + 1] == '\n') ++i;
      out += "\r\n";
      line = 0;
      continue;
    }
    out.push_back(c);
    if (++line > longest) longest = line;
  }
  if (line > 0 || in.empty()) out += "\r\n";
  return longest;
}

bool is_ascii(std::string_view s) {
  for (unsigned char c : s)
    if (c >= 0x80) return false;
  return true;
}

bool has_8bit(std::string_view s) { return !is_ascii(s); }

// Quoted-printable (RFC 2045 §6.7) of CRLF-lined text: soft breaks keep lines at 76.
std::string quoted_printable(std::string_view crlf_text) {
  static const char hex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(crlf_text.size() + crlf_text.size() / 8);
  std::size_t pos = 0;
  while (pos < crlf_text.size()) {
    std::size_t eol = crlf_text.find("\r\n", pos);
    std::string_view line = crlf_text.substr(pos, eol - pos);
    std::size_t col = 0;
    for (std::size_t i = 0; i < line.size(); ++i) {
      unsigned char c = (unsigned char)line[i];
      bool last = i + 1 == line.size();
      bool literal = (c >= 33 && c <= 126 && c != '=') || ((c == ' ' || c == '\t') && !last);
      std::size_t width = literal ? 1 : 3;
      // Room for the soft break's '=' unless this is the line's last character.
      if (col + width > (last ? 76 : 75)) {
        out += "=\r\n";
        col = 0;
      }
      if (literal) {
        out.push_back(char(c));
      } else {
        out.push_back('=');
        out.push_back(hex[c >> 4]);
        out.push_back(hex[c & 15]);
      }
      col += width;
    }
    out += "\r\n";
    pos = eol + 2;
  }
  return out;
}

// The day and month names of RFC 5322 §3.3 (no locale).
std::string rfc5322_date(std::time_t t) {
  static const char* days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static const char* months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                 "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%s, %02d %s %04d %02d:%02d:%02d +0000", days[tm.tm_wday], tm.tm_mday,
                months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
  return buf;
}

// A quoted-string (RFC 5322 §3.2.4) of printable ASCII.
std::string quoted(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  out.push_back('"');
  return out;
}

// Append `; <name>="value"`, or RFC 2231 `name*=utf-8''%XX` (continued in 60-character
// sections, one a line) when the value is not printable ASCII.
void append_param(std::string& out, std::string_view name, std::string_view value) {
  bool plain = true;
  for (unsigned char c : value)
    if (c < 0x20 || c >= 0x7f) plain = false;
  if (plain && value.size() <= 60) {
    out += ";\r\n ";
    out += name;
    out += '=';
    out += quoted(value);
    return;
  }
  static const char hex[] = "0123456789ABCDEF";
  // A section ends only between characters: Python's email (and others) decode each
  // section on its own, so a UTF-8 sequence split across two reads as undecodable.
  std::vector<std::string> sections(1);
  std::string piece;
  for (std::size_t i = 0; i < value.size(); ++i) {
    unsigned char c = (unsigned char)value[i];
    bool attr_char = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                     std::string_view("!#$&+-.^_`|~").find(char(c)) != std::string_view::npos;
    if (attr_char) {
      piece.push_back(char(c));
    } else {
      piece += {'%', hex[c >> 4], hex[c & 15]};
    }
    bool char_ends = i + 1 == value.size() || ((unsigned char)value[i + 1] & 0xC0) != 0x80;
    if (!char_ends) continue;
    if (!sections.back().empty() && sections.back().size() + piece.size() > 50) sections.emplace_back();
    sections.back() += piece;
    piece.clear();
  }
  for (std::size_t i = 0; i < sections.size(); ++i) {
    out += ";\r\n ";
    out += name;
    if (sections.size() > 1) out += "*" + std::to_string(i);
    out += '*';
    out += '=';
    if (i == 0) out += "utf-8''";
    out += sections[i];
  }
}

// One MIME entity: its Content-* header lines (CRLF each) and its body (CRLF-ended).
struct entity {
  std::string headers;
  std::string body;
};

entity text_entity(std::string_view text, std::string_view subtype, std::string_view boundary_stem) {
  std::string lines;
  lines.reserve(text.size() + text.size() / 32 + 2);
  std::size_t longest = append_crlf_lines(lines, text);
  // A 7bit/8bit line that begins like one of our boundaries would end the part early.
  bool boundary_like = lines.find("--" + std::string(boundary_stem)) != std::string::npos;
  entity e;
  e.headers = "Content-Type: text/" + std::string(subtype) + "; charset=utf-8\r\n";
  if (longest <= max_line && !boundary_like) {
    e.headers += has_8bit(lines) ? "Content-Transfer-Encoding: 8bit\r\n" : "Content-Transfer-Encoding: 7bit\r\n";
    e.body = std::move(lines);
  } else {
    e.headers += "Content-Transfer-Encoding: quoted-printable\r\n";
    e.body = quoted_printable(lines);
  }
  return e;
}

entity attachment_entity(const attachment& a) {
  entity e;
  e.headers = "Content-Type: " + a.content_type;
  append_param(e.headers, "name", a.filename);
  e.headers += "\r\nContent-Disposition: attachment";
  append_param(e.headers, "filename", a.filename);
  e.headers += "\r\nContent-Transfer-Encoding: base64\r\n";
  e.body.reserve(a.data.size() / 3 * 4 + a.data.size() / 38 + 8);
  append_base64_lines(e.body, a.data);
  return e;
}

entity multipart(std::string_view subtype, const std::string& boundary, std::vector<entity> parts) {
  entity e;
  e.headers = "Content-Type: multipart/" + std::string(subtype) + ";\r\n boundary=" + quoted(boundary) + "\r\n";
  std::size_t n = 0;
  for (const entity& p : parts) n += p.headers.size() + p.body.size() + boundary.size() + 8;
  e.body.reserve(n + boundary.size() + 8);
  for (const entity& p : parts) {
    e.body += "--" + boundary + "\r\n";
    e.body += p.headers;
    e.body += "\r\n";
    e.body += p.body;
    e.body += "\r\n";  // the delimiter's own CRLF: the part keeps its last line end
  }
  e.body += "--" + boundary + "--\r\n";
  return e;
}

// Return whether the header section of CRLF-lined `msg` has a field named `name`.
bool has_field(std::string_view headers, std::string_view name) {
  std::size_t pos = 0;
  while (pos < headers.size()) {
    std::size_t eol = headers.find("\r\n", pos);
    if (eol == std::string_view::npos) eol = headers.size();
    std::string_view line = headers.substr(pos, eol - pos);
    std::size_t colon = line.find(':');
    if (colon != std::string_view::npos) {
      std::string_view n = line.substr(0, colon);
      while (!n.empty() && (n.back() == ' ' || n.back() == '\t')) n.remove_suffix(1);
      if (iequals(n, name)) return true;
    }
    pos = eol + 2;
  }
  return false;
}

// Check the header section of a raw message: field lines "name:" (printable ASCII
// name) or folded continuations; return its length (up to the blank line or the end).
std::optional<std::size_t> header_section(std::string_view msg) {
  std::size_t pos = 0;
  bool first = true;
  while (pos < msg.size()) {
    std::size_t eol = msg.find("\r\n", pos);
    std::string_view line = msg.substr(pos, eol - pos);
    if (line.empty()) return first ? std::nullopt : std::optional<std::size_t>(pos);
    if (line[0] == ' ' || line[0] == '\t') {
      if (first) return std::nullopt;
    } else {
      std::size_t colon = line.find(':');
      if (colon == 0 || colon == std::string_view::npos) return std::nullopt;
      for (unsigned char c : line.substr(0, colon))
        if (c < 33 || c > 126) return std::nullopt;
    }
    first = false;
    pos = eol + 2;
  }
  return first ? std::nullopt : std::optional<std::size_t>(pos);
}

build_result fail(uint16_t status, std::string error, std::string field) {
  build_result r;
  r.err = {status, std::move(error), std::move(field)};
  return r;
}

build_result finish(std::string text, const limits& l, std::string_view field) {
  if (text.size() > l.max_message_size)
    return fail(413, "the message is larger than " + std::to_string(l.max_message_size) + " bytes",
                std::string(field));
  build_result r;
  bool eight = has_8bit(text);
  r.message = built_message{std::move(text), eight};
  return r;
}

// Return what is wrong with the raw content's line ends, or nullptr: LF-only and CRLF-only
// text are both fine (normalised to CRLF), but a bare CR, or bare LFs mixed with CRLFs, is
// refused as inbound SMTP refuses it: a receiver that reads line ends differently from us
// could see a different message (SMTP smuggling).
const char* line_end_problem(std::string_view in) {
  bool crlf = false, bare_lf = false;
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '\r') {
      if (i + 1 >= in.size() || in[i + 1] != '\n') return "contains a bare CR (not followed by LF)";
      crlf = true;
      ++i;
    } else if (in[i] == '\n') {
      bare_lf = true;
    }
  }
  if (crlf && bare_lf) return "mixes CRLF and bare LF line ends";
  return nullptr;
}

build_result build_raw(const message_request& r, const build_params& p, const limits& l) {
  if (const char* why = line_end_problem(r.content)) return fail(400, why, "content");
  std::string msg;
  msg.reserve(r.content.size() + r.content.size() / 32 + 128);
  std::size_t longest = append_crlf_lines(msg, r.content);
  if (longest > max_line)
    return fail(400, "a line is longer than 998 octets (RFC 5322 §2.1.1)", "content");
  auto hs = header_section(msg);
  if (!hs) return fail(400, "does not start with RFC 5322 header fields", "content");
  std::string_view headers = std::string_view(msg).substr(0, *hs);
  std::string added;
  if (!has_field(headers, "Date")) added += "Date: " + rfc5322_date(p.now) + "\r\n";
  if (!has_field(headers, "Message-ID"))
    added += "Message-ID: <" + std::string(p.unique) + "@" + std::string(p.hostname) + ">\r\n";
  if (!added.empty()) msg.insert(0, added);
  return finish(std::move(msg), l, "content");
}

}  // namespace

std::string encode_header_text(std::string_view s, std::size_t first_line_used) {
  bool plain = s.find("=?") == std::string_view::npos;
  for (unsigned char c : s)
    if (c < 0x20 || c >= 0x7f) plain = false;
  if (plain && first_line_used + s.size() <= max_line) return std::string(s);
  // B words of at most 42 octets (56 base64 characters, 68 with "=?utf-8?B?" and "?=", so
  // "Subject: " and a word fit in 78),
  // never splitting a UTF-8 sequence (RFC 2047 §5: each word decodes on its own).
  std::string out;
  std::size_t pos = 0;
  while (pos < s.size()) {
    std::size_t n = std::min<std::size_t>(42, s.size() - pos);
    while (pos + n < s.size() && n > 1 && ((unsigned char)s[pos + n] & 0xC0) == 0x80) --n;
    if (!out.empty()) out += "\r\n ";
    out += "=?utf-8?B?";
    append_base64(out, s.substr(pos, n));
    out += "?=";
    pos += n;
  }
  return out;
}

build_result build_message(const message_request& r, const build_params& p, const limits& l) {
  if (r.raw) return build_raw(r, p, l);

  std::string unique(p.unique);
  std::string stem = "=_sr_" + unique;
  std::string msg;
  msg += "From: " + r.from + "\r\n";
  if (r.to.size() <= max_listed_recipients) {
    msg += "To: ";
    for (std::size_t i = 0; i < r.to.size(); ++i) {
      if (i) msg += ",\r\n ";
      msg += r.to[i];
    }
    msg += "\r\n";
  } else {
    msg += "To: undisclosed-recipients:;\r\n";
  }
  if (r.subject) msg += "Subject: " + encode_header_text(*r.subject, 9) + "\r\n";
  msg += "Date: " + rfc5322_date(p.now) + "\r\n";
  msg += "Message-ID: <" + unique + "@" + std::string(p.hostname) + ">\r\n";
  msg += "MIME-Version: 1.0\r\n";

  std::vector<entity> bodies;
  if (r.text) bodies.push_back(text_entity(*r.text, "plain", stem));
  if (r.html) bodies.push_back(text_entity(*r.html, "html", stem));
  std::vector<entity> top;
  if (bodies.size() == 2)
    top.push_back(multipart("alternative", stem + "_alt", std::move(bodies)));
  else if (bodies.size() == 1)
    top.push_back(std::move(bodies[0]));
  if (top.empty() && r.attachments.empty()) return fail(400, "content, text, html or attachments is needed", "");
  entity root;
  if (r.attachments.empty()) {
    root = std::move(top[0]);  // parse_request guarantees text, html or attachments
  } else {
    for (const attachment& a : r.attachments) top.push_back(attachment_entity(a));
    root = multipart("mixed", stem + "_mix", std::move(top));
  }
  msg += root.headers;
  msg += "\r\n";
  msg += root.body;
  return finish(std::move(msg), l, "");
}

}  // namespace sr::api
