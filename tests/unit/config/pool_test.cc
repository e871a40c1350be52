// [[pool]] and [[policy]].pool (issue 14 item 3): what the loader keeps, the exact
// "FILE:LINE: KEY: message" of each bad value, and pool_for()'s precedence (policy entry >
// sender domain > none). Documents are built line by line: element i is line i + 1.
#include <gtest/gtest.h>
#include <netinet/in.h>

#include <initializer_list>
#include <string>

#include "sealrelay/config/config.hh"

using namespace sr::config;

namespace {

std::string doc(std::initializer_list<std::string_view> lines) {
  std::string out = "[[listen]]\naddress = \"127.0.0.1:2525\"\n";  // lines 1-2
  for (auto l : lines) {
    out += l;
    out += '\n';
  }
  return out;
}

std::string err_of(const std::string& text) {
  auto r = parse(text, "t.toml");
  return r ? "<ok>" : r.err();
}

}  // namespace

TEST(pool, addresses_weights_ehlo_and_senders_are_kept) {
  auto r = parse(doc({"[server]", "hostname = \"relay.example.org\"",
                      "[[pool]]", "name = \"marketing\"", "selection = \"weighted\"",
                      "addresses = [\"127.0.0.2\", {address = \"127.0.0.3\", weight = 3, ehlo = \"out3.example.org\"},"
                      " \"2001:DB8::1\"]",
                      "ehlo = \"out.example.org\"", "senders = [\"Marketing.example\", \".example.org\"]",
                      "[[pool]]", "name = \"plain\"", "addresses = [\"127.0.0.4\"]"}),
                 "t.toml");
  ASSERT_TRUE(r) << r.err();
  ASSERT_EQ(r->pools.size(), 2u);
  const pool_entry& p = r->pools[0];
  EXPECT_EQ(p.name, "marketing");
  EXPECT_EQ(p.selection, pool_selection::weighted);
  EXPECT_EQ(p.line, 5);
  ASSERT_EQ(p.addresses.size(), 3u);
  EXPECT_EQ(p.addresses[0].address, "127.0.0.2");
  EXPECT_EQ(p.addresses[0].weight, 1u);
  EXPECT_EQ(p.addresses[0].addr.ss_family, AF_INET);
  EXPECT_EQ(p.addresses[1].weight, 3u);
  EXPECT_EQ(p.addresses[2].address, "2001:db8::1");  // canonical form
  EXPECT_EQ(p.addresses[2].addr.ss_family, AF_INET6);
  EXPECT_EQ(ehlo_name(*r, p, p.addresses[0]), "out.example.org");
  EXPECT_EQ(ehlo_name(*r, p, p.addresses[1]), "out3.example.org");
  const pool_entry& q = r->pools[1];
  EXPECT_EQ(q.selection, pool_selection::round_robin);
  EXPECT_EQ(ehlo_name(*r, q, q.addresses[0]), "relay.example.org");  // server.hostname
  EXPECT_EQ(p.senders, (std::vector<std::string>{"marketing.example", ".example.org"}));
  EXPECT_EQ(find_pool(*r, "plain"), &q);
  EXPECT_EQ(find_pool(*r, "nope"), nullptr);

  // The dump loads again and keeps every pool key.
  auto again = parse(dump(*r), "dump.toml");
  ASSERT_TRUE(again) << again.err() << "\n" << dump(*r);
  ASSERT_EQ(again->pools.size(), 2u);
  EXPECT_EQ(again->pools[0].addresses[1].weight, 3u);
  EXPECT_EQ(again->pools[0].addresses[1].ehlo, "out3.example.org");
  EXPECT_EQ(again->pools[0].ehlo, "out.example.org");
  EXPECT_EQ(again->pools[0].senders, p.senders);
}

