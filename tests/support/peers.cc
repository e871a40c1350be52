// Test peers: process control for fake_mx.py and dns_zone.py, and a small JSON reader for
// their record lines (flat objects of strings, numbers, booleans, null and string arrays).
// Strings round-trip bytes: fake_mx writes undecodable bytes as \udc80..\udcff
// (Python's surrogateescape), which are turned back into the original bytes here.
#include "support/peers.hh"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>
#include <variant>

#include "support/base64.hh"
#include "support/cert_files.hh"
#include "support/json_check.hh"

namespace sr::integ {

namespace fs = std::filesystem;

namespace {


// ------------------------------------------------------------------ JSON (record lines)

struct jvalue {
  enum class kind : uint8_t { null, boolean, number, string, array, object };
  kind k = kind::null;
  bool b = false;
  double n = 0;
  std::string s;
  std::vector<jvalue> a;
  std::map<std::string, jvalue> o;
};

class jparser {
 public:
  explicit jparser(std::string_view text) : _t(text) {}

  // Parse one complete value; false on any syntax error.
  bool parse(jvalue& out) {
    if (!value(out)) return false;
    ws();
    return _i == _t.size();
  }

 private:
  void ws() {
    while (_i < _t.size() && (_t[_i] == ' ' || _t[_i] == '\t' || _t[_i] == '\r' || _t[_i] == '\n')) ++_i;
  }
  bool lit(std::string_view w) {
    if (_t.substr(_i, w.size()) != w) return false;
    _i += w.size();
    return true;
  }
  bool hex4(unsigned& v) {
    if (_i + 4 > _t.size()) return false;
    v = 0;
    for (int k = 0; k < 4; ++k) {
      char c = _t[_i++];
      v <<= 4;
      if (c >= '0' && c <= '9') v |= static_cast<unsigned>(c - '0');
      else if (c >= 'a' && c <= 'f') v |= static_cast<unsigned>(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F') v |= static_cast<unsigned>(c - 'A' + 10);
      else return false;
    }
    return true;
  }
  bool str(std::string& s) {
    if (_i >= _t.size() || _t[_i] != '"') return false;
    ++_i;
    while (_i < _t.size()) {
      char c = _t[_i++];
      if (c == '"') return true;
      if (c != '\\') {
        s += c;
        continue;
      }
      if (_i >= _t.size()) return false;
      char e = _t[_i++];
      switch (e) {
        case '"': s += '"'; break;
        case '\\': s += '\\'; break;
        case '/': s += '/'; break;
        case 'b': s += '\b'; break;
        case 'f': s += '\f'; break;
        case 'n': s += '\n'; break;
        case 'r': s += '\r'; break;
        case 't': s += '\t'; break;
        case 'u': {
          unsigned cp = 0;
          if (!hex4(cp)) return false;
          if (cp >= 0xDC80 && cp <= 0xDCFF) {
            s += static_cast<char>(cp - 0xDC00);   // surrogateescape: the raw byte
          } else if (cp >= 0xD800 && cp <= 0xDBFF && lit("\\u")) {
            unsigned lo = 0;
            if (!hex4(lo)) return false;
            json_check::put_utf8(0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00), s);
          } else {
            json_check::put_utf8(cp, s);
          }
          break;
        }
        default: return false;
      }
    }
    return false;
  }
  bool value(jvalue& v) {
    ws();
    if (_i >= _t.size()) return false;
    char c = _t[_i];
    if (c == '{') {
      ++_i;
      v.k = jvalue::kind::object;
      ws();
      if (_i < _t.size() && _t[_i] == '}') return ++_i, true;
      for (;;) {
        ws();
        std::string key;
        if (!str(key)) return false;
        ws();
        if (_i >= _t.size() || _t[_i++] != ':') return false;
        if (!value(v.o[key])) return false;
        ws();
        if (_i >= _t.size()) return false;
        if (_t[_i] == ',') { ++_i; continue; }
        if (_t[_i] == '}') return ++_i, true;
        return false;
      }
    }
    if (c == '[') {
      ++_i;
      v.k = jvalue::kind::array;
      ws();
      if (_i < _t.size() && _t[_i] == ']') return ++_i, true;
      for (;;) {
        v.a.emplace_back();
        if (!value(v.a.back())) return false;
        ws();
        if (_i >= _t.size()) return false;
        if (_t[_i] == ',') { ++_i; continue; }
        if (_t[_i] == ']') return ++_i, true;
        return false;
      }
    }
    if (c == '"') {
      v.k = jvalue::kind::string;
      return str(v.s);
    }
    if (lit("true")) { v.k = jvalue::kind::boolean; v.b = true; return true; }
    if (lit("false")) { v.k = jvalue::kind::boolean; v.b = false; return true; }
    if (lit("null")) { v.k = jvalue::kind::null; return true; }
    size_t start = _i;
    while (_i < _t.size() && std::strchr("+-0123456789.eE", _t[_i])) ++_i;
    if (start == _i) return false;
    v.k = jvalue::kind::number;
    v.n = std::strtod(std::string(_t.substr(start, _i - start)).c_str(), nullptr);
    return true;
  }

