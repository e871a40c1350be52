// The real `sealrelay-fallback` binary (SEALRELAY_FALLBACK_BIN) driven over its unix socket
// as an engine shard would: hello, a hand-off of a spool record written with the spool's
// encoders (escrow and S/MIME outputs whose files exist and open), retract, ping, several
// connections at once, a malformed frame (only that connection closes), a bad config (exit
// 2 naming file and key), and kill -9 in the middle of a hand-off followed by a restart (the
// stale socket is replaced, the outbox emptied, the same hand-off handled again); and the
// escrow portal it serves on fallback.portal_listen: the notice's link opened over HTTPS,
// the code mail submitted to the engine link, the message shown after the code.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "sealrelay/fallback/protocol.hh"
#include "support/cert_files.hh"
#include "support/https_client.hh"
#include "support/spool_record.hh"
#include "support/temp_dir.hh"

namespace {

namespace wire = sr::fallback::wire;
using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;
using sr::test::shell_quote;

std::string read_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

int remaining_ms(steady::time_point until) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - steady::now()).count();
  return left < 0 ? 0 : int(left);
}

size_t files_in(const std::filesystem::path& dir) {
  std::error_code ec;
  size_t n = 0;
  for (auto it = std::filesystem::directory_iterator(dir, ec); !ec && it != std::filesystem::directory_iterator();
       it.increment(ec))
    ++n;
  return n;
}

