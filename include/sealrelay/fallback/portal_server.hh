// The escrow portal's HTTPS server (DESIGN.md §7, issue 9 "Portal"), run inside the sidecar
// on fallback.portal_listen with the relay's certificate (TLS 1.2+). Routes:
//   GET  /m/<id>/<secret>          the page that offers a code
//   POST /m/<id>/<secret>/code     mails a 6-digit code to the record's recipient
//   POST /m/<id>/<secret>          form field `code`: the message after the right code
//   GET  /m/<id>/<secret>/a/<n>    attachment n, for a reader holding the session cookie
// Anything else is the neutral 404. An unusable record and a wrong secret look alike (the
// neutral page; a locked record shows the locked page). Every response carries
// portal::security_headers(); every code request, wrong code, lock, view, download and
// refusal is one audit line. The sidecar is the slow path: a few worker threads, each with
// its own escrow store, serve one connection at a time with blocking TLS under deadlines.
#pragma once
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "sealrelay/fallback/audit_event.hh"
#include "sealrelay/fallback/escrow_store.hh"
#include "sealrelay/fallback/protocol.hh"
#include "sealrelay/tls/context.hh"
#include "sealrelay/util/result.hh"

namespace sr::fallback::portal {

// Spool `mail` (a file in the outbox) through the relay; true once it is durable. Called
// from portal worker threads, concurrently: the hook must be thread-safe.
using submit_fn = std::function<bool(const wire::output& mail, std::chrono::milliseconds timeout)>;
// Open an escrow store for one worker thread (each thread keeps its own).
using store_factory = std::function<result<std::unique_ptr<escrow_store>>()>;

struct server_options {
  std::string listen;                 // "ip:port" or "[v6]:port"; port 0 = any (tests)
  std::string cert_file, key_file;    // the relay's tls.cert_file / tls.key_file
  tls::tls_version min_version = tls::tls_version::v1_2;  // raised to 1.2 when lower
  std::string state_dir;              // code mails are written to <state_dir>/fallback/outbox/
  std::string hostname;               // server.hostname: From noreply-escrow@<hostname>
  store_factory open_store;
  submit_fn submit_mail;
  audit_log* audit = nullptr;         // null: no audit lines
  std::function<seconds_t()> clock;   // empty: the system clock (tests move time)

  unsigned workers = 8;               // connections served at once
  unsigned queue = 64;                // accepted connections waiting; more are closed at once
  // Open or waiting per client (an IPv6 /64 counts as one); a browser opens up to 6 per
  // host, and several readers may share one address behind NAT.
  unsigned connections_per_client = 16;
  std::chrono::milliseconds handshake_timeout{10'000};
  std::chrono::milliseconds request_timeout{20'000};  // one request, first byte to last
  // Keep-alive wait for the next request: short, as an idle connection holds a worker (and
  // none is kept while other connections wait for one).
  std::chrono::milliseconds idle_timeout{3'000};
  std::chrono::milliseconds write_timeout{30'000};    // one response (a large attachment)
  std::chrono::milliseconds submit_timeout{30'000};   // the code mail until durable
  unsigned max_requests = 100;        // per connection
  std::size_t max_head = 8192;        // request line + header fields
  std::size_t max_body = 4096;        // a form with a code

  int codes_per_link = 3;             // code mails per link per window
  int codes_per_ip = 10;              // code mails per client (address, IPv6 /64) per window
  std::chrono::seconds code_window{10 * 60};
  std::chrono::seconds session_lifetime{30 * 60};  // the download cookie
  std::size_t max_sessions = 10'000;
};

class server {
 public:
  explicit server(server_options o);
  ~server();  // stop()
  server(const server&) = delete;
  server& operator=(const server&) = delete;

  // Load the certificate, bind and listen, start the threads; an error names what failed.
  status start();
  // Stop accepting, end open connections (a request being answered finishes first) and
  // join every thread. Idempotent.
  void stop();
  // Return the bound port (after start(); the chosen one when listen asked for port 0).
  uint16_t port() const;

 private:
  struct impl;
  std::unique_ptr<impl> _impl;
};

}  // namespace sr::fallback::portal
