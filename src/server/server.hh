// The SMTP server half of a shard: its listeners, connections, buffers, TLS context
// and message store. Process-wide state (connection caps, drain flag, counters) is
// in `shared_state`, touched only through atomics — never a lock.
#pragma once
#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "config/config.hh"
#include "core/shard.hh"
#include "net/buffer_ring.hh"
#include "net/chunk.hh"
#include "net/listener.hh"
#include "server/store.hh"

namespace sr::tls {
class context;
}
namespace sr::core {
class mailboxes;
}
namespace sr::dns {
class resolver;
}
namespace sr::queue {
class scheduler;
struct job;
}
namespace sr::delivery {
class agent;
}
namespace sr::audit {
class writer;
}
namespace sr::admin {
struct relay_metrics;
}
namespace sr::policy {
class registry;
class reader;
}
namespace sr::spool {
struct message_meta;
struct message_location;
}

namespace sr::server {

class connection;

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

class shard_server;

struct shared_state {
  explicit shared_state(const config::config& c);
  const config::config& cfg;
  // Delivery (the relay; the sink leaves it off): shards, mailboxes, audit log fd.
  bool deliver = false;
  unsigned shards = 1;
  core::mailboxes* mail = nullptr;
  std::vector<std::atomic<shard_server*>> servers;
  int audit_fd = -1;
  admin::relay_metrics* metrics = nullptr;  // published by each shard on its tick
  policy::registry* policies = nullptr;     // TLS policy table; SIGHUP publishes a new one
  std::atomic<bool> draining{false};
  std::atomic<uint32_t> connections{0};
  // Per-client-IP connection counts, by hash of the address (collisions only make
  // the cap stricter for the colliding addresses).
  static constexpr unsigned ip_slots = 1u << 16;
  std::unique_ptr<std::atomic<uint32_t>[]> per_ip;
  counters stats;
};

class shard_server {
 public:
  // `make_store` builds this shard's store once the shard's ring exists.
  using store_factory = std::function<std::unique_ptr<message_store>(core::shard&)>;
  shard_server(core::shard& sh, shared_state& st, store_factory make_store);
  ~shard_server();

  // Open listeners, register buffers, load TLS; runs on the shard thread.
  status start();
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
  message_store& store() { return *_store; }
  tls::context* tls_server() { return _tls_ctx.get(); }
  size_t connection_count() const { return _conn_count; }
  queue::scheduler* scheduler() { return _sched.get(); }
  delivery::agent* agent() { return _agent.get(); }
  dns::resolver* resolver() { return _resolver.get(); }
  // Queue a durable message for delivery: one job per recipient domain, each sent to
  // the shard owning that domain.
  void dispatch(const spool::message_meta& meta, const spool::message_location& loc,
                const std::vector<uint32_t>& done = {});
  // Flush the audit log and wait (shutdown).
  void flush_audit();
  // Called by a connection when it is fully closed (deletes it).
  void on_connection_closed(connection* c);

 private:
  status start_delivery();
  void send_job(queue::job* j);
  void on_accept(listener_info& li, int fd);
  void on_tick();
  void publish_metrics();

  core::shard& _shard;
  shared_state& _st;
  store_factory _make_store;
  std::unique_ptr<net::chunk_pool> _pool;
  std::unique_ptr<net::buffer_ring> _ring;
  std::unique_ptr<message_store> _store;
  std::unique_ptr<tls::context> _tls_ctx;
  std::vector<std::unique_ptr<listener_info>> _listeners;
  connection* _conns = nullptr;   // intrusive list
  size_t _conn_count = 0;
  bool _draining = false;
  std::unique_ptr<dns::resolver> _resolver;
  std::unique_ptr<audit::writer> _audit;
  std::unique_ptr<queue::scheduler> _sched;
  std::unique_ptr<delivery::agent> _agent;
  std::unique_ptr<policy::reader> _policy_reader;
};

}  // namespace sr::server
