// One TLS connection (RAII over WOLFSSL*) driven over in-memory buffers: the engine owns
// the socket, feeds received ciphertext in and writes pending_output() out. No I/O here.
//
// Input contract: feed(span) lends the span to the session for the next single call to
// handshake()/read()/write()/shutdown(). wolfSSL reads straight from it; whatever it has
// not consumed when that call returns is copied into a small internal buffer (rare: the
// tail after the handshake's last message, or when `out` of read() filled up), so the
// caller may recycle its receive buffer as soon as that one call returns.
// Output contract: every call may append ciphertext; the engine sends pending_output()
// and reports what went out with consume_output(). The buffer is freed once drained, so
// an idle session holds no output memory.
#pragma once
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "sealrelay/tls/context.hh"
#include "sealrelay/tls/dane.hh"
#include "sealrelay/tls/verdict.hh"
#include "sealrelay/util/result.hh"

struct WOLFSSL;

namespace sr::tls {

class session_cache;

class session {
 public:
  // Three-way results of handshake()/read()/write().
  static constexpr int want_input = 0;  // all fed input consumed; feed more
  static constexpr int failed = -1;     // fatal: see failure_reason(); send pending output, close
  static constexpr int closed = -2;     // read(): the peer sent close_notify

  // Create a server-side session (accepting) from a server context.
  static sr::result<session> accept(const context& ctx);
  // Create a client-side session for `host` (SNI unless an IP literal, and the name the
  // certificate must carry; "" = skip the name check). With a cache, offers the cached
  // session for `host` and stores new resumable sessions into it. With usable TLSA records
  // (others are ignored) the verdict comes from DANE (RFC 7672), not the CA file, and the
  // cache keeps such sessions apart, per record set, from CA-verdict ones.
  static sr::result<session> connect(const context& ctx, std::string_view host,
                                     session_cache* cache = nullptr,
                                     std::span<const tlsa_record> tlsa = {});

  session(session&& o) noexcept;
  session& operator=(session&& o) noexcept;
  session(const session&) = delete;
  session& operator=(const session&) = delete;
  ~session();

  // Lend received ciphertext to the next call (see the input contract above).
  void feed(std::span<const std::byte> ciphertext);
  // Tell the session the peer closed the TCP stream (EOF): pending reads then fail.
  void feed_eof() { _eof = true; }

  // Advance the handshake: 1 done, 0 wants more input, <0 failed (failure_reason()).
  int handshake();
  // Decrypt into out: >0 bytes, 0 wants more input, closed, or failed. Call until <= 0.
  int read(std::span<std::byte> out);
  // Encrypt all of plain into pending output: plain.size() or failed. Handshake first.
  int write(std::span<const std::byte> plain);
  // Queue a close_notify alert into pending output.
  void shutdown();

  // Ciphertext waiting to go to the socket.
  std::span<const std::byte> pending_output() const {
    return std::span<const std::byte>(reinterpret_cast<const std::byte*>(_out.data()), _out.size())
        .subspan(_out_off);
  }
  // Move all pending output to the end of `into`: when `into` is empty the buffers are
  // swapped, so ciphertext is never copied on its way to the socket (tls::stream).
  void take_output(std::string& into);
  // Drop n bytes of pending output that the socket accepted; frees the buffer when empty.
  void consume_output(size_t n);

  bool handshake_done() const { return _done; }
  bool is_client() const { return _client; }
  // Return the negotiated version, "TLSv1.3" ("" before the handshake).
  std::string_view version() const;
  // Return the negotiated cipher suite's IANA name, "TLS_AES_256_GCM_SHA384".
  std::string_view cipher() const;
  // Return the symmetric strength of the negotiated cipher in bits (0 before the handshake).
  int cipher_bits() const;
  // Return true when the handshake resumed an earlier session (ticket or session id).
  bool resumed() const;
  // Return the client-side certificate verdict (restored from the cache on resumption).
  cert_verdict verdict() const { return _verdict; }
  // Return true when verdict() came from TLSA records (DANE) rather than the CA file.
  bool dane_checked() const { return _dane_checked; }
  // Return which record and chain certificate decided a DANE verdict (-1 when resumed).
  const dane_match& dane() const { return _dane; }
  // Return the peer certificate's subject, "/O=.../CN=mx.test" ("" when none).
  const std::string& peer_subject() const { return _subject; }
  // Return the certificates the server sent (client side), DER, leaf first; empty on the
  // server side and after a resumption (none was sent).
  const std::vector<std::vector<uint8_t>>& peer_certificates() const { return _peer_chain; }
  // Return the audit reason token of a failure: "handshake-failed", "old-protocol", ...
  const char* failure_reason() const { return _reason; }
  // Return wolfSSL's error code of the failure (for logs), 0 when none.
  int error_code() const { return _error; }

  WOLFSSL* native() const { return _ssl; }

 private:
  friend struct io_hooks;

  session(WOLFSSL* ssl, bool client);
  void bind();                 // point wolfSSL's I/O and verify context at this object
  void keep_unconsumed();      // copy the unconsumed tail of the lent span
  int fail(int ret);           // record error/reason from a wolfSSL return value
  void on_handshake_done();
  void check_dane();           // DANE verdict from the peer chain and _tlsa
  void remember_session();

  WOLFSSL* _ssl = nullptr;
  session_cache* _cache = nullptr;
  std::string _host;           // expected name (client)
  std::string _dane_tag;       // cache-key suffix of the TLSA record set ("" without DANE)
  std::vector<tlsa_record> _tlsa;      // usable TLSA records until the handshake is done
  dane_match _dane;
  std::string _subject;
  std::string _cached_subject;         // subject of the offered session (until done)
  // The chain as the server sent it (client side), taken in the verify callback: this
  // wolfSSL keeps no peer chain per session (tools/build-wolfssl).
  std::vector<std::vector<uint8_t>> _peer_chain;

  std::span<const std::byte> _lent;    // caller's span, valid for one call only
  std::vector<std::byte> _in;          // unconsumed input kept across calls (usually empty)
  size_t _in_off = 0;
  std::string _out;                    // pending ciphertext; freed when drained
  size_t _out_off = 0;

  const char* _reason = "";
  int _error = 0;
  cert_verdict _verdict = cert_verdict::none;
  cert_verdict _cached_verdict = cert_verdict::none;  // verdict of the offered session
  bool _client = false;
  bool _done = false;
  bool _eof = false;
  bool _peer_closed = false;   // close_notify received
  bool _ticket_seen = false;   // a new session ticket arrived: store it after this call
  bool _chain_seen = false;    // the verify callback ran (a certificate chain came in)
  bool _dane_checked = false;  // the verdict is DANE's (set at connect when records are usable)
};

}  // namespace sr::tls
