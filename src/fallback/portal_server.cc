// portal_server.hh. Threads: one acceptor (poll over the listener and an eventfd for stop())
// hands accepted sockets to a bounded queue; `workers` threads each take one connection at
// a time, run the TLS handshake and then requests on it until the peer closes, a limit or a
// deadline is hit, or stop() shuts the socket down. Each worker opens its own escrow store
// (stores are single-threaded). Shared state — the code-request rate windows and the
// download sessions — sits behind one mutex each and is bounded in size.
// Secrets: the link secret and the session cookie are never logged nor audited; sessions
// are kept as SHA-256 of the cookie.
#include "sealrelay/fallback/portal_server.hh"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <vector>

#include "portal_request.hh"
#include "sealrelay/fallback/escrow.hh"
#include "sealrelay/fallback/handler.hh"
#include "sealrelay/fallback/mime_view.hh"
#include "sealrelay/fallback/notice.hh"
#include "sealrelay/fallback/portal_pages.hh"
#include "sealrelay/http/message.hh"
#include "sealrelay/tls/context.hh"
#include "sealrelay/tls/seal.hh"
#include "sealrelay/tls/socket_session.hh"
#include "sealrelay/util/cidr.hh"
#include "sealrelay/util/log.hh"
#include "sealrelay/util/text.hh"

namespace sr::fallback::portal {

namespace {

using steady = std::chrono::steady_clock;
constexpr std::string_view cookie_name = "sr_portal";
constexpr uint8_t kind_escrow_notice = 2;  // report::message_kind::escrow_notice

// Sliding-window counters of code mails per key (a link hash, a client address).
class rate_windows {
 public:
  // Count one event for `key` at `now` when fewer than `max` fell in the window; false (and
  // nothing counted) when the key is at its limit.
  bool try_take(const std::string& key, int max, std::chrono::seconds window, seconds_t now) {
    std::lock_guard lock(_mu);
    prune(window, now);
    auto& times = _hits[key];
    std::erase_if(times, [&](seconds_t t) { return t + window <= now; });
    if (static_cast<int>(times.size()) >= max) return false;
    times.push_back(now);
    return true;
  }

 private:
  // Drop keys whose events all left the window, so the map stays as small as the traffic.
  void prune(std::chrono::seconds window, seconds_t now) {
    if (++_calls % 64 != 0 && _hits.size() < 100'000) return;
    std::erase_if(_hits, [&](const auto& kv) {
      return kv.second.empty() || kv.second.back() + window <= now;
    });
  }

  std::mutex _mu;
  std::map<std::string, std::vector<seconds_t>> _hits;
  uint64_t _calls = 0;
};

// Download sessions: SHA-256 of the cookie -> the link it opens and until when.
class session_table {
 public:
  void add(const tls::sha256_digest& cookie, const link_hash& link, seconds_t expires,
           seconds_t now, std::size_t max) {
    std::lock_guard lock(_mu);
    std::erase_if(_sessions, [&](const auto& kv) { return kv.second.expires <= now; });
    while (!_sessions.empty() && _sessions.size() >= max) {
      auto oldest = std::min_element(_sessions.begin(), _sessions.end(), [](auto& a, auto& b) {
        return a.second.expires < b.second.expires;
      });
      _sessions.erase(oldest);
    }
    _sessions[cookie] = {link, expires};
  }
  bool valid(const tls::sha256_digest& cookie, const link_hash& link, seconds_t now) {
    std::lock_guard lock(_mu);
    auto it = _sessions.find(cookie);
    return it != _sessions.end() && it->second.link == link && it->second.expires > now;
  }

