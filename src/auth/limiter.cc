// The AUTH failure brake (limiter.hh): counters keyed "ip:<addr>" and "user:<name>" in one
// map with an LRU list for the memory bound.
#include "sealrelay/auth/limiter.hh"

#include <arpa/inet.h>

#include <algorithm>

namespace sr::auth {

std::string limiter::ip_key(std::string_view ip) {
  // IPv6: the /64 is the client (one host gets a whole prefix); IPv4 as it is.
  if (ip.find(':') == std::string_view::npos) return "ip:" + std::string(ip);
  in6_addr a{};
  std::string text(ip);
  if (::inet_pton(AF_INET6, text.c_str(), &a) != 1) return "ip:" + text;
  return "ip6:" + std::string(reinterpret_cast<const char*>(a.s6_addr), 8);
}

limiter::entry& limiter::touch(const std::string& key, uint64_t now_ms) {
  auto it = _map.find(key);
  if (it == _map.end()) {
    while (_map.size() >= _o.max_keys && !_order.empty()) {
      _map.erase(_order.front());
      _order.pop_front();
    }
    _order.push_back(key);
    it = _map.emplace(key, entry{0, now_ms, std::prev(_order.end())}).first;
  } else {
    _order.splice(_order.end(), _order, it->second.lru);
  }
  entry& e = it->second;
  if (now_ms - e.last_ms > uint64_t(std::chrono::milliseconds(_o.forget_after).count())) e.failures = 0;
  e.last_ms = now_ms;
  return e;
}

verdict limiter::judge(unsigned failures) const {
  verdict v;
  if (failures >= _o.max_failures) {
    v.close = true;
    return v;
  }
  if (failures <= _o.free_tries) return v;
  unsigned steps = std::min(failures - _o.free_tries - 1, 16u);
  auto d = _o.base_delay * (1u << steps);
  v.delay = std::min<std::chrono::milliseconds>(d, _o.max_delay);
  return v;
}

verdict limiter::failed(std::string_view ip, std::string_view user, uint64_t now_ms) {
  entry& a = touch(ip_key(ip), now_ms);
  ++a.failures;
  unsigned worst = a.failures;
  if (!user.empty()) {
    entry& u = touch("user:" + std::string(user), now_ms);
    ++u.failures;
    worst = std::max(worst, u.failures);
  }
  return judge(worst);
}

verdict limiter::before(std::string_view ip, std::string_view user, uint64_t now_ms) {
  unsigned worst = touch(ip_key(ip), now_ms).failures;
  if (!user.empty()) worst = std::max(worst, touch("user:" + std::string(user), now_ms).failures);
  verdict v;
  v.close = worst >= _o.max_failures;
  return v;
}

void limiter::succeeded(std::string_view user) {
  auto it = _map.find("user:" + std::string(user));
  if (it == _map.end()) return;
  _order.erase(it->second.lru);
  _map.erase(it);
}

}  // namespace sr::auth
