// Integration-test harness: runs the real `sealrelay` binary on loopback and talks to it.
// Each test gets a temp dir (config, state_dir, daemon stderr), free loopback ports, a
// daemon process it owns by PID, `swaks` runs with transcript and exit code, and a raw
// TCP client (optionally TLS through wolfSSL) for byte-exact cases swaks cannot express.
// Every wait has a deadline; nothing here sleeps to decide an outcome.
#pragma once
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "support/temp_dir.hh"

namespace sr::integ {

using namespace std::chrono_literals;
using clock = std::chrono::steady_clock;

// Paths handed over by meson through the environment (SEALRELAY_BIN, SEALRELAY_SRC).
std::string relay_binary();
std::filesystem::path source_root();

// A fresh directory under $TMPDIR, removed with its contents on destruction.
using test::temp_dir;

// Return a loopback TCP port that is free right now (bound and released by us).
uint16_t free_port();

// One [[listen]] entry of the generated config.
struct listener {
  std::string tls = "none";          // none | starttls | implicit
  std::string mode = "relay";        // relay | submission (then allow_relay_from is not written)
  bool require_tls = false;
  std::string allow_relay_from = R"(["127.0.0.0/8"])";  // TOML array text
  uint16_t port = 0;                 // 0 = pick a free one
};

// What a test varies in the generated config; everything else is fixed and loopback-only.
struct relay_options {
  std::vector<listener> listeners{listener{}};
  unsigned shards = 2;
  std::string drain_timeout = "10s";
  std::vector<std::string> limits;   // raw TOML lines for [limits], e.g. "max_recipients = 3"
  // Delivery: DNS goes only to loopback (default: a port where nothing answers, so
  // accepted mail stays queued), the MX port, and raw TOML appended at the end
  // (e.g. [[route]] or [outbound] tables).
  std::string dns_resolver = "127.0.0.1:9";
  uint16_t smtp_port = 9;
  std::string outbound_extra;        // raw lines for [outbound]
  std::string extra_toml;
  std::string audit_file;            // [audit] file; "" = state_dir/audit.jsonl
  std::string admin_listen;          // [admin] listen, e.g. "127.0.0.1:<port>"; "" = off
  // Raw lines for [mta_sts]. Off by default here: most tests route mail without DNS, where
  // a TXT lookup would only wait for its timeout (MTA-STS tests turn it on).
  std::string mta_sts = "enabled = false";
  // Raw lines for [fallback] (socket is always <dir>/fallback.sock). By default no sidecar
  // runs and no portal listens: a forced domain's failed message stays queued (audit
  // fallback-unavailable). Fallback tests set spawn = true and their portal, store, keys.
  std::string fallback = "spawn = false\nportal_listen = \"\"";
  // > 0: the daemon's RLIMIT_NOFILE (soft and hard), to reach its descriptor limit with a
  // few hundred connections.
  unsigned fd_limit = 0;
};

// Milliseconds left until `until` (0 when it has passed), for poll().
int remaining_ms(clock::time_point until);
// A waitpid() status as an exit code (128+signal when killed).
int decode_status(int status);
// The whole content of a file ("" when unreadable).
std::string read_file(const std::filesystem::path& p);
// Write `text` to `path` with mode 0600, as the relay wants its secrets (tokens, users).
void write_private_file(const std::filesystem::path& path, const std::string& text);

// The outcome of a child process: exit code (128+signal when killed) and its output.
struct run_result {
  int exit_code = -1;
  std::string output;   // stdout and stderr interleaved
};

// Run argv with stdout+stderr captured; kill it with SIGKILL after `timeout`.
run_result run(const std::vector<std::string>& argv, std::chrono::milliseconds timeout = 30s,
               const std::filesystem::path& cwd = {});

// One line of `sealrelay --list-queue`: "<queue_id> <bytes> <from> <rcpt1,rcpt2,...>".
struct queued_message {
  std::string id;
  uint64_t bytes = 0;
  std::string from;
  std::vector<std::string> rcpts;
};

// The daemon under test with its config and state in a temp dir.
class relay {
 public:
  explicit relay(relay_options opts = {});
  ~relay();   // SIGKILLs a daemon still running
  relay(const relay&) = delete;
  relay& operator=(const relay&) = delete;

  // Spawn `sealrelay -c cfg` and wait until it answers (220 on a plain/STARTTLS
  // listener, a TCP accept on an implicit-TLS one). False with the reason in error().
  bool start(std::chrono::milliseconds deadline = 15s);
  // Send `sig` to the daemon (by PID).
  void signal(int sig);
  // Wait for the daemon to exit; its exit code (128+signal), or nullopt at the deadline.
  std::optional<int> wait_exit(std::chrono::milliseconds deadline = 20s);
  // SIGTERM, wait, SIGKILL if still running; returns the exit code.
  int stop(std::chrono::milliseconds deadline = 20s);
  // SIGKILL and reap (the crash test).
  void kill9();
  bool running() const { return _pid > 0; }
  pid_t pid() const { return _pid; }

  uint16_t port(size_t listener_index = 0) const { return _opts.listeners.at(listener_index).port; }
  const std::filesystem::path& dir() const { return _dir.path(); }
  std::filesystem::path config_path() const { return _dir.path() / "sealrelay.toml"; }
  std::filesystem::path state_dir() const { return _dir.path() / "var"; }
  // The daemon's stderr so far (all runs), for failure messages.
  std::string log() const;
  const std::string& error() const { return _error; }

