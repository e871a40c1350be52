// Spawns and supervises the fallback sidecar (fallback.spawn = true; DESIGN.md §3:
// `sealrelay-fallback` is looked up next to the `sealrelay` binary). A thread forks and
// execs it with the same config file and working directory, waits for it, and restarts it
// with backoff (0.5 s doubling to 30 s; back to 0.5 s after a run of 60 s). The child dies
// with the relay (PR_SET_PDEATHSIG) and gets SIGTERM, then SIGKILL after 5 s, at stop().
// While it is down the shard clients find no socket and hand-offs are answered
// unavailable: the relay itself keeps working.
#pragma once
#include <condition_variable>
#include <mutex>
#include <string>
#include <sys/types.h>
#include <thread>

#include "sealrelay/handoff/client.hh"
#include "sealrelay/util/result.hh"

namespace sr::handoff {

class supervisor {
 public:
  // `binary`: the sidecar executable; `config_file`: passed as -c.
  supervisor(std::string binary, std::string config_file, shared_status* status);
  ~supervisor();
  supervisor(const supervisor&) = delete;
  supervisor& operator=(const supervisor&) = delete;

  // Check the binary exists and start the first run; an error names the path.
  status start();
  // Stop supervising: SIGTERM the sidecar, SIGKILL after 5 s, join.
  void stop();
  // The running sidecar's pid (0 while none runs).
  pid_t pid() const;

 private:
  void run();
  pid_t spawn();

  std::string _binary, _config;
  shared_status* _status;
  mutable std::mutex _mu;
  std::condition_variable _cv;
  bool _stopping = false;
  pid_t _pid = 0;
  std::thread _thread;
};

// Return "<directory of /proc/self/exe>/sealrelay-fallback".
std::string sidecar_binary_next_to_self();

}  // namespace sr::handoff
