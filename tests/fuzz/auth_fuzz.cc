// libFuzzer target: the authentication parsers. Byte 0 picks the part:
//   0: SMTP AUTH (smtp/sasl.cc): the AUTH argument, a client response line and a PLAIN
//      message, bytes from any client on the submission port;
//   1: the users file (auth/users.cc, [submission] users_file) up to the first NUL, then
//      the envelope or From: address a client sends, checked against each user's senders;
//   2: the API tokens file (api/tokens.cc, [http] tokens_file) up to the first NUL, then
//      an Authorization header value from any HTTP client.
// Invariants: nothing crashes or hangs; strict base64 is canonical (a decoded response
// encodes back to the same line); PLAIN credentials have a non-empty user and password
// without NUL; a users file accepted lists distinct users, each usable; a token file
// accepted answers ok (with its line's index) for "Bearer <each token>", and a header
// answered ok carries a token of the file.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "check.hh"
#include "sealrelay/api/tokens.hh"
#include "sealrelay/auth/users.hh"
#include "sealrelay/smtp/sasl.hh"
#include "sealrelay/tls/seal.hh"
#include "sealrelay/util/text.hh"

// api/tokens.cc keeps tokens as SHA-256 digests through tls/seal.hh (wolfCrypt), which the
// fuzz build does not link: this stand-in gives a deterministic 32-byte digest (no
// security needed here, only that distinct tokens almost never collide).
namespace sr::tls {
sha256_digest sha256(std::span<const uint8_t> data) {
  sha256_digest d{};
  for (size_t k = 0; k < 4; ++k) {
    uint64_t h = 1469598103934665603ull ^ (k * 0x9e3779b97f4a7c15ull);
    for (uint8_t b : data) h = (h ^ b) * 1099511628211ull;
    for (size_t i = 0; i < 8; ++i) d[k * 8 + i] = uint8_t(h >> (8 * i));
  }
  return d;
}
bool equal_constant_time(std::span<const uint8_t> a, std::span<const uint8_t> b) {
  if (a.size() != b.size()) return false;
  uint8_t x = 0;
  for (size_t i = 0; i < a.size(); ++i) x |= a[i] ^ b[i];
  return x == 0;
}
}  // namespace sr::tls

namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

void check_plain(std::string_view m) {
  auto c = sr::smtp::parse_plain(m);
  if (!c) return;
  CHECK(!c->user.empty() && !c->password.empty());
  CHECK(c->user.find('\0') == std::string::npos && c->password.find('\0') == std::string::npos);
}

void fuzz_sasl(std::string_view in) {
  auto a = sr::smtp::parse_auth(in);
  if (a.error == sr::smtp::auth_error::none) {
    if (a.cmd.initial) check_plain(*a.cmd.initial);
  } else {
    CHECK(sr::smtp::reply_of(a.error).size() >= 3);
  }
  auto r = sr::smtp::parse_response(in);
  if (in == "*") CHECK(r.error == sr::smtp::auth_error::cancelled);
  if (r.error == sr::smtp::auth_error::none) {
    std::string back;
    sr::append_base64(back, r.data);
    CHECK(back == in);
    check_plain(r.data);
  }
  check_plain(in);
}

// crypt(3) is slow by design for some methods, and its cost is in the hash itself
// ("$2b$31$..." is 2^31 rounds): the users file is the administrator's, so such a file is
// no attack, but it would stall the fuzzer. Inputs naming a costly method are skipped.
bool costly_crypt(std::string_view t) {
  for (std::string_view m : {"$2", "$y$", "$gy$", "$7$", "$sha1", "$md5", "rounds=", ":_"})
    if (t.find(m) != std::string_view::npos) return true;
  return false;
}

void fuzz_users(std::string_view text, std::string_view address) {
  if (costly_crypt(text) || text.size() > 4096) return;
  auto u = sr::auth::users::parse(text, "users");
  if (!u) {
    CHECK(u.err().substr(0, 6) == "users:");
    return;
  }
  // Every user line (as parse() splits them) is one user, found by its name.
  size_t pos = 0, lines = 0;
  while (pos <= text.size()) {
    size_t nl = text.find('\n', pos);
    std::string_view line = text.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos);
    pos = nl == std::string_view::npos ? text.size() + 1 : nl + 1;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    size_t first = line.find_first_not_of(" \t");
    if (first == std::string_view::npos || line[first] == '#') continue;
    ++lines;
    const sr::auth::user* e = u->find(line.substr(0, line.find(':')));
    CHECK(e && !e->hash.empty());
    (void)sr::auth::sender_allowed(*e, address);
    // A user without patterns (its name is an address) may send as itself.
    if (e->senders.empty()) CHECK(sr::auth::sender_allowed(*e, e->name));
    for (const auto& p : e->senders)
      if (p.find('*') == std::string::npos) CHECK(sr::auth::sender_allowed(*e, p));
  }
  CHECK(lines == u->size());
}

void fuzz_tokens(std::string_view text, std::string_view header) {
  auto t = sr::api::token_set::parse(text, "tokens");
  if (!t) {
    CHECK(t.err().substr(0, 6) == "tokens");
    auto none = sr::api::token_set::parse("", "tokens");
    CHECK(!none);
    return;
  }
  CHECK(t->size() >= 1);
  // Every token line answers ok, at the index of its first occurrence.
  std::vector<std::string> lines;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t eol = text.find('\n', pos);
    if (eol == std::string_view::npos) eol = text.size();
    std::string_view line = trim(text.substr(pos, eol - pos));
    pos = eol + 1;
    if (line.empty() || line.front() == '#') continue;
    lines.emplace_back(line);
  }
  CHECK(lines.size() == t->size());
  for (size_t i = 0; i < lines.size() && i < 16; ++i) {
    size_t index = 99999;
    CHECK(t->check("Bearer " + lines[i], &index) == sr::api::auth_outcome::ok);
    size_t first = 0;
    while (lines[first] != lines[i]) ++first;
    CHECK(index == first);
  }
  CHECK(t->check(std::nullopt) == sr::api::auth_outcome::missing);
  size_t index = 99999;
  auto o = t->check(header, &index);
  if (o == sr::api::auth_outcome::ok) {
    CHECK(index < lines.size());
    CHECK(std::string_view(header).find(lines[index]) != std::string_view::npos);
  } else {
    CHECK(sr::api::status_for(o) == 401 || sr::api::status_for(o) == 403);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size) {
  if (size < 1 || size > 16 * 1024) return -1;
  std::string_view in(reinterpret_cast<const char*>(bytes) + 1, size - 1);
  size_t nul = in.find('\0');
  std::string_view first = in.substr(0, nul);
  std::string_view second = nul == std::string_view::npos ? std::string_view{} : in.substr(nul + 1);
  switch (bytes[0] % 3) {
    case 0: fuzz_sasl(in); break;
    case 1: fuzz_users(first, second); break;
    default: fuzz_tokens(first, second); break;
  }
  return 0;
}
