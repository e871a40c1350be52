// Test peers for delivery and policy tests: the scriptable fake MX (tests/tools/fake_mx.py),
// the loopback DNS fixture (tests/tools/dns_zone.py over ldns-testns), the DNSSEC world
// (tests/tools/dnssec_world.py: nsd + a validating unbound) and the HTTPS host
// (tests/tools/https_host.py), each a child process owned by PID: started with fork/exec, ready when it prints "ready", stopped with
// SIGTERM (SIGKILL after a deadline) on destruction, and killed with the test binary if it
// dies (PR_SET_PDEATHSIG). What the MX received is read back from its JSON-lines records.
// Every wait has a deadline; nothing here sleeps to decide an outcome.
#pragma once
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "support/harness.hh"

namespace sr::integ {

// The python3 that runs the tools ($SEALRELAY_PYTHON, else /usr/bin/python3).
std::string python_binary();
// tests/tools/<name> under the source root.
std::filesystem::path tool_path(std::string_view name);
// A TCP port free right now on every one of `hosts` (e.g. 127.0.0.2 and 127.0.0.3 share
// outbound.smtp_port); 0 when none was found.
uint16_t free_port_on(const std::vector<std::string>& hosts);

// A helper process that prints a line starting with "ready" on stdout once it serves.
class peer_process {
 public:
  peer_process() = default;
  ~peer_process();   // stop()
  peer_process(const peer_process&) = delete;
  peer_process& operator=(const peer_process&) = delete;

  // Spawn argv (stderr to `log_file`) and wait for its ready line, returned in *ready_line.
  // False with the reason in error() when it exits or the deadline passes first.
  bool start(const std::vector<std::string>& argv, const std::filesystem::path& log_file,
             std::chrono::milliseconds deadline, std::string* ready_line = nullptr);
  // SIGTERM, reap within `deadline`, else SIGKILL; returns the exit code (128+signal), -1 if none ran.
  int stop(std::chrono::milliseconds deadline = 5s);
  bool running() const { return _pid > 0; }
  pid_t pid() const { return _pid; }
  const std::string& error() const { return _error; }
  // The process's stderr so far.
  std::string log() const;

 private:
  pid_t _pid = -1;
  std::filesystem::path _log;
  std::string _error;
};

// Command-line options of fake_mx.py, one field per option (empty/negative = not given).
struct fake_mx_options {
  std::vector<std::string> hosts{"127.0.0.2"};   // loopback addresses, all on port()
  uint16_t port = 0;                 // 0 = a port free on every host
  std::string cert = "server";       // tests/certs/<cert>.crt/.key; "" = no TLS at all
  bool no_starttls = false;          // never advertise or accept STARTTLS
  std::string starttls_reply{};        // e.g. "454 4.7.0 TLS not available"
  bool tls_abort = false;            // 220 to STARTTLS, then reset during the handshake
  std::string tls_min{}, tls_max{};      // "1.0" .. "1.3"
  std::string ciphers{};               // OpenSSL (or wolfSSL) cipher list, TLS <= 1.2 suites
  std::string tls_backend{};           // "openssl" (default) or "wolfssl" (3DES, RC4; no TLS 1.0)
  int strip_starttls_after = -1;     // advertise STARTTLS on the first N connections only
  std::vector<std::string> replies{};       // --reply STAGE=CODE[:TEXT][xN], e.g. "rcpt=450x1"
  std::vector<std::string> rcpt_replies{};  // --rcpt-reply ADDR=CODE[:TEXT][xN]
  std::vector<std::string> delays{};        // --delay STAGE=SECONDS
  bool silent = false;               // accept, never greet
  std::string hostname{};              // greeting/EHLO name (default mx.test)
  uint64_t size = 0;                 // SIZE limit (default 50 MiB)
  bool no_pipelining = false;
  bool requiretls = false;           // advertise REQUIRETLS under TLS, accept it on MAIL (RFC 8689)
  std::vector<std::string> extra_args{};   // appended verbatim
};

// One DATA transaction the fake MX received (a line of its --record file).
struct mx_message {
  std::string mx;                    // "127.0.0.2:2525": which listener took it
  int conn = 0;                      // connection number within the fake MX process
  std::string peer;                  // the client's address ("127.0.0.3"): the relay's source
  std::string helo;
  std::string mail_from;
  std::vector<std::string> mail_params;   // "SIZE=123", "BODY=8BITMIME"
  std::vector<std::string> rcpts;    // RCPTs accepted in this transaction
  std::string data;                  // dot-unstuffed message text, CRLF line ends as sent
  uint64_t size = 0;
  bool tls = false;
  std::string tls_version;           // "TLSv1.3", "TLSv1", ...
  std::string cipher;
  int cipher_bits = 0;
  bool bare_lf = false;              // a LF without CR was in the DATA bytes
  bool bare_cr = false;              // a CR without LF was in the DATA bytes
  bool accepted = false;             // the final reply was 250
  int reply = 0;                     // code sent after the dot (0: connection dropped by rule)
  double ts = 0;
};

// One connection the fake MX served (a line of its --sessions file), written at close.
struct mx_session {
  std::string mx;
  int conn = 0;
  std::string peer;                  // the client's address: the relay's source address
  std::string helo;                  // the last EHLO/HELO argument ("" when none came)
  bool tls = false;
  std::string tls_version;
  std::string cipher;
  int cipher_bits = 0;
  std::string tls_error;             // the server-side handshake error, if any
  bool tls_resumed = false;          // the handshake resumed an earlier session (ticket)
  bool starttls_offered = false;     // STARTTLS was in an EHLO reply
  bool starttls_injection = false;   // plaintext followed STARTTLS in the same read (discarded)
  std::vector<std::string> commands; // every command line in order; "TLS " prefix once encrypted
  std::vector<std::string> events;
  double opened = 0;                 // unix seconds: when the fake MX accepted the connection
  double closed = 0;                 // when QUIT arrived (before the 221), else when it ended
  // True when some command before TLS starts with `verb` (e.g. "MAIL": sent in plaintext).
  bool plaintext_command(std::string_view verb) const;
};

// The fake MX: one fake_mx.py process serving every host in options.hosts.
class fake_mx {
 public:
  explicit fake_mx(fake_mx_options opts = {});
  ~fake_mx();
  fake_mx(const fake_mx&) = delete;
  fake_mx& operator=(const fake_mx&) = delete;

