// The SQLite backend of escrow_store (sqlite_store.hh). Every change runs in one
// BEGIN IMMEDIATE transaction (the write lock first, so two portal requests for one record
// serialise instead of both reading the old try count); bulk changes are one UPDATE ...
// RETURNING. Statements are prepared once per store; RAII frees them and the connection.
#include "sealrelay/fallback/sqlite_store.hh"
#include "store_schema.hh"

#include <fcntl.h>
#include <sqlite3.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace sr::fallback {

namespace {

constexpr int schema_version = 1;

constexpr const char* schema_v1 = R"sql(
CREATE TABLE escrow (
  link_hash    BLOB PRIMARY KEY,
  salt         BLOB NOT NULL,
  sealed       BLOB NOT NULL,
  msg_id       TEXT NOT NULL,
  sender       TEXT NOT NULL,
  recipient    TEXT NOT NULL,
  created      INTEGER NOT NULL,
  expires      INTEGER NOT NULL,
  state        TEXT NOT NULL,
  code_hash    BLOB,
  code_expires INTEGER NOT NULL DEFAULT 0,
  wrong_codes  INTEGER NOT NULL DEFAULT 0,
  views        INTEGER NOT NULL DEFAULT 0,
  last_viewed  INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX escrow_msg_id ON escrow (msg_id);
CREATE INDEX escrow_expires ON escrow (expires);
)sql";



struct db_closer {
  void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
};
struct stmt_finalizer {
  void operator()(sqlite3_stmt* s) const { sqlite3_finalize(s); }
};
using db_ptr = std::unique_ptr<sqlite3, db_closer>;
using stmt_ptr = std::unique_ptr<sqlite3_stmt, stmt_finalizer>;

using schema::columns;
using schema::events;
using schema::from_unix;
using schema::to_unix;
using schema::usable;

// Resets a statement (and drops its bindings) when the scope ends, however it ends.
struct stmt_use {
  sqlite3_stmt* s;
  explicit stmt_use(sqlite3_stmt* st) : s(st) {}
  ~stmt_use() {
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
  }
  stmt_use(const stmt_use&) = delete;
  stmt_use& operator=(const stmt_use&) = delete;
};

class sqlite_store final : public escrow_store {
 public:
  explicit sqlite_store(db_ptr db) : _db(std::move(db)) {}

  status prepare_all() {
    const std::string all = columns;
    struct {
      stmt_ptr* slot;
      std::string sql;
    } list[] = {
        {&_begin, "BEGIN IMMEDIATE"},
        {&_commit, "COMMIT"},
        {&_rollback, "ROLLBACK"},
        {&_insert, "INSERT INTO escrow (" + all + ") VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)"},
        {&_find, "SELECT " + all + " FROM escrow WHERE link_hash = ?"},
        {&_update,
         "UPDATE escrow SET state = ?, sealed = ?, code_hash = ?, code_expires = ?, "
         "wrong_codes = ?, views = ?, last_viewed = ? WHERE link_hash = ?"},
        {&_retract, "UPDATE escrow SET state = 'retracted', sealed = x'', code_hash = NULL "
                    "WHERE msg_id = ? AND " + std::string(usable) + " RETURNING " + events},
        {&_expire, "UPDATE escrow SET state = 'expired', sealed = x'', code_hash = NULL "
                   "WHERE expires <= ? AND " + std::string(usable) + " RETURNING " + events},
    };
    for (auto& [slot, sql] : list) {
      sqlite3_stmt* s = nullptr;
      if (sqlite3_prepare_v3(_db.get(), sql.c_str(), -1, SQLITE_PREPARE_PERSISTENT, &s,
                             nullptr) != SQLITE_OK)
        return fail("prepare");
      slot->reset(s);
    }
    return status::success();
  }

  status put(const escrow_record& r) override {
    stmt_use use(_insert.get());
    bind_record(_insert.get(), r);
    if (sqlite3_step(_insert.get()) != SQLITE_DONE) return fail("put");
    return status::success();
  }

  result<std::optional<escrow_record>> find_by_link_hash(const link_hash& link) override {
    stmt_use use(_find.get());
    bind_blob(_find.get(), 1, link);
    switch (sqlite3_step(_find.get())) {
      case SQLITE_ROW: return std::optional<escrow_record>(read_record(_find.get()));
      case SQLITE_DONE: return std::optional<escrow_record>();
      default: return error{fail("find").err()};
    }
  }

  result<std::vector<escrow_event>> retract_by_msg_id(std::string_view msg_id) override {
    stmt_use use(_retract.get());
    sqlite3_bind_text(_retract.get(), 1, msg_id.data(), static_cast<int>(msg_id.size()),
                      SQLITE_TRANSIENT);
    return collect_events(_retract.get(), "retract");
  }

  result<std::vector<escrow_event>> expire(seconds_t now) override {
    stmt_use use(_expire.get());
    sqlite3_bind_int64(_expire.get(), 1, to_unix(now));
    return collect_events(_expire.get(), "expire");
  }

