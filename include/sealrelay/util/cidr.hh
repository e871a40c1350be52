// Network prefixes ("127.0.0.0/8", "::1/128") and socket-address matching.
#pragma once
#include <netinet/in.h>
#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace sr {

struct cidr {
  int family = AF_INET;                // AF_INET or AF_INET6
  std::array<uint8_t, 16> addr{};      // network byte order; first 4 bytes for IPv4
  int prefix_len = 32;

  // Parse "a.b.c.d[/n]" or "v6[/n]"; a bare address is a host prefix.
  static std::optional<cidr> parse(std::string_view text);
  // True when `sa` (AF_INET, AF_INET6, or v4-mapped v6) falls in this prefix.
  bool contains(const sockaddr* sa) const;
  std::string to_string() const;
};

// Parse "ip:port" or "[v6]:port" into a socket address; nullopt when malformed.
std::optional<sockaddr_storage> parse_endpoint(std::string_view text, socklen_t* len = nullptr);
// Format the address part of a socket address ("127.0.0.1", "::1").
std::string address_to_string(const sockaddr* sa);

}  // namespace sr
