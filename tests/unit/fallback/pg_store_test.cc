// The PostgreSQL escrow store: the shared suite (store_suite.cc) over a fresh database per
// test in one throwaway cluster per run (support/pg_cluster.hh), and what only a shared
// server shows: two connections (two relay nodes) share one try count, wrong codes entered
// on several at once are each counted once, the rows hold neither a message nor a link secret
// nor a link id, a dropped connection is reset, a newer schema version is refused, an
// unreachable server is an error.
#include <libpq-fe.h>

#include <atomic>
#include <map>
#include <mutex>
#include <thread>

#include "sealrelay/fallback/escrow.hh"
#include "sealrelay/fallback/pg_store.hh"
#include "store_suite.hh"
#include "support/pg_cluster.hh"

namespace sr::fallback::test {
namespace {

using namespace std::chrono_literals;

// One cluster for the whole run, started before the first test and stopped after the last.
class pg_environment : public testing::Environment {
 public:
  void SetUp() override {
    _cluster = std::make_unique<sr::test::pg_cluster>();
    _up = _cluster->start();
  }
  void TearDown() override { _cluster.reset(); }
  bool up() const { return _up; }
  const sr::test::pg_cluster& cluster() const { return *_cluster; }

 private:
  std::unique_ptr<sr::test::pg_cluster> _cluster;
  bool _up = false;
};

pg_environment* const env =
    static_cast<pg_environment*>(testing::AddGlobalTestEnvironment(new pg_environment));

void skip_without_cluster() {
  GTEST_SKIP() << "no PostgreSQL cluster: " << env->cluster().error();
}

// Run SQL on a database of the cluster; the error text, empty when it worked.
std::string admin_exec(const std::string& dbname, const std::string& sql,
                       std::string* first_value = nullptr) {
  PGconn* c = PQconnectdb(env->cluster().conninfo(dbname).c_str());
  std::string err;
  if (PQstatus(c) != CONNECTION_OK) {
    err = PQerrorMessage(c);
  } else {
    PGresult* r = PQexec(c, sql.c_str());
    auto st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
      err = PQresultErrorMessage(r);
    else if (first_value && PQntuples(r) > 0)
      *first_value = PQgetvalue(r, 0, 0);
    PQclear(r);
  }
  PQfinish(c);
  return err;
}

// A new, empty database; its name, empty (and a test failure) when it could not be made.
std::string fresh_database() {
  static std::atomic<int> next{0};
  std::string name = "escrow_" + std::to_string(++next);
  std::string err = admin_exec("postgres", "CREATE DATABASE " + name);
  EXPECT_EQ(err, "") << "CREATE DATABASE " << name;
  return err.empty() ? name : std::string();
}

std::unique_ptr<escrow_store> make_pg(const std::filesystem::path&) {
  if (!env->up()) {
    skip_without_cluster();
    return nullptr;
  }
  std::string db = fresh_database();
  if (db.empty()) return nullptr;
  auto s = open_pg_store(env->cluster().conninfo(db));
  EXPECT_TRUE(s) << s.err();
  return s ? std::move(*s) : nullptr;
}

INSTANTIATE_TEST_SUITE_P(postgresql, EscrowStore,
                         testing::Values(store_factory{"postgresql", make_pg}),
                         [](const auto& info) { return info.param.name; });

class PgEscrowStore : public testing::Test {
 protected:
  void SetUp() override {
    if (!env->up()) GTEST_SKIP() << "no PostgreSQL cluster: " << env->cluster().error();
    _db = fresh_database();
    ASSERT_FALSE(_db.empty());
  }
  result<std::unique_ptr<escrow_store>> open() {
    return open_pg_store(env->cluster().conninfo(_db));
  }
  std::string _db;
};

TEST_F(PgEscrowStore, TwoConnectionsShareOneTryCount) {
  auto a = open();
  auto b = open();
  ASSERT_TRUE(a) << a.err();
  ASSERT_TRUE(b) << b.err();
  auto l = escrow::deposit(**a, bytes_of("x"), "<a@b>", "s@x", "r@y", t0, 1h);
  ASSERT_TRUE(l) << l.err();
  auto code = escrow::issue_code(**b, l->id, t0);
  ASSERT_TRUE(code && code->why == access::ok);
  const std::string wrong = code->code == "000000" ? "000001" : "000000";
  for (int i = 1; i <= max_wrong_codes; ++i) {
    auto t = escrow::check_code(i % 2 ? **a : **b, l->id, wrong, t0 + 1s);
    ASSERT_TRUE(t) << t.err();
    EXPECT_EQ(t->tries_left, max_wrong_codes - i);
  }
  auto o = escrow::open(**a, l->id, l->secret, t0 + 2s);
  ASSERT_TRUE(o) << o.err();
  EXPECT_EQ(o->status, escrow::open_status::locked);
}

// Four nodes enter wrong codes at the same moment: the row lock makes every try count once,
// so the answers are exactly the tries left 4, 3, 2, 1, then one lock; the rest are refused.
TEST_F(PgEscrowStore, ConcurrentWrongCodesAreEachCountedOnce) {
  constexpr int nodes = 4;
  std::vector<std::unique_ptr<escrow_store>> stores;
  for (int i = 0; i < nodes; ++i) {
    auto s = open();
    ASSERT_TRUE(s) << s.err();
    stores.push_back(std::move(*s));
  }
  auto l = escrow::deposit(*stores[0], bytes_of("x"), "<c@b>", "s@x", "r@y", t0, 1h);
  ASSERT_TRUE(l) << l.err();
  auto code = escrow::issue_code(*stores[1], l->id, t0);
  ASSERT_TRUE(code && code->why == access::ok);
  const std::string wrong = code->code == "000000" ? "000001" : "000000";

  std::mutex m;
  std::vector<code_try> answers;
  std::vector<std::string> errors;
  std::atomic<int> ready{0};
  std::vector<std::thread> threads;
  for (int n = 0; n < nodes; ++n)
    threads.emplace_back([&, n] {
      ready.fetch_add(1);
      // Bounded spin: start together (or after 5 s regardless).
      for (int spin = 0; ready.load() < nodes && spin < 5000; ++spin)
        std::this_thread::sleep_for(1ms);
      for (int i = 0; i < max_wrong_codes; ++i) {
        auto t = escrow::check_code(*stores[static_cast<std::size_t>(n)], l->id, wrong, t0 + 1s);
        std::lock_guard lock(m);
        if (t)
          answers.push_back(*t);
        else
          errors.push_back(t.err());
      }
    });
  for (auto& t : threads) t.join();
  ASSERT_TRUE(errors.empty()) << errors.front();
  ASSERT_EQ(answers.size(), static_cast<std::size_t>(nodes * max_wrong_codes));
  std::map<int, int> wrong_by_left;
  int locked_now = 0, refused = 0;
  for (const auto& a : answers) {
    if (a.verdict == code_verdict::wrong) ++wrong_by_left[a.tries_left];
    if (a.verdict == code_verdict::locked_now) ++locked_now;
    if (a.verdict == code_verdict::refused && a.refused == access::locked) ++refused;
  }
  std::map<int, int> once;
  for (int left = 1; left < max_wrong_codes; ++left) once[left] = 1;
  EXPECT_EQ(wrong_by_left, once);
  EXPECT_EQ(locked_now, 1);
  EXPECT_EQ(refused, nodes * max_wrong_codes - max_wrong_codes);
  auto found = stores[0]->find_by_link_hash(escrow::hash_link_id(l->id));
  ASSERT_TRUE(found && *found);
  EXPECT_EQ((*found)->wrong_codes, max_wrong_codes);
  EXPECT_EQ((*found)->state, escrow_state::locked);
}

std::string hex_of(std::string_view s) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (unsigned char c : s) {
    out += digits[c >> 4];
    out += digits[c & 15];
  }
  return out;
}

TEST_F(PgEscrowStore, RowsHoldNeitherPlaintextNorSecretNorId) {
  auto store = open();
  ASSERT_TRUE(store) << store.err();
  const std::string secret_text = "Patient 4711: diagnosis CONFIDENTIAL-MARKER-XYZZY";
  std::vector<escrow::link> links;
  for (int i = 0; i < 3; ++i) {
    auto l = escrow::deposit(**store, bytes_of(secret_text), "<m@bank.example>",
                             "lab@bank.example", "pat@clinic.example", t0, 24h);
    ASSERT_TRUE(l) << l.err();
    links.push_back(*l);
  }
  auto code = escrow::issue_code(**store, links[0].id, t0);
  ASSERT_TRUE(code && code->why == access::ok);
  // Every row as text (bytea shows as hex): search both the text and its hex.
  std::string rows;
  ASSERT_EQ(admin_exec(_db, "SELECT string_agg(e::text, ' ') FROM escrow e", &rows), "");
  ASSERT_NE(rows.find("pat@clinic.example"), std::string::npos) << "the probe sees no rows";
  // Not the bare "4711": four hex digits turn up in a few hundred bytes of random
  // ciphertext shown as hex (a few runs in a hundred); "Patient 4711" cannot.
  for (const std::string& needle :
       {std::string("CONFIDENTIAL-MARKER"), std::string("Patient 4711"), code->code}) {
    EXPECT_EQ(rows.find(needle), std::string::npos) << needle;
    EXPECT_EQ(rows.find(hex_of(needle)), std::string::npos) << needle;
  }
  for (const auto& l : links) {
    EXPECT_EQ(rows.find(l.secret), std::string::npos);
    EXPECT_EQ(rows.find(l.id), std::string::npos);
    EXPECT_EQ(rows.find(hex_of(l.secret)), std::string::npos);
    EXPECT_EQ(rows.find(hex_of(l.id)), std::string::npos);
  }
}

TEST_F(PgEscrowStore, RecordsSurviveAReconnect) {
  escrow::link l;
  {
    auto store = open();
    ASSERT_TRUE(store) << store.err();
    auto d = escrow::deposit(**store, bytes_of("hello"), "<a@b>", "s@x", "r@y", t0, 1h);
    ASSERT_TRUE(d) << d.err();
    l = *d;
  }
  auto store = open();
  ASSERT_TRUE(store) << store.err();
  auto o = escrow::open(**store, l.id, l.secret, t0 + 1s);
  ASSERT_TRUE(o) << o.err();
  EXPECT_EQ(o->status, escrow::open_status::ok);
  EXPECT_EQ(std::string(o->message.begin(), o->message.end()), "hello");
}

// The server drops the connection (a restart, a failover): the call that finds it dead
// fails, the next one reconnects and prepares its statements again.
TEST_F(PgEscrowStore, ADroppedConnectionIsResetOnTheNextCall) {
  auto store = open();
  ASSERT_TRUE(store) << store.err();
  auto l = escrow::deposit(**store, bytes_of("kept"), "<d@b>", "s@x", "r@y", t0, 1h);
  ASSERT_TRUE(l) << l.err();
  std::string killed;
  ASSERT_EQ(admin_exec("postgres",
                       "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                       "WHERE datname = '" + _db + "' AND application_name = 'sealrelay-escrow'",
                       &killed),
            "");
  ASSERT_EQ(killed, "1");
  const auto link = escrow::hash_link_id(l->id);
  int failed = 0;
  result<std::optional<escrow_record>> found = error{"not tried"};
  for (int i = 0; i < 2; ++i) {
    found = (*store)->find_by_link_hash(link);
    if (found) break;
    ++failed;
    EXPECT_NE(found.err().find("escrow store (postgresql)"), std::string::npos) << found.err();
  }
  ASSERT_TRUE(found) << found.err();
  ASSERT_TRUE(*found);
  EXPECT_LE(failed, 1);
  auto o = escrow::open(**store, l->id, l->secret, t0 + 1s);
  ASSERT_TRUE(o) << o.err();
  EXPECT_EQ(o->status, escrow::open_status::ok);
}

TEST_F(PgEscrowStore, NewerSchemaVersionIsRefused) {
  ASSERT_TRUE(open());
  ASSERT_EQ(admin_exec(_db, "INSERT INTO schema_version (version) VALUES (99)"), "");
  auto again = open();
  ASSERT_FALSE(again);
  EXPECT_NE(again.err().find("schema version 99"), std::string::npos) << again.err();
}

TEST_F(PgEscrowStore, UnreachableServerIsAnError) {
  // The cluster's port with a database that does not exist, and a closed port.
  auto nodb = open_pg_store(env->cluster().conninfo("no_such_database"));
  ASSERT_FALSE(nodb);
  EXPECT_NE(nodb.err().find("no_such_database"), std::string::npos) << nodb.err();
  auto closed = open_pg_store("host=127.0.0.1 port=1 connect_timeout=2");
  ASSERT_FALSE(closed);
  EXPECT_NE(closed.err().find("cannot connect"), std::string::npos) << closed.err();
}

}  // namespace
}  // namespace sr::fallback::test
