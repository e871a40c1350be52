// Whole-file reads and writes for unit tests (header-only): what a test wrote for the code
// under test, and what that code wrote back. Binary-safe; a file that cannot be read reads
// as "".
#pragma once
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>

namespace sr::test {

inline std::string read_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline void write_file(const std::filesystem::path& p, std::string_view s) {
  std::ofstream out(p, std::ios::binary);
  out << s;
}

}  // namespace sr::test
