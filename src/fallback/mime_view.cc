// mime_view.hh: a small, forgiving MIME reader for display (RFC 2045-2047, 2231, 2387,
// 2392). It works on string_views of the message and allocates only for decoded bytes.
// Every loop walks its input once; recursion follows multipart nesting and stops at
// limits::max_depth. Leaf parts are sorted into the text, the HTML, inline images (a
// Content-ID the HTML refers to) and attachments; an inline image the HTML does not use,
// or cannot show (not a raster type, over the byte budget), is listed as an attachment.
#include "sealrelay/fallback/mime_view.hh"

#include <iconv.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <utility>

#include "sealrelay/fallback/sanitize.hh"
#include "sealrelay/util/text.hh"

namespace sr::fallback::mime {

namespace {

constexpr std::string_view replacement = "\xEF\xBF\xBD";  // U+FFFD
constexpr std::size_t max_header_fields = 1000;             // per entity
constexpr std::size_t max_param_sections = 64;             // RFC 2231 name*0 .. name*63

bool is_ws(char c) { return c == ' ' || c == '\t'; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && (is_ws(s.front()) || s.front() == '\r' || s.front() == '\n'))
    s.remove_prefix(1);
  while (!s.empty() && (is_ws(s.back()) || s.back() == '\r' || s.back() == '\n'))
    s.remove_suffix(1);
  return s;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool istarts_with(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && iequals(s.substr(0, prefix.size()), prefix);
}

// ---- byte decoders ----

int base64_value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+' || c == '-') return 62;  // '-' and '_': the URL-safe alphabet, seen in the wild
  if (c == '/' || c == '_') return 63;
  return -1;
}

// Decode base64, skipping line breaks and anything outside the alphabet, up to the padding.
std::string base64_decode(std::string_view in) {
  std::string out;
  out.reserve(in.size() / 4 * 3);
  uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    if (c == '=') break;
    int v = base64_value(c);
    if (v < 0) continue;
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xFF);
    }
  }
  return out;
}

// Decode quoted-printable (RFC 2045 §6.7): =XX, soft line breaks; a stray '=' stays.
std::string qp_decode(std::string_view in, bool header_q = false) {
  std::string out;
  out.reserve(in.size());
  for (std::size_t i = 0; i < in.size(); ++i) {
    char c = in[i];
    if (header_q && c == '_') {
      out += ' ';
      continue;
    }
    if (c != '=') {
      out += c;
      continue;
    }
    if (i + 2 < in.size() + 0 && in[i + 1] == '\r' && in[i + 2] == '\n') {
      i += 2;
      continue;
    }
    if (i + 1 < in.size() && in[i + 1] == '\n') {
      i += 1;
      continue;
    }
    if (i + 2 < in.size()) {
      int hi = hex_value(in[i + 1]), lo = hex_value(in[i + 2]);
      if (hi >= 0 && lo >= 0) {
        out += static_cast<char>(hi * 16 + lo);
        i += 2;
        continue;
      }
    }
    out += '=';
  }
  return out;
}

// Decode %XX escapes (RFC 2231 values, cid: URLs).
std::string pct_decode(std::string_view in) {
  std::string out;
  out.reserve(in.size());
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '%' && i + 2 < in.size()) {
      int hi = hex_value(in[i + 1]), lo = hex_value(in[i + 2]);
      if (hi >= 0 && lo >= 0) {
        out += static_cast<char>(hi * 16 + lo);
        i += 2;
        continue;
      }
    }
    out += in[i];
  }
  return out;
}

// ---- charsets ----

