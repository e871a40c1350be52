// sealrelay-check: what the relay would see when it delivers to a domain, on the relay's own
// engine (one io_uring shard, dns::resolver, tls::stream, the policy decider). For each MX
// host and address: STARTTLS, the TLS version and cipher it really negotiates (the client
// context accepts TLS 1.0 up), the certificate chain and its verdict against tls.ca_file;
// the domain's MTA-STS TXT record and DANE TLSA records; and the verdict under each policy
// with the configured floors. Exit 0 when every domain is reachable under its configured
// policy, 1 when one is not, 2 on usage or config errors. Every step has a deadline.
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <arpa/inet.h>

#include <algorithm>
#include <cctype>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "check.hh"
#include "sealrelay/config/config.hh"
#include "sealrelay/core/shard.hh"
#include "sealrelay/dns/resolver.hh"
#include "sealrelay/https/client.hh"
#include "sealrelay/net/buffer_ring.hh"
#include "sealrelay/policy/table.hh"
#include "sealrelay/smtp/reply.hh"
#include "sealrelay/sts/policy.hh"
#include "sealrelay/tls/chain.hh"
#include "sealrelay/tls/context.hh"
#include "sealrelay/tls/session.hh"
#include "sealrelay/tls/stream.hh"
#include "sealrelay/util/cidr.hh"
#include "sealrelay/util/log.hh"

namespace check {

namespace {

std::string ip_of(const sockaddr_storage& ss) {
  char buf[INET6_ADDRSTRLEN] = "?";
  if (ss.ss_family == AF_INET)
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in&>(ss).sin_addr, buf, sizeof buf);
  else if (ss.ss_family == AF_INET6)
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6&>(ss).sin6_addr, buf, sizeof buf);
  return buf;
}

bool iequals_prefix(std::string_view s, std::string_view word) {
  if (s.size() < word.size()) return false;
  for (size_t i = 0; i < word.size(); ++i)
    if (std::toupper(static_cast<unsigned char>(s[i])) != word[i]) return false;
  return s.size() == word.size() || s[word.size()] == ' ';
}

std::string first_line(const sr::smtp::reply& r) {
  std::string s = std::to_string(r.code());
  if (r.line_count() > 0) {
    s += ' ';
    s += r.line(0);
  }
  return s;
}

class engine;

// One SMTP conversation with one MX address: greeting, EHLO, STARTTLS, handshake, EHLO
// over TLS, QUIT. It fills a probe_result and never sends MAIL.
class conversation final : public sr::tls::stream {
 public:
  conversation(engine& e, int fd, probe_result& out, std::string host);
  // Read the greeting.
  void begin();
  // Give up when the current step has run longer than the step timeout.
  void check_deadline(uint64_t now_ms, uint64_t timeout_ms);

 private:
  enum class phase : uint8_t { greeting, ehlo, starttls, handshake, ehlo_tls, quit, done };
  void on_plain(sr::net::chunk* c, size_t len) override;
  void on_tls_ready() override;
  void on_tls_failed() override;
  void on_end(int err) override;
  void on_closed() override;
  void on_reply(const sr::smtp::reply& r);
  void step(phase p);
  void quit();
  void fail(std::string why);

  engine& _e;
  probe_result& _out;
  std::string _host;
  phase _phase = phase::greeting;
  uint64_t _since = 0;
  sr::smtp::reply_parser _parser;
};

// The shard, the resolver, the TLS client context and the sequence of steps for all
// domains: one step at a time, each continuing the next through shard.post().
class engine {
 public:
  engine(const options& o, const sr::config::config& cfg) : opt(o), cfg(cfg) {}

  // Build the shard, resolver and TLS context; false with the reason in *why.
  bool init(std::string* why);
  // Check every domain in turn; results in order.
  std::vector<domain_result> run(const std::vector<std::string>& domains);

  sr::core::shard& shard() { return *_shard; }
  sr::net::buffer_ring& ring() { return *_ring; }
  sr::net::chunk_pool& pool() { return *_pool; }
  const sr::tls::context& tls() const { return *_tls; }
  // The conversation is gone: probe the next address.
  void conversation_closed();

