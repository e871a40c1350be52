// The per-shard sidecar client (client.hh). One poll op per direction is armed on the
// shard's io_uring for the current link; a link generation number lets completions of a
// closed link arrive (after IORING_OP_POLL_REMOVE) without touching the new one.
#include "sealrelay/handoff/client.hh"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <limits.h>

#include "sealrelay/util/log.hh"
#include "sealrelay/util/duration.hh"

namespace sr::handoff {

namespace wire = fallback::wire;
using policy::handoff_outcome;

namespace {

wire::method to_wire(policy::fallback_method m) {
  switch (m) {
    case policy::fallback_method::pgp: return wire::method::pgp;
    case policy::fallback_method::smime: return wire::method::smime;
    case policy::fallback_method::escrow: return wire::method::escrow;
    case policy::fallback_method::defer: return wire::method::defer;
  }
  return wire::method::defer;
}

handoff_outcome from_wire(wire::outcome o) {
  switch (o) {
    case wire::outcome::pgp: return handoff_outcome::pgp;
    case wire::outcome::smime: return handoff_outcome::smime;
    case wire::outcome::escrowed: return handoff_outcome::escrowed;
    case wire::outcome::defer: return handoff_outcome::defer;
    case wire::outcome::failed: return handoff_outcome::unavailable;
  }
  return handoff_outcome::unavailable;
}

// An output path the engine may read: a plain name directly under the outbox.
bool inside_outbox(const std::string& outbox, const std::string& path) {
  if (outbox.empty() || path.size() <= outbox.size() + 1) return false;
  if (path.compare(0, outbox.size(), outbox) != 0 || path[outbox.size()] != '/') return false;
  std::string_view name = std::string_view(path).substr(outbox.size() + 1);
  return name.find('/') == std::string_view::npos && name != "." && name != "..";
}

}  // namespace

struct client::poll_op final : core::completion {
  client* owner;
  uint64_t gen;
  bool out;
  poll_op(client* c, uint64_t g, bool o) : owner(c), gen(g), out(o) {}
  void on_complete(int res, unsigned) override {
    client* c = owner;
    // Copied before `delete this`: on_poll(out, ...) read the freed member
    // (heap-use-after-free found by ASan, issue 12).
    const bool is_out = out;
    bool current = c && c->_gen == gen;
    if (current) (is_out ? c->_out_op : c->_in_op) = nullptr;
    delete this;
    if (current) c->on_poll(is_out, res);
  }
};

// The spooling of one result's mails: the recipients are answered once the last is durable.
struct client::result_op {
  std::weak_ptr<bool> alive;
  client* owner = nullptr;
  policy::handoff_completion* done = nullptr;
  std::vector<std::string> rcpts;
  std::vector<handoff_outcome> outcomes;
  std::vector<std::string> paths;
  size_t waiting = 0;

