// The SQLite escrow store (the default: state_dir/escrow.db): one file in WAL mode with
// secure_delete on (wiped bytes do not linger in free pages), a schema version table, and
// prepared statements. Several processes may open one file; writers wait up to 5 s.
#pragma once
#include <memory>
#include <string>

#include "sealrelay/fallback/escrow_store.hh"
#include "sealrelay/util/result.hh"

namespace sr::fallback {

// Open the store at `path`, creating it (mode 0600) and its schema when absent; an error
// when the file cannot be opened or was written by a newer schema version.
result<std::unique_ptr<escrow_store>> open_sqlite_store(const std::string& path);

}  // namespace sr::fallback
