// net::conn_caps (the connection counts behind the SMTP server's and the HTTP API's caps):
// the same address always lands on the same slot, IPv4 and IPv6 are counted per address,
// and remove() gives back exactly what add() took. net::conn_list (their connection
// lists): unlinking from inside for_each, and delete_all.
#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <vector>

#include "sealrelay/net/conn_caps.hh"
#include "sealrelay/net/conn_list.hh"

namespace {

sockaddr_storage v4(const char* ip, uint16_t port) {
  sockaddr_storage ss{};
  auto* in = reinterpret_cast<sockaddr_in*>(&ss);
  in->sin_family = AF_INET;
  in->sin_port = htons(port);
  inet_pton(AF_INET, ip, &in->sin_addr);
  return ss;
}

sockaddr_storage v6(const char* ip) {
  sockaddr_storage ss{};
  auto* in6 = reinterpret_cast<sockaddr_in6*>(&ss);
  in6->sin6_family = AF_INET6;
  inet_pton(AF_INET6, ip, &in6->sin6_addr);
  return ss;
}

TEST(conn_caps, counts_total_and_per_address_and_gives_back) {
  sr::net::conn_caps caps(1u << 16);
  auto a1 = caps.add(v4("192.0.2.7", 1000));
  auto a2 = caps.add(v4("192.0.2.7", 2000));  // another port: the same address
  auto b = caps.add(v4("192.0.2.8", 1000));
  auto c = caps.add(v6("2001:db8::1"));
  EXPECT_EQ(a1.slot, a2.slot);
  EXPECT_EQ(a1.per_ip, 1u);
  EXPECT_EQ(a2.per_ip, 2u);
  EXPECT_EQ(b.per_ip, 1u);  // 1 in 65536 chance of a collision; fixed inputs, so deterministic
  EXPECT_EQ(c.per_ip, 1u);
  EXPECT_EQ(c.total, 4u);
  EXPECT_EQ(caps.total(), 4u);
  caps.remove(a1.slot);
  caps.remove(b.slot);
  EXPECT_EQ(caps.total(), 2u);
  EXPECT_EQ(caps.add(v4("192.0.2.7", 3000)).per_ip, 2u);
  EXPECT_EQ(caps.add(v4("192.0.2.8", 3000)).per_ip, 1u);
}

struct fake_conn {
  int id;
  int* freed;
  fake_conn* prev = nullptr;
  fake_conn* next = nullptr;
  ~fake_conn() { ++*freed; }
};

TEST(conn_list, unlink_during_walk_and_delete_all) {
  int freed = 0;
  sr::net::conn_list<fake_conn> list;
  for (int i = 0; i < 5; ++i) list.push_front(new fake_conn{i, &freed});
  EXPECT_EQ(list.size(), 5u);
  std::vector<int> seen;
  list.for_each([&](fake_conn* c) {  // newest first; odd ones close (unlink and free) themselves
    seen.push_back(c->id);
    if (c->id % 2) {
      list.erase(c);
      delete c;
    }
  });
  EXPECT_EQ(seen, (std::vector<int>{4, 3, 2, 1, 0}));
  EXPECT_EQ(list.size(), 3u);
  seen.clear();
  list.for_each([&](fake_conn* c) { seen.push_back(c->id); });
  EXPECT_EQ(seen, (std::vector<int>{4, 2, 0}));
  list.delete_all();
  EXPECT_EQ(list.size(), 0u);
  EXPECT_EQ(freed, 5);
}

}  // namespace
