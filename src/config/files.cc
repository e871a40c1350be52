// check_files(): the files a config names must load before the daemon binds anything
// (DESIGN.md §3 --check-config: "the files it names load"). Certificate and key are checked
// when a listener terminates TLS or when the file names them explicitly (a default path
// nothing uses is not an error); the CA file whenever it is set (outbound verify, MTA-STS);
// auth.users_file when it is written; every [[pool]] address must be bindable here. Secrets (the private key, the users file) are refused
// when group or others may access them, as OpenSSH refuses such a key.
// Error text: "KEY: what is wrong" (no file prefix: the daemon adds it). read_spool_keys()
// reads the spool's keys ([spool]) with the same secret-file rule, naming the line too.
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "sealrelay/config/config.hh"

namespace sr::config {
namespace {

// Errors start with the key, as in "tls.cert_file: cannot read ...": the caller adds the
// config file name (and can add cfg.line_of(key) when the key was written).
std::string where(const char* key) { return std::string(key) + ": "; }

// Read all of `path` into `out`; on failure return what is wrong ("cannot read PATH: ...").
// With `secret`, a file that group or others may access is refused (checked on the open
// file, so a chmod between check and read cannot slip through).
std::optional<std::string> slurp(const std::string& path, std::string& out, bool secret) {
  auto cannot = [&](const char* why) { return "cannot read " + path + ": " + why; };
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return cannot(std::strerror(errno));
  struct stat st {};
  if (secret && ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 077) != 0) {
    ::close(fd);
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", unsigned(st.st_mode & 07777));
    return path + ": permissions " + mode + " are too open: a secret must be accessible by its "
           "owner only (chmod 600 " + path + ")";
  }
  char buf[16384];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      int e = errno;
      ::close(fd);
      return cannot(std::strerror(e));
    }
    if (n == 0) break;
    out.append(buf, size_t(n));
    if (out.size() > (64u << 20)) {  // no certificate or bundle is this large
      ::close(fd);
      return cannot("file too large");
    }
  }
  ::close(fd);
  return std::nullopt;
}

enum class kind : uint8_t { pem, pem_secret, text, text_secret };

status check_one(const char* key, const std::string& path, kind k) {
  if (path.empty()) return error{where(key) + "must be set"};
  bool secret = k == kind::pem_secret || k == kind::text_secret;
  bool pem = k == kind::pem || k == kind::pem_secret;
  std::string text;
  if (auto err = slurp(path, text, secret))
    return error{where(key) + *err};
  if (pem && text.find("-----BEGIN") == std::string::npos)
    return error{where(key) + path + " holds no PEM block (\"-----BEGIN\")"};
  return status::success();
}

// Return whether `path` lies inside `dir` (both resolved as far as they exist).
bool inside(const std::string& path, const std::string& dir) {
  std::error_code ec;
  auto p = std::filesystem::weakly_canonical(std::filesystem::absolute(path, ec), ec);
  auto d = std::filesystem::weakly_canonical(std::filesystem::absolute(dir, ec), ec);
  if (ec) return false;
  auto pi = p.begin();
  for (auto di = d.begin(); di != d.end(); ++di, ++pi) {
    if (di->empty() && std::next(di) == d.end()) break;  // a trailing slash
    if (pi == p.end() || *pi != *di) return false;
  }
  return true;
}

// Read one spool key file: 32 bytes exactly, owner-only, outside state_dir.
std::optional<std::string> read_key(const std::string& path, const config& cfg,
                                    std::array<uint8_t, 32>& out) {
  if (inside(path, cfg.server.state_dir))
    return path + " lies inside server.state_dir (" + cfg.server.state_dir +
           "): the key must not sit beside the spool it protects";
  std::string text;
  if (auto err = slurp(path, text, true)) return *err;
  if (text.size() != out.size())
    return path + " holds " + std::to_string(text.size()) + " bytes; a spool key is exactly 32 "
           "random bytes (e.g. head -c 32 /dev/urandom > FILE; chmod 600 FILE)";
  std::memcpy(out.data(), text.data(), out.size());
  volatile char* v = text.data();
  for (size_t i = 0; i < text.size(); ++i) v[i] = 0;
  return std::nullopt;
}

}  // namespace

