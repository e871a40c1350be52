// The admin HTTP server: one thread, one poll() over the listener, an eventfd for stop()
// and up to max_connections non-blocking connections. Each connection reads one request
// (parsed by the http/ codec, whose limits give 400/414/431/413/505), answers it, shuts down its write side and discards input until the client closes
// (so unread bytes never turn the answer into a reset), all within its deadline.
#include "sealrelay/admin/server.hh"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <memory>
#include <vector>

#include "sealrelay/http/message.hh"
#include "sealrelay/util/cidr.hh"
#include "sealrelay/util/log.hh"

namespace sr::admin {

namespace {

uint64_t mono_ms() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1000 + uint64_t(ts.tv_nsec) / 1'000'000;
}

enum class conn_state : uint8_t {
  reading,     // collecting the request head
  writing,     // sending the response
  lingering,   // response sent, write side shut: discard input until EOF or deadline
};

struct conn {
  int fd = -1;
  conn_state state = conn_state::reading;
  uint64_t deadline_ms = 0;
  std::unique_ptr<http::request_parser> req;  // on the heap: its header views stay put
  std::string out;
  size_t out_off = 0;
};

constexpr uint64_t linger_ms = 1000;

void set_response(conn& c, int code, std::string_view content_type, std::string_view body,
                  bool allow_get = false) {
  http::header fields[] = {{"Content-Type", content_type},
                           {"Cache-Control", "no-store"},
                           {"Allow", "GET"}};
  c.out.clear();
  http::write_response(c.out, code, std::span<const http::header>(fields, allow_get ? 3 : 2), body,
                       false);
  c.out_off = 0;
  c.state = conn_state::writing;
}

// Answer a parsed request: GET /metrics or /healthz, the route callback, else 404 or 405.
void answer(conn& c, const http::request_parser& req, const server::options& opt, std::string& body) {
  std::string_view path = req.path();
  if (path != "/metrics" && path != "/healthz") {
    std::optional<response> r;
    if (opt.route) r = opt.route(req.method(), path, req.body());
    if (r) set_response(c, r->code, r->content_type, r->body);
    else set_response(c, 404, "text/plain; charset=utf-8", "not found\n");
  } else if (req.method() != "GET") {
    set_response(c, 405, "text/plain; charset=utf-8", "method not allowed\n", true);
  } else if (path == "/metrics") {
    body.clear();
    if (opt.metrics) opt.metrics->render(body);
    set_response(c, 200, "text/plain; version=0.0.4; charset=utf-8", body);
  } else {
    bool ok = !opt.healthy || opt.healthy();
    body = ok ? "ok\n" : "unhealthy\n";
    if (opt.health_detail) body += opt.health_detail();
    set_response(c, ok ? 200 : 503, "text/plain; charset=utf-8", body);
  }
}

}  // namespace

server::server(options opt) : _opt(std::move(opt)) {}

server::~server() { stop(); }

sr::status server::start() {
  socklen_t len = 0;
  auto addr = sr::parse_endpoint(_opt.listen, &len);
  if (!addr) return sr::error{"admin.listen: not an ip:port address: " + _opt.listen};
  int fd = ::socket(addr->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return sr::error{std::string("admin.listen: socket: ") + strerror(errno)};
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (::bind(fd, reinterpret_cast<const sockaddr*>(&*addr), len) < 0 || ::listen(fd, 64) < 0) {
    int e = errno;
    ::close(fd);
    return sr::error{"admin.listen: " + _opt.listen + ": " + strerror(e)};
  }
  sockaddr_storage bound{};
  socklen_t blen = sizeof bound;
  getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &blen);
  _port = ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                            : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  _wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (_wake_fd < 0) {
    ::close(fd);
    return sr::error{std::string("admin: eventfd: ") + strerror(errno)};
  }
  _listen_fd = fd;
  if (_opt.metrics) _opt.metrics->seal();
  if (_opt.max_connections == 0) _opt.max_connections = 1;
  _thread = std::thread([this] { serve(); });
  return {};
}

