// The sidecar's hand-off handler (issue 9, DESIGN.md §7): given one wire::handoff it reads
// the named spool record (pread; header, CRC32C, envelope and queue id checked), then walks
// the policy's chain for each recipient — pgp, smime, escrow, defer — and writes every mail
// it makes as a complete RFC 5322 file into the outbox (temp name, then rename), named in
// the result's outputs for the engine to spool. Synchronous (gpg, the store): one handler
// per worker thread, never shared. A method that does not apply (no key, no certificate)
// passes to the next; one that fails (store down, gpg broken, outbox full) fails the
// recipient, so the engine keeps the message and hands it again later.
#pragma once
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "sealrelay/fallback/audit_event.hh"
#include "sealrelay/fallback/escrow_store.hh"
#include "sealrelay/fallback/pgp.hh"
#include "sealrelay/fallback/protocol.hh"
#include "sealrelay/spool/keyring.hh"
#include "sealrelay/util/result.hh"

namespace sr::fallback {

// Open the escrow store `spec` names: "sqlite" (or "") = SQLite at <state_dir>/escrow.db,
// "postgresql://..." or "postgres://..." = PostgreSQL with that URI; anything else an error.
result<std::unique_ptr<escrow_store>> open_escrow_store(std::string_view spec,
                                                        std::string_view state_dir);

// What a handler needs from the config (built once by the sidecar's main).
struct handler_options {
  std::string outbox_dir;          // <state_dir>/fallback/outbox, exists, mode 0700
  std::string hostname;            // server.hostname: notice sender and Message-ID domain
  std::string portal_url;          // fallback.portal_url
  std::chrono::seconds escrow_expiry{30 * 24 * 3600};
  std::string pgp_home;            // fallback.pgp_home
  pgp_trust trust = pgp_trust::gnupg;
  std::string smime_dir;           // fallback.smime_dir
  std::string store_spec = "sqlite";  // fallback.store
  std::string state_dir;           // server.state_dir (where the SQLite store lives)
  uint64_t max_record = 256u << 20;   // larger hand-offs are refused as corrupt
  std::shared_ptr<const spool::keyring> spool_keys;  // opens sealed spool segments ([spool])
};

class handler {
 public:
  using clock_fn = std::function<seconds_t()>;
  // `audit` may be null (no audit lines); it must outlive the handler. The store and the
  // keyring are opened on first use and opened again after a failure to open.
  handler(handler_options opts, audit_log* audit, clock_fn now = {});
  ~handler();
  handler(const handler&) = delete;
  handler& operator=(const handler&) = delete;

  // Handle one hand-off; the result answers every recipient in h.rcpts order.
  wire::result handle(const wire::handoff& h);

  // Retract every escrowed copy of `msg_id` (audit "retraction" per record).
  wire::retracted retract(const wire::retract& r);

  // Expire what is due now (audit "expiry" per record); returns how many, or the error.
  result<size_t> sweep();

  // The store this handler uses (opened now if needed); null with `why` when it fails.
  escrow_store* store(std::string* why = nullptr);

 private:
  struct rcpt_outcome;
  pgp_keyring* keyring(std::string* why);
  rcpt_outcome one_rcpt(const wire::handoff& h, std::string_view rcpt, std::string_view message,
                        std::string_view msg_id);
  void audit(audit_event e);

  handler_options _opts;
  audit_log* _audit;
  clock_fn _now;
  std::unique_ptr<escrow_store> _store;
  std::optional<pgp_keyring> _ring;
};

// Write `bytes` (a complete RFC 5322 mail) into the outbox as `<tag>-<pid>-<n>.eml`, unique
// within the process, through a temp name and rename (the engine never sees half a file);
// returns its path for wire::output::path. `tag` keeps only [0-9A-Za-z._-]. Thread-safe.
// The portal writes its code mails with it before submit_mail().
result<std::string> write_outbox(std::string_view outbox_dir, std::string_view tag, std::string_view bytes);

// Return the Message-ID of an RFC 5322 message's header section without <> ("" if none).
std::string header_message_id(std::string_view message);

}  // namespace sr::fallback