  const options& opt;
  const sr::config::config& cfg;

 private:
  struct connect_op final : sr::core::completion {
    engine* e = nullptr;
    int fd = -1;
    void on_complete(int res, unsigned) override { e->on_connected(res); }
  };

  void next_domain();
  void start_route();
  void on_mx(const sr::dns::mx_result& r);
  void next_host();
  void on_addrs(const sr::dns::addr_result& r);
  void on_tlsa(const sr::dns::tlsa_result& r);
  void next_address();
  void on_connected(int res);
  void after_probe();
  void lookup_sts();
  void on_sts_txt(const sr::dns::txt_result& r);
  void on_sts_policy(const sr::https::response& r);
  void finish_domain();
  void tick();

  std::unique_ptr<sr::core::shard> _shard;
  std::unique_ptr<sr::net::chunk_pool> _pool;
  std::unique_ptr<sr::net::buffer_ring> _ring;
  std::unique_ptr<sr::tls::context> _tls;
  std::unique_ptr<sr::dns::resolver> _dns;
  std::unique_ptr<sr::tls::context> _https_tls;   // TLS 1.2 up (RFC 8461 §3.3)
  std::unique_ptr<sr::https::client> _https;
  std::unique_ptr<sr::policy::table> _table;

  const std::vector<std::string>* _domains = nullptr;
  std::vector<domain_result> _results;
  size_t _di = 0;          // domain being checked
  size_t _hi = 0;          // its host being checked
  size_t _ai = 0;          // that host's address being probed
  connect_op _connect;
  bool _connecting = false;
  uint64_t _connect_since = 0;
  conversation* _conv = nullptr;
  uint64_t _step_since = 0;      // DNS steps: when the lookup was asked
  bool _dns_waiting = false;
};

conversation::conversation(engine& e, int fd, probe_result& out, std::string host)
    : sr::tls::stream(e.shard(), e.ring(), e.pool(), fd), _e(e), _out(out), _host(std::move(host)) {}

void conversation::begin() {
  step(phase::greeting);
  start_recv();
}

void conversation::step(phase p) {
  _phase = p;
  _since = _e.shard().now_ms();
}

void conversation::check_deadline(uint64_t now_ms, uint64_t timeout_ms) {
  if (_phase == phase::done || closing() || now_ms - _since < timeout_ms) return;
  static const char* names[] = {"greeting", "EHLO reply", "STARTTLS reply", "TLS handshake",
                                "EHLO reply over TLS", "QUIT reply", ""};
  if (_phase == phase::quit) {  // everything is known; the MX only lingers
    step(phase::done);
    close(true);
    return;
  }
  fail(std::string("timeout waiting for the ") + names[int(_phase)]);
}

void conversation::fail(std::string why) {
  if (_out.error.empty()) _out.error = std::move(why);
  step(phase::done);
  close(true);
}

void conversation::quit() {
  send("QUIT\r\n");
  step(phase::quit);
}

void conversation::on_plain(sr::net::chunk* c, size_t len) {
  std::string_view bytes(reinterpret_cast<const char*>(c->data), len);
  while (!bytes.empty() && !closing() && _phase != phase::done) {
    size_t used = 0;
    auto st = _parser.feed(bytes, used);
    bytes.remove_prefix(used);
    if (st == sr::smtp::reply_parser::status::error) {
      fail("malformed SMTP reply");
      break;
    }
    if (st == sr::smtp::reply_parser::status::need_more) break;
    sr::smtp::reply r = _parser.get();
    _parser.next();
    on_reply(r);
  }
  _pool.release(c);
}