// Copy valid UTF-8, replacing invalid sequences with U+FFFD and dropping NUL.
std::string valid_utf8(std::string_view in) {
  std::string out;
  out.reserve(in.size());
  std::size_t i = 0;
  while (i < in.size()) {
    auto b = static_cast<unsigned char>(in[i]);
    if (b < 0x80) {
      if (b != 0) out += static_cast<char>(b);
      ++i;
      continue;
    }
    std::size_t n = b >= 0xF0 && b <= 0xF4 ? 4 : b >= 0xE0 ? 3 : b >= 0xC2 && b <= 0xDF ? 2 : 0;
    if (b >= 0xF5) n = 0;
    bool ok = n > 0 && i + n <= in.size();
    uint32_t cp = n == 2 ? b & 0x1F : n == 3 ? b & 0x0F : b & 0x07;
    for (std::size_t k = 1; ok && k < n; ++k) {
      auto cb = static_cast<unsigned char>(in[i + k]);
      if ((cb & 0xC0) != 0x80) ok = false;
      cp = (cp << 6) | (cb & 0x3F);
    }
    // Overlong forms, surrogates and values past U+10FFFF are not UTF-8.
    if (ok && ((n == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
               (n == 4 && (cp < 0x10000 || cp > 0x10FFFF))))
      ok = false;
    if (ok) {
      out.append(in.substr(i, n));
      i += n;
    } else {
      out += replacement;
      ++i;
    }
  }
  return out;
}

std::string latin1_to_utf8(std::string_view in) {
  std::string out;
  out.reserve(in.size() + in.size() / 4);
  for (char ch : in) {
    auto b = static_cast<unsigned char>(ch);
    if (b == 0) continue;
    if (b < 0x80) {
      out += static_cast<char>(b);
    } else {
      out += static_cast<char>(0xC0 | (b >> 6));
      out += static_cast<char>(0x80 | (b & 0x3F));
    }
  }
  return out;
}

std::string iconv_to_utf8(std::string_view in, const std::string& charset) {
  iconv_t cd = ::iconv_open("UTF-8", charset.c_str());
  if (cd == reinterpret_cast<iconv_t>(-1)) return valid_utf8(in);
  std::string out;
  out.reserve(in.size() * 2 + 16);
  char* src = const_cast<char*>(in.data());
  std::size_t src_left = in.size();
  char buf[4096];
  // Bounded: every round consumes input, writes a full buffer, or skips one bad byte.
  while (src_left > 0) {
    char* dst = buf;
    std::size_t dst_left = sizeof buf;
    std::size_t r = ::iconv(cd, &src, &src_left, &dst, &dst_left);
    out.append(buf, static_cast<std::size_t>(dst - buf));
    if (r != static_cast<std::size_t>(-1)) break;
    if (errno == E2BIG) continue;
    out += replacement;
    if (errno == EINVAL) break;  // an incomplete sequence at the end
    ++src;                       // EILSEQ: skip the byte that does not convert
    --src_left;
  }
  ::iconv_close(cd);
  return valid_utf8(out);  // also drops NUL
}

// ---- header fields ----

struct field {
  std::string_view name;
  std::string value;  // unfolded (line breaks removed), not decoded
};

struct entity {
  std::vector<field> fields;
  std::string_view body;
  // Return the first field called `name`, unfolded; "" when absent.
  std::string_view get(std::string_view name) const {
    for (const auto& f : fields)
      if (iequals(f.name, name)) return f.value;
    return {};
  }
};

// Split `raw` into header fields and body at the first empty line (CRLF or LF).
entity split_entity(std::string_view raw) {
  entity e;
  std::size_t pos = 0;
  while (pos < raw.size()) {
    std::size_t eol = raw.find('\n', pos);
    std::size_t end = eol == std::string_view::npos ? raw.size() : eol;
    std::size_t next = eol == std::string_view::npos ? raw.size() : eol + 1;
    std::string_view line = raw.substr(pos, end - pos);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    pos = next;
    if (line.empty()) {
      e.body = raw.substr(next);
      return e;
    }
    if (is_ws(line.front())) {
      if (!e.fields.empty()) e.fields.back().value.append(line);  // unfolding: drop the break
      continue;
    }
    std::size_t colon = line.find(':');
    if (colon == std::string_view::npos) continue;  // not a field (e.g. an mbox "From " line)
    if (e.fields.size() >= max_header_fields) continue;
    e.fields.push_back({trim(line.substr(0, colon)), std::string(line.substr(colon + 1))});
  }
  return e;  // no body
}

// ---- parameters (RFC 2045 §5.1, RFC 2231) ----

struct param {
  std::string name;  // lower case, with any RFC 2231 "*N" / "*" suffix
  std::string value; // unquoted
};

struct header_value {
  std::string token;  // "multipart/mixed", "attachment" (lower case)
  std::vector<param> params;
};

// Skip a (comment), nested; returns the index after it (at most s.size()).
std::size_t skip_comment(std::string_view s, std::size_t i) {
  int depth = 0;
  for (; i < s.size(); ++i) {
    if (s[i] == '\\') {
      ++i;
    } else if (s[i] == '(') {
      ++depth;
    } else if (s[i] == ')') {
      if (--depth == 0) return i + 1;
    }
  }
  return s.size();  // unclosed, or a trailing backslash stepped past the end
}

header_value parse_header_value(std::string_view s) {
  header_value hv;
  std::size_t i = 0;
  auto skip_space = [&] {
    while (i < s.size()) {
      if (is_ws(s[i]) || s[i] == '\r' || s[i] == '\n') ++i;
      else if (s[i] == '(') i = skip_comment(s, i);
      else break;
    }
  };
  skip_space();
  std::size_t start = i;
  while (i < s.size() && s[i] != ';' && !is_ws(s[i]) && s[i] != '(') ++i;
  hv.token = lower(s.substr(start, i - start));
  // Bounded: every round consumes at least the ';' or one character.
  while (i < s.size()) {
    skip_space();
    if (i >= s.size()) break;
    if (s[i] != ';') {
      ++i;  // junk after the token or a value: skip it
      continue;
    }
    ++i;  // ';'
    skip_space();
    std::size_t ns = i;
    while (i < s.size() && s[i] != '=' && s[i] != ';' && !is_ws(s[i])) ++i;
    std::string name = lower(s.substr(ns, i - ns));
    skip_space();
    if (i >= s.size() || s[i] != '=') continue;
    ++i;
    skip_space();
    std::string value;
    if (i < s.size() && s[i] == '"') {
      ++i;
      while (i < s.size() && s[i] != '"') {
        if (s[i] == '\\' && i + 1 < s.size()) ++i;
        value += s[i++];
      }
      if (i < s.size()) ++i;  // closing quote
    } else {
      std::size_t vs = i;
      while (i < s.size() && s[i] != ';' && !is_ws(s[i])) ++i;
      value = std::string(s.substr(vs, i - vs));
    }
    if (!name.empty() && hv.params.size() < 256) hv.params.push_back({name, value});
  }
  return hv;
}

const param* find_param(const header_value& hv, std::string_view name) {
  for (const auto& p : hv.params)
    if (p.name == name) return &p;
  return nullptr;
}

// Return a parameter's value in UTF-8: RFC 2231 (name*, name*0*, ...) first, then the plain
// one (which some mailers fill with RFC 2047 words). nullopt when absent.
std::optional<std::string> get_param(const header_value& hv, std::string_view name) {
  std::string n(name);
  std::string charset;
  std::string bytes;
  bool found = false;
  auto take_extended = [&](std::string_view v, bool first) {
    // charset'language'%XX-encoded (the charset and language only in the first section)
    if (first) {
      std::size_t q1 = v.find('\'');
      std::size_t q2 = q1 == std::string_view::npos ? q1 : v.find('\'', q1 + 1);
      if (q2 != std::string_view::npos) {
        charset = std::string(v.substr(0, q1));
        v = v.substr(q2 + 1);
      }
    }
    bytes += pct_decode(v);
  };
  if (const param* p = find_param(hv, n + "*")) {
    take_extended(p->value, true);
    found = true;
  } else {
    for (std::size_t k = 0; k < max_param_sections; ++k) {
      std::string key = n + "*" + std::to_string(k);
      if (const param* p = find_param(hv, key + "*")) {
        take_extended(p->value, k == 0);
      } else if (const param* q = find_param(hv, key)) {
        bytes += q->value;
      } else {
        break;
      }
      found = true;
    }
  }
  if (found) return to_utf8(bytes, charset.empty() ? "utf-8" : charset);
  if (const param* p = find_param(hv, n)) return decode_header(p->value);
  return std::nullopt;
}

// ---- bodies ----

std::string decode_body(std::string_view body, std::string_view cte) {
  std::string enc = lower(trim(cte));
  if (enc == "base64") return base64_decode(body);
  if (enc == "quoted-printable") return qp_decode(body);
  return std::string(body);
}

// Text for display: UTF-8 with LF line ends.
std::string display_text(std::string_view bytes, std::string_view charset) {
  std::string t = to_utf8(bytes, charset);
  std::string out;
  out.reserve(t.size());
  for (std::size_t i = 0; i < t.size(); ++i) {
    if (t[i] == '\r') {
      out += '\n';
      if (i + 1 < t.size() && t[i + 1] == '\n') ++i;
    } else {
      out += t[i];
    }
  }
  return out;
}

// Split a multipart body into its parts (RFC 2046 §5.1.1): the CRLF before a delimiter line
// belongs to it; the preamble and epilogue are dropped; an unterminated last part runs to
// the end.
std::vector<std::string_view> split_multipart(std::string_view body, std::string_view boundary,
                                              std::size_t max_parts) {
  std::vector<std::string_view> parts;
  std::string delim = "--" + std::string(boundary);
  bool in_part = false;
  std::size_t part_start = 0;
  std::size_t pos = 0;
  auto close_part = [&](std::size_t end) {
    if (end > part_start && body[end - 1] == '\n') --end;
    if (end > part_start && body[end - 1] == '\r') --end;
    parts.push_back(body.substr(part_start, end - part_start));
  };
  while (pos < body.size()) {
    std::size_t eol = body.find('\n', pos);
    std::size_t end = eol == std::string_view::npos ? body.size() : eol;
    std::size_t next = eol == std::string_view::npos ? body.size() : eol + 1;
    std::string_view line = body.substr(pos, end - pos);
    if (line.size() >= delim.size() && line.substr(0, delim.size()) == delim) {
      std::string_view rest = trim(line.substr(delim.size()));
      if (rest.empty() || rest == "--") {
        if (in_part) close_part(pos);
        if (rest == "--" || parts.size() >= max_parts) return parts;
        in_part = true;
        part_start = next;
      }
    }
    pos = next;
  }
  if (in_part && part_start <= body.size()) parts.push_back(body.substr(part_start));
  return parts;
}

// The data: URL type for a raster image the sanitiser lets through, "" for anything else.
std::string_view raster_type(std::string_view mime_type) {
  if (mime_type == "image/png") return "image/png";
  if (mime_type == "image/gif") return "image/gif";
  if (mime_type == "image/jpeg" || mime_type == "image/jpg" || mime_type == "image/pjpeg")
    return "image/jpeg";
  if (mime_type == "image/webp") return "image/webp";
  return {};
}

// A file name for display: the last path component, without control characters.
std::string clean_name(std::string_view name) {
  std::size_t slash = name.find_last_of("/\\");
  if (slash != std::string_view::npos) name = name.substr(slash + 1);
  std::string out;
  for (char c : name)
    if (static_cast<unsigned char>(c) >= 0x20 && c != 0x7F) out += c;
  return std::string(trim(out));
}

// Whether `t` is one type/subtype pair of RFC 2045 token characters (what the page shows).
bool plain_type(std::string_view t) {
  std::size_t slash = t.find('/');
  if (slash == 0 || slash == std::string_view::npos || slash + 1 == t.size() ||
      t.find('/', slash + 1) != std::string_view::npos || t.size() > 127)
    return false;
  return std::all_of(t.begin(), t.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '/' ||
           std::string_view("!#$&^_.+-").find(c) != std::string_view::npos;
  });
}

