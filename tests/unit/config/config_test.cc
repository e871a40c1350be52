// The strict config loader: defaults, every section of DESIGN.md §4 (+ [limits]), and the
// exact "FILE:LINE: KEY: message" text for each class of error. Test documents are built
// line by line so that each expected line number can be read off the source.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <regex>
#include <initializer_list>
#include <string>

#include "sealrelay/config/config.hh"

using namespace std::chrono_literals;
using namespace sr::config;

namespace {

// Join lines with '\n': element i is line i + 1.
std::string doc(std::initializer_list<std::string_view> lines) {
  std::string out;
  for (auto l : lines) {
    out += l;
    out += '\n';
  }
  return out;
}

// The error text of parsing `text` as "t.toml", or "<ok>".
std::string err_of(const std::string& text) {
  auto r = parse(text, "t.toml");
  return r ? "<ok>" : r.err();
}

// A document whose first two lines are one valid listener, followed by `rest` (line 3 on).
std::string with_listener(std::initializer_list<std::string_view> rest) {
  return doc({"[[listen]]", "address = \"127.0.0.1:2525\""}) + doc(rest);
}

uint16_t port_of(const sockaddr_storage& ss) {
  return ntohs(reinterpret_cast<const sockaddr_in&>(ss).sin_port);
}

class temp_dir {
 public:
  temp_dir() {
    const char* base = std::getenv("TMPDIR");
    _path = std::string(base && *base ? base : "/tmp") + "/sr-config-test-XXXXXX";
    if (!mkdtemp(_path.data())) _path.clear();
  }
  ~temp_dir() {
    if (!_path.empty()) std::system(("rm -rf '" + _path + "'").c_str());
  }
  std::string write(const std::string& name, const std::string& text) const {
    std::string p = _path + "/" + name;
    std::ofstream(p) << text;
    return p;
  }
  const std::string& path() const { return _path; }

 private:
  std::string _path;
};

}  // namespace

TEST(config, minimal_config_takes_every_default) {
  auto r = parse(doc({"[[listen]]", "address = \"127.0.0.1:2525\""}), "t.toml");
  ASSERT_TRUE(r) << r.err();
  const config& c = *r;
  EXPECT_EQ(c.source_file, "t.toml");

  char host[256] = {};
  ASSERT_EQ(gethostname(host, sizeof host - 1), 0);
  EXPECT_EQ(c.server.hostname, host);
  EXPECT_EQ(c.server.shards, 0u);
  EXPECT_EQ(c.server.state_dir, "var");
  EXPECT_EQ(c.server.drain_timeout, 10s);

  EXPECT_EQ(c.tls.cert_file, "conf/tls/relay.crt");
  EXPECT_EQ(c.tls.key_file, "conf/tls/relay.key");
  EXPECT_EQ(c.tls.ca_file, "/etc/ssl/certs/ca-certificates.crt");
  EXPECT_EQ(c.tls.min_version, tls_version::v1_2);
  EXPECT_EQ(c.tls.min_cipher_bits, 128u);

  ASSERT_EQ(c.listen.size(), 1u);
  const listen_entry& l = c.listen[0];
  EXPECT_EQ(l.address, "127.0.0.1:2525");
  EXPECT_EQ(l.addr.ss_family, AF_INET);
  EXPECT_EQ(l.addr_len, sizeof(sockaddr_in));
  EXPECT_EQ(port_of(l.addr), 2525);
  EXPECT_EQ(l.mode, listen_mode::relay);
  EXPECT_EQ(l.tls, listen_tls::starttls);
  EXPECT_FALSE(l.require_tls);
  ASSERT_EQ(l.allow_relay_from.size(), 2u);
  EXPECT_EQ(l.allow_relay_from[0].to_string(), "127.0.0.0/8");
  EXPECT_EQ(l.allow_relay_from[1].to_string(), "::1/128");
  EXPECT_EQ(l.line, 1);

  EXPECT_EQ(c.limits.max_message_size, 50ull << 20);
  EXPECT_EQ(c.limits.max_recipients, 1000u);
  EXPECT_EQ(c.limits.max_errors, 20u);
  EXPECT_EQ(c.limits.max_conns_per_ip, 1000u);
  EXPECT_EQ(c.limits.max_connections, 20000u);
  EXPECT_EQ(c.limits.idle_timeout, 5min);
  EXPECT_EQ(c.limits.command_timeout, 1min);
  EXPECT_EQ(c.limits.data_timeout, 10min);
  EXPECT_EQ(c.limits.commit_interval, 0ms);

  EXPECT_EQ(c.auth.users_file, "conf/users");
  EXPECT_TRUE(c.dns.resolvers.empty());

  EXPECT_EQ(c.outbound.smtp_port, 25u);
  EXPECT_EQ(c.outbound.default_policy, tls_policy::opportunistic);
  EXPECT_EQ(c.outbound.connect_timeout, 30s);
  EXPECT_EQ(c.outbound.max_conns_per_domain, 16u);
  EXPECT_EQ(c.outbound.messages_per_conn, 100u);
  EXPECT_EQ(c.outbound.retry, (std::vector<sr::duration>{1min, 5min, 15min, 1h, 4h}));
  EXPECT_EQ(c.outbound.max_queue_age, 120h);

  EXPECT_TRUE(c.routes.empty());
  EXPECT_TRUE(c.mta_sts.enabled);  // DESIGN.md §4
  EXPECT_EQ(c.mta_sts.https_port, 443u);
  EXPECT_TRUE(c.policies.empty());

  EXPECT_TRUE(c.fallback.spawn);
  EXPECT_EQ(c.fallback.socket, "var/fallback.sock");
  EXPECT_EQ(c.fallback.portal_listen, "127.0.0.1:8443");
  EXPECT_EQ(c.fallback.portal_url, "https://localhost:8443");
  EXPECT_EQ(c.fallback.escrow_expiry, 720h);
  EXPECT_EQ(c.fallback.pgp_home, "conf/keys/gnupg");
  EXPECT_EQ(c.fallback.smime_dir, "conf/keys/smime");
  EXPECT_EQ(c.audit.file, "var/audit.jsonl");
  EXPECT_EQ(c.admin.listen, "127.0.0.1:9025");

  // Only what was written has a line; defaults have none.
  EXPECT_EQ(c.line_of("listen[0].address"), 2);
  EXPECT_EQ(c.line_of("server.hostname"), 0);
}

