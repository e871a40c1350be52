// The users file and password checks (users.hh). crypt_rn (libxcrypt) is reentrant: each
// call gets its own crypt_data, so worker threads may verify at once.
#include "sealrelay/auth/users.hh"

#include <crypt.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>

#include "sealrelay/util/text.hh"

namespace sr::auth {

namespace {

// '*' matches any run (also empty) of characters; the rest byte for byte, except that the
// part after the last '@' of the address is compared without case.
bool glob_match(std::string_view pat, std::string_view s) {
  size_t p = 0, i = 0, star = std::string_view::npos, mark = 0;
  auto eq = [](char a, char b) {
    return a == b || (a >= 'A' && a <= 'Z' ? char(a + 32) : a) == (b >= 'A' && b <= 'Z' ? char(b + 32) : b);
  };
  size_t at = s.rfind('@');
  while (i < s.size()) {
    bool fold = at != std::string_view::npos && i > at;
    if (p < pat.size() && pat[p] != '*' && (fold ? eq(pat[p], s[i]) : pat[p] == s[i])) {
      ++p;
      ++i;
    } else if (p < pat.size() && pat[p] == '*') {
      star = p++;
      mark = i;
    } else if (star != std::string_view::npos) {
      p = star + 1;
      i = ++mark;
    } else {
      return false;
    }
  }
  while (p < pat.size() && pat[p] == '*') ++p;
  return p == pat.size();
}

bool same_address(std::string_view a, std::string_view b) {
  size_t x = a.rfind('@'), y = b.rfind('@');
  if (x == std::string_view::npos || y == std::string_view::npos) return a == b;
  return a.substr(0, x) == b.substr(0, y) && sr::iequals(a.substr(x), b.substr(y));
}

// Whether crypt(3) can use `hash`: it answers a hash of the same setting and length, not
// "*..." (a plaintext password would otherwise pass as the salt of a DES crypt).
bool usable_hash(const std::string& hash) {
  auto data = std::make_unique<crypt_data>();
  const char* out = crypt_rn("probe", hash.c_str(), data.get(), sizeof *data);
  return out && out[0] != '*' && std::strlen(out) == hash.size();
}

}  // namespace

result<users> users::parse(std::string_view text, const std::string& name) {
  users u;
  int line_no = 0;
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t nl = text.find('\n', pos);
    std::string_view line = text.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos);
    pos = nl == std::string_view::npos ? text.size() + 1 : nl + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    size_t first = line.find_first_not_of(" \t");
    if (first == std::string_view::npos || line[first] == '#') continue;
    auto fail = [&](const std::string& why) {
      return error{name + ":" + std::to_string(line_no) + ": " + why};
    };
    for (char c : line)
      if (uint8_t(c) < 0x20 && c != '\t') return fail("control character");
    size_t c1 = line.find(':');
    if (c1 == std::string_view::npos || c1 == 0) return fail("expected user:crypt-hash[:allowed-sender-pattern]");
    size_t c2 = line.find(':', c1 + 1);
    user e;
    e.name = std::string(line.substr(0, c1));
    e.hash = std::string(line.substr(c1 + 1, c2 == std::string_view::npos ? std::string_view::npos : c2 - c1 - 1));
    e.line = line_no;
    if (e.name.find_first_of(" \t") != std::string::npos) return fail("a user name has no spaces");
    if (e.hash.empty()) return fail("user " + e.name + ": empty hash");
    if (!usable_hash(e.hash))
      return fail("user " + e.name + ": not a hash crypt(3) can check (make one with mkpasswd)");
    if (c2 != std::string_view::npos) {
      std::string_view pats = line.substr(c2 + 1);
      while (!pats.empty()) {
        size_t comma = pats.find(',');
        std::string_view p = pats.substr(0, comma);
        while (!p.empty() && (p.front() == ' ' || p.front() == '\t')) p.remove_prefix(1);
        while (!p.empty() && (p.back() == ' ' || p.back() == '\t')) p.remove_suffix(1);
        if (p.empty() || p.find_first_of(" \t<>") != std::string_view::npos)
          return fail("user " + e.name + ": bad sender pattern \"" + std::string(p) + "\"");
        e.senders.emplace_back(p);
        pats = comma == std::string_view::npos ? std::string_view{} : pats.substr(comma + 1);
      }
    } else if (e.name.find('@') == std::string::npos) {
      return fail("user " + e.name + ": a user name that is not an address needs a sender pattern "
                  "(user:hash:pattern)");
    }
    if (u._by_name.count(e.name)) return fail("user " + e.name + " is listed twice");
    u._by_name.emplace(e.name, u._users.size());
    u._users.push_back(std::move(e));
  }
  return u;
}

result<users> users::load(const std::string& path) {
  struct stat st{};
  if (::stat(path.c_str(), &st) != 0) return error{path + ": " + std::strerror(errno)};
  if (st.st_mode & (S_IRWXG | S_IRWXO)) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", unsigned(st.st_mode & 07777));
    return error{path + ": permissions " + mode +
                 " are too open: a secret must be accessible by its owner only (chmod 600 " + path + ")"};
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return error{path + ": cannot read"};
  std::stringstream ss;
  ss << in.rdbuf();
  return parse(ss.str(), path);
}

const user* users::find(std::string_view name) const {
  auto it = _by_name.find(std::string(name));
  return it == _by_name.end() ? nullptr : &_users[it->second];
}

bool sender_allowed(const user& u, std::string_view address) {
  if (u.senders.empty()) return same_address(u.name, address);
  for (const auto& p : u.senders)
    if (glob_match(p, address)) return true;
  return false;
}

bool verify_password(std::string_view password, const std::string& hash) {
  if (password.find('\0') != std::string_view::npos) return false;
  std::string pw(password);
  auto data = std::make_unique<crypt_data>();
  const char* out = crypt_rn(pw.c_str(), hash.c_str(), data.get(), sizeof *data);
  explicit_bzero(pw.data(), pw.size());
  bool ok = false;
  if (out && out[0] != '*') {
    size_t n = std::strlen(out);
    if (n == hash.size()) {
      unsigned char diff = 0;
      for (size_t i = 0; i < n; ++i) diff |= uint8_t(out[i]) ^ uint8_t(hash[i]);
      ok = diff == 0;
    }
  }
  explicit_bzero(data.get(), sizeof *data);
  return ok;
}

}  // namespace sr::auth
