// A shard's TLS-RPT reporter: counts the shard's outbound sessions (a delivery::
// session_observer) in its own collector, and at the end of each `interval` window
// (aligned to the UNIX epoch: 24h = UTC days) turns each counted domain into one pending
// report. Each is sent once its `_smtp._tls` record is found through the shard's resolver:
// mailto: URIs get one message spooled through the shard's intake (kind tlsrpt), https:
// URIs a POST through `post`. Failed rounds are retried with backoff, a few times. The
// state (counts, pending reports, URIs already reached) is saved to
// <state_dir>/tlsrpt/shard-<i>.state every few seconds and at drain, and read back at start
// (with the files of shards that no longer run, as the spool adopts their partitions).
// Everything runs on the shard's thread; nothing is shared with other shards.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "sealrelay/core/shard.hh"
#include "sealrelay/delivery/agent.hh"
#include "sealrelay/dns/resolver.hh"
#include "sealrelay/spool/intake.hh"
#include "sealrelay/tlsrpt/collector.hh"
#include "sealrelay/tlsrpt/record.hh"
#include "sealrelay/tlsrpt/state.hh"
#include "sealrelay/util/result.hh"

namespace sr::tlsrpt {

// One HTTPS POST of a report (application/tlsrpt+gzip).
struct post_request {
  std::string host;
  uint16_t port = 443;
  std::string path = "/";
  std::string body;  // the gzip report
};
// Send `r`; `done(ok, detail)` runs later, on the shard thread (ok = a 2xx answer).
using post_fn = std::function<void(post_request r, std::function<void(bool ok, const std::string& detail)> done)>;

struct reporter_options {
  std::string organization, contact;  // organization-name, contact-info
  std::string from;                   // sender of the mailed reports
  std::string submitter;              // our domain (server.hostname)
  int64_t interval_ms = 86400000;
  std::string state_dir;              // <server.state_dir>/tlsrpt
  unsigned shard = 0, shards = 1;     // this shard and how many run (adopting state files)
  unsigned max_tries = 5;             // sending rounds before a report is given up
  unsigned max_sending = 16;          // reports being sent at once
  int64_t save_every_ms = 5000;       // how stale the saved counts may get
  std::function<int64_t()> clock;     // wall-clock UNIX ms (tests move time); default: the system clock
};

class reporter final : public delivery::session_observer {
 public:
  // `post` may be empty (no HTTPS client): https: URIs are then skipped with a warning.
  reporter(core::shard& sh, dns::resolver& res, spool::intake& intake, reporter_options o, post_fn post = {});
  ~reporter();
  reporter(const reporter&) = delete;
  reporter& operator=(const reporter&) = delete;

  // Read the saved state (and that of shards that no longer run) and start the tick.
  status start();
  // delivery::session_observer: count one session.
  void session_done(std::string_view domain, const delivery::session_report& r,
                    const delivery::session_end& e) override;
  // Count an MTA-STS policy failure for `domain` (sts-policy-fetch-error, sts-policy-invalid,
  // sts-webpki-invalid); `info` goes to additional-information.
  void policy_failure(std::string_view domain, report::result_type type, std::string_view info = {});
  // Save the state now (drain).
  void finish();

  // Advance to wall-clock time `now_ms`: close a window that ended, start due sends, save
  // when due. The shard tick calls it; tests call it with their own clock.
  void tick(int64_t now_ms);
  const collector& counts() const { return _counts; }
  size_t pending() const { return _pending.size(); }
  int64_t window_start_ms() const { return _window_start; }
  // Reports sent (every URI reached) and given up since start.
  uint64_t sent() const { return _sent; }
  uint64_t given_up() const { return _given_up; }

 private:
  struct entry {
    pending_report r;
    bool busy = false;
    int64_t next_try_ms = 0;
    unsigned outstanding = 0;  // sends of this round not answered yet
    bool round_failed = false;
  };
  std::string state_path(unsigned shard) const;
  state snapshot() const;
  void adopt(state&& s);
  void close_window(int64_t now_ms);
  void begin_round(uint64_t id);
  void on_record(uint64_t id, const dns::txt_result& r);
  void send_done(uint64_t id, const std::string& uri, bool ok, const std::string& detail);
  void end_round(uint64_t id);
  void drop(uint64_t id, const char* why, bool given_up);
  void save_now();

  core::shard& _shard;
  dns::resolver& _res;
  spool::intake& _intake;
  reporter_options _o;
  post_fn _post;
  collector _counts;
  int64_t _window_start = 0;
  int64_t _now = 0;
  std::map<uint64_t, entry> _pending;  // by id, in creation order
  uint64_t _next_id = 1;
  unsigned _sending = 0;
  bool _dirty = false;
  int64_t _last_save = 0;
  std::vector<std::string> _adopted_files;  // removed after the first save of our own
  uint64_t _sent = 0, _given_up = 0;
  std::shared_ptr<bool> _alive = std::make_shared<bool>(true);  // callbacks after destruction
};

}  // namespace sr::tlsrpt