struct inline_image {
  std::string cid;  // Content-ID without <>
  std::string name, type;
  std::string bytes;
  bool used = false;
};

class walker {
 public:
  walker(const limits& l, view& out) : _l(l), _out(out) {}

  void walk(std::string_view raw, std::size_t depth, std::string_view parent) {
    entity e = split_entity(raw);
    header_value ct = parse_header_value(e.get("Content-Type"));
    std::string type = ct.token;
    if (type.find('/') == std::string::npos) type = "text/plain";  // absent or malformed
    else if (!plain_type(type)) type = "application/octet-stream";
    if (type.starts_with("multipart/")) {
      const param* boundary = find_param(ct, "boundary");
      if (boundary && !boundary->value.empty() && depth < _l.max_depth) {
        std::string sub = type.substr(10);
        for (std::string_view part : split_multipart(e.body, boundary->value, _l.max_parts)) {
          if (_leaves >= _l.max_parts) break;
          walk(part, depth + 1, sub);
        }
        return;
      }
      if (boundary && !boundary->value.empty()) return;  // too deep: not shown
      type = "text/plain";  // a multipart without a boundary: show its bytes as text
    }
    leaf(e, type, ct, parent);
  }

  // Inline the images the HTML refers to, then list the rest as attachments.
  void finish() {
    if (!_out.html.empty()) _out.html = inline_cids(_out.html);
    for (auto& img : _images) {
      if (img.used) continue;
      std::string name = img.name;
      if (name.empty()) {
        std::string_view sub = std::string_view(img.type).substr(img.type.find('/') + 1);
        name = "image-" + std::to_string(_out.page.attachments.size() + 1) + "." +
               std::string(sub == "jpeg" ? "jpg" : sub);
      }
      add_attachment(std::move(name), img.type, std::move(img.bytes));
    }
  }