  std::string_view _t;
  size_t _i = 0;
};

const jvalue* field(const jvalue& obj, const char* key) {
  auto it = obj.o.find(key);
  return it == obj.o.end() ? nullptr : &it->second;
}
std::string get_str(const jvalue& o, const char* key) {
  auto* v = field(o, key);
  return v && v->k == jvalue::kind::string ? v->s : std::string();
}
double get_num(const jvalue& o, const char* key) {
  auto* v = field(o, key);
  return v && v->k == jvalue::kind::number ? v->n : 0;
}
bool get_bool(const jvalue& o, const char* key) {
  auto* v = field(o, key);
  return v && v->k == jvalue::kind::boolean && v->b;
}
std::vector<std::string> get_strs(const jvalue& o, const char* key) {
  std::vector<std::string> out;
  if (auto* v = field(o, key); v && v->k == jvalue::kind::array)
    for (const auto& e : v->a)
      if (e.k == jvalue::kind::string) out.push_back(e.s);
  return out;
}

// The complete lines of a JSON-lines file parsed as objects (a half-written tail is skipped).
std::vector<jvalue> read_jsonl(const fs::path& p) {
  std::vector<jvalue> out;
  std::string text = read_file(p);
  size_t pos = 0;
  for (size_t nl; (nl = text.find('\n', pos)) != std::string::npos; pos = nl + 1) {
    jvalue v;
    if (jparser(std::string_view(text).substr(pos, nl - pos)).parse(v) && v.k == jvalue::kind::object)
      out.push_back(std::move(v));
  }
  return out;
}

size_t count_lines(const fs::path& p) {
  std::string text = read_file(p);
  size_t n = 0;
  for (char c : text) n += c == '\n';
  return n;
}

bool wait_lines(const fs::path& p, size_t n, std::chrono::milliseconds deadline) {
  auto until = clock::now() + deadline;
  for (;;) {
    if (count_lines(p) >= n) return true;
    if (clock::now() >= until) return false;
    std::this_thread::sleep_for(10ms);   // polling a file another process appends to
  }
}

}  // namespace

// ---------------------------------------------------------------------------- paths

std::string python_binary() {
  if (const char* p = std::getenv("SEALRELAY_PYTHON"); p && *p) return p;
  return "/usr/bin/python3";
}

fs::path tool_path(std::string_view name) { return source_root() / "tests" / "tools" / std::string(name); }

uint16_t free_port_on(const std::vector<std::string>& hosts) {
  for (int attempt = 0; attempt < 50; ++attempt) {
    std::vector<int> fds;
    uint16_t port = 0;
    bool ok = true;
    for (const auto& h : hosts) {
      int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      if (fd < 0) { ok = false; break; }
      fds.push_back(fd);
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_port = htons(port);
      if (::inet_pton(AF_INET, h.c_str(), &a.sin_addr) != 1 ||
          ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
        ok = false;
        break;
      }
      if (port == 0) {
        socklen_t len = sizeof a;
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
        port = ntohs(a.sin_port);
      }
    }
    for (int fd : fds) ::close(fd);
    if (ok && port != 0) return port;
  }
  return 0;
}

// ---------------------------------------------------------------------------- peer_process

peer_process::~peer_process() { stop(); }

bool peer_process::start(const std::vector<std::string>& argv, const fs::path& log_file,
                         std::chrono::milliseconds deadline, std::string* ready_line) {
  _error.clear();
  _log = log_file;
  int out[2];
  if (::pipe2(out, O_CLOEXEC) != 0) {
    _error = "pipe failed";
    return false;
  }
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  std::string log_path = log_file.string();
  pid_t parent = ::getpid();

  pid_t pid = ::fork();
  if (pid == 0) {
    // Child: async-signal-safe calls only. Die with the test binary, never outlive it.
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != parent) _exit(125);
    int devnull = ::open("/dev/null", O_RDONLY);
    if (devnull >= 0) ::dup2(devnull, 0);
    int err = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (err >= 0) ::dup2(err, 2);
    ::dup2(out[1], 1);
    ::execv(args[0], args.data());
    _exit(127);
  }
  ::close(out[1]);
  if (pid < 0) {
    ::close(out[0]);
    _error = "fork failed";
    return false;
  }
  _pid = pid;
  auto until = clock::now() + deadline;
  std::string buf;
  char chunk[512];
  for (;;) {
    size_t nl = buf.find('\n');
    if (nl != std::string::npos) {
      std::string line = buf.substr(0, nl);
      buf.erase(0, nl + 1);
      if (line.rfind("ready", 0) == 0) {
        if (ready_line) *ready_line = line;
        ::close(out[0]);
        return true;
      }
      continue;
    }
    pollfd p{out[0], POLLIN, 0};
    int n = ::poll(&p, 1, remaining_ms(until));
    if (n == 0) {
      _error = "no 'ready' from " + argv.at(std::min<size_t>(1, argv.size() - 1)) + " before the deadline";
      break;
    }
    if (n < 0) {
      if (errno == EINTR) continue;
      _error = "poll failed";
      break;
    }
    ssize_t got = ::read(out[0], chunk, sizeof chunk);
    if (got <= 0) {
      _error = argv.at(std::min<size_t>(1, argv.size() - 1)) + " exited before 'ready'";
      break;
    }
    buf.append(chunk, static_cast<size_t>(got));
  }
  ::close(out[0]);
  stop(1s);
  _error += ": " + log();
  return false;
}