// One engine-side connection to the sidecar's socket.
class engine_link {
 public:
  ~engine_link() { close(); }
  bool connect(const std::string& path, steady::time_point until) {
    while (steady::now() < until) {
      _fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_un sa{};
      sa.sun_family = AF_UNIX;
      std::strncpy(sa.sun_path, path.c_str(), sizeof sa.sun_path - 1);
      if (::connect(_fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0) return true;
      ::close(_fd);
      _fd = -1;
      std::this_thread::sleep_for(20ms);
    }
    return false;
  }
  void close() {
    if (_fd >= 0) ::close(_fd);
    _fd = -1;
  }
  bool send(const wire::frame& f) { return send_raw(encoded(f)); }
  static std::string encoded(const wire::frame& f) {
    std::string b;
    wire::encode(f, b);
    return b;
  }
  bool send_raw(std::string_view b) {
    size_t done = 0;
    for (int i = 0; i < 10000 && done < b.size(); ++i) {
      ssize_t n = ::send(_fd, b.data() + done, b.size() - done, MSG_NOSIGNAL);
      if (n <= 0) return false;
      done += size_t(n);
    }
    return done == b.size();
  }
  // The next frame, or nullopt at the deadline or when the sidecar closed the connection
  // (then eof() is true).
  std::optional<wire::frame> next(std::chrono::milliseconds timeout = 20s) {
    auto until = steady::now() + timeout;
    for (;;) {
      if (auto f = _dec.next()) return f;
      if (_dec.failed()) return std::nullopt;
      pollfd p{_fd, POLLIN, 0};
      if (::poll(&p, 1, remaining_ms(until)) <= 0) return std::nullopt;
      char buf[65536];
      ssize_t n = ::recv(_fd, buf, sizeof buf, 0);
      if (n <= 0) {
        _eof = true;
        return std::nullopt;
      }
      _dec.feed(std::string_view(buf, size_t(n)));
    }
  }
  template <typename T>
  std::optional<T> next_as(std::chrono::milliseconds timeout = 20s) {
    auto f = next(timeout);
    if (!f || !std::holds_alternative<T>(*f)) return std::nullopt;
    return std::get<T>(*f);
  }
  bool hello() {
    if (!send(wire::hello{uint32_t(::getpid()), "relay.test"})) return false;
    auto ok = next_as<wire::hello_ok>();
    return ok && !ok->sidecar_version.empty();
  }
  bool eof() const { return _eof; }

 private:
  int _fd = -1;
  wire::decoder _dec;
  bool _eof = false;
};

class Sidecar : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* bin = std::getenv("SEALRELAY_FALLBACK_BIN");
    ASSERT_TRUE(bin && *bin) << "SEALRELAY_FALLBACK_BIN is not set";
    _bin = bin;
    std::filesystem::create_directories(path("smime"));
    std::filesystem::create_directories(path("var"));
    write_config(path("sidecar.toml"), "");
  }
  void TearDown() override { kill9(); }

  std::string path(const std::string& n) const { return (_dir.path() / n).string(); }
  std::string socket_path() const { return path("var/fb.sock"); }
  std::filesystem::path outbox() const { return path("var/fallback/outbox"); }

  void write_config(const std::string& file, const std::string& extra) {
    std::ofstream o(file);
    o << "[server]\nhostname = \"relay.test\"\nstate_dir = \"" << path("var") << "\"\n"
      << "[[listen]]\naddress = \"127.0.0.1:9\"\n"
      << "[fallback]\nsocket = \"" << socket_path() << "\"\nportal_url = \"https://portal.test:8443\"\n"
      << "portal_listen = \"" << _portal_listen << "\"\n"
      << "pgp_home = \"" << path("no-gnupg") << "\"\nsmime_dir = \"" << path("smime") << "\"\n"
      << extra << "[audit]\nfile = \"" << path("var/audit.jsonl") << "\"\n";
  }

  // Start the sidecar with `config`; its stderr goes to sidecar.log.
  bool start(const std::string& config = {}) {
    std::string cfg = config.empty() ? path("sidecar.toml") : config;
    _pid = ::fork();
    if (_pid == 0) {
      int fd = ::open(path("sidecar.log").c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
      ::dup2(fd, 1);
      ::dup2(fd, 2);
      ::execl(_bin.c_str(), _bin.c_str(), "-c", cfg.c_str(), (char*)nullptr);
      ::_exit(127);
    }
    return _pid > 0;
  }
  // Wait for the sidecar to exit; its exit code (128+signal), or -1 at the deadline.
  int wait_exit(std::chrono::milliseconds timeout = 15s) {
    auto until = steady::now() + timeout;
    while (_pid > 0 && steady::now() < until) {
      int st;
      pid_t r = ::waitpid(_pid, &st, WNOHANG);
      if (r == _pid) {
        _pid = -1;
        return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
      }
      std::this_thread::sleep_for(10ms);
    }
    return -1;
  }
  void kill9() {
    if (_pid > 0) {
      ::kill(_pid, SIGKILL);
      ::waitpid(_pid, nullptr, 0);
      _pid = -1;
    }
  }
  std::string log() const { return read_file(path("sidecar.log")); }

  // Write a message record for `rcpts` into the segment; the hand-off naming it.
  wire::handoff record(const std::string& qid, const std::vector<std::string>& rcpts,
                       std::vector<wire::method> chain) {
    sr::spool::message_meta meta;
    meta.queue_id = qid;
    meta.mail_from = "clinic@src.test";
    meta.rcpts = rcpts;
    meta.msg_id = "m-" + qid + "@src.test";
    std::string msg = "From: clinic@src.test\r\nTo: x@dest.test\r\nSubject: Results\r\nMessage-ID: <" +
                      meta.msg_id + ">\r\n\r\nSecret body " + qid + "\r\n";
    auto loc = sr::test::append_record(path("seg"), sr::test::message_record(meta, msg));
    wire::handoff h;
    h.request_id = ++_rid;
    h.queue_id = qid;
    h.from = meta.mail_from;
    h.domain = "dest.test";
    h.rcpts = rcpts;
    h.segment = path("seg");
    h.offset = loc.offset;
    h.length = loc.length;
    h.chain = std::move(chain);
    return h;
  }

  sr::test::temp_dir _dir{"sealrelay-sidecar"};
  std::string _portal_listen;  // fallback.portal_listen ("" = no portal)
  std::string _bin;
  pid_t _pid = -1;
  uint64_t _rid = 0;
};

