// Bearer tokens: the file is read once (at start and on reload by the caller), each token
// kept only as its SHA-256; a check hashes the presented token and compares it with every
// stored digest, no early exit, so the time says nothing about which token or how long.
#include "sealrelay/api/tokens.hh"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "sealrelay/tls/seal.hh"
#include "sealrelay/util/text.hh"

namespace sr::api {
namespace {

// RFC 6750 §2.1 b64token: 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
bool valid_b64token(std::string_view t) {
  std::size_t i = 0;
  while (i < t.size()) {
    char c = t[i];
    bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/';
    if (!ok) break;
    ++i;
  }
  if (i == 0) return false;
  while (i < t.size() && t[i] == '=') ++i;
  return i == t.size();
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

std::array<uint8_t, 32> digest(std::string_view token) {
  return tls::sha256({reinterpret_cast<const uint8_t*>(token.data()), token.size()});
}

}  // namespace

uint16_t status_for(auth_outcome o) {
  switch (o) {
    case auth_outcome::ok: return 200;
    case auth_outcome::missing:
    case auth_outcome::malformed: return 401;
    case auth_outcome::wrong: return 403;
  }
  return 401;
}

api_error auth_error(auth_outcome o) {
  switch (o) {
    case auth_outcome::missing: return {401, "an Authorization: Bearer token is needed", "Authorization"};
    case auth_outcome::malformed: return {401, "Authorization must be \"Bearer <token>\"", "Authorization"};
    case auth_outcome::wrong:
    case auth_outcome::ok: break;
  }
  return {403, "the token is not valid", "Authorization"};
}

const char* to_string(auth_outcome o) {
  switch (o) {
    case auth_outcome::ok: return "ok";
    case auth_outcome::missing: return "missing";
    case auth_outcome::malformed: return "malformed";
    case auth_outcome::wrong: return "wrong";
  }
  return "?";
}

result<token_set> token_set::parse(std::string_view text, std::string_view name) {
  token_set set;
  std::size_t pos = 0, lineno = 0;
  while (pos < text.size()) {
    std::size_t eol = text.find('\n', pos);
    if (eol == std::string_view::npos) eol = text.size();
    std::string_view line = trim(text.substr(pos, eol - pos));
    pos = eol + 1;
    ++lineno;
    if (line.empty() || line.front() == '#') continue;
    auto where = std::string(name) + ":" + std::to_string(lineno) + ": ";
    if (!valid_b64token(line))
      return error{where + "not a bearer token (RFC 6750 b64token: letters, digits, - . _ ~ + / and "
                           "trailing =, one token a line)"};
    if (line.size() < min_token_length)
      return error{where + "token shorter than " + std::to_string(min_token_length) + " characters"};
    set._digests.push_back(digest(line));
  }
  if (set._digests.empty()) return error{std::string(name) + ": no token in the file"};
  return set;
}

result<token_set> token_set::load(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return error{path + ": cannot open: " + std::strerror(errno)};
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return error{path + ": not a regular file"};
  }
  if ((st.st_mode & 077) != 0) {
    ::close(fd);
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", unsigned(st.st_mode & 07777));
    return error{path + ": permissions " + mode + " are too open: a tokens file must be accessible "
                 "by its owner only (chmod 600 " + path + ")"};
  }
  // A tokens file is small: refuse one over 1 MiB rather than parse a cut-off last line.
  constexpr std::size_t max_file = 1u << 20;
  std::string text;
  char buf[8192];
  bool eof = false;
  for (int rounds = 0; rounds < 1024 && !eof; ++rounds) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int e = errno;
      ::close(fd);
      return error{path + ": cannot read: " + std::strerror(e)};
    }
    eof = n == 0;
    text.append(buf, std::size_t(n));
    if (text.size() > max_file) break;
  }
  ::close(fd);
  if (!eof) return error{path + ": larger than 1 MiB"};
  return parse(text, path);
}

auth_outcome token_set::check(std::optional<std::string_view> authorization, std::size_t* index) const {
  if (!authorization) return auth_outcome::missing;
  std::string_view v = trim(*authorization);
  // The scheme is case-insensitive (RFC 7235 §2.1), one or more spaces before the token.
  if (v.size() < 7 || !iequals(v.substr(0, 6), "Bearer") || v[6] != ' ') return auth_outcome::malformed;
  std::string_view token = trim(v.substr(7));
  if (!valid_b64token(token)) return auth_outcome::malformed;
  auto d = digest(token);
  // Every digest is compared (no early exit), so the time says nothing of which matched.
  bool found = false;
  std::size_t at = 0;
  for (std::size_t i = 0; i < _digests.size(); ++i) {
    bool eq = tls::equal_constant_time(d, _digests[i]);
    at |= (eq && !found) ? i : 0;
    found |= eq;
  }
  if (found && index) *index = at;
  return found ? auth_outcome::ok : auth_outcome::wrong;
}

}  // namespace sr::api