  // An output for these recipients failed: they stay queued.
  void fail(const std::vector<std::string>& who) {
    for (size_t i = 0; i < rcpts.size(); ++i)
      for (const auto& w : who)
        if (rcpts[i] == w) outcomes[i] = handoff_outcome::unavailable;
  }
  void finish() {
    for (const auto& p : paths) ::unlink(p.c_str());
    if (alive.expired()) return;  // the shard is shutting down: the message stays spooled
    done->handoff_done(outcomes);
  }
};

client::client(core::shard& sh, spool::intake& in, options opt, shared_status* status)
    : _shard(sh), _intake(in), _opt(std::move(opt)), _status(status) {
  char buf[PATH_MAX];
  if (::getcwd(buf, sizeof buf)) _cwd = buf;
  while (_opt.outbox.size() > 1 && _opt.outbox.back() == '/') _opt.outbox.pop_back();
  if (!_opt.outbox.empty() && _opt.outbox[0] != '/' && !_cwd.empty()) _opt.outbox = _cwd + "/" + _opt.outbox;
}

client::~client() {
  *_alive = false;
  _alive.reset();
  if (_in_op) _in_op->owner = nullptr;
  if (_out_op) _out_op->owner = nullptr;
  if (_fd >= 0) ::close(_fd);
  set_up(false);
}

void client::start() {
  _started_ms = _shard.now_ms();
  connect_now();
  _shard.on_tick([this] { tick(); });
}

void client::tick() {
  uint64_t now = _shard.now_ms();
  if (_fd < 0 && now >= _next_connect_ms) connect_now();
  if (_fd >= 0 && !_up && now - _connected_ms > _opt.hello_timeout_ms) disconnect("no hello_ok in time");
  // Late answers: the message stays queued and is handed again at its next retry.
  std::vector<uint64_t> late;
  for (auto& [id, p] : _pending)
    if (now >= p.deadline_ms) late.push_back(id);
  for (uint64_t id : late) {
    auto it = _pending.find(id);
    pending_handoff p = std::move(it->second);
    _pending.erase(it);
    ++_stats.timed_out;
    SR_WARN("fallback: hand-off %llu not answered in %llu ms: kept queued",
            (unsigned long long)id, (unsigned long long)_opt.answer_timeout_ms);
    answer_unavailable(p);
  }
}

void client::set_up(bool up) {
  if (up == _up) return;
  _up = up;
  if (_status) {
    if (up) _status->links_up.fetch_add(1, std::memory_order_relaxed);
    else _status->links_up.fetch_sub(1, std::memory_order_relaxed);
  }
}

void client::connect_now() {
  _next_connect_ms = _shard.now_ms() + _opt.reconnect_ms;
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return;
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  if (_opt.socket.size() >= sizeof sa.sun_path) {
    ::close(fd);
    return;
  }
  std::memcpy(sa.sun_path, _opt.socket.data(), _opt.socket.size());
  // A unix-socket connect completes at once or fails at once (EAGAIN: backlog full).
  if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
    int e = errno;
    ::close(fd);
    // The first seconds after start the spawned sidecar is still starting: no warning yet.
    if (!_logged_down && _shard.now_ms() - _started_ms > 5000) {
      SR_WARN("fallback: sidecar not reachable at %s (%s): forced messages whose MX hosts fail "
              "TLS stay queued until it is",
              _opt.socket.c_str(), std::strerror(e));
      _logged_down = true;
    }
    return;
  }
  _fd = fd;
  ++_gen;
  ++_stats.connects;
  _connected_ms = _shard.now_ms();
  _dec = wire::decoder();
  _out.clear();
  send(wire::hello{uint32_t(::getpid()), _opt.node});
  arm_poll(false);
}

void client::disconnect(const char* why) {
  if (_fd < 0) return;
  if (_up || !_logged_down) SR_WARN("fallback: link to the sidecar closed: %s", why);
  _logged_down = true;
  ++_stats.disconnects;
  for (poll_op* op : {_in_op, _out_op})
    if (op) {
      io_uring_sqe* sqe = _shard.sqe();
      io_uring_prep_poll_remove(sqe, reinterpret_cast<uint64_t>(static_cast<core::completion*>(op)));
      io_uring_sqe_set_data64(sqe, core::ignore_cqe);
    }
  _in_op = _out_op = nullptr;  // their CQEs come with an old generation and are ignored
  ++_gen;
  ::close(_fd);
  _fd = -1;
  set_up(false);
  _out.clear();
  _next_connect_ms = _shard.now_ms() + _opt.reconnect_ms;
  // Whatever the sidecar was doing is lost with the link: hand it again later.
  auto pending = std::move(_pending);
  _pending.clear();
  for (auto& [id, p] : pending) answer_unavailable(p);
}

void client::arm_poll(bool out) {
  poll_op*& slot = out ? _out_op : _in_op;
  if (_fd < 0 || slot) return;
  slot = new poll_op(this, _gen, out);
  io_uring_sqe* sqe = _shard.sqe(slot);
  io_uring_prep_poll_add(sqe, _fd, out ? POLLOUT : POLLIN);
}

