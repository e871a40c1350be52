// Client session cache: owns one WOLFSSL_SESSION copy per host; LRU eviction by a scan,
// which only runs when a new host arrives at a full cache (capacity is small).
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

#include "sealrelay/tls/session_cache.hh"

namespace sr::tls {

session_cache::~session_cache() {
  for (auto& [host, e] : _map) wolfSSL_SESSION_free(e.session);
}

const session_cache::entry* session_cache::find(std::string_view host) {
  auto it = _map.find(host);
  if (it == _map.end()) return nullptr;
  it->second.last_used = ++_tick;
  return &it->second;
}

void session_cache::store(std::string_view host, WOLFSSL_SESSION* sess, cert_verdict verdict,
                          std::string_view subject) {
  if (!sess) return;
  auto it = _map.find(host);
  if (it == _map.end()) {
    if (_map.size() >= _capacity) {
      auto oldest = _map.begin();
      for (auto i = _map.begin(); i != _map.end(); ++i)
        if (i->second.last_used < oldest->second.last_used) oldest = i;
      wolfSSL_SESSION_free(oldest->second.session);
      _map.erase(oldest);
    }
    it = _map.emplace(std::string(host), entry{}).first;
  } else {
    wolfSSL_SESSION_free(it->second.session);
  }
  it->second.session = sess;
  it->second.verdict = verdict;
  it->second.subject.assign(subject);
  it->second.last_used = ++_tick;
}

void session_cache::erase(std::string_view host) {
  auto it = _map.find(host);
  if (it == _map.end()) return;
  wolfSSL_SESSION_free(it->second.session);
  _map.erase(it);
}

}  // namespace sr::tls
