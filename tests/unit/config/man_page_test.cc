// sealrelay.toml(5) against the config schema, so the man page cannot drift (issue 13).
// The keys the loader accepts are read two ways: from dump() of a config with one entry of
// every array of tables (each [[policy]] kind, a relay listener, [[dkim]] headers and a
// spool key, so that every key the dump can leave out is written) -- the text
// `sealrelay --check-config -v` prints, and parse(dump()) proves the loader takes each of
// them -- and from the key names src/config/config.cc's read_<table>() functions take, so
// a key added to the loader but not to the dump is caught too. The page's key entries
// (docs/man/sealrelay.toml.5.scd: "*key* (TYPE; default: VALUE)" or "(TYPE; required)"
// under "## [table]" / "## [[table]]") must be exactly that set, each literal default must
// be what the code fills in, and a key or value refused as "not available in this version"
// (not_built.hh) must be marked so on the page (or left out).
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "config/not_built.hh"
#include "sealrelay/config/config.hh"
#include "sealrelay/util/duration.hh"

using namespace sr::config;

namespace {

std::string source_root() {
  const char* r = std::getenv("SR_SOURCE_ROOT");
  return r ? r : ".";
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// A key as both sides name it: "server.hostname", "listen[].address".
struct page_key {
  int line = 0;
  std::string spec;   // inside the parentheses: "TYPE; default: VALUE" or "TYPE; required"
  std::string text;   // the entry's indented description
};

// Read the key entries of the page, by table.
std::map<std::string, page_key> page_keys(const std::string& scd, std::vector<std::string>* format_errors) {
  std::map<std::string, page_key> out;
  static const std::regex table_re(R"(^## \[(\[?)([a-z_]+)\]\]?\s*$)");
  static const std::regex key_re(R"(^\*([a-z_]+)\* \((.*)\)\s*$)");
  std::istringstream in(scd);
  std::string line, table, last;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    std::smatch m;
    if (line.starts_with("#")) {
      table.clear();
      last.clear();
      if (std::regex_match(line, m, table_re)) table = m[2].str() + (m[1].length() ? "[]" : "");
      continue;
    }
    if (table.empty()) continue;
    if (std::regex_match(line, m, key_re)) {
      std::string k = table + "." + m[1].str();
      if (out.count(k)) format_errors->push_back("line " + std::to_string(n) + ": " + k + " documented twice");
      std::string spec = m[2].str();
      if (spec.find("; default: ") == std::string::npos && !spec.ends_with("; required"))
        format_errors->push_back("line " + std::to_string(n) + ": " + k +
                                 ": expected \"(TYPE; default: VALUE)\" or \"(TYPE; required)\"");
      out[k] = {n, spec, ""};
      last = k;
    } else if (!last.empty() && line.starts_with("\t")) {
      out[last].text += line + "\n";
    } else if (!line.empty()) {
      last.clear();
    }
  }
  return out;
}

// One "key = value" of a dump, with the entry it belongs to.
struct dump_item {
  std::string key;     // "listen[].address"
  std::string path;    // "listen[0].address", as config::lines names it
  std::string value;   // the TOML value text
};

// Read dump() text; "# key = value" lines (keys the dump shows as comments) count too.
std::vector<dump_item> dump_items(const std::string& text) {
  std::vector<dump_item> out;
  static const std::regex array_re(R"(^\[\[([a-z_]+)\]\]$)");
  static const std::regex table_re(R"(^\[([a-z_]+)\]$)");
  static const std::regex kv_re(R"(^(?:# )?([a-z_]+) = (.*)$)");
  std::map<std::string, int> count;
  std::istringstream in(text);
  std::string line, key_prefix, path_prefix;
  while (std::getline(in, line)) {
    std::smatch m;
    if (std::regex_match(line, m, array_re)) {
      int i = count[m[1]]++;
      key_prefix = m[1].str() + "[].";
      path_prefix = m[1].str() + "[" + std::to_string(i) + "].";
    } else if (std::regex_match(line, m, table_re)) {
      key_prefix = path_prefix = m[1].str() + ".";
    } else if (!key_prefix.empty() && std::regex_match(line, m, kv_re)) {
      out.push_back({key_prefix + m[1].str(), path_prefix + m[1].str(), m[2].str()});
    }
  }
  return out;
}

// The keys config.cc's read_<table>(loader&, table_reader& root) functions take by name,
// qualified by the table each function reads (section(root, "x") or entries(root, "x")).
std::set<std::string> source_keys(const std::string& cc) {
  std::set<std::string> out;
  static const std::regex fn_re(R"(^void read_[a-z_]+\(loader& l, table_reader& root\) \{$)");
  static const std::regex section_re(R"rx(\bsection\(root, "([a-z_]+)"\))rx");
  static const std::regex entries_re(R"rx(\bentries\(root, "([a-z_]+)")rx");
  static const std::regex key_re(
      R"rx(\b(?:read|read_enum|read_duration|read_array|read_int|take|required)\(\s*"([a-z_]+)"|\bread_optional_endpoint\(r, "([a-z_]+)")rx");
  std::istringstream in(cc);
  std::string line, body;
  bool inside = false;
  auto flush = [&] {
    std::smatch m;
    std::string table;
    if (std::regex_search(body, m, section_re)) table = m[1].str();
    else if (std::regex_search(body, m, entries_re)) table = m[1].str() + "[]";
    if (table.empty()) return;
    for (auto it = std::sregex_iterator(body.begin(), body.end(), key_re); it != std::sregex_iterator(); ++it)
      out.insert(table + "." + ((*it)[1].matched ? (*it)[1].str() : (*it)[2].str()));
  };
  while (std::getline(in, line)) {
    if (!inside && std::regex_match(line, fn_re)) {
      inside = true;
      body.clear();
    } else if (inside && line == "}") {
      inside = false;
      flush();
    } else if (inside) {
      body += line + "\n";
    }
  }
  return out;
}

// The literal TOML value a page default starts with ("\"10s\"", "[...]", "128", "true"), or
// "" when the default is prose ("this host's name").
std::string literal_default(const std::string& spec) {
  size_t at = spec.find("; default: ");
  if (at == std::string::npos) return "";
  std::string v = spec.substr(at + 11);
  if (v.empty()) return "";
  if (v[0] == '"') {
    size_t end = v.find('"', 1);
    return end == std::string::npos ? "" : v.substr(0, end + 1);
  }
  if (v[0] == '[') {
    size_t end = v.find(']');
    return end == std::string::npos ? "" : v.substr(0, end + 1);
  }
  if (v[0] >= '0' && v[0] <= '9') return v.substr(0, v.find_first_not_of("0123456789"));
  if (v.starts_with("true")) return "true";
  if (v.starts_with("false")) return "false";
  return "";
}

// Equal as written, or two durations of the same length ("0s" and "0ms").
bool same_value(const std::string& a, const std::string& b) {
  if (a == b) return true;
  if (a.size() < 2 || b.size() < 2 || a.front() != '"' || b.front() != '"') return false;
  auto da = sr::parse_duration(a.substr(1, a.size() - 2));
  auto db = sr::parse_duration(b.substr(1, b.size() - 2));
  return da && db && *da == *db;
}

// The rows of not_built.hh against the page: a key refused whatever its value is either
// absent from the page or marked; a refused value must be named as not available.
std::vector<std::string> not_built_problems(const std::map<std::string, page_key>& page,
                                            std::span<const not_built_value> rows) {
  std::vector<std::string> out;
  for (const not_built_value& nb : rows) {
    auto it = page.find(std::string(nb.key));
    if (it == page.end()) continue;
    const std::string all = it->second.spec + "\n" + it->second.text;
    bool marked = all.find("not available in this version") != std::string::npos;
    if (nb.value != "*") marked = marked && all.find(std::string(nb.value)) != std::string::npos;
    if (!marked)
      out.push_back(std::string(nb.key) + (nb.value == "*" ? "" : " = " + std::string(nb.value)) +
                    " is refused (not_built.hh: " + std::string(nb.feature) +
                    ") but the page does not say \"not available in this version\"");
  }
  return out;
}

// One entry of every array of tables; every key dump() may leave out is written
// (allow_relay_from on a relay listener, each [[policy]] kind, [[dkim]] headers, a spool key).
const char* every_table = R"(
[[listen]]
address = "127.0.0.1:2525"

[[route]]
domain = "example.net"
next_hop = "[127.0.0.1]:2526"

[[policy]]
domain = "forced.example"

[[policy]]
domain = "exclusive.example"
tls = "exclusive"

[[policy]]
domain = "opportunistic.example"
tls = "opportunistic"
pool = "bulk"

[[pool]]
name = "bulk"
addresses = ["127.0.0.2"]
ehlo = "out.example.org"

[[shaping]]
name = "google"
mx = "*.google.com"
max_connections = 20
max_messages_per_conn = 50
max_message_rate = "5000/h"
max_connection_rate = "100/min"
retry = ["1m"]
pool = "bulk"

[[shaping]]
domain = "*"

[[backoff]]
match = "^421 4\\.7\\.28"
factor = 0.5
duration = "30m"

[[backoff]]
match = "rate limited"

[[dkim]]
domain = "example.org"
selector = "s1"
key_file = "/etc/sealrelay/dkim.pem"
headers = ["from", "subject"]

[spool]
key_file = "/etc/sealrelay/spool.key"
)";