TEST(config, every_section_is_parsed) {
  auto r = parse(doc({
                     "[server]",                                      // 1
                     "hostname = \"mx.example.org\"",                 // 2
                     "shards = 4",                                    // 3
                     "state_dir = \"/srv/relay\"",                    // 4
                     "drain_timeout = \"30s\"",                       // 5
                     "[tls]",                                         // 6
                     "cert_file = \"a.crt\"",                         // 7
                     "key_file = \"a.key\"",                          // 8
                     "ca_file = \"\"",                                // 9
                     "min_version = \"1.3\"",                         // 10
                     "min_cipher_bits = 256",                         // 11
                     "[[listen]]",                                    // 12
                     "address = \"127.0.0.1:2525\"",                  // 13
                     "mode = \"relay\"",                              // 14
                     "tls = \"none\"",                                // 15
                     "allow_relay_from = [\"10.0.0.0/8\", \"::1\"]",  // 16
                     "[[listen]]",                                    // 17
                     "address = \"[::1]:587\"",                       // 18
                     "mode = \"submission\"",                         // 19
                     "tls = \"starttls\"",                            // 20
                     "require_tls = true",                            // 21
                     "[[listen]]",                                    // 22
                     "address = \"127.0.0.1:4650\"",                  // 23
                     "tls = \"implicit\"",                            // 24
                     "[limits]",                                      // 25
                     "max_message_size = \"10M\"",                    // 26
                     "max_recipients = 50",                           // 27
                     "max_errors = 3",                                // 28
                     "max_conns_per_ip = 0",                          // 29
                     "max_connections = 100",                         // 30
                     "idle_timeout = \"30s\"",                        // 31
                     "command_timeout = \"10s\"",                     // 32
                     "data_timeout = \"2m\"",                         // 33
                     "commit_interval = \"0ms\"",                     // 34
                     "[auth]",                                        // 35
                     "users_file = \"/etc/relay/users\"",             // 36
                     "[dns]",                                         // 37
                     "resolvers = [\"127.0.0.1:5353\", \"[::1]:53\"]",  // 38
                     "[outbound]",                                    // 39
                     "smtp_port = 2526",                              // 40
                     "default_policy = \"forced\"",                   // 41
                     "connect_timeout = \"5s\"",                      // 42
                     "max_conns_per_domain = 2",                      // 43
                     "messages_per_conn = 7",                         // 44
                     "retry = [\"10s\", \"1m\"]",                     // 45
                     "max_queue_age = \"1d\"",                        // 46
                     "[[route]]",                                     // 47
                     "domain = \"Partner.Example\"",                  // 48
                     "next_hop = \"[10.0.0.5]:2525\"",                // 49
                     "[[route]]",                                     // 50
                     "domain = \"*\"",                                // 51
                     "next_hop = \"smarthost.example:587\"",          // 52
                     "[mta_sts]",                                     // 53
                     "enabled = false",                               // 54
                     "https_port = 8443",                             // 55
                     "[[policy]]",                                    // 56
                     "domain = \"Bank.Example\"",                     // 57
                     "tls = \"forced\"",                              // 58
                     "verify = \"ca\"",                               // 59
                     "fallback = [\"smime\", \"defer\"]",             // 60
                     "fallback_after = \"1h\"",                       // 61
                     "min_version = \"1.3\"",                         // 62
                     "min_cipher_bits = 256",                         // 63
                     "[[policy]]",                                    // 64
                     "domain = \".news.example\"",                    // 65
                     "tls = \"exclusive\"",                           // 66
                     "verify = \"dane\"",                             // 67
                     "notify_sender = true",                          // 68
                     "[[policy]]",                                    // 69
                     "domain = \"legacy.example\"",                   // 70
                     "tls = \"opportunistic\"",                       // 71
                     "[fallback]",                                    // 72
                     "spawn = false",                                 // 73
                     "socket = \"/run/fb.sock\"",                     // 74
                     "portal_listen = \"\"",                          // 75
                     "portal_url = \"https://portal.example/\"",      // 76
                     "escrow_expiry = \"7d\"",                        // 77
                     "pgp_home = \"k/gpg\"",                          // 78
                     "smime_dir = \"k/smime\"",                       // 79
                     "[audit]",                                       // 80
                     "file = \"/var/log/relay/audit.jsonl\"",         // 81
                     "[admin]",                                       // 82
                     "listen = \"\"",                                 // 83
                     "[dane]",                                        // 84
                     "enabled = true",                                // 85
                 }),
                 "full.toml", not_built_mode::accept);  // submission: schema only
  ASSERT_TRUE(r) << r.err();
  const config& c = *r;
  EXPECT_EQ(c.server.hostname, "mx.example.org");
  EXPECT_EQ(c.server.shards, 4u);
  EXPECT_EQ(c.server.state_dir, "/srv/relay");
  EXPECT_EQ(c.server.drain_timeout, 30s);

  EXPECT_EQ(c.tls.cert_file, "a.crt");
  EXPECT_EQ(c.tls.key_file, "a.key");
  EXPECT_EQ(c.tls.ca_file, "");
  EXPECT_EQ(c.tls.min_version, tls_version::v1_3);
  EXPECT_EQ(c.tls.min_cipher_bits, 256u);

  ASSERT_EQ(c.listen.size(), 3u);
  EXPECT_EQ(c.listen[0].tls, listen_tls::none);
  ASSERT_EQ(c.listen[0].allow_relay_from.size(), 2u);
  EXPECT_EQ(c.listen[0].allow_relay_from[0].to_string(), "10.0.0.0/8");
  EXPECT_EQ(c.listen[0].allow_relay_from[1].to_string(), "::1/128");
  EXPECT_EQ(c.listen[1].address, "[::1]:587");
  EXPECT_EQ(c.listen[1].addr.ss_family, AF_INET6);
  EXPECT_EQ(c.listen[1].addr_len, sizeof(sockaddr_in6));
  EXPECT_EQ(c.listen[1].mode, listen_mode::submission);
  EXPECT_EQ(c.listen[1].tls, listen_tls::starttls);
  EXPECT_TRUE(c.listen[1].require_tls);
  EXPECT_EQ(c.listen[1].line, 17);
  EXPECT_EQ(c.listen[2].tls, listen_tls::implicit);
  EXPECT_EQ(c.listen[2].mode, listen_mode::relay);
  EXPECT_EQ(port_of(c.listen[2].addr), 4650);

  EXPECT_EQ(c.limits.max_message_size, 10ull << 20);
  EXPECT_EQ(c.limits.max_recipients, 50u);
  EXPECT_EQ(c.limits.max_errors, 3u);
  EXPECT_EQ(c.limits.max_conns_per_ip, 0u);
  EXPECT_EQ(c.limits.max_connections, 100u);
  EXPECT_EQ(c.limits.idle_timeout, 30s);
  EXPECT_EQ(c.limits.command_timeout, 10s);
  EXPECT_EQ(c.limits.data_timeout, 2min);
  EXPECT_EQ(c.limits.commit_interval, 0ms);

  EXPECT_EQ(c.auth.users_file, "/etc/relay/users");
  EXPECT_EQ(c.dns.resolvers, (std::vector<std::string>{"127.0.0.1:5353", "[::1]:53"}));

  EXPECT_EQ(c.outbound.smtp_port, 2526u);
  EXPECT_EQ(c.outbound.default_policy, tls_policy::forced);
  EXPECT_EQ(c.outbound.connect_timeout, 5s);
  EXPECT_EQ(c.outbound.max_conns_per_domain, 2u);
  EXPECT_EQ(c.outbound.messages_per_conn, 7u);
  EXPECT_EQ(c.outbound.retry, (std::vector<sr::duration>{10s, 1min}));
  EXPECT_EQ(c.outbound.max_queue_age, 24h);

  ASSERT_EQ(c.routes.size(), 2u);
  EXPECT_EQ(c.routes[0].domain, "partner.example");  // lower-cased
  EXPECT_EQ(c.routes[0].next_hop, "[10.0.0.5]:2525");
  EXPECT_EQ(c.routes[0].line, 47);
  EXPECT_EQ(c.routes[1].domain, "*");
  EXPECT_EQ(c.routes[1].next_hop, "smarthost.example:587");
  // find_route: exact first, then "*" (no suffix route here).
  EXPECT_EQ(find_route(c, "partner.example"), &c.routes[0]);
  EXPECT_EQ(find_route(c, "other.example"), &c.routes[1]);

  EXPECT_FALSE(c.mta_sts.enabled);
  EXPECT_EQ(c.mta_sts.https_port, 8443u);

  ASSERT_EQ(c.policies.size(), 3u);
  const policy_entry& bank = c.policies[0];
  EXPECT_EQ(bank.domain, "bank.example");
  EXPECT_EQ(bank.tls, tls_policy::forced);
  EXPECT_EQ(bank.verify, verify_mode::ca);
  EXPECT_EQ(bank.fallback, (std::vector<std::string>{"smime", "defer"}));
  EXPECT_EQ(bank.fallback_after, 1h);
  EXPECT_EQ(bank.min_version, tls_version::v1_3);
  EXPECT_EQ(bank.min_cipher_bits, 256u);
  EXPECT_EQ(bank.line, 56);
  const policy_entry& news = c.policies[1];
  EXPECT_EQ(news.domain, ".news.example");
  EXPECT_EQ(news.tls, tls_policy::exclusive);
  EXPECT_EQ(news.verify, verify_mode::dane);
  EXPECT_TRUE(news.notify_sender);
  EXPECT_EQ(news.fallback_after, 0s);
  EXPECT_EQ(c.policies[2].tls, tls_policy::opportunistic);
  EXPECT_EQ(c.policies[2].verify, verify_mode::none);

  EXPECT_FALSE(c.fallback.spawn);
  EXPECT_EQ(c.fallback.socket, "/run/fb.sock");
  EXPECT_EQ(c.fallback.portal_listen, "");
  EXPECT_EQ(c.fallback.portal_url, "https://portal.example");  // trailing '/' dropped
  EXPECT_EQ(c.fallback.escrow_expiry, 168h);
  EXPECT_EQ(c.fallback.pgp_home, "k/gpg");
  EXPECT_EQ(c.fallback.smime_dir, "k/smime");
  EXPECT_EQ(c.audit.file, "/var/log/relay/audit.jsonl");
  EXPECT_EQ(c.admin.listen, "");

  EXPECT_EQ(c.line_of("policy[1].notify_sender"), 68);
  EXPECT_EQ(c.line_of("admin.listen"), 83);

  // The dump is TOML that parses back to the same effective config.
  auto again = parse(dump(c), "dump.toml", not_built_mode::accept);
  ASSERT_TRUE(again) << again.err() << "\n" << dump(c);
  auto body = [](const std::string& d) { return d.substr(d.find('\n')); };  // past "# ... of FILE"
  EXPECT_EQ(body(dump(*again)), body(dump(c)));
  EXPECT_EQ(again->policies[0].fallback, bank.fallback);
  EXPECT_EQ(again->listen[1].addr_len, sizeof(sockaddr_in6));
}

