// Runs an SMTP server on N shard threads until SIGTERM/SIGINT, then drains:
// listeners close, idle sessions get 421, open transactions get up to
// server.drain_timeout to finish, the rest are cut (their messages were never
// acknowledged, so nothing accepted is lost). Shared by sealrelay and sealrelay-sink.
#pragma once
#include <functional>
#include <memory>

#include "config/config.hh"
#include "server/server.hh"

namespace sr::server {

struct runtime_hooks {
  // Build shard `index`'s store on its own thread (spool recovery happens here);
  // null = start-up failure (already logged).
  std::function<std::unique_ptr<message_store>(core::shard&)> make_store;
  // Called on the main thread once every shard listens.
  std::function<void()> on_ready;
  // Called on the main thread every second while running (progress, stats).
  std::function<void()> on_second;
  // Called on the main thread for SIGHUP (re-read what can change at run time).
  std::function<void()> on_reload;
};

// Returns the process exit code: 0 after a clean drain, 1 when start-up failed.
int run(const config::config& cfg, shared_state& st, const runtime_hooks& hooks);

}  // namespace sr::server
