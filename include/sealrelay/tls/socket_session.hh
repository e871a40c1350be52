// A blocking TLS connection over a socket fd, for the few places that run off any event
// loop on threads of their own (the sidecar's escrow portal, test clients): tls::session
// over in-memory buffers, pumped with poll(), recv() and send(). Every call takes a
// deadline, so a silent or slow peer costs a thread at most that long. Owns the fd.
#pragma once
#include <chrono>
#include <cstddef>
#include <span>
#include <string_view>

#include "sealrelay/tls/context.hh"
#include "sealrelay/tls/session.hh"
#include "sealrelay/util/result.hh"

namespace sr::tls {

class socket_session {
 public:
  using clock = std::chrono::steady_clock;

  // Results of read() besides a byte count.
  static constexpr long ended = 0;      // close_notify or TCP EOF
  static constexpr long failed = -1;    // TLS or socket error (see tls().failure_reason())
  static constexpr long timed_out = -2; // the deadline passed

  // Take `fd` (connected, blocking or not) and run the server handshake until `deadline`.
  // The fd is closed on failure too.
  static result<socket_session> accept(const context& ctx, int fd, clock::time_point deadline);
  // Take `fd` and run a client handshake for `host` (see session::connect) until `deadline`.
  static result<socket_session> connect(const context& ctx, int fd, std::string_view host,
                                        clock::time_point deadline);

  socket_session(socket_session&& o) noexcept;
  socket_session& operator=(socket_session&& o) noexcept;
  socket_session(const socket_session&) = delete;
  socket_session& operator=(const socket_session&) = delete;
  ~socket_session();

  // Read decrypted bytes into `out`: >0 bytes, ended, failed or timed_out.
  long read(std::span<std::byte> out, clock::time_point deadline);
  // Encrypt and send all of `bytes` before `deadline`; false on error or timeout.
  bool write_all(std::string_view bytes, clock::time_point deadline);
  // Send close_notify (best effort, until `deadline`) and close the fd.
  void close(clock::time_point deadline);

  const session& tls() const { return _s; }
  int fd() const { return _fd; }

 private:
  socket_session(session s, int fd) : _s(std::move(s)), _fd(fd) {}
  static result<socket_session> handshake(session s, int fd, clock::time_point deadline);
  // Send pending ciphertext; false on error or timeout.
  bool flush(clock::time_point deadline);
  // Receive once and lend it to the session: 1 fed, 0 EOF fed, failed, timed_out.
  long fill(clock::time_point deadline);

  session _s;
  int _fd = -1;
  bool _eof = false;
  std::byte _buf[16 * 1024];  // one TLS record's worth of ciphertext per recv
};

}  // namespace sr::tls
