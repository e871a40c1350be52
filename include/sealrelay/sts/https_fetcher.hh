// The daemon's MTA-STS fetcher: GET https://mta-sts.<domain>:<port>/.well-known/mta-sts.txt
// through the shard's https::client (RFC 8461 §3.3: TLS 1.2+, SNI, certificate verified
// against tls.ca_file for that host, no redirects, 200 and text/plain only, at most
// 64 KiB, 60 s for the whole exchange).
#pragma once
#include <cstdint>

#include "sealrelay/https/client.hh"
#include "sealrelay/sts/resolver.hh"

namespace sr::sts {

class https_fetcher final : public fetcher {
 public:
  // Fetch through `c` (which must outlive this) from `port` (mta_sts.https_port).
  https_fetcher(https::client& c, uint16_t port) : _client(c), _port(port) {}
  // Fetch `domain`'s policy file; `done` runs once, later, on the shard thread.
  void fetch(std::string_view domain, std::function<void(const fetch_result&)> done) override;

 private:
  https::client& _client;
  uint16_t _port;
};

}  // namespace sr::sts
