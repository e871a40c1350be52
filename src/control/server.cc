// Blocking I/O with poll() deadlines on one thread: the control socket carries a few
// operator commands, so one connection at a time is plenty, and a client that stalls is
// cut off at its deadline instead of holding the socket.
#include "sealrelay/control/server.hh"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>

#include "sealrelay/util/log.hh"

namespace sr::control {

namespace {

uint64_t mono_ms() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1000 + uint64_t(ts.tv_nsec) / 1'000'000;
}

// Wait for `events` on `fd` until `deadline` (monotonic ms); false on timeout or error.
bool wait_for(int fd, short events, uint64_t deadline) {
  for (;;) {
    uint64_t now = mono_ms();
    if (now >= deadline) return false;
    pollfd p{fd, events, 0};
    int rc = ::poll(&p, 1, int(deadline - now));
    if (rc < 0 && errno == EINTR) continue;
    return rc > 0;
  }
}

}  // namespace

server::server(options opt) : _opt(std::move(opt)) {}

server::~server() { stop(); }

sr::status server::start() {
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  const std::string& path = _opt.socket_path;
  if (path.empty() || path.size() >= sizeof sa.sun_path)
    return sr::error{"control socket " + path + ": path empty or longer than " +
                     std::to_string(sizeof sa.sun_path - 1)};
  std::memcpy(sa.sun_path, path.c_str(), path.size() + 1);
  struct stat st;
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) return sr::error{path + ": exists and is not a socket"};
    // Live (another relay on this state_dir) or stale (a crashed one).
    if (live(path)) return sr::error{path + ": another relay is listening there"};
    if (::unlink(path.c_str()) < 0 && errno != ENOENT)
      return sr::error{path + ": cannot remove the stale socket: " + std::strerror(errno)};
  }
  _wake_fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (_wake_fd < 0) return sr::error{std::string("control: eventfd: ") + std::strerror(errno)};
  _listen_fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (_listen_fd < 0) return sr::error{std::string("control: socket: ") + std::strerror(errno)};
  mode_t old = ::umask(0177);  // born 0600: only the relay's user may control the queue
  int rc = ::bind(_listen_fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa);
  int e = errno;
  ::umask(old);
  if (rc < 0) return sr::error{path + ": bind: " + std::strerror(e)};
  _bound = true;
  ::chmod(path.c_str(), 0600);
  if (::listen(_listen_fd, 16) < 0) return sr::error{path + ": listen: " + std::strerror(errno)};
  // The thread takes no signals: the daemon starts it before its runtime blocks SIGTERM,
  // SIGINT and SIGHUP for sigtimedwait(), and a signal delivered here would kill the process
  // instead of draining it (Shutdown.SigtermWithIdleSessionsExitsPromptly caught that).
  sigset_t all, before;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, &before);
  _thread = std::thread([this] { serve(); });
  pthread_sigmask(SIG_SETMASK, &before, nullptr);
  return {};
}

bool server::live(const std::string& path) {
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof sa.sun_path) return false;
  std::memcpy(sa.sun_path, path.c_str(), path.size() + 1);
  int probe = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  bool up = probe >= 0 && ::connect(probe, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0;
  if (probe >= 0) ::close(probe);
  return up;
}

void server::stop() {
  if (_thread.joinable()) {
    uint64_t one = 1;
    (void)!::write(_wake_fd, &one, sizeof one);
    _thread.join();
  }
  if (_bound) {
    ::unlink(_opt.socket_path.c_str());
    _bound = false;
  }
  if (_listen_fd >= 0) ::close(_listen_fd);
  if (_wake_fd >= 0) ::close(_wake_fd);
  _listen_fd = _wake_fd = -1;
}

void server::serve() {
  for (;;) {
    pollfd p[2] = {{_listen_fd, POLLIN, 0}, {_wake_fd, POLLIN, 0}};
    int rc = ::poll(p, 2, -1);
    if (rc < 0) {
      if (errno == EINTR) continue;
      SR_ERROR("control: poll: %s", std::strerror(errno));
      return;
    }
    if (p[1].revents) return;
    if (!(p[0].revents & POLLIN)) continue;
    int fd = ::accept4(_listen_fd, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) continue;
    serve_one(fd);
    ::close(fd);
  }
}

void server::serve_one(int fd) {
  std::string line;
  char buf[512];
  const uint64_t read_deadline = mono_ms() + _opt.read_timeout_ms;
  std::string reply;
  for (;;) {
    size_t nl = line.find('\n');
    if (nl != std::string::npos) {
      line.resize(nl);
      break;
    }
    if (line.size() >= max_request_bytes) {
      reply = error_reply("request too long");
      break;
    }
    if (!wait_for(fd, POLLIN, read_deadline)) return;  // nothing to answer in time
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    if (n <= 0) return;
    line.append(buf, size_t(n));
  }
  if (reply.empty()) {
    auto req = decode(line);
    if (!req) reply = error_reply(req.err());
    else reply = _opt.handler ? _opt.handler(req.value()) : error_reply("no handler");
  }
  const uint64_t write_deadline = mono_ms() + _opt.write_timeout_ms;
  size_t off = 0;
  while (off < reply.size()) {
    ssize_t n = ::send(fd, reply.data() + off, reply.size() - off, MSG_NOSIGNAL);
    if (n > 0) {
      off += size_t(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN && wait_for(fd, POLLOUT, write_deadline)) continue;
    SR_WARN("control: reply not taken by the client (%zu of %zu bytes sent)", off, reply.size());
    return;
  }
}

}  // namespace sr::control