  // `sealrelay --list-queue -c cfg` (daemon stopped): parsed lines, or nullopt on failure.
  std::optional<std::vector<queued_message>> list_queue(std::string* raw = nullptr) const;
  // True when some regular file under state_dir contains `needle` (the body reached disk).
  bool spool_contains(std::string_view needle, std::string* file_text = nullptr) const;

  // `swaks --server 127.0.0.1 --port <port(listener)> ...extra` with a 30 s deadline.
  run_result swaks(const std::vector<std::string>& extra, size_t listener_index = 0) const;

 private:
  void write_config();

  relay_options _opts;
  temp_dir _dir;
  pid_t _pid = -1;
  std::string _error;
};

// The queue id from "250 2.0.0 Ok: queued as ID" anywhere in `text` (first match).
std::optional<std::string> queued_id(std::string_view text);

// A plain TCP client (optionally upgraded to TLS) that sends exact bytes and reads SMTP
// replies with deadlines. Replies are returned whole ("250-...\r\n250 ...\r\n").
// A saved client TLS session (a WOLFSSL_SESSION, freed with the last copy); empty = none.
using tls_ticket = std::shared_ptr<void>;

class raw_client {
 public:
  raw_client() = default;
  ~raw_client();
  raw_client(const raw_client&) = delete;
  raw_client& operator=(const raw_client&) = delete;

  // Connect to 127.0.0.1:port; false when the connection is refused or fails.
  bool connect(uint16_t port, std::chrono::milliseconds deadline = 5s);
  // Send bytes exactly as given, in one write where the kernel allows.
  bool send(std::string_view bytes);
  // Read one complete reply; nullopt at EOF or the deadline (see eof()).
  std::optional<std::string> read_reply(std::chrono::milliseconds deadline = 10s);
  // Read replies until EOF or the deadline; returns every complete reply seen.
  std::vector<std::string> read_until_eof(std::chrono::milliseconds deadline = 10s);
  // Bytes that arrive within `deadline` (used only to show that nothing arrives).
  std::string read_for(std::chrono::milliseconds deadline);
  // Send "CMD\r\n" and read its reply.
  std::optional<std::string> command(std::string_view cmd, std::chrono::milliseconds deadline = 10s);
  // Do a TLS client handshake over the connection (after a 220 to STARTTLS, or at once
  // for implicit TLS). Bytes already buffered from the server are an error.
  bool start_tls(std::chrono::milliseconds deadline = 10s);
  // The same, offering a session saved from an earlier connection (resumption).
  bool start_tls(const tls_ticket& resume, std::chrono::milliseconds deadline = 10s);
  bool tls() const { return _ssl != nullptr; }
  // True when the handshake resumed the offered session (wolfSSL_session_reused).
  bool tls_resumed() const;
  // A copy of the current TLS session (its ticket: TLS 1.3 sends it after the handshake,
  // so read a reply first); empty when there is none.
  tls_ticket save_tls_session() const;
  bool eof() const { return _eof; }
  // Bytes received but not yet returned as a complete reply.
  const std::string& pending() const { return _buf; }
  void close();

 private:
  // Receive more bytes into _buf; false at EOF, error or deadline.
  bool fill(clock::time_point until);

  int _fd = -1;
  void* _ctx = nullptr;   // WOLFSSL_CTX*
  void* _ssl = nullptr;   // WOLFSSL*
  std::string _buf;
  bool _eof = false;
};

// Reply code of a reply ("250-...\r\n250 Ok\r\n" -> 250), 0 when malformed.
int reply_code(std::string_view reply);
// True when `reply` starts with `prefix` (e.g. "550 5.6.0").
bool starts_with(std::string_view reply, std::string_view prefix);
// True when `tail` ends `s`.
bool ends_with(std::string_view s, std::string_view tail);
// True when `needle` occurs in `hay`.
bool contains(std::string_view hay, std::string_view needle);
// `what` made unique to this process and moment ("what-PID-TICKS"), for markers and ids.
std::string unique(std::string_view what);
// The dot-stuffed form of `body` (CRLF lines) for the DATA phase.
std::string dot_stuff(std::string_view body);

// Default relay options with `limits` as the [limits] lines.
relay_options with_limits(std::vector<std::string> limits);

// Connect, read the 220 greeting and say EHLO; the EHLO reply goes to *ehlo. False when
// any step fails or answers otherwise.
bool open_session(raw_client& c, uint16_t port, std::string* ehlo = nullptr);

// Open a session (open_session) and start a transaction up to DATA's 354: MAIL FROM:<from>,
// RCPT TO:<rcpt>, DATA. False with the failing step or reply in *why.
bool open_data(raw_client& c, uint16_t port, std::string_view from, std::string_view rcpt,
               std::string* why = nullptr);

// One transaction on an open session: MAIL, RCPT..., DATA, body, ".". Returns the first
// reply that is not 250/354, else the reply to the final dot (nullopt on EOF/deadline).
// `body` must use CRLF line ends, end with CRLF and be dot-stuffed by the caller.
std::optional<std::string> send_message(raw_client& c, std::string_view from,
                                        const std::vector<std::string>& rcpts,
                                        std::string_view body);

// GET `path` from the relay's admin endpoint on `port` (HTTP/1.1, Connection: close): the
// whole response, headers included ("" when nothing answered within 2 s).
std::string admin_get(uint16_t port, const std::string& path);
// The value of one series ("name{label=\"v\"}", or a name without labels) in a /metrics
// text; -1 when it is absent.
double metric_sample(const std::string& text, const std::string& series);

}  // namespace sr::integ