TEST(pool, policy_entry_beats_sender_domain_beats_none) {
  auto r = parse(doc({"[[pool]]", "name = \"bulk\"", "addresses = [\"127.0.0.2\"]",
                      "senders = [\"marketing.example\", \".example.org\"]",
                      "[[pool]]", "name = \"transactional\"", "addresses = [\"127.0.0.3\"]",
                      "senders = [\"*\", \"deep.example.org\"]",
                      "[[pool]]", "name = \"gmail\"", "addresses = [\"127.0.0.4\"]",
                      "[[policy]]", "domain = \"gmail.com\"", "tls = \"opportunistic\"", "pool = \"gmail\"",
                      "[[policy]]", "domain = \".bank.example\"", "pool = \"transactional\"",
                      "[[policy]]", "domain = \"x.bank.example\""}),
                 "t.toml");
  ASSERT_TRUE(r) << r.err();
  auto name = [&](std::string_view rcpt, std::string_view sender) {
    const pool_entry* p = pool_for(*r, rcpt, sender);
    return p ? p->name : std::string("<none>");
  };
  EXPECT_EQ(name("gmail.com", "marketing.example"), "gmail");          // policy beats sender
  EXPECT_EQ(name("other.net", "marketing.example"), "bulk");           // exact sender
  EXPECT_EQ(name("other.net", "news.example.org"), "bulk");            // ".suffix" sender
  EXPECT_EQ(name("other.net", "deep.example.org"), "transactional");   // exact beats suffix
  EXPECT_EQ(name("other.net", "example.org"), "transactional");        // ".example.org" is not example.org: "*"
  EXPECT_EQ(name("other.net", ""), "transactional");                   // null sender: "*"
  EXPECT_EQ(name("a.bank.example", "marketing.example"), "transactional");  // suffix policy
  // The most specific [[policy]] rules; it names no pool, so the sender's applies.
  EXPECT_EQ(name("x.bank.example", "marketing.example"), "bulk");

  auto none = parse(doc({"[[pool]]", "name = \"bulk\"", "addresses = [\"127.0.0.2\"]",
                         "senders = [\"marketing.example\"]"}),
                    "t.toml");
  ASSERT_TRUE(none) << none.err();
  EXPECT_EQ(pool_for(*none, "other.net", "other.example"), nullptr);  // the kernel's choice
}

