// The sidecar's audit lines (audit_event.hh): formatted with the engine's audit helpers so
// timestamps and escaping are the same, written with one write() under O_APPEND.
#include "sealrelay/fallback/audit_event.hh"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "sealrelay/audit/record.hh"
#include "sealrelay/util/log.hh"

namespace sr::fallback {

namespace {

void field(std::string& out, const char* name, std::string_view v) {
  if (v.empty()) return;
  out += ",\"";
  out += name;
  out += "\":";
  audit::append_json_string(v, out);
}

}  // namespace

void format_audit_event(const audit_event& e, std::string& out) {
  out += "{\"ts\":\"";
  audit::append_timestamp(audit::now_unix_ms(), out);
  out += "\",\"kind\":\"escrow\"";
  field(out, "event", e.event);
  field(out, "queue_id", e.queue_id);
  field(out, "msg_id", e.msg_id);
  field(out, "from", e.from);
  field(out, "rcpt", e.rcpt);
  field(out, "ip", e.ip);
  field(out, "detail", e.detail);
  out += "}\n";
}

result<audit_log> audit_log::open(const std::string& path) {
  if (path.empty()) return audit_log();
  int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
  if (fd < 0) return error(path + ": " + std::strerror(errno));
  return audit_log(fd);
}

audit_log& audit_log::operator=(audit_log&& o) noexcept {
  if (this != &o) {
    if (_fd >= 0) ::close(_fd);
    _fd = o._fd;
    o._fd = -1;
  }
  return *this;
}

audit_log::~audit_log() {
  if (_fd >= 0) ::close(_fd);
}

void audit_log::write(const audit_event& e) {
  if (_fd < 0) return;
  std::string line;
  format_audit_event(e, line);
  std::lock_guard<std::mutex> lock(_mu);
  ssize_t n = ::write(_fd, line.data(), line.size());
  if (n != ssize_t(line.size()))
    SR_WARN("audit: escrow %s line not written: %s", e.event.c_str(),
            n < 0 ? std::strerror(errno) : "short write");
}

}  // namespace sr::fallback
