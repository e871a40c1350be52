// The control socket of the running daemon (<server.state_dir>/control.sock, mode 0600):
// one thread, off the shards' loops, serving one connection at a time. Each connection
// sends one request line (protocol.hh) within a deadline; the handler (which asks the
// shards and waits for them, bounded) returns the reply, written back before the close.
// A socket file left by a crashed daemon is replaced; one a live daemon listens on is not.
#pragma once
#include <atomic>
#include <functional>
#include <string>
#include <thread>

#include "sealrelay/control/protocol.hh"
#include "sealrelay/util/result.hh"

namespace sr::control {

class server {
 public:
  struct options {
    std::string socket_path;
    // Answer one decoded request: the whole reply (one JSON object line). Runs on the
    // server's thread.
    std::function<std::string(const request&)> handler;
    unsigned read_timeout_ms = 2000;   // the request line must arrive within this
    unsigned write_timeout_ms = 10000; // the reply must be taken within this
  };
  explicit server(options opt);
  ~server();
  server(const server&) = delete;
  server& operator=(const server&) = delete;

  // Bind the socket (0600) and start the thread.
  sr::status start();
  // Stop the thread and remove the socket file (idempotent).
  void stop();
  // Return whether a server listens on the socket at `path` (a connect succeeds).
  static bool live(const std::string& path);

 private:
  void serve();
  void serve_one(int fd);

  options _opt;
  int _listen_fd = -1;
  int _wake_fd = -1;
  bool _bound = false;
  std::thread _thread;
};

}  // namespace sr::control
