// The sidecar's engine link (server.hh). Threads: the poll loop (run()) owns accept, reads
// and the socket writes; workers only queue bytes on a connection (under its lock) and wake
// the loop through an eventfd. A connection is shared (shared_ptr) by the loop and the jobs
// it started; once closed, what a job still queues on it is dropped — the engine keeps the
// message and hands it again (twice at worst, never zero times).
#include "server.hh"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <exception>

#include "sealrelay/util/log.hh"

namespace sr::sidecar {

namespace wire = fallback::wire;

namespace {

constexpr size_t read_chunk = 64 * 1024;
constexpr size_t max_out_bytes = 64u << 20;  // an engine that stops reading is dropped
constexpr const char* sidecar_version = "sealrelay-fallback 0.1.0";

// Remove outbox files older than `age`: outputs of results whose engine died before it
// spooled them (the engine hands those messages again). Returns how many went.
size_t remove_stale_outputs(const std::string& dir, std::chrono::seconds age) {
  DIR* d = ::opendir(dir.c_str());
  if (!d) return 0;
  size_t n = 0;
  time_t cutoff = ::time(nullptr) - age.count();
  for (int i = 0; i < 1000000; ++i) {
    dirent* e = ::readdir(d);
    if (!e) break;
    struct stat st;
    if (e->d_name[0] == '.' && (e->d_name[1] == 0 || (e->d_name[1] == '.' && e->d_name[2] == 0))) continue;
    if (::fstatat(::dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode) &&
        st.st_mtime < cutoff && ::unlinkat(::dirfd(d), e->d_name, 0) == 0)
      ++n;
  }
  ::closedir(d);
  return n;
}

}  // namespace

// One engine connection.
struct server::conn {
  int fd = -1;
  uint64_t id = 0;
  wire::decoder dec;   // loop thread only
  bool hello = false;  // loop thread writes; submit_mail reads under mu
  std::mutex mu;       // out, closed, hello (for other threads)
  std::string out;     // encoded frames not yet written
  bool closed = false;
};

// A submit waiting for its submitted.
struct server::pending_submit {
  uint64_t conn_id = 0;
  bool done = false;
  bool ok = false;
  std::condition_variable cv;
};

server::server(server_options opts, fallback::audit_log* audit) : _opts(std::move(opts)), _audit(audit) {}

server::~server() { shutdown(); }

status server::open() {
  _wake_fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (_wake_fd < 0) return error{std::string("eventfd: ") + std::strerror(errno)};
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  const std::string& path = _opts.socket_path;
  if (path.empty() || path.size() >= sizeof sa.sun_path)
    return error{"fallback.socket: path empty or longer than " + std::to_string(sizeof sa.sun_path - 1)};
  std::memcpy(sa.sun_path, path.c_str(), path.size() + 1);
  struct stat st;
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) return error{path + ": exists and is not a socket"};
    // A socket file: live (another sidecar) or stale (a crashed one).
    int probe = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    bool live = probe >= 0 && ::connect(probe, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0;
    if (probe >= 0) ::close(probe);
    if (live) return error{path + ": another sidecar is listening there"};
    if (::unlink(path.c_str()) < 0 && errno != ENOENT)
      return error{path + ": cannot remove the stale socket: " + std::strerror(errno)};
  }
  _listen_fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (_listen_fd < 0) return error{std::string("socket: ") + std::strerror(errno)};
  mode_t old = ::umask(0177);  // the socket is born 0600: only our user may hand off
  int rc = ::bind(_listen_fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa);
  int e = errno;
  ::umask(old);
  if (rc < 0) return error{path + ": bind: " + std::strerror(e)};
  _bound = true;
  ::chmod(path.c_str(), 0600);
  if (::listen(_listen_fd, 64) < 0) return error{path + ": listen: " + std::strerror(errno)};
  for (unsigned i = 0; i < _opts.workers; ++i) _workers.emplace_back([this, i] { worker_main(i); });
  return {};
}

void server::wake() {
  uint64_t one = 1;
  if (_wake_fd >= 0) (void)!::write(_wake_fd, &one, sizeof one);
}

void server::stop() {
  {
    std::lock_guard lk(_stop_mu);
    _stop_requested = true;
  }
  wake();
}

