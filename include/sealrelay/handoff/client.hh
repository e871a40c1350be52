// The engine's side of the fallback sidecar (DESIGN.md §2, issue 9): one client per shard,
// implementing policy::fallback_handoff over the unix socket fallback.socket with the
// versioned wire protocol (sealrelay/fallback/protocol.hh). The shard's io_uring watches
// the socket (poll); frames are read and written with non-blocking calls on the shard
// thread.
//
// Contract:
// - A hand-off names the message's spool record (absolute segment path, offset, length);
//   the message never crosses the socket.
// - The engine keeps the message until the sidecar's result arrives AND every mail the
//   result names (PGP/S/MIME copy, escrow notice) is durable in this shard's spool; only
//   then are the recipients answered (and marked done by the queue). A recipient whose
//   mail could not be spooled, and every recipient of a hand-off the sidecar does not
//   answer in time, on a dead link or while the sidecar is down, is answered `unavailable`
//   (audit: deferred, fallback-unavailable) and stays queued: handled twice at worst,
//   never zero times.
// - The sidecar may ask the engine to spool a mail of its own (the portal's code mail:
//   `submit`); it is answered `submitted` once durable.
// - Reconnects every reconnect_ms while the sidecar is away; the engine never waits for it.
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "sealrelay/core/shard.hh"
#include "sealrelay/fallback/protocol.hh"
#include "sealrelay/policy/fallback.hh"
#include "sealrelay/spool/intake.hh"

namespace sr::handoff {

// What every shard's client shares with the admin thread (/healthz, /metrics).
struct shared_status {
  std::atomic<unsigned> links_up{0};    // shard clients whose sidecar link is up (hello_ok)
  std::atomic<uint64_t> restarts{0};    // sidecar restarts by the supervisor
};

struct client_stats {
  uint64_t handed = 0;           // hand-offs sent to the sidecar
  uint64_t unavailable = 0;      // hand-offs answered unavailable (down, full, timed out, failed)
  uint64_t timed_out = 0;        // no result within answer_timeout_ms
  uint64_t outcomes_pgp = 0, outcomes_smime = 0, outcomes_escrowed = 0, outcomes_defer = 0;
  uint64_t outputs_spooled = 0;  // sidecar mails made durable
  uint64_t outputs_failed = 0;   // sidecar mails that could not be read or spooled
  uint64_t submits = 0;          // portal mails spooled on the sidecar's request
  uint64_t connects = 0, disconnects = 0;
};

class client final : public policy::fallback_handoff {
 public:
  struct options {
    std::string socket;        // fallback.socket
    std::string outbox;        // <state_dir>/fallback/outbox: the only place outputs may be read
    std::string node;          // server.hostname (hello)
    uint64_t answer_timeout_ms = 120'000;
    uint64_t reconnect_ms = 1000;
    uint64_t hello_timeout_ms = 5000;
    size_t max_pending = 10'000;
  };

  client(core::shard& sh, spool::intake& in, options opt, shared_status* status = nullptr);
  ~client() override;
  client(const client&) = delete;
  client& operator=(const client&) = delete;

  // Connect now and then on every tick while the link is down; expire late answers.
  void start();
  void hand_off(const policy::handoff_request& req, policy::handoff_completion& done) override;

  bool up() const { return _up; }
  size_t pending() const { return _pending.size(); }
  const client_stats& stats() const { return _stats; }

 private:
  struct poll_op;
  struct pending_handoff {
    policy::handoff_completion* done = nullptr;
    uint64_t deadline_ms = 0;
    std::vector<std::string> rcpts;
  };
  struct result_op;

  void tick();
  void connect_now();
  void disconnect(const char* why);
  void arm_poll(bool out);
  void on_poll(bool out, int res);
  void read_all();
  void flush();
  void send(const fallback::wire::frame& f);
  void on_frame(fallback::wire::frame& f);
  void on_result(fallback::wire::result& r);
  void on_submit(fallback::wire::submit& s);
  // Read an output file (only under the outbox) and spool it; `stored(ok)` once durable.
  void spool_output(const fallback::wire::output& o, std::function<void(bool)> stored);
  void answer_unavailable(pending_handoff& p);
  void set_up(bool up);

  core::shard& _shard;
  spool::intake& _intake;
  options _opt;
  shared_status* _status;
  std::string _cwd;                     // to make relative segment paths absolute
  int _fd = -1;
  uint64_t _gen = 0;                    // link generation: completions of older links are ignored
  poll_op* _in_op = nullptr;            // POLLIN armed on the current link
  poll_op* _out_op = nullptr;           // POLLOUT armed while output waits
  bool _up = false;                     // hello_ok received on the current link
  uint64_t _connected_ms = 0;
  uint64_t _started_ms = 0;
  uint64_t _next_connect_ms = 0;
  uint64_t _next_request = 1;
  std::string _out;
  fallback::wire::decoder _dec;
  std::unordered_map<uint64_t, pending_handoff> _pending;
  std::shared_ptr<bool> _alive = std::make_shared<bool>(true);  // spool callbacks check it
  client_stats _stats;
  bool _logged_down = false;
};

// Ask the sidecar at `socket` to retract every escrowed copy of `msg_id` (blocking, for the
// admin thread): the number of records retracted, or why it could not be done.
result<uint32_t> retract(const std::string& socket, std::string_view msg_id, unsigned timeout_ms);

// Parse the body of POST /escrow/retract: a JSON object with one string member "msg_id"
// (<> around it are dropped); strict: anything else, control characters, or an empty id
// is an error saying what is wrong.
result<std::string> retract_request_msg_id(std::string_view json);

}  // namespace sr::handoff
