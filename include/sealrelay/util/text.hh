// Small byte-text helpers several modules need: ASCII case-insensitive comparison (header
// and field names, host names) and base64 (RFC 4648: standard or URL-safe alphabet, MIME
// lines of 76 characters). Bytes only: no locale, no allocation beyond `out` growing.
#pragma once
#include <optional>
#include <string>
#include <string_view>

namespace sr {

// Return whether `a` and `b` are equal ignoring ASCII case.
bool iequals(std::string_view a, std::string_view b);

enum class base64_alphabet : bool {
  standard,  // A-Z a-z 0-9 + /, padded with '='
  url,       // A-Z a-z 0-9 - _, unpadded (RFC 4648 §5: fits a path segment as it is)
};
// Append the base64 of `in` to `out`.
void append_base64(std::string& out, std::string_view in, base64_alphabet a = base64_alphabet::standard);
// Append the base64 of `in` as MIME body lines (RFC 2045 §6.8): 76 characters, each line
// ending in CRLF (the last one too).
void append_base64_lines(std::string& out, std::string_view in);
// Decode standard base64 strictly (RFC 4648 §3.3/§3.5: the standard alphabet, length a
// multiple of 4, '=' padding only at the end, no line breaks, zero pad bits): what protocol
// fields such as SASL responses (RFC 4954) must be. nullopt for anything else. (MIME bodies,
// which may wrap and carry junk, are decoded leniently where they are read.)
std::optional<std::string> decode_base64_strict(std::string_view in);

}  // namespace sr
