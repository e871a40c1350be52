// SQLite storage of the suppression list (store.hh). Each call prepares its statement (the
// list changes rarely: a bounce batch, an operator command); a batch of adds is one
// transaction. busy_timeout lets the relay and the operator's tool take turns.
#include "sealrelay/suppress/store.hh"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace sr::suppress {

namespace {

constexpr const char* schema = R"sql(
CREATE TABLE IF NOT EXISTS suppression (
  address  TEXT PRIMARY KEY,
  added_ms INTEGER NOT NULL,
  source   TEXT NOT NULL,
  reason   TEXT NOT NULL
) WITHOUT ROWID;
)sql";

// A prepared statement, finalized when the scope ends.
struct stmt {
  sqlite3_stmt* s = nullptr;
  stmt(sqlite3* db, const char* sql) { sqlite3_prepare_v2(db, sql, -1, &s, nullptr); }
  ~stmt() { sqlite3_finalize(s); }
  explicit operator bool() const { return s != nullptr; }
  void text(int i, std::string_view v) { sqlite3_bind_text(s, i, v.data(), int(v.size()), SQLITE_TRANSIENT); }
  std::string column(int i) {
    auto* p = reinterpret_cast<const char*>(sqlite3_column_text(s, i));
    return p ? std::string(p, size_t(sqlite3_column_bytes(s, i))) : std::string();
  }
};

error db_error(sqlite3* db, std::string_view what) {
  return error{std::string(what) + ": " + sqlite3_errmsg(db)};
}

}  // namespace

const char* to_string(origin o) { return o == origin::bounce ? "bounce" : "operator"; }

std::string normalize(std::string_view a) {
  while (!a.empty() && (a.front() == ' ' || a.front() == '\t')) a.remove_prefix(1);
  while (!a.empty() && (a.back() == ' ' || a.back() == '\t')) a.remove_suffix(1);
  if (a.size() >= 2 && a.front() == '<' && a.back() == '>') a = a.substr(1, a.size() - 2);
  size_t at = a.rfind('@');
  if (a.empty() || a.size() > 320 || at == std::string_view::npos || at == 0 || at + 1 == a.size()) return {};
  std::string out;
  out.reserve(a.size());
  for (char c : a) {
    auto u = static_cast<unsigned char>(c);
    if (u <= ' ' || u == 0x7f || c == '<' || c == '>') return {};
    out += c >= 'A' && c <= 'Z' ? char(c - 'A' + 'a') : c;
  }
  return out;
}

std::string db_path(const std::string& state_dir) { return state_dir + "/suppression.db"; }

result<std::unique_ptr<store>> store::open(const std::string& path, bool create) {
  if (create) {
    // Create it 0600 before SQLite does (SQLite would follow the umask).
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) return error{path + ": " + std::strerror(errno)};
    ::close(fd);
  } else if (::access(path.c_str(), F_OK) != 0) {
    return error{path + ": " + std::strerror(errno)};
  }
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_FULLMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    std::string why = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    sqlite3_close_v2(db);
    return error{path + ": " + why};
  }
  std::unique_ptr<store> s(new store(db));
  sqlite3_busy_timeout(db, 5000);
  if (status st = s->exec("PRAGMA journal_mode=DELETE"); !st) return error{path + ": " + st.err()};
  if (status st = s->exec("PRAGMA synchronous=FULL"); !st) return error{path + ": " + st.err()};
  if (status st = s->exec(schema); !st) return error{path + ": " + st.err()};
  return s;
}

store::~store() { sqlite3_close_v2(_db); }

status store::exec(const char* sql) {
  char* msg = nullptr;
  if (sqlite3_exec(_db, sql, nullptr, nullptr, &msg) != SQLITE_OK) {
    std::string why = msg ? msg : sqlite3_errmsg(_db);
    sqlite3_free(msg);
    return error{why};
  }
  return {};
}

result<size_t> store::add(const std::vector<entry>& entries) {
  if (entries.empty()) return size_t(0);
  if (status s = exec("BEGIN IMMEDIATE"); !s) return error{"begin: " + s.err()};
  stmt st(_db, "INSERT OR IGNORE INTO suppression (address, added_ms, source, reason) VALUES (?1, ?2, ?3, ?4)");
  if (!st) {
    exec("ROLLBACK");
    return db_error(_db, "insert");
  }
  size_t added = 0;
  for (const auto& e : entries) {
    sqlite3_reset(st.s);
    st.text(1, e.address);
    sqlite3_bind_int64(st.s, 2, e.added_ms);
    st.text(3, to_string(e.source));
    st.text(4, e.reason.substr(0, 512));
    if (sqlite3_step(st.s) != SQLITE_DONE) {
      auto err = db_error(_db, "insert");
      exec("ROLLBACK");
      return err;
    }
    added += size_t(sqlite3_changes(_db));
  }
  if (status s = exec("COMMIT"); !s) {
    exec("ROLLBACK");
    return error{"commit: " + s.err()};
  }
  return added;
}

result<bool> store::remove(std::string_view address) {
  stmt st(_db, "DELETE FROM suppression WHERE address = ?1");
  if (!st) return db_error(_db, "delete");
  st.text(1, address);
  if (sqlite3_step(st.s) != SQLITE_DONE) return db_error(_db, "delete");
  return sqlite3_changes(_db) > 0;
}

result<bool> store::contains(std::string_view address) {
  stmt st(_db, "SELECT 1 FROM suppression WHERE address = ?1");
  if (!st) return db_error(_db, "select");
  st.text(1, address);
  int rc = sqlite3_step(st.s);
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) return db_error(_db, "select");
  return rc == SQLITE_ROW;
}

result<std::vector<entry>> store::list() {
  stmt st(_db, "SELECT address, added_ms, source, reason FROM suppression ORDER BY address");
  if (!st) return db_error(_db, "select");
  std::vector<entry> out;
  int rc;
  while ((rc = sqlite3_step(st.s)) == SQLITE_ROW) {
    entry e;
    e.address = st.column(0);
    e.added_ms = sqlite3_column_int64(st.s, 1);
    e.source = st.column(2) == "bounce" ? origin::bounce : origin::operator_;
    e.reason = st.column(3);
    out.push_back(std::move(e));
  }
  if (rc != SQLITE_DONE) return db_error(_db, "select");
  return out;
}

result<std::vector<std::string>> store::addresses() {
  // ORDER BY uses SQLite's BINARY collation: byte order, as std::string compares.
  stmt st(_db, "SELECT address FROM suppression ORDER BY address");
  if (!st) return db_error(_db, "select");
  std::vector<std::string> out;
  int rc;
  while ((rc = sqlite3_step(st.s)) == SQLITE_ROW) out.push_back(st.column(0));
  if (rc != SQLITE_DONE) return db_error(_db, "select");
  return out;
}

int64_t store::data_version() {
  stmt st(_db, "PRAGMA data_version");
  if (!st || sqlite3_step(st.s) != SQLITE_ROW) return -1;
  return sqlite3_column_int64(st.s, 0);
}

}  // namespace sr::suppress
