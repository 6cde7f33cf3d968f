// RocksDB WAL block format reader (no payload decoding: only framing and checksums).
#include "storage/detail/wal_scan.hpp"

#include <rocksdb/file_checksum.h>

#include <algorithm>
#include <array>
#include <fstream>

namespace citygate::storage::detail {
namespace {

constexpr std::size_t kBlockSize = 32768;
constexpr std::size_t kHeaderSize = 7;             // crc32c (4), length (2), type (1)
constexpr std::size_t kRecyclableHeaderSize = 11;  // ... and the log number (4)
constexpr std::uint32_t kMaskDelta = 0xa282ead8u;

enum Type : unsigned char {
    zero = 0,
    full = 1,
    first = 2,
    middle = 3,
    last = 4,
    recyclable_full = 5,
    recyclable_last = 8,
    set_compression = 9,  // a metadata record (WAL compression), no user data
};

unsigned base_type(unsigned type) {
    return type >= recyclable_full && type <= recyclable_last ? type - (recyclable_full - full)
                                                              : type;
}

std::uint32_t unmask(std::uint32_t masked) {
    std::uint32_t rot = masked - kMaskDelta;
    return (rot >> 17) | (rot << 15);
}

// RocksDB's own CRC32C (hardware-accelerated) through its public file checksum API, which
// returns the value as four big-endian bytes. Boost.CRC's table-driven one made a start with
// 87 MB of WAL (2 shards) 0.35 s slower than without the scan.
std::uint32_t crc32c(const unsigned char* data, std::size_t n) {
    static const auto factory = rocksdb::GetFileChecksumGenCrc32cFactory();
    auto generator = factory->CreateFileChecksumGenerator(rocksdb::FileChecksumGenContext{});
    generator->Update(reinterpret_cast<const char*>(data), n);
    generator->Finalize();
    std::string sum = generator->GetChecksum();
    if (sum.size() != 4) return 0;
    return std::uint32_t(static_cast<unsigned char>(sum[0])) << 24 |
           std::uint32_t(static_cast<unsigned char>(sum[1])) << 16 |
           std::uint32_t(static_cast<unsigned char>(sum[2])) << 8 |
           std::uint32_t(static_cast<unsigned char>(sum[3]));
}

// The sequence number and count a WriteBatch payload starts with (both little-endian).
bool batch_sequence(const unsigned char* payload, std::size_t n, std::uint64_t& sequence,
                    std::uint32_t& count) {
    if (n < 12) return false;
    sequence = 0;
    count = 0;
    for (int i = 7; i >= 0; --i)
        sequence = sequence << 8 | payload[i];
    for (int i = 11; i >= 8; --i)
        count = count << 8 | payload[i];
    return true;
}

WalFileScan scan_file(const std::filesystem::path& path) {
    WalFileScan scan;
    scan.path = path;
    std::error_code ec;
    scan.size = std::filesystem::file_size(path, ec);
    std::ifstream in(path, std::ios::binary);
    if (ec || !in) {
        scan.end = WalFileScan::End::corrupt;
        scan.problem = "cannot read " + path.filename().string();
        return scan;
    }
    std::vector<unsigned char> block(kBlockSize);
    std::uint64_t block_start = 0;
    bool in_record = false;           // between a first and its last fragment
    bool damaged = false;             // a problem was met; counting what follows
    bool resync = false;              // after a problem: skip fragments until a record starts
    std::uint64_t open_sequence = 0;  // of the record whose first fragment was read
    std::uint32_t open_count = 0;
    auto problem = [&](WalFileScan::End end, std::string what, std::uint64_t at) {
        if (!damaged) {
            damaged = true;
            scan.end = end;
            scan.problem = std::move(what) + " at byte " + std::to_string(at) + " of " +
                           path.filename().string();
        }
        in_record = false;
        resync = true;
    };
    while (block_start < scan.size) {
        const std::size_t len =
            static_cast<std::size_t>(std::min<std::uint64_t>(kBlockSize, scan.size - block_start));
        in.read(reinterpret_cast<char*>(block.data()), static_cast<std::streamsize>(len));
        if (static_cast<std::size_t>(in.gcount()) != len) {
            problem(WalFileScan::End::corrupt, "read error", block_start);
            break;
        }
        const bool final_block = block_start + len >= scan.size;
        std::size_t pos = 0;
        while (pos + kHeaderSize <= len) {
            const unsigned char* h = block.data() + pos;
            const std::uint64_t at = block_start + pos;
            std::uint32_t masked = std::uint32_t(h[0]) | std::uint32_t(h[1]) << 8 |
                                   std::uint32_t(h[2]) << 16 | std::uint32_t(h[3]) << 24;
            std::size_t length = std::size_t(h[4]) | std::size_t(h[5]) << 8;
            unsigned type = h[6];
            if (type == zero && length == 0 && masked == 0) {
                // Zeros: preallocated space past the last write, or zeroed data. Only the former
                // when nothing but zeros follows in this block (later blocks are checked as they
                // come).
                bool all_zero = std::all_of(block.begin() + static_cast<std::ptrdiff_t>(pos),
                                            block.begin() + static_cast<std::ptrdiff_t>(len),
                                            [](unsigned char c) { return c == 0; });
                if (!all_zero) problem(WalFileScan::End::corrupt, "zeroed record header", at);
                pos = len;
                break;
            }
            const bool recyclable = type >= recyclable_full && type <= recyclable_last;
            const std::size_t header = recyclable ? kRecyclableHeaderSize : kHeaderSize;
            if (pos + header + length > len) {
                if (final_block && len < kBlockSize) {
                    std::uint64_t sequence = 0;
                    std::uint32_t count = 0;
                    const bool starts = base_type(type) == full || base_type(type) == first;
                    if (!damaged && starts &&
                        batch_sequence(h + header, len - pos - std::min(len - pos, header),
                                       sequence, count)) {
                        scan.dropped_sequence = sequence;
                    } else if (!damaged && in_record) {
                        scan.dropped_sequence = open_sequence;
                    }
                    problem(WalFileScan::End::torn_tail,
                            "incomplete last record (" + std::to_string(len - pos) + " of " +
                                std::to_string(header + length) + " bytes)",
                            at);
                } else {
                    problem(WalFileScan::End::corrupt, "record length past its block", at);
                }
                pos = len;
                break;
            }
            // The checksum covers the type byte, the log number of a recyclable record, and the
            // payload.
            std::uint32_t expected = unmask(masked);
            std::uint32_t actual = crc32c(h + 6, header - 6 + length);
            pos += header + length;
            if (actual != expected) {
                problem(WalFileScan::End::corrupt, "checksum mismatch", at);
                continue;
            }
            const unsigned char* payload = h + header;
            std::uint64_t sequence = 0;
            std::uint32_t count = 0;
            switch (base_type(type)) {
                case full:
                case set_compression:
                    if (in_record) problem(WalFileScan::End::corrupt, "record without its end", at);
                    resync = false;
                    if (damaged) {
                        ++scan.records_after;
                    } else {
                        ++scan.records;
                        scan.intact_bytes = block_start + pos;
                        if (base_type(type) == full &&
                            batch_sequence(payload, length, sequence, count)) {
                            scan.last_sequence = sequence + (count > 0 ? count - 1 : 0);
                        }
                    }
                    break;
                case first:
                    if (in_record) problem(WalFileScan::End::corrupt, "record without its end", at);
                    in_record = true;
                    resync = false;
                    open_sequence = 0;
                    open_count = 0;
                    if (batch_sequence(payload, length, sequence, count)) {
                        open_sequence = sequence;
                        open_count = count;
                    }
                    break;
                case middle:
                    if (!in_record && !resync) {
                        problem(WalFileScan::End::corrupt, "fragment without its start", at);
                    }
                    break;
                case last:
                    if (!in_record) {
                        if (!resync) {
                            problem(WalFileScan::End::corrupt, "fragment without its start", at);
                        }
                        break;
                    }
                    in_record = false;
                    if (damaged) {
                        ++scan.records_after;
                    } else {
                        ++scan.records;
                        scan.intact_bytes = block_start + pos;
                        if (open_sequence > 0) {
                            scan.last_sequence =
                                open_sequence + (open_count > 0 ? open_count - 1 : 0);
                        }
                    }
                    break;
                default:
                    problem(WalFileScan::End::corrupt,
                            "unknown record type " + std::to_string(type), at);
            }
        }
        // A block's last bytes too short for a header are zero padding; in a file's last, short
        // block they are the start of a header cut short.
        if (pos < len && final_block && len < kBlockSize) {
            bool all_zero = std::all_of(block.begin() + static_cast<std::ptrdiff_t>(pos),
                                        block.begin() + static_cast<std::ptrdiff_t>(len),
                                        [](unsigned char c) { return c == 0; });
            if (!all_zero) {
                if (!damaged && in_record) scan.dropped_sequence = open_sequence;
                problem(WalFileScan::End::torn_tail, "incomplete last record header",
                        block_start + pos);
            }
        }
        block_start += len;
    }
    if (in_record && !damaged) {
        scan.dropped_sequence = open_sequence;
        problem(WalFileScan::End::torn_tail, "incomplete last record (its end is missing)",
                scan.size);
    }
    if (!damaged) scan.intact_bytes = scan.size;
    return scan;
}

}  // namespace

std::vector<WalFileScan> scan_wal(const std::filesystem::path& shard_dir) {
    std::vector<std::filesystem::path> logs;
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator(shard_dir, ec)) {
        if (entry.path().extension() == ".log") logs.push_back(entry.path());
    }
    // Names are zero-padded log numbers: lexical order is age.
    std::sort(logs.begin(), logs.end());
    std::vector<WalFileScan> scans;
    for (const auto& path : logs)
        scans.push_back(scan_file(path));
    return scans;
}

}  // namespace citygate::storage::detail
