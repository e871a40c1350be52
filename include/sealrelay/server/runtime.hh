// Runs one unit of work per shard thread until SIGTERM/SIGINT, then drains:
// listeners close, idle sessions get 421, open transactions get up to
// server.drain_timeout to finish, the rest are cut (their messages were never
// acknowledged, so nothing accepted is lost). The unit is the inbound server alone
// (sealrelay-sink) or a composition root that adds delivery (sealrelay, src/relay/).
#pragma once
#include <functional>
#include <memory>

#include "sealrelay/config/config.hh"
#include "sealrelay/server/server.hh"

namespace sr::server {

// What one shard thread runs; every call happens on that thread.
class shard_unit {
 public:
  virtual ~shard_unit() = default;
  // Build and start everything (listeners last); an error stops the process.
  virtual status start() = 0;
  // Stop accepting; open transactions may finish.
  virtual void begin_drain() = 0;
  // Nothing left to wait for (no connection, no store write in flight).
  virtual bool idle() const = 0;
  // Close every connection now (drain timeout).
  virtual void abort_all() = 0;
  virtual size_t connection_count() const = 0;
  // The loop has stopped: flush what must reach the disk (audit).
  virtual void finish() {}
};

// Build a unit that serves inbound SMTP into `store` and nothing else (`script`, if any,
// may refuse connections and messages: sealrelay-sink's throttling options).
std::unique_ptr<shard_unit> inbound_only(core::shard& sh, shared_state& st, std::unique_ptr<message_store> store,
                                         peer_script* script = nullptr);

struct runtime_hooks {
  // Build shard `index`'s unit on its own thread; null = start-up failure (logged).
  std::function<std::unique_ptr<shard_unit>(core::shard&)> make_shard;
  // Without make_shard: build the shard's store (the unit is then inbound_only()).
  std::function<std::unique_ptr<message_store>(core::shard&)> make_store;
  // Without make_shard: the scripted peer every shard's server consults (null: none).
  peer_script* script = nullptr;
  // Called on the main thread once every shard listens.
  std::function<void()> on_ready;
  // Called on the main thread every second while running (progress, stats).
  std::function<void()> on_second;
  // Called on the main thread for SIGHUP (re-read what can change at run time).
  std::function<void()> on_reload;
  // Called on the main thread once SIGTERM/SIGINT (or a shard's exit) starts the drain.
  std::function<void()> on_stop;
};

// Returns the process exit code: 0 after a clean drain, 1 when start-up failed.
int run(const config::config& cfg, shared_state& st, const runtime_hooks& hooks);

}  // namespace sr::server