void conversation::on_reply(const sr::smtp::reply& r) {
  switch (_phase) {
    case phase::greeting:
      _out.greeting = first_line(r);
      _out.greeting_code = r.code();
      if (r.code() != 220) return quit();
      send("EHLO " + _e.opt.ehlo + "\r\n");
      return step(phase::ehlo);
    case phase::ehlo:
      _out.ehlo_code = r.code();
      if (r.code() != 250) return quit();
      for (size_t i = 1; i < r.line_count(); ++i)
        if (iequals_prefix(r.line(i), "STARTTLS")) _out.starttls_offered = true;
      if (!_out.starttls_offered) return quit();
      send("STARTTLS\r\n");
      return step(phase::starttls);
    case phase::starttls: {
      _out.starttls_code = r.code();
      _out.starttls_reply = first_line(r);
      if (r.code() != 220) return quit();
      _out.tls_attempted = true;
      auto s = sr::tls::session::connect(_e.tls(), _host);
      if (!s) return fail(s.err());
      step(phase::handshake);
      if (!start_tls(std::move(s.value()))) {
        _out.tls_failure = tls() ? tls()->failure_reason() : "handshake-failed";
        step(phase::done);
        close(true);
      }
      return;
    }
    case phase::ehlo_tls:
      _out.ehlo_tls_code = r.code();
      return quit();
    case phase::quit:
      step(phase::done);
      close();
      return;
    default:
      return;
  }
}

void conversation::on_tls_ready() {
  const sr::tls::session& s = *tls();
  _out.tls_ok = true;
  _out.version = std::string(s.version());
  _out.cipher = std::string(s.cipher());
  _out.library_bits = s.cipher_bits();
  _out.verdict = s.verdict();
  _out.chain = sr::tls::peer_chain(s);
  send("EHLO " + _e.opt.ehlo + "\r\n");
  step(phase::ehlo_tls);
}

void conversation::on_tls_failed() {
  _out.tls_failure = tls()->failure_reason();
  step(phase::done);
  close(true);
}

void conversation::on_end(int err) {
  if (_phase == phase::handshake) {
    _out.tls_failure = "handshake-failed";
    if (_out.error.empty()) _out.error = "connection closed during the TLS handshake";
  } else if (_phase != phase::quit && _phase != phase::done && _out.error.empty()) {
    _out.error = err < 0 ? std::string("connection error: ") + strerror(-err)
                         : std::string("connection closed by the MX");
  }
  step(phase::done);
  close();
}

void conversation::on_closed() {
  _e.conversation_closed();
  delete this;
}

bool engine::init(std::string* why) {
  sr::core::shard::options so;
  so.tick_ms = 50;
  _shard = std::make_unique<sr::core::shard>(so);
  if (!_shard->init()) {
    *why = "cannot create an io_uring";
    return false;
  }
  _pool = std::make_unique<sr::net::chunk_pool>(16 * 1024, 64);
  _ring = std::make_unique<sr::net::buffer_ring>(*_pool, 32, 1);
  if (_ring->register_with(_shard->ring()) < 0) {
    *why = "cannot register receive buffers";
    return false;
  }
  // TLS 1.0 up: show what the MX really negotiates; the floors judge it afterwards.
  auto ctx = sr::tls::context::client(cfg.tls.ca_file, sr::tls::tls_version::v1_0);
  if (!ctx) {
    *why = "tls.ca_file '" + cfg.tls.ca_file + "': " + ctx.err();
    return false;
  }
  _tls = std::make_unique<sr::tls::context>(std::move(ctx.value()));
  sr::dns::resolver_options ro;
  ro.servers = opt.resolvers.empty() ? cfg.dns.resolvers : opt.resolvers;
  ro.timeout_ms = uint32_t(std::max<uint64_t>(500, opt.timeout_ms / 2));
  ro.attempts = 2;
  _dns = std::make_unique<sr::dns::resolver>(*_shard, ro);
  if (auto st = _dns->start(); !st) {
    *why = "dns: " + st.err();
    return false;
  }
  auto hctx = sr::tls::context::client(cfg.tls.ca_file, sr::tls::tls_version::v1_2);
  if (!hctx) {
    *why = "tls.ca_file '" + cfg.tls.ca_file + "': " + hctx.err();
    return false;
  }
  _https_tls = std::make_unique<sr::tls::context>(std::move(hctx.value()));
  _https = std::make_unique<sr::https::client>(*_shard, *_dns, *_ring, *_pool, *_https_tls);
  auto t = sr::policy::compile(cfg);
  if (!t) {
    *why = "policy: " + t.err();
    return false;
  }
  _table = std::move(t.value());
  _connect.e = this;
  return true;
}

