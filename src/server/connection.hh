// One inbound SMTP connection: a tls::stream carrying an inbound::session, TLS after
// STARTTLS (or from the start on implicit-TLS listeners).
// Received chunks queue here untouched; body spans the session reports are kept by
// reference (the chunk is retained) and handed to the store as iovecs: zero copy.
// A large message (its body past spill_threshold) streams to a spool body file instead:
// the spans gathered so far, then every body span as it comes, are copied into a fill
// buffer (no chunk is kept), written one buffer at a time; while a write is in flight and
// the other buffer is full, the session is fed no more and the socket is not read
// (memory per message stays bounded).
#pragma once
#include <sys/uio.h>

#include <array>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "sealrelay/auth/users.hh"

#include "sealrelay/inbound/session.hh"
#include "sealrelay/tls/stream.hh"
#include "sealrelay/server/store.hh"

namespace sr::server {

class shard_server;
struct listener_info;

class connection final : public tls::stream, inbound::events, store_client {
 public:
  connection(shard_server& srv, const listener_info& li, int fd, const sockaddr_storage& peer,
             bool relay_allowed);
  ~connection() override;

  // Greet (or start the implicit TLS handshake) and start reading.
  void start();
  // Check deadlines against `now_ms`; times out the session when one has passed.
  void check_deadline(uint64_t now_ms);
  // SIGTERM: close now when idle, else after the current transaction.
  void begin_drain();
  void force_close() { stream::close(true); }
  const std::string& peer_ip() const { return _peer_ip; }
  unsigned ip_slot() const { return _ip_slot; }
  void set_ip_slot(unsigned s) { _ip_slot = s; }
  const listener_info& listener() const { return _li; }

  connection* prev = nullptr;  // shard_server's intrusive list
  connection* next = nullptr;

  // The header section of the message being received (complete once its empty line came).
  const smtp::header_section& headers() const { return _headers; }

 private:
  struct piece {
    net::chunk* c;
    uint32_t off, len;
  };
  // tls::stream / net::stream
  void on_plain(net::chunk* c, size_t len) override;
  void on_tls_ready() override;
  void on_tls_failed() override;
  void on_end(int err) override;
  void on_closed() override;
  void on_drained() override;
  // inbound::events
  void send(std::string_view bytes) override;
  void start_tls() override;
  void begin_message(const inbound::envelope& env) override;
  void body(std::span<std::byte> bytes) override;
  void end_message(const inbound::envelope& env) override;
  void abort_message() override;
  void close() override;
  void check_auth(std::string_view user, std::string_view password) override;
  bool sender_allowed(std::string_view address) override;
  bool recipient_suppressed(std::string_view address) override;
  // store_client
  void on_stored(bool ok) override;

  std::string from_refusal(const inbound::envelope& env) const;
  bool open_tls();
  void pump();
  bool output_full() const;  // unsent replies past the bound: stop feeding the session
  void release_message();
  void release_input();
  // Large messages: start streaming once enough has gathered / the next write.
  void maybe_spill();
  void start_spill_write();
  void on_spill_written(bool ok);
  void finish_large();
  void submit_large(const inbound::envelope& env);
  bool spill_blocked() const;
  void clamp_rcvbuf();

  shard_server& _srv;
  const listener_info& _li;
  inbound::session _session;
  bool _implicit_tls = false;
  std::string _peer_ip;
  unsigned _ip_slot = ~0u;

  std::vector<piece> _in;            // received, not yet fed (FIFO; _in_head is the front)
  size_t _in_head = 0;
  net::chunk* _feeding = nullptr;    // chunk being fed to the session right now
  bool _awaiting_store = false;
  bool _discard_queued = false;      // STARTTLS accepted: drop queued plaintext input

  std::string _queue_id;             // current message
  std::string _received;             // its Received: header
  std::vector<iovec> _iov;           // header + body spans, in order
  std::vector<net::chunk*> _held;    // chunks the body spans point into
  smtp::header_section _headers;     // the client's header section (a copy, bounded)
  size_t _gathered = 0;              // body bytes in _iov[1..] (not yet written to a body file)
  uint64_t _reserve = 0;             // body file gap for this message's record (begin_message)
  size_t _spill_at = 0;              // body bytes gathered before streaming (1 when SIZE= is large)
  bool _no_spill = false;            // this message stays in memory (no body file)
  bool _rcvbuf_clamped = false;      // SO_RCVBUF set small for large messages (clamp_rcvbuf)
  // The body file of a large message and its write buffer; shared with a write in flight so
  // that a message dropped meanwhile (abort, refusal) frees them only when the write ends.
  struct spill {
    std::unique_ptr<spool::body_file> file;
    std::vector<std::byte> fill;    // body bytes not yet written
    std::vector<std::byte> flight;  // the write in flight
    iovec iov{};
    bool failed = false;
    std::unique_ptr<spool::stream_signer> signer;  // DKIM: sees every byte written
    std::string field;                             // its DKIM-Signature field, at the end
    size_t field_room = 0;                         // reserved for it in the body file
    std::array<iovec, 2> prefix{};                 // [field,] Received:
  };
  std::shared_ptr<spill> _spill;
  std::optional<inbound::envelope> _end_env;  // final dot seen, waiting for the last write

  uint64_t _last_input_ms = 0;
  uint64_t _phase_started_ms = 0;    // TLS handshake or DATA start
  uint64_t _partial_since_ms = 0;    // first byte of an unfinished command line
  uint64_t _closing_since_ms = 0;    // first deadline check that found us closing

  // Submission: the authenticated user's entry (its sender patterns), and a token the
  // authenticator's late answers check so they never reach a freed connection.
  std::optional<auth::user> _auth_user;
  std::shared_ptr<bool> _alive;  // made at the first AUTH (relay sessions never pay for it)
};

}  // namespace sr::server