size_t server::engines() const {
  std::lock_guard lk(_conns_mu);
  size_t n = 0;
  for (const auto& [id, c] : _conns) {
    std::lock_guard ck(c->mu);
    n += c->hello && !c->closed;
  }
  return n;
}

bool server::send(const std::shared_ptr<conn>& c, const wire::frame& f) {
  {
    std::lock_guard lk(c->mu);
    if (c->closed) return false;
    wire::encode(f, c->out);
  }
  wake();
  return true;
}

bool server::enqueue(job j) {
  {
    std::lock_guard lk(_jobs_mu);
    if (_stopping || _jobs.size() >= _opts.max_queued) return false;
    _jobs.push_back(std::move(j));
  }
  _jobs_cv.notify_one();
  return true;
}

void server::queue_sweep() {
  {
    std::lock_guard lk(_jobs_mu);
    if (_stopping || _sweep_queued) return;
    _sweep_queued = true;
    _jobs.push_back(job{});
  }
  _jobs_cv.notify_one();
}

void server::worker_main(unsigned index) {
  std::string name = "worker" + std::to_string(index);
  set_log_thread_name(name.c_str());
  // Each worker owns its handler: its own store connection and GnuPG keyring.
  fallback::handler h(_opts.handler, _audit);
  for (;;) {
    job j;
    {
      std::unique_lock lk(_jobs_mu);
      _jobs_cv.wait(lk, [&] { return _stopping || !_jobs.empty(); });
      if (_stopping) return;
      j = std::move(_jobs.front());
      _jobs.pop_front();
      if (j.what == job::kind::sweep) _sweep_queued = false;
    }
    switch (j.what) {
      case job::kind::handoff: {
        wire::result r;
        try {
          r = h.handle(j.handoff);
        } catch (const std::exception& e) {  // never let one message take the sidecar down
          r = wire::result{j.handoff.request_id, {}, std::string("internal error: ") + e.what(), {}};
          r.outcomes.assign(j.handoff.rcpts.size(), wire::outcome::failed);
          SR_ERROR("fallback: %s: %s", j.handoff.queue_id.c_str(), r.detail.c_str());
        }
        // The engine that asked is gone: nobody will spool or unlink these outputs (it
        // hands the message again, to this or the next sidecar).
        if (!send(j.from, r))
          for (const auto& o : r.outputs) ::unlink(o.path.c_str());
        break;
      }
      case job::kind::retract: {
        wire::retracted r = h.retract(j.retract);
        if (!r.ok) SR_WARN("fallback: retract %s: %s", j.retract.msg_id.c_str(), r.detail.c_str());
        else SR_INFO("fallback: retracted %u escrow records of %s", r.count, j.retract.msg_id.c_str());
        send(j.from, r);
        break;
      }
      case job::kind::sweep: {
        if (size_t n = remove_stale_outputs(_opts.handler.outbox_dir, _opts.stale_output))
          SR_WARN("fallback: removed %zu outputs no engine spooled within %llds", n,
                  (long long)_opts.stale_output.count());
        auto n = h.sweep();
        if (!n) SR_WARN("fallback: expiry sweep: %s", n.err().c_str());
        else if (*n) SR_INFO("fallback: expired %zu escrow records", *n);
        break;
      }
    }
  }
}

void server::accept_all() {
  for (int i = 0; i < 64; ++i) {
    int fd = ::accept4(_listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
        SR_WARN("fallback: accept: %s", std::strerror(errno));
      return;
    }
    auto c = std::make_shared<conn>();
    c->fd = fd;
    std::lock_guard lk(_conns_mu);
    c->id = _next_conn++;
    _conns.emplace(c->id, c);
  }
}

void server::close_conn(const std::shared_ptr<conn>& c, const char* why) {
  {
    std::lock_guard lk(c->mu);
    if (c->closed) return;
    c->closed = true;
    c->out.clear();
  }
  SR_INFO("fallback: engine connection %llu closed: %s", (unsigned long long)c->id, why);
  ::close(c->fd);
  {
    std::lock_guard lk(_conns_mu);
    _conns.erase(c->id);
  }
  // Submits waiting on this connection will never be answered.
  std::lock_guard lk(_submit_mu);
  for (auto& [id, p] : _submits) {
    if (p->conn_id == c->id && !p->done) {
      p->done = true;
      p->ok = false;
      p->cv.notify_all();
    }
  }
}