std::vector<domain_result> engine::run(const std::vector<std::string>& domains) {
  _domains = &domains;
  _results.clear();
  _results.reserve(domains.size());
  _di = 0;
  _shard->on_tick([this] { tick(); });
  _shard->post([this] { next_domain(); });
  _shard->run();
  return std::move(_results);
}

void engine::tick() {
  _ring->refill();
  uint64_t now = _shard->now_ms();
  if (_connecting && now - _connect_since >= opt.timeout_ms) {
    _connecting = false;
    _results.back().hosts[_hi].addresses[_ai].error = "timeout connecting";
    io_uring_sqe* s = _shard->sqe();
    io_uring_prep_cancel(s, &_connect, 0);
    io_uring_sqe_set_data64(s, sr::core::ignore_cqe);
  }
  if (_conv) _conv->check_deadline(now, opt.timeout_ms);
}

void engine::next_domain() {
  if (_di >= _domains->size()) {
    _shard->stop();
    return;
  }
  domain_result d;
  d.domain = (*_domains)[_di];
  d.port = opt.port;
  auto rule = _table->lookup(d.domain);
  d.configured = rule.policy;
  d.pattern = std::string(rule.pattern);
  d.sts.enabled = cfg.mta_sts.enabled;
  d.dane_enabled = cfg.dane.enabled;
  _hi = 0;
  if (const auto* rt = sr::config::find_route(cfg, d.domain)) {
    d.route = rt->next_hop;
    d.route_pattern = rt->domain;
    _results.push_back(std::move(d));
    return start_route();
  }
  _results.push_back(std::move(d));
  _dns->lookup_mx(_results.back().domain, [this](const sr::dns::mx_result& r) { on_mx(r); });
}

// "[ip]:port" or "host:port" (src/delivery/walk.cc reads next_hop the same way); the one
// host is probed on the route's port, its name (or IP) is what the certificate must name.
void engine::start_route() {
  domain_result& d = _results.back();
  const std::string& hop = d.route;
  std::string host;
  long port = 0;
  size_t colon = std::string::npos;
  if (!hop.empty() && hop[0] == '[') {
    size_t close = hop.find(']');
    if (close != std::string::npos) {
      host = hop.substr(1, close - 1);
      if (close + 1 < hop.size() && hop[close + 1] == ':') colon = close + 1;
    }
  } else {
    colon = hop.rfind(':');
    if (colon != std::string::npos) host = hop.substr(0, colon);
  }
  if (colon != std::string::npos && colon + 1 < hop.size()) {
    char* end = nullptr;
    port = std::strtol(hop.c_str() + colon + 1, &end, 10);
    if (*end) port = 0;
  }
  if (host.empty() || port < 1 || port > 65535) {
    d.route_invalid = true;
    return finish_domain();
  }
  d.port = uint16_t(port);
  d.mx_status = sr::dns::status::ok;
  host_result h;
  h.name = host;
  d.hosts.push_back(std::move(h));
  next_host();  // an IP literal answers itself
}

void engine::on_mx(const sr::dns::mx_result& r) {
  domain_result& d = _results.back();
  d.mx_status = r.status;
  d.mx_ad = r.ad;
  d.mx_implicit = r.implicit;
  size_t n = std::min<size_t>(r.hosts.size(), opt.max_hosts);
  d.mx_truncated = r.hosts.size() > n;
  for (size_t i = 0; i < n; ++i) {
    host_result h;
    h.name = r.hosts[i].name;
    h.preference = r.hosts[i].preference;
    d.hosts.push_back(std::move(h));
  }
  next_host();
}

void engine::next_host() {
  domain_result& d = _results.back();
  if (_hi >= d.hosts.size()) return lookup_sts();
  _dns->lookup_addrs(d.hosts[_hi].name, [this](const sr::dns::addr_result& r) { on_addrs(r); });
}

