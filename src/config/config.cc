// Strict TOML -> config: every table and key is read against the schema written out below
// (DESIGN.md §4 plus [limits]); anything left over is an unknown key. All problems are
// collected and the one written first in the file is reported as "FILE:LINE: KEY: message".
// toml++ is used header-only with TOML_EXCEPTIONS=0 and never leaves this file.
#include "sealrelay/config/config.hh"
#include "not_built.hh"
#include "sealrelay/util/text.hh"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/un.h>
#include <toml++/toml.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <initializer_list>
#include <limits>
#include <regex>
#include <set>
#include <sstream>
#include <utility>

namespace sr::config {
namespace {

constexpr int64_t u32_max = std::numeric_limits<uint32_t>::max();
constexpr duration no_max = duration::max();

struct problem {
  uint32_t line;
  std::string text;
};

const char* type_name(toml::node_type t) {
  switch (t) {
    case toml::node_type::string: return "string";
    case toml::node_type::integer: return "integer";
    case toml::node_type::floating_point: return "float";
    case toml::node_type::boolean: return "boolean";
    case toml::node_type::date: return "date";
    case toml::node_type::time: return "time";
    case toml::node_type::date_time: return "date-time";
    case toml::node_type::array: return "array";
    case toml::node_type::table: return "table";
    default: return "nothing";
  }
}

uint32_t line_of(const toml::node& n) { return n.source().begin.line; }

std::string quoted(std::string_view s) { return "\"" + std::string(s) + "\""; }

// Owns the problem list and the key -> line record of one parse.
class loader {
 public:
  loader(std::string file, config& cfg) : _file(std::move(file)), _cfg(cfg) {}

  void fail(uint32_t line, std::string_view key, std::string_view msg) {
    _problems.push_back({line, _file + ":" + std::to_string(line) + ": " + std::string(key) +
                                   ": " + std::string(msg)});
  }
  void note(const std::string& key, uint32_t line) { _cfg.lines[key] = int(line); }
  bool failed() const { return !_problems.empty(); }
  // Return the problem written first in the file (discovery order breaks ties).
  std::string first() const {
    auto it = std::min_element(_problems.begin(), _problems.end(),
                               [](const problem& a, const problem& b) { return a.line < b.line; });
    return it->text;
  }
  config& cfg() { return _cfg; }

 private:
  std::string _file;
  config& _cfg;
  std::vector<problem> _problems;
};

// Reads the keys of one table; whatever is not taken is reported by reject_unknown().
class table_reader {
 public:
  table_reader(loader& l, const toml::table& t, std::string path)
      : _l(l), _t(t), _path(std::move(path)) {}

  std::string path(std::string_view key) const {
    return _path.empty() ? std::string(key) : _path + "." + std::string(key);
  }
  const std::string& path() const { return _path; }
  uint32_t line() const { return std::max<uint32_t>(1, line_of(_t)); }
  bool has(std::string_view key) const { return _t.contains(key); }
  loader& owner() { return _l; }

  // Return the node of `key` (nullptr when absent), marking the key as known.
  const toml::node* take(std::string_view key) {
    _taken.emplace(key);
    const toml::node* n = _t.get(key);
    if (n) _l.note(path(key), line_of(*n));
    return n;
  }

  // Line of `key`'s value, or of the table when the key is absent.
  uint32_t line_of_key(std::string_view key) const {
    const toml::node* n = _t.get(key);
    return n ? line_of(*n) : line();
  }

  void fail(std::string_view key, std::string_view msg) { _l.fail(line_of_key(key), path(key), msg); }

  void reject_unknown() {
    for (auto&& [k, v] : _t) {
      if (_taken.count(std::string(k.str()))) continue;
      uint32_t ln = k.source().begin.line ? k.source().begin.line : line_of(v);
      _l.fail(ln, path(k.str()), v.is_table() ? "unknown table" : "unknown key");
    }
  }

  // Typed reads: false when absent or invalid (the problem is recorded); `out` keeps its
  // default unless the value is valid.
  bool read(std::string_view key, std::string& out) {
    const toml::node* n = take(key);
    if (!n) return false;
    return string_of(*n, path(key), out);
  }

  bool read(std::string_view key, bool& out) {
    const toml::node* n = take(key);
    if (!n) return false;
    if (auto* b = n->as_boolean()) {
      out = b->get();
      return true;
    }
    mistyped(*n, path(key), "a boolean");
    return false;
  }

  bool read(std::string_view key, unsigned& out, int64_t lo, int64_t hi) {
    int64_t v = 0;
    if (!read_int(key, v, lo, hi)) return false;
    out = unsigned(v);
    return true;
  }

  bool read_int(std::string_view key, int64_t& out, int64_t lo, int64_t hi) {
    const toml::node* n = take(key);
    if (!n) return false;
    auto* i = n->as_integer();
    if (!i) {
      mistyped(*n, path(key), "an integer");
      return false;
    }
    int64_t v = i->get();
    if (v < lo || v > hi) {
      std::string msg = hi == u32_max ? "must be at least " + std::to_string(lo)
                                      : "must be between " + std::to_string(lo) + " and " +
                                            std::to_string(hi);
      _l.fail(line_of(*n), path(key), msg + ", got " + std::to_string(v));
      return false;
    }
    out = v;
    return true;
  }

  bool read_duration(std::string_view key, duration& out, duration lo, duration hi = no_max) {
    const toml::node* n = take(key);
    if (!n) return false;
    return duration_of(*n, path(key), out, lo, hi);
  }

  template <typename E>
  bool read_enum(std::string_view key, E& out,
                 std::initializer_list<std::pair<const char*, E>> names) {
    std::string s;
    if (!read(key, s)) return false;
    for (auto& [name, value] : names)
      if (s == name) {
        out = value;
        return true;
      }
    std::string msg = "must be one of ";
    bool first = true;
    for (auto& [name, value] : names) {
      msg += (first ? "" : ", ") + quoted(name);
      first = false;
    }
    _l.fail(line_of_key(key), path(key), msg + "; got " + quoted(s));
    return false;
  }

  // Read an array of strings; `each` validates one element (path, line, text) and returns false
  // after recording a problem.
  template <typename F>
  bool read_array(std::string_view key, F&& each) {
    const toml::node* n = take(key);
    if (!n) return false;
    auto* a = n->as_array();
    if (!a) {
      mistyped(*n, path(key), "an array");
      return false;
    }
    bool ok = true;
    for (size_t i = 0; i < a->size(); ++i) {
      const toml::node& e = *a->get(i);
      std::string p = path(key) + "[" + std::to_string(i) + "]";
      ok = each(p, e) && ok;
    }
    return ok;
  }

  bool string_of(const toml::node& n, const std::string& p, std::string& out) {
    if (auto* s = n.as_string()) {
      out = s->get();
      return true;
    }
    mistyped(n, p, "a string");
    return false;
  }

  bool duration_of(const toml::node& n, const std::string& p, duration& out, duration lo,
                   duration hi) {
    std::string s;
    if (!n.as_string()) {
      mistyped(n, p, "a duration string such as \"10s\"");
      return false;
    }
    s = n.as_string()->get();
    auto d = parse_duration(s);
    if (!d) {
      _l.fail(line_of(n), p,
              "bad duration " + quoted(s) + " (a whole number and ms, s, m, h or d, e.g. \"10s\")");
      return false;
    }
    if (*d < lo) {
      _l.fail(line_of(n), p,
              lo == duration(1) ? "must be greater than 0"
                                : "must be at least " + format_duration(lo) + ", got " + quoted(s));
      return false;
    }
    if (*d > hi) {
      _l.fail(line_of(n), p, "must be at most " + format_duration(hi) + ", got " + quoted(s));
      return false;
    }
    out = *d;
    return true;
  }

  void mistyped(const toml::node& n, const std::string& p, std::string_view want) {
    _l.fail(line_of(n), p, "expected " + std::string(want) + ", got " + type_name(n.type()));
  }

