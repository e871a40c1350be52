// The daemon under systemd, without systemd: the test plays the service manager.
// Type=notify: it binds the NOTIFY_SOCKET datagram socket and checks READY=1 comes once the
// listeners answer, RELOADING=1 then READY=1 around a SIGHUP (a bad config file too), and
// STOPPING=1 at SIGTERM. Journal: with JOURNAL_STREAM naming the daemon's stderr file, lines
// carry syslog priorities and no timestamp; with it naming another file, the usual lines.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "support/harness.hh"

namespace sr::integ {
namespace {

// The service manager's end of NOTIFY_SOCKET: a unix datagram socket in the test's dir.
class notify_socket {
 public:
  explicit notify_socket(const std::filesystem::path& path) : _path(path.string()) {
    _fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::snprintf(a.sun_path, sizeof a.sun_path, "%s", _path.c_str());
    _ok = _fd >= 0 && _path.size() < sizeof a.sun_path &&
          ::bind(_fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  }
  ~notify_socket() {
    if (_fd >= 0) ::close(_fd);
  }
  bool ok() const { return _ok; }
  const std::string& path() const { return _path; }
  // The next datagram within `deadline`, or "" when none came.
  std::string next(std::chrono::milliseconds deadline = 10s) {
    pollfd p{_fd, POLLIN, 0};
    if (::poll(&p, 1, int(deadline.count())) != 1) return "";
    char buf[4096];
    ssize_t n = ::recv(_fd, buf, sizeof buf, 0);
    return n > 0 ? std::string(buf, size_t(n)) : "";
  }

 private:
  std::string _path;
  int _fd = -1;
  bool _ok = false;
};

// Sets an environment variable the daemon inherits for one test, then removes it.
struct scoped_env {
  const char* name;
  scoped_env(const char* n, const std::string& v) : name(n) { ::setenv(n, v.c_str(), 1); }
  ~scoped_env() { ::unsetenv(name); }
};

bool has_line(const std::string& msg, const std::string& line) {
  return ("\n" + msg + "\n").find("\n" + line + "\n") != std::string::npos;
}

TEST(Systemd, NotifiesReadyReloadingAndStopping) {
  relay r;
  notify_socket ns(r.dir() / "notify.sock");
  ASSERT_TRUE(ns.ok());
  scoped_env env("NOTIFY_SOCKET", ns.path());
  ASSERT_TRUE(r.start()) << r.error();
  // start() returned after a 220, and READY=1 is sent once every shard listens.
  std::string ready = ns.next();
  EXPECT_TRUE(has_line(ready, "READY=1")) << ready;
  EXPECT_NE(ready.find("STATUS=ready"), std::string::npos) << ready;

  r.signal(SIGHUP);
  std::string reloading = ns.next();
  EXPECT_TRUE(has_line(reloading, "RELOADING=1")) << reloading;
  EXPECT_NE(reloading.find("MONOTONIC_USEC="), std::string::npos) << reloading;
  EXPECT_TRUE(has_line(ns.next(), "READY=1"));

  // A config that no longer parses keeps the running settings, and still says READY=1
  // (systemd would otherwise wait for the reload to end until its timeout).
  std::ofstream(r.config_path(), std::ios::app) << "\n[bogus\n";
  r.signal(SIGHUP);
  EXPECT_TRUE(has_line(ns.next(), "RELOADING=1"));
  EXPECT_TRUE(has_line(ns.next(), "READY=1"));

  r.signal(SIGTERM);
  std::string stopping = ns.next();
  EXPECT_TRUE(has_line(stopping, "STOPPING=1")) << stopping;
  EXPECT_EQ(r.wait_exit(), 0) << r.log();
}

TEST(Systemd, LogLinesCarrySyslogPrioritiesWhenStderrIsTheJournal) {
  relay r;
  // The harness appends the daemon's stderr to this file: create it to learn its inode.
  auto log_path = r.dir() / "sealrelay.log";
  std::ofstream(log_path).close();
  struct stat st;
  ASSERT_EQ(::stat(log_path.c_str(), &st), 0);
  scoped_env env("JOURNAL_STREAM", std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino));
  ASSERT_TRUE(r.start()) << r.error();
  std::ofstream(r.config_path(), std::ios::app) << "\n[bogus\n";
  r.signal(SIGHUP);   // logs an error: keeping the current policy table
  std::string log;
  for (int i = 0; i < 100 && log.find("keeping the current policy table") == std::string::npos; ++i) {
    ::usleep(50'000);
    log = r.log();
  }
  EXPECT_EQ(r.stop(), 0);
  log = r.log();
  EXPECT_NE(log.find("<6>info main sealrelay ready:"), std::string::npos) << log;
  EXPECT_NE(log.find("<3>error main SIGHUP: keeping the current policy table"), std::string::npos) << log;
  // Every line the relay wrote carries a priority and no timestamp (the journal stamps it);
  // the sidecar's lines too when it runs (it inherits the stream).
  size_t lines = 0;
  std::istringstream in(log);
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    ++lines;
    ASSERT_TRUE(line.size() > 3 && line[0] == '<' && line[2] == '>' && line[1] >= '0' && line[1] <= '7')
        << line;
  }
  EXPECT_GT(lines, 2u);
}

TEST(Systemd, LogLinesKeepTimestampsWhenJournalStreamNamesAnotherFile) {
  relay r;
  // JOURNAL_STREAM is inherited by children whose stderr went elsewhere: it must be ignored.
  struct stat st;
  ASSERT_EQ(::stat(r.config_path().c_str(), &st), 0);
  scoped_env env("JOURNAL_STREAM", std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino));
  ASSERT_TRUE(r.start()) << r.error();
  EXPECT_EQ(r.stop(), 0);
  std::string log = r.log();
  EXPECT_EQ(log.find("<6>"), std::string::npos) << log;
  EXPECT_NE(log.find("Z info main sealrelay ready:"), std::string::npos) << log;
}

}  // namespace
}  // namespace sr::integ