void engine::on_addrs(const sr::dns::addr_result& r) {
  host_result& h = _results.back().hosts[_hi];
  h.addr_status = r.status;
  h.addr_ad = r.ad;
  size_t n = std::min<size_t>(r.addrs.size(), opt.max_addresses);
  for (size_t i = 0; i < n; ++i) {
    probe_result p;
    p.addr = r.addrs[i];
    p.ip = ip_of(r.addrs[i]);
    h.addresses.push_back(std::move(p));
  }
  if (!_results.back().route.empty()) {
    h.tlsa_status = sr::dns::status::nodata;  // a next hop is never DANE-checked
    _ai = 0;
    return next_address();
  }
  std::string name = "_" + std::to_string(_results.back().port) + "._tcp." + h.name;
  h.tlsa_name = name;
  _dns->lookup_tlsa(name, [this](const sr::dns::tlsa_result& t) { on_tlsa(t); });
}

void engine::on_tlsa(const sr::dns::tlsa_result& r) {
  host_result& h = _results.back().hosts[_hi];
  h.tlsa_status = r.status;
  h.tlsa_ad = r.ad;
  h.tlsa = r.records;
  _ai = 0;
  next_address();
}

void engine::next_address() {
  host_result& h = _results.back().hosts[_hi];
  if (_ai >= h.addresses.size()) {
    ++_hi;
    return next_host();
  }
  probe_result& p = h.addresses[_ai];
  sockaddr_storage addr = p.addr;
  socklen_t len;
  if (addr.ss_family == AF_INET) {
    reinterpret_cast<sockaddr_in&>(addr).sin_port = htons(_results.back().port);
    len = sizeof(sockaddr_in);
  } else {
    reinterpret_cast<sockaddr_in6&>(addr).sin6_port = htons(_results.back().port);
    len = sizeof(sockaddr_in6);
  }
  p.addr = addr;
  int fd = ::socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    p.error = std::string("socket: ") + strerror(errno);
    ++_ai;
    _shard->post([this] { next_address(); });
    return;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  _connect.fd = fd;
  _connecting = true;
  _connect_since = _shard->now_ms();
  io_uring_prep_connect(_shard->sqe(&_connect), fd, reinterpret_cast<const sockaddr*>(&p.addr), len);
}

void engine::on_connected(int res) {
  probe_result& p = _results.back().hosts[_hi].addresses[_ai];
  bool timed_out = !_connecting;
  _connecting = false;
  if (res < 0 || timed_out) {
    if (p.error.empty()) p.error = std::string("connect: ") + strerror(-res);
    ::close(_connect.fd);
    after_probe();
    return;
  }
  p.connected = true;
  auto* c = new conversation(*this, _connect.fd, p, _results.back().hosts[_hi].name);
  _conv = c;
  c->begin();
}

void engine::conversation_closed() {
  _conv = nullptr;
  _shard->post([this] { after_probe(); });
}

void engine::after_probe() {
  ++_ai;
  _shard->post([this] { next_address(); });
}

void engine::lookup_sts() {
  domain_result& d = _results.back();
  if (!d.route.empty()) return finish_domain();  // the relay applies no MTA-STS to a next hop
  _dns->lookup_txt("_mta-sts." + d.domain, [this](const sr::dns::txt_result& r) { on_sts_txt(r); });
}