void server::stop() {
  if (_thread.joinable()) {
    uint64_t one = 1;
    ssize_t w = ::write(_wake_fd, &one, sizeof one);
    (void)w;
    _thread.join();
  }
  if (_listen_fd >= 0) ::close(_listen_fd);
  if (_wake_fd >= 0) ::close(_wake_fd);
  _listen_fd = _wake_fd = -1;
}

void server::serve() {
  set_log_thread_name("admin");
  std::vector<conn> conns;
  std::vector<pollfd> pfds;
  std::string body;
  for (;;) {
    pfds.clear();
    pfds.push_back({_wake_fd, POLLIN, 0});
    bool can_accept = conns.size() < _opt.max_connections;
    pfds.push_back({_listen_fd, short(can_accept ? POLLIN : 0), 0});
    uint64_t now = mono_ms();
    int timeout = -1;
    for (auto& c : conns) {
      pfds.push_back({c.fd, short(c.state == conn_state::writing ? POLLOUT : POLLIN), 0});
      uint64_t left = c.deadline_ms > now ? c.deadline_ms - now : 0;
      if (timeout < 0 || left < uint64_t(timeout)) timeout = int(left);
    }
    int rc = ::poll(pfds.data(), pfds.size(), timeout);
    if (rc < 0 && errno != EINTR) {
      SR_ERROR("admin: poll: %s", strerror(errno));
      break;
    }
    if (pfds[0].revents) break;  // stop()
    now = mono_ms();

    // Existing connections first (pfds[2 + i] belongs to conns[i]).
    for (size_t i = 0; i < conns.size(); ++i) {
      conn& c = conns[i];
      short ev = rc > 0 ? pfds[2 + i].revents : 0;
      if (ev && c.state == conn_state::reading) {
        char buf[4096];
        ssize_t n = ::recv(c.fd, buf, sizeof buf, 0);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
          ::close(c.fd);
          c.fd = -1;
          continue;
        }
        if (n > 0) c.req->feed(std::string_view(buf, size_t(n)));
        if (c.req->status() == http::parse_status::failed) {
          int code = http::status_for(c.req->err());
          set_response(c, code, "text/plain; charset=utf-8",
                       code == 431 || code == 414 || code == 413 ? "request too large\n" : "bad request\n");
        } else if (c.req->status() == http::parse_status::done) {
          answer(c, *c.req, _opt, body);
        }
      } else if (ev && c.state == conn_state::writing) {
        ssize_t n = ::send(c.fd, c.out.data() + c.out_off, c.out.size() - c.out_off, MSG_NOSIGNAL);
        if (n < 0 && errno != EAGAIN && errno != EINTR) {
          ::close(c.fd);
          c.fd = -1;
          continue;
        }
        if (n > 0) c.out_off += size_t(n);
        if (c.out_off == c.out.size()) {
          ::shutdown(c.fd, SHUT_WR);
          c.state = conn_state::lingering;
          c.deadline_ms = std::min(c.deadline_ms, now + linger_ms);
        }
      } else if (ev && c.state == conn_state::lingering) {
        char buf[4096];
        ssize_t n = ::recv(c.fd, buf, sizeof buf, 0);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
          ::close(c.fd);
          c.fd = -1;
          continue;
        }
      }
      if (c.fd >= 0 && now >= c.deadline_ms) {
        if (c.state == conn_state::reading) {
          set_response(c, 408, "text/plain; charset=utf-8", "request timeout\n");
          c.deadline_ms = now + linger_ms;  // a moment to send the 408
        } else {
          ::close(c.fd);
          c.fd = -1;
        }
      }
    }
    std::erase_if(conns, [](const conn& c) { return c.fd < 0; });

    if (rc > 0 && can_accept && (pfds[1].revents & POLLIN)) {
      while (conns.size() < _opt.max_connections) {
        int fd = ::accept4(_listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) break;
        conn c;
        c.fd = fd;
        http::limits lim;
        lim.max_line = lim.max_head = lim.max_body = _opt.max_request_bytes;
        c.req = std::make_unique<http::request_parser>(lim);
        c.deadline_ms = now + _opt.timeout_ms;
        conns.push_back(std::move(c));
      }
    }
  }
  for (auto& c : conns) ::close(c.fd);
}

}  // namespace sr::admin