int peer_process::stop(std::chrono::milliseconds deadline) {
  if (_pid <= 0) return -1;
  ::kill(_pid, SIGTERM);
  auto until = clock::now() + deadline;
  int status = 0;
  for (;;) {
    pid_t r = ::waitpid(_pid, &status, WNOHANG);
    if (r == _pid) break;
    if (r < 0 && errno != EINTR) {
      _pid = -1;
      return -1;
    }
    if (clock::now() >= until) {
      ::kill(_pid, SIGKILL);
      ::waitpid(_pid, &status, 0);
      break;
    }
    std::this_thread::sleep_for(5ms);   // reaping: the child exits on SIGTERM at once
  }
  _pid = -1;
  return decode_status(status);
}

std::string peer_process::log() const { return _log.empty() ? std::string() : read_file(_log); }

// ---------------------------------------------------------------------------- fake_mx

bool mx_session::plaintext_command(std::string_view verb) const {
  for (const auto& c : commands) {
    if (c.rfind("TLS ", 0) == 0) continue;
    if (c.size() >= verb.size() && strncasecmp(c.data(), verb.data(), verb.size()) == 0) return true;
  }
  return false;
}

fake_mx::fake_mx(fake_mx_options opts) : _opts(std::move(opts)) {
  if (_opts.port == 0) _opts.port = free_port_on(_opts.hosts);
}

fake_mx::~fake_mx() { stop(); }