void engine::on_sts_txt(const sr::dns::txt_result& r) {
  domain_result& d = _results.back();
  d.sts_txt_status = r.status;
  d.sts_txt_ad = r.ad;
  d.sts_txt = r.texts;
  if (r.status != sr::dns::status::ok) return finish_domain();
  auto rec = sr::sts::parse_txt(r.texts);
  d.sts.record = rec.verdict;
  d.sts.id = rec.id;
  d.sts.record_detail = rec.detail;
  if (rec.verdict != sr::sts::txt_verdict::valid) return finish_domain();
  // The fetch the relay makes (RFC 8461 §3.3), bounded by the step timeout.
  sr::https::request q;
  q.host = "mta-sts." + d.domain;
  q.port = opt.sts_port;
  q.path = "/.well-known/mta-sts.txt";
  q.expect_content_type = "text/plain";
  q.max_body = sr::sts::max_policy_bytes;
  q.timeout_ms = uint32_t(std::min<uint64_t>(opt.timeout_ms, 60000));
  d.sts.fetched = true;
  d.sts.url = "https://" + q.host + (q.port == 443 ? "" : ":" + std::to_string(q.port)) + q.path;
  _https->fetch(std::move(q), [this](const sr::https::response& resp) { on_sts_policy(resp); });
}

void engine::on_sts_policy(const sr::https::response& r) {
  sts_result& s = _results.back().sts;
  s.http_status = r.status;
  s.fetch_ok = r.fail == sr::https::failure::none;
  if (!s.fetch_ok) {
    s.fetch_detail = sr::https::to_string(r.fail);
    if (!r.detail.empty()) s.fetch_detail += ": " + r.detail;
    return finish_domain();
  }
  auto p = sr::sts::parse_policy(r.body);
  if (!p) {
    s.policy_error = p.err();
  } else {
    s.rules = std::make_shared<const sr::policy::mta_sts_rules>(p.value().rules);
    s.max_age = p.value().max_age;
  }
  finish_domain();
}

void engine::finish_domain() {
  judge(_results.back());
  ++_di;
  _shard->post([this] { next_domain(); });
}

}  // namespace
}  // namespace check

namespace check {
namespace {

int usage(FILE* f) {
  std::fputs(
      "usage: sealrelay-check [options] DOMAIN [DOMAIN...]\n"
      "       sealrelay-check [options] --file FILE      (one domain a line, # comments)\n"
      "  -c FILE              the relay's config: dns.resolvers, outbound.smtp_port, tls.ca_file,\n"
      "                       [tls]/[[policy]] floors (defaults without it)\n"
      "  --json               one JSON object per domain (with --file: {\"domains\":[...]})\n"
      "  --resolver IP:PORT   DNS server to ask (repeatable; overrides dns.resolvers)\n"
      "  --port N             SMTP port of the MX hosts (overrides outbound.smtp_port)\n"
      "  --sts-port N         HTTPS port of MTA-STS policy hosts (overrides mta_sts.https_port)\n"
      "  --timeout SECONDS    limit per step: DNS answer, connect, each reply, handshake (10)\n"
      "  --ehlo NAME          EHLO name (server.hostname, else this host's name)\n"
      "exit: 0 every domain reachable under its configured policy, 1 not, 2 usage or config error\n",
      f);
  return 2;
}

// Read a --file list: one domain a line, '#' starts a comment, blank lines skipped.
bool read_domain_file(const std::string& path, std::vector<std::string>& out) {
  std::ifstream in(path);
  if (!in) return false;
  std::string line;
  while (std::getline(in, line)) {
    if (auto h = line.find('#'); h != std::string::npos) line.erase(h);
    size_t b = line.find_first_not_of(" \t\r");
    if (b == std::string::npos) continue;
    size_t e = line.find_last_not_of(" \t\r");
    out.push_back(line.substr(b, e - b + 1));
  }
  return true;
}

std::string normalize(std::string d) {
  for (auto& c : d) c = char(std::tolower(static_cast<unsigned char>(c)));
  while (!d.empty() && d.back() == '.') d.pop_back();
  return d;
}

}  // namespace
}  // namespace check

