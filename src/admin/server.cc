// The admin HTTP server: one thread, one poll() over the listener, an eventfd for stop()
// and up to max_connections non-blocking connections. Each connection reads one request
// head, answers it, shuts down its write side and discards input until the client closes
// (so unread bytes never turn the answer into a reset), all within its deadline.
#include "admin/server.hh"

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
#include <vector>

#include "util/cidr.hh"
#include "util/log.hh"

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
  std::string in;
  std::string out;
  size_t out_off = 0;
};

constexpr uint64_t linger_ms = 1000;

const char* reason_phrase(int code) {
  switch (code) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 431: return "Request Header Fields Too Large";
    case 503: return "Service Unavailable";
  }
  return "Error";
}

void set_response(conn& c, int code, std::string_view content_type, std::string_view body,
                  bool allow_get = false) {
  c.out.clear();
  c.out += "HTTP/1.1 ";
  c.out += std::to_string(code);
  c.out += ' ';
  c.out += reason_phrase(code);
  c.out += "\r\nContent-Type: ";
  c.out += content_type;
  c.out += "\r\nContent-Length: ";
  c.out += std::to_string(body.size());
  if (allow_get) c.out += "\r\nAllow: GET";
  c.out += "\r\nConnection: close\r\nCache-Control: no-store\r\n\r\n";
  c.out += body;
  c.out_off = 0;
  c.state = conn_state::writing;
}

// Return the end of the request head (past the blank line), or npos.
size_t head_end(const std::string& in) {
  size_t crlf = in.find("\r\n\r\n");
  size_t lf = in.find("\n\n");
  if (crlf != std::string::npos && (lf == std::string::npos || crlf + 2 <= lf)) return crlf + 4;
  if (lf != std::string::npos) return lf + 2;
  return std::string::npos;
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
        if (n > 0) c.in.append(buf, size_t(n));
        size_t end = head_end(c.in);
        if (end == std::string::npos && c.in.size() > _opt.max_request_bytes) {
          set_response(c, 431, "text/plain; charset=utf-8", "request too large\n");
        } else if (end != std::string::npos) {
          if (end > _opt.max_request_bytes) {
            set_response(c, 431, "text/plain; charset=utf-8", "request too large\n");
          } else {
            // Request line: METHOD SP target SP HTTP/1.x
            std::string_view head(c.in.data(), end);
            std::string_view line = head.substr(0, head.find('\n'));
            if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
            size_t sp1 = line.find(' ');
            size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
            if (sp2 == std::string_view::npos || !line.substr(sp2 + 1).starts_with("HTTP/1.")) {
              set_response(c, 400, "text/plain; charset=utf-8", "bad request\n");
            } else {
              std::string_view method = line.substr(0, sp1);
              std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
              target = target.substr(0, target.find('?'));
              if (target != "/metrics" && target != "/healthz") {
                set_response(c, 404, "text/plain; charset=utf-8", "not found\n");
              } else if (method != "GET") {
                set_response(c, 405, "text/plain; charset=utf-8", "method not allowed\n", true);
              } else if (target == "/metrics") {
                body.clear();
                if (_opt.metrics) _opt.metrics->render(body);
                set_response(c, 200, "text/plain; version=0.0.4; charset=utf-8", body);
              } else if (!_opt.healthy || _opt.healthy()) {
                set_response(c, 200, "text/plain; charset=utf-8", "ok\n");
              } else {
                set_response(c, 503, "text/plain; charset=utf-8", "unhealthy\n");
              }
            }
          }
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
        c.deadline_ms = now + _opt.timeout_ms;
        conns.push_back(std::move(c));
      }
    }
  }
  for (auto& c : conns) ::close(c.fd);
}

}  // namespace sr::admin
