// A listening socket per shard (SO_REUSEPORT) with one multishot accept armed.
// The kernel spreads new connections across the shards' sockets.
// Out of descriptors or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM), accepting pauses for
// backoff_ms and new connections wait in the listen backlog: the backlog stays readable,
// so re-arming at once would fail again at once, forever (a spin that logged 26 million
// lines in 20 s in the abuse drill). One warning per 10 s says how many accepts failed.
#pragma once
#include <sys/socket.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>

#include "sealrelay/core/shard.hh"
#include "sealrelay/util/result.hh"

namespace sr::net {

// Fail when another socket already listens on `addr` (a bind without SO_REUSEPORT
// collides with any listener, so a second daemon cannot silently share our port).
status probe_address_free(const sockaddr_storage& addr, socklen_t len);
// Open a non-blocking TCP listening socket on `addr` with SO_REUSEPORT.
result<int> open_listen_socket(const sockaddr_storage& addr, socklen_t len, int backlog = 4096);

// An accepted socket's peer address, with TCP_NODELAY set (replies are small and
// latency-bound). Nullopt, with `fd` closed, when the peer is already gone.
std::optional<sockaddr_storage> accepted_peer(int fd);

class listener final : core::completion {
 public:
  // `on_accept(fd)` gets each accepted socket (non-blocking, close-on-exec).
  listener(core::shard& sh, int fd, std::function<void(int)> on_accept);
  ~listener();
  void arm();
  // Stop accepting: cancel the accept and close the socket.
  void stop();
  bool stopped() const { return _stopped; }
  // Accepts that failed for lack of descriptors or memory (each one starts a pause).
  uint64_t resource_failures() const { return _resource_failures; }

  static constexpr uint64_t backoff_ms = 100;

 private:
  void on_complete(int res, unsigned flags) override;
  void on_tick();
  core::shard& _shard;
  int _fd;
  std::function<void(int)> _on_accept;
  bool _armed = false;
  bool _stopped = false;
  bool _backing_off = false;     // not accepting until _resume_at_ms
  uint64_t _resume_at_ms = 0;
  uint64_t _resource_failures = 0;
  uint64_t _unlogged_failures = 0;
  uint64_t _last_warn_ms = 0;
  std::shared_ptr<bool> _alive = std::make_shared<bool>(true);  // the tick hook outlives us
};

}  // namespace sr::net