TEST(config, find_route_prefers_exact_then_longest_suffix_then_star) {
  config c;
  EXPECT_EQ(find_route(c, "a.example"), nullptr);
  c.routes = {{".example", "[10.0.0.1]:25"}, {".b.example", "[10.0.0.2]:25"}, {"b.example", "[10.0.0.3]:25"}};
  EXPECT_EQ(find_route(c, "x.b.example"), &c.routes[1]);
  EXPECT_EQ(find_route(c, "b.example"), &c.routes[2]);
  EXPECT_EQ(find_route(c, "a.example"), &c.routes[0]);
  EXPECT_EQ(find_route(c, "example"), nullptr);  // a suffix never matches the name itself
  c.routes.push_back({"*", "[10.0.0.4]:25"});
  EXPECT_EQ(find_route(c, "other.test"), &c.routes[3]);
}

TEST(config, max_message_size_takes_bytes_or_suffixed_strings) {
  auto size_of = [](std::string_view v) -> uint64_t {
    auto r = parse(with_listener({"[limits]", "max_message_size = " + std::string(v)}), "t.toml");
    return r ? r->limits.max_message_size : 0;
  };
  EXPECT_EQ(size_of("1000"), 1000u);
  EXPECT_EQ(size_of("\"1000\""), 1000u);
  EXPECT_EQ(size_of("\"512K\""), 512u << 10);
  EXPECT_EQ(size_of("\"50M\""), 50u << 20);
  EXPECT_EQ(size_of("\"2G\""), 2ull << 30);
}

TEST(config, domains_accept_exact_suffix_and_star_for_routes) {
  auto r = parse(with_listener({"[[policy]]", "domain = \".EXAMPLE.com\"",  //
                                "[[policy]]", "domain = \"example.com\"",   //
                                "[[route]]", "domain = \"*\"", "next_hop = \"[::1]:25\""}),
                 "t.toml");
  ASSERT_TRUE(r) << r.err();
  EXPECT_EQ(r->policies[0].domain, ".example.com");  // suffix and exact are different keys
  EXPECT_EQ(r->policies[1].domain, "example.com");
  EXPECT_EQ(r->policies[1].tls, tls_policy::forced);  // the struct default
}

struct error_case {
  const char* name;
  std::string text;
  std::string expected;
};