 private:
  struct entry {
    link_hash link;
    seconds_t expires;
  };
  std::mutex _mu;
  std::map<tls::sha256_digest, entry> _sessions;
};

tls::sha256_digest digest_of(std::string_view s) {
  return tls::sha256({reinterpret_cast<const uint8_t*>(s.data()), s.size()});
}

std::string hex(std::span<const uint8_t> b) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  for (uint8_t v : b) {
    out += digits[v >> 4];
    out += digits[v & 15];
  }
  return out;
}

// Return the key a client is counted under: its IPv4 address, or the /64 of its IPv6
// address (one host usually holds a whole /64).
std::string client_key(const std::string& ip) {
  in6_addr a6{};
  if (ip.find(':') == std::string::npos || ::inet_pton(AF_INET6, ip.c_str(), &a6) != 1) return ip;
  if (IN6_IS_ADDR_V4MAPPED(&a6)) {
    char v4[INET_ADDRSTRLEN];
    return ::inet_ntop(AF_INET, &a6.s6_addr[12], v4, sizeof v4) ? std::string(v4) : ip;
  }
  std::fill(a6.s6_addr + 8, a6.s6_addr + 16, 0);
  char text[INET6_ADDRSTRLEN];
  return ::inet_ntop(AF_INET6, &a6, text, sizeof text) ? std::string(text) + "/64" : ip;
}

// A small text page for requests refused before routing (400, 413, ...).
page plain_error(int status) {
  page p;
  p.status = status;
  p.headers = security_headers();
  p.headers.push_back({"Content-Type", "text/plain; charset=utf-8"});
  p.body = std::to_string(status) + " " + std::string(http::reason_phrase(status)) + "\n";
  return p;
}

}  // namespace

struct server::impl {
  server_options opt;
  std::optional<tls::context> ctx;
  int listen_fd = -1;
  int wake_fd = -1;
  uint16_t bound_port = 0;
  std::thread acceptor;
  std::vector<std::thread> workers;

  std::mutex mu;  // guards the fields below
  std::condition_variable cv;
  std::deque<std::pair<int, std::string>> pending;  // accepted fd, client address
  std::set<int> active;                             // fds being served (shut down by stop())
  std::map<std::string, unsigned> per_client;       // client_key -> connections open or waiting
  bool stopping = false;

  rate_windows link_rate, ip_rate;
  session_table sessions;

  explicit impl(server_options o) : opt(std::move(o)) {}

  seconds_t now() const {
    if (opt.clock) return opt.clock();
    return std::chrono::time_point_cast<std::chrono::seconds>(std::chrono::system_clock::now());
  }

  void accept_loop();
  void worker_loop(unsigned index);
  void serve(int fd, const std::string& ip, std::unique_ptr<escrow_store>& store);

  // One request of one reader; everything it needs to answer and to audit.
  struct request {
    std::string_view method, path, body;
    std::optional<std::string_view> cookie;
    const std::string& ip;
  };
  struct response {
    page p;
    bool head_only = false;
  };
  response handle(const request& rq, std::unique_ptr<escrow_store>& store);

  page show(const escrow::link& l, const request& rq, escrow_store& store);
  page request_code(const escrow::link& l, const request& rq, escrow_store& store);
  page enter_code(const escrow::link& l, const request& rq, escrow_store& store);
  page download(const escrow::link& l, std::string_view n, const request& rq,
                escrow_store& store);

