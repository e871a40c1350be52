// The PostgreSQL backend of escrow_store (pg_store.hh), over libpq. Each change to one
// record is one transaction that reads the row with SELECT ... FOR UPDATE (a second node
// waits for the first's commit and then reads its try count); bulk changes are one
// UPDATE ... RETURNING. Parameters and results travel in binary, so blobs are stored as
// the exact bytes (bytea) the SQLite store keeps. A lost connection is reset once per call.
#include "sealrelay/fallback/pg_store.hh"
#include "store_schema.hh"

#include <libpq-fe.h>

#include <array>
#include <cstdlib>
#include <cstring>
#include <span>

namespace sr::fallback {

namespace {

constexpr int schema_version = 1;
// pg_advisory_xact_lock key: two nodes creating the schema at once take turns.
constexpr const char* schema_lock = "SELECT pg_advisory_xact_lock(7310356411480717056)";

constexpr const char* schema_v1 = R"sql(
CREATE TABLE escrow (
  link_hash    bytea PRIMARY KEY,
  salt         bytea NOT NULL,
  sealed       bytea NOT NULL,
  msg_id       text NOT NULL,
  sender       text NOT NULL,
  recipient    text NOT NULL,
  created      bigint NOT NULL,
  expires      bigint NOT NULL,
  state        text NOT NULL,
  code_hash    bytea,
  code_expires bigint NOT NULL DEFAULT 0,
  wrong_codes  integer NOT NULL DEFAULT 0,
  views        integer NOT NULL DEFAULT 0,
  last_viewed  bigint NOT NULL DEFAULT 0
);
CREATE INDEX escrow_msg_id ON escrow (msg_id);
CREATE INDEX escrow_expires ON escrow (expires);
)sql";


// Type OIDs of the parameters (pg_type.h is a server header; these never change).
constexpr Oid bytea_oid = 17, int8_oid = 20, int4_oid = 23, text_oid = 25;

struct conn_closer {
  void operator()(PGconn* c) const { PQfinish(c); }
};
struct result_clearer {
  void operator()(PGresult* r) const { PQclear(r); }
};
using conn_ptr = std::unique_ptr<PGconn, conn_closer>;
using pg_result = std::unique_ptr<PGresult, result_clearer>;

using schema::columns;
using schema::events;
using schema::from_unix;
using schema::to_unix;
using schema::usable;

// libpq's messages end in a newline; the audit and logs want one line.
std::string one_line(const char* msg) {
  std::string s = msg ? msg : "";
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  for (char& c : s)
    if (c == '\n') c = ' ';
  return s;
}

// The binary parameters of one statement call; they point into this object.
class params {
 public:
  void bytes(std::span<const uint8_t> b) {
    // A null pointer would mean SQL NULL: an empty blob points at a static empty string.
    add(b.empty() ? "" : reinterpret_cast<const char*>(b.data()), static_cast<int>(b.size()));
  }
  void text(std::string_view t) { add(t.empty() ? "" : t.data(), static_cast<int>(t.size())); }
  void null() { add(nullptr, 0); }
  void i64(int64_t v) {
    auto& slot = _ints[_n];
    uint64_t u = static_cast<uint64_t>(v);
    for (int i = 7; i >= 0; --i, u >>= 8) slot[static_cast<std::size_t>(i)] = static_cast<char>(u & 0xff);
    add(slot.data(), 8);
  }
  void i32(int32_t v) {
    auto& slot = _ints[_n];
    uint32_t u = static_cast<uint32_t>(v);
    for (int i = 3; i >= 0; --i, u >>= 8) slot[static_cast<std::size_t>(i)] = static_cast<char>(u & 0xff);
    add(slot.data(), 4);
  }
  int count() const { return _n; }
  const char* const* values() const { return _values.data(); }
  const int* lengths() const { return _lengths.data(); }
  const int* formats() const { return _formats.data(); }