TEST(pool, errors_name_file_line_and_key) {
  struct c {
    const char* name;
    std::string text;
    std::string expected;
  };
  const c cases[] = {
      {"bad address", doc({"[[pool]]", "name = \"a\"", "addresses = [\"127.0.0.2\", \"10.0.0.300\"]"}),
       "t.toml:5: pool[0].addresses[1]: not an IP address: \"10.0.0.300\" (an IPv4 or IPv6 literal, no port)"},
      {"address with a port", doc({"[[pool]]", "name = \"a\"", "addresses = [\"127.0.0.2:25\"]"}),
       "t.toml:5: pool[0].addresses[0]: not an IP address: \"127.0.0.2:25\" (an IPv4 or IPv6 literal, no port)"},
      {"host name", doc({"[[pool]]", "name = \"a\"", "addresses = [\"out.example.org\"]"}),
       "t.toml:5: pool[0].addresses[0]: not an IP address: \"out.example.org\" (an IPv4 or IPv6 literal, no port)"},
      {"bad address in a table", doc({"[[pool]]", "name = \"a\"", "addresses = [{address = \"x\"}]"}),
       "t.toml:5: pool[0].addresses[0].address: not an IP address: \"x\" (an IPv4 or IPv6 literal, no port)"},
      {"duplicate address", doc({"[[pool]]", "name = \"a\"", "addresses = [\"::1\",", "\"127.0.0.2\", \"0:0::1\"]"}),
       "t.toml:6: pool[0].addresses[2]: duplicate address \"::1\""},  // the same address, written twice
      {"duplicate name", doc({"[[pool]]", "name = \"a\"", "addresses = [\"127.0.0.2\"]", "",
                              "[[pool]]", "name = \"a\"", "addresses = [\"127.0.0.3\"]"}),
       "t.toml:8: pool[1].name: duplicate of pool[0] (line 3)"},
      {"missing name", doc({"[[pool]]", "addresses = [\"127.0.0.2\"]"}),
       "t.toml:3: pool[0].name: missing (every [[pool]] needs a name)"},
      {"bad name", doc({"[[pool]]", "name = \"a b\"", "addresses = [\"127.0.0.2\"]"}),
       "t.toml:4: pool[0].name: expected 1 to 64 letters, digits, '-', '_' or '.', got \"a b\""},
      {"missing addresses", doc({"[[pool]]", "name = \"a\""}),
       "t.toml:3: pool[0].addresses: missing (every [[pool]] needs addresses)"},
      {"empty addresses", doc({"[[pool]]", "name = \"a\"", "addresses = []"}),
       "t.toml:5: pool[0].addresses: must not be empty"},
      {"weight under round-robin", doc({"[[pool]]", "name = \"a\"", "addresses = [{address = \"127.0.0.2\", weight = 2}]"}),
       "t.toml:5: pool[0].addresses[0].weight: only for selection = \"weighted\" (round-robin ignores weights)"},
      {"weight zero", doc({"[[pool]]", "name = \"a\"", "selection = \"weighted\"",
                           "addresses = [{address = \"127.0.0.2\", weight = 0}]"}),
       "t.toml:6: pool[0].addresses[0].weight: must be between 1 and 1000, got 0"},
      {"unknown key in an address", doc({"[[pool]]", "name = \"a\"", "addresses = [{address = \"127.0.0.2\", port = 25}]"}),
       "t.toml:5: pool[0].addresses[0].port: unknown key"},
      {"number as address", doc({"[[pool]]", "name = \"a\"", "addresses = [2130706434]"}),
       "t.toml:5: pool[0].addresses[0]: expected an address string or a table {address = \"ip\", weight = N, "
       "ehlo = \"name\"}, got integer"},
      {"selection", doc({"[[pool]]", "name = \"a\"", "addresses = [\"127.0.0.2\"]", "selection = \"random\""}),
       "t.toml:6: pool[0].selection: must be one of \"round-robin\", \"weighted\"; got \"random\""},
      {"ehlo", doc({"[[pool]]", "name = \"a\"", "addresses = [\"127.0.0.2\"]", "ehlo = \"out 1\""}),
       "t.toml:6: pool[0].ehlo: not a host name: \"out 1\""},
      {"sender in two pools", doc({"[[pool]]", "name = \"a\"", "addresses = [\"127.0.0.2\"]",
                                   "senders = [\"m.example\"]", "[[pool]]", "name = \"b\"",
                                   "addresses = [\"127.0.0.3\"]", "senders = [\"M.example\"]"}),
       "t.toml:10: pool[1].senders[0]: \"m.example\" is also in pool[0].senders (line 3)"},
      {"bad sender", doc({"[[pool]]", "name = \"a\"", "addresses = [\"127.0.0.2\"]", "senders = [\"a..b\"]"}),
       "t.toml:6: pool[0].senders[0]: not a domain name: \"a..b\""},
      {"unknown key", doc({"[[pool]]", "name = \"a\"", "addresses = [\"127.0.0.2\"]", "bind = true"}),
       "t.toml:6: pool[0].bind: unknown key"},
      {"unknown pool in a policy", doc({"[[policy]]", "domain = \"gmail.com\"", "tls = \"opportunistic\"",
                                        "pool = \"marketing\"", "[[pool]]", "name = \"bulk\"",
                                        "addresses = [\"127.0.0.2\"]"}),
       "t.toml:6: policy[0].pool: no [[pool]] named \"marketing\""},
      {"empty pool in a policy", doc({"[[policy]]", "domain = \"gmail.com\"", "pool = \"\""}),
       "t.toml:5: policy[0].pool: must not be empty (leave it out for no pool)"},
  };
  for (const auto& k : cases) EXPECT_EQ(err_of(k.text), k.expected) << k.name << "\n" << k.text;
}

TEST(pool, check_files_refuses_an_address_this_host_does_not_have) {
  // 127.0.0.0/8 is all on lo; 192.0.2.0/24 (TEST-NET-1) is on no host.
  auto ok = parse(doc({"[tls]", "ca_file = \"\"", "[[pool]]", "name = \"a\"", "addresses = [\"127.0.0.2\", \"127.0.0.3\"]"}),
                  "t.toml");
  ASSERT_TRUE(ok) << ok.err();
  ok->listen[0].tls = listen_tls::none;  // no certificate to load: only the pool is checked
  auto st = check_files(*ok);
  EXPECT_TRUE(st) << st.err();
  auto bad = parse(doc({"[tls]", "ca_file = \"\"", "[[pool]]", "name = \"a\"",
                        "addresses = [\"127.0.0.2\", \"192.0.2.10\"]"}),
                   "t.toml");
  ASSERT_TRUE(bad) << bad.err();
  bad->listen[0].tls = listen_tls::none;
  auto st2 = check_files(*bad);
  ASSERT_FALSE(st2);
  EXPECT_EQ(st2.err(),
            "pool[0].addresses[1]: 192.0.2.10 is not an address of this host (bind: Cannot assign requested "
            "address; line 7)");
}
