// Prefix matching is byte-wise on network-order addresses; v4-mapped IPv6 clients
// (from a dual-stack listener) match IPv4 prefixes.
#include "sealrelay/util/cidr.hh"

#include <arpa/inet.h>

#include <charconv>
#include <cstring>

namespace sr {

std::optional<cidr> cidr::parse(std::string_view text) {
  cidr c;
  std::string_view addr = text;
  int len = -1;
  if (auto slash = text.find('/'); slash != std::string_view::npos) {
    addr = text.substr(0, slash);
    auto lenpart = text.substr(slash + 1);
    auto [p, ec] = std::from_chars(lenpart.data(), lenpart.data() + lenpart.size(), len);
    if (ec != std::errc() || p != lenpart.data() + lenpart.size()) return std::nullopt;
  }
  std::string a(addr);
  if (inet_pton(AF_INET, a.c_str(), c.addr.data()) == 1) {
    c.family = AF_INET;
    if (len < 0) len = 32;
    if (len > 32) return std::nullopt;
  } else if (inet_pton(AF_INET6, a.c_str(), c.addr.data()) == 1) {
    c.family = AF_INET6;
    if (len < 0) len = 128;
    if (len > 128) return std::nullopt;
  } else {
    return std::nullopt;
  }
  c.prefix_len = len;
  return c;
}

static bool prefix_match(const uint8_t* a, const uint8_t* b, int bits) {
  int whole = bits / 8;
  if (std::memcmp(a, b, whole) != 0) return false;
  int rest = bits % 8;
  if (rest == 0) return true;
  uint8_t mask = uint8_t(0xff << (8 - rest));
  return (a[whole] & mask) == (b[whole] & mask);
}

bool cidr::contains(const sockaddr* sa) const {
  if (sa->sa_family == AF_INET) {
    if (family != AF_INET) return false;
    auto* in = reinterpret_cast<const sockaddr_in*>(sa);
    return prefix_match(reinterpret_cast<const uint8_t*>(&in->sin_addr), addr.data(), prefix_len);
  }
  if (sa->sa_family == AF_INET6) {
    auto* in6 = reinterpret_cast<const sockaddr_in6*>(sa);
    const uint8_t* a = reinterpret_cast<const uint8_t*>(&in6->sin6_addr);
    if (family == AF_INET6) return prefix_match(a, addr.data(), prefix_len);
    if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) return prefix_match(a + 12, addr.data(), prefix_len);
  }
  return false;
}

std::string cidr::to_string() const {
  char buf[INET6_ADDRSTRLEN];
  inet_ntop(family, addr.data(), buf, sizeof buf);
  return std::string(buf) + "/" + std::to_string(prefix_len);
}

std::optional<sockaddr_storage> parse_endpoint(std::string_view text, socklen_t* len) {
  sockaddr_storage ss{};
  std::string host;
  std::string_view port;
  if (!text.empty() && text[0] == '[') {
    auto close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':')
      return std::nullopt;
    host = std::string(text.substr(1, close - 1));
    port = text.substr(close + 2);
  } else {
    auto colon = text.rfind(':');
    if (colon == std::string_view::npos) return std::nullopt;
    host = std::string(text.substr(0, colon));
    port = text.substr(colon + 1);
  }
  unsigned p = 0;
  auto [e, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
  if (ec != std::errc() || e != port.data() + port.size() || p > 65535) return std::nullopt;
  auto* in = reinterpret_cast<sockaddr_in*>(&ss);
  auto* in6 = reinterpret_cast<sockaddr_in6*>(&ss);
  if (inet_pton(AF_INET, host.c_str(), &in->sin_addr) == 1) {
    in->sin_family = AF_INET;
    in->sin_port = htons(uint16_t(p));
    if (len) *len = sizeof(sockaddr_in);
  } else if (inet_pton(AF_INET6, host.c_str(), &in6->sin6_addr) == 1) {
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(uint16_t(p));
    if (len) *len = sizeof(sockaddr_in6);
  } else {
    return std::nullopt;
  }
  return ss;
}

std::string address_to_string(const sockaddr* sa) {
  char buf[INET6_ADDRSTRLEN] = "?";
  if (sa->sa_family == AF_INET)
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(sa)->sin_addr, buf, sizeof buf);
  else if (sa->sa_family == AF_INET6)
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(sa)->sin6_addr, buf, sizeof buf);
  return buf;
}

}  // namespace sr
