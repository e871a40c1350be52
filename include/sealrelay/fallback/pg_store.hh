// The PostgreSQL escrow store: for several relay nodes sharing one portal. Same schema
// (with a schema_version table) and the same bytes as the SQLite store; statements are
// prepared once per connection; each change is one transaction that locks its row
// (SELECT ... FOR UPDATE), so two nodes never both spend one try.
#pragma once
#include <memory>
#include <string>

#include "sealrelay/fallback/escrow_store.hh"
#include "sealrelay/util/result.hh"

namespace sr::fallback {

// Connect with a libpq `conninfo` ("host=... port=... dbname=..."), creating the schema when
// absent; an error when the server cannot be reached or has a newer schema version.
result<std::unique_ptr<escrow_store>> open_pg_store(const std::string& conninfo);

}  // namespace sr::fallback