void client::on_poll(bool out, int res) {
  if (res < 0 && res != -ECANCELED) {
    disconnect("poll failed");
    return;
  }
  if (out) flush();
  else read_all();
  if (_fd >= 0 && !out) arm_poll(false);
}

void client::read_all() {
  char buf[65536];
  for (int rounds = 0; _fd >= 0 && rounds < 64; ++rounds) {
    ssize_t n = ::recv(_fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n == 0) {
      disconnect("the sidecar closed it");
      return;
    }
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) break;
      disconnect(std::strerror(errno));
      return;
    }
    _dec.feed(std::string_view(buf, size_t(n)));
    uint64_t gen = _gen;
    while (_fd >= 0 && gen == _gen) {
      auto f = _dec.next();
      if (!f) break;
      on_frame(*f);
    }
    if (_fd >= 0 && _dec.failed()) {
      SR_WARN("fallback: bad frame from the sidecar: %s", _dec.error().c_str());
      disconnect("protocol error");
      return;
    }
  }
}

void client::send(const wire::frame& f) {
  if (_fd < 0) return;
  wire::encode(f, _out);
  flush();
}

void client::flush() {
  while (_fd >= 0 && !_out.empty()) {
    ssize_t n = ::send(_fd, _out.data(), _out.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n > 0) {
      _out.erase(0, size_t(n));
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      arm_poll(true);
      return;
    }
    if (n < 0 && errno == EINTR) continue;
    disconnect("send failed");
    return;
  }
}

void client::hand_off(const policy::handoff_request& req, policy::handoff_completion& done) {
  if (_fd < 0 || !_up || _pending.size() >= _opt.max_pending || !req.policy) {
    ++_stats.unavailable;
    policy::answer_all(req, done, handoff_outcome::unavailable);
    return;
  }
  wire::handoff h;
  h.request_id = _next_request++;
  h.queue_id = req.queue_id;
  h.from = req.from;
  h.domain = req.domain;
  for (auto r : req.recipients) h.rcpts.emplace_back(r);
  h.segment = req.segment;
  if (!h.segment.empty() && h.segment[0] != '/' && !_cwd.empty()) h.segment = _cwd + "/" + h.segment;
  h.offset = req.offset;
  h.length = req.length;
  h.reason = uint8_t(req.reason);
  for (auto m : req.policy->fallback) h.chain.push_back(to_wire(m));
  pending_handoff p;
  p.done = &done;
  p.deadline_ms = _shard.now_ms() + _opt.answer_timeout_ms;
  p.rcpts = h.rcpts;
  _pending.emplace(h.request_id, std::move(p));
  ++_stats.handed;
  send(h);  // a failed send disconnects, which answers every pending hand-off
}

void client::answer_unavailable(pending_handoff& p) {
  ++_stats.unavailable;
  std::vector<handoff_outcome> all(p.rcpts.size(), handoff_outcome::unavailable);
  p.done->handoff_done(all);
}

void client::on_frame(wire::frame& f) {
  if (std::holds_alternative<wire::hello_ok>(f)) {
    if (!_up) SR_INFO("fallback: sidecar link up (%s)", std::get<wire::hello_ok>(f).sidecar_version.c_str());
    _logged_down = false;
    set_up(true);
  } else if (auto* r = std::get_if<wire::result>(&f)) {
    on_result(*r);
  } else if (auto* s = std::get_if<wire::submit>(&f)) {
    on_submit(*s);
  } else if (auto* p = std::get_if<wire::ping>(&f)) {
    send(wire::pong{p->nonce});
  } else if (std::holds_alternative<wire::pong>(f)) {
  } else {
    disconnect("unexpected frame type");
  }
}

