// TLS over a net::stream: the one pump shared by the inbound connection, the outbound
// link and the tools. Before start_tls() bytes pass through untouched; after it, received
// ciphertext drives the handshake and is decrypted into pool chunks, and plaintext queued
// with send() is encrypted when the stream next writes. Subclasses see plaintext chunks,
// "handshake done/failed", and one on_end() for TCP EOF or the end of the TLS layer.
#pragma once
#include <sys/uio.h>

#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "sealrelay/net/stream.hh"
#include "sealrelay/tls/session.hh"

namespace sr::tls {

class stream : public net::stream {
 public:
  stream(core::shard& sh, net::buffer_ring& br, net::chunk_pool& pool, int fd);
  ~stream() override;

  // Queue application bytes: encrypted once TLS is on (after the handshake), else as is.
  void send(std::string_view bytes);
  // Queue body pieces; under TLS each is encrypted straight from its buffer (no copy).
  void send(std::span<const iovec> pieces);
  // Bytes not yet taken by the peer: queued plaintext, pending records and the socket send.
  size_t unsent() const;

  bool tls_on() const { return _tls != nullptr; }
  bool tls_handshaking() const { return _tls && !_tls->handshake_done() && !_failed; }
  // The session once start_tls() ran (version, cipher, verdict, failure reason), else null.
  const session* tls() const { return _tls.get(); }

 protected:
  // Put `s` on the stream: output queued so far goes out in plaintext first, every
  // later byte is TLS. A client session sends its ClientHello now. Returns false when
  // the handshake failed at once (on_tls_failed() is not called then).
  bool start_tls(session s);

  // Received plaintext in `c` [0, len): the raw chunk before TLS, a pool chunk holding
  // decrypted bytes after it. The callee owns the reference to `c`.
  virtual void on_plain(net::chunk* c, size_t len) = 0;
  // The handshake completed: tls() reports version, cipher and certificate verdict.
  virtual void on_tls_ready() = 0;
  // The handshake failed (tls()->failure_reason()); its alert is queued and nothing more
  // is decrypted. A later TCP EOF still arrives through on_end().
  virtual void on_tls_failed() = 0;
  // The stream ended, once: TCP EOF or recv error (err <= 0, -errno), or after the
  // handshake the peer's close_notify (session::closed) or a bad record (session::failed).
  // EOF during the handshake arrives here too (tls_handshaking() is still true).
  virtual void on_end(int err) = 0;

 private:
  void on_data(net::chunk* c, size_t len) final;
  void on_eof(int err) final;
  void prepare_wire(std::string& out, std::string& wire) final;
  void on_ciphertext(net::chunk* c, size_t len);
  void end(int err);

  static constexpr size_t record_bytes = 16384;  // TLS's largest record payload
  std::unique_ptr<session> _tls;
  std::string _plain;   // application bytes waiting for the handshake or the next write
  bool _failed = false; // handshake failed: nothing more is decrypted
  bool _ended = false;  // on_end() has run
};

}  // namespace sr::tls
