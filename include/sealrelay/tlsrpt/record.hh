// The TLS-RPT policy record (RFC 8460 §3): TXT `_smtp._tls.<domain>` =
// `v=TLSRPTv1; rua=mailto:reports@example.net,https://reports.example.net/v1`. Strict:
// of the TXT records, those that do not begin with "v=TLSRPTv1" are ignored and exactly
// one must remain; `rua` is required. Only mailto: and https: URIs are used (others are
// skipped); a record whose rua names neither has nowhere to send and is refused.
#pragma once
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "sealrelay/util/result.hh"

namespace sr::tlsrpt {

struct rua_uri {
  enum class scheme : uint8_t { mailto, https };
  enum scheme scheme = scheme::mailto;
  std::string text;     // the URI as published (the key of "already sent to")
  std::string address;  // mailto: the recipient address (%-decoded, no ?query)
  std::string host;     // https: host (lower case), port, and path with its ?query
  uint16_t port = 443;
  std::string path = "/";
};

struct record {
  std::vector<rua_uri> rua;  // in published order, duplicates removed
};

// Parse one TXT text as a TLS-RPT record; an error says why it is not one.
result<record> parse_record(std::string_view txt);
// Pick the domain's record from all its TXT texts (RFC 8460 §3: exactly one that begins
// with "v=TLSRPTv1"); an error says why there is none.
result<record> pick_record(std::span<const std::string> texts);
// Return the DNS name of the record for `domain` ("_smtp._tls.<domain>").
std::string record_name(std::string_view domain);

}  // namespace sr::tlsrpt
