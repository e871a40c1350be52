// Bearer tokens of the HTTP injection API (http.tokens_file, DESIGN §7): the file's
// parser (one token a line, `#` comments, blank lines; a file group or others may access
// is refused) and the check of an Authorization header: none or malformed -> 401, a token
// not in the file -> 403. Tokens are kept as SHA-256 digests and every one is compared in
// constant time (tls::equal_constant_time), so neither a token nor its length leaks by time.
#pragma once
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "sealrelay/api/request.hh"
#include "sealrelay/util/result.hh"

namespace sr::api {

// Tokens shorter than this are refused in the file: a guessable token is no secret.
inline constexpr std::size_t min_token_length = 16;

enum class auth_outcome : uint8_t {
  ok,         // a known token
  missing,    // no Authorization header                 -> 401
  malformed,  // not "Bearer <b64token>" (RFC 6750 §2.1) -> 401
  wrong,      // a well-formed token not in the file     -> 403
};

// Return the HTTP status for `o` (200 for ok, then 401, 401, 403).
uint16_t status_for(auth_outcome o);
// Return the error to answer for `o` (not ok): 401 or 403, field "Authorization"; a 401
// answer also carries `WWW-Authenticate: Bearer` (RFC 6750 §3), which the listener adds.
api_error auth_error(auth_outcome o);
// Return a short name for `o` (audit, logs).
const char* to_string(auth_outcome o);

class token_set {
 public:
  // Parse the file's text; errors name `name` and the line.
  static result<token_set> parse(std::string_view text, std::string_view name);
  // Read and parse the file at `path`; refused when group or others may access it.
  static result<token_set> load(const std::string& path);

  // Check an Authorization header value (std::nullopt when the header is absent); on ok,
  // `*index` (when given) is the token's 0-based position in the file (logs and the
  // Received: header name a token by it, never by its value).
  auth_outcome check(std::optional<std::string_view> authorization, std::size_t* index = nullptr) const;
  std::size_t size() const { return _digests.size(); }

 private:
  std::vector<std::array<uint8_t, 32>> _digests;
};

}  // namespace sr::api
