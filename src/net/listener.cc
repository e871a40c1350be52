// Multishot accept is armed once and re-armed only when a CQE arrives without
// IORING_CQE_F_MORE (e.g. after an error or overflow).
#include "sealrelay/net/listener.hh"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "sealrelay/util/log.hh"

namespace sr::net {

status probe_address_free(const sockaddr_storage& addr, socklen_t len) {
  int fd = ::socket(addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return error{std::string("socket: ") + strerror(errno)};
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);  // TIME_WAIT is no conflict
  int rc = ::bind(fd, reinterpret_cast<const sockaddr*>(&addr), len);
  int e = errno;
  ::close(fd);
  if (rc < 0) return error{std::string("bind: ") + strerror(e)};
  return {};
}

result<int> open_listen_socket(const sockaddr_storage& addr, socklen_t len, int backlog) {
  int fd = ::socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return error{std::string("socket: ") + strerror(errno)};
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  if (::bind(fd, reinterpret_cast<const sockaddr*>(&addr), len) < 0) {
    int e = errno;
    ::close(fd);
    return error{std::string("bind: ") + strerror(e)};
  }
  if (::listen(fd, backlog) < 0) {
    int e = errno;
    ::close(fd);
    return error{std::string("listen: ") + strerror(e)};
  }
  return fd;
}

listener::listener(core::shard& sh, int fd, std::function<void(int)> on_accept)
    : _shard(sh), _fd(fd), _on_accept(std::move(on_accept)) {}

listener::~listener() {
  if (_fd >= 0) ::close(_fd);
}

void listener::arm() {
  if (_armed || _stopped) return;
  io_uring_sqe* s = _shard.sqe(this);
  io_uring_prep_multishot_accept(s, _fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
  _armed = true;
}

void listener::stop() {
  if (_stopped) return;
  _stopped = true;
  if (_armed) {
    io_uring_sqe* s = _shard.sqe();
    io_uring_prep_cancel(s, this, 0);
    io_uring_sqe_set_data64(s, core::ignore_cqe);
  }
  // Closing here is safe: the cancelled accept completes with -ECANCELED.
  ::close(_fd);
  _fd = -1;
}

void listener::on_complete(int res, unsigned flags) {
  if (!(flags & IORING_CQE_F_MORE)) _armed = false;
  if (res >= 0) {
    if (_stopped) {
      ::close(res);
    } else {
      _on_accept(res);
    }
  } else if (res != -ECANCELED && !_stopped) {
    SR_WARN("accept: %s", strerror(-res));
  }
  if (!_armed && !_stopped) arm();
}

std::optional<sockaddr_storage> accepted_peer(int fd) {
  sockaddr_storage peer{};
  socklen_t plen = sizeof peer;
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &plen) < 0) {
    ::close(fd);
    return std::nullopt;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return peer;
}

}  // namespace sr::net
