// A throwaway PostgreSQL cluster for tests: initdb into a temp dir, postgres on
// 127.0.0.1:<free high port> with its unix socket in that dir, stopped (pg_ctl stop -m
// immediate, then by PID) and removed on destruction. As root it runs as user `postgres`
// (the server refuses root) and the dir is handed to that user. start() says why not when
// the binaries are missing or the server does not come up; tests then skip with that reason.
// Header-only: needs libpq (PQping) and nothing of the loopback world.
#pragma once
#include <fcntl.h>
#include <grp.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "support/temp_dir.hh"

namespace sr::test {

class pg_cluster {
 public:
  pg_cluster() = default;
  ~pg_cluster() { stop(); }
  pg_cluster(const pg_cluster&) = delete;
  pg_cluster& operator=(const pg_cluster&) = delete;

  // Create and start the cluster (bounded: initdb 120 s, start 60 s); false and error()
  // when it cannot. Superuser `postgres`, trust authentication, database `postgres`.
  bool start() {
    _bin = find_bin();
    if (_bin.empty() || !std::filesystem::exists(_bin / "initdb") ||
        !std::filesystem::exists(_bin / "postgres"))
      return fail("PostgreSQL server binaries not installed (" +
                  (_bin.empty() ? std::string("/usr/lib/postgresql/*/bin") : _bin.string()) +
                  "; tools/install-deps installs them)");
    if (_dir.path().empty()) return fail("cannot create a temp dir");
    if (::geteuid() == 0) {
      const passwd* pw = ::getpwnam("postgres");
      if (!pw) return fail("running as root and there is no user 'postgres' to run the server");
      _uid = pw->pw_uid;
      _gid = pw->pw_gid;
      if (::chown(_dir.path().c_str(), *_uid, *_gid) != 0)
        return fail("cannot hand " + _dir.path().string() + " to user postgres");
    }
    const std::string data = (_dir.path() / "data").string();
    const auto initdb_log = _dir.path() / "initdb.log";
    int rc = run({(_bin / "initdb").string(), "-D", data, "-U", "postgres", "-A", "trust", "-E",
                  "UTF8", "--locale=C", "--no-sync", "--no-instructions"},
                 initdb_log, std::chrono::seconds(120));
    if (rc != 0) return fail("initdb failed (" + std::to_string(rc) + "): " + tail(initdb_log));
    // A port taken between the probe and the bind makes postgres exit: try a few.
    for (int attempt = 0; attempt < 3; ++attempt) {
      _port = free_port();
      if (_port == 0) return fail("no free port on 127.0.0.1");
      if (start_server()) return true;
      kill_server();
    }
    return false;
  }

  // Stop the server if it runs: pg_ctl stop -m immediate, then SIGKILL by PID if needed.
  void stop() {
    if (_pid <= 0) return;
    run({(_bin / "pg_ctl").string(), "stop", "-D", (_dir.path() / "data").string(), "-m",
         "immediate", "-w", "-t", "30"},
        _dir.path() / "pg_ctl.log", std::chrono::seconds(40));
    kill_server();
  }

  const std::string& error() const { return _error; }
  int port() const { return _port; }
  const std::filesystem::path& dir() const { return _dir.path(); }
  // A libpq conninfo for `dbname` over TCP on loopback.
  std::string conninfo(const std::string& dbname = "postgres") const {
    return "host=127.0.0.1 port=" + std::to_string(_port) + " user=postgres dbname=" + dbname +
           " connect_timeout=10";
  }

 private:
  bool fail(std::string why) {
    _error = std::move(why);
    return false;
  }

  static std::filesystem::path find_bin() {
    if (const char* env = std::getenv("SEALRELAY_PG_BIN"); env && *env) return env;
    std::filesystem::path best;
    int best_version = -1;
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator("/usr/lib/postgresql", ec)) {
      const auto bin = e.path() / "bin";
      if (!std::filesystem::exists(bin / "postgres") || !std::filesystem::exists(bin / "initdb"))
        continue;
      int v = std::atoi(e.path().filename().c_str());
      if (v > best_version) best_version = v, best = bin;
    }
    return best;
  }

