// DKIM signing (signer.hh). The header section is copied once into a reused scratch
// string (it is small and must be searched by name); the body is never copied: each
// chunk goes through relaxed_body into the bh= SHA-256 as it comes.
#include "sealrelay/dkim/signer.hh"

#include <algorithm>
#include <array>

#include "sealrelay/dkim/canon.hh"
#include "sealrelay/util/text.hh"

namespace sr::dkim {

namespace {

constexpr std::size_t max_header_section = 1u << 20;  // beyond this a message is refused
constexpr std::size_t max_column = 78;                // RFC 5322 §2.1.1's SHOULD
constexpr std::size_t tab_columns = 8;                // a folded line starts with HTAB

constexpr std::array<std::string_view, 19> default_list = {
    "from", "sender", "reply-to", "subject", "date", "message-id", "to", "cc",
    "mime-version", "content-type", "content-transfer-encoding", "content-id",
    "content-description", "in-reply-to", "references", "list-id", "list-unsubscribe",
    "list-unsubscribe-post", "feedback-id"};

char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

std::string lowercase(std::string_view s) {
  std::string r(s);
  for (char& c : r) c = lower(c);
  return r;
}

// A domain or selector: dot-separated labels of letters, digits, '-' and '_'.
bool plausible_name(std::string_view s) {
  if (s.empty() || s.size() > 253 || s.front() == '.' || s.back() == '.') return false;
  char prev = 0;
  for (char c : s) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '_' || c == '.';
    if (!ok || (c == '.' && prev == '.')) return false;
    prev = c;
  }
  return true;
}

// A header field name (RFC 5322 ftext: printable ASCII but ':').
bool plausible_field_name(std::string_view s) {
  if (s.empty()) return false;
  return std::all_of(s.begin(), s.end(), [](char c) { return c > 32 && c < 127 && c != ':'; });
}

// The field's name as written ("Subject" of "Subject : x"), WSP before the colon dropped.
std::string_view field_name(std::string_view field) {
  std::string_view n = field.substr(0, field.find(':'));
  while (!n.empty() && (n.back() == ' ' || n.back() == '\t')) n.remove_suffix(1);
  return n;
}

// Appends tag=value tokens, folding with CRLF HTAB before a token that would pass column 78.
struct folder {
  std::string& out;
  std::size_t col;
  void token(std::string_view t) {
    if (col + 1 + t.size() > max_column) {
      out += "\r\n\t";
      col = tab_columns;
    } else {
      out += ' ';
      ++col;
    }
    out += t;
    col += t.size();
  }
  // Glue `t` to what precedes it, unless it would pass column 78 (a fold where FWS is legal).
  void glue(std::string_view t) {
    if (col + t.size() > max_column) {
      out += "\r\n\t";
      col = tab_columns;
    }
    out += t;
    col += t.size();
  }
};

std::string b64(std::span<const uint8_t> bytes) {
  std::string r;
  append_base64(r, {reinterpret_cast<const char*>(bytes.data()), bytes.size()});
  return r;
}

}  // namespace

std::span<const std::string_view> default_headers() { return default_list; }

signer::signer(signer_config config, tls::signing_key key)
    : _config(std::move(config)), _key(std::move(key)) {}

result<signer> signer::create(signer_config config, tls::signing_key key) {
  if (!plausible_name(config.domain)) return error{"dkim: domain '" + config.domain + "' is not a domain name"};
  if (!plausible_name(config.selector))
    return error{"dkim: selector '" + config.selector + "' is not a DNS name"};
  // Lowercase and deduplicated: h= names are compared case-insensitively anyway.
  std::vector<std::string> headers;
  for (const auto& h : config.headers) {
    if (!plausible_field_name(h)) return error{"dkim: '" + h + "' is not a header field name"};
    std::string l = lowercase(h);
    if (l == "dkim-signature") return error{"dkim: DKIM-Signature cannot be signed by itself"};
    if (std::find(headers.begin(), headers.end(), l) == headers.end()) headers.push_back(std::move(l));
  }
  if (std::find(headers.begin(), headers.end(), "from") == headers.end())
    return error{"dkim: the header list must contain From (RFC 6376 §5.4)"};
  config.headers = std::move(headers);
  for (auto& o : config.oversign) o = lowercase(o);
  return signer(std::move(config), std::move(key));
}

std::string_view signer::algorithm() const {
  return _key.kind() == tls::key_kind::ed25519 ? "ed25519-sha256" : "rsa-sha256";
}

result<std::string> signer::sign(std::string_view message, int64_t now) {
  const std::span<const std::byte> one{reinterpret_cast<const std::byte*>(message.data()), message.size()};
  return sign(std::span<const std::span<const std::byte>>(&one, 1), now);
}

result<std::string> signer::sign(std::span<const std::span<const std::byte>> chunks, int64_t now) {
  auto p = prepare(chunks, now);
  if (!p) return error{p.err()};
  return finish(std::move(*p));
}

