// Reads a shard's RocksDB write-ahead log files before RocksDB replays them, to say what a
// recovery would drop: the intact prefix of each file, where and why it ends (a torn last record
// or a corruption), and how many records lie beyond that point. The format is RocksDB's
// (db/log_format.h): 32 KiB blocks of physical records, each with a masked CRC32C, a 16-bit
// length and a type (full, first, middle, last; "recyclable" types carry the log number too).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace citygate::storage::detail {

struct WalFileScan {
    std::filesystem::path path;
    std::uint64_t size = 0;
    std::uint64_t intact_bytes = 0;  // up to the end of the last whole record before a problem
    std::uint64_t records = 0;       // whole records in the intact prefix
    enum class End { clean, torn_tail, corrupt } end = End::clean;
    std::string problem;              // what ends the prefix, when not clean
    std::uint64_t records_after = 0;  // whole, intact records found after the problem
    // RocksDB sequence numbers (a record's payload is a WriteBatch: sequence, count, ...): the
    // newest in the intact prefix, and the first of the record the problem cuts short (when its
    // first fragment is readable); 0 when unknown.
    std::uint64_t last_sequence = 0;
    std::uint64_t dropped_sequence = 0;
};

// Scans every *.log file of `shard_dir`, oldest first. An unreadable file is reported as corrupt.
std::vector<WalFileScan> scan_wal(const std::filesystem::path& shard_dir);

}  // namespace citygate::storage::detail
