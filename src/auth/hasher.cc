// The password-check pool (hasher.hh) over core::worker_pool: a worker runs
// verify_password; every password is wiped once checked, refused or dropped at shutdown.
#include "sealrelay/auth/hasher.hh"

#include <string.h>

#include "sealrelay/auth/users.hh"

namespace sr::auth {

namespace {
void wipe(std::string& s) { explicit_bzero(s.data(), s.size()); }
}  // namespace

hasher::hasher(unsigned threads, size_t max_queued)
    : _pool(
          threads, max_queued,
          [](unsigned, job& j) {
            bool ok = verify_password(j.password, j.hash);
            wipe(j.password);
            return ok;
          },
          [](job& j) { wipe(j.password); }) {}

bool hasher::check(core::shard& sh, std::string password, std::string hash, std::function<void(bool)> done) {
  return _pool.submit(sh, job{std::move(password), std::move(hash)}, std::move(done));
}

}  // namespace sr::auth