class ManPage : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string scd_path = source_root() + "/docs/man/sealrelay.toml.5.scd";
    scd = slurp(scd_path);
    ASSERT_FALSE(scd.empty()) << "cannot read " << scd_path;
    std::vector<std::string> format;
    page = page_keys(scd, &format);
    for (const auto& f : format) ADD_FAILURE() << "sealrelay.toml.5.scd " << f;
    ASSERT_GT(page.size(), 50u) << "the page's key entries were not found";
    auto c = parse(every_table, "every-table.toml", not_built_mode::accept);
    ASSERT_TRUE(c) << c.err();
    cfg = std::move(c.value());
    dumped = dump(cfg);
    items = dump_items(dumped);
    for (const auto& i : items) dump_keys.insert(i.key);
  }
  std::string scd, dumped;
  std::map<std::string, page_key> page;
  config cfg;
  std::vector<dump_item> items;
  std::set<std::string> dump_keys;
};

TEST_F(ManPage, DumpOfEveryTableLoadsAgain) {
  // So every key in the dump is one the loader accepts.
  auto again = parse(dumped, "dump.toml", not_built_mode::accept);
  EXPECT_TRUE(again) << again.err() << "\n" << dumped;
}

TEST_F(ManPage, DumpHasEveryKeyTheLoaderReads) {
  std::string cc = slurp(source_root() + "/src/config/config.cc");
  ASSERT_FALSE(cc.empty());
  std::set<std::string> src = source_keys(cc);
  ASSERT_GT(src.size(), 50u) << "config.cc's read_<table>() functions were not found";
  for (const auto& k : src)
    EXPECT_TRUE(dump_keys.count(k)) << k << ": read by src/config/config.cc but not in dump() "
                                    << "(src/config/dump.cc), so --check-config -v hides it";
}