result<spool_keys> read_spool_keys(const config& cfg) {
  spool_keys keys;
  keys.encrypt = cfg.spool.encrypt;
  auto fail = [&](const char* key, const std::string& what) {
    int ln = cfg.line_of(key);
    return error{std::to_string(ln ? ln : 1) + ": " + key + ": " + what};
  };
  if (cfg.spool.encrypt && cfg.spool.key_file.empty())
    return fail("spool.encrypt", "true needs spool.key_file");
  if (!cfg.spool.key_file.empty()) {
    std::array<uint8_t, 32> k{};
    if (auto err = read_key(cfg.spool.key_file, cfg, k)) return fail("spool.key_file", *err);
    keys.current = k;
  }
  for (const auto& path : cfg.spool.previous_keys) {
    std::array<uint8_t, 32> k{};
    if (auto err = read_key(path, cfg, k)) return fail("spool.previous_keys", *err);
    keys.previous.push_back(k);
  }
  return keys;
}

status check_files(const config& cfg) {
  const listen_entry* tls_listener = nullptr;
  for (const auto& l : cfg.listen)
    if (l.tls != listen_tls::none) {
      tls_listener = &l;
      break;
    }
  if (tls_listener || cfg.line_of("tls.cert_file"))
    if (auto s = check_one("tls.cert_file", cfg.tls.cert_file, kind::pem); !s) return s;
  if (tls_listener || cfg.line_of("tls.key_file"))
    if (auto s = check_one("tls.key_file", cfg.tls.key_file, kind::pem_secret); !s) return s;
  if (!cfg.tls.ca_file.empty())
    if (auto s = check_one("tls.ca_file", cfg.tls.ca_file, kind::text); !s) return s;
  bool submission = false;
  for (const auto& l : cfg.listen) submission |= l.mode == listen_mode::submission;
  if (submission || cfg.line_of("auth.users_file"))
    if (auto s = check_one("auth.users_file", cfg.auth.users_file, kind::text_secret); !s) return s;
  if (!cfg.http.listen.empty()) {
    if (cfg.http.tls && !tls_listener && !cfg.line_of("tls.cert_file"))
      if (auto s = check_one("tls.cert_file", cfg.tls.cert_file, kind::pem); !s) return s;
    if (cfg.http.tls && !tls_listener && !cfg.line_of("tls.key_file"))
      if (auto s = check_one("tls.key_file", cfg.tls.key_file, kind::pem_secret); !s) return s;
    if (auto s = check_one("http.tokens_file", cfg.http.tokens_file, kind::text_secret); !s) return s;
  }
  for (size_t i = 0; i < cfg.dkim.size(); ++i) {
    std::string key = "dkim[" + std::to_string(i) + "].key_file";
    if (auto s = check_one(key.c_str(), cfg.dkim[i].key_file, kind::pem_secret); !s) return s;
  }
  // Every [[pool]] address must be one of this host's: bound here as a connection would be
  // (no port taken), so a typo stops the start instead of deferring that pool's mail.
  for (size_t i = 0; i < cfg.pools.size(); ++i)
    for (size_t j = 0; j < cfg.pools[i].addresses.size(); ++j) {
      const pool_address& a = cfg.pools[i].addresses[j];
      int fd = ::socket(a.addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
      if (fd < 0) continue;  // no such family here: nothing to tell apart
      int one = 1;
      setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
      int rc = ::bind(fd, reinterpret_cast<const sockaddr*>(&a.addr), a.addr_len);
      int err = errno;
      ::close(fd);
      if (rc == 0) continue;
      std::string key = "pool[" + std::to_string(i) + "].addresses[" + std::to_string(j) + "]";
      int line = cfg.line_of("pool[" + std::to_string(i) + "].addresses");
      return error{where(key.c_str()) + a.address + " is not an address of this host (bind: " +
                   std::strerror(err) + (line ? "; line " + std::to_string(line) : std::string()) + ")"};
    }
  return status::success();
}

}  // namespace sr::config