  // Return an audit event with the record's msg_id/from/rcpt when the id names one.
  audit_event event_for(std::string_view what, std::string_view id, const request& rq,
                        escrow_store& store);
  void audit(audit_event e) {
    if (opt.audit) opt.audit->write(e);
  }
  // Audit a refusal and return its page.
  page refuse(page p, std::string_view why, std::string_view id, const request& rq,
              escrow_store& store) {
    audit_event e = event_for("refused", id, rq, store);
    e.detail = std::string(why);
    audit(std::move(e));
    return p;
  }
  // Peek at the link: nullopt when it opens, else the page to answer with (audited).
  std::optional<page> check_link(const escrow::link& l, const request& rq, escrow_store& store,
                                 std::vector<uint8_t>* message = nullptr);
  // Write the code mail into the outbox and hand it to submit_mail; false when it failed.
  bool send_code_mail(const std::string& recipient, const std::string& code);
};

server::server(server_options o) : _impl(std::make_unique<impl>(std::move(o))) {}

server::~server() { stop(); }

uint16_t server::port() const { return _impl->bound_port; }

status server::start() {
  impl& m = *_impl;
  if (m.listen_fd >= 0) return error{"portal: already started"};
  if (!m.opt.open_store) return error{"portal: no store factory"};
  auto ctx = tls::context::server(m.opt.cert_file, m.opt.key_file,
                                  std::max(m.opt.min_version, tls::tls_version::v1_2));
  if (!ctx) return error{"portal: " + ctx.err()};
  m.ctx.emplace(std::move(*ctx));
  socklen_t len = 0;
  auto addr = parse_endpoint(m.opt.listen, &len);
  if (!addr) return error{"fallback.portal_listen: not an ip:port address: " + m.opt.listen};
  int fd = ::socket(addr->ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return error{std::string("fallback.portal_listen: socket: ") + strerror(errno)};
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (::bind(fd, reinterpret_cast<const sockaddr*>(&*addr), len) < 0 || ::listen(fd, 64) < 0) {
    int e = errno;
    ::close(fd);
    return error{"fallback.portal_listen: " + m.opt.listen + ": " + strerror(e)};
  }
  sockaddr_storage bound{};
  socklen_t blen = sizeof bound;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &blen);
  m.bound_port = ntohs(bound.ss_family == AF_INET6
                           ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                           : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  m.wake_fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (m.wake_fd < 0) {
    ::close(fd);
    return error{std::string("portal: eventfd: ") + strerror(errno)};
  }
  m.listen_fd = fd;
  m.stopping = false;
  unsigned n = std::max(1u, m.opt.workers);
  for (unsigned i = 0; i < n; ++i) m.workers.emplace_back([&m, i] { m.worker_loop(i); });
  m.acceptor = std::thread([&m] { m.accept_loop(); });
  SR_INFO("portal: listening on %s (port %u, %u workers)", m.opt.listen.c_str(),
          unsigned(m.bound_port), n);
  return {};
}

void server::stop() {
  impl& m = *_impl;
  if (m.listen_fd < 0) return;
  {
    std::lock_guard lock(m.mu);
    m.stopping = true;
    // Wake workers waiting for a request: their poll sees EOF and the connection ends. Only
    // the read side: a response being written still goes out (then the connection closes).
    for (int fd : m.active) ::shutdown(fd, SHUT_RD);
  }
  uint64_t one = 1;
  [[maybe_unused]] ssize_t w = ::write(m.wake_fd, &one, sizeof one);
  m.cv.notify_all();
  if (m.acceptor.joinable()) m.acceptor.join();
  for (auto& t : m.workers) t.join();
  m.workers.clear();
  for (auto& [fd, ip] : m.pending) ::close(fd);
  m.pending.clear();
  m.per_client.clear();
  ::close(m.listen_fd);
  ::close(m.wake_fd);
  m.listen_fd = m.wake_fd = -1;
}

void server::impl::accept_loop() {
  // Bounded by stop(): the eventfd ends the loop.
  for (;;) {
    pollfd p[2] = {{listen_fd, POLLIN, 0}, {wake_fd, POLLIN, 0}};
    int r = ::poll(p, 2, -1);
    if (r < 0 && errno != EINTR) {
      SR_ERROR("portal: poll: %s", strerror(errno));
      return;
    }
    if (p[1].revents) return;
    if (!(p[0].revents & POLLIN)) continue;
    // Take what the backlog holds; bounded by the backlog's size per round.
    for (int k = 0; k < 64; ++k) {
      sockaddr_storage peer{};
      socklen_t plen = sizeof peer;
      int fd = ::accept4(listen_fd, reinterpret_cast<sockaddr*>(&peer), &plen, SOCK_CLOEXEC);
      if (fd < 0) {
        // Out of descriptors or memory: the listener stays readable, so pause rather than spin.
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
          SR_WARN("portal: accept: %s", strerror(errno));
          std::this_thread::sleep_for(std::chrono::milliseconds(100));
        }
        break;
      }
      std::string ip = address_to_string(reinterpret_cast<const sockaddr*>(&peer));
      std::lock_guard lock(mu);
      unsigned& mine = per_client[client_key(ip)];
      if (stopping || pending.size() >= opt.queue || mine >= opt.connections_per_client) {
        if (mine == 0) per_client.erase(client_key(ip));
        ::close(fd);  // busy: the reader's browser retries
        continue;
      }
      ++mine;
      pending.emplace_back(fd, std::move(ip));
      cv.notify_one();
    }
  }
}

void server::impl::worker_loop(unsigned index) {
  std::string name = "portal" + std::to_string(index);
  set_log_thread_name(name.c_str());
  std::unique_ptr<escrow_store> store;
  // Bounded by stop().
  for (;;) {
    int fd;
    std::string ip;
    {
      std::unique_lock lock(mu);
      cv.wait(lock, [&] { return stopping || !pending.empty(); });
      if (stopping) return;
      std::tie(fd, ip) = std::move(pending.front());
      pending.pop_front();
    }
    serve(fd, ip, store);  // closes fd
    std::lock_guard lock(mu);
    if (auto it = per_client.find(client_key(ip)); it != per_client.end() && --it->second == 0)
      per_client.erase(it);
  }
}

void server::impl::serve(int fd, const std::string& ip, std::unique_ptr<escrow_store>& store) {
  // The socket_session owns fd and closes it (on a failed handshake too). stop() shuts
  // connections down through a duplicate instead, which this function alone closes after
  // taking it out of `active`: stop() never touches a number the kernel reused.
  int guard = ::dup(fd);
  {
    std::lock_guard lock(mu);
    if (stopping || guard < 0) {
      ::close(fd);
      if (guard >= 0) ::close(guard);
      return;
    }
    active.insert(guard);
  }
  auto leave = [&](tls::socket_session* s) {
    {
      std::lock_guard lock(mu);
      active.erase(guard);
    }
    ::close(guard);
    if (s) s->close(steady::now() + std::chrono::milliseconds(200));
  };
  // Non-blocking: the session polls with deadlines.
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  auto s = tls::socket_session::accept(*ctx, fd, steady::now() + opt.handshake_timeout);
  if (!s) {
    SR_DEBUG("portal: %s: %s", ip.c_str(), s.err().c_str());
    leave(nullptr);
    return;
  }

  http::limits lim;
  lim.max_line = std::min<std::size_t>(opt.max_head, 8192);
  lim.max_head = opt.max_head;
  lim.max_headers = 64;
  lim.max_body = opt.max_body;
  std::string carry;  // bytes of the next request that came with this one
  std::byte buf[8192];
  for (unsigned served = 0; served < opt.max_requests; ++served) {
    http::request_parser parser(lim);
    bool got_any = false;
    auto deadline = steady::now() + opt.idle_timeout;
    if (!carry.empty()) {
      std::size_t used = parser.feed(carry);
      carry.erase(0, used);
      got_any = true;
      deadline = steady::now() + opt.request_timeout;
    }
    // Bounded by the deadline: each round reads bytes or ends the connection.
    while (parser.status() == http::parse_status::need_more) {
      long r = s->read(buf, deadline);
      if (r <= 0) {
        if (r == tls::socket_session::timed_out && got_any) {
          std::string out;
          page p = plain_error(408);
          std::vector<http::header> fields;
          for (const auto& h : p.headers) fields.push_back({h.name, h.value});
          http::write_response(out, p.status, fields, p.body, false);
          s->write_all(out, steady::now() + opt.write_timeout);
        }
        leave(&*s);
        return;
      }
      if (!got_any) {
        got_any = true;
        deadline = steady::now() + opt.request_timeout;
      }
      std::string_view in(reinterpret_cast<const char*>(buf), static_cast<std::size_t>(r));
      std::size_t used = parser.feed(in);
      if (used < in.size()) carry.append(in.substr(used));
    }
    page p;
    bool head_only = false;
    bool keep_alive = false;
    if (parser.status() == http::parse_status::failed) {
      SR_DEBUG("portal: %s: refused request: %s", ip.c_str(), http::to_string(parser.err()));
      p = plain_error(http::status_for(parser.err()));
    } else {
      request rq{parser.method(), parser.path(), parser.body(), parser.find("Cookie"), ip};
      response r = handle(rq, store);
      p = std::move(r.p);
      head_only = r.head_only;
      keep_alive = parser.keep_alive() && served + 1 < opt.max_requests;
    }
    {
      std::lock_guard lock(mu);
      if (stopping || !pending.empty()) keep_alive = false;  // free the worker for them
    }
    std::vector<http::header> fields;
    for (const auto& h : p.headers)
      if (!iequals(h.name, "Content-Length")) fields.push_back({h.name, h.value});
    std::string out;
    http::write_response(out, p.status, fields, p.body, keep_alive);
    if (head_only) out.resize(out.size() - p.body.size());
    if (!s->write_all(out, steady::now() + opt.write_timeout) || !keep_alive) {
      leave(&*s);
      return;
    }
  }
  leave(&*s);
}

server::impl::response server::impl::handle(const request& rq,
                                            std::unique_ptr<escrow_store>& store) {
  response r;
  r.head_only = rq.method == "HEAD";
  bool get = rq.method == "GET" || rq.method == "HEAD";
  bool post = rq.method == "POST";
  // /m/<id>/<secret>[/code | /a/<n>]
  if (!rq.path.starts_with("/m/")) {
    r.p = unavailable_page();
    return r;
  }
  auto seg = split_path(rq.path.substr(3), 4);
  if (seg.size() < 2 || seg.size() > 4 || !base64url_token(seg[0], 64) ||
      !base64url_token(seg[1], 128)) {
    r.p = unavailable_page();
    return r;
  }
  escrow::link l{std::string(seg[0]), std::string(seg[1])};
  if (!store) {
    auto opened = opt.open_store();
    if (!opened) {
      SR_ERROR("portal: cannot open the escrow store: %s", opened.err().c_str());
      r.p = server_error_page();
      return r;
    }
    store = std::move(*opened);
  }
  if (seg.size() == 2 && get) r.p = show(l, rq, *store);
  else if (seg.size() == 3 && post && seg[2] == "code") r.p = request_code(l, rq, *store);
  else if (seg.size() == 2 && post) r.p = enter_code(l, rq, *store);
  else if (seg.size() == 4 && get && seg[2] == "a") r.p = download(l, seg[3], rq, *store);
  else r.p = unavailable_page();
  return r;
}

audit_event server::impl::event_for(std::string_view what, std::string_view id,
                                    const request& rq, escrow_store& store) {
  audit_event e;
  e.event = std::string(what);
  e.ip = rq.ip;
  auto found = store.find_by_link_hash(escrow::hash_link_id(id));
  if (found && *found) {
    e.msg_id = (*found)->msg_id;
    e.from = (*found)->sender;
    e.rcpt = (*found)->recipient;
  }
  return e;
}

std::optional<page> server::impl::check_link(const escrow::link& l, const request& rq,
                                             escrow_store& store, std::vector<uint8_t>* message) {
  auto peeked = escrow::peek(store, l.id, l.secret, now());
  if (!peeked) {
    SR_ERROR("portal: escrow store: %s", peeked.err().c_str());
    return server_error_page();
  }
  if (peeked->status != escrow::open_status::ok)
    return refuse(refusal_page(peeked->status), escrow::to_string(peeked->status), l.id, rq,
                  store);
  if (message) *message = std::move(peeked->message);
  return std::nullopt;
}

page server::impl::show(const escrow::link& l, const request& rq, escrow_store& store) {
  if (auto refused = check_link(l, rq, store)) return std::move(*refused);
  return code_request_page(l);
}

page server::impl::request_code(const escrow::link& l, const request& rq, escrow_store& store) {
  if (auto refused = check_link(l, rq, store)) return std::move(*refused);
  seconds_t t = now();
  const link_hash lh = escrow::hash_link_id(l.id);
  // The link's window first: a link at its limit then costs its reader's address nothing.
  if (!link_rate.try_take(hex(lh), opt.codes_per_link, opt.code_window, t))
    return refuse(rate_limited_page(l), "rate-limited (link)", l.id, rq, store);
  if (!ip_rate.try_take(client_key(rq.ip), opt.codes_per_ip, opt.code_window, t))
    return refuse(rate_limited_page(l), "rate-limited (address)", l.id, rq, store);
  auto issued = escrow::issue_code(store, l.id, t);
  if (!issued) {
    SR_ERROR("portal: escrow store: %s", issued.err().c_str());
    return server_error_page();
  }
  if (issued->why != access::ok)
    return refuse(refusal_page(issued->why), to_string(issued->why), l.id, rq, store);
  if (!send_code_mail(issued->recipient, issued->code)) return server_error_page();
  audit(event_for("code-request", l.id, rq, store));
  return enter_code_page(l);
}

bool server::impl::send_code_mail(const std::string& recipient, const std::string& code) {
  if (!opt.submit_mail) {
    SR_ERROR("portal: no engine link to send the code mail");
    return false;
  }
  std::string from = "noreply-escrow@" + opt.hostname;
  code_mail_params cp;
  cp.notice_from = from;
  cp.recipient = recipient;
  cp.hostname = opt.hostname;
  cp.code = code;
  cp.now = now();
  auto mail = code_mail(cp);
  if (!mail) {
    SR_ERROR("portal: code mail: %s", mail.err().c_str());
    return false;
  }
  // The sidecar's main made the outbox (0700); a portal run alone (tests) makes it here.
  std::string dir = opt.state_dir + "/fallback/outbox";
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  auto written = write_outbox(dir, "code", mail->message);
  if (!written) {
    SR_ERROR("portal: code mail: %s", written.err().c_str());
    return false;
  }
  const std::string& final_path = *written;
  wire::output out;
  out.kind = kind_escrow_notice;
  out.from = "";  // null sender: nothing should answer an automatic code mail
  out.rcpts = {recipient};
  out.msg_id = mail->msg_id;
  out.path = final_path;
  if (!opt.submit_mail(out, opt.submit_timeout)) {
    SR_WARN("portal: the relay did not take the code mail %s", mail->msg_id.c_str());
    ::unlink(final_path.c_str());  // the reader asks again; no stale code mail later
    return false;
  }
  return true;
}

page server::impl::enter_code(const escrow::link& l, const request& rq, escrow_store& store) {
  auto field = form_field(rq.body, "code");
  if (!field) return enter_code_page(l);  // no code in the form: nothing to count
  std::string code;
  for (char c : *field)
    if (c != ' ' && c != '\t' && c != '-') code += c;  // "123 456" and "123-456" as typed
  if (auto refused = check_link(l, rq, store)) return std::move(*refused);
  seconds_t t = now();
  auto tried = escrow::check_code(store, l.id, code, t);
  if (!tried) {
    SR_ERROR("portal: escrow store: %s", tried.err().c_str());
    return server_error_page();
  }
  switch (tried->verdict) {
    case code_verdict::accepted: break;
    case code_verdict::wrong: {
      audit_event e = event_for("code-wrong", l.id, rq, store);
      e.detail = "tries left " + std::to_string(tried->tries_left);
      audit(std::move(e));
      return wrong_code_page(l, tried->tries_left);
    }
    case code_verdict::locked_now:
      audit(event_for("code-locked", l.id, rq, store));
      return locked_page();
    case code_verdict::no_code:
    case code_verdict::code_expired:
      return refuse(code_expired_page(l), to_string(tried->verdict), l.id, rq, store);
    case code_verdict::refused:
      return refuse(refusal_page(tried->refused), to_string(tried->refused), l.id, rq, store);
  }
  auto opened = escrow::open(store, l.id, l.secret, t);
  if (!opened) {
    SR_ERROR("portal: escrow store: %s", opened.err().c_str());
    return server_error_page();
  }
  if (opened->status != escrow::open_status::ok)
    return refuse(refusal_page(opened->status), escrow::to_string(opened->status), l.id, rq,
                  store);
  const auto& msg = opened->message;
  auto v = mime::render(std::string_view(reinterpret_cast<const char*>(msg.data()), msg.size()));
  page p = message_page(l, v.page);
  // The download session: 32 random bytes, kept here only as their hash.
  uint8_t rnd[32];
  if (tls::random_bytes(rnd)) {
    std::string cookie;
    append_base64(cookie, std::string_view(reinterpret_cast<const char*>(rnd), sizeof rnd),
                  base64_alphabet::url);
    sessions.add(digest_of(cookie), escrow::hash_link_id(l.id), t + opt.session_lifetime, t,
                 opt.max_sessions);
    p.headers.push_back({"Set-Cookie", std::string(cookie_name) + "=" + cookie + "; Path=/m/" +
                                           l.id + "/; Max-Age=" +
                                           std::to_string(opt.session_lifetime.count()) +
                                           "; Secure; HttpOnly; SameSite=Strict"});
  }
  audit_event e = event_for("view", l.id, rq, store);
  e.detail = "views " + std::to_string(opened->views);
  audit(std::move(e));
  return p;
}

page server::impl::download(const escrow::link& l, std::string_view n, const request& rq,
                            escrow_store& store) {
  std::vector<uint8_t> message;
  if (auto refused = check_link(l, rq, store, &message)) return std::move(*refused);
  bool session_ok = false;
  if (rq.cookie) {
    const link_hash lh = escrow::hash_link_id(l.id);
    for (std::string_view v : cookie_values(*rq.cookie, cookie_name))
      if (base64url_token(v, 64) && sessions.valid(digest_of(v), lh, now())) session_ok = true;
  }
  if (!session_ok) {
    page p = code_request_page(l);  // enter a code first
    p.status = 403;
    return refuse(std::move(p), "no-session", l.id, rq, store);
  }
  std::size_t index = 0;
  bool number = !n.empty() && n.size() <= 6 &&
                std::all_of(n.begin(), n.end(), [](char c) { return c >= '0' && c <= '9'; });
  if (number) index = std::stoul(std::string(n));
  auto v = mime::parse(std::string_view(reinterpret_cast<const char*>(message.data()),
                                        message.size()));
  if (!number || index >= v.page.attachments.size())
    return refuse(unavailable_page(), "no-such-attachment", l.id, rq, store);
  const attachment_info& a = v.page.attachments[index];
  page p;
  p.status = 200;
  p.headers = attachment_headers(a.name, a.content_type, a.size);
  p.body = std::move(v.attachment_bytes[index]);
  audit_event e = event_for("download", l.id, rq, store);
  e.detail = a.name.empty() ? "attachment " + std::to_string(index) : a.name;
  audit(std::move(e));
  return p;
}

}  // namespace sr::fallback::portal