// Each class of error, with the exact text the operator sees.
TEST(config, errors_name_file_line_and_key) {
  const error_case cases[] = {
      // TOML syntax: toml++'s own description, with our file and its line.
      {"syntax", doc({"[server]", "shards = ", "[tls]"}),
       "t.toml:2: Error while parsing key-value pair: expected value, saw '\\n'"},
      // Unknown keys and tables, at every level.
      {"unknown table", with_listener({"[limit]", "max_errors = 3"}), "t.toml:3: limit: unknown table"},
      {"unknown root key", doc({"shards = 4", "[[listen]]", "address = \"127.0.0.1:25\""}),
       "t.toml:1: shards: unknown key"},
      {"unknown key in table", with_listener({"[server]", "shard = 4"}),
       "t.toml:4: server.shard: unknown key"},
      {"unknown sub-table", with_listener({"[server.extra]", "a = 1"}),
       "t.toml:3: server.extra: unknown table"},
      {"unknown key in second listen", with_listener({"[[listen]]", "address = \"127.0.0.1:2526\"",
                                                      "tsl = \"none\""}),
       "t.toml:5: listen[1].tsl: unknown key"},
      {"unknown key in policy", with_listener({"[[policy]]", "domain = \"a.example\"",
                                               "tls = \"forced\"", "fallbacks = [\"escrow\"]"}),
       "t.toml:6: policy[0].fallbacks: unknown key"},
      {"unknown key in route", with_listener({"[[route]]", "domain = \"a.example\"",
                                              "next_hop = \"[10.0.0.1]:25\"", "port = 25"}),
       "t.toml:6: route[0].port: unknown key"},
      {"unknown key in inline listen", doc({"listen = [ { address = \"127.0.0.1:25\", x = 1 } ]"}),
       "t.toml:1: listen[0].x: unknown key"},
      // Wrong types.
      {"string for integer", with_listener({"[server]", "shards = \"4\""}),
       "t.toml:4: server.shards: expected an integer, got string"},
      {"bool for enum", with_listener({"[[listen]]", "address = \"127.0.0.1:2526\"", "tls = true"}),
       "t.toml:5: listen[1].tls: expected a string, got boolean"},
      {"integer for duration", with_listener({"[limits]", "idle_timeout = 30"}),
       "t.toml:4: limits.idle_timeout: expected a duration string such as \"10s\", got integer"},
      {"table for array of tables", doc({"[listen]", "address = \"127.0.0.1:25\""}),
       "t.toml:1: listen: expected an array of tables ([[listen]]), got table"},
      {"array of tables for table", with_listener({"[[server]]", "shards = 1"}),
       "t.toml:3: server: expected a table ([server]), got array"},
      {"element type", with_listener({"[dns]", "resolvers = [\"127.0.0.1:53\",", "  53]"}),
       "t.toml:5: dns.resolvers[1]: expected a string, got integer"},
      {"float for integer", with_listener({"[outbound]", "smtp_port = 25.0"}),
       "t.toml:4: outbound.smtp_port: expected an integer, got float"},
      // Bad values.
      {"shards range", with_listener({"[server]", "shards = 2000"}),
       "t.toml:4: server.shards: must be between 0 and 256, got 2000"},
      // More shards than queue ids can name (two hex digits of partition).
      {"shards beyond the spool", with_listener({"[server]", "shards = 257"}),
       "t.toml:4: server.shards: must be between 0 and 256, got 257"},
      {"port range", with_listener({"[mta_sts]", "https_port = 70000"}),
       "t.toml:4: mta_sts.https_port: must be between 1 and 65535, got 70000"},
      {"min_cipher_bits range", with_listener({"[tls]", "min_cipher_bits = 512"}),
       "t.toml:4: tls.min_cipher_bits: must be between 0 and 256, got 512"},
      {"count minimum", with_listener({"[limits]", "max_recipients = 0"}),
       "t.toml:4: limits.max_recipients: must be at least 1, got 0"},
      {"host name as listen address", doc({"[[listen]]", "address = \"localhost:2525\""}),
       "t.toml:2: listen[0].address: expected an address \"ip:port\" or \"[ipv6]:port\" (not a host "
       "name), got \"localhost:2525\""},
      {"listen port 0", doc({"[[listen]]", "address = \"127.0.0.1:0\""}),
       "t.toml:2: listen[0].address: port must be between 1 and 65535, got \"127.0.0.1:0\""},
      {"mode", with_listener({"[[listen]]", "address = \"127.0.0.1:2526\"", "mode = \"smtp\""}),
       "t.toml:5: listen[1].mode: must be one of \"relay\", \"submission\"; got \"smtp\""},
      {"listen tls", doc({"[[listen]]", "address = \"127.0.0.1:25\"", "tls = \"ssl\""}),
       "t.toml:3: listen[0].tls: must be one of \"none\", \"starttls\", \"implicit\"; got \"ssl\""},
      {"cidr", doc({"[[listen]]", "address = \"127.0.0.1:25\"",
                    "allow_relay_from = [\"10.0.0.0/8\", \"10.0.0.0/33\"]"}),
       "t.toml:3: listen[0].allow_relay_from[1]: not a network: \"10.0.0.0/33\" (e.g. "
       "\"10.0.0.0/8\", \"::1\")"},
      {"duration", with_listener({"[server]", "drain_timeout = \"10 s\""}),
       "t.toml:4: server.drain_timeout: bad duration \"10 s\" (a whole number and ms, s, m, h or d, "
       "e.g. \"10s\")"},
      {"duration must be positive", with_listener({"[outbound]", "connect_timeout = \"0s\""}),
       "t.toml:4: outbound.connect_timeout: must be greater than 0"},
      {"retry element", with_listener({"[outbound]", "retry = [", "  \"1m\",", "  \"5m\",",
                                       "  \"soon\",", "]"}),
       "t.toml:7: outbound.retry[2]: bad duration \"soon\" (a whole number and ms, s, m, h or d, "
       "e.g. \"10s\")"},
      {"retry empty", with_listener({"[outbound]", "retry = []"}),
       "t.toml:4: outbound.retry: must not be empty (at least one interval, e.g. [\"5m\"])"},
      {"commit_interval cap", with_listener({"[limits]", "commit_interval = \"5s\""}),
       "t.toml:4: limits.commit_interval: must be at most 1s, got \"5s\""},
      {"size suffix", with_listener({"[limits]", "max_message_size = \"50X\""}),
       "t.toml:4: limits.max_message_size: bad size \"50X\" (bytes, or a number with K, M or G)"},
      {"size negative", with_listener({"[limits]", "max_message_size = -1"}),
       "t.toml:4: limits.max_message_size: must be between 1 byte and 2G, got -1"},
      {"size zero", with_listener({"[limits]", "max_message_size = 0"}),
       "t.toml:4: limits.max_message_size: must be between 1 byte and 2G, got 0"},
      {"min_version", with_listener({"[tls]", "min_version = \"1.4\""}),
       "t.toml:4: tls.min_version: must be one of \"1.0\", \"1.1\", \"1.2\", \"1.3\"; got \"1.4\""},
      {"policy min_version", with_listener({"[[policy]]", "domain = \"a.example\"",
                                            "min_version = 1.2"}),
       "t.toml:5: policy[0].min_version: expected a string, got float"},
      {"resolver without port", with_listener({"[dns]", "resolvers = [\"9.9.9.9\"]"}),
       "t.toml:4: dns.resolvers[0]: expected an address \"ip:port\" or \"[ipv6]:port\" (not a host "
       "name), got \"9.9.9.9\""},
      {"admin listen name", with_listener({"[admin]", "listen = \"localhost:9025\""}),
       "t.toml:4: admin.listen: expected an address \"ip:port\" or \"[ipv6]:port\" (not a host "
       "name), got \"localhost:9025\" (or \"\" for off)"},
      {"portal listen", with_listener({"[fallback]", "portal_listen = \"8443\""}),
       "t.toml:4: fallback.portal_listen: expected an address \"ip:port\" or \"[ipv6]:port\" (not a "
       "host name), got \"8443\" (or \"\" for off)"},
      {"portal url", with_listener({"[fallback]", "portal_url = \"localhost:8443\""}),
       "t.toml:4: fallback.portal_url: expected an http(s):// URL, got \"localhost:8443\""},
      {"hostname", with_listener({"[server]", "hostname = \"relay example\""}),
       "t.toml:4: server.hostname: not a host name: \"relay example\""},
      {"require_tls without tls", doc({"[[listen]]", "address = \"127.0.0.1:25\"", "tls = \"none\"",
                                       "require_tls = true"}),
       "t.toml:4: listen[0].require_tls: needs tls = \"starttls\" or \"implicit\" (with tls = "
       "\"none\" no client could ever send)"},
      {"duplicate listen address", with_listener({"[[listen]]", "address = \"[127.0.0.1]:2525\""}),
       "t.toml:4: listen[1].address: same address as listen[0] (line 1)"},
      {"admin on a listener", with_listener({"[admin]", "listen = \"127.0.0.1:2525\""}),
       "t.toml:4: admin.listen: same address as listen[0] (line 1)"},
      // Missing required things: the line of the table they belong to.
      {"no listener", doc({"[server]", "shards = 1"}),
       "t.toml:1: listen: at least one [[listen]] table is required"},
      {"listener without address", with_listener({"", "[[listen]]", "mode = \"relay\""}),
       "t.toml:4: listen[1].address: missing (every [[listen]] needs an address)"},
      {"policy without domain", with_listener({"[[policy]]", "tls = \"forced\""}),
       "t.toml:3: policy[0].domain: missing (every [[policy]] needs a domain)"},
      {"route without next_hop", with_listener({"[[route]]", "domain = \"a.example\""}),
       "t.toml:3: route[0].next_hop: missing (every [[route]] needs a next_hop)"},
      // Policies.
      {"policy domain syntax", with_listener({"[[policy]]", "domain = \"bank..example\""}),
       "t.toml:4: policy[0].domain: not a domain name: \"bank..example\""},
      {"policy domain star", with_listener({"[[policy]]", "domain = \"*\""}),
       "t.toml:4: policy[0].domain: \"*\" is not allowed here (outbound.default_policy covers every "
       "domain)"},
      {"policy domain empty", with_listener({"[[policy]]", "domain = \"\""}),
       "t.toml:4: policy[0].domain: must not be empty"},
      {"duplicate policy domain", with_listener({"[[policy]]", "domain = \"bank.example\"", "",
                                                 "[[policy]]", "domain = \"BANK.example\""}),
       "t.toml:7: policy[1].domain: duplicate of policy[0] (line 3)"},
      {"policy tls", with_listener({"[[policy]]", "domain = \"a.example\"", "tls = \"required\""}),
       "t.toml:5: policy[0].tls: must be one of \"opportunistic\", \"forced\", \"exclusive\"; got "
       "\"required\""},
      {"verify", with_listener({"[[policy]]", "domain = \"a.example\"", "verify = \"strict\""}),
       "t.toml:5: policy[0].verify: must be one of \"none\", \"ca\", \"dane\"; got \"strict\""},
      {"opportunistic with verify", with_listener({"[[policy]]", "domain = \"a.example\"",
                                                   "tls = \"opportunistic\"", "verify = \"none\""}),
       "t.toml:6: policy[0].verify: only for tls = \"forced\" or \"exclusive\" (this policy has tls "
       "= \"opportunistic\")"},
      {"opportunistic with fallback", with_listener({"[[policy]]", "domain = \"a.example\"",
                                                     "fallback = [\"escrow\"]",
                                                     "tls = \"opportunistic\""}),
       "t.toml:5: policy[0].fallback: only for tls = \"forced\" or \"exclusive\" (this policy has "
       "tls = \"opportunistic\")"},
      {"opportunistic with fallback_after", with_listener({"[[policy]]", "domain = \"a.example\"",
                                                           "tls = \"opportunistic\"",
                                                           "fallback_after = \"0s\""}),
       "t.toml:6: policy[0].fallback_after: only for tls = \"forced\" or \"exclusive\" (this policy "
       "has tls = \"opportunistic\")"},
      {"exclusive with fallback", with_listener({"[[policy]]", "domain = \"a.example\"",
                                                 "tls = \"exclusive\"", "fallback = [\"escrow\"]"}),
       "t.toml:6: policy[0].fallback: only for tls = \"forced\"; an exclusive policy drops the "
       "message (this policy has tls = \"exclusive\")"},
      {"bad tls adds no noise", with_listener({"[[policy]]", "domain = \"a.example\"",
                                               "notify_sender = true", "tls = \"exclusiv\""}),
       "t.toml:6: policy[0].tls: must be one of \"opportunistic\", \"forced\", \"exclusive\"; got "
       "\"exclusiv\""},
      {"notify_sender on forced", with_listener({"[[policy]]", "domain = \"a.example\"",
                                                 "notify_sender = false"}),
       "t.toml:5: policy[0].notify_sender: only for tls = \"exclusive\" (this policy has tls = "
       "\"forced\")"},
      {"fallback entry", with_listener({"[[policy]]", "domain = \"a.example\"",
                                        "fallback = [\"pgp\", \"fax\"]"}),
       "t.toml:5: policy[0].fallback[1]: must be one of \"pgp\", \"smime\", \"escrow\", \"defer\"; "
       "got \"fax\""},
      {"fallback duplicate", with_listener({"[[policy]]", "domain = \"a.example\"",
                                            "fallback = [\"pgp\", \"pgp\"]"}),
       "t.toml:5: policy[0].fallback[1]: duplicate \"pgp\""},
      {"fallback after escrow", with_listener({"[[policy]]", "domain = \"a.example\"",
                                               "fallback = [\"escrow\", \"pgp\"]"}),
       "t.toml:5: policy[0].fallback[1]: never reached: \"escrow\" before it always ends the "
       "fallback"},
      {"fallback empty", with_listener({"[[policy]]", "domain = \"a.example\"", "fallback = []"}),
       "t.toml:5: policy[0].fallback: must not be empty"},
      // Routes.
      {"route domain", with_listener({"[[route]]", "domain = \"-bad.example\"",
                                      "next_hop = \"[10.0.0.1]:25\""}),
       "t.toml:4: route[0].domain: not a domain name: \"-bad.example\""},
      {"route next_hop without port", with_listener({"[[route]]", "domain = \"a.example\"",
                                                     "next_hop = \"smarthost.example\""}),
       "t.toml:5: route[0].next_hop: expected \"[ip]:port\" or \"host:port\", got "
       "\"smarthost.example\""},
      {"route next_hop bad ip", with_listener({"[[route]]", "domain = \"a.example\"",
                                               "next_hop = \"[10.0.0.300]:25\""}),
       "t.toml:5: route[0].next_hop: expected \"[ip]:port\" or \"host:port\", got "
       "\"[10.0.0.300]:25\""},
      {"duplicate route domain", with_listener({"[[route]]", "domain = \".a.example\"",
                                                "next_hop = \"[10.0.0.1]:25\"", "[[route]]",
                                                "domain = \".A.example\"",
                                                "next_hop = \"[10.0.0.2]:25\""}),
       "t.toml:7: route[1].domain: duplicate of route[0] (line 3)"},
  };
  for (const auto& c : cases) EXPECT_EQ(err_of(c.text), c.expected) << c.name << "\n" << c.text;
}

