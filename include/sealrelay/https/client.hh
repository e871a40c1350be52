// The engine's own HTTPS client (MTA-STS policy fetches, TLS-RPT report POSTs) on a
// shard's io_uring: DNS through the shard's resolver, TCP connect, TLS 1.2+ over
// tls::stream with SNI = host, one HTTP/1.1 request with "Connection: close". RFC 8461
// §3.3: the certificate must chain to the context's CA file and name the host, no
// redirects are followed; the whole exchange is bounded by timeout_ms (shard tick).
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "sealrelay/core/shard.hh"
#include "sealrelay/net/buffer_ring.hh"
#include "sealrelay/net/chunk.hh"

namespace sr::dns {
class resolver;
}
namespace sr::tls {
class context;
}

namespace sr::https {

enum class failure : uint8_t {
  none,
  dns,           // the host did not resolve
  connect,       // no address accepted the TCP connection
  tls,           // handshake failed, or a version below TLS 1.2
  cert,          // the certificate did not verify or does not name the host
  timeout,       // timeout_ms passed before the response ended
  status,        // an HTTP status other than 200 (GET) / 2xx (POST)
  redirect,      // a 3xx (never followed)
  content_type,  // GET: not the expected media type
  too_large,     // the body is over max_body
  protocol,      // malformed or truncated response
  local,         // a bad request or a local resource failure
};
// Return the token for logs: "none", "dns", "connect", ...
const char* to_string(failure f);

struct request {
  std::string method = "GET";          // GET | POST
  std::string host;                    // DNS A/AAAA name, SNI, and the name the certificate must carry
  uint16_t port = 443;
  std::string path = "/";
  std::string content_type;            // POST: the body's media type
  std::string body;                    // POST body
  std::string expect_content_type;     // GET: required media type ("text/plain"; parameters like charset allowed), "" = any
  size_t max_body = 64 * 1024;         // larger body: too_large
  uint32_t timeout_ms = 60000;         // the whole exchange (DNS + connect + TLS + response)
};

struct response {
  failure fail = failure::none;
  unsigned status = 0;                 // HTTP status when one was read
  std::string content_type, body;
  std::string detail;                  // for logs: "cert-untrusted", "HTTP 302 to ...", strerror text
};

class client {
 public:
  // `ctx` is a client context (tls::context::client(ca_file, tls_version::v1_2)); every
  // reference must outlive the client.
  client(core::shard& sh, dns::resolver& res, net::buffer_ring& br, net::chunk_pool& pool, const tls::context& ctx);
  ~client();                            // in-flight fetches are dropped: their callbacks never run
  client(const client&) = delete;
  client& operator=(const client&) = delete;
  // Fetch `r`; `done` runs exactly once, later, on the shard thread (never inside fetch()).
  void fetch(request r, std::function<void(const response&)> done);
  size_t in_flight() const;

  struct state;

 private:
  std::shared_ptr<state> _st;
};

}  // namespace sr::https
