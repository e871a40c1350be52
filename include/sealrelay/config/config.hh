// The validated, immutable configuration (DESIGN.md §4) and its strict TOML loader.
// Every key has a default; unknown keys, wrong types and bad values are errors that
// name the file, line and key. Keys of later features are validated now, and the values
// that would need them are refused ("not available in this version", not_built.hh).
#pragma once
#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "sealrelay/util/cidr.hh"
#include "sealrelay/util/duration.hh"
#include "sealrelay/util/result.hh"

namespace sr::config {

enum class listen_mode : uint8_t { relay, submission };
enum class listen_tls : uint8_t { none, starttls, implicit };
enum class tls_policy : uint8_t { opportunistic, forced, exclusive };
enum class verify_mode : uint8_t { none, ca, dane };
enum class tls_version : uint8_t { v1_0, v1_1, v1_2, v1_3 };
enum class dkim_algorithm : uint8_t { rsa_sha256, ed25519_sha256 };

struct server_section {
  std::string hostname;            // default: gethostname()
  unsigned shards = 0;             // 0 = one per online core
  std::string state_dir = "var";
  duration drain_timeout = std::chrono::seconds(10);
};

struct tls_section {
  std::string cert_file = "conf/tls/relay.crt";
  std::string key_file = "conf/tls/relay.key";
  std::string ca_file = "/etc/ssl/certs/ca-certificates.crt";
  tls_version min_version = tls_version::v1_2;
  unsigned min_cipher_bits = 128;
};

struct listen_entry {
  std::string address;             // as written, "127.0.0.1:2525"
  sockaddr_storage addr{};         // parsed
  socklen_t addr_len = 0;
  listen_mode mode = listen_mode::relay;
  listen_tls tls = listen_tls::starttls;
  bool require_tls = false;
  std::vector<cidr> allow_relay_from{*cidr::parse("127.0.0.0/8"), *cidr::parse("::1/128")};
  int line = 0;                    // where its [[listen]] header was written
};

// Inbound limits (not in DESIGN.md §4's example; named after Postfix's smtpd_* knobs).
struct limits_section {
  uint64_t max_message_size = 50ull << 20;   // SIZE advertised; 552 5.3.4 above it
  unsigned max_recipients = 1000;            // 452 4.5.3 above it
  unsigned max_errors = 20;                  // unknown/bad commands before 421 and close
  unsigned max_junk_commands = 100;          // reply-only commands between messages before 421
  unsigned max_conns_per_ip = 1000;          // 421 4.7.0 at connect above it (0 = no cap)
  unsigned max_connections = 20000;          // per relay; 421 4.3.2 above it
  duration idle_timeout = std::chrono::minutes(5);     // no input while waiting for a command
  duration command_timeout = std::chrono::minutes(1);  // one command line (or TLS handshake) to complete
  duration data_timeout = std::chrono::minutes(10);    // 354 to the final dot
  duration commit_interval{0};  // extra wait to gather a spool batch (0: batches still form while an fsync is in flight)
};

struct auth_section {
  std::string users_file = "conf/users";
  // The brute-force brake (auth::limiter, per shard, per client address and per user):
  // two free failures, then each 535 held back `failure_delay`, doubling up to 30 s; at
  // `max_failures` 421 and close (and every AUTH from that client or for that user until
  // 15 idle minutes have passed).
  unsigned max_failures = 10;
  duration failure_delay = std::chrono::seconds(1);
  // Received: of submitted mail names the authenticated user ("(Authenticated sender:
  // U)"), as Postfix's smtpd_sasl_authenticated_header = yes does.
  bool authenticated_header = true;
};

// The HTTP injection API (DESIGN.md §7): POST /api/v1/messages on every shard.
struct http_section {
  std::string listen;                           // "ip:port"; "" = off
  bool tls = true;                              // HTTPS with tls.cert_file; false: loopback only
  std::string tokens_file = "conf/api-tokens";  // bearer tokens, one a line, '#' comments
};

// One DKIM signing domain (RFC 6376; RFC 8463 for Ed25519): mail whose From: domain is
// `domain` is signed with `key_file` under `selector`.
struct dkim_entry {
  std::string domain;    // exact From: domain, lower case
  std::string selector;  // s=
  std::string key_file;  // PEM private key (RSA, or Ed25519 for ed25519-sha256); mode 0600
  dkim_algorithm algorithm = dkim_algorithm::rsa_sha256;
  std::vector<std::string> headers;  // h= fields, lower case; empty = the signer's default list
  int line = 0;                      // where its [[dkim]] header was written
};

struct dns_section {
  std::vector<std::string> resolvers;   // "ip:port"; empty = /etc/resolv.conf
};

struct outbound_section {
  unsigned smtp_port = 25;
  tls_policy default_policy = tls_policy::opportunistic;
  duration connect_timeout = std::chrono::seconds(30);
  unsigned max_conns_per_domain = 16;
  unsigned messages_per_conn = 100;
  std::vector<duration> retry{std::chrono::minutes(1), std::chrono::minutes(5),
                              std::chrono::minutes(15), std::chrono::hours(1),
                              std::chrono::hours(4)};
  duration max_queue_age = std::chrono::hours(24 * 5);
  // The built-in back-off rules (queue/backoff.cc: the large providers' published deferral
  // replies) apply after the [[backoff]] ones.
  bool backoff_defaults = true;
};

struct route_entry {
  std::string domain;    // exact, ".suffix" or "*"
  std::string next_hop;  // "[ip]:port" or "host:port"
  int line = 0;          // where it was written, for later diagnostics
};

struct mta_sts_section {
  bool enabled = true;   // look up and apply recipient domains' MTA-STS policies (src/sts)
  unsigned https_port = 443;
};

// DANE (RFC 7672): TLSA records of MX hosts, trusted only with the AD bit of a validating
// resolver (dns.resolvers must validate DNSSEC, as Postfix's smtp_dns_support_level = dnssec).
struct dane_section {
  bool enabled = false;
};

// TLS-RPT (RFC 8460): aggregate reports of our TLS sessions to the recipient domains
// that publish `_smtp._tls` with a `rua` (src/tlsrpt).
struct tlsrpt_section {
  bool enabled = false;
  std::string organization;  // organization-name in the reports (required when enabled)
  std::string contact;       // contact-info: an address or URL (required when enabled)
  std::string from;          // sender of mailed reports; "" = noreply-tlsrpt@<server.hostname>
  duration interval = std::chrono::hours(24);  // one report per domain per interval
};

// The suppression list (issue 14, src/suppress): addresses that bounced as bad mailboxes
// (added automatically) or that the operator added (sealrelay-queue suppress), stored in
// <state_dir>/suppression.db. Off by default: a relay that starts refusing recipients on
// its own is an opt-in for bulk senders, not a surprise after an upgrade.
enum class suppression_action : uint8_t {
  refuse,  // RCPT answered "550 5.1.1 <addr>: Recipient address suppressed"
  drop,    // accepted, then dropped before delivery with an audit record (outcome "suppressed")
};
struct suppression_section {
  bool enabled = false;
  suppression_action action = suppression_action::refuse;
};

struct policy_entry {
  std::string domain;                     // exact or ".suffix"
  tls_policy tls = tls_policy::forced;
  verify_mode verify = verify_mode::none;
  std::vector<std::string> fallback{"pgp", "smime", "escrow"};  // pgp|smime|escrow|defer
  duration fallback_after{0};
  bool notify_sender = false;
  tls_version min_version = tls_version::v1_2;
  unsigned min_cipher_bits = 128;
  std::string pool;                       // [[pool]] name for this domain's mail; "" = none
  int line = 0;                           // where it was written, for later diagnostics
};

// Source IP pools (issue 14 item 3): the local addresses outbound connections are bound
// to (IP_BIND_ADDRESS_NO_PORT) and the EHLO name each one sends.
enum class pool_selection : uint8_t {
  round_robin,  // each address in turn
  weighted,     // smooth weighted round-robin over the addresses' weights (deterministic)
};

struct pool_address {
  std::string address;        // the IP literal, as inet_ntop writes it ("127.0.0.2", "2001:db8::1")
  sockaddr_storage addr{};    // port 0
  socklen_t addr_len = 0;
  unsigned weight = 1;        // selection = "weighted" only
  std::string ehlo;           // "" = the pool's ehlo
};

struct pool_entry {
  std::string name;
  std::vector<pool_address> addresses;  // at least one
  pool_selection selection = pool_selection::round_robin;
  std::string ehlo;                     // "" = server.hostname
  std::vector<std::string> senders;     // envelope sender domains: exact or ".suffix"
  int line = 0;                         // where its [[pool]] header was written
};

// A rate limit as written: `count` per `per` ("5000/h"). count 0 = no limit.
struct rate_limit {
  double count = 0;
  duration per = std::chrono::seconds(1);
  bool limited() const { return count > 0; }
  double per_second() const { return per.count() > 0 ? count * 1000.0 / double(per.count()) : 0; }
};
// Parse "N/s", "N/min", "N/h" (N > 0, decimals allowed; also "N/sec", "N/m", "N/hour");
// nullopt when malformed.
std::optional<rate_limit> parse_rate(std::string_view text);
// "5000/h" again (parse_rate(format_rate(r)) == r).
std::string format_rate(const rate_limit& r);

// Per-destination shaping (issue 14 item 1, queue/shaping.hh): one entry is one destination
// with one set of token buckets and one connection count, shared by every recipient domain
// it matches (by domain, or by MX host so that a provider's domains share its limits),
// except `domain = "*"`, which gives each domain its own.
struct shaping_entry {
  std::string name;                    // label (metrics, audit); default: the domain or mx text
  std::string domain;                  // exact, ".suffix" or "*"; "" when `mx` is set
  std::string mx;                      // lower case: an exact host, or ".suffix" (written "*.suffix")
  unsigned max_connections = 0;        // 0 = outbound.max_conns_per_domain
  unsigned max_messages_per_conn = 0;  // 0 = outbound.messages_per_conn
  rate_limit max_message_rate;         // message transactions (one message to one domain)
  rate_limit max_connection_rate;      // connections opened
  std::vector<duration> retry;         // empty = outbound.retry
  std::string pool;                    // [[pool]] name; "" = none
  int line = 0;
  // One destination for every domain it matches (all but domain = "*", whose domains each
  // get their own buckets).
  bool shared() const { return domain != "*"; }
};

// An adaptive back-off rule (issue 14 item 2): a remote reply matching `match` lowers its
// destination's message rate by `factor` for `lasts`.
struct backoff_rule {
  std::string match;                   // ECMAScript regex, case-insensitive, searched in the reply
  double factor = 0.5;                 // 0 < factor < 1
  duration lasts = std::chrono::minutes(30);  // key "duration"
  std::string label;                   // "backoff[0]" or "builtin:<name>" (audit)
  int line = 0;
};

struct fallback_section {
  bool spawn = true;
  std::string socket = "var/fallback.sock";
  // Escrow store: "sqlite" (state_dir/escrow.db) or a "postgresql://..." connection URI
  // (several relay nodes sharing one portal).
  std::string store = "sqlite";
  std::string portal_listen = "127.0.0.1:8443";
  std::string portal_url = "https://localhost:8443";
  duration escrow_expiry = std::chrono::hours(24 * 30);
  std::string pgp_home = "conf/keys/gnupg";
  std::string smime_dir = "conf/keys/smime";
};

// Spool encryption at rest (README "Spool encryption at rest"; docs/config.md [spool]).
struct spool_section {
  bool encrypt = false;      // seal new spool segments with key_file (AES-256-GCM)
  std::string key_file;      // 32 random bytes, mode 0600, outside state_dir; "" = none
  // Keys segments were sealed with before a rotation: they stay readable, never sealed with.
  std::vector<std::string> previous_keys;
};

struct audit_section {
  std::string file = "var/audit.jsonl";
};

struct admin_section {
  std::string listen = "127.0.0.1:9025";  // "" = off
};

struct config {
  std::string source_file;
  server_section server;
  tls_section tls;
  std::vector<listen_entry> listen;       // at least one
  limits_section limits;
  auth_section auth;
  http_section http;
  dns_section dns;
  outbound_section outbound;
  std::vector<route_entry> routes;
  mta_sts_section mta_sts;
  dane_section dane;
  tlsrpt_section tlsrpt;
  suppression_section suppression;
  std::vector<policy_entry> policies;
  std::vector<pool_entry> pools;
  std::vector<shaping_entry> shaping;
  std::vector<backoff_rule> backoff;      // the operator's, in file order
  std::vector<dkim_entry> dkim;
  fallback_section fallback;
  spool_section spool;
  audit_section audit;
  admin_section admin;
  // Where each key was written: dotted path ("listen[0].address") -> line. Keys left at
  // their default are absent. Lets later checks (files, bind) name the line too.
  std::map<std::string, int, std::less<>> lines;

