// Test helper: a blocking HTTPS/1.1 client over loopback (tls::socket_session, http codec),
// verifying the server against a CA file, one connection per object (keep-alive allowed).
// Used by the portal's unit test and the sidecar's integration test. Header-only; the test
// links the tls and http modules (fallback_dep brings both).
#pragma once
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "sealrelay/http/message.hh"
#include "sealrelay/tls/context.hh"
#include "sealrelay/tls/socket_session.hh"
#include "sealrelay/util/text.hh"

namespace sr::test {

struct reply {
  int code = 0;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  bool ok = false;  // a whole response arrived
  // Return the first header `name` (case-insensitive), "" when absent.
  std::string header(std::string_view name) const {
    for (const auto& [n, v] : headers)
      if (sr::iequals(n, name)) return v;
    return {};
  }
  // Count the headers called `name`.
  int count(std::string_view name) const {
    int n = 0;
    for (const auto& h : headers) n += sr::iequals(h.first, name);
    return n;
  }
};

class https_client {
 public:
  using clk = tls::socket_session::clock;

  // Connect to 127.0.0.1:port and verify the certificate for `host` against `ca_file`; a
  // failed connection is a test failure unless `may_fail` (then connected() says).
  https_client(uint16_t port, const std::string& ca_file, std::string host = "localhost",
               bool may_fail = false)
      : _host(std::move(host)) {
    auto ctx = tls::context::client(ca_file, tls::tls_version::v1_2);
    EXPECT_TRUE(ctx.ok()) << (ctx.ok() ? "" : ctx.err());
    if (!ctx) return;
    _ctx.emplace(std::move(*ctx));
    int fd = dial(port);
    if (fd < 0) return;
    auto s = tls::socket_session::connect(*_ctx, fd, _host, clk::now() + std::chrono::seconds(10));
    if (!may_fail) EXPECT_TRUE(s.ok()) << (s.ok() ? "" : s.err());
    if (!s) return;
    EXPECT_EQ(s->tls().verdict(), tls::cert_verdict::verified);
    _s.emplace(std::move(*s));
  }

  bool connected() const { return _s.has_value(); }

  // Return a TCP socket connected to 127.0.0.1:port, -1 when refused.
  static int dial(uint16_t port) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      ::close(fd);
      return -1;
    }
    return fd;
  }

  // Send raw bytes (for malformed requests) and read one response (no body for HEAD).
  reply raw(std::string_view bytes, bool head = false) {
    reply r;
    auto deadline = clk::now() + std::chrono::seconds(20);
    if (!_s || !_s->write_all(bytes, deadline)) return r;
    http::limits lim;
    lim.max_body = 64u << 20;
    http::response_parser p(lim);
    p.expect_no_body(head);
    std::byte buf[16384];
    // Bounded by the deadline.
    while (p.status() == http::parse_status::need_more) {
      long n = _s->read(buf, deadline);
      if (n <= 0) {
        p.feed_eof();
        break;
      }
      p.feed(std::string_view(reinterpret_cast<const char*>(buf), static_cast<size_t>(n)));
    }
    if (p.status() != http::parse_status::done) return r;
    r.ok = true;
    r.code = p.code();
    for (const auto& h : p.headers()) r.headers.emplace_back(h.name, h.value);
    r.body = std::string(p.body());
    return r;
  }

  // Send one request (a form body when `body` is not empty) and read its response.
  reply request(std::string_view method, std::string_view target, std::string_view body = {},
                std::string_view cookie = {}, bool keep_alive = false) {
    std::vector<http::header> fields;
    if (!body.empty()) fields.push_back({"Content-Type", "application/x-www-form-urlencoded"});
    if (!cookie.empty()) fields.push_back({"Cookie", cookie});
    std::string out;
    http::write_request(out, method, target, _host, fields, body, keep_alive);
    return raw(out, method == "HEAD");
  }

 private:
  std::string _host;
  std::optional<tls::context> _ctx;
  std::optional<tls::socket_session> _s;
};

}  // namespace sr::test