 protected:
  result<bool> modify(const link_hash& link,
                      const std::function<bool(escrow_record&)>& change) override {
    if (auto st = step_done(_begin.get(), "begin"); !st) return error{st.err()};
    auto out = modify_in_transaction(link, change);
    if (!out) {
      step_done(_rollback.get(), "rollback");
      return out;
    }
    if (auto st = step_done(_commit.get(), "commit"); !st) {
      step_done(_rollback.get(), "rollback");
      return error{st.err()};
    }
    return out;
  }

 private:
  result<bool> modify_in_transaction(const link_hash& link,
                                     const std::function<bool(escrow_record&)>& change) {
    auto found = find_by_link_hash(link);
    if (!found) return error{found.err()};
    if (!*found) return false;
    escrow_record& r = **found;
    if (!change(r)) return true;
    stmt_use use(_update.get());
    sqlite3_stmt* s = _update.get();
    bind_text(s, 1, to_string(r.state));
    bind_blob(s, 2, r.sealed);
    if (r.code)
      bind_blob(s, 3, *r.code);
    else
      sqlite3_bind_null(s, 3);
    sqlite3_bind_int64(s, 4, to_unix(r.code_expires));
    sqlite3_bind_int(s, 5, r.wrong_codes);
    sqlite3_bind_int(s, 6, r.views);
    sqlite3_bind_int64(s, 7, to_unix(r.last_viewed));
    bind_blob(s, 8, r.link);
    if (sqlite3_step(s) != SQLITE_DONE) return error{fail("update").err()};
    return true;
  }

  result<std::vector<escrow_event>> collect_events(sqlite3_stmt* s, const char* what) {
    std::vector<escrow_event> out;
    for (;;) {
      int rc = sqlite3_step(s);
      if (rc == SQLITE_DONE) return out;
      if (rc != SQLITE_ROW) return error{fail(what).err()};
      escrow_event e;
      copy_blob(s, 0, e.link);
      e.msg_id = column_text(s, 1);
      e.sender = column_text(s, 2);
      e.recipient = column_text(s, 3);
      out.push_back(std::move(e));
    }
  }

  status step_done(sqlite3_stmt* s, const char* what) {
    stmt_use use(s);
    if (sqlite3_step(s) != SQLITE_DONE) return fail(what);
    return status::success();
  }

  static void bind_blob(sqlite3_stmt* s, int i, std::span<const uint8_t> b) {
    // An empty blob binds as x'' (zeroblob), never as NULL: the columns are NOT NULL.
    if (b.empty())
      sqlite3_bind_zeroblob(s, i, 0);
    else
      sqlite3_bind_blob(s, i, b.data(), static_cast<int>(b.size()), SQLITE_TRANSIENT);
  }
  static void bind_text(sqlite3_stmt* s, int i, std::string_view t) {
    sqlite3_bind_text(s, i, t.data(), static_cast<int>(t.size()), SQLITE_TRANSIENT);
  }

  static void bind_record(sqlite3_stmt* s, const escrow_record& r) {
    bind_blob(s, 1, r.link);
    bind_blob(s, 2, r.salt);
    bind_blob(s, 3, r.sealed);
    bind_text(s, 4, r.msg_id);
    bind_text(s, 5, r.sender);
    bind_text(s, 6, r.recipient);
    sqlite3_bind_int64(s, 7, to_unix(r.created));
    sqlite3_bind_int64(s, 8, to_unix(r.expires));
    bind_text(s, 9, to_string(r.state));
    if (r.code)
      bind_blob(s, 10, *r.code);
    else
      sqlite3_bind_null(s, 10);
    sqlite3_bind_int64(s, 11, to_unix(r.code_expires));
    sqlite3_bind_int(s, 12, r.wrong_codes);
    sqlite3_bind_int(s, 13, r.views);
    sqlite3_bind_int64(s, 14, to_unix(r.last_viewed));
  }

  static std::string column_text(sqlite3_stmt* s, int i) {
    const unsigned char* t = sqlite3_column_text(s, i);
    return t ? std::string(reinterpret_cast<const char*>(t),
                           static_cast<std::size_t>(sqlite3_column_bytes(s, i)))
             : std::string();
  }
  static std::vector<uint8_t> column_blob(sqlite3_stmt* s, int i) {
    const auto* p = static_cast<const uint8_t*>(sqlite3_column_blob(s, i));
    const int n = sqlite3_column_bytes(s, i);
    return p ? std::vector<uint8_t>(p, p + n) : std::vector<uint8_t>();
  }
  // Copy a 32-byte hash column; false (and `out` untouched) when it is NULL or another size.
  static bool copy_blob(sqlite3_stmt* s, int i, tls::sha256_digest& out) {
    const auto* p = static_cast<const uint8_t*>(sqlite3_column_blob(s, i));
    if (!p || sqlite3_column_bytes(s, i) != static_cast<int>(out.size())) return false;
    std::memcpy(out.data(), p, out.size());
    return true;
  }