  // Return the line where `key` was written, or 0 when it took its default.
  int line_of(std::string_view key) const {
    auto it = lines.find(key);
    return it == lines.end() ? 0 : it->second;
  }
};

// What parse() does with a value whose feature this version does not build (not_built.hh).
enum class not_built_mode : uint8_t {
  refuse,  // an error "... is not available in this version" (load(), --check-config, start)
  accept,  // schema check only: tests of keys whose feature comes later
};

// Load and validate `path`. The error text is "FILE:LINE: KEY: what is wrong".
result<config> load(const std::string& path);
// Parse and validate TOML text as if read from `name`.
result<config> parse(std::string_view text, const std::string& name,
                     not_built_mode nb = not_built_mode::refuse);
// Check that the files the config names can be loaded (certificate, key, CA file).
status check_files(const config& cfg);

// The spool's keys, read from the files [spool] names.
struct spool_keys {
  bool encrypt = false;                          // seal new segments with `current`
  std::optional<std::array<uint8_t, 32>> current;  // key_file, when set
  std::vector<std::array<uint8_t, 32>> previous;   // previous_keys, in order
};
// Read spool.key_file and spool.previous_keys: each must hold exactly 32 bytes, be
// accessible by its owner only and lie outside server.state_dir. The error reads
// "LINE: KEY: what is wrong" (the caller adds the file name).
result<spool_keys> read_spool_keys(const config& cfg);

const char* to_string(listen_mode m);
const char* to_string(listen_tls t);
const char* to_string(tls_policy p);
const char* to_string(verify_mode v);
const char* to_string(tls_version v);
const char* to_string(dkim_algorithm a);
const char* to_string(pool_selection s);

// Render the effective config (defaults filled in) as TOML that parse() accepts again.
std::string dump(const config& cfg);

// Return the most specific [[route]] for `domain` (lower case): exact, then the longest
// ".suffix", then "*"; null when mail for it goes to its MX hosts.
const route_entry* find_route(const config& cfg, std::string_view domain);

// Return the [[dkim]] entry for a From: domain (exact match, case-insensitive); null when
// mail from it is not signed.
const dkim_entry* find_dkim(const config& cfg, std::string_view domain);

// Return the [[pool]] named `name`, or null.
const pool_entry* find_pool(const config& cfg, std::string_view name);

// Return the pool a message's connections use: the pool of the most specific [[policy]]
// for `rcpt_domain` (lower case), else the pool whose `senders` name `sender_domain` (exact,
// then the longest ".suffix"), else null (the kernel picks the source address). The one
// place the choice is made. `shaping`: the destination's [[shaping]] entry, whose pool comes
// after the [[policy]]'s and before the sender's.
const pool_entry* pool_for(const config& cfg, std::string_view rcpt_domain, std::string_view sender_domain,
                          const shaping_entry* shaping = nullptr);

// The [[shaping]] entry a recipient domain (lower case) takes by name: exact, then the
// longest ".suffix"; "*" only when `star` (it comes after the MX entries). Null: none.
const shaping_entry* shaping_for_domain(const config& cfg, std::string_view domain, bool star);
// The [[shaping]] mx entry matching MX host `host` (case-insensitive, a trailing dot
// ignored): exact, then the longest suffix. Null: none.
const shaping_entry* shaping_for_mx(const config& cfg, std::string_view host);
// Does any [[shaping]] entry match by MX host (then a domain's MX must be looked up)?
bool has_mx_shaping(const config& cfg);

// Return the EHLO name a connection from `a` of pool `p` sends: the address's, the pool's,
// else server.hostname.
const std::string& ehlo_name(const config& cfg, const pool_entry& p, const pool_address& a);

}  // namespace sr::config