TEST_F(ManPage, EveryKeyTheLoaderAcceptsIsDocumented) {
  std::string cc = slurp(source_root() + "/src/config/config.cc");
  std::set<std::string> accepted = dump_keys;
  for (const auto& k : source_keys(cc)) accepted.insert(k);
  for (const auto& k : accepted)
    EXPECT_TRUE(page.count(k)) << k << ": accepted by the config loader but missing from "
                               << "docs/man/sealrelay.toml.5.scd";
}

TEST_F(ManPage, EveryDocumentedKeyIsAcceptedByTheLoader) {
  for (const auto& [k, e] : page) {
    if (dump_keys.count(k)) continue;
    // Ask the loader itself what it makes of the key, to name the refusal.
    std::string table = k.substr(0, k.rfind('.'));
    std::string key = k.substr(k.rfind('.') + 1);
    bool array = table.ends_with("[]");
    if (array) table.resize(table.size() - 2);
    std::string header = array ? "[[" + table + "]]" : "[" + table + "]";
    std::string probe = every_table;
    size_t at = probe.find("\n" + header + "\n");
    if (at == std::string::npos) probe += "\n" + header + "\n" + key + " = 0\n";
    else probe.insert(at + header.size() + 2, key + " = 0\n");
    auto r = parse(probe, "probe.toml", not_built_mode::accept);
    ADD_FAILURE() << "docs/man/sealrelay.toml.5.scd:" << e.line << ": " << k
                  << " is documented but not a key of the loader ("
                  << (r ? std::string("no error with it written as 0, but not in the dump") : r.err()) << ")";
  }
}

TEST_F(ManPage, LiteralDefaultsAreTheCodes) {
  // The value dump() shows for a key the every-table config did not write is its default.
  std::map<std::string, std::string> defaults;
  for (const auto& i : items)
    if (!cfg.line_of(i.path) && !defaults.count(i.key)) defaults[i.key] = i.value;
  // Written in every entry of every_table (dump() leaves an empty list out): nothing to compare.
  const std::set<std::string> no_unwritten_value = {"dkim[].headers"};
  int compared = 0;
  for (const auto& [k, e] : page) {
    std::string lit = literal_default(e.spec);
    if (lit.empty()) continue;
    auto it = defaults.find(k);
    if (it == defaults.end()) {
      EXPECT_TRUE(no_unwritten_value.count(k) || !dump_keys.count(k))
          << k << ": the page says default " << lit << " but the dump shows no default to compare";
      continue;
    }
    ++compared;
    EXPECT_TRUE(same_value(lit, it->second))
        << "docs/man/sealrelay.toml.5.scd:" << e.line << ": " << k << ": the page says default "
        << lit << ", the code's default is " << it->second;
  }
  EXPECT_GT(compared, 50);
}

TEST_F(ManPage, NotBuiltKeysAreMarked) {
  for (const auto& p : not_built_problems(page, not_built_values)) ADD_FAILURE() << p;
}

TEST_F(ManPage, NotBuiltCheckCatchesAnUnmarkedKey) {
  // not_built.hh has no rows in this version: the check itself is exercised with made-up ones.
  const not_built_value rows[] = {{"server.hostname", "*", "a feature"},
                                  {"listen[].mode", "submission", "submission"}};
  auto problems = not_built_problems(page, rows);
  ASSERT_EQ(problems.size(), 2u);
  EXPECT_NE(problems[0].find("server.hostname is refused"), std::string::npos) << problems[0];
  std::map<std::string, page_key> marked = page;
  marked["listen[].mode"].text += "\t\"submission\" is not available in this version.\n";
  EXPECT_EQ(not_built_problems(marked, rows).size(), 1u);
}

}  // namespace