bool fake_mx::start(std::chrono::milliseconds deadline) {
  const auto& o = _opts;
  std::vector<std::string> a{python_binary(), tool_path("fake_mx.py").string()};
  for (const auto& h : o.hosts) a.insert(a.end(), {"--listen", h + ":" + std::to_string(o.port)});
  a.insert(a.end(), {"--record", record_path().string(), "--sessions", sessions_path().string()});
  if (!o.cert.empty()) {
    fs::path certs = source_root() / "tests" / "certs";
    a.insert(a.end(), {"--cert", (certs / (o.cert + ".crt")).string(), "--key", (certs / (o.cert + ".key")).string()});
  }
  if (o.no_starttls) a.push_back("--no-starttls");
  if (!o.starttls_reply.empty()) a.insert(a.end(), {"--starttls-reply", o.starttls_reply});
  if (o.tls_abort) a.push_back("--tls-abort");
  if (!o.tls_min.empty()) a.insert(a.end(), {"--tls-min", o.tls_min});
  if (!o.tls_max.empty()) a.insert(a.end(), {"--tls-max", o.tls_max});
  if (!o.ciphers.empty()) a.insert(a.end(), {"--ciphers", o.ciphers});
  if (!o.tls_backend.empty()) a.insert(a.end(), {"--tls-backend", o.tls_backend});
  if (o.strip_starttls_after >= 0)
    a.insert(a.end(), {"--strip-starttls-after", std::to_string(o.strip_starttls_after)});
  for (const auto& r : o.replies) a.insert(a.end(), {"--reply", r});
  for (const auto& r : o.rcpt_replies) a.insert(a.end(), {"--rcpt-reply", r});
  for (const auto& d : o.delays) a.insert(a.end(), {"--delay", d});
  if (o.silent) a.push_back("--silent");
  if (!o.hostname.empty()) a.insert(a.end(), {"--hostname", o.hostname});
  if (o.size) a.insert(a.end(), {"--size", std::to_string(o.size)});
  if (o.no_pipelining) a.push_back("--no-pipelining");
  if (o.requiretls) a.push_back("--requiretls");
  a.insert(a.end(), o.extra_args.begin(), o.extra_args.end());
  return _proc.start(a, _dir.path() / "fake_mx.log", deadline);
}

void fake_mx::stop() { _proc.stop(); }

std::vector<mx_message> fake_mx::messages() const {
  std::vector<mx_message> out;
  for (const auto& v : read_jsonl(record_path())) {
    mx_message m;
    m.mx = get_str(v, "mx");
    m.conn = static_cast<int>(get_num(v, "conn"));
    m.peer = get_str(v, "peer");
    m.helo = get_str(v, "helo");
    m.mail_from = get_str(v, "mail_from");
    m.mail_params = get_strs(v, "mail_params");
    m.rcpts = get_strs(v, "rcpts");
    m.data = get_str(v, "data");
    m.size = static_cast<uint64_t>(get_num(v, "size"));
    m.tls = get_bool(v, "tls");
    m.tls_version = get_str(v, "tls_version");
    m.cipher = get_str(v, "cipher");
    m.cipher_bits = static_cast<int>(get_num(v, "cipher_bits"));
    m.bare_lf = get_bool(v, "bare_lf");
    m.bare_cr = get_bool(v, "bare_cr");
    m.accepted = get_bool(v, "accepted");
    m.reply = static_cast<int>(get_num(v, "reply"));
    m.ts = get_num(v, "ts");
    out.push_back(std::move(m));
  }
  return out;
}

std::vector<mx_session> fake_mx::sessions() const {
  std::vector<mx_session> out;
  for (const auto& v : read_jsonl(sessions_path())) {
    mx_session s;
    s.mx = get_str(v, "mx");
    s.conn = static_cast<int>(get_num(v, "conn"));
    s.peer = get_str(v, "peer");
    s.helo = get_str(v, "helo");
    s.tls = get_bool(v, "tls");
    s.tls_version = get_str(v, "tls_version");
    s.cipher = get_str(v, "cipher");
    s.cipher_bits = static_cast<int>(get_num(v, "cipher_bits"));
    s.tls_error = get_str(v, "tls_error");
    s.starttls_offered = get_bool(v, "starttls_offered");
    s.tls_resumed = get_bool(v, "tls_resumed");
    s.starttls_injection = get_bool(v, "starttls_injection");
    s.commands = get_strs(v, "commands");
    s.events = get_strs(v, "events");
    s.opened = get_num(v, "opened");
    s.closed = get_num(v, "closed");
    out.push_back(std::move(s));
  }
  return out;
}

bool fake_mx::wait_messages(size_t n, std::chrono::milliseconds deadline) const {
  return wait_lines(record_path(), n, deadline);
}

bool fake_mx::wait_sessions(size_t n, std::chrono::milliseconds deadline) const {
  return wait_lines(sessions_path(), n, deadline);
}

// ---------------------------------------------------------------------------- dns_fixture

dns_fixture::dns_fixture(std::string zone, dns_options opts) : _zone(std::move(zone)), _opts(std::move(opts)) {}

dns_fixture::~dns_fixture() { stop(); }