TEST(config, reports_the_first_problem_in_the_file) {
  // Three problems; the one on the lowest line wins whatever order they are checked in.
  std::string text = doc({"[admin]", "listen = \"x\"", "[server]", "bogus = 1", "[[listen]]",
                          "address = \"127.0.0.1:25\""});
  EXPECT_EQ(err_of(text),
            "t.toml:2: admin.listen: expected an address \"ip:port\" or \"[ipv6]:port\" (not a host "
            "name), got \"x\" (or \"\" for off)");
}

TEST(config, load_reads_a_file_and_names_it) {
  temp_dir dir;
  ASSERT_FALSE(dir.path().empty());
  std::string good = dir.write("good.toml", doc({"[[listen]]", "address = \"127.0.0.1:2525\""}));
  auto r = load(good);
  ASSERT_TRUE(r) << r.err();
  EXPECT_EQ(r->source_file, good);

  std::string bad = dir.write("bad.toml", doc({"[[listen]]", "address = \"127.0.0.1:2525\"",
                                               "color = \"blue\""}));
  auto b = load(bad);
  ASSERT_FALSE(b);
  EXPECT_EQ(b.err(), bad + ":3: listen[0].color: unknown key");

  auto missing = load(dir.path() + "/none.toml");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.err(), dir.path() + "/none.toml: cannot read: No such file or directory");
}

TEST(config, check_files_loads_certificate_key_and_ca) {
  temp_dir dir;
  ASSERT_FALSE(dir.path().empty());
  const std::string pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
  std::string crt = dir.write("relay.crt", pem);
  std::string key = dir.write("relay.key", "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n");
  ASSERT_EQ(::chmod(key.c_str(), 0600), 0);
  std::string ca = dir.write("ca.crt", pem);
  std::string junk = dir.write("junk.crt", "not a certificate\n");
  ASSERT_EQ(::chmod(junk.c_str(), 0600), 0);  // read as a key below
  std::string nope = dir.path() + "/nope.crt";
  auto cfg_with = [&](const std::string& cert, const std::string& k, const std::string& c,
                      const char* listen_tls) {
    auto r = parse(doc({"[tls]", "cert_file = \"" + cert + "\"", "key_file = \"" + k + "\"",
                        "ca_file = \"" + c + "\"", "[[listen]]", "address = \"127.0.0.1:2525\"",
                        "tls = \"" + std::string(listen_tls) + "\""}),
                   "t.toml");
    EXPECT_TRUE(r) << r.err();
    return *r;
  };
  EXPECT_TRUE(check_files(cfg_with(crt, key, ca, "starttls")));
  EXPECT_TRUE(check_files(cfg_with(crt, key, "", "implicit")));  // no CA file: nothing to check

  // The text starts with the key; the caller adds the file name.
  auto s = check_files(cfg_with(nope, key, ca, "starttls"));
  ASSERT_FALSE(s);
  EXPECT_EQ(s.err(), "tls.cert_file: cannot read " + nope + ": No such file or directory");

  s = check_files(cfg_with(crt, junk, ca, "implicit"));
  ASSERT_FALSE(s);
  EXPECT_EQ(s.err(), "tls.key_file: " + junk + " holds no PEM block (\"-----BEGIN\")");

  s = check_files(cfg_with(crt, key, dir.path(), "starttls"));  // a directory is not a CA file
  ASSERT_FALSE(s);
  EXPECT_EQ(s.err(), "tls.ca_file: cannot read " + dir.path() + ": Is a directory");

  s = check_files(cfg_with(crt, key, nope, "none"));
  ASSERT_FALSE(s);
  EXPECT_EQ(s.err(), "tls.ca_file: cannot read " + nope + ": No such file or directory");

  // Files the config names are checked even when no listener uses TLS ...
  s = check_files(cfg_with(nope, key, ca, "none"));
  ASSERT_FALSE(s);
  EXPECT_EQ(s.err(), "tls.cert_file: cannot read " + nope + ": No such file or directory");

  // ... but an unused default path is not: a plaintext-only config needs no certificate.
  auto plain = parse(doc({"[[listen]]", "address = \"127.0.0.1:2525\"", "tls = \"none\"",
                          "[tls]", "ca_file = \"\""}),
                     "t.toml");
  ASSERT_TRUE(plain) << plain.err();
  plain->tls.cert_file = nope;  // as if the default pointed nowhere
  plain->tls.key_file = nope;
  EXPECT_TRUE(check_files(*plain));
  plain->listen[0].tls = listen_tls::starttls;  // now a listener needs them
  s = check_files(*plain);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.err(), "tls.cert_file: cannot read " + nope + ": No such file or directory");
}

// Keys of features not built yet are still checked against the schema (with the refusal
// off), so that lifting a refusal needs no new validation.
TEST(config, schema_of_features_not_built_is_checked) {
  auto schema_err = [](const std::string& text) {
    auto r = parse(text, "t.toml", not_built_mode::accept);
    return r ? "<ok>" : r.err();
  };
  EXPECT_EQ(schema_err(doc({"[[listen]]", "address = \"127.0.0.1:587\"", "mode = \"submission\"",
                            "allow_relay_from = []"})),
            "t.toml:4: listen[0].allow_relay_from: only for mode = \"relay\" (submission relays "
            "after AUTH)");
  EXPECT_EQ(schema_err(doc({"[auth]", "users_file = \"\"", "[[listen]]",
                            "address = \"127.0.0.1:587\"", "mode = \"submission\""})),
            "t.toml:2: auth.users_file: must be set: listen[0] is a submission listener");
  EXPECT_EQ(schema_err(with_listener({"[mta_sts]", "enabled = true", "[dane]", "enabled = true",
                                      "[[policy]]", "domain = \"a.example\"", "verify = \"dane\"",
                                      "fallback = [\"pgp\", \"escrow\"]"})),
            "<ok>");
  // verify = "dane" would never find a usable TLSA record without [dane].
  EXPECT_EQ(schema_err(with_listener({"[[policy]]", "domain = \"a.example\"", "tls = \"forced\"",
                                      "verify = \"dane\""})),
            "t.toml:6: policy[0].verify: \"dane\" needs [dane] enabled = true (and a validating "
            "resolver in dns.resolvers)");
}