// Handle one decoded frame; false closes the connection.
bool server::on_frame(const std::shared_ptr<conn>& c, wire::frame&& f) {
  if (auto* h = std::get_if<wire::hello>(&f)) {
    SR_INFO("fallback: engine pid %u (%s) connected", h->engine_pid, h->node.c_str());
    {
      std::lock_guard lk(c->mu);
      c->hello = true;
    }
    send(c, wire::hello_ok{sidecar_version});
    return true;
  }
  if (!c->hello) return false;  // hello first
  if (auto* p = std::get_if<wire::ping>(&f)) {
    send(c, wire::pong{p->nonce});
    return true;
  }
  if (std::holds_alternative<wire::pong>(f)) return true;
  if (auto* h = std::get_if<wire::handoff>(&f)) {
    job j;
    j.what = job::kind::handoff;
    j.from = c;
    j.handoff = std::move(*h);
    uint64_t rid = j.handoff.request_id;
    size_t n = j.handoff.rcpts.size();
    if (!enqueue(std::move(j))) {
      wire::result r;
      r.request_id = rid;
      r.outcomes.assign(n, wire::outcome::failed);
      r.detail = "sidecar busy";
      send(c, r);
    }
    return true;
  }
  if (auto* r = std::get_if<wire::retract>(&f)) {
    job j;
    j.what = job::kind::retract;
    j.from = c;
    j.retract = std::move(*r);
    uint64_t rid = j.retract.request_id;
    if (!enqueue(std::move(j))) send(c, wire::retracted{rid, false, 0, "sidecar busy"});
    return true;
  }
  if (auto* s = std::get_if<wire::submitted>(&f)) {
    std::lock_guard lk(_submit_mu);
    auto it = _submits.find(s->submit_id);
    if (it != _submits.end() && it->second->conn_id == c->id && !it->second->done) {
      it->second->done = true;
      it->second->ok = s->ok;
      if (!s->ok) SR_WARN("fallback: the engine refused a submitted mail: %s", s->detail.c_str());
      it->second->cv.notify_all();
    }
    return true;  // an answer to a submit that timed out is fine
  }
  return false;  // hello_ok, result, submit, retracted: not the engine's to send
}

