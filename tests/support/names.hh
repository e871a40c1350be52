// Numbered names for tests that build large tables ("d17.example"). Header-only.
#pragma once
#include <cstddef>
#include <string>

namespace sr::test {

// Build "<pre><i><post>" (GCC 12 warns falsely, -Wrestrict, on chained operator+).
inline std::string name_of(const char* pre, size_t i, const char* post) {
  std::string s(pre);
  s += std::to_string(i);
  s += post;
  return s;
}

}  // namespace sr::test