// DESIGN.md §4: a value whose feature is not built is refused, never accepted and ignored.
TEST(config, submission_keys_are_built) {
  // Submission is built (issue 10): its mode, users file and brake are accepted.
  auto sub = parse(with_listener({"[[listen]]", "address = \"127.0.0.1:587\"", "mode = \"submission\"",
                                  "[auth]", "users_file = \"u\"", "max_failures = 4",
                                  "failure_delay = \"2s\""}),
                   "t.toml");
  ASSERT_TRUE(sub) << sub.err();
  EXPECT_EQ(sub->listen[1].mode, listen_mode::submission);
  EXPECT_EQ(sub->auth.users_file, "u");
  EXPECT_EQ(sub->auth.max_failures, 4u);
  EXPECT_EQ(sub->auth.failure_delay, std::chrono::seconds(2));
  EXPECT_EQ(err_of(with_listener({"[auth]", "max_failures = 0"})),
            "t.toml:4: auth.max_failures: must be between 1 and 1000, got 0");
  EXPECT_EQ(err_of(with_listener({"[auth]", "failure_delay = \"1m\""})).substr(0, 34),
            "t.toml:4: auth.failure_delay: must");

  // The fallback sidecar is built (issue 9): its methods and keys are accepted.
  auto fb = parse(with_listener({"[[policy]]", "domain = \"a.example\"",
                                 "fallback = [\"pgp\", \"smime\", \"escrow\"]", "[fallback]",
                                 "spawn = false", "store = \"postgresql://relay@db/escrow\"",
                                 "portal_listen = \"\""}),
                  "t.toml");
  ASSERT_TRUE(fb) << fb.err();
  EXPECT_EQ(fb->fallback.store, "postgresql://relay@db/escrow");
  EXPECT_EQ(err_of(with_listener({"[fallback]", "store = \"mysql://x\""})),
            "t.toml:4: fallback.store: expected \"sqlite\" or a postgresql:// connection URI, got "
            "\"mysql://x\"");

  // What stays valid: MTA-STS off, relay listeners, verify none/ca, "defer", and a forced
  // policy that leaves fallback unset (the DESIGN default chain).
  auto ok = parse(with_listener({"[mta_sts]", "enabled = false", "[[listen]]",
                                 "address = \"127.0.0.1:2526\"", "mode = \"relay\"", "[[policy]]",
                                 "domain = \"a.example\"", "verify = \"ca\"",
                                 "fallback = [\"defer\"]", "[[policy]]", "domain = \"b.example\"",
                                 "tls = \"forced\"", "[[policy]]", "domain = \"c.example\"",
                                 "tls = \"exclusive\"", "verify = \"none\""}),
                  "t.toml");
  ASSERT_TRUE(ok) << ok.err();
  EXPECT_FALSE(ok->mta_sts.enabled);
  EXPECT_EQ(ok->policies[0].fallback, std::vector<std::string>{"defer"});
  EXPECT_EQ(ok->policies[1].fallback, (std::vector<std::string>{"pgp", "smime", "escrow"}));
  // The effective config of a valid file is valid: the default chain is shown as a comment.
  auto again = parse(dump(*ok), "dump.toml");
  ASSERT_TRUE(again) << again.err() << "\n" << dump(*ok);
  EXPECT_EQ(again->policies[1].fallback, ok->policies[1].fallback);
  EXPECT_EQ(again->policies[0].fallback, ok->policies[0].fallback);
  EXPECT_NE(dump(*ok).find("# fallback = [\"pgp\", \"smime\", \"escrow\"]"), std::string::npos)
      << dump(*ok);
  // MTA-STS is on unless turned off, and its port may be set.
  auto plain = parse(with_listener({}), "t.toml");
  ASSERT_TRUE(plain) << plain.err();
  EXPECT_TRUE(plain->mta_sts.enabled);
  auto sts = parse(with_listener({"[mta_sts]", "enabled = true", "https_port = 8443"}), "t.toml");
  ASSERT_TRUE(sts) << sts.err();
  EXPECT_TRUE(sts->mta_sts.enabled);
  EXPECT_EQ(sts->mta_sts.https_port, 8443u);
}

// A private key (or the users file) that group or others may read is refused, as OpenSSH
// refuses such a key; the certificate and the CA bundle are public.
TEST(config, check_files_refuses_secrets_readable_by_group_or_others) {
  temp_dir dir;
  ASSERT_FALSE(dir.path().empty());
  const std::string pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
  std::string crt = dir.write("relay.crt", pem);
  std::string key = dir.write("relay.key", "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n");
  std::string users = dir.write("users", "alice:$6$salt$hash\n");
  ASSERT_EQ(::chmod(crt.c_str(), 0644), 0);
  auto cfg_with = [&](const char* listen_tls, bool with_users) {
    auto r = parse(doc({"[tls]", "cert_file = \"" + crt + "\"", "key_file = \"" + key + "\"",
                        "ca_file = \"" + crt + "\"", "[[listen]]", "address = \"127.0.0.1:2525\"",
                        "tls = \"" + std::string(listen_tls) + "\"", "[auth]",
                        with_users ? "users_file = \"" + users + "\"" : std::string("")}),
                   "t.toml");
    EXPECT_TRUE(r) << r.err();
    return *r;
  };
  for (mode_t bad : {0644, 0640, 0604, 0660, 0610, 0601}) {
    ASSERT_EQ(::chmod(key.c_str(), bad), 0);
    for (const char* tls : {"starttls", "implicit", "none"}) {
      auto s = check_files(cfg_with(tls, false));
      ASSERT_FALSE(s) << std::oct << bad << " " << tls;
      char m[8];
      std::snprintf(m, sizeof m, "%04o", unsigned(bad));
      EXPECT_EQ(s.err(), "tls.key_file: " + key + ": permissions " + m + " are too open: a secret "
                         "must be accessible by its owner only (chmod 600 " + key + ")");
    }
  }
  for (mode_t good : {0600, 0400}) {
    ASSERT_EQ(::chmod(key.c_str(), good), 0);
    EXPECT_TRUE(check_files(cfg_with("starttls", false))) << std::oct << good;
  }

  ASSERT_EQ(::chmod(key.c_str(), 0600), 0);
  ASSERT_EQ(::chmod(users.c_str(), 0644), 0);
  auto s = check_files(cfg_with("starttls", true));
  ASSERT_FALSE(s);
  EXPECT_EQ(s.err(), "auth.users_file: " + users + ": permissions 0644 are too open: a secret "
                     "must be accessible by its owner only (chmod 600 " + users + ")");
  ASSERT_EQ(::chmod(users.c_str(), 0600), 0);
  EXPECT_TRUE(check_files(cfg_with("starttls", true)));
  // A users file that was written must exist; the default path nothing uses is not checked.
  std::string missing = dir.path() + "/no-users";
  auto c = cfg_with("starttls", true);
  c.auth.users_file = missing;
  s = check_files(c);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.err(), "auth.users_file: cannot read " + missing + ": No such file or directory");
  c = cfg_with("starttls", false);
  c.auth.users_file = missing;
  EXPECT_TRUE(check_files(c));
}

TEST(config, enum_names_round_trip) {
  EXPECT_STREQ(to_string(listen_mode::submission), "submission");
  EXPECT_STREQ(to_string(listen_tls::implicit), "implicit");
  EXPECT_STREQ(to_string(tls_policy::exclusive), "exclusive");
  EXPECT_STREQ(to_string(verify_mode::dane), "dane");
  EXPECT_STREQ(to_string(tls_version::v1_0), "1.0");
}