void server::on_readable(const std::shared_ptr<conn>& c) {
  char buf[read_chunk];
  for (int round = 0; round < 16; ++round) {
    ssize_t n = ::recv(c->fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    if (n <= 0) {
      close_conn(c, n == 0 ? "engine closed it" : std::strerror(errno));
      return;
    }
    c->dec.feed(std::string_view(buf, size_t(n)));
    for (int frames = 0; frames < 100000; ++frames) {
      auto f = c->dec.next();
      if (!f) break;
      if (!on_frame(c, std::move(*f))) {
        close_conn(c, "unexpected frame");
        return;
      }
    }
    if (c->dec.failed()) {
      SR_WARN("fallback: engine connection %llu: %s", (unsigned long long)c->id, c->dec.error().c_str());
      close_conn(c, "malformed frame");
      return;
    }
    if (size_t(n) < sizeof buf) break;
  }
}

void server::flush(const std::shared_ptr<conn>& c) {
  std::unique_lock lk(c->mu);
  if (c->closed) return;
  while (!c->out.empty()) {
    ssize_t n = ::send(c->fd, c->out.data(), c->out.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    if (n <= 0) {
      int e = errno;
      lk.unlock();
      close_conn(c, std::strerror(e));
      return;
    }
    c->out.erase(0, size_t(n));
  }
  if (c->out.size() > max_out_bytes) {
    lk.unlock();
    close_conn(c, "the engine does not read its answers");
  }
}

void server::run(int signal_fd) {
  auto next_sweep = std::chrono::steady_clock::now();
  std::vector<pollfd> fds;
  std::vector<std::shared_ptr<conn>> polled;
  for (;;) {
    {
      std::lock_guard lk(_stop_mu);
      if (_stop_requested) break;
    }
    auto now = std::chrono::steady_clock::now();
    if (now >= next_sweep) {
      queue_sweep();
      next_sweep = now + _opts.sweep_interval;
    }
    fds.clear();
    polled.clear();
    fds.push_back({_listen_fd, POLLIN, 0});
    fds.push_back({_wake_fd, POLLIN, 0});
    fds.push_back({signal_fd, POLLIN, 0});  // poll ignores a negative fd
    {
      std::lock_guard lk(_conns_mu);
      for (const auto& [id, c] : _conns) polled.push_back(c);
    }
    for (const auto& c : polled) {
      short ev = POLLIN;
      {
        std::lock_guard lk(c->mu);
        if (!c->out.empty()) ev |= POLLOUT;
      }
      fds.push_back({c->fd, ev, 0});
    }
    auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(next_sweep - now).count();
    int rc = ::poll(fds.data(), fds.size(), int(std::max<long long>(0, std::min<long long>(wait, 60000))));
    if (rc < 0) {
      if (errno == EINTR) continue;
      SR_ERROR("fallback: poll: %s", std::strerror(errno));
      break;
    }
    if (fds[2].revents & POLLIN) {
      signalfd_siginfo si;
      if (::read(signal_fd, &si, sizeof si) > 0)
        SR_INFO("fallback: signal %u, stopping", si.ssi_signo);
      break;
    }
    if (fds[1].revents & POLLIN) {
      uint64_t v;
      (void)!::read(_wake_fd, &v, sizeof v);
    }
    if (fds[0].revents & POLLIN) accept_all();
    for (size_t i = 0; i < polled.size(); ++i) {
      const auto& c = polled[i];
      short re = fds[3 + i].revents;
      if (re & (POLLIN | POLLHUP | POLLERR)) on_readable(c);
    }
    // Write whatever is queued (answers of jobs done since the last round included).
    for (const auto& c : polled) flush(c);
  }
}

bool server::submit_mail(const wire::output& mail, std::chrono::milliseconds timeout) {
  std::shared_ptr<conn> target;
  {
    std::lock_guard lk(_conns_mu);
    std::vector<std::shared_ptr<conn>> ready;
    for (const auto& [id, c] : _conns) {
      std::lock_guard ck(c->mu);
      if (c->hello && !c->closed) ready.push_back(c);
    }
    if (ready.empty()) return false;
    target = ready[_rr++ % ready.size()];
  }
  auto p = std::make_shared<pending_submit>();
  p->conn_id = target->id;
  uint64_t id;
  {
    std::lock_guard lk(_submit_mu);
    if (_submits_cancelled) return false;
    id = _next_submit++;
    _submits.emplace(id, p);
  }
  {
    std::lock_guard lk(target->mu);
    if (target->closed) {
      std::lock_guard sl(_submit_mu);
      _submits.erase(id);
      return false;
    }
    wire::encode(wire::submit{id, mail}, target->out);
  }
  wake();
  std::unique_lock lk(_submit_mu);
  p->cv.wait_for(lk, timeout, [&] { return p->done; });
  bool ok = p->done && p->ok;
  _submits.erase(id);
  return ok;
}

void server::cancel_submits() {
  std::lock_guard lk(_submit_mu);
  _submits_cancelled = true;
  for (auto& [id, p] : _submits) {
    if (!p->done) {
      p->done = true;
      p->ok = false;
      p->cv.notify_all();
    }
  }
}

void server::shutdown() {
  {
    std::lock_guard lk(_jobs_mu);
    _stopping = true;
    _jobs.clear();
  }
  _jobs_cv.notify_all();
  for (auto& t : _workers)
    if (t.joinable()) t.join();
  _workers.clear();
  std::vector<std::shared_ptr<conn>> all;
  {
    std::lock_guard lk(_conns_mu);
    for (const auto& [id, c] : _conns) all.push_back(c);
  }
  for (const auto& c : all) close_conn(c, "sidecar stopping");
  if (_listen_fd >= 0) ::close(_listen_fd);
  _listen_fd = -1;
  if (_bound) ::unlink(_opts.socket_path.c_str());
  _bound = false;
  if (_wake_fd >= 0) ::close(_wake_fd);
  _wake_fd = -1;
}

}  // namespace sr::sidecar