result<std::string> signer::finish(prepared p) {
  auto sig = _key.sign_digest(p.digest);
  if (!sig) return error{"dkim: " + sig.err()};
  return complete(std::move(p), *sig);
}

std::string signer::complete(prepared p, std::span<const uint8_t> signature) {
  // Fill b= up to column 78 per line, going on from where the field's last line ends.
  std::string out = std::move(p.field);
  const std::size_t nl = out.rfind("\r\n\t");
  std::size_t col = nl == std::string::npos ? out.size() : tab_columns + out.size() - (nl + 3);
  const std::string b = b64(signature);
  std::string_view left = b;
  while (!left.empty()) {
    if (col >= max_column) {
      out += "\r\n\t";
      col = tab_columns;
    }
    const std::size_t n = std::min(max_column - col, left.size());
    out.append(left.substr(0, n));
    col += n;
    left.remove_prefix(n);
  }
  out += "\r\n";
  return out;
}

void message_hash::feed(std::span<const std::byte> chunk) {
  if (_in_body) {
    _body.feed(chunk);
    return;
  }
  if (_too_long) return;
  const char* p = reinterpret_cast<const char*>(chunk.data());
  std::size_t i = 0;
  for (; i < chunk.size() && _matched < 4; ++i) {
    const char c = p[i];
    if (c == (_matched % 2 == 0 ? '\r' : '\n'))
      ++_matched;
    else
      _matched = (c == '\r') ? 1 : 0;
  }
  if (_headers.size() + i > max_header_section) {
    _too_long = true;
    return;
  }
  _headers.append(p, i);
  if (_matched == 4) {
    _in_body = true;
    _body.feed(chunk.subspan(i));
  }
}

result<signer::prepared> signer::prepare(std::span<const std::span<const std::byte>> chunks, int64_t now) {
  // The header scratch is reused between messages: it moves into the hash and back.
  message_hash m;
  m._headers.swap(_headers);
  m._headers.clear();
  for (const auto& chunk : chunks) {
    m.feed(chunk);
    if (m._too_long) break;
  }
  auto r = prepare(m, now);
  _headers.swap(m._headers);
  return r;
}

result<signer::prepared> signer::prepare(message_hash& m, int64_t now) {
  // 1. The header section was copied up to and including its empty line; the rest hashed.
  if (m._too_long) return error{"dkim: header section over 1 MiB"};
  m._body.finish();
  const tls::sha256_digest bh = m._sink.hash.finish();
  const std::string_view headers = m._headers;

  // 2. Split the header section into fields (a line starting with WSP continues one).
  std::vector<std::string_view> fields;
  {
    std::string_view rest = headers;
    while (!rest.empty()) {
      std::size_t end = 0;
      for (;;) {
        const std::size_t crlf = rest.find("\r\n", end);
        if (crlf == std::string_view::npos) {
          end = rest.size();
          break;
        }
        end = crlf + 2;
        if (end >= rest.size() || (rest[end] != ' ' && rest[end] != '\t')) {
          end = crlf;
          break;
        }
      }
      if (end > 0) fields.push_back(rest.substr(0, end));
      rest.remove_prefix(std::min(rest.size(), end + 2));
    }
  }

  // 3. h=: each configured name as often as it occurs (instances taken bottom up, RFC
  // 6376 §5.4.2), once more when over-signed; the header hash over the same order.
  tls::sha256_stream header_hash;
  std::vector<std::string_view> h;
  for (const auto& name : _config.headers) {
    std::size_t count = 0;
    for (auto it = fields.rbegin(); it != fields.rend(); ++it) {
      if (!iequals(field_name(*it), name)) continue;
      ++count;
      h.push_back(name);
      _canon.clear();
      canon_header_relaxed(*it, _canon);
      header_hash.update(_canon);
    }
    if (count > 0 && std::find(_config.oversign.begin(), _config.oversign.end(), name) != _config.oversign.end())
      h.push_back(name);  // a field that does not exist hashes as nothing (§5.4.2)
  }
  if (std::find(h.begin(), h.end(), "from") == h.end())
    return error{"dkim: the message has no From field"};

  // 4. The DKIM-Signature field with an empty b=, folded; its relaxed form ends the hash.
  std::string out = "DKIM-Signature:";
  folder f{out, out.size()};
  f.token("v=1;");
  f.token(std::string("a=").append(algorithm()).append(";"));
  f.token("c=relaxed/relaxed;");
  f.token("d=" + _config.domain + ";");
  f.token("s=" + _config.selector + ";");
  f.token("t=" + std::to_string(now) + ";");
  for (std::size_t i = 0; i < h.size(); ++i) {
    std::string piece = (i == 0 ? "h=" : "") + std::string(h[i]) + (i + 1 == h.size() ? ";" : ":");
    if (i == 0)
      f.token(piece);
    else
      f.glue(piece);
  }
  f.token("bh=" + b64(bh) + ";");
  f.token("b=");
  _canon.clear();
  canon_header_relaxed(out, _canon, false);
  header_hash.update(_canon);

  return prepared{std::move(out), header_hash.finish()};
}

}  // namespace sr::dkim
