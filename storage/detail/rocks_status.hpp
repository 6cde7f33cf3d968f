// RocksDB statuses as storage statuses, naming the operation that failed.
#pragma once

#include <rocksdb/status.h>

#include <string>

#include "storage/status.hpp"

namespace citygate::storage::detail {

inline Status from_rocks(const rocksdb::Status& s, const char* what) {
    if (s.ok()) return Status::ok();
    auto code = s.IsCorruption() ? Status::Code::corruption
                : s.IsBusy()     ? Status::Code::busy
                                 : Status::Code::io_error;
    return Status::error(code, std::string(what) + ": " + s.ToString());
}

}  // namespace citygate::storage::detail
