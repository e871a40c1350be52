// check_files(): the files a config names must load before the daemon binds anything
// (DESIGN.md §3 --check-config). Certificate and key are needed only when a listener
// terminates TLS; the CA file whenever it is set (outbound verify, MTA-STS fetches).
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "config/config.hh"

namespace sr::config {
namespace {

// Prefix naming where `key` was written ("FILE:LINE: key: "), or "FILE: key: " for a default.
std::string where(const config& cfg, const char* key) {
  std::string out = cfg.source_file;
  if (int line = cfg.line_of(key)) {
    out += ':';
    out += std::to_string(line);
  }
  out += ": ";
  out += key;
  out += ": ";
  return out;
}

// Read all of `path` into `out`; on failure return strerror text.
std::optional<std::string> slurp(const std::string& path, std::string& out) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::strerror(errno);
  char buf[16384];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      int e = errno;
      ::close(fd);
      return std::strerror(e);
    }
    if (n == 0) break;
    out.append(buf, size_t(n));
    if (out.size() > (64u << 20)) {  // no certificate or bundle is this large
      ::close(fd);
      return std::string("file too large");
    }
  }
  ::close(fd);
  return std::nullopt;
}

status check_one(const config& cfg, const char* key, const std::string& path, bool pem) {
  if (path.empty()) return error{where(cfg, key) + "must be set"};
  std::string text;
  if (auto err = slurp(path, text)) return error{where(cfg, key) + "cannot read " + path + ": " + *err};
  if (pem && text.find("-----BEGIN") == std::string::npos)
    return error{where(cfg, key) + path + " holds no PEM block (\"-----BEGIN\")"};
  return status::success();
}

}  // namespace

status check_files(const config& cfg) {
  const listen_entry* tls_listener = nullptr;
  for (const auto& l : cfg.listen)
    if (l.tls != listen_tls::none) {
      tls_listener = &l;
      break;
    }
  if (tls_listener) {
    if (auto s = check_one(cfg, "tls.cert_file", cfg.tls.cert_file, true); !s) return s;
    if (auto s = check_one(cfg, "tls.key_file", cfg.tls.key_file, true); !s) return s;
  }
  if (!cfg.tls.ca_file.empty())
    if (auto s = check_one(cfg, "tls.ca_file", cfg.tls.ca_file, false); !s) return s;
  return status::success();
}

}  // namespace sr::config
