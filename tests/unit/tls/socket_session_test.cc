// tls::socket_session over real loopback TCP with the test PKI: a server and a client
// thread exchange data both ways (a large body too), a silent client times the server's
// handshake out, a plaintext client fails it, and a read on an idle connection times out.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <string>
#include <thread>

#include "sealrelay/tls/context.hh"
#include "sealrelay/tls/socket_session.hh"

namespace {

using namespace sr::tls;
using namespace std::chrono_literals;
using clk = socket_session::clock;

std::string cert(const char* name) { return std::string(SR_TEST_CERTS) + "/" + name; }

// A listening socket on 127.0.0.1, any port.
struct listener {
  int fd = -1;
  uint16_t port = 0;
  listener() {
    fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    EXPECT_EQ(::listen(fd, 8), 0);
    socklen_t len = sizeof a;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    port = ntohs(a.sin_port);
  }
  ~listener() { ::close(fd); }
  int accept() { return ::accept4(fd, nullptr, nullptr, SOCK_CLOEXEC); }
};

int dial(uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  return fd;
}

context server_ctx() {
  auto r = context::server(cert("server.crt"), cert("server.key"), tls_version::v1_2);
  EXPECT_TRUE(r.ok());
  return std::move(*r);
}

context client_ctx() {
  auto r = context::client(cert("ca.crt"), tls_version::v1_2);
  EXPECT_TRUE(r.ok());
  return std::move(*r);
}

// Read until `n` bytes arrived or the peer ended.
std::string read_n(socket_session& s, size_t n, clk::time_point deadline) {
  std::string got;
  std::byte buf[4096];
  while (got.size() < n) {
    long r = s.read(buf, deadline);
    if (r <= 0) break;
    got.append(reinterpret_cast<const char*>(buf), static_cast<size_t>(r));
  }
  return got;
}

TEST(tls_socket_session, exchanges_data_both_ways) {
  context sctx = server_ctx(), cctx = client_ctx();
  listener l;
  std::string big(3 * 1024 * 1024 + 17, 'x');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>('a' + i % 26);
  std::string server_got;
  long server_end = 99;
  std::thread srv([&] {
    auto s = socket_session::accept(sctx, l.accept(), clk::now() + 10s);
    ASSERT_TRUE(s.ok()) << s.err();
    server_got = read_n(*s, 5, clk::now() + 10s);
    EXPECT_TRUE(s->write_all(big, clk::now() + 10s));
    std::byte b[16];
    server_end = s->read(b, clk::now() + 10s);  // the client's close_notify
    s->close(clk::now() + 1s);
  });
  auto c = socket_session::connect(cctx, dial(l.port), "localhost", clk::now() + 10s);
  ASSERT_TRUE(c.ok()) << c.err();
  EXPECT_EQ(c->tls().verdict(), cert_verdict::verified);
  EXPECT_TRUE(c->write_all("hello", clk::now() + 10s));
  std::string got = read_n(*c, big.size(), clk::now() + 20s);
  c->close(clk::now() + 1s);
  srv.join();
  EXPECT_EQ(server_got, "hello");
  EXPECT_EQ(got.size(), big.size());
  EXPECT_TRUE(got == big);
  EXPECT_EQ(server_end, socket_session::ended);
}

TEST(tls_socket_session, silent_client_times_the_handshake_out) {
  context sctx = server_ctx();
  listener l;
  int cfd = dial(l.port);
  auto start = clk::now();
  auto s = socket_session::accept(sctx, l.accept(), clk::now() + 300ms);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.err().find("timed out"), std::string::npos) << s.err();
  EXPECT_GE(clk::now() - start, 250ms);
  ::close(cfd);
}

TEST(tls_socket_session, plaintext_client_fails_the_handshake) {
  context sctx = server_ctx();
  listener l;
  int cfd = dial(l.port);
  std::string req = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
  ASSERT_EQ(::send(cfd, req.data(), req.size(), MSG_NOSIGNAL), static_cast<ssize_t>(req.size()));
  auto s = socket_session::accept(sctx, l.accept(), clk::now() + 5s);
  EXPECT_FALSE(s.ok());
  ::close(cfd);
}

TEST(tls_socket_session, idle_read_times_out_and_eof_ends) {
  context sctx = server_ctx(), cctx = client_ctx();
  listener l;
  long first = 99, second = 99;
  std::thread srv([&] {
    auto s = socket_session::accept(sctx, l.accept(), clk::now() + 10s);
    ASSERT_TRUE(s.ok()) << s.err();
    std::byte b[16];
    first = s->read(b, clk::now() + 200ms);
    second = s->read(b, clk::now() + 10s);  // the client closes the TCP stream bare
  });
  int fd = dial(l.port);
  auto c = socket_session::connect(cctx, fd, "localhost", clk::now() + 10s);
  ASSERT_TRUE(c.ok()) << c.err();
  std::this_thread::sleep_for(400ms);
  ::shutdown(c->fd(), SHUT_RDWR);  // TCP EOF without close_notify
  srv.join();
  EXPECT_EQ(first, socket_session::timed_out);
  EXPECT_EQ(second, socket_session::ended);
}

}  // namespace
