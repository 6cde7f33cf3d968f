// RocksDB key layouts. Inside a time-window column family every key is a kind byte, the series id
// and a timestamp, both big-endian, so one series' range is one contiguous, ordered scan.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "storage/detail/coding.hpp"

namespace citygate::storage::detail {

// Column families of a shard besides the default one (the batch log): the series index, and one
// per time window named by the window's start in ms.
inline const std::string kIndexCf = "index";
inline const std::string kWindowPrefix = "window-";

// Kinds of records in a window column family.
enum class RecordKind : char {
    chunk = 'c',      // compressed raw points; timestamp = first point of the chunk
    rollup_1m = 'm',  // the 1-minute buckets of one hour; timestamp = hour start
    rollup_1h = 'h',  // the 1-hour buckets of one window; timestamp = window start
    // Present once the window is sealed (series id 0, timestamp = window start): its 1-minute
    // blocks are gone, and 1-minute buckets are computed from its chunks (shard_seal.cpp).
    sealed = 's',
};

constexpr std::size_t kRecordKeySize = 17;

inline std::string record_key(RecordKind kind, std::uint64_t series_id, std::int64_t ts) {
    std::string key;
    key.reserve(kRecordKeySize);
    key.push_back(static_cast<char>(kind));
    put_u64_be(key, series_id);
    put_i64_be(key, ts);
    return key;
}

struct RecordKey {
    RecordKind kind;
    std::uint64_t series_id;
    std::int64_t ts;
};

inline bool parse_record_key(std::string_view key, RecordKey& out) {
    if (key.size() != kRecordKeySize) return false;
    out.kind = static_cast<RecordKind>(key[0]);
    out.series_id = get_u64_be(key.data() + 1);
    out.ts = get_i64_be(key.data() + 9);
    return true;
}

// The batch log lives in the default column family: one record per group-committed batch,
// deleted (as a range) once its points are flushed into chunks.
inline std::string log_key(std::uint64_t sequence) {
    std::string key = "L";
    put_u64_be(key, sequence);
    return key;
}
constexpr std::size_t kLogKeySize = 9;

// The series index column family: id -> canonical series key.
inline std::string index_key(std::uint64_t series_id) {
    std::string key = "s";
    put_u64_be(key, series_id);
    return key;
}

// Floor division for window and bucket starts; timestamps before 1970 are negative.
inline std::int64_t floor_to(std::int64_t ts, std::int64_t width) {
    std::int64_t q = ts / width;
    if (ts % width != 0 && ts < 0) --q;
    return q * width;
}

}  // namespace citygate::storage::detail
