// socket_session.hh: tls::session pumped over a socket with poll(). The session is fed
// straight from _buf and each feed() is followed by exactly one session call (its input
// contract); whatever a call leaves as pending output is flushed before waiting for input,
// so neither side ever waits on bytes the other has not been sent.
#include "sealrelay/tls/socket_session.hh"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

namespace sr::tls {

namespace {

// Milliseconds left until `deadline` for poll(): 0 when past, capped to an int.
int ms_left(socket_session::clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - socket_session::clock::now());
  if (left.count() <= 0) return 0;
  return static_cast<int>(std::min<long long>(left.count(), 1 << 30));
}

// Wait for `events` on fd: 1 ready, 0 timed out, -1 error.
int wait_for(int fd, short events, socket_session::clock::time_point deadline) {
  // Bounded: each round either returns or waits; EINTR rounds end once the deadline passes.
  for (;;) {
    pollfd p{fd, events, 0};
    int ms = ms_left(deadline);
    int r = ::poll(&p, 1, ms);
    if (r > 0) return 1;
    if (r == 0) return 0;
    if (errno != EINTR) return -1;
    if (ms == 0) return 0;
  }
}

}  // namespace

socket_session::socket_session(socket_session&& o) noexcept
    : _s(std::move(o._s)), _fd(std::exchange(o._fd, -1)), _eof(o._eof) {}

socket_session& socket_session::operator=(socket_session&& o) noexcept {
  if (this != &o) {
    if (_fd >= 0) ::close(_fd);
    _s = std::move(o._s);
    _fd = std::exchange(o._fd, -1);
    _eof = o._eof;
  }
  return *this;
}

socket_session::~socket_session() {
  if (_fd >= 0) ::close(_fd);
}

result<socket_session> socket_session::accept(const context& ctx, int fd,
                                              clock::time_point deadline) {
  auto s = session::accept(ctx);
  if (!s) {
    ::close(fd);
    return error{s.err()};
  }
  return handshake(std::move(*s), fd, deadline);
}

result<socket_session> socket_session::connect(const context& ctx, int fd, std::string_view host,
                                               clock::time_point deadline) {
  auto s = session::connect(ctx, host);
  if (!s) {
    ::close(fd);
    return error{s.err()};
  }
  return handshake(std::move(*s), fd, deadline);
}

result<socket_session> socket_session::handshake(session s, int fd, clock::time_point deadline) {
  socket_session c(std::move(s), fd);
  // Bounded by the deadline: every round either progresses (bytes in or out) or waits.
  int r = c._s.handshake();
  for (;;) {
    if (!c.flush(deadline)) return error{"tls handshake: cannot send"};
    if (r == 1) return c;
    if (r < 0) return error{std::string("tls handshake: ") + c._s.failure_reason()};
    if (c._eof) return error{"tls handshake: peer closed"};
    long got = c.fill(deadline);
    if (got == timed_out) return error{"tls handshake: timed out"};
    if (got == failed) return error{"tls handshake: receive failed"};
    r = c._s.handshake();
  }
}

bool socket_session::flush(clock::time_point deadline) {
  // Bounded by the deadline: each round sends something or waits for room.
  while (!_s.pending_output().empty()) {
    auto out = _s.pending_output();
    ssize_t n = ::send(_fd, out.data(), out.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      _s.consume_output(static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (wait_for(_fd, POLLOUT, deadline) != 1) return false;
      continue;
    }
    return false;
  }
  return true;
}

long socket_session::fill(clock::time_point deadline) {
  if (_eof) return 0;
  // Bounded by the deadline: each round receives, fails or waits.
  for (;;) {
    ssize_t n = ::recv(_fd, _buf, sizeof _buf, MSG_DONTWAIT);
    if (n > 0) {
      _s.feed(std::span<const std::byte>(_buf, static_cast<size_t>(n)));
      return 1;
    }
    if (n == 0) {
      _eof = true;
      _s.feed_eof();
      return 0;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) return failed;
    int w = wait_for(_fd, POLLIN, deadline);
    if (w == 0) return timed_out;
    if (w < 0) return failed;
  }
}

long socket_session::read(std::span<std::byte> out, clock::time_point deadline) {
  if (_fd < 0) return failed;
  // Bounded by the deadline: every round decrypts, ends, or receives more (or times out).
  for (;;) {
    int r = _s.read(out);
    if (!flush(deadline)) return r > 0 ? r : failed;  // e.g. an alert or a key update answer
    if (r > 0) return r;
    if (r == session::closed) return ended;
    if (r < 0) return _eof ? ended : failed;  // a cut TCP stream after EOF reads as the end
    if (_eof) return ended;
    long got = fill(deadline);
    if (got == timed_out || got == failed) return got;
  }
}

bool socket_session::write_all(std::string_view bytes, clock::time_point deadline) {
  if (_fd < 0) return false;
  auto span = std::span<const std::byte>(reinterpret_cast<const std::byte*>(bytes.data()),
                                         bytes.size());
  // Encrypt in pieces so pending ciphertext stays small for a large body.
  constexpr size_t piece = 64 * 1024;
  for (size_t off = 0; off < span.size(); off += piece) {
    auto part = span.subspan(off, std::min(piece, span.size() - off));
    if (_s.write(part) != static_cast<int>(part.size())) return false;
    if (!flush(deadline)) return false;
  }
  return true;
}

void socket_session::close(clock::time_point deadline) {
  if (_fd < 0) return;
  if (_s.handshake_done()) {
    _s.shutdown();
    flush(deadline);
  }
  ::close(_fd);
  _fd = -1;
}

}  // namespace sr::tls
