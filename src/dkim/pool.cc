// The RSA signing pool (pool.hh) over core::worker_pool: worker i signs with keyring i,
// its own copy of every RSA key.
#include "sealrelay/dkim/pool.hh"

namespace sr::dkim {

result<std::unique_ptr<sign_pool>> sign_pool::create(std::span<const key_entry> entries, unsigned threads,
                                                     size_t max_queued) {
  std::vector<keyring> keys(threads ? threads : 1);
  bool any = false;
  for (auto& ring : keys) ring.resize(entries.size());
  for (size_t i = 0; i < entries.size(); ++i) {
    for (auto& ring : keys) {
      auto k = tls::signing_key::load_pem_file(entries[i].key_file);
      if (!k) return error{"dkim[" + std::to_string(i) + "].key_file: " + entries[i].key_file + ": " + k.err()};
      if (k->kind() != tls::key_kind::rsa) break;  // Ed25519 signs inline on the shard
      ring[i].emplace(std::move(*k));
      any = true;
    }
  }
  if (!any) return std::unique_ptr<sign_pool>();
  return std::unique_ptr<sign_pool>(new sign_pool(std::move(keys), max_queued));
}

sign_pool::sign_pool(std::vector<keyring> keys, size_t max_queued)
    : _keys(std::move(keys)),
      _pool(static_cast<unsigned>(_keys.size()), max_queued, [this](unsigned worker, job& j) {
        std::optional<std::vector<uint8_t>> sig;
        if (auto r = _keys[worker][j.entry]->sign_digest(j.digest)) sig = std::move(*r);
        return sig;
      }) {
  for (const auto& k : _keys.front()) _rsa.push_back(k.has_value());
}

bool sign_pool::sign(core::shard& sh, size_t entry, const tls::sha256_digest& digest, done_fn done) {
  if (!handles(entry)) return false;
  return _pool.submit(sh, job{entry, digest}, std::move(done));
}

}  // namespace sr::dkim
