// check_files(): the files a config names must load before the daemon binds anything
// (DESIGN.md §3 --check-config: "the files it names load"). Certificate and key are checked
// when a listener terminates TLS or when the file names them explicitly (a default path
// nothing uses is not an error); the CA file whenever it is set (outbound verify, MTA-STS).
// Error text: "KEY: what is wrong" (no file prefix: the daemon adds it).
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "config/config.hh"

namespace sr::config {
namespace {

// Errors start with the key, as in "tls.cert_file: cannot read ...": the caller adds the
// config file name (and can add cfg.line_of(key) when the key was written).
std::string where(const char* key) { return std::string(key) + ": "; }

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

status check_one(const char* key, const std::string& path, bool pem) {
  if (path.empty()) return error{where(key) + "must be set"};
  std::string text;
  if (auto err = slurp(path, text)) return error{where(key) + "cannot read " + path + ": " + *err};
  if (pem && text.find("-----BEGIN") == std::string::npos)
    return error{where(key) + path + " holds no PEM block (\"-----BEGIN\")"};
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
  if (tls_listener || cfg.line_of("tls.cert_file"))
    if (auto s = check_one("tls.cert_file", cfg.tls.cert_file, true); !s) return s;
  if (tls_listener || cfg.line_of("tls.key_file"))
    if (auto s = check_one("tls.key_file", cfg.tls.key_file, true); !s) return s;
  if (!cfg.tls.ca_file.empty())
    if (auto s = check_one("tls.ca_file", cfg.tls.ca_file, false); !s) return s;
  return status::success();
}

}  // namespace sr::config
