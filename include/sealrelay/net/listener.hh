// A listening socket per shard (SO_REUSEPORT) with one multishot accept armed.
// The kernel spreads new connections across the shards' sockets.
#pragma once
#include <sys/socket.h>

#include <functional>
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

 private:
  void on_complete(int res, unsigned flags) override;
  core::shard& _shard;
  int _fd;
  std::function<void(int)> _on_accept;
  bool _armed = false;
  bool _stopped = false;
};

}  // namespace sr::net
