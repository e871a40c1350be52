// Client-side TLS session cache: the last resumable session per remote host, so the next
// connection to that MX resumes (one round trip and no certificate work saved). One per
// shard, never shared between threads, so no locks. Bounded; evicts the least recently used.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>

#include "sealrelay/tls/session.hh"

struct WOLFSSL_SESSION;

namespace sr::tls {

class session_cache {
 public:
  struct entry {
    WOLFSSL_SESSION* session = nullptr;  // owned
    cert_verdict verdict = cert_verdict::none;  // of the full handshake that made it
    std::string subject;
    uint64_t last_used = 0;
  };

  // Create a cache of at most `capacity` hosts.
  explicit session_cache(size_t capacity = 256) : _capacity(capacity ? capacity : 1) {}
  session_cache(const session_cache&) = delete;
  session_cache& operator=(const session_cache&) = delete;
  ~session_cache();

  // Return the entry for host, or nullptr; marks it recently used.
  const entry* find(std::string_view host);
  // Store a copy of the session (takes ownership of `sess`), replacing the host's old one.
  void store(std::string_view host, WOLFSSL_SESSION* sess, cert_verdict verdict,
             std::string_view subject);
  // Forget host (e.g. after a resumption was refused or the verdict got worse).
  void erase(std::string_view host);
  size_t size() const { return _map.size(); }

 private:
  struct hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  size_t _capacity;
  uint64_t _tick = 0;
  std::unordered_map<std::string, entry, hash, std::equal_to<>> _map;
};

}  // namespace sr::tls