  // Start it and wait for "ready"; false with the reason in error().
  bool start(std::chrono::milliseconds deadline = 10s);
  // SIGTERM and reap (records are already on disk).
  void stop();
  uint16_t port() const { return _opts.port; }
  const fake_mx_options& options() const { return _opts; }
  const std::string& error() const { return _proc.error(); }
  std::string log() const { return _proc.log(); }
  std::filesystem::path record_path() const { return _dir.path() / "messages.jsonl"; }
  std::filesystem::path sessions_path() const { return _dir.path() / "sessions.jsonl"; }

  // Every message recorded so far, in arrival order.
  std::vector<mx_message> messages() const;
  // Every finished connection so far, in the order they closed.
  std::vector<mx_session> sessions() const;
  // Wait until at least n messages (sessions) are recorded; false at the deadline.
  bool wait_messages(size_t n, std::chrono::milliseconds deadline = 15s) const;
  bool wait_sessions(size_t n, std::chrono::milliseconds deadline = 15s) const;

 private:
  fake_mx_options _opts;
  temp_dir _dir;
  peer_process _proc;
};

// The loopback DNS fixture: `zone` is a dns_zone.py description, e.g.
//   "example.test MX 10 mx1.example.test\nmx1.example.test A 127.0.0.2\ngone.test NXDOMAIN\n"
struct dns_options {
  uint16_t port = 0;                 // 0 = ldns-testns picks one (read back from "ready PORT")
  std::string default_rcode;         // NXDOMAIN (default) | SERVFAIL | REFUSED for unknown names
  bool ad_all = false;               // AD bit on every NOERROR answer
  bool raw = false;                  // the zone text is an ldns-testns datafile, served as is
  bool log_queries = false;          // ldns-testns -v: every query in log(), counted by queries()
};

class dns_fixture {
 public:
  explicit dns_fixture(std::string zone, dns_options opts = {});
  ~dns_fixture();
  dns_fixture(const dns_fixture&) = delete;
  dns_fixture& operator=(const dns_fixture&) = delete;

  // Write the zone, start dns_zone.py serve and wait until ldns-testns answers.
  bool start(std::chrono::milliseconds deadline = 10s);
  void stop();
  uint16_t port() const { return _port; }
  // "127.0.0.1:PORT", the form dns.resolvers takes.
  std::string address() const { return "127.0.0.1:" + std::to_string(_port); }
  const std::string& error() const { return _proc.error(); }
  std::string log() const { return _proc.log(); }
  std::filesystem::path datafile() const { return _dir.path() / "zone.data"; }
  // Queries received for (name, type) over `proto` ("UDP", "TCP", "" = both); needs log_queries.
  int queries(std::string_view name, std::string_view type, std::string_view proto = "") const;

 private:
  std::string _zone;
  dns_options _opts;
  temp_dir _dir;
  peer_process _proc;
  uint16_t _port = 0;
};

// The loopback DNSSEC world (tests/tools/dnssec_world.py): nsd serving zones signed with
// ldns-signzone behind a private validating unbound, both on 127.0.0.1 high ports. `zone`
// is a dnssec_world.py description: dns_zone.py's record lines plus `$ZONE NAME MODE`
// (secure | insecure | bogus | expired | dead) and `NAME BOGUS [TYPE...]`, e.g.
//   "$ZONE dane.test\ndane.test MX 10 mx1.dane.test\nmx1.dane.test A 127.0.0.2\n"
//   "_25._tcp.mx1.dane.test TLSA 3 1 1 <hex>\n$ZONE gone.test dead\n"
// address() is unbound's: secure answers carry AD, bogus and dead ones are SERVFAIL.
class dnssec_world {
 public:
  explicit dnssec_world(std::string zone);
  ~dnssec_world();
  dnssec_world(const dnssec_world&) = delete;
  dnssec_world& operator=(const dnssec_world&) = delete;