bool dns_fixture::start(std::chrono::milliseconds deadline) {
  fs::path zone_file = _dir.path() / "zone.txt";
  std::ofstream(zone_file) << _zone;
  std::vector<std::string> a{python_binary(), tool_path("dns_zone.py").string(), "serve", zone_file.string(),
                             "--datafile", datafile().string()};
  if (_opts.port) a.insert(a.end(), {"--port", std::to_string(_opts.port)});
  if (!_opts.default_rcode.empty()) a.insert(a.end(), {"--default", _opts.default_rcode});
  if (_opts.ad_all) a.push_back("--ad");
  if (_opts.raw) a.push_back("--raw");
  if (_opts.log_queries) a.push_back("-v");
  std::string ready;
  if (!_proc.start(a, _dir.path() / "dns.log", deadline, &ready)) return false;
  _port = static_cast<uint16_t>(std::atoi(ready.c_str() + 5));   // "ready PORT"
  return _port != 0;
}

void dns_fixture::stop() { _proc.stop(); }

int dns_fixture::queries(std::string_view name, std::string_view type, std::string_view proto) const {
  // ldns-testns -v logs "query ... : UDP ... bytes: NAME\tIN\tTYPE" for each query.
  std::istringstream in(log());
  std::string line;
  int n = 0;
  std::string want = std::string(name) + "\tIN\t" + std::string(type);
  std::string via = ": " + std::string(proto) + " ";
  while (std::getline(in, line)) {
    if (line.rfind("query ", 0) != 0) continue;
    if (!proto.empty() && line.find(via) == std::string::npos) continue;
    auto b = line.find("bytes: ");
    if (b != std::string::npos && line.substr(b + 7) == want) ++n;
  }
  return n;
}

// ---------------------------------------------------------------------------- dnssec_world

dnssec_world::dnssec_world(std::string zone) : _zone(std::move(zone)) {}

dnssec_world::~dnssec_world() { stop(); }

bool dnssec_world::start(std::chrono::milliseconds deadline) {
  fs::path zone_file = _dir.path() / "world.txt";
  std::ofstream(zone_file) << _zone;
  std::vector<std::string> a{python_binary(), tool_path("dnssec_world.py").string(), zone_file.string(),
                             "--dir", dir().string()};
  std::string ready;
  if (!_proc.start(a, _dir.path() / "world.log", deadline, &ready)) return false;
  _port = static_cast<uint16_t>(std::atoi(ready.c_str() + 5));   // "ready PORT"
  return _port != 0;
}

void dnssec_world::stop() { _proc.stop(); }

std::string dnssec_world::log() const {
  return _proc.log() + "--- unbound.log\n" + read_file(dir() / "unbound.log");
}

std::string tlsa_rdata(const fs::path& cert, int usage, int selector, int mtype) {
  auto r = run({"/bin/bash", "-c", "set -o pipefail; " + test::tlsa_hex_pipeline(cert.string(), selector, mtype)}, 10s);
  return test::tlsa_text_of(usage, selector, mtype, r.exit_code, r.output);
}

run_result drill(uint16_t port, std::string_view type, std::string_view name, bool tcp) {
  std::vector<std::string> a{"drill"};
  if (tcp) a.push_back("-t");
  a.insert(a.end(), {"@127.0.0.1", "-p", std::to_string(port), std::string(type), std::string(name)});
  return run(a, 10s);
}

// ---------------------------------------------------------------------------- https_host

std::string https_request::header(std::string_view name) const {
  for (const auto& [k, v] : headers)
    if (k.size() == name.size() && strncasecmp(k.data(), name.data(), name.size()) == 0) return v;
  return {};
}

https_host::https_host(https_host_options opts) : _opts(std::move(opts)) {
  if (_opts.port == 0) _opts.port = free_port_on(_opts.hosts);
}

https_host::~https_host() { stop(); }

