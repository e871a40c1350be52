// The escrow portal's request helpers (portal_request.cc): bytes from any web client, so
// each is bounded by its input and never trusts a length.
#pragma once
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sr::fallback::portal {

// Whether `s` is 1..`max` characters of the base64url alphabet (a link id or secret).
bool base64url_token(std::string_view s, std::size_t max);
// Split `path` at '/' into at most `max` + 1 segments (a longer path: the caller refuses it).
std::vector<std::string_view> split_path(std::string_view path, std::size_t max);
// Return the value of `name` in an application/x-www-form-urlencoded body ('+' and %XX
// decoded; a malformed escape is kept as is), or nothing when the body has no such field.
std::optional<std::string> form_field(std::string_view body, std::string_view name);
// Return every value of the cookie `name` in a Cookie field (several paths may send one),
// at most 16.
std::vector<std::string_view> cookie_values(std::string_view field, std::string_view name);

}  // namespace sr::fallback::portal
