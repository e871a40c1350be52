// Config values whose feature this version does not build (DESIGN.md §4: "refused by
// --check-config ('not available in this version'), never accepted and ignored"). The
// loader reads these keys against the full schema, then refuses every value listed here
// with the file and line where it was written. A feature lifts its refusal by deleting
// its rows; nothing else in the loader changes.
#pragma once
#include <string_view>

namespace sr::config {

struct not_built_value {
  std::string_view key;      // dotted path; "name[]" = every entry of the array of tables
  std::string_view value;    // a string's text, or "true" / "false" (arrays: each element);
                             // "*" = the key itself, whatever its value
  std::string_view feature;  // what is missing, as the operator reads it
};

inline constexpr not_built_value not_built_values[] = {
    {"listen[].mode", "submission", "submission (AUTH after TLS)"},
    // Keys that only configure a feature not built: written at all, they would do nothing.
    {"auth.users_file", "*", "submission (AUTH after TLS)"},
};

}  // namespace sr::config
