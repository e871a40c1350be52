// The per-shard composition root of the relay: it builds and wires, on one shard,
// the spool intake, the inbound server, the resolver, the audit writer, the delivery
// queue and its cross-shard dispatcher, the delivery agent and the policy reader, and
// publishes their counters as metrics. No module below knows the others through it;
// each gets only the references it needs, built in dependency order.
#pragma once
#include <atomic>
#include <memory>

#include "sealrelay/config/config.hh"
#include "sealrelay/core/shard.hh"
#include "sealrelay/dkim/signers.hh"
#include "sealrelay/queue/dispatch.hh"
#include "sealrelay/queue/job.hh"
#include "sealrelay/server/runtime.hh"
#include "sealrelay/server/server.hh"

namespace sr::admin {
struct relay_metrics;
}
namespace sr::auth {
class hasher;
}
namespace sr::audit {
class writer;
}
namespace sr::delivery {
class agent;
}
namespace sr::dns {
class resolver;
}
namespace sr::sts {
class cache;
class fetcher;
class resolver;
}
namespace sr::policy {
class registry;
class reader;
}
namespace sr::queue {
class scheduler;
}
namespace sr::spool {
class keyring;
struct message_meta;
struct message_location;
class store;
}
namespace sr::server {
class intake_store;
class authenticator;
class user_directory;
}
namespace sr::dkim {
class sign_pool;
class signing_intake;
}
namespace sr::tlsrpt {
class reporter;
}
namespace sr::https {
class client;
}
namespace sr::handoff {
class client;
struct shared_status;
}
namespace sr::tls {
class context;
}
namespace sr::inject {
struct shared_state;
class shard_server;
}
namespace sr::suppress {
class list;
}

namespace sr::control {
struct request;
}

namespace sr::relay {

class control_hub;
struct shard_answer;

// What every shard of the relay shares (built by the daemon before the shards start).
struct process_state {
  explicit process_state(const config::config& c);
  const config::config& cfg;
  server::shared_state inbound;          // caps, drain flag, inbound counters
  queue::shard_mailboxes mail;           // cross-shard messages of the queue
  int audit_fd = -1;                     // audit log (-1: none)
  std::atomic<bool> audit_torn{false};   // a full disk tore a line of it (audit::writer::options::torn)
  admin::relay_metrics* metrics = nullptr;   // published by each shard on its tick
  policy::registry* policies = nullptr;      // TLS policy table; SIGHUP publishes a new one
  std::atomic<uint64_t> recovered{0};        // messages found in the spools at start
  // The fallback sidecar's shared state; null when no forced policy needs the sidecar
  // (then hand-offs are answered unavailable without a link).
  handoff::shared_status* sidecar = nullptr;
  // Submission AUTH (null without a submission listener): the password checkers every
  // shard shares, and the users file (SIGHUP publishes a new one).
  auth::hasher* hasher = nullptr;
  server::user_directory* users = nullptr;
  // DKIM: the [[dkim]] entries (each shard loads its own signers from them) and the RSA
  // signing pool every shard hands its RSA signatures to (null: no RSA entry).
  std::vector<dkim::key_entry> dkim_keys;
  dkim::sign_pool* dkim_pool = nullptr;
  // The HTTP injection API ([http] listen); null when it is off.
  inject::shared_state* http = nullptr;
  // The spool's keys ([spool]): seal new segments, open sealed ones; null = none.
  std::shared_ptr<const spool::keyring> spool_keys;
  // The suppression list ([suppression] enabled; null when off).
  suppress::list* suppression = nullptr;
  // sealrelay-queue's requests into the shards (relay/control.hh); null = no control socket.
  control_hub* control = nullptr;
};

// Return cfg's [[dkim]] entries as the dkim module takes them.
std::vector<dkim::key_entry> dkim_keys(const config::config& cfg);
// Load every [[dkim]] key once (PEM; RSA >= 1024 bits or Ed25519; the configured algorithm)
// before anything starts. The error reads "LINE: dkim[N].key_file: ..." (the caller adds the
// file name); RSA keys under 2048 bits are logged as a warning.
status check_dkim(const config::config& cfg);

// Return whether `cfg` has a forced [[policy]] whose fallback chain needs the sidecar
// (anything but "defer").
bool needs_sidecar(const config::config& cfg);

class shard_root final : public server::shard_unit {
 public:
  shard_root(core::shard& sh, process_state& ps);
  ~shard_root() override;

  status start() override;
  void begin_drain() override;
  bool idle() const override;
  void abort_all() override;
  size_t connection_count() const override;
  void finish() override;

 private:
  status open_spool();
  status start_delivery();
  status start_mta_sts();
  status start_tlsrpt();
  https::client* https_client(std::string* why);
  spool::intake& intake();
  void queue_durable(spool::message_meta& meta, const spool::message_location& loc,
                     std::span<const uint32_t> done);
  void publish_metrics();
  void start_auth();
  void start_shaping();
  void start_suppression();
  // Answer a sealrelay-queue request from this shard's queue (relay/control.hh).
  void on_control(const control::request& r, shard_answer& out);
  // Audit recipients the operator deleted (outcome "deleted").
  void audit_deleted(const queue::job& j);

  core::shard& _shard;
  process_state& _ps;
  // Declaration order is construction order; destruction runs backwards, so users go
  // before what they use (the agent before the scheduler, the server before the store).
  std::unique_ptr<spool::store> _store;
  // This shard's view of the suppression list (null when off): refuses RCPTs for the server,
  // screens and lists recipients for the agent; declared before both, so it outlives them.
  struct suppression_view;
  std::unique_ptr<suppression_view> _suppression;
  std::unique_ptr<server::authenticator> _auth;  // submission AUTH; outlives the server's connections
  // DKIM signing in front of _store (null without [[dkim]]): every producer of this shard's
  // mail (inbound SMTP, the HTTP API, DSNs, TLS-RPT, the sidecar's mails) submits through intake().
  std::unique_ptr<dkim::signing_intake> _signing;
  std::unique_ptr<server::intake_store> _inbound_store;  // inbound SMTP onto intake()
  std::unique_ptr<server::shard_server> _server;
  // The HTTP injection API on this shard (null when off): into intake(), on _server's buffers.
  std::unique_ptr<inject::shard_server> _http;
  std::unique_ptr<dns::resolver> _resolver;
  std::unique_ptr<audit::writer> _audit;
  std::unique_ptr<queue::scheduler> _sched;
  std::unique_ptr<queue::dispatcher> _dispatch;
  std::unique_ptr<policy::reader> _policy_reader;
  std::unique_ptr<tls::context> _https_ctx;   // TLS 1.2+, tls.ca_file (WebPKI-style checks)
  // The shard's HTTPS client (MTA-STS policy fetches, TLS-RPT POSTs), made on first need.
  std::unique_ptr<https::client> _https;
  std::unique_ptr<tlsrpt::reporter> _tlsrpt;  // TLS-RPT (null when off); outlives the agent that reports to it
  // MTA-STS (when mta_sts.enabled): the agent asks _sts, which fetches through _https.
  std::unique_ptr<sts::fetcher> _sts_fetcher;
  std::unique_ptr<sts::fetcher> _sts_report_fetcher;  // _sts_fetcher telling _tlsrpt of failures (TLS-RPT on)
  std::unique_ptr<sts::cache> _sts_cache;
  std::unique_ptr<sts::resolver> _sts;
  std::unique_ptr<delivery::agent> _agent;
  std::unique_ptr<handoff::client> _handoff;  // the agent's fallback; destroyed before it
};

}  // namespace sr::relay
