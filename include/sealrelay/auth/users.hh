// Submission users (issue 10, DESIGN.md §7 "Submission"): the `auth.users_file`, one user a
// line `user:crypt-hash[:allowed-sender-pattern]`, `#` comments and blank lines skipped.
// A hash is anything Debian's crypt(3) (libxcrypt) knows: yescrypt `$y$` (what `mkpasswd`
// makes by default), SHA-512 `$6$`, bcrypt `$2b$`, ...; a hash crypt(3) cannot use is an
// error at load, naming the line. The sender pattern says which envelope senders and From:
// addresses the user may use: empty = the user name itself (an address); otherwise a
// comma-separated list of address globs where `*` matches any run of characters
// (`*@example.org`, `news-*@example.org`); the domain part is compared without case.
// Verification is synchronous and deliberately slow (that is what these hashes are for):
// call it off any event loop (auth::hasher).
#pragma once
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "sealrelay/util/result.hh"

namespace sr::auth {

struct user {
  std::string name;
  std::string hash;
  std::vector<std::string> senders;  // globs; empty = only `name`
  int line = 0;
};

class users {
 public:
  // Load `path`: refused when group or others may read or write it (a file of password
  // hashes is a secret), and on any malformed line ("FILE:LINE: why").
  static result<users> load(const std::string& path);
  // Parse `text` as if read from `name` (no permission check).
  static result<users> parse(std::string_view text, const std::string& name);

  // The user called `name` (exact), or null.
  const user* find(std::string_view name) const;
  size_t size() const { return _users.size(); }

 private:
  std::vector<user> _users;
  std::unordered_map<std::string, size_t> _by_name;
};

// Return whether `u` may use `address` (without <>) as envelope sender or From: address.
bool sender_allowed(const user& u, std::string_view address);

// Check `password` against a crypt(3) `hash` (constant-time comparison of the result). False
// for a wrong password and for a hash crypt(3) cannot use.
bool verify_password(std::string_view password, const std::string& hash);

}  // namespace sr::auth