 private:
  void leaf(const entity& e, const std::string& type, const header_value& ct,
            std::string_view parent) {
    if (_leaves >= _l.max_parts) return;
    ++_leaves;
    header_value disp = parse_header_value(e.get("Content-Disposition"));
    bool attachment = disp.token == "attachment";
    std::string name;
    if (auto n = get_param(disp, "filename")) name = clean_name(*n);
    else if (auto m = get_param(ct, "name")) name = clean_name(*m);
    std::string bytes = decode_body(e.body, e.get("Content-Transfer-Encoding"));
    std::string charset = get_param(ct, "charset").value_or("us-ascii");

    if (!attachment && name.empty() && type == "text/plain") {
      if (!_have_text) {
        _out.page.text = display_text(bytes, charset);
        _have_text = true;
      } else if (parent != "alternative") {
        _out.page.text += "\n\n" + display_text(bytes, charset);  // e.g. a list footer
      }
      return;
    }
    if (!attachment && name.empty() && type == "text/html") {
      if (!_have_html) {
        _out.html = to_utf8(bytes, charset);
        _have_html = true;
        return;
      }
      if (parent == "alternative") return;  // another rendering of the same content
    }
    std::string cid(trim(e.get("Content-ID")));
    if (cid.size() >= 2 && cid.front() == '<' && cid.back() == '>') cid = cid.substr(1, cid.size() - 2);
    if (!attachment && !cid.empty() && type.starts_with("image/")) {
      _images.push_back({cid, name, type, std::move(bytes)});
      return;
    }
    if (name.empty()) {
      if (type == "message/rfc822") name = "message.eml";
      else if (type == "text/html") name = "part-" + std::to_string(_leaves) + ".html";
      else if (type == "text/plain") name = "part-" + std::to_string(_leaves) + ".txt";
    }
    add_attachment(std::move(name), type, std::move(bytes));
  }