 private:
  loader& _l;
  const toml::table& _t;
  std::string _path;
  std::set<std::string, std::less<>> _taken;
};

// Lower-case `d` in place and check it is an exact domain, a ".suffix" or (when allowed) "*".
std::optional<std::string> check_domain(std::string& d, bool allow_star) {
  if (d.empty()) return "must not be empty";
  if (d == "*") {
    if (allow_star) return std::nullopt;
    return std::string("\"*\" is not allowed here (outbound.default_policy covers every domain)");
  }
  for (char& c : d) {
    if (static_cast<unsigned char>(c) >= 0x80)
      return "not an ASCII domain " + quoted(d) + " (write the A-label form, xn--...)";
    if (c >= 'A' && c <= 'Z') c = char(c - 'A' + 'a');
  }
  std::string_view name = d;
  if (name[0] == '.') name.remove_prefix(1);
  auto bad = [&] { return "not a domain name: " + quoted(d); };
  if (name.empty() || name.size() > 253 || name.back() == '.') return bad();
  size_t start = 0;
  while (start <= name.size()) {
    size_t end = name.find('.', start);
    if (end == std::string_view::npos) end = name.size();
    std::string_view label = name.substr(start, end - start);
    if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-')
      return bad();
    for (char c : label)
      if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_')) return bad();
    start = end + 1;
  }
  return std::nullopt;
}

// Parse an "ip:port" endpoint with a non-zero port (names are not allowed: nothing resolves them).
std::optional<std::string> check_endpoint(std::string_view text, sockaddr_storage* out,
                                          socklen_t* len) {
  socklen_t l = 0;
  auto ss = parse_endpoint(text, &l);
  if (!ss)
    return "expected an address \"ip:port\" or \"[ipv6]:port\" (not a host name), got " +
           quoted(text);
  auto port = ss->ss_family == AF_INET ? reinterpret_cast<sockaddr_in*>(&*ss)->sin_port
                                       : reinterpret_cast<sockaddr_in6*>(&*ss)->sin6_port;
  if (port == 0) return "port must be between 1 and 65535, got " + quoted(text);
  if (out) *out = *ss;
  if (len) *len = l;
  return std::nullopt;
}

bool same_endpoint(const sockaddr_storage& a, const sockaddr_storage& b) {
  if (a.ss_family != b.ss_family) return false;
  if (a.ss_family == AF_INET) {
    auto& x = reinterpret_cast<const sockaddr_in&>(a);
    auto& y = reinterpret_cast<const sockaddr_in&>(b);
    return x.sin_port == y.sin_port && x.sin_addr.s_addr == y.sin_addr.s_addr;
  }
  auto& x = reinterpret_cast<const sockaddr_in6&>(a);
  auto& y = reinterpret_cast<const sockaddr_in6&>(b);
  return x.sin6_port == y.sin6_port &&
         std::memcmp(&x.sin6_addr, &y.sin6_addr, sizeof x.sin6_addr) == 0;
}

// "[ip]:port" (no DNS) or "host:port" (A/AAAA, no MX).
std::optional<std::string> check_next_hop(std::string_view text) {
  std::string err = "expected \"[ip]:port\" or \"host:port\", got " + quoted(text);
  if (!text.empty() && text[0] == '[') {
    if (check_endpoint(text, nullptr, nullptr)) return err;
    return std::nullopt;
  }
  auto colon = text.rfind(':');
  if (colon == std::string_view::npos || colon == 0) return err;
  std::string host(text.substr(0, colon));
  if (host.front() == '.' || check_domain(host, false)) return err;
  std::string_view port = text.substr(colon + 1);
  unsigned p = 0;
  auto [e, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
  if (ec != std::errc() || e != port.data() + port.size() || p == 0 || p > 65535) return err;
  return std::nullopt;
}

// "123", "512K", "50M", "1G" (binary multiples) -> bytes.
std::optional<uint64_t> parse_size(std::string_view s) {
  uint64_t n = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
  if (ec != std::errc() || p == s.data()) return std::nullopt;
  std::string_view unit(p, s.data() + s.size() - p);
  int shift = 0;
  if (unit.empty()) shift = 0;
  else if (unit == "K" || unit == "k") shift = 10;
  else if (unit == "M" || unit == "m") shift = 20;
  else if (unit == "G" || unit == "g") shift = 30;
  else return std::nullopt;
  if (n > (uint64_t(1) << 40)) return std::nullopt;
  return n << shift;
}

const std::initializer_list<std::pair<const char*, tls_version>> version_names = {
    {"1.0", tls_version::v1_0}, {"1.1", tls_version::v1_1}, {"1.2", tls_version::v1_2},
    {"1.3", tls_version::v1_3}};
const std::initializer_list<std::pair<const char*, tls_policy>> policy_names = {
    {"opportunistic", tls_policy::opportunistic},
    {"forced", tls_policy::forced},
    {"exclusive", tls_policy::exclusive}};

// Take an optional section `key` from the root; nullptr (after recording) when it is not a table.
const toml::table* section(table_reader& root, std::string_view key) {
  const toml::node* n = root.take(key);
  if (!n) return nullptr;
  if (auto* t = n->as_table()) return t;
  root.mistyped(*n, std::string(key), "a table ([" + std::string(key) + "])");
  return nullptr;
}

// Take an optional array of tables `key` ([[key]]); calls `each(reader, index)` per entry.
template <typename F>
void entries(table_reader& root, std::string_view key, F&& each) {
  const toml::node* n = root.take(key);
  if (!n) return;
  auto* a = n->as_array();
  if (!a) {
    root.mistyped(*n, std::string(key), "an array of tables ([[" + std::string(key) + "]])");
    return;
  }
  for (size_t i = 0; i < a->size(); ++i) {
    const toml::node& e = *a->get(i);
    std::string p = std::string(key) + "[" + std::to_string(i) + "]";
    auto* t = e.as_table();
    if (!t) {
      root.mistyped(e, p, "a table");
      continue;
    }
    table_reader r(root.owner(), *t, p);
    r.owner().note(p, r.line());
    each(r, i);
    r.reject_unknown();
  }
}

void read_server(loader& l, table_reader& root) {
  server_section& s = l.cfg().server;
  const toml::table* t = section(root, "server");
  bool hostname_set = false;
  if (t) {
    table_reader r(l, *t, "server");
    if (r.read("hostname", s.hostname)) {
      hostname_set = true;
      std::string h = s.hostname;
      if (h.empty() || h[0] == '.' || check_domain(h, false))
        r.fail("hostname", "not a host name: " + quoted(s.hostname));
    }
    r.read("shards", s.shards, 0, 256);  // the spool tells 256 partitions apart (spool::max_shards)
    if (r.read("state_dir", s.state_dir) && s.state_dir.empty())
      r.fail("state_dir", "must not be empty");
    r.read_duration("drain_timeout", s.drain_timeout, duration(0));
    r.reject_unknown();
  }
  if (!hostname_set) {
    char buf[256] = {};
    if (gethostname(buf, sizeof buf - 1) != 0 || buf[0] == '\0') std::strcpy(buf, "localhost");
    s.hostname = buf;
  }
}

void read_tls(loader& l, table_reader& root) {
  tls_section& s = l.cfg().tls;
  const toml::table* t = section(root, "tls");
  if (!t) return;
  table_reader r(l, *t, "tls");
  r.read("cert_file", s.cert_file);
  r.read("key_file", s.key_file);
  r.read("ca_file", s.ca_file);
  r.read_enum("min_version", s.min_version, version_names);
  r.read("min_cipher_bits", s.min_cipher_bits, 0, 256);
  r.reject_unknown();
}

void read_listen(loader& l, table_reader& root) {
  config& cfg = l.cfg();
  entries(root, "listen", [&](table_reader& r, size_t) {
    listen_entry e;
    e.line = int(r.line());
    if (!r.has("address")) {
      l.fail(r.line(), r.path("address"), "missing (every [[listen]] needs an address)");
      r.take("address");
    } else if (r.read("address", e.address)) {
      if (auto err = check_endpoint(e.address, &e.addr, &e.addr_len)) {
        r.fail("address", *err);
      } else {
        for (size_t j = 0; j < cfg.listen.size(); ++j)
          if (cfg.listen[j].addr_len && same_endpoint(cfg.listen[j].addr, e.addr))
            r.fail("address", "same address as listen[" + std::to_string(j) + "] (line " +
                                  std::to_string(cfg.listen[j].line) + ")");
      }
    }
    r.read_enum("mode", e.mode,
                {{"relay", listen_mode::relay}, {"submission", listen_mode::submission}});
    r.read_enum("tls", e.tls,
                {{"none", listen_tls::none},
                 {"starttls", listen_tls::starttls},
                 {"implicit", listen_tls::implicit}});
    if (r.read("require_tls", e.require_tls) && e.require_tls && e.tls == listen_tls::none)
      r.fail("require_tls", "needs tls = \"starttls\" or \"implicit\" (with tls = \"none\" no "
                            "client could ever send)");
    if (r.has("allow_relay_from")) {
      std::vector<cidr> nets;
      bool ok = r.read_array("allow_relay_from", [&](const std::string& p, const toml::node& n) {
        std::string s;
        if (!r.string_of(n, p, s)) return false;
        auto c = cidr::parse(s);
        if (!c) {
          l.fail(line_of(n), p, "not a network: " + quoted(s) + " (e.g. \"10.0.0.0/8\", \"::1\")");
          return false;
        }
        nets.push_back(*c);
        return true;
      });
      if (ok) e.allow_relay_from = std::move(nets);
      if (e.mode == listen_mode::submission)
        r.fail("allow_relay_from", "only for mode = \"relay\" (submission relays after AUTH)");
    }
    cfg.listen.push_back(std::move(e));
  });
}

void read_limits(loader& l, table_reader& root) {
  limits_section& s = l.cfg().limits;
  const toml::table* t = section(root, "limits");
  if (!t) return;
  table_reader r(l, *t, "limits");
  if (const toml::node* n = r.take("max_message_size")) {
    std::optional<uint64_t> v;
    if (auto* i = n->as_integer()) {
      if (i->get() < 0)
        l.fail(line_of(*n), "limits.max_message_size",
               "must be between 1 byte and 2G, got " + std::to_string(i->get()));
      else
        v = uint64_t(i->get());
    } else if (auto* str = n->as_string()) {
      v = parse_size(str->get());
      if (!v)
        l.fail(line_of(*n), "limits.max_message_size",
               "bad size " + quoted(str->get()) + " (bytes, or a number with K, M or G)");
    } else {
      r.mistyped(*n, "limits.max_message_size", "an integer or a size string such as \"50M\"");
    }
    constexpr uint64_t cap = uint64_t(2) << 30;
    if (v && (*v == 0 || *v > cap))
      l.fail(line_of(*n), "limits.max_message_size",
             "must be between 1 byte and 2G, got " + std::to_string(*v));
    else if (v)
      s.max_message_size = *v;
  }
  r.read("max_recipients", s.max_recipients, 1, u32_max);
  r.read("max_errors", s.max_errors, 1, u32_max);
  r.read("max_junk_commands", s.max_junk_commands, 1, u32_max);
  r.read("max_conns_per_ip", s.max_conns_per_ip, 0, u32_max);
  r.read("max_connections", s.max_connections, 1, u32_max);
  r.read_duration("idle_timeout", s.idle_timeout, duration(1));
  r.read_duration("command_timeout", s.command_timeout, duration(1));
  r.read_duration("data_timeout", s.data_timeout, duration(1));
  // The group-commit window delays every 250: beyond a second it is a typo, not a tuning.
  r.read_duration("commit_interval", s.commit_interval, duration(0), std::chrono::seconds(1));
  r.reject_unknown();
}

void read_auth(loader& l, table_reader& root) {
  const toml::table* t = section(root, "auth");
  if (!t) return;
  table_reader r(l, *t, "auth");
  r.read("users_file", l.cfg().auth.users_file);
  r.read("max_failures", l.cfg().auth.max_failures, 1, 1000);
  r.read_duration("failure_delay", l.cfg().auth.failure_delay, duration(0), std::chrono::seconds(30));
  r.read("authenticated_header", l.cfg().auth.authenticated_header);
  r.reject_unknown();
}

bool is_loopback(const sockaddr_storage& ss) {
  if (ss.ss_family == AF_INET)
    return (ntohl(reinterpret_cast<const sockaddr_in&>(ss).sin_addr.s_addr) >> 24) == 127;
  if (ss.ss_family == AF_INET6) {
    const in6_addr& a = reinterpret_cast<const sockaddr_in6&>(ss).sin6_addr;
    if (IN6_IS_ADDR_LOOPBACK(&a)) return true;
    return IN6_IS_ADDR_V4MAPPED(&a) && a.s6_addr[12] == 127;
  }
  return false;
}

void read_http(loader& l, table_reader& root) {
  http_section& s = l.cfg().http;
  const toml::table* t = section(root, "http");
  if (!t) return;
  table_reader r(l, *t, "http");
  sockaddr_storage ss{};
  bool listen_ok = false;
  if (r.read("listen", s.listen) && !s.listen.empty()) {
    if (auto err = check_endpoint(s.listen, &ss, nullptr)) r.fail("listen", *err + " (or \"\" for off)");
    else listen_ok = true;
  }
  // Bearer tokens and message content in clear text may cross only the loopback interface
  // (DESIGN.md §7: "plain HTTP only for loopback").
  if (r.read("tls", s.tls) && !s.tls && listen_ok && !is_loopback(ss))
    r.fail("tls", "false is allowed only when http.listen is a loopback address (127.0.0.0/8, ::1), "
                  "got " + quoted(s.listen));
  if (r.read("tokens_file", s.tokens_file) && s.tokens_file.empty())
    r.fail("tokens_file", "must not be empty");
  r.reject_unknown();
}

void read_dns(loader& l, table_reader& root) {
  const toml::table* t = section(root, "dns");
  if (!t) return;
  table_reader r(l, *t, "dns");
  std::vector<std::string> out;
  if (r.read_array("resolvers", [&](const std::string& p, const toml::node& n) {
        std::string s;
        if (!r.string_of(n, p, s)) return false;
        if (auto err = check_endpoint(s, nullptr, nullptr)) {
          l.fail(line_of(n), p, *err);
          return false;
        }
        out.push_back(std::move(s));
        return true;
      }))
    l.cfg().dns.resolvers = std::move(out);
  r.reject_unknown();
}

// A retry schedule: a non-empty array of durations > 0 (`empty_hint` says what to write
// instead of an empty one).
void read_retry(table_reader& r, std::vector<duration>& out, const char* empty_hint) {
  std::vector<duration> retry;
  if (!r.read_array("retry", [&](const std::string& p, const toml::node& n) {
        duration d{};
        if (!r.duration_of(n, p, d, duration(1), no_max)) return false;
        retry.push_back(d);
        return true;
      }))
    return;
  if (retry.empty()) r.fail("retry", std::string("must not be empty (") + empty_hint + ")");
  else out = std::move(retry);
}

void read_outbound(loader& l, table_reader& root) {
  outbound_section& s = l.cfg().outbound;
  const toml::table* t = section(root, "outbound");
  if (!t) return;
  table_reader r(l, *t, "outbound");
  r.read("smtp_port", s.smtp_port, 1, 65535);
  r.read_enum("default_policy", s.default_policy, policy_names);
  r.read_duration("connect_timeout", s.connect_timeout, duration(1));
  r.read("max_conns_per_domain", s.max_conns_per_domain, 1, u32_max);
  r.read("messages_per_conn", s.messages_per_conn, 1, u32_max);
  read_retry(r, s.retry, "at least one interval, e.g. [\"5m\"]");
  r.read_duration("max_queue_age", s.max_queue_age, duration(1));
  r.read("backoff_defaults", s.backoff_defaults);
  r.reject_unknown();
}

void read_routes(loader& l, table_reader& root) {
  config& cfg = l.cfg();
  entries(root, "route", [&](table_reader& r, size_t) {
    route_entry e;
    e.line = int(r.line());
    bool domain_ok = false;
    if (!r.has("domain")) {
      l.fail(r.line(), r.path("domain"), "missing (every [[route]] needs a domain)");
      r.take("domain");
    } else if (r.read("domain", e.domain)) {
      if (auto err = check_domain(e.domain, true)) r.fail("domain", *err);
      else domain_ok = true;
    }
    if (!r.has("next_hop")) {
      l.fail(r.line(), r.path("next_hop"), "missing (every [[route]] needs a next_hop)");
      r.take("next_hop");
    } else if (r.read("next_hop", e.next_hop)) {
      if (auto err = check_next_hop(e.next_hop)) r.fail("next_hop", *err);
    }
    if (domain_ok)
      for (size_t j = 0; j < cfg.routes.size(); ++j)
        if (cfg.routes[j].domain == e.domain)
          r.fail("domain", "duplicate of route[" + std::to_string(j) + "] (line " +
                               std::to_string(cfg.routes[j].line) + ")");
    cfg.routes.push_back(std::move(e));
  });
}

void read_mta_sts(loader& l, table_reader& root) {
  const toml::table* t = section(root, "mta_sts");
  if (!t) return;
  table_reader r(l, *t, "mta_sts");
  r.read("enabled", l.cfg().mta_sts.enabled);
  r.read("https_port", l.cfg().mta_sts.https_port, 1, 65535);
  r.reject_unknown();
}

void read_suppression(loader& l, table_reader& root) {
  const toml::table* t = section(root, "suppression");
  if (!t) return;
  table_reader r(l, *t, "suppression");
  r.read("enabled", l.cfg().suppression.enabled);
  r.read_enum("action", l.cfg().suppression.action,
              {{"refuse", suppression_action::refuse}, {"drop", suppression_action::drop}});
  r.reject_unknown();
}

void read_dane(loader& l, table_reader& root) {
  const toml::table* t = section(root, "dane");
  if (!t) return;
  table_reader r(l, *t, "dane");
  r.read("enabled", l.cfg().dane.enabled);
  r.reject_unknown();
}

// An address "local@domain" with no spaces, brackets or a second '@' (what a TLS-RPT
// contact or report sender must look like); nullopt when fine.
std::optional<std::string> check_mailbox(std::string_view a) {
  size_t at = a.find('@');
  if (at == std::string_view::npos || at == 0 || at + 1 >= a.size() || a.find('@', at + 1) != std::string_view::npos)
    return "expected an address local@domain, got " + quoted(a);
  for (char c : a)
    if (c <= ' ' || c == '<' || c == '>' || c == '"' || c == ',' || c == ';' || uint8_t(c) >= 0x7f)
      return "expected an address local@domain, got " + quoted(a);
  return std::nullopt;
}

void read_tlsrpt(loader& l, table_reader& root) {
  tlsrpt_section& s = l.cfg().tlsrpt;
  const toml::table* t = section(root, "tlsrpt");
  if (!t) return;
  table_reader r(l, *t, "tlsrpt");
  r.read("enabled", s.enabled);
  if (r.read("organization", s.organization)) {
    if (std::any_of(s.organization.begin(), s.organization.end(), [](char c) { return c == '\r' || c == '\n'; }))
      r.fail("organization", "must be one line");
  }
  if (r.read("contact", s.contact) && !s.contact.empty()) {
    std::string_view c = s.contact;
    bool url = c.starts_with("https://") || c.starts_with("http://") || c.starts_with("mailto:");
    if (url ? c.find_first_of(" \t\r\n") != std::string_view::npos : bool(check_mailbox(c)))
      r.fail("contact", "expected an address (local@domain) or a URL (https://..., mailto:...), got " + quoted(c));
  }
  if (r.read("from", s.from) && !s.from.empty())
    if (auto err = check_mailbox(s.from)) r.fail("from", *err + " (or \"\" for noreply-tlsrpt@<server.hostname>)");
  // Short intervals are for tests; a real one is a day (RFC 8460 §4.1).
  r.read_duration("interval", s.interval, std::chrono::seconds(1));
  // A report must say who sent it and whom to ask (RFC 8460 §4.4 organization-name,
  // contact-info): no default would be true.
  auto required = [&](const char* key, const std::string& v) {
    if (!s.enabled || !v.empty()) return;
    if (r.has(key)) r.fail(key, "must not be empty when tlsrpt.enabled = true");
    else l.fail(r.line(), r.path(key), "missing (required when tlsrpt.enabled = true)");
  };
  required("organization", s.organization);
  required("contact", s.contact);
  r.reject_unknown();
}

void read_policies(loader& l, table_reader& root) {
  config& cfg = l.cfg();
  entries(root, "policy", [&](table_reader& r, size_t) {
    policy_entry e;
    e.line = int(r.line());
    bool domain_ok = false;
    if (!r.has("domain")) {
      l.fail(r.line(), r.path("domain"), "missing (every [[policy]] needs a domain)");
      r.take("domain");
    } else if (r.read("domain", e.domain)) {
      if (auto err = check_domain(e.domain, false)) r.fail("domain", *err);
      else domain_ok = true;
    }
    // With a bad tls value the per-kind checks below would only add noise.
    bool tls_ok = !r.has("tls") || r.read_enum("tls", e.tls, policy_names);
    r.read_enum("verify", e.verify,
                {{"none", verify_mode::none}, {"ca", verify_mode::ca}, {"dane", verify_mode::dane}});
    if (r.has("fallback")) {
      std::vector<std::string> fb;
      bool ok = r.read_array("fallback", [&](const std::string& p, const toml::node& n) {
        std::string s;
        if (!r.string_of(n, p, s)) return false;
        if (s != "pgp" && s != "smime" && s != "escrow" && s != "defer") {
          l.fail(line_of(n), p, "must be one of \"pgp\", \"smime\", \"escrow\", \"defer\"; got " +
                                    quoted(s));
          return false;
        }
        if (std::find(fb.begin(), fb.end(), s) != fb.end()) {
          l.fail(line_of(n), p, "duplicate " + quoted(s));
          return false;
        }
        if (!fb.empty() && (fb.back() == "escrow" || fb.back() == "defer")) {
          l.fail(line_of(n), p, "never reached: " + quoted(fb.back()) + " before it always ends "
                                "the fallback");
          return false;
        }
        fb.push_back(std::move(s));
        return true;
      });
      if (ok && fb.empty()) r.fail("fallback", "must not be empty");
      else if (ok) e.fallback = std::move(fb);
    }
    r.read_duration("fallback_after", e.fallback_after, duration(0));
    r.read("notify_sender", e.notify_sender);
    r.read_enum("min_version", e.min_version, version_names);
    r.read("min_cipher_bits", e.min_cipher_bits, 0, 256);
    // Checked against the [[pool]] names in cross_check (pools may be written below).
    if (r.read("pool", e.pool) && e.pool.empty())
      r.fail("pool", "must not be empty (leave it out for no pool)");

    // DESIGN.md §1: these keys belong to the policies that can refuse plaintext; written on
    // any other they would silently do nothing, so they are errors (presence, not value).
    const char* tls_name = to_string(e.tls);
    auto only_for = [&](const char* key, const char* which) {
      r.fail(key, std::string("only for ") + which + " (this policy has tls = " +
                      quoted(tls_name) + ")");
    };
    if (tls_ok && e.tls == tls_policy::opportunistic) {
      for (const char* key : {"verify", "fallback", "fallback_after"})
        if (r.has(key)) only_for(key, "tls = \"forced\" or \"exclusive\"");
    } else if (tls_ok && e.tls == tls_policy::exclusive && r.has("fallback")) {
      only_for("fallback", "tls = \"forced\"; an exclusive policy drops the message");
    }
    if (tls_ok && e.tls != tls_policy::exclusive && r.has("notify_sender"))
      only_for("notify_sender", "tls = \"exclusive\"");

    if (domain_ok)
      for (size_t j = 0; j < cfg.policies.size(); ++j)
        if (cfg.policies[j].domain == e.domain)
          r.fail("domain", "duplicate of policy[" + std::to_string(j) + "] (line " +
                               std::to_string(cfg.policies[j].line) + ")");
    cfg.policies.push_back(std::move(e));
  });
}

// Parse an IP literal without a port ("192.0.2.10", "2001:db8::1") into `out` (port 0);
// false when it is not one.
bool parse_ip(const std::string& text, pool_address& out) {
  sockaddr_storage ss{};
  auto* v4 = reinterpret_cast<sockaddr_in*>(&ss);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&ss);
  char buf[INET6_ADDRSTRLEN] = {};
  if (inet_pton(AF_INET, text.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    out.addr_len = sizeof(sockaddr_in);
    inet_ntop(AF_INET, &v4->sin_addr, buf, sizeof buf);
  } else if (inet_pton(AF_INET6, text.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    out.addr_len = sizeof(sockaddr_in6);
    inet_ntop(AF_INET6, &v6->sin6_addr, buf, sizeof buf);
  } else {
    return false;
  }
  out.addr = ss;
  out.address = buf;
  return true;
}

// A host name for EHLO: what server.hostname accepts.
bool is_host_name(const std::string& name) {
  std::string h = name;
  return !h.empty() && h[0] != '.' && !check_domain(h, false);
}

// One element of [[pool]] addresses: "ip" or {address = "ip", weight = N, ehlo = "name"}
// (an inline table's keys are read here, so the schema scan of read_pools() sees only the
// [[pool]] keys themselves).
bool read_pool_address(table_reader& r, const std::string& p, const toml::node& n, bool weighted,
                       pool_address& a) {
  loader& l = r.owner();
  auto bad_ip = [&](uint32_t line, const std::string& at, const std::string& text) {
    l.fail(line, at, "not an IP address: " + quoted(text) + " (an IPv4 or IPv6 literal, no port)");
    return false;
  };
  if (auto* s = n.as_string()) {
    if (!parse_ip(s->get(), a)) return bad_ip(line_of(n), p, s->get());
    return true;
  }
  auto* t = n.as_table();
  if (!t) {
    r.mistyped(n, p, "an address string or a table {address = \"ip\", weight = N, ehlo = \"name\"}");
    return false;
  }
  table_reader e(l, *t, p);
  bool ok = true;
  std::string text;
  if (!e.has("address")) {
    l.fail(line_of(n), e.path("address"), "missing (each table in addresses needs an address)");
    ok = false;
  } else if (e.read("address", text)) {
    if (!parse_ip(text, a)) ok = bad_ip(e.line_of_key("address"), e.path("address"), text);
  } else {
    ok = false;
  }
  if (e.has("weight")) {
    if (!weighted) {
      e.take("weight");
      e.fail("weight", "only for selection = \"weighted\" (round-robin ignores weights)");
      ok = false;
    } else {
      ok = e.read("weight", a.weight, 1, 1000) && ok;
    }
  }
  if (e.read("ehlo", a.ehlo) && !is_host_name(a.ehlo)) {
    e.fail("ehlo", "not a host name: " + quoted(a.ehlo));
    ok = false;
  }
  e.reject_unknown();
  return ok;
}

// A [[pool]] or [[shaping]] name: 1 to 64 letters, digits, '-', '_' or '.' (a metrics label).
bool is_label(const std::string& name) {
  if (name.empty() || name.size() > 64) return false;
  for (char c : name)
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
          c == '.'))
      return false;
  return true;
}

void read_pools(loader& l, table_reader& root) {
  config& cfg = l.cfg();
  entries(root, "pool", [&](table_reader& r, size_t) {
    pool_entry e;
    e.line = int(r.line());
    if (!r.has("name")) {
      l.fail(r.line(), r.path("name"), "missing (every [[pool]] needs a name)");
      r.take("name");
    } else if (r.read("name", e.name)) {
      if (!is_label(e.name)) {
        r.fail("name", "expected 1 to 64 letters, digits, '-', '_' or '.', got " + quoted(e.name));
      } else {
        for (size_t j = 0; j < cfg.pools.size(); ++j)
          if (cfg.pools[j].name == e.name)
            r.fail("name", "duplicate of pool[" + std::to_string(j) + "] (line " +
                               std::to_string(cfg.pools[j].line) + ")");
      }
    }
    r.read_enum("selection", e.selection,
                {{"round-robin", pool_selection::round_robin}, {"weighted", pool_selection::weighted}});
    if (!r.has("addresses")) {
      l.fail(r.line(), r.path("addresses"), "missing (every [[pool]] needs addresses)");
      r.take("addresses");
    } else {
      std::vector<pool_address> addrs;
      bool ok = r.read_array("addresses", [&](const std::string& p, const toml::node& n) {
        pool_address a;
        if (!read_pool_address(r, p, n, e.selection == pool_selection::weighted, a)) return false;
        for (const auto& b : addrs)
          if (b.address == a.address) {
            l.fail(line_of(n), p, "duplicate address " + quoted(a.address));
            return false;
          }
        addrs.push_back(std::move(a));
        return true;
      });
      if (ok && addrs.empty()) r.fail("addresses", "must not be empty");
      else if (ok) e.addresses = std::move(addrs);
    }
    if (r.read("ehlo", e.ehlo) && !is_host_name(e.ehlo)) r.fail("ehlo", "not a host name: " + quoted(e.ehlo));
    r.read_array("senders", [&](const std::string& p, const toml::node& n) {
      std::string d;
      if (!r.string_of(n, p, d)) return false;
      if (auto err = check_domain(d, true)) {
        l.fail(line_of(n), p, *err);
        return false;
      }
      // A sender domain picks one pool: written twice it would be ambiguous.
      for (size_t j = 0; j < cfg.pools.size(); ++j)
        for (const auto& o : cfg.pools[j].senders)
          if (o == d) {
            l.fail(line_of(n), p, quoted(d) + " is also in pool[" + std::to_string(j) + "].senders (line " +
                                      std::to_string(cfg.pools[j].line) + ")");
            return false;
          }
      if (std::find(e.senders.begin(), e.senders.end(), d) != e.senders.end()) {
        l.fail(line_of(n), p, "duplicate " + quoted(d));
        return false;
      }
      e.senders.push_back(std::move(d));
      return true;
    });
    cfg.pools.push_back(std::move(e));
  });
}

bool read_rate(table_reader& r, std::string_view key, rate_limit& out) {
  std::string text;
  if (!r.read(key, text)) return false;
  auto v = parse_rate(text);
  if (!v) {
    r.fail(key, "bad rate " + quoted(text) + " (a number > 0, \"/\" and s, min or h, e.g. \"5000/h\")");
    return false;
  }
  out = *v;
  return true;
}

void read_shaping(loader& l, table_reader& root) {
  config& cfg = l.cfg();
  entries(root, "shaping", [&](table_reader& r, size_t) {
    shaping_entry e;
    e.line = int(r.line());
    bool has_domain = r.has("domain"), has_mx = r.has("mx");
    if (has_domain == has_mx) {
      l.fail(r.line(), r.path(has_domain ? "mx" : "domain"),
             has_domain ? "domain and mx together (an entry matches by one of them)"
                        : "missing (every [[shaping]] needs a domain or an mx host pattern)");
      r.take("domain");
      r.take("mx");
    } else if (has_domain && r.read("domain", e.domain)) {
      if (auto err = check_domain(e.domain, true)) r.fail("domain", *err);
    } else if (has_mx && r.read("mx", e.mx)) {
      // "*.google.com" = any host below google.com (kept as ".google.com"); else one host.
      std::string h = e.mx.starts_with("*.") ? e.mx.substr(1) : e.mx;
      if (auto err = check_domain(h, false)) r.fail("mx", *err + " (an MX host name, or \"*.\" and a domain)");
      else e.mx = h;
    }
    if (r.read("name", e.name)) {
      // '*' too: the default names ("*", "*.google.com") may be written out as well.
      std::string plain = e.name;
      std::replace(plain.begin(), plain.end(), '*', '_');
      if (!is_label(plain))
        r.fail("name", "expected 1 to 64 letters, digits, '-', '_', '.' or '*', got " + quoted(e.name));
    } else if (!r.has("name")) {
      e.name = !e.domain.empty() ? e.domain : (e.mx.starts_with(".") ? "*" + e.mx : e.mx);
    }
    if (!e.name.empty())
      for (size_t j = 0; j < cfg.shaping.size(); ++j) {
        const shaping_entry& o = cfg.shaping[j];
        bool same_match = (!e.domain.empty() && o.domain == e.domain) || (!e.mx.empty() && o.mx == e.mx);
        if (o.name == e.name || same_match)
          r.fail(r.has("name") && o.name == e.name ? "name" : (e.domain.empty() ? "mx" : "domain"),
                 "duplicate of shaping[" + std::to_string(j) + "] (line " + std::to_string(o.line) + ")");
      }
    r.read("max_connections", e.max_connections, 1, u32_max);
    r.read("max_messages_per_conn", e.max_messages_per_conn, 1, u32_max);
    read_rate(r, "max_message_rate", e.max_message_rate);
    read_rate(r, "max_connection_rate", e.max_connection_rate);
    read_retry(r, e.retry, "leave it out for outbound.retry");
    // Checked against the [[pool]] names in cross_check.
    if (r.read("pool", e.pool) && e.pool.empty()) r.fail("pool", "must not be empty (leave it out for no pool)");
    cfg.shaping.push_back(std::move(e));
  });
}

void read_backoff(loader& l, table_reader& root) {
  config& cfg = l.cfg();
  entries(root, "backoff", [&](table_reader& r, size_t i) {
    backoff_rule e;
    e.line = int(r.line());
    e.label = "backoff[" + std::to_string(i) + "]";
    if (!r.has("match")) {
      l.fail(r.line(), r.path("match"), "missing (every [[backoff]] needs a match pattern)");
      r.take("match");
    } else if (r.read("match", e.match)) {
      if (e.match.empty()) {
        r.fail("match", "must not be empty");
      } else {
        try {
          std::regex re(e.match, std::regex::ECMAScript | std::regex::icase);
        } catch (const std::regex_error& x) {
          r.fail("match", "bad regular expression " + quoted(e.match) + ": " + x.what());
        }
      }
    }
    if (const toml::node* n = r.take("factor")) {
      std::optional<double> f;
      if (auto* d = n->as_floating_point()) f = d->get();
      else if (auto* k = n->as_integer()) f = double(k->get());
      if (!f) r.mistyped(*n, r.path("factor"), "a number");
      else if (!(*f > 0 && *f < 1)) r.fail("factor", "must be between 0 and 1 (exclusive), e.g. 0.5 to halve the rate");
      else e.factor = *f;
    }
    r.read_duration("duration", e.lasts, std::chrono::seconds(1));
    cfg.backoff.push_back(std::move(e));
  });
}

void read_dkim(loader& l, table_reader& root) {
  config& cfg = l.cfg();
  entries(root, "dkim", [&](table_reader& r, size_t) {
    dkim_entry e;
    e.line = int(r.line());
    auto required = [&](const char* key, std::string& out) {
      if (!r.has(key)) {
        l.fail(r.line(), r.path(key), "missing (every [[dkim]] needs domain, selector and key_file)");
        r.take(key);
        return false;
      }
      if (!r.read(key, out)) return false;
      if (out.empty()) {
        r.fail(key, "must not be empty");
        return false;
      }
      return true;
    };
    if (required("domain", e.domain)) {
      if (e.domain == "*" || e.domain[0] == '.') r.fail("domain", "an exact From: domain, got " + quoted(e.domain));
      else if (auto err = check_domain(e.domain, false)) r.fail("domain", *err);
      else
        for (size_t j = 0; j < cfg.dkim.size(); ++j)
          if (cfg.dkim[j].domain == e.domain)
            r.fail("domain", "duplicate of dkim[" + std::to_string(j) + "] (line " +
                                 std::to_string(cfg.dkim[j].line) + ")");
    }
    if (required("selector", e.selector)) {
      std::string sel = e.selector;  // DNS labels: "<selector>._domainkey.<domain>"
      if (sel[0] == '.' || check_domain(sel, false)) r.fail("selector", "not a DNS name: " + quoted(e.selector));
      else e.selector = sel;
    }
    required("key_file", e.key_file);
    r.read_enum("algorithm", e.algorithm,
                {{"rsa-sha256", dkim_algorithm::rsa_sha256},
                 {"ed25519-sha256", dkim_algorithm::ed25519_sha256}});
    if (r.has("headers")) {
      std::vector<std::string> hs;
      bool ok = r.read_array("headers", [&](const std::string& p, const toml::node& n) {
        std::string h;
        if (!r.string_of(n, p, h)) return false;
        bool good = !h.empty();
        for (char& c : h) {
          if (c >= 'A' && c <= 'Z') c = char(c - 'A' + 'a');
          if (c <= ' ' || c == ':' || c == ';' || uint8_t(c) >= 0x7f) good = false;
        }
        if (!good) {
          l.fail(line_of(n), p, "not a header field name: " + quoted(h));
          return false;
        }
        hs.push_back(std::move(h));
        return true;
      });
      // RFC 6376 §5.4: From MUST be signed.
      if (ok && std::find(hs.begin(), hs.end(), "from") == hs.end())
        r.fail("headers", "must include \"from\" (RFC 6376 §5.4)");
      else if (ok)
        e.headers = std::move(hs);
    }
    cfg.dkim.push_back(std::move(e));
  });
}

void read_optional_endpoint(table_reader& r, std::string_view key, std::string& out) {
  if (r.read(key, out) && !out.empty())
    if (auto err = check_endpoint(out, nullptr, nullptr))
      r.fail(key, *err + " (or \"\" for off)");
}

void read_fallback(loader& l, table_reader& root) {
  fallback_section& s = l.cfg().fallback;
  const toml::table* t = section(root, "fallback");
  if (!t) return;
  table_reader r(l, *t, "fallback");
  r.read("spawn", s.spawn);
  if (r.read("socket", s.socket)) {
    if (s.socket.empty()) r.fail("socket", "must not be empty");
    else if (s.socket.size() >= sizeof(sockaddr_un{}.sun_path))
      r.fail("socket", "longer than " + std::to_string(sizeof(sockaddr_un{}.sun_path) - 1) +
                           " bytes (the limit of a unix socket path)");
  }
  if (r.read("store", s.store) && s.store != "sqlite" &&
      !s.store.starts_with("postgresql://") && !s.store.starts_with("postgres://"))
    r.fail("store", "expected \"sqlite\" or a postgresql:// connection URI, got " + quoted(s.store));
  read_optional_endpoint(r, "portal_listen", s.portal_listen);
  if (r.read("portal_url", s.portal_url)) {
    std::string_view u = s.portal_url;
    if (!(u.starts_with("https://") || u.starts_with("http://")) ||
        u.find_first_not_of('/', u.find("//") + 2) == std::string_view::npos)
      r.fail("portal_url", "expected an http(s):// URL, got " + quoted(u));
    while (s.portal_url.size() > 1 && s.portal_url.back() == '/') s.portal_url.pop_back();
  }
  r.read_duration("escrow_expiry", s.escrow_expiry, duration(1));
  r.read("pgp_home", s.pgp_home);
  r.read("smime_dir", s.smime_dir);
  r.reject_unknown();
}

void read_spool(loader& l, table_reader& root) {
  const toml::table* t = section(root, "spool");
  if (!t) return;
  table_reader r(l, *t, "spool");
  spool_section& s = l.cfg().spool;
  r.read("encrypt", s.encrypt);
  if (r.read("key_file", s.key_file) && s.key_file.empty())
    r.fail("key_file", "must not be empty (leave it out for no key)");
  r.read_array("previous_keys", [&](const std::string& p, const toml::node& n) {
    std::string v;
    if (!r.string_of(n, p, v)) return false;
    if (v.empty()) {
      l.fail(line_of(n), p, "must not be empty");
      return false;
    }
    s.previous_keys.push_back(std::move(v));
    return true;
  });
  if (s.encrypt && s.key_file.empty())
    r.fail("encrypt", "true needs spool.key_file (a file of 32 random bytes, mode 0600, outside "
                      "server.state_dir)");
  r.reject_unknown();
}

void read_audit(loader& l, table_reader& root) {
  const toml::table* t = section(root, "audit");
  if (!t) return;
  table_reader r(l, *t, "audit");
  if (r.read("file", l.cfg().audit.file) && l.cfg().audit.file.empty())
    r.fail("file", "must not be empty (every delivery attempt is audited)");
  r.reject_unknown();
}

void read_admin(loader& l, table_reader& root) {
  const toml::table* t = section(root, "admin");
  if (!t) return;
  table_reader r(l, *t, "admin");
  read_optional_endpoint(r, "listen", l.cfg().admin.listen);
  r.reject_unknown();
}

// Checks that span sections: two sockets on one address, submission without users.
void cross_check(loader& l, const toml::table& doc) {
  config& cfg = l.cfg();
  if (cfg.listen.empty()) {
    const toml::node* n = doc.get("listen");
    l.fail(n ? line_of(*n) : std::max<uint32_t>(1, line_of(doc)), "listen",
           "at least one [[listen]] table is required");
  }
  auto clash = [&](const char* key, const std::string& value) {
    sockaddr_storage ss{};
    if (value.empty() || check_endpoint(value, &ss, nullptr)) return;
    for (size_t i = 0; i < cfg.listen.size(); ++i)
      if (cfg.listen[i].addr_len && same_endpoint(cfg.listen[i].addr, ss)) {
        int ln = cfg.line_of(key);
        l.fail(uint32_t(ln ? ln : 1), key,
               "same address as listen[" + std::to_string(i) + "] (line " +
                   std::to_string(cfg.listen[i].line) + ")");
      }
  };
  clash("admin.listen", cfg.admin.listen);
  clash("http.listen", cfg.http.listen);
  clash("fallback.portal_listen", cfg.fallback.portal_listen);
  // verify = "dane" without DANE would never find a usable TLSA record: every message
  // would go to its fallback. Say so at start instead.
  if (!cfg.dane.enabled)
    for (size_t i = 0; i < cfg.policies.size(); ++i)
      if (cfg.policies[i].verify == verify_mode::dane) {
        std::string key = "policy[" + std::to_string(i) + "].verify";
        int ln = cfg.line_of(key);
        l.fail(uint32_t(ln ? ln : cfg.policies[i].line), key,
               "\"dane\" needs [dane] enabled = true (and a validating resolver in dns.resolvers)");
      }
  // A [[policy]] pool must name a [[pool]]: mail for that domain would otherwise leave
  // from an address nobody chose.
  for (size_t i = 0; i < cfg.policies.size(); ++i) {
    const std::string& name = cfg.policies[i].pool;
    if (name.empty() || find_pool(cfg, name)) continue;
    std::string key = "policy[" + std::to_string(i) + "].pool";
    int ln = cfg.line_of(key);
    l.fail(uint32_t(ln ? ln : cfg.policies[i].line), key, "no [[pool]] named " + quoted(name));
  }
  for (size_t i = 0; i < cfg.shaping.size(); ++i) {
    const std::string& name = cfg.shaping[i].pool;
    if (name.empty() || find_pool(cfg, name)) continue;
    std::string key = "shaping[" + std::to_string(i) + "].pool";
    int ln = cfg.line_of(key);
    l.fail(uint32_t(ln ? ln : cfg.shaping[i].line), key, "no [[pool]] named " + quoted(name));
  }
  if (cfg.auth.users_file.empty())
    for (size_t i = 0; i < cfg.listen.size(); ++i)
      if (cfg.listen[i].mode == listen_mode::submission) {
        int ln = cfg.line_of("auth.users_file");
        l.fail(uint32_t(ln ? ln : 1), "auth.users_file",
               "must be set: listen[" + std::to_string(i) + "] is a submission listener");
        break;
      }
}

// Refuse the values of not_built_values written anywhere in `node` (the rest of `key`'s
// path below it); `path` is the dotted path of `node` as the operator reads it.
void refuse_not_built(loader& l, const toml::node& node, std::string_view key,
                      const std::string& path, const not_built_value& nb) {
  size_t dot = key.find('.');
  std::string_view head = key.substr(0, dot);
  std::string_view rest = dot == std::string_view::npos ? std::string_view{} : key.substr(dot + 1);
  bool each = head.ends_with("[]");
  if (each) head.remove_suffix(2);
  auto* t = node.as_table();
  const toml::node* child = t ? t->get(head) : nullptr;
  if (!child) return;
  std::string p = path.empty() ? std::string(head) : path + "." + std::string(head);
  if (each) {
    if (auto* a = child->as_array())
      for (size_t i = 0; i < a->size(); ++i)
        refuse_not_built(l, *a->get(i), rest, p + "[" + std::to_string(i) + "]", nb);
    return;
  }
  if (!rest.empty()) {
    refuse_not_built(l, *child, rest, p, nb);
    return;
  }
  if (nb.value == "*") {
    l.fail(line_of(*child), p,
           "is not available in this version (" + std::string(nb.feature) + " is not built yet)");
    return;
  }
  auto refuse_if = [&](const toml::node& v, const std::string& at) {
    std::string text;
    if (auto* str = v.as_string()) text = str->get();
    else if (auto* b = v.as_boolean()) text = b->get() ? "true" : "false";
    else return;
    if (text != nb.value) return;
    l.fail(line_of(v), at,
           (v.is_string() ? quoted(text) : text) + " is not available in this version (" +
               std::string(nb.feature) + " is not built yet)");
  };
  if (auto* a = child->as_array()) {
    for (size_t i = 0; i < a->size(); ++i) refuse_if(*a->get(i), p + "[" + std::to_string(i) + "]");
  } else {
    refuse_if(*child, p);
  }
}

// The line of the first non-ASCII byte where TOML allows only ASCII (outside strings and
// comments, and where a line-ending backslash makes the parser skip whitespace), or 0.
// toml++ 3.3 classifies such a character with a table that reaches __builtin_unreachable
// for U+00A1..U+0499 and others (undefined behaviour; found by config_fuzz), so it must
// never see one; the text is invalid TOML anyway, except after a line-ending backslash.
uint32_t non_ascii_outside_strings(std::string_view t) {
  enum class in : uint8_t { code, comment, basic, ml_basic, literal, ml_literal } at = in::code;
  uint32_t line = 1;
  bool skipping_ws = false;   // after a line-ending backslash in a """ string
  for (size_t i = 0; i < t.size(); ++i) {
    char c = t[i];
    auto next_is = [&](std::string_view w) { return t.substr(i, w.size()) == w; };
    if (c == '\n') ++line;
    if (skipping_ws) {
      if (c == ' ' || c == '\t' || c == '\r' || c == '\n') continue;
      skipping_ws = false;
      if (static_cast<unsigned char>(c) >= 0x80) return line;
    }
    switch (at) {
      case in::code:
        if (static_cast<unsigned char>(c) >= 0x80) return line;
        if (c == '#') at = in::comment;
        else if (next_is("\"\"\"")) at = in::ml_basic, i += 2;
        else if (c == '"') at = in::basic;
        else if (next_is("'''")) at = in::ml_literal, i += 2;
        else if (c == '\'') at = in::literal;
        break;
      case in::comment:
        if (c == '\n') at = in::code;
        break;
      case in::basic:
        if (c == '\\' && i + 1 < t.size() && t[i + 1] != '\n') ++i;
        else if (c == '"' || c == '\n') at = in::code;
        break;
      case in::ml_basic:
        if (c == '\\') {
          size_t j = i + 1;
          while (j < t.size() && (t[j] == ' ' || t[j] == '\t' || t[j] == '\r')) ++j;
          if (j < t.size() && t[j] == '\n') skipping_ws = true;
          else ++i;
        } else if (next_is("\"\"\"")) {
          at = in::code, i += 2;
        }
        break;
      case in::literal:
        if (c == '\'' || c == '\n') at = in::code;
        break;
      case in::ml_literal:
        if (next_is("'''")) at = in::code, i += 2;
        break;
    }
  }
  return 0;
}

}  // namespace

result<config> parse(std::string_view text, const std::string& name, not_built_mode nb) {
  const std::string non_ascii = ": a non-ASCII character outside a string or comment (TOML allows only ASCII there)";
  if (uint32_t line = non_ascii_outside_strings(text)) return error{name + ":" + std::to_string(line) + non_ascii};
  auto parse_error = [&](const toml::parse_error& e, std::string_view what) {
    return error{name + ":" + std::to_string(std::max<uint32_t>(1, e.source().begin.line)) + ": " + std::string(what)};
  };
  if (std::any_of(text.begin(), text.end(), [](char c) { return static_cast<unsigned char>(c) >= 0x80; })) {
    // Invalid TOML can make toml++ tokenize differently from that scan (a '"' after a
    // number is no string), so parse first with every non-ASCII byte as '~', which TOML
    // allows only in strings and comments: toml++ sees the real text only when it parses.
    std::string ascii(text);
    for (char& c : ascii)
      if (static_cast<unsigned char>(c) >= 0x80) c = '~';
    toml::parse_result probe = toml::parse(ascii, std::string_view(name));
    if (!probe) return parse_error(probe.error(), std::string(probe.error().description()) + " (non-ASCII bytes shown as '~')");
  }
  toml::parse_result parsed = toml::parse(text, std::string_view(name));
  if (!parsed) return parse_error(parsed.error(), parsed.error().description());
  const toml::table& doc = parsed.table();
  config cfg;
  cfg.source_file = name;
  loader l(name, cfg);
  table_reader root(l, doc, "");
  read_server(l, root);
  read_tls(l, root);
  read_listen(l, root);
  read_limits(l, root);
  read_auth(l, root);
  read_http(l, root);
  read_dns(l, root);
  read_outbound(l, root);
  read_routes(l, root);
  read_mta_sts(l, root);
  read_dane(l, root);
  read_tlsrpt(l, root);
  read_suppression(l, root);
  read_policies(l, root);
  read_pools(l, root);
  read_shaping(l, root);
  read_backoff(l, root);
  read_dkim(l, root);
  read_fallback(l, root);
  read_spool(l, root);
  read_audit(l, root);
  read_admin(l, root);
  root.reject_unknown();
  if (nb == not_built_mode::refuse)
    for (const not_built_value& v : not_built_values) refuse_not_built(l, doc, v.key, "", v);
  cross_check(l, doc);
  if (l.failed()) return error{l.first()};
  return cfg;
}

result<config> load(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return error{path + ": cannot read: " + std::strerror(errno)};
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return error{path + ": cannot read: " + std::strerror(errno)};
  return parse(text.str(), path);
}

const route_entry* find_route(const config& cfg, std::string_view domain) {
  const route_entry* best = nullptr;
  size_t best_len = 0;
  for (const auto& r : cfg.routes) {
    if (r.domain == domain) return &r;
    if (r.domain == "*") {
      if (!best) best = &r;
    } else if (r.domain.size() > 1 && r.domain[0] == '.' && domain.size() > r.domain.size() &&
               domain.substr(domain.size() - r.domain.size()) == r.domain) {
      if (r.domain.size() > best_len) {
        best = &r;
        best_len = r.domain.size();
      }
    }
  }
  return best;
}

const pool_entry* find_pool(const config& cfg, std::string_view name) {
  for (const auto& p : cfg.pools)
    if (p.name == name) return &p;
  return nullptr;
}

namespace {
// Does `pattern` (exact, ".suffix", or "*" when allowed) cover `domain`, and how specifically
// (0: no; exact beats every suffix, a longer suffix beats a shorter one, "*" is last)?
size_t match_rank(std::string_view pattern, std::string_view domain) {
  if (pattern == domain) return std::string_view::npos;
  if (pattern == "*") return 1;
  if (pattern.size() > 1 && pattern[0] == '.' && domain.size() > pattern.size() &&
      domain.substr(domain.size() - pattern.size()) == pattern)
    return 1 + pattern.size();
  return 0;
}
}  // namespace

const pool_entry* pool_for(const config& cfg, std::string_view rcpt_domain, std::string_view sender_domain,
                          const shaping_entry* shaping) {
  // The recipient's [[policy]] entry first: the most specific one rules, as in the policy
  // table; when it names no pool, the sender's pool applies.
  const policy_entry* pol = nullptr;
  size_t best = 0;
  for (const auto& p : cfg.policies)
    if (size_t r = match_rank(p.domain, rcpt_domain); r > best) best = r, pol = &p;
  if (pol && !pol->pool.empty())
    if (const pool_entry* p = find_pool(cfg, pol->pool)) return p;
  if (shaping && !shaping->pool.empty())
    if (const pool_entry* p = find_pool(cfg, shaping->pool)) return p;
  const pool_entry* by_sender = nullptr;
  best = 0;
  for (const auto& p : cfg.pools)
    for (const auto& s : p.senders)
      if (size_t r = match_rank(s, sender_domain); r > best) best = r, by_sender = &p;
  return by_sender;
}

const shaping_entry* shaping_for_domain(const config& cfg, std::string_view domain, bool star) {
  const shaping_entry* best = nullptr;
  size_t rank = 0;
  for (const auto& e : cfg.shaping) {
    if (e.domain.empty() || (e.domain == "*" && !star)) continue;
    if (size_t r = match_rank(e.domain, domain); r > rank) rank = r, best = &e;
  }
  return best;
}

const shaping_entry* shaping_for_mx(const config& cfg, std::string_view host) {
  // A host name as DNS gives it: any case, maybe with the root's trailing dot.
  if (!host.empty() && host.back() == '.') host.remove_suffix(1);
  const shaping_entry* best = nullptr;
  size_t rank = 0;
  for (const auto& e : cfg.shaping) {
    if (e.mx.empty()) continue;
    size_t r = 0;
    if (iequals(host, e.mx)) r = std::string_view::npos;  // exact beats every suffix
    else if (e.mx[0] == '.' && host.size() > e.mx.size() && iequals(host.substr(host.size() - e.mx.size()), e.mx))
      r = 1 + e.mx.size();
    if (r > rank) rank = r, best = &e;
  }
  return best;
}

bool has_mx_shaping(const config& cfg) {
  return std::any_of(cfg.shaping.begin(), cfg.shaping.end(), [](const shaping_entry& e) { return !e.mx.empty(); });
}

std::optional<rate_limit> parse_rate(std::string_view text) {
  size_t slash = text.find('/');
  if (slash == std::string_view::npos || slash == 0) return std::nullopt;
  std::string num(text.substr(0, slash));
  std::string_view unit = text.substr(slash + 1);
  for (char c : num)
    if (!((c >= '0' && c <= '9') || c == '.')) return std::nullopt;
  char* end = nullptr;
  double v = std::strtod(num.c_str(), &end);
  if (!end || *end || !(v > 0) || v > 1e9) return std::nullopt;
  rate_limit r;
  r.count = v;
  if (unit == "s" || unit == "sec") r.per = std::chrono::seconds(1);
  else if (unit == "min" || unit == "m") r.per = std::chrono::minutes(1);
  else if (unit == "h" || unit == "hour") r.per = std::chrono::hours(1);
  else return std::nullopt;
  return r;
}

std::string format_rate(const rate_limit& r) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.10g", r.count);
  const char* unit = r.per == std::chrono::hours(1) ? "h" : r.per == std::chrono::minutes(1) ? "min" : "s";
  return std::string(buf) + "/" + unit;
}

const std::string& ehlo_name(const config& cfg, const pool_entry& p, const pool_address& a) {
  if (!a.ehlo.empty()) return a.ehlo;
  if (!p.ehlo.empty()) return p.ehlo;
  return cfg.server.hostname;
}

const dkim_entry* find_dkim(const config& cfg, std::string_view domain) {
  for (const auto& d : cfg.dkim)
    if (d.domain.size() == domain.size() &&
        std::equal(d.domain.begin(), d.domain.end(), domain.begin(),
                   [](char a, char b) { return a == (b >= 'A' && b <= 'Z' ? char(b - 'A' + 'a') : b); }))
      return &d;
  return nullptr;
}

}  // namespace sr::config
