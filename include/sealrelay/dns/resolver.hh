// Per-shard stub resolver: queries go to recursive servers (`dns.resolvers`, else the
// nameservers of /etc/resolv.conf) over the shard's own io_uring — UDP with EDNS0 and
// the DO bit, TCP when the answer is truncated — with timeouts driven by the shard tick,
// retries across servers, a TTL cache with RFC 2308 negative caching, and one packet
// for concurrent identical questions. Callbacks always run later via shard.post(), on
// the shard thread, never inside the call. No ldns type appears in this header.
#pragma once
#include <sys/socket.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "sealrelay/core/shard.hh"
#include "sealrelay/util/result.hh"

namespace sr::dns {

enum class status : uint8_t {
  ok,         // records found; for MX also an implicit MX (mx_result::implicit)
  nodata,     // the name exists but has no record of the type (A/AAAA, TXT, TLSA)
  nxdomain,   // the name does not exist
  null_mx,    // the domain publishes the null MX "0 ." (RFC 7505): it accepts no mail
  temp_fail,  // timeouts, SERVFAIL/REFUSED from every server, CNAME chain too long
  bad_name,   // not a valid domain name; nothing was sent
};
const char* to_string(status s);

// One mail exchanger; `name` has no trailing dot ("mx1.example.com").
struct mx_host {
  std::string name;
  uint16_t preference = 0;
};

struct mx_result {
  dns::status status = dns::status::temp_fail;
  bool ad = false;        // every answer on the way (CNAMEs included) had the AD bit
  bool implicit = false;  // no MX records: `hosts` is the domain itself (RFC 5321 §5.1)
  std::vector<mx_host> hosts;  // by preference; equal preferences in random order
};

struct addr_result {
  dns::status status = dns::status::temp_fail;
  bool ad = false;  // the A and AAAA answers had the AD bit (a failed one, which adds no address, aside)
  std::vector<sockaddr_storage> addrs;  // IPv4 first, then IPv6; port 0
};

struct txt_result {
  dns::status status = dns::status::temp_fail;
  bool ad = false;
  std::vector<std::string> texts;  // one per TXT record, its strings concatenated
};

struct tlsa_result {
  dns::status status = dns::status::temp_fail;
  bool ad = false;
  std::vector<std::vector<uint8_t>> records;  // raw rdata: usage, selector, mtype, data
};

struct resolver_options {
  std::vector<std::string> servers;  // "ip", "ip:port", "[ipv6]:port"; empty = resolv_conf
  std::string resolv_conf = "/etc/resolv.conf";
  uint32_t timeout_ms = 2000;        // per try; checked on the shard tick (100 ms steps)
  unsigned attempts = 2;             // rounds over all servers
  uint32_t max_ttl_s = 86400;        // cap on positive answers
  uint32_t max_negative_ttl_s = 3600;  // cap on NXDOMAIN / NODATA (SOA minimum)
  size_t max_cache_entries = 100000;
};

struct resolver_stats {
  uint64_t cache_hits = 0;    // (name, type) answered from the cache
  uint64_t cache_misses = 0;  // (name, type) not in the cache (coalesced ones included)
  uint64_t coalesced = 0;     // misses that joined a query already in flight
  uint64_t udp_queries = 0;   // UDP packets sent (retries included)
  uint64_t tcp_queries = 0;   // TCP connections for truncated answers
  uint64_t timeouts = 0;      // tries that timed out
  uint64_t cache_entries = 0; // entries now in the cache
};

class resolver {
 public:
  resolver(core::shard& sh, resolver_options opt);
  // Lookups still in flight are dropped (their callbacks never run). Destroy the
  // resolver before its shard; a server's armed receive (and its 64 KiB buffer) is
  // freed by its cancelled CQE, so it stays allocated if the shard never runs again.
  ~resolver();
  resolver(const resolver&) = delete;
  resolver& operator=(const resolver&) = delete;

  // Open one connected UDP socket per server and arm its receive; start-up only, on the
  // shard thread after shard.init(). Fails if no server address is usable.
  sr::status start();

  // Find the mail exchangers of `domain` (MX, CNAMEs followed, null MX, implicit MX).
  void lookup_mx(std::string_view domain, std::function<void(const mx_result&)> cb);
  // Find the A and AAAA addresses of `host` (asked in parallel); an IP literal answers itself.
  void lookup_addrs(std::string_view host, std::function<void(const addr_result&)> cb);
  // Find the TXT records of `name` (MTA-STS).
  void lookup_txt(std::string_view name, std::function<void(const txt_result&)> cb);
  // Find the TLSA records of `name` ("_25._tcp.mx.example.com", DANE).
  void lookup_tlsa(std::string_view name, std::function<void(const tlsa_result&)> cb);

  // Counters for /metrics.
  resolver_stats stats() const;
  // The servers in use, as "ip:port" / "[ipv6]:port".
  std::vector<std::string> servers() const;
  // Forget every cached answer (tests, SIGHUP).
  void clear_cache();

  struct impl;

 private:
  std::shared_ptr<impl> _impl;
};

// Return the nameservers of a resolv.conf file as "ip:53" / "[ipv6]:53" (none if unreadable).
std::vector<std::string> servers_from_resolv_conf(const std::string& path);
// Parse "ip", "ip:port", "[ipv6]", "[ipv6]:port" or a bare IPv6 address (port 53 by default).
sr::result<sockaddr_storage> parse_server(std::string_view text);

}  // namespace sr::dns