bool https_host::start(std::chrono::milliseconds deadline) {
  const auto& o = _opts;
  std::vector<std::string> a{python_binary(), tool_path("https_host.py").string()};
  for (const auto& h : o.hosts) a.insert(a.end(), {"--listen", h + ":" + std::to_string(o.port)});
  a.insert(a.end(), {"--record", record_path().string()});
  fs::path certs = source_root() / "tests" / "certs";
  for (const auto& c : o.certs) {
    size_t eq = c.find('=');
    std::string names = eq == std::string::npos ? "" : c.substr(0, eq + 1);
    std::string file = eq == std::string::npos ? c : c.substr(eq + 1);
    if (file.find(':') == std::string::npos)
      file = (certs / (file + ".crt")).string() + ":" + (certs / (file + ".key")).string();
    a.insert(a.end(), {"--cert", names + file});
  }
  for (const auto& r : o.routes) a.insert(a.end(), {"--route", r});
  if (!o.config.empty()) {
    fs::path cfg = _dir.path() / "config.json";
    std::ofstream(cfg) << o.config;
    a.insert(a.end(), {"--config", cfg.string()});
  }
  if (!o.policy_dir.empty()) a.insert(a.end(), {"--policy-dir", o.policy_dir});
  if (!o.tls_min.empty()) a.insert(a.end(), {"--tls-min", o.tls_min});
  if (!o.tls_max.empty()) a.insert(a.end(), {"--tls-max", o.tls_max});
  if (o.silent) a.push_back("--silent");
  a.insert(a.end(), o.extra_args.begin(), o.extra_args.end());
  return _proc.start(a, _dir.path() / "https_host.log", deadline);
}

void https_host::stop() { _proc.stop(); }

std::vector<https_request> https_host::requests() const {
  std::vector<https_request> out;
  for (const auto& v : read_jsonl(record_path())) {
    https_request r;
    r.listener = get_str(v, "listener");
    r.conn = static_cast<int>(get_num(v, "conn"));
    r.method = get_str(v, "method");
    r.path = get_str(v, "path");
    r.host = get_str(v, "host");
    r.sni = get_str(v, "sni");
    r.tls_version = get_str(v, "tls_version");
    r.body = test::base64_decode(get_str(v, "body_b64"));
    if (auto* h = field(v, "headers"); h && h->k == jvalue::kind::array)
      for (const auto& kv : h->a)
        if (kv.k == jvalue::kind::array && kv.a.size() == 2) r.headers.emplace_back(kv.a[0].s, kv.a[1].s);
    out.push_back(std::move(r));
  }
  return out;
}

bool https_host::wait_requests(size_t n, std::chrono::milliseconds deadline) const {
  return wait_lines(record_path(), n, deadline);
}

// --------------------------------------------------------------------------- audit

std::vector<audit_line> read_audit(const fs::path& file) {
  std::vector<audit_line> out;
  std::string text = read_file(file);
  size_t pos = 0;
  for (size_t nl; (nl = text.find('\n', pos)) != std::string::npos; pos = nl + 1) {
    audit_line a;
    a.raw = text.substr(pos, nl - pos);
    jvalue v;
    if (!jparser(a.raw).parse(v) || v.k != jvalue::kind::object) {
      out.push_back(std::move(a));
      continue;
    }
    auto opt = [&](const char* key) -> std::optional<std::string> {
      auto* f = field(v, key);
      if (!f || f->k != jvalue::kind::string) return std::nullopt;
      return f->s;
    };
    a.ts = get_str(v, "ts");
    a.queue_id = get_str(v, "queue_id");
    a.kind = get_str(v, "kind");
    a.from = get_str(v, "from");
    a.rcpt = get_str(v, "rcpt");
    a.domain = get_str(v, "domain");
    a.policy = get_str(v, "policy");
    a.policy_source = get_str(v, "policy_source");
    a.cert = get_str(v, "cert");
    a.outcome = get_str(v, "outcome");
    a.msg_id = opt("msg_id");
    a.mx = opt("mx");
    a.ip = opt("ip");
    a.source_ip = opt("source_ip");
    a.tls_version = opt("tls_version");
    a.cipher = opt("cipher");
    a.reason = opt("reason");
    a.smtp_reply = opt("smtp_reply");
    a.bounce_class = opt("bounce_class");
    a.event = get_str(v, "event");
    a.detail = get_str(v, "detail");
    if (auto* f = field(v, "cipher_bits"); f && f->k == jvalue::kind::number) a.cipher_bits = int(f->n);
    a.attempt = int(get_num(v, "attempt"));
    a.tls = get_bool(v, "tls");
    out.push_back(std::move(a));
  }
  return out;
}

}  // namespace sr::integ