 private:
  static constexpr int max = 16;
  void add(const char* p, int len) {
    _values[_n] = p;
    _lengths[_n] = len;
    _formats[_n] = 1;
    ++_n;
  }
  std::array<const char*, max> _values{};
  std::array<int, max> _lengths{};
  std::array<int, max> _formats{};
  std::array<std::array<char, 8>, max> _ints{};
  int _n = 0;
};

// Readers of binary result columns.
uint64_t be(const char* p, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; ++i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}
int64_t col_i64(const PGresult* r, int row, int c) {
  if (PQgetisnull(r, row, c) || PQgetlength(r, row, c) != 8) return 0;
  return static_cast<int64_t>(be(PQgetvalue(r, row, c), 8));
}
int col_i32(const PGresult* r, int row, int c) {
  if (PQgetisnull(r, row, c) || PQgetlength(r, row, c) != 4) return 0;
  return static_cast<int32_t>(static_cast<uint32_t>(be(PQgetvalue(r, row, c), 4)));
}
std::string col_text(const PGresult* r, int row, int c) {
  if (PQgetisnull(r, row, c)) return {};
  return {PQgetvalue(r, row, c), static_cast<std::size_t>(PQgetlength(r, row, c))};
}
std::vector<uint8_t> col_bytes(const PGresult* r, int row, int c) {
  if (PQgetisnull(r, row, c)) return {};
  const auto* p = reinterpret_cast<const uint8_t*>(PQgetvalue(r, row, c));
  return {p, p + PQgetlength(r, row, c)};
}
// Copy a 32-byte hash column; false (and `out` untouched) when it is NULL or another size.
bool col_hash(const PGresult* r, int row, int c, tls::sha256_digest& out) {
  if (PQgetisnull(r, row, c) || PQgetlength(r, row, c) != static_cast<int>(out.size()))
    return false;
  std::memcpy(out.data(), PQgetvalue(r, row, c), out.size());
  return true;
}

escrow_record read_record(const PGresult* r, int row) {
  escrow_record e;
  col_hash(r, row, 0, e.link);
  e.salt = col_bytes(r, row, 1);
  e.sealed = col_bytes(r, row, 2);
  e.msg_id = col_text(r, row, 3);
  e.sender = col_text(r, row, 4);
  e.recipient = col_text(r, row, 5);
  e.created = from_unix(col_i64(r, row, 6));
  e.expires = from_unix(col_i64(r, row, 7));
  // An unreadable state is treated as locked: it never opens.
  e.state = escrow_state_from(col_text(r, row, 8)).value_or(escrow_state::locked);
  code_hash c;
  if (col_hash(r, row, 9, c)) e.code = c;
  e.code_expires = from_unix(col_i64(r, row, 10));
  e.wrong_codes = col_i32(r, row, 11);
  e.views = col_i32(r, row, 12);
  e.last_viewed = from_unix(col_i64(r, row, 13));
  return e;
}

// The prepared statements: name, text and parameter types.
struct statement {
  const char* name;
  std::string sql;
  std::vector<Oid> types;
};

std::vector<statement> statements() {
  const std::string all = columns;
  return {
      {"insert",
       "INSERT INTO escrow (" + all +
           ") VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14)",
       {bytea_oid, bytea_oid, bytea_oid, text_oid, text_oid, text_oid, int8_oid, int8_oid,
        text_oid, bytea_oid, int8_oid, int4_oid, int4_oid, int8_oid}},
      {"find", "SELECT " + all + " FROM escrow WHERE link_hash = $1", {bytea_oid}},
      {"lock", "SELECT " + all + " FROM escrow WHERE link_hash = $1 FOR UPDATE", {bytea_oid}},
      {"update",
       "UPDATE escrow SET state = $1, sealed = $2, code_hash = $3, code_expires = $4, "
       "wrong_codes = $5, views = $6, last_viewed = $7 WHERE link_hash = $8",
       {text_oid, bytea_oid, bytea_oid, int8_oid, int4_oid, int4_oid, int8_oid, bytea_oid}},
      {"retract",
       "UPDATE escrow SET state = 'retracted', sealed = '\\x'::bytea, code_hash = NULL "
       "WHERE msg_id = $1 AND " + std::string(usable) + " RETURNING " + events,
       {text_oid}},
      {"expire",
       "UPDATE escrow SET state = 'expired', sealed = '\\x'::bytea, code_hash = NULL "
       "WHERE expires <= $1 AND " + std::string(usable) + " RETURNING " + events,
       {int8_oid}},
  };
}

class pg_store final : public escrow_store {
 public:
  explicit pg_store(conn_ptr conn) : _conn(std::move(conn)) {}