TEST_F(Sidecar, HandsOffRetractsAndStopsCleanly) {
  // An S/MIME certificate for one recipient; the other is escrowed.
  std::string key = shell_quote(path("smime/s@dest.test.key")), crt = shell_quote(path("smime/s@dest.test.pem"));
  ASSERT_TRUE(sr::test::run_pipeline("openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out " + key +
                                     " 2>/dev/null && openssl req -x509 -new -key " + key + " -out " + crt +
                                     " -days 30 -subj /CN=s 2>/dev/null"));
  ASSERT_TRUE(start());
  engine_link e;
  ASSERT_TRUE(e.connect(socket_path(), steady::now() + 10s)) << log();
  ASSERT_TRUE(e.hello()) << log();
  struct stat st;
  ASSERT_EQ(::stat(socket_path().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(::stat(outbox().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);

  ASSERT_TRUE(e.send(wire::ping{42}));
  auto pong = e.next_as<wire::pong>();
  ASSERT_TRUE(pong);
  EXPECT_EQ(pong->nonce, 42u);

  auto h = record("00000000000000A1", {"e@dest.test", "s@dest.test"},
                  {wire::method::pgp, wire::method::smime, wire::method::escrow});
  ASSERT_TRUE(e.send(h));
  auto r = e.next_as<wire::result>(30s);
  ASSERT_TRUE(r) << log();
  EXPECT_EQ(r->request_id, h.request_id);
  ASSERT_EQ(r->outcomes, (std::vector<wire::outcome>{wire::outcome::escrowed, wire::outcome::smime})) << r->detail;
  ASSERT_EQ(r->outputs.size(), 2u);
  EXPECT_EQ(r->outputs[0].kind, 2);
  EXPECT_EQ(r->outputs[1].kind, 5);
  for (const auto& o : r->outputs) {
    EXPECT_EQ(std::filesystem::path(o.path).parent_path(), outbox());
    std::string bytes = read_file(o.path);
    EXPECT_FALSE(bytes.empty()) << o.path;
    EXPECT_EQ(bytes.find("Secret body"), std::string::npos) << "plaintext in " << o.path;
    EXPECT_EQ(o.from, "clinic@src.test");
  }
  EXPECT_NE(read_file(r->outputs[0].path).find("https://portal.test:8443/m/"), std::string::npos);
  auto plain = sr::test::run_pipeline("openssl cms -decrypt -in " + shell_quote(r->outputs[1].path) + " -inkey " +
                                      key + " -recip " + crt + " 2>/dev/null");
  ASSERT_TRUE(plain);
  EXPECT_NE(plain->find("Secret body 00000000000000A1"), std::string::npos);

  ASSERT_TRUE(e.send(wire::retract{99, "m-00000000000000A1@src.test"}));
  auto rr = e.next_as<wire::retracted>();
  ASSERT_TRUE(rr) << log();
  EXPECT_EQ(rr->request_id, 99u);
  EXPECT_TRUE(rr->ok) << rr->detail;
  EXPECT_EQ(rr->count, 1u);
  std::string audit = read_file(path("var/audit.jsonl"));
  EXPECT_NE(audit.find("\"event\":\"notice\""), std::string::npos) << audit;
  EXPECT_NE(audit.find("\"event\":\"retraction\""), std::string::npos) << audit;

  ::kill(_pid, SIGTERM);
  EXPECT_EQ(wait_exit(), 0) << log();
  EXPECT_FALSE(std::filesystem::exists(socket_path()));
}

TEST_F(Sidecar, ServesSeveralEnginesAndDropsOnlyABrokenOne) {
  ASSERT_TRUE(start());
  engine_link a, b, bad, early;
  ASSERT_TRUE(a.connect(socket_path(), steady::now() + 10s)) << log();
  ASSERT_TRUE(b.connect(socket_path(), steady::now() + 2s));
  ASSERT_TRUE(bad.connect(socket_path(), steady::now() + 2s));
  ASSERT_TRUE(early.connect(socket_path(), steady::now() + 2s));
  ASSERT_TRUE(a.hello());
  ASSERT_TRUE(b.hello());
  ASSERT_TRUE(bad.hello());
  // Garbage: a frame of the wrong version.
  std::string f = engine_link::encoded(wire::ping{1});
  f[4] = char(9);
  ASSERT_TRUE(bad.send_raw(f));
  EXPECT_FALSE(bad.next(5s));
  EXPECT_TRUE(bad.eof()) << "a malformed frame closes the connection";
  // A length prefix beyond max_frame, and random bytes: each closes only its connection.
  for (int round = 0; round < 2; ++round) {
    engine_link junk;
    ASSERT_TRUE(junk.connect(socket_path(), steady::now() + 2s));
    std::string bytes;
    if (round == 0) {
      ASSERT_TRUE(junk.hello());
      bytes = std::string("\xff\xff\xff\xff", 4) + std::string(64, 'x');
    } else {
      for (int i = 0; i < 4096; ++i) bytes += char((i * 7919 + 13) & 0xff);
    }
    junk.send_raw(bytes);
    EXPECT_FALSE(junk.next(5s));
    EXPECT_TRUE(junk.eof()) << "round " << round;
  }
  // A hand-off before hello.
  ASSERT_TRUE(early.send(record("00000000000000B0", {"x@dest.test"}, {wire::method::escrow})));
  EXPECT_FALSE(early.next(5s));
  EXPECT_TRUE(early.eof());
  // The others keep working, each answered on its own connection.
  auto ha = record("00000000000000B1", {"a@dest.test"}, {wire::method::escrow});
  auto hb = record("00000000000000B2", {"b@dest.test"}, {wire::method::defer});
  ASSERT_TRUE(a.send(ha));
  ASSERT_TRUE(b.send(hb));
  auto rb = b.next_as<wire::result>(30s);
  auto ra = a.next_as<wire::result>(30s);
  ASSERT_TRUE(ra && rb) << log();
  EXPECT_EQ(ra->request_id, ha.request_id);
  EXPECT_EQ(ra->outcomes, std::vector<wire::outcome>{wire::outcome::escrowed}) << ra->detail;
  EXPECT_EQ(rb->request_id, hb.request_id);
  EXPECT_EQ(rb->outcomes, std::vector<wire::outcome>{wire::outcome::defer});
  // An engine that goes away while its hand-off runs does not disturb the sidecar.
  ASSERT_TRUE(a.send(record("00000000000000B3", {"a@dest.test"}, {wire::method::escrow})));
  a.close();
  ASSERT_TRUE(b.send(wire::ping{5}));
  EXPECT_TRUE(b.next_as<wire::pong>()) << log();
  // A corrupt record: every recipient failed, the connection stays.
  auto hc = record("00000000000000B4", {"c@dest.test", "d@dest.test"}, {wire::method::escrow});
  hc.length -= 1;
  ASSERT_TRUE(b.send(hc));
  auto rc = b.next_as<wire::result>(30s);
  ASSERT_TRUE(rc) << log();
  EXPECT_EQ(rc->outcomes, std::vector<wire::outcome>(2, wire::outcome::failed));
  EXPECT_TRUE(rc->outputs.empty());
}

TEST_F(Sidecar, Kill9MidHandoffThenRestartClearsTheOutbox) {
  ASSERT_TRUE(start());
  engine_link e;
  ASSERT_TRUE(e.connect(socket_path(), steady::now() + 10s)) << log();
  ASSERT_TRUE(e.hello());
  std::vector<std::string> many;
  for (int i = 0; i < 1000; ++i) many.push_back("r" + std::to_string(i) + "@dest.test");
  auto h = record("00000000000000C1", many, {wire::method::escrow});
  ASSERT_TRUE(e.send(h));
  // Kill it once the first outputs are in the outbox and before the result.
  auto until = steady::now() + 20s;
  while (files_in(outbox()) == 0 && steady::now() < until) std::this_thread::sleep_for(1ms);
  ASSERT_GT(files_in(outbox()), 0u) << log();
  kill9();
  size_t left = files_in(outbox());
  EXPECT_GT(left, 0u);
  EXPECT_LT(left, many.size()) << "killed after the hand-off finished";
  EXPECT_FALSE(e.next(0ms).has_value()) << "a result arrived before the kill";
  e.close();

  ASSERT_TRUE(start());  // the stale socket file is still there
  engine_link again;
  ASSERT_TRUE(again.connect(socket_path(), steady::now() + 10s)) << log();
  ASSERT_TRUE(again.hello()) << log();
  EXPECT_EQ(files_in(outbox()), 0u) << "the restarted sidecar empties the outbox";
  EXPECT_NE(log().find("removed"), std::string::npos) << log();
  // The engine hands the message again: it is handled in full.
  h.rcpts.resize(20);
  ASSERT_TRUE(again.send(h));
  auto r = again.next_as<wire::result>(30s);
  ASSERT_TRUE(r) << log();
  EXPECT_EQ(r->outcomes, std::vector<wire::outcome>(20, wire::outcome::escrowed)) << r->detail;
  EXPECT_EQ(r->outputs.size(), 20u);
  EXPECT_EQ(files_in(outbox()), 20u);
}

TEST_F(Sidecar, BadConfigExits2NamingFileAndKey) {
  write_config(path("bad.toml"), "escrow_expiry = \"forever\"\n");
  ASSERT_TRUE(start(path("bad.toml")));
  EXPECT_EQ(wait_exit(), 2);
  std::string l = log();
  EXPECT_NE(l.find("bad.toml:"), std::string::npos) << l;
  EXPECT_NE(l.find("escrow_expiry"), std::string::npos) << l;
}

TEST_F(Sidecar, RefusesASecondSidecarOnALiveSocket) {
  ASSERT_TRUE(start());
  engine_link e;
  ASSERT_TRUE(e.connect(socket_path(), steady::now() + 10s)) << log();
  pid_t first = _pid;
  ASSERT_TRUE(start());
  EXPECT_EQ(wait_exit(), 1);
  EXPECT_NE(log().find("another sidecar"), std::string::npos) << log();
  _pid = first;
  ASSERT_TRUE(e.hello()) << "the first sidecar still serves";
}

// A port nothing listens on now (bound and released; the sidecar binds it right after).
uint16_t free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  uint16_t port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0)
    port = ntohs(a.sin_port);
  ::close(fd);
  return port;
}

TEST_F(Sidecar, ServesThePortalAndMailsCodesThroughTheEngine) {
  std::string certs = SR_TEST_CERTS;
  std::filesystem::copy_file(certs + "/server.crt", path("relay.crt"));
  std::filesystem::copy_file(certs + "/server.key", path("relay.key"));
  ::chmod(path("relay.key").c_str(), 0600);
  uint16_t port = free_port();
  ASSERT_NE(port, 0);
  _portal_listen = "127.0.0.1:" + std::to_string(port);
  write_config(path("portal.toml"), "[tls]\ncert_file = \"" + path("relay.crt") + "\"\nkey_file = \"" +
                                        path("relay.key") + "\"\n");
  ASSERT_TRUE(start(path("portal.toml")));
  engine_link e;
  ASSERT_TRUE(e.connect(socket_path(), steady::now() + 10s)) << log();
  ASSERT_TRUE(e.hello()) << log();

  // Escrow a message; the notice's link is what the reader opens.
  auto h = record("00000000000000D1", {"reader@dest.test"}, {wire::method::escrow});
  ASSERT_TRUE(e.send(h));
  auto r = e.next_as<wire::result>(30s);
  ASSERT_TRUE(r) << log();
  ASSERT_EQ(r->outcomes, std::vector<wire::outcome>{wire::outcome::escrowed}) << r->detail;
  std::smatch m;
  std::string notice = read_file(r->outputs.at(0).path);
  ASSERT_TRUE(std::regex_search(notice, m, std::regex("https://portal\\.test:8443(/m/[A-Za-z0-9_-]+/[A-Za-z0-9_-]+)")))
      << notice;
  std::string link = m[1];
  std::string ca = certs + "/ca.crt";

  sr::test::reply page = sr::test::https_client(port, ca).request("GET", link);
  ASSERT_TRUE(page.ok) << log();
  EXPECT_EQ(page.code, 200);
  EXPECT_NE(page.header("Content-Security-Policy").find("frame-ancestors 'none'"), std::string::npos);

  // The code request blocks until the engine has the code mail durable: answer its submit.
  sr::test::reply asked;
  std::thread reader([&] { asked = sr::test::https_client(port, ca).request("POST", link + "/code"); });
  auto sub = e.next_as<wire::submit>(20s);
  ASSERT_TRUE(sub) << log();
  EXPECT_EQ(sub->mail.kind, 2);
  EXPECT_EQ(sub->mail.rcpts, std::vector<std::string>{"reader@dest.test"});
  EXPECT_EQ(std::filesystem::path(sub->mail.path).parent_path(), outbox());
  std::string mail = read_file(sub->mail.path);
  std::smatch cm;
  ASSERT_TRUE(std::regex_search(mail, cm, std::regex("is:\r\n\r\n    ([0-9]{6})\r\n"))) << mail;
  std::string code = cm[1];
  std::filesystem::remove(sub->mail.path);  // what the engine does once it is spooled
  ASSERT_TRUE(e.send(wire::submitted{sub->submit_id, true, ""}));
  reader.join();
  EXPECT_EQ(asked.code, 200) << asked.body;
  EXPECT_NE(asked.body.find("name=\"code\""), std::string::npos);

  sr::test::reply shown = sr::test::https_client(port, ca).request("POST", link, "code=" + code);
  EXPECT_EQ(shown.code, 200) << shown.body;
  EXPECT_NE(shown.body.find("Secret body 00000000000000D1"), std::string::npos) << shown.body;
  std::string audit = read_file(path("var/audit.jsonl"));
  EXPECT_NE(audit.find("\"event\":\"code-request\""), std::string::npos) << audit;
  EXPECT_NE(audit.find("\"event\":\"view\""), std::string::npos) << audit;

  // SIGTERM stops the portal too, without waiting out a code request the engine has not
  // answered: that reader gets the error page.
  sr::test::reply stuck;
  std::thread waiting([&] { stuck = sr::test::https_client(port, ca).request("POST", link + "/code"); });
  ASSERT_TRUE(e.next_as<wire::submit>(20s)) << log();
  auto t0 = steady::now();
  ::kill(_pid, SIGTERM);
  EXPECT_EQ(wait_exit(), 0) << log();
  EXPECT_LT(steady::now() - t0, 10s) << "stopping waited for the code mail's timeout";
  waiting.join();
  EXPECT_EQ(stuck.code, 500) << stuck.body;
  EXPECT_EQ(sr::test::https_client::dial(port), -1);
}

}  // namespace
