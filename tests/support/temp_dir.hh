// A fresh directory under $TMPDIR for one test, removed with its contents on destruction
// (kept when SEALRELAY_KEEP_TMP is set, to look at a failure). Header-only, so unit tests
// use it without linking the loopback world.
#pragma once
#include <cstdlib>
#include <filesystem>
#include <string>
#include <system_error>

namespace sr::test {

class temp_dir {
 public:
  // Create the directory under `base` ($TMPDIR, else /tmp, when null; /tmp keeps paths
  // short for unix sockets such as gpg-agent's); path() is empty when that failed.
  explicit temp_dir(const char* tag = "sealrelay-test", const char* base = nullptr) {
    if (!base) base = std::getenv("TMPDIR");
    std::string tmpl = std::string(base && *base ? base : "/tmp") + "/" + tag + ".XXXXXX";
    if (char* made = ::mkdtemp(tmpl.data())) _path = made;
  }
  ~temp_dir() {
    if (_path.empty()) return;
    if (const char* keep = std::getenv("SEALRELAY_KEEP_TMP"); keep && *keep) return;
    std::error_code ec;
    std::filesystem::remove_all(_path, ec);
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
  const std::filesystem::path& path() const { return _path; }

 private:
  std::filesystem::path _path;
};

}  // namespace sr::test
