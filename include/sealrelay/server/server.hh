// The inbound SMTP server of a shard: its listeners, connections, caps, buffers and
// TLS context. Accepted messages go to the `message_store` it is given (the spool
// intake for the relay, a counter for the sink); it knows nothing of delivery.
// Process-wide state (connection caps, drain flag, counters) is in `shared_state`,
// touched only through atomics — never a lock.
#pragma once
#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "sealrelay/config/config.hh"
#include "sealrelay/core/shard.hh"
#include "sealrelay/net/buffer_ring.hh"
#include "sealrelay/net/chunk.hh"
#include "sealrelay/net/conn_caps.hh"
#include "sealrelay/net/conn_list.hh"
#include "sealrelay/net/listener.hh"
#include "sealrelay/server/store.hh"

namespace sr::tls {
class context;
}

namespace sr::server {

class connection;
class authenticator;

// One [[listen]] entry as the shard serves it.
struct listener_info {
  const config::listen_entry* entry;
  std::unique_ptr<net::listener> sock;
};

struct counters {
  std::atomic<uint64_t> connections_total{0};
  std::atomic<uint64_t> connections_refused{0};
  std::atomic<uint64_t> messages_accepted{0};
  std::atomic<uint64_t> messages_rejected{0};
  std::atomic<uint64_t> tls_handshakes{0};
  std::atomic<uint64_t> tls_failures{0};
};

// A shard's own inbound TLS counts (plain fields: only its thread writes them; the relay
// copies them into /metrics on its tick).
struct inbound_tls_counts {
  // Handshakes completed, by version: TLSv1.0, TLSv1.1, TLSv1.2, TLSv1.3, anything else.
  std::array<uint64_t, 5> by_version{};
  uint64_t failed = 0;  // handshakes that failed
  // Count one completed handshake that negotiated `version` ("TLSv1.3").
  void established(std::string_view version);
};

// The inbound connection cap in force: limits.max_connections, lowered when the process's
// descriptor limit (RLIMIT_NOFILE, as raised at start) cannot hold that many. A few
// descriptors are kept (min(512, fd_limit / 4)) for the relay's own: spool files,
// deliveries, DNS, the listeners and the HTTP API; without them, a relay full of idle
// clients could no longer store or deliver a message, and the clients over the limit would
// wait in the listen backlog unanswered instead of getting "421 4.3.2".
uint32_t connection_cap(uint64_t max_connections, uint64_t fd_limit);

struct shared_state {
  explicit shared_state(const config::config& c);
  const config::config& cfg;
  unsigned shards = 1;
  uint32_t max_connections;  // connection_cap(limits.max_connections, RLIMIT_NOFILE at start)
  std::atomic<bool> draining{false};
  net::conn_caps conns{1u << 16};  // open connections, every shard, total and per client address
  counters stats;
};

// Recipients refused at RCPT (issue 14: the suppression list, action "refuse"); the relay
// implements it over src/suppress. Called on the server's shard only.
class recipient_filter {
 public:
  // Return whether RCPT TO `address` must be refused as suppressed.
  virtual bool refuse(std::string_view address) = 0;

 protected:
  ~recipient_filter() = default;
};

// A scripted peer (sealrelay-sink --max-conns, --defer-every, --record): sees every
// connection and message per listener and may refuse them with a 4xx, as a throttling
// mailbox provider does. The relay has none. Called on the server's shard only (with
// several shards, on each: the implementation synchronises its own counts).
class peer_script {
 public:
  // A client connected on `li`: return a greeting refusal (a complete "421 ...\r\n"
  // line; the connection is then closed) or "" to serve it. Each served one gets closed().
  virtual std::string admit(const config::listen_entry& li) = 0;
  // A connection admit() served on `li` has closed.
  virtual void closed(const config::listen_entry& li) = 0;
  // The final dot of `env`'s message on `li`: return a refusal (a line without CRLF; a
  // "421" one also closes the connection) or "" to store the message.
  virtual std::string end_message(const config::listen_entry& li, const inbound::envelope& env) = 0;

 protected:
  ~peer_script() = default;
};

class shard_server {
 public:
  // `store` takes the accepted messages; it must outlive this server.
  shard_server(core::shard& sh, shared_state& st, message_store& store);
  ~shard_server();

  // Register the receive buffers and load TLS (on the shard thread); nothing listens yet.
  status prepare();
  // Open the listeners and start accepting (after prepare()).
  status listen();
  // Stop accepting; idle sessions get 421, open transactions may finish.
  void begin_drain();
  // No connection left and no store write in flight.
  bool idle() const;
  // Close every connection now (drain timeout).
  void abort_all();

  core::shard& shard() { return _shard; }
  shared_state& shared() { return _st; }
  net::chunk_pool& pool() { return *_pool; }
  net::buffer_ring& buffers() { return *_ring; }
  message_store& store() { return _store; }
  tls::context* tls_server() { return _tls_ctx.get(); }
  // Submission AUTH (null: submission sessions answer 454 to AUTH). `a` must outlive the
  // server; set before listen().
  void set_authenticator(authenticator* a) { _auth = a; }
  authenticator* auth() { return _auth; }
  // Who decides which recipients are refused as suppressed (null: none); set before listen().
  void set_recipient_filter(recipient_filter* f) { _filter = f; }
  recipient_filter* filter() { return _filter; }
  // The scripted peer's hooks (null: serve everyone, store everything); set before listen().
  void set_peer_script(peer_script* p) { _script = p; }
  peer_script* script() { return _script; }
  size_t connection_count() const { return _conns.size(); }
  inbound_tls_counts& tls_counts() { return _tls_counts; }
  const inbound_tls_counts& tls_counts() const { return _tls_counts; }
  // Called by a connection when it is fully closed (deletes it).
  void on_connection_closed(connection* c);

 private:
  void on_accept(listener_info& li, int fd);
  void on_tick();

  core::shard& _shard;
  shared_state& _st;
  message_store& _store;
  std::unique_ptr<net::chunk_pool> _pool;
  std::unique_ptr<net::buffer_ring> _ring;
  std::unique_ptr<tls::context> _tls_ctx;
  std::vector<std::unique_ptr<listener_info>> _listeners;
  authenticator* _auth = nullptr;
  recipient_filter* _filter = nullptr;
  peer_script* _script = nullptr;
  net::conn_list<connection> _conns;
  bool _draining = false;
  inbound_tls_counts _tls_counts;
};

}  // namespace sr::server
