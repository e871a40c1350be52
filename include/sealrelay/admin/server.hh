// The admin endpoint (admin.listen): a tiny HTTP/1.1 server on its own thread, off the
// shards' hot path. GET /metrics answers the registry in Prometheus text format 0.0.4;
// GET /healthz answers 200 "ok\n" while the health callback says so, else 503, followed by
// the detail callback's lines (e.g. "fallback: down"); other paths go to the route
// callback (POST /escrow/retract), else 404; other methods 405. One request per connection (Connection: close), requests
// larger than max_request_bytes get 431, slow clients 408 at the deadline.
#pragma once
#include <atomic>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <thread>

#include "sealrelay/admin/metrics.hh"
#include "sealrelay/util/result.hh"

namespace sr::admin {

// What a route callback answers.
struct response {
  int code = 200;
  std::string content_type = "application/json";
  std::string body;
};

class server {
 public:
  struct options {
    std::string listen;                       // "ip:port" or "[v6]:port"; port 0 = any (tests)
    registry* metrics = nullptr;              // sealed by start(); null = empty /metrics
    std::function<bool()> healthy;            // called on the admin thread; null = healthy
    std::function<std::string()> health_detail;  // more /healthz lines ("" = none)
    // Other paths: called on the admin thread with the method, path and decoded body (it
    // may block briefly); nullopt = 404.
    std::function<std::optional<response>(std::string_view method, std::string_view path,
                                          std::string_view body)>
        route;
    unsigned timeout_ms = 5000;               // per connection, accept to response sent
    size_t max_request_bytes = 8192;          // request line + headers
    unsigned max_connections = 32;            // open at once; more wait in the backlog
  };

  explicit server(options opt);
  ~server();
  server(const server&) = delete;
  server& operator=(const server&) = delete;

  // Bind and listen on the calling thread (errors name the address), seal the registry,
  // then serve on a new thread.
  sr::status start();
  // Stop serving: wake the thread, close every connection, join. Idempotent.
  void stop();
  // Return the bound port (useful with port 0); 0 before start().
  uint16_t port() const { return _port; }

 private:
  void serve();

  options _opt;
  int _listen_fd = -1;
  int _wake_fd = -1;   // eventfd: stop() wakes poll()
  uint16_t _port = 0;
  std::thread _thread;
};

}  // namespace sr::admin