  static int free_port() {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return 0;
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    int port = 0;
    if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0)
      port = ntohs(a.sin_port);
    ::close(fd);
    return port;
  }

  static std::string tail(const std::filesystem::path& log) {
    std::ifstream in(log);
    std::string all{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    if (all.size() > 600) all = "..." + all.substr(all.size() - 600);
    for (char& c : all)
      if (c == '\n') c = ' ';
    return all;
  }

  // Fork and exec `argv` (as postgres when root), stdout and stderr to `log`; -1 on failure.
  pid_t spawn(const std::vector<std::string>& argv, const std::filesystem::path& log) {
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    const std::string log_path = log.string();
    const std::string home = _dir.path().string();
    const pid_t parent = ::getpid();
    pid_t pid = ::fork();
    if (pid != 0) return pid;
    // Child: async-signal-safe calls only.
    int devnull = ::open("/dev/null", O_RDONLY);
    if (devnull >= 0) ::dup2(devnull, 0);
    int out = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (out >= 0) {
      ::dup2(out, 1);
      ::dup2(out, 2);
    }
    if (_uid) {
      if (::setgroups(0, nullptr) != 0 || ::setgid(*_gid) != 0 || ::setuid(*_uid) != 0) _exit(126);
    }
    // After the uid change (which clears it): die with the test binary, never outlive it.
    ::prctl(PR_SET_PDEATHSIG, SIGQUIT);
    if (::getppid() != parent) _exit(125);
    if (::chdir(home.c_str()) != 0) _exit(126);
    ::execv(args[0], args.data());
    _exit(127);
  }

  // Run a command to its end within `limit`; its exit code, or -1 (killed, or no fork).
  int run(const std::vector<std::string>& argv, const std::filesystem::path& log,
          std::chrono::seconds limit) {
    pid_t pid = spawn(argv, log);
    if (pid < 0) return -1;
    const auto until = std::chrono::steady_clock::now() + limit;
    for (;;) {
      int st = 0;
      pid_t got = ::waitpid(pid, &st, WNOHANG);
      if (got == pid) return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
      if (got < 0) return -1;
      if (std::chrono::steady_clock::now() > until) {
        ::kill(pid, SIGKILL);
        ::waitpid(pid, &st, 0);
        return -1;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }

  bool start_server() {
    const auto log = _dir.path() / "postgres.log";
    _pid = spawn({(_bin / "postgres").string(), "-D", (_dir.path() / "data").string(), "-p",
                  std::to_string(_port), "-c", "listen_addresses=127.0.0.1", "-c",
                  "unix_socket_directories=" + _dir.path().string(), "-c", "fsync=off", "-c",
                  "full_page_writes=off", "-c", "max_connections=30", "-c",
                  "shared_buffers=16MB", "-c", "logging_collector=off"},
                 log);
    if (_pid < 0) return fail("fork failed");
    const std::string ping = conninfo();
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (std::chrono::steady_clock::now() < until) {
      if (PQping(ping.c_str()) == PQPING_OK) return true;
      int st = 0;
      if (::waitpid(_pid, &st, WNOHANG) == _pid) {
        _pid = -1;
        return fail("postgres exited: " + tail(log));
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return fail("postgres not ready within 60 s: " + tail(log));
  }

  // Make sure the server process is gone and reaped (SIGQUIT, then SIGKILL after 10 s).
  void kill_server() {
    if (_pid <= 0) return;
    int st = 0;
    if (::waitpid(_pid, &st, WNOHANG) != _pid) {
      ::kill(_pid, SIGQUIT);
      const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
      while (::waitpid(_pid, &st, WNOHANG) == 0) {
        if (std::chrono::steady_clock::now() > until) {
          ::kill(_pid, SIGKILL);
          ::waitpid(_pid, &st, 0);
          break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
    }
    _pid = -1;
  }

  temp_dir _dir{"sealrelay-pg", "/tmp"};  // /tmp: the socket path stays short
  std::filesystem::path _bin;
  std::optional<uid_t> _uid;
  std::optional<gid_t> _gid;
  pid_t _pid = -1;
  int _port = 0;
  std::string _error;
};

}  // namespace sr::test
