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

  // A second listener accepts one client while descriptors are plenty, so that a listener's
  // first completion runs with a free descriptor: under UBSan the first virtual call on a type
  // checks the object's vptr through a pipe, which fails with no descriptor left and reports a
  // bad vptr (later calls hit its cache). It is a separate listener because an accept armed
  // before the limit went down would keep the old limit (io_uring reads it at submission).
  sockaddr_storage waddr = addr;
  auto* win = reinterpret_cast<sockaddr_in*>(&waddr);
  win->sin_port = 0;
  auto wfd = net::open_listen_socket(waddr, sizeof(sockaddr_in), 16);
  ASSERT_TRUE(wfd) << wfd.err();
  alen = sizeof(sockaddr_in);
  ASSERT_EQ(::getsockname(*wfd, reinterpret_cast<sockaddr*>(win), &alen), 0);
  int warm_accepted = 0;
  net::listener warm_listener(s, *wfd, [&](int cfd) {
    ++warm_accepted;
    ::close(cfd);
  });
  int warm = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(warm, 0);
  ASSERT_EQ(::connect(warm, reinterpret_cast<sockaddr*>(win), sizeof(sockaddr_in)), 0);

  rlimit saved{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &saved), 0);
  int lowest_free = ::dup(0);
  ASSERT_GE(lowest_free, 0);
  ::close(lowest_free);
  rlimit tight{rlim_t(lowest_free), saved.rlim_max};

  uint64_t failures_while_out = 0;
  int ticks = 0;
  int tight_at = 0;  // the tick the limit went down (0: not yet)
  s.on_tick([&] {
    ++ticks;
    if (ticks == 1) warm_listener.arm();
    if (tight_at == 0 && warm_accepted == 1) {  // its descriptor is closed again
      tight_at = ticks;
      ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &tight), 0);
      l.arm();
    }
    if (tight_at != 0 && ticks == tight_at + 50) {  // ~0.5 s out of descriptors
      failures_while_out = l.resource_failures();
      ::setrlimit(RLIMIT_NOFILE, &saved);
    }
    if (accepted == 1 || ticks > 600) s.stop();
  });
  s.run();
  ::setrlimit(RLIMIT_NOFILE, &saved);  // also when the loop ended early
  ::close(client);
  ::close(warm);
  warm_listener.stop();

  ASSERT_NE(tight_at, 0) << "the warm-up client was never accepted";
  EXPECT_GE(failures_while_out, 1u) << "no accept failed: the limit did not bite";
  // One try per backoff period (100 ms): about 5 in 0.5 s; an immediate re-arm makes millions.
  EXPECT_LE(failures_while_out, 20u);
  EXPECT_EQ(accepted, 1) << "the waiting client was not accepted once descriptors returned";
}
