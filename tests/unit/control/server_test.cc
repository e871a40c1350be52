// The control socket server (control/server.hh) on a real unix socket: born 0600, one
// request line answered by the handler with the decoded request, a malformed or oversized
// line answered with an error and never handed on, a socket a live server listens on
// refused, a stale one (its server gone) replaced, the file removed at stop.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <fstream>
#include <filesystem>
#include <string>

#include "sealrelay/control/server.hh"
#include "support/temp_dir.hh"

using namespace sr;

namespace {

int connect_to(const std::string& path) {
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::memcpy(sa.sun_path, path.c_str(), path.size() + 1);
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd >= 0 && ::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) < 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// Send `line` and read the reply until the server closes (bounded by its deadlines).
std::string ask(const std::string& path, const std::string& line) {
  int fd = connect_to(path);
  if (fd < 0) return "connect failed";
  (void)!::write(fd, line.data(), line.size());
  std::string out;
  char buf[4096];
  for (int i = 0; i < 1000; ++i) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0) break;
    out.append(buf, size_t(n));
  }
  ::close(fd);
  return out;
}

control::server::options opts(const std::string& path, std::atomic<int>* calls) {
  control::server::options o;
  o.socket_path = path;
  o.read_timeout_ms = 500;
  o.handler = [calls](const control::request& r) {
    ++*calls;
    return "{\"ok\":true,\"cmd\":\"" + std::string(control::to_string(r.cmd)) + "\",\"target\":\"" + r.target + "\"}\n";
  };
  return o;
}

}  // namespace

TEST(control_server, answers_one_line_refuses_bad_ones_and_guards_its_socket) {
  test::temp_dir dir("sr-control");
  ASSERT_FALSE(dir.path().empty());
  const std::string path = (dir.path() / "control.sock").string();
  std::atomic<int> calls{0};
  {
    control::server s(opts(path, &calls));
    ASSERT_TRUE(s.start());
    struct stat st {};
    ASSERT_EQ(::stat(path.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);

    EXPECT_EQ(ask(path, "hold Example.NET\n"), "{\"ok\":true,\"cmd\":\"hold\",\"target\":\"example.net\"}\n");
    EXPECT_EQ(calls.load(), 1);
    EXPECT_NE(ask(path, "purge\n").find("\"ok\":false"), std::string::npos);
    EXPECT_NE(ask(path, std::string(2000, 'a')).find("request too long"), std::string::npos);
    EXPECT_EQ(ask(path, "list"), "");  // no line end within the deadline: no answer
    EXPECT_EQ(calls.load(), 1);        // none of those reached the handler

    // A second server on a live socket is refused and leaves it alone.
    control::server other(opts(path, &calls));
    auto st2 = other.start();
    ASSERT_FALSE(st2);
    EXPECT_NE(st2.err().find("another relay is listening"), std::string::npos) << st2.err();
    EXPECT_EQ(ask(path, "stats\n"), "{\"ok\":true,\"cmd\":\"stats\",\"target\":\"\"}\n");
  }
  EXPECT_FALSE(std::filesystem::exists(path));  // removed at stop

  // A stale socket file (bound, its owner gone) is replaced.
  {
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    std::memcpy(sa.sun_path, path.c_str(), path.size() + 1);
    int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
    ::close(fd);
  }
  ASSERT_TRUE(std::filesystem::exists(path));
  control::server again(opts(path, &calls));
  ASSERT_TRUE(again.start());
  EXPECT_EQ(ask(path, "list\n"), "{\"ok\":true,\"cmd\":\"list\",\"target\":\"\"}\n");
  // A regular file in its place is not removed.
  again.stop();
  { std::ofstream(path) << "x"; }
  control::server blocked(opts(path, &calls));
  auto st3 = blocked.start();
  ASSERT_FALSE(st3);
  EXPECT_NE(st3.err().find("not a socket"), std::string::npos) << st3.err();
}
