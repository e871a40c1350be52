// Config values whose feature this version does not build (DESIGN.md §4: "refused by
// --check-config ('not available in this version'), never accepted and ignored"). The
// loader reads these keys against the full schema, then refuses every value listed here
// with the file and line where it was written. A feature lifts its refusal by deleting
// its rows; nothing else in the loader changes.
#pragma once
#include <iterator>
#include <span>
#include <string_view>

namespace sr::config {

struct not_built_value {
  std::string_view key;      // dotted path; "name[]" = every entry of the array of tables
  std::string_view value;    // a string's text, or "true" / "false" (arrays: each element);
                             // "*" = the key itself, whatever its value
  std::string_view feature;  // what is missing, as the operator reads it
};

// Every feature with config keys is built (submission lifted its rows in issue 10). A row
// goes into `not_built_rows` before its end marker, e.g.
//   {"listen[].mode", "submission", "submission (AUTH after TLS)"}, or
//   {"auth.users_file", "*", "..."} for a key that only configures the missing feature.
inline constexpr not_built_value not_built_rows[] = {
    {"", "", ""},  // end marker, kept last (a C++ array cannot be empty); not a row
};
inline constexpr std::span<const not_built_value> not_built_values(not_built_rows,
                                                                   std::size(not_built_rows) - 1);

}  // namespace sr::config
