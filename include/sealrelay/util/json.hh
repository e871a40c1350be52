// JSON string literals written by hand (audit log, MTA-STS cache, TLS-RPT report,
// sealrelay-check --json): one escaper so every JSON output escapes alike. Valid UTF-8 is
// kept as is; control characters, DEL, U+2028/U+2029 and bytes that are not valid UTF-8
// are \u-escaped (an invalid byte b becomes \u00XX, i.e. read as Latin-1).
#pragma once
#include <string>
#include <string_view>

namespace sr {

// Append `s` to `out` as a quoted, escaped JSON string literal.
void append_json_string(std::string& out, std::string_view s);

}  // namespace sr
