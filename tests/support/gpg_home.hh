// A GnuPG home in a fresh temp dir under /tmp (short, for gpg-agent's sockets), for tests
// that need real keys: gpg() runs `gpg --batch` on it, every run bounded by `timeout`;
// the agents it started are killed when it goes. Header-only.
#pragma once
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "support/temp_dir.hh"

namespace sr::test {
namespace detail {
inline std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}
}  // namespace detail

// A GnuPG home in a fresh temp dir; gpg() runs gpg on it with a bounded time.
class gpg_home {
 public:
  explicit gpg_home(const char* tag) : _dir(tag, "/tmp") {
    std::filesystem::permissions(_dir.path(), std::filesystem::perms::owner_all,
                                 std::filesystem::perm_options::replace);
    _home = (_dir.path() / "h").string();
    std::filesystem::create_directory(_home);
    std::filesystem::permissions(_home, std::filesystem::perms::owner_all,
                                 std::filesystem::perm_options::replace);
  }
  ~gpg_home() {
    std::string cmd = "timeout 30 gpgconf --homedir '" + _home + "' --kill all >/dev/null 2>&1";
    (void)std::system(cmd.c_str());
  }
  const std::string& home() const { return _home; }
  std::filesystem::path file(const char* name) const { return _dir.path() / name; }

  // Run `gpg --batch --homedir H <args>`; true when it exits 0.
  bool gpg(const std::string& args) const {
    std::string cmd = "timeout 60 gpg --batch --no-tty --homedir '" + _home +
                      "' --pinentry-mode loopback --passphrase '' " + args + " >>'" +
                      file("gpg.log").string() + "' 2>&1";
    return std::system(cmd.c_str()) == 0;
  }
  // The primary fingerprint of the first key listed for `who`.
  std::string fingerprint(const std::string& who) const {
    auto out = file("fpr.txt");
    std::string cmd = "timeout 30 gpg --batch --homedir '" + _home + "' --with-colons -k '" + who +
                      "' 2>/dev/null | awk -F: '/^fpr/{print $10; exit}' >'" + out.string() + "'";
    if (std::system(cmd.c_str()) != 0) return {};
    std::string f = detail::slurp(out);
    while (!f.empty() && (f.back() == '\n' || f.back() == '\r')) f.pop_back();
    return f;
  }

 private:
  test::temp_dir _dir;
  std::string _home;
};

}  // namespace sr::test