void client::spool_output(const wire::output& o, std::function<void(bool)> stored) {
  if (!inside_outbox(_opt.outbox, o.path) || o.kind > uint8_t(report::message_kind::smime) ||
      o.rcpts.empty()) {
    SR_WARN("fallback: refused output %s (not a mail file in %s)", o.path.c_str(), _opt.outbox.c_str());
    stored(false);
    return;
  }
  // A slow-path read of a file the sidecar has just written (in the page cache).
  std::string text;
  int fd = ::open(o.path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  bool ok = fd >= 0;
  if (ok) {
    struct stat st{};
    if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) text.reserve(size_t(st.st_size));
    char buf[65536];
    for (;;) {
      ssize_t n = ::read(fd, buf, sizeof buf);
      if (n > 0) text.append(buf, size_t(n));
      else if (n == 0) break;
      else if (errno != EINTR) {
        ok = false;
        break;
      }
    }
    ::close(fd);
  }
  if (!ok || text.empty()) {
    SR_WARN("fallback: cannot read output %s: %s", o.path.c_str(), ok ? "empty" : std::strerror(errno));
    stored(false);
    return;
  }
  spool::message_meta meta;
  meta.queue_id = _intake.next_queue_id();
  meta.received_ms = unix_ms();
  meta.mail_from = o.from;
  meta.rcpts = o.rcpts;
  meta.kind = report::message_kind(o.kind);
  meta.msg_id = o.msg_id;
  for (unsigned char c : text)
    if (c >= 0x80) {
      meta.body_8bitmime = true;
      break;
    }
  _intake.submit_owned(std::move(meta), std::move(text), std::move(stored));
}

void client::on_result(wire::result& r) {
  auto it = _pending.find(r.request_id);
  if (it == _pending.end()) {
    // Answered too late (already deferred): its mails are not sent; the message is handed
    // again at its next retry.
    for (const auto& o : r.outputs)
      if (inside_outbox(_opt.outbox, o.path)) ::unlink(o.path.c_str());
    return;
  }
  pending_handoff p = std::move(it->second);
  _pending.erase(it);
  if (r.outcomes.size() != p.rcpts.size()) {
    SR_WARN("fallback: result %llu has %zu outcomes for %zu recipients: kept queued",
            (unsigned long long)r.request_id, r.outcomes.size(), p.rcpts.size());
    for (const auto& o : r.outputs)
      if (inside_outbox(_opt.outbox, o.path)) ::unlink(o.path.c_str());
    answer_unavailable(p);
    return;
  }
  auto op = std::make_shared<result_op>();
  op->alive = _alive;
  op->owner = this;
  op->done = p.done;
  op->rcpts = std::move(p.rcpts);
  for (auto o : r.outcomes) {
    handoff_outcome h = from_wire(o);
    op->outcomes.push_back(h);
    switch (h) {
      case handoff_outcome::pgp: ++_stats.outcomes_pgp; break;
      case handoff_outcome::smime: ++_stats.outcomes_smime; break;
      case handoff_outcome::escrowed: ++_stats.outcomes_escrowed; break;
      case handoff_outcome::defer: ++_stats.outcomes_defer; break;
      case handoff_outcome::unavailable: break;
    }
  }
  // A handled recipient needs its mail: one without any output stays queued.
  for (size_t i = 0; i < op->rcpts.size(); ++i) {
    handoff_outcome h = op->outcomes[i];
    if (h != handoff_outcome::pgp && h != handoff_outcome::smime && h != handoff_outcome::escrowed) continue;
    bool has = false;
    for (const auto& o : r.outputs)
      for (const auto& rc : o.rcpts) has = has || rc == op->rcpts[i];
    if (!has) op->outcomes[i] = handoff_outcome::unavailable;
  }
  op->waiting = r.outputs.size() + 1;  // +1: held until every submit is issued
  for (auto& o : r.outputs) {
    if (inside_outbox(_opt.outbox, o.path)) op->paths.push_back(o.path);
    std::vector<std::string> who = o.rcpts;
    spool_output(o, [op, who = std::move(who)](bool ok) {
      client* c = op->alive.expired() ? nullptr : op->owner;
      if (c) ++(ok ? c->_stats.outputs_spooled : c->_stats.outputs_failed);
      if (!ok) op->fail(who);
      if (--op->waiting == 0) op->finish();
    });
  }
  if (--op->waiting == 0) op->finish();
}