// conf/sealrelay.toml is what tools/start runs and what users copy: it must stay valid,
// and so must its commented examples once uncommented.
TEST(config, example_config_is_valid_with_and_without_its_examples) {
  const char* root = std::getenv("SR_SOURCE_ROOT");
  if (!root) GTEST_SKIP() << "SR_SOURCE_ROOT not set (run through meson test)";
  std::string path = std::string(root) + "/conf/sealrelay.toml";
  auto r = load(path);
  ASSERT_TRUE(r) << r.err();
  ASSERT_EQ(r->listen.size(), 4u);
  EXPECT_EQ(r->listen[0].address, "127.0.0.1:2525");
  EXPECT_EQ(r->listen[0].tls, listen_tls::starttls);
  EXPECT_EQ(r->listen[1].address, "127.0.0.1:4650");
  EXPECT_EQ(r->listen[1].tls, listen_tls::implicit);
  EXPECT_EQ(r->listen[2].address, "127.0.0.1:5587");  // submission (README "Submission")
  EXPECT_EQ(r->listen[2].mode, listen_mode::submission);
  EXPECT_EQ(r->listen[2].tls, listen_tls::starttls);
  EXPECT_EQ(r->listen[3].address, "127.0.0.1:4465");
  EXPECT_EQ(r->listen[3].mode, listen_mode::submission);
  EXPECT_EQ(r->listen[3].tls, listen_tls::implicit);
  EXPECT_EQ(r->auth.users_file, "conf/users");
  EXPECT_EQ(r->server.state_dir, "var");
  EXPECT_EQ(r->admin.listen, "127.0.0.1:9025");
  EXPECT_EQ(r->outbound.smtp_port, 25u);
  EXPECT_TRUE(r->mta_sts.enabled);
  EXPECT_TRUE(r->policies.empty());

  // Uncomment "# [[table]]", "# [table]  # comment" and "# key = value" lines: the examples
  // must parse too.
  std::ifstream in(path);
  std::string line, text;
  const std::regex table_line(R"(# \[[a-z_]+\]\s*(#.*)?)");
  while (std::getline(in, line)) {
    if (line.rfind("# [[", 0) == 0 || std::regex_match(line, table_line) || (line.rfind("# ", 0) == 0 && line.find(" = ") != std::string::npos &&
                                        line.find_first_not_of("abcdefghijklmnopqrstuvwxyz_", 2) ==
                                            line.find(" = ")))
      line = line.substr(2);
    text += line + "\n";
  }
  auto all = parse(text, "uncommented.toml");
  ASSERT_TRUE(all) << all.err();
  ASSERT_EQ(all->policies.size(), 2u);
  EXPECT_EQ(all->fallback.store, "sqlite");
  EXPECT_EQ(all->fallback.portal_listen, "127.0.0.1:8443");
  EXPECT_EQ(all->policies[0].domain, "bank.example");
  EXPECT_EQ(all->policies[0].tls, tls_policy::forced);
  EXPECT_EQ(all->policies[1].tls, tls_policy::exclusive);
  EXPECT_TRUE(all->policies[1].notify_sender);
  ASSERT_EQ(all->routes.size(), 1u);
  EXPECT_EQ(all->server.hostname, "relay.example.org");
}

// Found by config_fuzz (tests/fuzz/corpus-config/crash_table_header_control_char.toml):
// toml++ 3.3 asserts, in builds without NDEBUG, that a table header's key starts with a
// key character, although the code after the assert reports that very error.
TEST(config, table_header_with_a_control_character_is_an_error_not_an_abort) {
  for (std::string text : {std::string("[\x0e"), std::string("[[\x01]]\n"), std::string("[a.\x7f]\n")}) {
    auto r = parse(text, "t.toml");
    ASSERT_FALSE(r);
    EXPECT_EQ(r.err().rfind("t.toml:1:", 0), 0u) << r.err();
  }
}

// Found by config_fuzz (tests/fuzz/corpus-config/crash_non_ascii_value.toml): toml++ 3.3
// reaches __builtin_unreachable classifying U+00A1..U+0499 where a token is expected, so
// such a character outside strings and comments is refused before toml++ sees it.
TEST(config, non_ascii_outside_strings_is_an_error_and_inside_strings_is_kept) {
  for (std::string text : {std::string("[[listen]]\naddress = \"127.0.0.1:25\"\nkzs = \xc5\xa2::\"[:25\"\n"),
                           std::string("\n\n[server]\nstate_dir = \"\"\"a \\\n  \xc3\xa9\"\"\"\n")}) {
    auto r = parse(text, "t.toml");
    ASSERT_FALSE(r);
    EXPECT_EQ(r.err().rfind(text[0] == '\n' ? "t.toml:5: a non-ASCII" : "t.toml:3: a non-ASCII", 0), 0u) << r.err();
  }
  auto ok = parse("# caf\xc3\xa9 \xc5\xa2\n[server]   # \xc2\xa1\nstate_dir = \"/tmp/jos\xc3\xa9\"\n"
                  "hostname = 'relay.example'\n[[listen]]\naddress = \"127.0.0.1:2525\"\n",
                  "t.toml");
  ASSERT_TRUE(ok) << ok.err();
  EXPECT_EQ(ok->server.state_dir, "/tmp/jos\xc3\xa9");
}

// [tlsrpt] (RFC 8460 reports, DESIGN.md §7): off by default; when on, organization and
// contact are required; `from` must be an address; interval takes durations down to 1s.
TEST(config, tlsrpt_section) {
  auto d = parse(with_listener({}), "t.toml");
  ASSERT_TRUE(d) << d.err();
  EXPECT_FALSE(d->tlsrpt.enabled);
  EXPECT_EQ(d->tlsrpt.interval, 24h);
  EXPECT_EQ(d->tlsrpt.from, "");

  auto r = parse(with_listener({"[tlsrpt]", "enabled = true", "organization = \"Example Org\"",
                                "contact = \"tls-reports@example.org\"", "from = \"tlsrpt@example.org\"",
                                "interval = \"2s\""}),
                 "t.toml");
  ASSERT_TRUE(r) << r.err();
  EXPECT_TRUE(r->tlsrpt.enabled);
  EXPECT_EQ(r->tlsrpt.organization, "Example Org");
  EXPECT_EQ(r->tlsrpt.contact, "tls-reports@example.org");
  EXPECT_EQ(r->tlsrpt.from, "tlsrpt@example.org");
  EXPECT_EQ(r->tlsrpt.interval, 2s);
  auto again = parse(dump(*r), "dump.toml");
  ASSERT_TRUE(again) << again.err() << "\n" << dump(*r);
  EXPECT_EQ(again->tlsrpt.organization, "Example Org");
  EXPECT_EQ(again->tlsrpt.interval, 2s);
  EXPECT_NE(dump(*r).find("[tlsrpt]\nenabled = true\n"), std::string::npos) << dump(*r);

  auto url = parse(with_listener({"[tlsrpt]", "enabled = true", "organization = \"O\"",
                                  "contact = \"https://example.org/tls\""}),
                   "t.toml");
  ASSERT_TRUE(url) << url.err();

  struct bad {
    const char* name;
    std::string text, expected;
  };
  const bad cases[] = {
      {"organization missing", with_listener({"[tlsrpt]", "enabled = true", "contact = \"a@b.example\""}),
       "t.toml:3: tlsrpt.organization: missing (required when tlsrpt.enabled = true)"},
      {"contact empty", with_listener({"[tlsrpt]", "enabled = true", "organization = \"O\"", "contact = \"\""}),
       "t.toml:6: tlsrpt.contact: must not be empty when tlsrpt.enabled = true"},
      {"contact not an address", with_listener({"[tlsrpt]", "contact = \"reports\""}),
       "t.toml:4: tlsrpt.contact: expected an address (local@domain) or a URL (https://..., mailto:...), got "
       "\"reports\""},
      {"from not an address", with_listener({"[tlsrpt]", "from = \"a@b@c\""}),
       "t.toml:4: tlsrpt.from: expected an address local@domain, got \"a@b@c\" (or \"\" for "
       "noreply-tlsrpt@<server.hostname>)"},
      {"interval too short", with_listener({"[tlsrpt]", "interval = \"0s\""}),
       "t.toml:4: tlsrpt.interval: "},
      {"unknown key", with_listener({"[tlsrpt]", "rua = \"x\""}), "t.toml:4: tlsrpt.rua: unknown key"},
  };
  for (const auto& c : cases) {
    std::string e = err_of(c.text);
    EXPECT_EQ(e.substr(0, c.expected.size()), c.expected) << c.name << "\n" << c.text;
  }
}

