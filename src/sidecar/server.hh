// The sidecar's engine link (issue 9): a unix socket server on fallback.socket that each
// engine shard connects to. One poll loop (run()) accepts, reads and decodes frames
// (wire::decoder) and writes what is queued; a small worker pool, each worker with its own
// fallback::handler (its own escrow store and GnuPG keyring), runs hand-offs, retractions
// and the expiry sweep, and queues the answer on the connection the request came from.
// A broken or misbehaving connection is closed alone; the others keep being served.
// submit_mail() lets any thread (the portal) have a connected engine spool a mail.
#pragma once
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "sealrelay/fallback/audit_event.hh"
#include "sealrelay/fallback/handler.hh"
#include "sealrelay/fallback/protocol.hh"
#include "sealrelay/util/result.hh"

namespace sr::sidecar {

struct server_options {
  std::string socket_path;                      // fallback.socket
  fallback::handler_options handler;            // what each worker's handler gets
  unsigned workers = 2;
  std::chrono::seconds sweep_interval{60};      // escrow expiry sweep (and once at start)
  size_t max_queued = 4096;                     // jobs waiting; beyond it hand-offs fail now
  std::chrono::seconds stale_output{3600};      // outbox files older than this are removed
};

// Have a connected engine spool `mail` (a file in the outbox); true once it is durable,
// false when no engine is connected, it refused, or `timeout` passed. Thread-safe.
using submit_fn = std::function<bool(const fallback::wire::output& mail, std::chrono::milliseconds timeout)>;

class server {
 public:
  // `audit` (may be null) must outlive the server.
  server(server_options opts, fallback::audit_log* audit);
  ~server();  // stops the workers and closes every connection
  server(const server&) = delete;
  server& operator=(const server&) = delete;

  // Bind the socket (a stale one is removed; a live one is an error), mode 0600, and start
  // the workers.
  status open();
  // Serve until stop() or until `signal_fd` (a signalfd, -1 = none) becomes readable.
  void run(int signal_fd = -1);
  // Make run() return (thread-safe).
  void stop();

  // See submit_fn.
  bool submit_mail(const fallback::wire::output& mail, std::chrono::milliseconds timeout);
  // Answer every submit still waiting with false and refuse new ones at once: after run()
  // returned nobody reads the engines' answers, and the portal's workers must not wait out
  // their timeouts while the sidecar stops. Thread-safe.
  void cancel_submits();
  // submit_mail() as a function object, for the portal.
  submit_fn submitter() {
    return [this](const fallback::wire::output& m, std::chrono::milliseconds t) { return submit_mail(m, t); };
  }
  // Engine connections that completed hello.
  size_t engines() const;

 private:
  struct conn;
  struct pending_submit;
  struct job {
    enum class kind : uint8_t { handoff, retract, sweep } what = kind::sweep;
    std::shared_ptr<conn> from;
    fallback::wire::handoff handoff;
    fallback::wire::retract retract;
  };

  void worker_main(unsigned index);
  bool enqueue(job j);
  void queue_sweep();
  void on_readable(const std::shared_ptr<conn>& c);
  bool on_frame(const std::shared_ptr<conn>& c, fallback::wire::frame&& f);
  void flush(const std::shared_ptr<conn>& c);
  void close_conn(const std::shared_ptr<conn>& c, const char* why);
  // Queue `f` on `c`; false when the connection is already closed.
  bool send(const std::shared_ptr<conn>& c, const fallback::wire::frame& f);
  void wake();
  void accept_all();
  void shutdown();

  server_options _opts;
  fallback::audit_log* _audit;
  int _listen_fd = -1;
  int _wake_fd = -1;
  bool _bound = false;

  mutable std::mutex _conns_mu;  // the map; each conn's fields have their own lock
  std::map<uint64_t, std::shared_ptr<conn>> _conns;
  uint64_t _next_conn = 1;
  size_t _rr = 0;  // round robin for submit_mail

  std::mutex _jobs_mu;
  std::condition_variable _jobs_cv;
  std::deque<job> _jobs;
  bool _stopping = false;
  bool _sweep_queued = false;
  std::vector<std::thread> _workers;

  std::mutex _submit_mu;
  std::map<uint64_t, std::shared_ptr<pending_submit>> _submits;
  uint64_t _next_submit = 1;
  bool _submits_cancelled = false;  // under _submit_mu

  std::mutex _stop_mu;
  bool _stop_requested = false;
};

}  // namespace sr::sidecar