void client::on_submit(wire::submit& s) {
  uint64_t id = s.submit_id;
  std::string path = s.mail.path;
  bool readable = inside_outbox(_opt.outbox, path);
  std::weak_ptr<bool> alive = _alive;
  uint64_t gen = _gen;
  spool_output(s.mail, [this, id, path, readable, alive, gen](bool ok) {
    if (readable) ::unlink(path.c_str());
    if (alive.expired()) return;
    if (ok) ++_stats.submits;
    else ++_stats.outputs_failed;
    if (gen == _gen) send(wire::submitted{id, ok, ok ? "" : "could not spool the mail"});
  });
}

result<uint32_t> retract(const std::string& socket, std::string_view msg_id, unsigned timeout_ms) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return error(std::string("socket: ") + std::strerror(errno));
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  if (socket.size() >= sizeof sa.sun_path) {
    ::close(fd);
    return error("fallback.socket path too long");
  }
  std::memcpy(sa.sun_path, socket.data(), socket.size());
  timeval tv{long(timeout_ms / 1000), long(timeout_ms % 1000) * 1000};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
    int e = errno;
    ::close(fd);
    return error("the fallback sidecar is not reachable (" + std::string(std::strerror(e)) + ")");
  }
  std::string out;
  wire::encode(wire::hello{uint32_t(::getpid()), "admin"}, out);
  wire::encode(wire::retract{1, std::string(msg_id)}, out);
  size_t off = 0;
  while (off < out.size()) {
    ssize_t n = ::send(fd, out.data() + off, out.size() - off, MSG_NOSIGNAL);
    if (n <= 0) {
      ::close(fd);
      return error("the fallback sidecar did not take the request");
    }
    off += size_t(n);
  }
  wire::decoder dec;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  char buf[4096];
  while (std::chrono::steady_clock::now() < deadline) {
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    dec.feed(std::string_view(buf, size_t(n)));
    while (auto f = dec.next())
      if (auto* r = std::get_if<wire::retracted>(&*f)) {
        ::close(fd);
        if (!r->ok) return error("the escrow store failed: " + r->detail);
        return r->count;
      }
    if (dec.failed()) break;
  }
  ::close(fd);
  return error("the fallback sidecar did not answer in time");
}

result<std::string> retract_request_msg_id(std::string_view j) {
  size_t i = 0;
  auto ws = [&] {
    while (i < j.size() && (j[i] == ' ' || j[i] == '\t' || j[i] == '\r' || j[i] == '\n')) ++i;
  };
  auto str = [&](std::string& out) -> bool {
    if (i >= j.size() || j[i] != '"') return false;
    for (++i; i < j.size(); ++i) {
      unsigned char c = uint8_t(j[i]);
      if (c == '"') {
        ++i;
        return true;
      }
      if (c < 0x20) return false;
      if (c == '\\') {
        if (++i >= j.size()) return false;
        char e = j[i];
        if (e == '"' || e == '\\' || e == '/') out += e;
        else return false;  // a Message-ID needs no other escape
      } else {
        out += char(c);
      }
    }
    return false;
  };
  const char* shape = "expected a JSON object {\"msg_id\": \"<Message-ID>\"}";
  ws();
  if (i >= j.size() || j[i++] != '{') return error(shape);
  ws();
  std::string key, id;
  if (!str(key) || key != "msg_id") return error(shape);
  ws();
  if (i >= j.size() || j[i++] != ':') return error(shape);
  ws();
  if (!str(id)) return error(shape);
  ws();
  if (i >= j.size() || j[i++] != '}') return error(shape);
  ws();
  if (i != j.size()) return error(shape);
  if (id.size() >= 2 && id.front() == '<' && id.back() == '>') id = id.substr(1, id.size() - 2);
  if (id.empty() || id.size() > 998) return error("msg_id must be a Message-ID of 1 to 998 characters");
  for (unsigned char c : id)
    if (c <= ' ' || c == 0x7f) return error("msg_id must not hold spaces or control characters");
  return id;
}

}  // namespace sr::handoff
