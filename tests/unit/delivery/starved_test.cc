// delivery::agent with a real shard and a loopback fake MX, over a buffer ring too small
// for one reply: the link's multishot recv takes the ring's only chunk, then ends with
// ENOBUFS. Nothing but the agent's tick re-arms a starved link (the server's tick re-arms
// only inbound connections), so this checks that the link still reads the whole greeting
// and says EHLO. Before the fix it sat until its phase timeout: 5 of 100 large messages
// in tools/bench-large stayed undelivered, the relay's socket holding the MX's reply.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>

#include "sealrelay/config/config.hh"
#include "sealrelay/core/shard.hh"
#include "sealrelay/delivery/agent.hh"
#include "sealrelay/dns/resolver.hh"
#include "sealrelay/net/buffer_ring.hh"
#include "sealrelay/net/chunk.hh"
#include "sealrelay/queue/scheduler.hh"

using namespace sr;

namespace {

// One-connection fake MX on 127.0.0.1: a greeting many chunks long, then it waits (at
// most 10 s) for the EHLO line, answers 421 and closes.
struct fake_mx {
  int lfd = -1;
  uint16_t port = 0;
  std::atomic<bool> got_ehlo{false};
  std::atomic<bool> done{false};
  std::thread th;

  bool start() {
    lfd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::bind(lfd, reinterpret_cast<sockaddr*>(&a), sizeof a) < 0 || ::listen(lfd, 4) < 0) return false;
    socklen_t len = sizeof a;
    ::getsockname(lfd, reinterpret_cast<sockaddr*>(&a), &len);
    port = ntohs(a.sin_port);
    th = std::thread([this] { serve(); });
    return true;
  }
  void serve() {
    pollfd p{lfd, POLLIN, 0};
    if (::poll(&p, 1, 10000) == 1) {
      int fd = ::accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
      // One write: the whole reply is queued before the relay's recv runs.
      std::string greeting = "220 mx.starved.test ESMTP a greeting longer than the ring holds\r\n";
      (void)!::write(fd, greeting.data(), greeting.size());
      std::string in;
      auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
      while (std::chrono::steady_clock::now() < until && in.find("\r\n") == std::string::npos) {
        pollfd q{fd, POLLIN, 0};
        if (::poll(&q, 1, 100) != 1) continue;
        char buf[512];
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n <= 0) break;
        in.append(buf, size_t(n));
      }
      if (in.rfind("EHLO ", 0) == 0) got_ehlo = true;
      std::string bye = "421 4.3.2 bye\r\n";
      (void)!::write(fd, bye.data(), bye.size());
      ::close(fd);
    }
    done = true;
  }
  ~fake_mx() {
    if (th.joinable()) th.join();
    if (lfd >= 0) ::close(lfd);
  }
};

}  // namespace

TEST(delivery_agent, a_link_starved_of_receive_buffers_is_rearmed_by_the_tick) {
  fake_mx mx;
  ASSERT_TRUE(mx.start());

  core::shard::options o;
  o.entries = 64;
  o.tick_ms = 5;
  core::shard sh(o);
  ASSERT_TRUE(sh.init());
  // 16-byte chunks, one ring entry: the 66-byte greeting needs five recvs, and the
  // multishot recv runs dry after the first.
  net::chunk_pool pool(16, 8);
  net::buffer_ring ring(pool, 1, 7);
  ASSERT_EQ(ring.register_with(sh.ring()), 0);

  config::config cfg;
  cfg.tls.ca_file = std::string(SR_TEST_CERTS) + "/ca.crt";
  cfg.mta_sts.enabled = false;
  cfg.routes.push_back({"*", "[127.0.0.1]:" + std::to_string(mx.port), 1});
  dns::resolver_options ro;
  ro.servers = {"127.0.0.1:9"};  // never asked: the route names an address
  dns::resolver res(sh, ro);
  queue::scheduler sched(sh, cfg, {});
  delivery::agent ag(sh, cfg, sched, res, pool, ring, nullptr);
  ASSERT_TRUE(ag.start());
  sched.set_connector(&ag);

  auto j = std::make_unique<queue::job>();
  j->queue_id = "AAAAAAAAAAAAAA01";
  j->mail_from = "s@sender.test";
  j->domain = "starved.test";
  j->rcpts.push_back({"u@starved.test", 0, 0, "", ""});
  sched.enqueue(std::move(j));

  // Bounded: the fake MX gives up after 10 s; 2,000 ticks of 5 ms is the loop's cap.
  int ticks = 0;
  sh.on_tick([&] {
    if (mx.done || ++ticks > 2000) sh.stop();
  });
  sh.run();
  EXPECT_TRUE(mx.got_ehlo) << "the link never read the whole greeting (its recv stayed starved)";
}
