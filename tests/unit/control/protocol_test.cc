// The control socket's request codec and the tool's argument rules (control/protocol.hh):
// what is accepted, what each refusal says, and that a request survives the wire.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "sealrelay/control/protocol.hh"

using namespace sr::control;

namespace {

sr::result<request> args(std::vector<std::string> a) { return parse_args(a); }

}  // namespace

TEST(control_protocol, requests_survive_the_wire) {
  std::vector<std::vector<std::string>> cases = {
      {"list"}, {"stats"}, {"show", "0123456789ABCDEF"}, {"flush"}, {"flush", "example.net"},
      {"flush", "0123456789ABCDEF"}, {"hold", "Example.NET"}, {"release", "0123456789ABCDEF"},
      {"delete", "0123456789ABCDEF"}, {"delete", "example.net", "--dsn"}, {"delete", "--all-deferred"},
      {"delete", "--all-deferred", "--dsn"}, {"requeue", "0123456789ABCDEF"}};
  for (const auto& c : cases) {
    auto r = args(c);
    ASSERT_TRUE(r) << c[0] << ": " << r.err();
    std::string line = encode(r.value());
    ASSERT_EQ(line.back(), '\n');
    line.pop_back();
    auto back = decode(line);
    ASSERT_TRUE(back) << line << ": " << back.err();
    EXPECT_EQ(back->cmd, r->cmd) << line;
    EXPECT_EQ(back->target, r->target) << line;
    EXPECT_EQ(back->dsn, r->dsn) << line;
    EXPECT_EQ(back->all_deferred, r->all_deferred) << line;
  }
  // Domains are keyed in lower case, as the queue keys them.
  EXPECT_EQ(args({"hold", "Example.NET."})->target, "example.net");
  EXPECT_EQ(to_string(command::remove), "delete");
}

TEST(control_protocol, usage_errors_say_what_is_wrong) {
  struct bad {
    std::vector<std::string> argv;
    std::string says;
  };
  std::vector<bad> cases = {
      {{}, "COMMAND is required"},
      {{"purge"}, "unknown command: purge"},
      {{"list", "x"}, "list takes no argument"},
      {{"show"}, "show: a queue ID is required"},
      {{"show", "example.net"}, "not a queue ID"},
      {{"requeue", "0123456789abcdef"}, "not a queue ID"},  // upper-case hex only
      {{"hold"}, "an ID or a DOMAIN is required"},
      {{"hold", "a b"}, "neither a queue ID nor a domain"},
      {{"hold", "x", "y"}, "unexpected argument: y"},
      {{"delete", "example.net", "--all-deferred"}, "not both"},
      {{"hold", "example.net", "--dsn"}, "unexpected argument: --dsn"},
      {{"flush", "--json"}, "unexpected argument: --json"},
  };
  for (const auto& c : cases) {
    auto r = args(c.argv);
    ASSERT_FALSE(r) << (c.argv.empty() ? "(none)" : c.argv[0]);
    EXPECT_NE(r.err().find(c.says), std::string::npos) << r.err();
  }
  EXPECT_TRUE(args({"list", "--json"})->json);
  EXPECT_TRUE(args({"stats", "--json"})->json);
}

TEST(control_protocol, the_daemon_refuses_malformed_lines) {
  const char* bad[] = {"", "LIST", "list ", "list  x", "hold", "hold a/b", "show example.net",
                       "delete x y", "list --json", "flush a b c d e", "delete --dsn --dsn --dsn x"};
  for (const char* l : bad) EXPECT_FALSE(decode(l)) << l;
  EXPECT_FALSE(decode(std::string(max_request_bytes, 'a')));
  auto ok = decode("delete 0123456789ABCDEF --dsn");
  ASSERT_TRUE(ok);
  EXPECT_TRUE(ok->dsn);
  EXPECT_TRUE(is_queue_id("0123456789ABCDEF"));
  EXPECT_FALSE(is_queue_id("0123456789ABCDE"));
  EXPECT_EQ(error_reply("a \"b\""), "{\"ok\":false,\"error\":\"a \\\"b\\\"\"}\n");
}