  void add_attachment(std::string name, const std::string& type, std::string bytes) {
    _out.page.attachments.push_back({std::move(name), type, bytes.size()});
    _out.attachment_bytes.push_back(std::move(bytes));
  }

  inline_image* find_image(std::string_view cid) {
    for (auto& img : _images)
      if (img.cid == cid) return &img;
    for (auto& img : _images)
      if (iequals(img.cid, cid)) return &img;
    return nullptr;
  }

  // Replace cid: references in attribute values by data: URLs of raster images.
  std::string inline_cids(const std::string& html) {
    std::string out;
    out.reserve(html.size());
    std::size_t budget = _l.max_inline_bytes;
    std::size_t i = 0;
    // Bounded: every round moves i forward past one "cid:" or to the end.
    while (i < html.size()) {
      std::size_t p = i;
      while (p + 4 <= html.size() && !istarts_with(std::string_view(html).substr(p), "cid:")) ++p;
      if (p + 4 > html.size()) {
        out.append(html, i, std::string::npos);
        break;
      }
      out.append(html, i, p - i);
      std::size_t end = html.find_first_of(" \t\r\n\"'>)", p + 4);
      if (end == std::string::npos) end = html.size();
      // Only attribute values: the reference follows a quote or an '='.
      std::size_t b = p;
      while (b > 0 && is_ws(html[b - 1])) --b;
      bool in_attribute = b > 0 && (html[b - 1] == '"' || html[b - 1] == '\'' || html[b - 1] == '=');
      inline_image* img = in_attribute ? find_image(pct_decode(std::string_view(html).substr(p + 4, end - p - 4))) : nullptr;
      std::string_view rt = img ? raster_type(img->type) : std::string_view{};
      if (img && !rt.empty() && img->bytes.size() <= budget) {
        budget -= img->bytes.size();
        img->used = true;
        out += "data:";
        out += rt;
        out += ";base64,";
        append_base64(out, img->bytes);
      } else {
        out.append(html, p, end - p);
      }
      i = end;
    }
    return out;
  }

