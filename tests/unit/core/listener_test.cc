// net::listener out of descriptors: with the process's RLIMIT_NOFILE lowered to the lowest
// free descriptor, every accept fails with EMFILE while a client waits in the backlog. The
// listener must pause between tries (a handful of failures over half a second, not the
// millions of an immediate re-arm) and accept the waiting client once descriptors return.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sealrelay/core/shard.hh"
#include "sealrelay/net/listener.hh"

using namespace sr;

TEST(listener, out_of_descriptors_pauses_accepting_and_resumes_when_they_return) {
  core::shard::options o;
  o.tick_ms = 10;
  core::shard s(o);
  if (!s.init()) GTEST_SKIP() << "io_uring is not available here";

  sockaddr_storage addr{};
  auto* in = reinterpret_cast<sockaddr_in*>(&addr);
  in->sin_family = AF_INET;
  in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  auto lfd = net::open_listen_socket(addr, sizeof(sockaddr_in), 16);
  ASSERT_TRUE(lfd) << lfd.err();
  socklen_t alen = sizeof(sockaddr_in);
  ASSERT_EQ(::getsockname(*lfd, reinterpret_cast<sockaddr*>(in), &alen), 0);

  int accepted = 0;
  net::listener l(s, *lfd, [&](int cfd) {
    ++accepted;
    ::close(cfd);
  });
  // A client in the backlog before the descriptors run out.
  int client = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(client, 0);
  ASSERT_EQ(::connect(client, reinterpret_cast<sockaddr*>(in), sizeof(sockaddr_in)), 0);

  rlimit saved{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &saved), 0);
  int lowest_free = ::dup(0);
  ASSERT_GE(lowest_free, 0);
  ::close(lowest_free);
  rlimit tight{rlim_t(lowest_free), saved.rlim_max};
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &tight), 0);

  uint64_t failures_while_out = 0;
  int ticks = 0;
  s.on_tick([&] {
    ++ticks;
    if (ticks == 1) l.arm();
    if (ticks == 50) {  // ~0.5 s out of descriptors
      failures_while_out = l.resource_failures();
      ::setrlimit(RLIMIT_NOFILE, &saved);
    }
    if (accepted == 1 || ticks > 500) s.stop();
  });
  s.run();
  ::setrlimit(RLIMIT_NOFILE, &saved);  // also when the loop ended early
  ::close(client);

  EXPECT_GE(failures_while_out, 1u) << "no accept failed: the limit did not bite";
  // One try per backoff period (100 ms): about 5 in 0.5 s; an immediate re-arm makes millions.
  EXPECT_LE(failures_while_out, 20u);
  EXPECT_EQ(accepted, 1) << "the waiting client was not accepted once descriptors returned";
}
