// The loopback world of delivery and policy tests: a DNS fixture, fake MX hosts on
// 127.0.0.2..9 sharing one port (outbound.smtp_port), and the relay between a client and
// them, with retry schedules shortened to seconds. Also the helpers those tests share:
// submit a message, read and wait on the audit log, the queue and the daemon log, and
// look into what an MX session saw. Every wait polls with a deadline.
#pragma once
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "support/harness.hh"
#include "support/peers.hh"

namespace sr::integ {

// Loopback hosts a test may give to fake MX hosts; all share one port.
extern const std::vector<std::string> mx_hosts;

// A port free right now on every one of mx_hosts; 0 when none was found.
uint16_t mx_port();

// [outbound] keys a world sets unless the test names them: retries within a test's lifetime.
using toml_defaults = std::vector<std::pair<std::string, std::string>>;
extern const toml_defaults fast_outbound;

// Relay options that resolve through `dns_address` and deliver to `smtp_port`, with
// `outbound_extra` (raw [outbound] lines) over `defaults` and `extra_toml` appended.
relay_options delivery_options(const std::string& dns_address, uint16_t smtp_port,
                               const std::string& outbound_extra = {}, std::string extra_toml = {},
                               const toml_defaults& defaults = fast_outbound);
// The same for a started DNS fixture.
relay_options delivery_options(const dns_fixture& dns, uint16_t smtp_port, const std::string& outbound_extra = {},
                               std::string extra_toml = {});

// Relay options for mail that must stay queued until a restart: `shards` shards, routes
// from `routes` (route_to() tables), and while no MX answers, the first attempt fails to
// connect and the next is an hour away.
relay_options parked_options(uint16_t smtp_port, unsigned shards, std::string routes);
// A [[route]] table sending `domain` ("*" = every domain) to [ip]:port.
std::string route_to(const std::string& domain, const std::string& ip, uint16_t port);

// Send one message over a fresh raw session (`body` is dot-stuffed here); the queue id,
// or "" with the reply in *why.
std::string submit(const relay& r, const std::string& from, const std::vector<std::string>& rcpts,
                   std::string_view body, std::string* why = nullptr);

// Submit `text` to `rcpt` through tests/tools/smtp_mail_params.py (Python's smtplib): over
// STARTTLS unless `plain`, with `mail_options` on MAIL (e.g. {"REQUIRETLS"}, which swaks
// cannot send). Returns its output: "EHLO 1|0" (REQUIRETLS offered), then "MAIL|RCPT|DATA
// <code> <text>" lines; queued_id() reads the queue id from it.
std::string submit_smtplib(const relay& r, const std::string& from, const std::string& rcpt,
                           const std::string& text, const std::vector<std::string>& mail_options,
                           bool plain = false);

// The relay's audit log (audit.file of the generated config).
std::filesystem::path audit_file(const relay& r);
// Every audit line of queue id `qid`, in order.
std::vector<audit_line> audit_of(const relay& r, const std::string& qid);
// Wait until `pred` holds for at least `n` audit lines; those lines (fewer at the deadline).
std::vector<audit_line> wait_audit(const relay& r, size_t n, const std::function<bool(const audit_line&)>& pred,
                                   std::chrono::milliseconds deadline = 20s);
// The whole audit log, for failure messages.
std::string dump_audit(const relay& r);
// Check the DESIGN.md §5 fields every audit line has whatever happened, and loopback-only peers.
void expect_audit_fields(const audit_line& a);

// Wait until `pred` holds for the relay's log; false at the deadline.
bool wait_log(const relay& r, const std::function<bool(const std::string&)>& pred,
              std::chrono::milliseconds deadline = 10s);
// Poll `sealrelay --list-queue` until `pred(ids)` holds; false at the deadline (*last = listing).
bool wait_queue(const relay& r, const std::function<bool(const std::set<std::string>&)>& pred,
                std::chrono::milliseconds deadline, std::string* last);
// Poll `sealrelay --list-queue` until it lists nothing; false at the deadline.
bool wait_queue_empty(const relay& r, std::chrono::milliseconds deadline, std::string* last);

// True when `s` received the command line `cmd` exactly.
bool has_command(const mx_session& s, std::string_view cmd);
// The commands of `s` joined with " | ", for failure messages.
std::string commands_of(const mx_session& s);

// The pieces of one loopback world, owned for one test; a test fixture derives from it.
// Each start_* adds a gtest failure with the reason when its piece does not start.
class world {
 public:
  world() : _port(mx_port()) {}
  virtual ~world() = default;
  world(const world&) = delete;
  world& operator=(const world&) = delete;

  // Start the DNS fixture with `zone` (dns_zone.py syntax). ldns-testns gives up when its
  // first port is taken ("bind(): Invalid argument", seen when other suites run alongside):
  // start afresh, three times at most.
  bool start_dns(const std::string& zone);
  // Start a fake MX on the shared port; null when it does not start.
  fake_mx* start_mx(fake_mx_options o);
  // Start the relay with `extra_toml` (e.g. [[policy]] tables) and `outbound_extra` over
  // `_outbound_defaults`; null when it does not start.
  relay* start_relay(const std::string& extra_toml, const std::string& outbound_extra = {});

 protected:
  toml_defaults _outbound_defaults = fast_outbound;
  uint16_t _port = 0;   // the MX port shared by every host; 0 when none was free
  std::string _mta_sts = "enabled = false";  // [mta_sts] lines of the relay's config
  std::string _fallback = relay_options{}.fallback;  // [fallback] lines (no sidecar by default)
  std::string _admin_listen;                         // [admin] listen ("" = off)
  std::vector<listener> _listeners;                  // the relay's [[listen]] (empty = one plain)
  std::unique_ptr<dns_fixture> _dns;
  std::vector<std::unique_ptr<fake_mx>> _mxs;
  std::unique_ptr<relay> _relay;
};

}  // namespace sr::integ