  const limits& _l;
  view& _out;
  std::size_t _leaves = 0;
  bool _have_text = false;
  bool _have_html = false;
  std::vector<inline_image> _images;
};

}  // namespace

std::string to_utf8(std::string_view bytes, std::string_view charset) {
  std::string cs = lower(trim(charset));
  if (cs.size() >= 2 && cs.front() == '"' && cs.back() == '"') cs = cs.substr(1, cs.size() - 2);
  if (cs.empty() || cs == "utf-8" || cs == "utf8" || cs == "us-ascii" || cs == "ascii")
    return valid_utf8(bytes);
  if (cs == "iso-8859-1" || cs == "iso8859-1" || cs == "iso_8859-1" || cs == "latin1" ||
      cs == "latin-1" || cs == "l1")
    return latin1_to_utf8(bytes);
  return iconv_to_utf8(bytes, cs);
}

std::string decode_header(std::string_view raw) {
  std::string out;
  std::string text_run;       // raw bytes between encoded words
  std::string ws_run;         // whitespace after an encoded word (dropped between two)
  std::string word_charset;   // the charset of the encoded bytes collected
  std::string word_bytes;
  bool last_encoded = false;
  auto flush_words = [&] {
    if (!word_bytes.empty()) out += to_utf8(word_bytes, word_charset);
    word_bytes.clear();
  };
  auto flush_text = [&] {
    if (!text_run.empty()) out += valid_utf8(text_run);
    text_run.clear();
  };
  std::size_t i = 0;
  // Bounded: every round consumes one character or one whole encoded word.
  while (i < raw.size()) {
    char c = raw[i];
    if (c == '\r' || c == '\n') {
      ++i;
      continue;
    }
    if (c == '=' && i + 1 < raw.size() && raw[i + 1] == '?') {
      // =?charset?B|Q?text?=
      std::size_t q1 = raw.find('?', i + 2);
      std::size_t q2 = q1 == std::string_view::npos ? q1 : raw.find('?', q1 + 1);
      std::size_t close = q2 == std::string_view::npos ? q2 : raw.find("?=", q2 + 1);
      if (close != std::string_view::npos && q2 == q1 + 2) {
        std::string_view cs = raw.substr(i + 2, q1 - i - 2);
        char enc = raw[q1 + 1];
        std::string_view text = raw.substr(q2 + 1, close - q2 - 1);
        bool clean = text.find_first_of(" \t") == std::string_view::npos && !cs.empty();
        if (clean && (enc == 'B' || enc == 'b' || enc == 'Q' || enc == 'q')) {
          std::string charset = lower(cs.substr(0, cs.find('*')));  // RFC 2231 language
          if (!last_encoded) {
            flush_text();
            text_run = ws_run;  // whitespace before the first word is kept
          }
          ws_run.clear();  // between two encoded words it is not (RFC 2047 §6.2)
          flush_text();
          if (charset != word_charset) flush_words();
          word_charset = charset;
          word_bytes += (enc == 'B' || enc == 'b') ? base64_decode(text) : qp_decode(text, true);
          last_encoded = true;
          i = close + 2;
          continue;
        }
      }
    }
    if (is_ws(c)) {
      ws_run += c;
      ++i;
      continue;
    }
    flush_words();
    text_run += ws_run;
    ws_run.clear();
    text_run += c;
    last_encoded = false;
    ++i;
  }
  flush_words();
  text_run += ws_run;
  flush_text();
  return std::string(trim(out));
}

view parse(std::string_view message, const limits& l) {
  view out;
  entity top = split_entity(message);
  out.page.from = decode_header(top.get("From"));
  out.page.to = decode_header(top.get("To"));
  out.page.cc = decode_header(top.get("Cc"));
  out.page.date = decode_header(top.get("Date"));
  out.page.subject = decode_header(top.get("Subject"));
  walker w(l, out);
  w.walk(message, 0, "");
  w.finish();
  return out;
}

view render(std::string_view message, const limits& l) {
  view v = parse(message, l);
  if (!v.html.empty()) {
    sanitize_limits sl;
    // Room for the inlined images' base64 beside the sanitiser's own budget for markup.
    sl.max_input += l.max_inline_bytes / 3 * 4 + 4;
    v.page.sanitized_html = sanitize_html(v.html, sl);
  }
  return v;
}

}  // namespace sr::fallback::mime
