// The HTTP injection API's listener on a shard ([http], DESIGN §7): a SO_REUSEPORT socket
// per shard with multishot accept on the shard's io_uring, HTTPS through tls::stream (or
// plain HTTP, allowed on loopback only), HTTP/1.1 keep-alive with the http/ codec, bearer
// tokens (401/403), POST /api/v1/messages parsed and built by api/ and compose(), and each
// message made durable through the shard's spool::intake before its 202. Caps: connections
// per process and per client address, the request size (413 from Content-Length before
// the body is read), read and idle deadlines checked on the shard's tick.
#pragma once
#include <sys/socket.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "sealrelay/api/request.hh"
#include "sealrelay/api/tokens.hh"
#include "sealrelay/core/shard.hh"
#include "sealrelay/net/buffer_ring.hh"
#include "sealrelay/net/chunk.hh"
#include "sealrelay/net/conn_caps.hh"
#include "sealrelay/net/conn_list.hh"
#include "sealrelay/net/listener.hh"
#include "sealrelay/spool/intake.hh"
#include "sealrelay/tls/context.hh"
#include "sealrelay/util/result.hh"

namespace sr::inject {

class connection;

// What the relay's config gives the listener (built by the composition root).
struct options {
  std::string listen;             // "ip:port" / "[v6]:port"
  bool tls = true;                // HTTPS; false only on a loopback address
  std::string cert_file, key_file;
  tls::tls_version min_tls_version = tls::tls_version::v1_2;
  std::string tokens_file;
  std::string hostname;           // server.hostname
  api::limits limits;             // the SMTP side's message size and recipient cap
  unsigned max_connections = 1000;   // per process; 503 and close above it
  unsigned max_conns_per_ip = 100;   // per client address, every shard; 503 above it (0 = no cap)
  uint64_t idle_timeout_ms = 60'000;     // keep-alive: no request begun
  uint64_t read_timeout_ms = 300'000;    // one request, first byte to last (408)
  uint64_t handshake_timeout_ms = 30'000;
};

// Return an error unless `listen` is an ip:port address, and, with `tls` false, a loopback
// one (127.0.0.0/8, ::1): plain HTTP would carry bearer tokens and mail in the clear.
status check_listen(std::string_view listen, bool tls);

// The bearer tokens every shard checks against: loaded at start, reloaded on SIGHUP (a
// bad file keeps the old set). Shards pick up a new set on their tick by generation.
class token_source {
 public:
  explicit token_source(std::string path) : _path(std::move(path)) {}
  // Load the file (start-up, SIGHUP; any thread); on error the current set stays.
  status reload();
  // Return the current set (null before the first successful reload()).
  std::shared_ptr<const api::token_set> current() const;
  uint64_t generation() const { return _generation.load(std::memory_order_acquire); }

 private:
  std::string _path;
  mutable std::mutex _mu;
  std::shared_ptr<const api::token_set> _set;
  std::atomic<uint64_t> _generation{0};
};

// Status codes counted per label in sealrelay_http_requests_total{code}; the last, 0, is
// "other".
inline constexpr uint16_t counted_codes[] = {202, 400, 401, 403, 404, 405, 408, 413, 415, 431, 500, 503, 0};
inline constexpr std::size_t counted_codes_size = std::size(counted_codes);
// Return the index of `code` in counted_codes (the last one when it is not listed).
std::size_t code_index(uint16_t code);

// What every shard's listener shares (built once per process).
struct shared_state {
  explicit shared_state(options o);
  options opt;
  token_source tokens;
  net::conn_caps conns{1u << 12};  // open API connections, every shard, as the SMTP side counts
  std::atomic<bool> draining{false};
  std::atomic<uint64_t>* messages_accepted = nullptr;  // the SMTP side's counter, shared
};

// One shard's counters (read on the shard thread by the composition root's metrics tick).
struct shard_stats {
  uint64_t requests_by_code[counted_codes_size] = {};
  uint64_t messages_accepted = 0;
  uint64_t recipients_accepted = 0;
};

class shard_server {
 public:
  // `buffers`/`pool` are the shard's receive ring and chunks; `intake` its spool intake.
  shard_server(core::shard& sh, shared_state& st, net::buffer_ring& buffers, net::chunk_pool& pool,
               spool::intake& intake);
  ~shard_server();
  shard_server(const shard_server&) = delete;
  shard_server& operator=(const shard_server&) = delete;

  // Load TLS (when on), open the listener and start accepting.
  status start();
  // Stop accepting; idle connections close, a request in progress gets its answer first.
  void begin_drain();
  // No connection left.
  bool idle() const { return _conns.size() == 0; }
  // Close every connection now (drain timeout).
  void abort_all();
  std::size_t connection_count() const { return _conns.size(); }
  const shard_stats& stats() const { return _stats; }

  // For connections.
  core::shard& shard() { return _shard; }
  net::buffer_ring& buffers() { return _buffers; }
  net::chunk_pool& pool() { return _pool; }
  spool::intake& intake() { return _intake; }
  tls::context* tls_context() { return _tls.get(); }
  const options& opt() const { return _st.opt; }
  shared_state& shared() { return _st; }
  const api::token_set* tokens() const { return _tokens.get(); }
  bool draining() const { return _draining; }
  void count_response(uint16_t code) { ++_stats.requests_by_code[code_index(code)]; }
  void count_accepted(std::size_t recipients);
  // Called by a connection once it is fully closed (deletes it).
  void on_connection_closed(connection* c);

 private:
  void on_accept(int fd);
  void on_tick();

  core::shard& _shard;
  shared_state& _st;
  net::buffer_ring& _buffers;
  net::chunk_pool& _pool;
  spool::intake& _intake;
  std::unique_ptr<tls::context> _tls;
  std::unique_ptr<net::listener> _listener;
  std::shared_ptr<const api::token_set> _tokens;
  uint64_t _tokens_generation = 0;
  net::conn_list<connection> _conns;
  bool _draining = false;
  shard_stats _stats;
};

}  // namespace sr::inject
