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
    : _shard(sh), _fd(fd), _on_accept(std::move(on_accept)) {
  // The shard keeps its tick hooks for its lifetime; this one checks that we still exist.
  std::weak_ptr<bool> alive = _alive;
  _shard.on_tick([this, alive] {
    if (!alive.expired()) on_tick();
  });
}

listener::~listener() {
  if (_fd >= 0) ::close(_fd);
}

void listener::arm() {
  if (_armed || _stopped || _backing_off) return;
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

namespace {
bool out_of_resources(int res) {
  return res == -EMFILE || res == -ENFILE || res == -ENOBUFS || res == -ENOMEM;
}
}  // namespace

void listener::on_complete(int res, unsigned flags) {
  if (!(flags & IORING_CQE_F_MORE)) _armed = false;
  if (res >= 0) {
    if (_stopped) {
      ::close(res);
    } else {
      _on_accept(res);
    }
  } else if (out_of_resources(res) && !_stopped) {
    ++_resource_failures;
    ++_unlogged_failures;
    uint64_t now = _shard.now_ms();
    if (_last_warn_ms == 0 || now - _last_warn_ms >= 10'000) {
      SR_WARN("accept: %s: %llu accept(s) failed; pausing %llu ms between tries, new connections wait "
              "in the listen backlog", strerror(-res), static_cast<unsigned long long>(_unlogged_failures),
              static_cast<unsigned long long>(backoff_ms));
      _last_warn_ms = now;
      _unlogged_failures = 0;
    }
    _backing_off = true;
    _resume_at_ms = now + backoff_ms;
    if (_armed) {  // a multishot accept that is still armed would fail again at once
      io_uring_sqe* s = _shard.sqe();
      io_uring_prep_cancel(s, this, 0);
      io_uring_sqe_set_data64(s, core::ignore_cqe);
    }
    return;
  } else if (res != -ECANCELED && !_stopped) {
    SR_WARN("accept: %s", strerror(-res));
  }
  if (!_armed && !_stopped) arm();
}

void listener::on_tick() {
  if (!_backing_off || _stopped || _shard.now_ms() < _resume_at_ms) return;
  _backing_off = false;
  if (!_armed) arm();
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