  status prepare_all() {
    for (const auto& s : statements()) {
      pg_result r(PQprepare(_conn.get(), s.name, s.sql.c_str(), static_cast<int>(s.types.size()),
                            s.types.data()));
      if (PQresultStatus(r.get()) != PGRES_COMMAND_OK)
        return fail(std::string("prepare ") + s.name, r.get());
    }
    return status::success();
  }

  status put(const escrow_record& r) override {
    params p;
    p.bytes(r.link);
    p.bytes(r.salt);
    p.bytes(r.sealed);
    p.text(r.msg_id);
    p.text(r.sender);
    p.text(r.recipient);
    p.i64(to_unix(r.created));
    p.i64(to_unix(r.expires));
    p.text(to_string(r.state));
    if (r.code)
      p.bytes(*r.code);
    else
      p.null();
    p.i64(to_unix(r.code_expires));
    p.i32(r.wrong_codes);
    p.i32(r.views);
    p.i64(to_unix(r.last_viewed));
    auto res = run("insert", p, PGRES_COMMAND_OK);
    if (!res) return error{res.err()};
    return status::success();
  }

  result<std::optional<escrow_record>> find_by_link_hash(const link_hash& link) override {
    params p;
    p.bytes(link);
    auto res = run("find", p, PGRES_TUPLES_OK);
    if (!res) return error{res.err()};
    if (PQntuples(res->get()) == 0) return std::optional<escrow_record>();
    return std::optional<escrow_record>(read_record(res->get(), 0));
  }

  result<std::vector<escrow_event>> retract_by_msg_id(std::string_view msg_id) override {
    params p;
    p.text(msg_id);
    return collect_events("retract", p);
  }

  result<std::vector<escrow_event>> expire(seconds_t now) override {
    params p;
    p.i64(to_unix(now));
    return collect_events("expire", p);
  }

 protected:
  result<bool> modify(const link_hash& link,
                      const std::function<bool(escrow_record&)>& change) override {
    if (auto st = ensure_connected(); !st) return error{st.err()};
    if (auto st = exec("BEGIN"); !st) return error{st.err()};
    auto out = modify_in_transaction(link, change);
    if (!out) {
      exec("ROLLBACK");
      return out;
    }
    if (auto st = exec("COMMIT"); !st) {
      exec("ROLLBACK");
      return error{st.err()};
    }
    return out;
  }

 private:
  result<bool> modify_in_transaction(const link_hash& link,
                                     const std::function<bool(escrow_record&)>& change) {
    params key;
    key.bytes(link);
    // The row lock: another node's change to this record waits until we commit.
    auto found = run("lock", key, PGRES_TUPLES_OK, false);
    if (!found) return error{found.err()};
    if (PQntuples(found->get()) == 0) return false;
    escrow_record r = read_record(found->get(), 0);
    if (!change(r)) return true;
    params p;
    p.text(to_string(r.state));
    p.bytes(r.sealed);
    if (r.code)
      p.bytes(*r.code);
    else
      p.null();
    p.i64(to_unix(r.code_expires));
    p.i32(r.wrong_codes);
    p.i32(r.views);
    p.i64(to_unix(r.last_viewed));
    p.bytes(r.link);
    auto res = run("update", p, PGRES_COMMAND_OK, false);
    if (!res) return error{res.err()};
    return true;
  }

  result<std::vector<escrow_event>> collect_events(const char* name, const params& p) {
    auto res = run(name, p, PGRES_TUPLES_OK);
    if (!res) return error{res.err()};
    const PGresult* r = res->get();
    std::vector<escrow_event> out;
    out.reserve(static_cast<std::size_t>(PQntuples(r)));
    for (int i = 0; i < PQntuples(r); ++i) {
      escrow_event e;
      col_hash(r, i, 0, e.link);
      e.msg_id = col_text(r, i, 1);
      e.sender = col_text(r, i, 2);
      e.recipient = col_text(r, i, 3);
      out.push_back(std::move(e));
    }
    return out;
  }

  // Run a prepared statement with binary parameters and results; an error unless it ends
  // in `want`. Outside a transaction (`reconnect`), a lost connection is reset first.
  result<pg_result> run(const char* name, const params& p, ExecStatusType want,
                        bool reconnect = true) {
    if (reconnect)
      if (auto st = ensure_connected(); !st) return error{st.err()};
    pg_result r(PQexecPrepared(_conn.get(), name, p.count(), p.values(), p.lengths(),
                               p.formats(), 1));
    if (PQresultStatus(r.get()) != want) return error{fail(name, r.get()).err()};
    return r;
  }