// Issue 10's keys: [auth] authenticated_header, [http] (loopback-only plain HTTP) and
// [[dkim]] (exact domains, DNS-label selectors, From always signed), and their dump.
TEST(config, http_dkim_and_auth_sections) {
  auto d = parse(with_listener({}), "t.toml");
  ASSERT_TRUE(d) << d.err();
  EXPECT_TRUE(d->auth.authenticated_header);
  EXPECT_EQ(d->http.listen, "");
  EXPECT_TRUE(d->http.tls);
  EXPECT_EQ(d->http.tokens_file, "conf/api-tokens");
  EXPECT_TRUE(d->dkim.empty());

  auto r = parse(with_listener({"[auth]", "authenticated_header = false", "[http]",
                                "listen = \"127.0.0.1:8025\"", "tls = false",
                                "tokens_file = \"conf/t\"", "[[dkim]]", "domain = \"Example.ORG\"",
                                "selector = \"s2026\"", "key_file = \"k.pem\"", "[[dkim]]",
                                "domain = \"b.example\"", "selector = \"ed\"", "key_file = \"e.pem\"",
                                "algorithm = \"ed25519-sha256\"", "headers = [\"From\", \"subject\"]"}),
                 "t.toml");
  ASSERT_TRUE(r) << r.err();
  EXPECT_FALSE(r->auth.authenticated_header);
  EXPECT_EQ(r->http.listen, "127.0.0.1:8025");
  EXPECT_FALSE(r->http.tls);
  ASSERT_EQ(r->dkim.size(), 2u);
  EXPECT_EQ(r->dkim[0].domain, "example.org");
  EXPECT_EQ(r->dkim[0].algorithm, dkim_algorithm::rsa_sha256);
  EXPECT_TRUE(r->dkim[0].headers.empty());
  EXPECT_EQ(r->dkim[1].algorithm, dkim_algorithm::ed25519_sha256);
  EXPECT_EQ(r->dkim[1].headers, (std::vector<std::string>{"from", "subject"}));
  EXPECT_EQ(find_dkim(*r, "EXAMPLE.org"), &r->dkim[0]);
  EXPECT_EQ(find_dkim(*r, "sub.example.org"), nullptr);
  auto again = parse(dump(*r), "dump.toml");
  ASSERT_TRUE(again) << again.err() << "\n" << dump(*r);
  EXPECT_EQ(again->dkim.size(), 2u);
  EXPECT_EQ(again->dkim[1].headers, r->dkim[1].headers);
  EXPECT_EQ(again->http.listen, "127.0.0.1:8025");
  EXPECT_FALSE(again->auth.authenticated_header);

  EXPECT_EQ(err_of(with_listener({"[http]", "listen = \"192.0.2.1:8025\"", "tls = false"})),
            "t.toml:5: http.tls: false is allowed only when http.listen is a loopback address "
            "(127.0.0.0/8, ::1), got \"192.0.2.1:8025\"");
  EXPECT_EQ(err_of(with_listener({"[http]", "listen = \"127.0.0.1:2525\""})),
            "t.toml:4: http.listen: same address as listen[0] (line 1)");
  EXPECT_EQ(err_of(with_listener({"[[dkim]]", "domain = \"a.example\"", "selector = \"s\""})),
            "t.toml:3: dkim[0].key_file: missing (every [[dkim]] needs domain, selector and key_file)");
  EXPECT_EQ(err_of(with_listener({"[[dkim]]", "domain = \".a.example\"", "selector = \"s\"", "key_file = \"k\""})),
            "t.toml:4: dkim[0].domain: an exact From: domain, got \".a.example\"");
  EXPECT_EQ(err_of(with_listener({"[[dkim]]", "domain = \"a.example\"", "selector = \"s;x\"", "key_file = \"k\""})),
            "t.toml:5: dkim[0].selector: not a DNS name: \"s;x\"");
  EXPECT_EQ(err_of(with_listener({"[[dkim]]", "domain = \"a.example\"", "selector = \"s\"", "key_file = \"k\"",
                                  "algorithm = \"rsa-sha1\""})).substr(0, 38),
            "t.toml:7: dkim[0].algorithm: must be o");
  EXPECT_EQ(err_of(with_listener({"[[dkim]]", "domain = \"a.example\"", "selector = \"s\"", "key_file = \"k\"",
                                  "headers = [\"subject\"]"})),
            "t.toml:7: dkim[0].headers: must include \"from\" (RFC 6376 §5.4)");
  EXPECT_EQ(err_of(with_listener({"[[dkim]]", "domain = \"a.example\"", "selector = \"s\"", "key_file = \"k\"",
                                  "[[dkim]]", "domain = \"A.example\"", "selector = \"t\"", "key_file = \"k\""})),
            "t.toml:8: dkim[1].domain: duplicate of dkim[0] (line 3)");
}

// [spool]: encrypt needs key_file; every key file is exactly 32 bytes, owner-only and
// outside state_dir; the errors name the line and key (the daemon adds the file name).
TEST(config, spool_section_and_its_key_files) {
  temp_dir dir;
  ASSERT_FALSE(dir.path().empty());
  EXPECT_EQ(err_of(with_listener({"[spool]", "encrypt = true"})),
            "t.toml:4: spool.encrypt: true needs spool.key_file (a file of 32 random bytes, mode "
            "0600, outside server.state_dir)");
  EXPECT_EQ(err_of(with_listener({"[spool]", "key_file = \"\""})),
            "t.toml:4: spool.key_file: must not be empty (leave it out for no key)");
  EXPECT_EQ(err_of(with_listener({"[spool]", "previous_keys = [\"a\", 3]"})),
            "t.toml:4: spool.previous_keys[1]: expected a string, got integer");
  EXPECT_EQ(err_of(with_listener({"[spool]", "encrypt = \"yes\""})),
            "t.toml:4: spool.encrypt: expected a boolean, got string");
  EXPECT_EQ(err_of(with_listener({"[spool]", "keyfile = \"k\""})), "t.toml:4: spool.keyfile: unknown key");

  std::string good = dir.write("spool.key", std::string(32, 'k'));
  std::string old = dir.write("old.key", std::string(32, 'o'));
  std::string shorter = dir.write("short.key", std::string(31, 'k'));
  std::string state = dir.path() + "/state";
  ASSERT_EQ(::mkdir(state.c_str(), 0700), 0);
  std::string inside = dir.write("state/spool.key", std::string(32, 'i'));
  for (const auto& p : {good, old, shorter, inside}) ASSERT_EQ(::chmod(p.c_str(), 0600), 0);
  auto cfg_with = [&](const std::string& key, bool encrypt, const std::string& prev = "") {
    auto r = parse(with_listener({"[server]", "state_dir = \"" + state + "\"", "[spool]",
                                  encrypt ? "encrypt = true" : "encrypt = false",
                                  "key_file = \"" + key + "\"",
                                  prev.empty() ? "" : "previous_keys = [\"" + prev + "\"]"}),
                   "t.toml");
    EXPECT_TRUE(r) << r.err();
    return *r;
  };
  auto k = read_spool_keys(cfg_with(good, true, old));
  ASSERT_TRUE(k) << k.err();
  EXPECT_TRUE(k->encrypt);
  ASSERT_TRUE(k->current);
  EXPECT_EQ((*k->current)[0], 'k');
  ASSERT_EQ(k->previous.size(), 1u);
  EXPECT_EQ(k->previous[0][31], 'o');
  // key_file without encrypt: read (old segments open), nothing sealed.
  k = read_spool_keys(cfg_with(good, false));
  ASSERT_TRUE(k) << k.err();
  EXPECT_FALSE(k->encrypt);
  EXPECT_TRUE(k->current);
  // No [spool] at all: no keys, nothing read.
  auto plain = parse(with_listener({}), "t.toml");
  ASSERT_TRUE(plain);
  k = read_spool_keys(*plain);
  ASSERT_TRUE(k);
  EXPECT_FALSE(k->current);

  auto s = read_spool_keys(cfg_with(shorter, true));
  ASSERT_FALSE(s);
  EXPECT_EQ(s.err(), "7: spool.key_file: " + shorter + " holds 31 bytes; a spool key is exactly 32 "
                     "random bytes (e.g. head -c 32 /dev/urandom > FILE; chmod 600 FILE)");
  ASSERT_EQ(::chmod(good.c_str(), 0640), 0);
  s = read_spool_keys(cfg_with(good, true));
  ASSERT_FALSE(s);
  EXPECT_EQ(s.err(), "7: spool.key_file: " + good + ": permissions 0640 are too open: a secret must "
                     "be accessible by its owner only (chmod 600 " + good + ")");
  ASSERT_EQ(::chmod(good.c_str(), 0600), 0);
  s = read_spool_keys(cfg_with(inside, true));
  ASSERT_FALSE(s);
  EXPECT_EQ(s.err(), "7: spool.key_file: " + inside + " lies inside server.state_dir (" + state +
                     "): the key must not sit beside the spool it protects");
  s = read_spool_keys(cfg_with(good, true, shorter));
  ASSERT_FALSE(s);
  EXPECT_EQ(s.err().substr(0, 24), "8: spool.previous_keys: ");
  s = read_spool_keys(cfg_with(dir.path() + "/missing.key", false));
  ASSERT_FALSE(s);
  EXPECT_EQ(s.err(), "7: spool.key_file: cannot read " + dir.path() + "/missing.key: No such file or directory");
}