  // Make keys, sign, start nsd and unbound, wait until unbound answers; false with the
  // reason in error() (and log()) otherwise.
  bool start(std::chrono::milliseconds deadline = 30s);
  void stop();
  uint16_t port() const { return _port; }
  // "127.0.0.1:PORT" of the validating unbound, the form dns.resolvers takes.
  std::string address() const { return "127.0.0.1:" + std::to_string(_port); }
  const std::string& error() const { return _proc.error(); }
  // The fixture's stderr, then unbound's log (val-log-level 2: why an answer was bogus).
  std::string log() const;
  // The work directory: zone files, keys, nsd.conf/unbound.conf and their logs.
  std::filesystem::path dir() const { return _dir.path() / "world"; }

 private:
  std::string _zone;
  temp_dir _dir;
  peer_process _proc;
  uint16_t _port = 0;
};

// The data of a TLSA record for the PEM certificate `cert` (openssl command line), e.g.
// tlsa_rdata(cert, 3, 1, 1) = "3 1 1 <sha256 of the SPKI, hex>"; selector 0 = the full
// certificate, 1 = its SubjectPublicKeyInfo; mtype 0 = the bytes, 1 = SHA-256, 2 = SHA-512.
// "" when openssl fails. (The pipeline of support/cert_files.hh, run with a time limit.)
std::string tlsa_rdata(const std::filesystem::path& cert, int usage, int selector, int mtype);

// Command-line options of https_host.py (tests/tools/README.md).
struct https_host_options {
  std::vector<std::string> hosts{"127.0.0.1"};   // loopback addresses, all on port()
  uint16_t port = 0;                   // 0 = a port free on every host
  // --cert values: "[NAMES=]STEM" for tests/certs/STEM.crt/.key, or "[NAMES=]CRT:KEY" paths;
  // NAMES are SNI names (comma-separated, "*.x" wildcards; default: the certificate's DNS
  // names). The first certificate also answers names no certificate carries.
  std::vector<std::string> certs{"server", "sts"};
  std::vector<std::string> routes{};     // --route [HOST]PATH=STATUS[:CONTENT_TYPE]:FILE
  std::string config{};                  // JSON config text (written to a file), "" = none
  std::string policy_dir{};              // --policy-dir: DIR/<domain>.txt for mta-sts.<domain>
  std::string tls_min{}, tls_max{};      // "1.0" .. "1.3"
  bool silent = false;                 // accept TCP, never send a byte (not even TLS)
  std::vector<std::string> extra_args{};
};

// One request https_host.py read (a line of its --record file).
struct https_request {
  std::string listener, method, path, host, sni, tls_version;
  std::vector<std::pair<std::string, std::string>> headers;   // as sent, in order
  std::string body;                    // decoded from body_b64
  int conn = 0;
  // The first header called `name` (case-insensitive), "" when absent.
  std::string header(std::string_view name) const;
};

// The HTTPS host: one https_host.py process serving every address in options.hosts.
class https_host {
 public:
  explicit https_host(https_host_options opts = {});
  ~https_host();
  https_host(const https_host&) = delete;
  https_host& operator=(const https_host&) = delete;

  // Start it and wait for "ready PORT"; false with the reason in error().
  bool start(std::chrono::milliseconds deadline = 10s);
  void stop();
  uint16_t port() const { return _opts.port; }
  const std::string& error() const { return _proc.error(); }
  std::string log() const { return _proc.log(); }
  // A private folder for response bodies and policy files (removed with the host).
  std::filesystem::path dir() const { return _dir.path(); }
  std::filesystem::path record_path() const { return _dir.path() / "requests.jsonl"; }
  // Every request recorded so far, in arrival order.
  std::vector<https_request> requests() const;
  // Wait until at least n requests are recorded; false at the deadline.
  bool wait_requests(size_t n, std::chrono::milliseconds deadline = 15s) const;

 private:
  https_host_options _opts;
  temp_dir _dir;
  peer_process _proc;
};

// One line of the relay's audit log (DESIGN.md §5). JSON null becomes nullopt; `raw` is
// the line as written, for failure messages.
struct audit_line {
  std::string ts, queue_id, kind, from, rcpt, domain, policy, policy_source, cert, outcome;
  std::optional<std::string> msg_id, mx, ip, source_ip, tls_version, cipher, reason, smtp_reply, bounce_class;
  std::string event, detail;  // the fallback sidecar's escrow lines (kind "escrow")
  std::optional<int> cipher_bits;
  int attempt = 0;
  bool tls = false;
  std::string raw;
};

// Every complete line of an audit.jsonl file, in order (a half-written tail is skipped;
// a line that does not parse as a JSON object is returned with only `raw` set).
std::vector<audit_line> read_audit(const std::filesystem::path& file);

// `drill @127.0.0.1 -p port [-t] TYPE NAME` (ldnsutils), for checking the fixture itself.
run_result drill(uint16_t port, std::string_view type, std::string_view name, bool tcp = false);

}  // namespace sr::integ