  status exec(const char* sql) {
    pg_result r(PQexec(_conn.get(), sql));
    if (PQresultStatus(r.get()) != PGRES_COMMAND_OK) return fail(sql, r.get());
    return status::success();
  }

  // Reset a connection the server or network dropped, and prepare again (statements live
  // in the session).
  status ensure_connected() {
    if (PQstatus(_conn.get()) == CONNECTION_OK) return status::success();
    PQreset(_conn.get());
    if (PQstatus(_conn.get()) != CONNECTION_OK) return fail("reconnect", nullptr);
    return prepare_all();
  }

  status fail(const std::string& what, const PGresult* r) {
    const char* msg = r ? PQresultErrorMessage(r) : nullptr;
    if (!msg || !*msg) msg = PQerrorMessage(_conn.get());
    return error{"escrow store (postgresql): " + what + ": " + one_line(msg)};
  }

  conn_ptr _conn;
};

// Run one simple-protocol command (several statements allowed); an error naming `what`.
status exec_on(PGconn* c, const char* sql, const char* what) {
  pg_result r(PQexec(c, sql));
  auto st = PQresultStatus(r.get());
  if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) return status::success();
  return error{std::string("escrow store (postgresql): ") + what + ": " +
               one_line(PQresultErrorMessage(r.get()))};
}

// Create the schema in an empty database, or check an existing one's version.
status ensure_schema(PGconn* c) {
  if (auto st = exec_on(c, "BEGIN", "schema"); !st) return st;
  auto done = [&](status st) {
    if (!st) {
      exec_on(c, "ROLLBACK", "schema");
      return st;
    }
    return exec_on(c, "COMMIT", "schema");
  };
  if (auto st = exec_on(c, schema_lock, "schema lock"); !st) return done(st);
  if (auto st = exec_on(c, "CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL)",
                        "schema");
      !st)
    return done(st);
  pg_result q(PQexec(c, "SELECT max(version) FROM schema_version"));
  if (PQresultStatus(q.get()) != PGRES_TUPLES_OK)
    return done(error{"escrow store (postgresql): schema: " +
                      one_line(PQresultErrorMessage(q.get()))});
  int version = 0;
  if (PQntuples(q.get()) == 1 && !PQgetisnull(q.get(), 0, 0))
    version = std::atoi(PQgetvalue(q.get(), 0, 0));
  if (version > schema_version)
    return done(error{"escrow store (postgresql): schema version " + std::to_string(version) +
                      " is newer than this build's (" + std::to_string(schema_version) + ")"});
  if (version == 0) {
    if (auto st = exec_on(c, schema_v1, "schema v1"); !st) return done(st);
    if (auto st = exec_on(c, "INSERT INTO schema_version (version) VALUES (1)", "schema"); !st)
      return done(st);
  }
  return done(status::success());
}

void ignore_notice(void*, const char*) {}  // CREATE ... IF NOT EXISTS notices, say

}  // namespace

result<std::unique_ptr<escrow_store>> open_pg_store(const std::string& conninfo) {
  // connect_timeout first: a value in `conninfo` (expanded from dbname) overrides it.
  const char* keys[] = {"connect_timeout", "fallback_application_name", "dbname", nullptr};
  const char* values[] = {"10", "sealrelay-escrow", conninfo.c_str(), nullptr};
  conn_ptr conn(PQconnectdbParams(keys, values, 1));
  if (!conn) return error{"escrow store (postgresql): out of memory"};
  if (PQstatus(conn.get()) != CONNECTION_OK)
    return error{"escrow store (postgresql): cannot connect: " +
                 one_line(PQerrorMessage(conn.get()))};
  PQsetNoticeProcessor(conn.get(), ignore_notice, nullptr);
  if (auto st = ensure_schema(conn.get()); !st) return error{st.err()};
  auto store = std::make_unique<pg_store>(std::move(conn));
  if (auto st = store->prepare_all(); !st) return error{st.err()};
  return std::unique_ptr<escrow_store>(std::move(store));
}

}  // namespace sr::fallback
