// The sidecar supervisor (supervisor.hh): fork + exec on a dedicated thread, waitpid,
// restart with backoff. The child unblocks every signal (the relay's threads block them for
// its signal handling) and asks for SIGTERM when the relay dies.
#include "sealrelay/handoff/supervisor.hh"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstring>

#include "sealrelay/util/log.hh"

namespace sr::handoff {

std::string sidecar_binary_next_to_self() {
  char buf[PATH_MAX];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  std::string self = n > 0 ? std::string(buf, size_t(n)) : std::string();
  auto slash = self.rfind('/');
  std::string dir = slash == std::string::npos ? std::string(".") : self.substr(0, slash);
  return dir + "/sealrelay-fallback";
}

supervisor::supervisor(std::string binary, std::string config_file, shared_status* status)
    : _binary(std::move(binary)), _config(std::move(config_file)), _status(status) {}

supervisor::~supervisor() { stop(); }

status supervisor::start() {
  if (::access(_binary.c_str(), X_OK) != 0)
    return error("fallback.spawn: cannot run " + _binary + ": " + std::strerror(errno));
  // The thread blocks every signal: the relay takes SIGTERM/SIGHUP on its own thread, and a
  // SIGHUP delivered here would otherwise kill the process.
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, &old);
  _thread = std::thread([this] { run(); });
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  return {};
}

pid_t supervisor::pid() const {
  std::lock_guard<std::mutex> lock(_mu);
  return _pid;
}

pid_t supervisor::spawn() {
  pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid == 0) {
    // Child: only async-signal-safe calls until exec.
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != parent) ::_exit(1);
    const char* argv[] = {_binary.c_str(), "-c", _config.c_str(), nullptr};
    ::execv(_binary.c_str(), const_cast<char* const*>(argv));
    ::_exit(127);
  }
  return pid;
}

void supervisor::run() {
  using clock = std::chrono::steady_clock;
  auto backoff = std::chrono::milliseconds(500);
  bool first = true;
  for (;;) {
    {
      std::lock_guard<std::mutex> lock(_mu);
      if (_stopping) return;
    }
    pid_t pid = spawn();
    if (pid < 0) {
      SR_ERROR("fallback: cannot start %s: %s", _binary.c_str(), std::strerror(errno));
    } else {
      {
        std::lock_guard<std::mutex> lock(_mu);
        _pid = pid;
      }
      if (!first && _status) _status->restarts.fetch_add(1, std::memory_order_relaxed);
      SR_INFO("fallback: sidecar %s started (pid %d)", _binary.c_str(), int(pid));
      first = false;
      auto began = clock::now();
      int st = 0;
      while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
      }
      {
        std::lock_guard<std::mutex> lock(_mu);
        _pid = 0;
        if (_stopping) return;
      }
      if (WIFSIGNALED(st))
        SR_WARN("fallback: sidecar (pid %d) killed by signal %d: restarting", int(pid), WTERMSIG(st));
      else
        SR_WARN("fallback: sidecar (pid %d) exited with %d: restarting", int(pid), WEXITSTATUS(st));
      if (clock::now() - began > std::chrono::seconds(60)) backoff = std::chrono::milliseconds(500);
    }
    std::unique_lock<std::mutex> lock(_mu);
    _cv.wait_for(lock, backoff, [this] { return _stopping; });
    if (_stopping) return;
    backoff = std::min<std::chrono::milliseconds>(backoff * 2, std::chrono::seconds(30));
  }
}

void supervisor::stop() {
  pid_t pid;
  {
    std::lock_guard<std::mutex> lock(_mu);
    if (_stopping && !_thread.joinable()) return;
    _stopping = true;
    pid = _pid;
  }
  _cv.notify_all();
  if (pid > 0) {
    ::kill(pid, SIGTERM);
    // The supervisor thread reaps it; give it 5 s before SIGKILL.
    for (int i = 0; i < 50; ++i) {
      {
        std::lock_guard<std::mutex> lock(_mu);
        if (_pid == 0) break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    std::lock_guard<std::mutex> lock(_mu);
    if (_pid > 0) ::kill(_pid, SIGKILL);
  }
  if (_thread.joinable()) _thread.join();
}

}  // namespace sr::handoff
