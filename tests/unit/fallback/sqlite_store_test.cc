// The SQLite escrow store: the shared suite (store_suite.cc) over a fresh file per test,
// and what only a file shows: its bytes (main file, -wal, -shm) hold neither a message,
// nor a link secret, nor a link id; it is private (0600); it keeps records across a
// reopen; a newer schema version is refused.
#include <sqlite3.h>
#include <sys/stat.h>

#include <algorithm>
#include <fstream>
#include <iterator>

#include "sealrelay/fallback/escrow.hh"
#include "sealrelay/fallback/sqlite_store.hh"
#include "store_suite.hh"
#include "support/temp_dir.hh"

namespace sr::fallback::test {
namespace {

using namespace std::chrono_literals;

std::unique_ptr<escrow_store> make_sqlite(const std::filesystem::path& dir) {
  auto s = open_sqlite_store((dir / "escrow.db").string());
  EXPECT_TRUE(s) << s.err();
  return s ? std::move(*s) : nullptr;
}

INSTANTIATE_TEST_SUITE_P(sqlite, EscrowStore, testing::Values(store_factory{"sqlite", make_sqlite}),
                         [](const auto& info) { return info.param.name; });



std::string read_all(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// Every byte the store has on disk: the database and its WAL files.
std::string store_bytes(const std::filesystem::path& db) {
  std::string all;
  for (const char* suffix : {"", "-wal", "-shm", "-journal"}) {
    auto p = std::filesystem::path(db.string() + suffix);
    if (std::filesystem::exists(p)) all += read_all(p);
  }
  return all;
}


TEST(SqliteEscrowStore, FileHoldsNeitherPlaintextNorSecretNorId) {
  sr::test::temp_dir dir("sealrelay-escrow");
  const auto db = dir.path() / "escrow.db";
  const std::string secret_text = "Patient 4711: diagnosis CONFIDENTIAL-MARKER-XYZZY";
  std::vector<escrow::link> links;
  {
    auto store = open_sqlite_store(db.string());
    ASSERT_TRUE(store) << store.err();
    for (int i = 0; i < 3; ++i) {
      auto l = escrow::deposit(**store, bytes_of(secret_text), "<m@bank.example>",
                               "lab@bank.example", "pat@clinic.example", t0, 24h);
      ASSERT_TRUE(l) << l.err();
      links.push_back(*l);
    }
    auto code = escrow::issue_code(**store, links[0].id, t0);
    ASSERT_TRUE(code && code->why == access::ok);
    // Readable while the store is open (the WAL holds the pages now).
    const std::string on_disk = store_bytes(db);
    ASSERT_FALSE(on_disk.empty());
    EXPECT_NE(on_disk.find("pat@clinic.example"), std::string::npos)
        << "the probe does not see the file's contents";
    EXPECT_EQ(on_disk.find("CONFIDENTIAL-MARKER"), std::string::npos);
    EXPECT_EQ(on_disk.find("4711"), std::string::npos);
    for (const auto& l : links) {
      EXPECT_EQ(on_disk.find(l.secret), std::string::npos);
      EXPECT_EQ(on_disk.find(l.id), std::string::npos);
    }
    EXPECT_EQ(on_disk.find(code->code), std::string::npos);
  }
  // And after close (the WAL checkpointed into the main file).
  const std::string closed = store_bytes(db);
  EXPECT_EQ(closed.find("CONFIDENTIAL-MARKER"), std::string::npos);
  for (const auto& l : links) {
    EXPECT_EQ(closed.find(l.secret), std::string::npos);
    EXPECT_EQ(closed.find(l.id), std::string::npos);
  }
}

TEST(SqliteEscrowStore, FileIsPrivateAndInWalMode) {
  sr::test::temp_dir dir("sealrelay-escrow");
  const auto db = dir.path() / "escrow.db";
  auto store = open_sqlite_store(db.string());
  ASSERT_TRUE(store) << store.err();
  struct stat st {};
  ASSERT_EQ(::stat(db.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_TRUE(std::filesystem::exists(db.string() + "-wal"));
}

TEST(SqliteEscrowStore, RecordsSurviveAReopen) {
  sr::test::temp_dir dir("sealrelay-escrow");
  const auto db = (dir.path() / "escrow.db").string();
  escrow::link l;
  {
    auto store = open_sqlite_store(db);
    ASSERT_TRUE(store) << store.err();
    auto d = escrow::deposit(**store, bytes_of("hello"), "<a@b>", "s@x", "r@y", t0, 1h);
    ASSERT_TRUE(d);
    l = *d;
  }
  auto store = open_sqlite_store(db);
  ASSERT_TRUE(store) << store.err();
  auto o = escrow::open(**store, l.id, l.secret, t0 + 1s);
  ASSERT_TRUE(o) << o.err();
  EXPECT_EQ(o->status, escrow::open_status::ok);
  EXPECT_EQ(std::string(o->message.begin(), o->message.end()), "hello");
}

TEST(SqliteEscrowStore, TwoConnectionsShareOneTryCount) {
  sr::test::temp_dir dir("sealrelay-escrow");
  const auto db = (dir.path() / "escrow.db").string();
  auto a = open_sqlite_store(db);
  auto b = open_sqlite_store(db);
  ASSERT_TRUE(a && b);
  auto l = escrow::deposit(**a, bytes_of("x"), "<a@b>", "s@x", "r@y", t0, 1h);
  ASSERT_TRUE(l);
  auto code = escrow::issue_code(**b, l->id, t0);
  ASSERT_TRUE(code && code->why == access::ok);
  const std::string wrong = code->code == "000000" ? "000001" : "000000";
  for (int i = 1; i <= max_wrong_codes; ++i) {
    auto t = escrow::check_code(i % 2 ? **a : **b, l->id, wrong, t0 + 1s);
    ASSERT_TRUE(t) << t.err();
    EXPECT_EQ(t->tries_left, max_wrong_codes - i);
  }
  auto o = escrow::open(**a, l->id, l->secret, t0 + 2s);
  ASSERT_TRUE(o);
  EXPECT_EQ(o->status, escrow::open_status::locked);
}

TEST(SqliteEscrowStore, NewerSchemaVersionIsRefused) {
  sr::test::temp_dir dir("sealrelay-escrow");
  const auto db = (dir.path() / "escrow.db").string();
  ASSERT_TRUE(open_sqlite_store(db));
  sqlite3* raw = nullptr;
  ASSERT_EQ(sqlite3_open(db.c_str(), &raw), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(raw, "INSERT INTO schema_version (version) VALUES (99)", nullptr,
                         nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(raw);
  auto again = open_sqlite_store(db);
  ASSERT_FALSE(again);
  EXPECT_NE(again.err().find("schema version 99"), std::string::npos) << again.err();
}

TEST(SqliteEscrowStore, UnopenablePathIsAnError) {
  auto s = open_sqlite_store("/nonexistent-dir-for-sealrelay/escrow.db");
  ASSERT_FALSE(s);
  EXPECT_NE(s.err().find("/nonexistent-dir-for-sealrelay/escrow.db"), std::string::npos);
}

}  // namespace
}  // namespace sr::fallback::test