  static escrow_record read_record(sqlite3_stmt* s) {
    escrow_record r;
    copy_blob(s, 0, r.link);
    r.salt = column_blob(s, 1);
    r.sealed = column_blob(s, 2);
    r.msg_id = column_text(s, 3);
    r.sender = column_text(s, 4);
    r.recipient = column_text(s, 5);
    r.created = from_unix(sqlite3_column_int64(s, 6));
    r.expires = from_unix(sqlite3_column_int64(s, 7));
    // An unreadable state is treated as locked: it never opens.
    r.state = escrow_state_from(column_text(s, 8)).value_or(escrow_state::locked);
    code_hash c;
    if (copy_blob(s, 9, c)) r.code = c;
    r.code_expires = from_unix(sqlite3_column_int64(s, 10));
    r.wrong_codes = sqlite3_column_int(s, 11);
    r.views = sqlite3_column_int(s, 12);
    r.last_viewed = from_unix(sqlite3_column_int64(s, 13));
    return r;
  }

  status fail(const char* what) {
    return error{std::string("escrow store (sqlite): ") + what + ": " + sqlite3_errmsg(_db.get())};
  }

  db_ptr _db;
  stmt_ptr _begin, _commit, _rollback, _insert, _find, _update, _retract, _expire;
};

// Run a script (no results); an error naming `what` on failure.
status exec(sqlite3* db, const char* sql, const char* what) {
  char* msg = nullptr;
  if (sqlite3_exec(db, sql, nullptr, nullptr, &msg) == SQLITE_OK) return status::success();
  std::string text = std::string("escrow store (sqlite): ") + what + ": " +
                     (msg ? msg : sqlite3_errmsg(db));
  sqlite3_free(msg);
  return error{text};
}

// Create the schema in a new file, or check an existing file's version.
status ensure_schema(sqlite3* db) {
  if (auto st = exec(db, "BEGIN IMMEDIATE", "schema"); !st) return st;
  auto done = [&](status st) {
    if (!st) {
      exec(db, "ROLLBACK", "schema");
      return st;
    }
    return exec(db, "COMMIT", "schema");
  };
  if (auto st = exec(db, "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)",
                     "schema");
      !st)
    return done(st);
  sqlite3_stmt* raw = nullptr;
  if (sqlite3_prepare_v2(db, "SELECT max(version) FROM schema_version", -1, &raw, nullptr) !=
      SQLITE_OK)
    return done(error{std::string("escrow store (sqlite): schema: ") + sqlite3_errmsg(db)});
  stmt_ptr q(raw);
  int version = 0;
  if (sqlite3_step(q.get()) == SQLITE_ROW && sqlite3_column_type(q.get(), 0) != SQLITE_NULL)
    version = sqlite3_column_int(q.get(), 0);
  q.reset();
  if (version > schema_version)
    return done(error{"escrow store (sqlite): schema version " + std::to_string(version) +
                      " is newer than this build's (" + std::to_string(schema_version) + ")"});
  if (version == 0) {
    if (auto st = exec(db, schema_v1, "schema v1"); !st) return done(st);
    if (auto st = exec(db, "INSERT INTO schema_version (version) VALUES (1)", "schema"); !st)
      return done(st);
  }
  return done(status::success());
}

}  // namespace

result<std::unique_ptr<escrow_store>> open_sqlite_store(const std::string& path) {
  // Create the file ourselves so it is private from the start (SQLite would use 0644 and
  // gives its -wal and -shm files the database's mode).
  if (int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600); fd >= 0)
    ::close(fd);
  else
    return error{"escrow store (sqlite): cannot open " + path + ": " + std::strerror(errno)};
  sqlite3* raw = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &raw,
                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, nullptr);
  db_ptr db(raw);
  if (rc != SQLITE_OK)
    return error{"escrow store (sqlite): cannot open " + path + ": " +
                 (raw ? sqlite3_errmsg(raw) : sqlite3_errstr(rc))};
  sqlite3_busy_timeout(db.get(), 5000);
  // FULL: a deposit is durable when put() returns (the sidecar reports a durable result
  // only then). journal_mode answers a row; exec without a callback ignores it.
  for (const char* pragma : {"PRAGMA journal_mode = WAL", "PRAGMA synchronous = FULL",
                             "PRAGMA secure_delete = ON"})
    if (auto st = exec(db.get(), pragma, pragma); !st) return error{st.err()};
  if (auto st = ensure_schema(db.get()); !st) return error{st.err()};
  auto store = std::make_unique<sqlite_store>(std::move(db));
  if (auto st = store->prepare_all(); !st) return error{st.err()};
  return std::unique_ptr<escrow_store>(std::move(store));
}

}  // namespace sr::fallback