int main(int argc, char** argv) {
  using namespace check;
  options o;
  std::string config_file, domain_file;
  std::vector<std::string> domains;
  long port = -1, sts_port = -1;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> const char* {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "sealrelay-check: %s needs a value\n", a.c_str());
        std::exit(usage(stderr));
      }
      return argv[++i];
    };
    if (a == "-c" || a == "--config") config_file = next();
    else if (a == "--json") o.json = true;
    else if (a == "--file") domain_file = next();
    else if (a == "--resolver") o.resolvers.push_back(next());
    else if (a == "--port") {
      char* end = nullptr;
      const char* v = next();
      port = std::strtol(v, &end, 10);
      if (!*v || *end || port < 1 || port > 65535) {
        std::fprintf(stderr, "sealrelay-check: --port: '%s' is not a port\n", v);
        return 2;
      }
    } else if (a == "--sts-port") {
      char* end = nullptr;
      const char* v = next();
      sts_port = std::strtol(v, &end, 10);
      if (!*v || *end || sts_port < 1 || sts_port > 65535) {
        std::fprintf(stderr, "sealrelay-check: --sts-port: '%s' is not a port\n", v);
        return 2;
      }
    } else if (a == "--timeout") {
      char* end = nullptr;
      const char* v = next();
      double s = std::strtod(v, &end);
      if (!*v || *end || !(s > 0) || s > 3600) {
        std::fprintf(stderr, "sealrelay-check: --timeout: '%s' is not a number of seconds (0..3600]\n", v);
        return 2;
      }
      o.timeout_ms = uint64_t(s * 1000);
    } else if (a == "--ehlo") o.ehlo = next();
    else if (a == "-h" || a == "--help") {
      usage(stdout);
      return 0;
    } else if (!a.empty() && a[0] == '-') {
      std::fprintf(stderr, "sealrelay-check: unknown option '%s'\n", a.c_str());
      return usage(stderr);
    } else {
      domains.push_back(a);
    }
  }
  if (!domain_file.empty() && !read_domain_file(domain_file, domains)) {
    std::fprintf(stderr, "sealrelay-check: --file %s: %s\n", domain_file.c_str(), strerror(errno));
    return 2;
  }
  if (domains.empty()) {
    std::fprintf(stderr, "sealrelay-check: no domain given\n");
    return usage(stderr);
  }
  for (auto& d : domains) d = normalize(d);

  sr::config::config cfg;
  if (!config_file.empty()) {
    auto loaded = sr::config::load(config_file);
    if (!loaded) {
      std::fprintf(stderr, "sealrelay-check: %s\n", loaded.err().c_str());
      return 2;
    }
    cfg = std::move(loaded.value());
  }
  o.port = port > 0 ? uint16_t(port) : uint16_t(cfg.outbound.smtp_port);
  o.sts_port = sts_port > 0 ? uint16_t(sts_port) : uint16_t(cfg.mta_sts.https_port);
  if (o.ehlo.empty()) o.ehlo = cfg.server.hostname;
  if (o.ehlo.empty()) {
    char host[256] = {};
    if (gethostname(host, sizeof host - 1) == 0 && host[0]) o.ehlo = host;
    else o.ehlo = "localhost";
  }
  for (const auto& r : o.resolvers)
    if (!sr::dns::parse_server(r)) {
      std::fprintf(stderr, "sealrelay-check: --resolver: '%s' is not IP[:PORT]\n", r.c_str());
      return 2;
    }
  signal(SIGPIPE, SIG_IGN);
  sr::set_log_level(sr::log_level::error);

  engine e(o, cfg);
  std::string why;
  if (!e.init(&why)) {
    std::fprintf(stderr, "sealrelay-check: %s%s%s\n", config_file.c_str(), config_file.empty() ? "" : ": ",
                 why.c_str());
    return 2;
  }
  auto results = e.run(domains);
  bool all = results.size() == domains.size();
  for (const auto& r : results) all &= r.reachable;
  std::string out;
  if (o.json) {
    if (domain_file.empty() && results.size() == 1) {
      out = render_json(results[0]);
    } else {
      out = "{\"domains\":[";
      for (size_t i = 0; i < results.size(); ++i) out += (i ? "," : "") + render_json(results[i]);
      out += std::string("],\"reachable\":") + (all ? "true" : "false") + "}";
    }
    out += "\n";
  } else {
    for (size_t i = 0; i < results.size(); ++i) out += (i ? "\n" : "") + render_text(results[i]);
  }
  std::fwrite(out.data(), 1, out.size(), stdout);
  return all ? 0 : 1;
}
