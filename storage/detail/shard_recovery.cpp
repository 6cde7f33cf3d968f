// Shard WAL recovery checks: what RocksDB's point-in-time replay would drop from a damaged log,
// whether any of it was acknowledged, and the refusal that makes the operator decide.
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <bit>
#include <cstring>
#include <optional>

#include "storage/detail/shard.hpp"
#include "storage/detail/wal_scan.hpp"

namespace citygate::storage::detail {
namespace {

constexpr const char* kAckedFile = "CITYGATE-ACKED";

std::optional<std::uint64_t> read_acked(const std::filesystem::path& path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return std::nullopt;
    unsigned char bytes[8];
    ssize_t n = ::pread(fd, bytes, sizeof bytes, 0);
    ::close(fd);
    if (n != static_cast<ssize_t>(sizeof bytes)) return std::nullopt;
    std::uint64_t v = 0;
    for (int i = 7; i >= 0; --i)
        v = v << 8 | bytes[i];
    return v;
}

}  // namespace

Status Shard::check_wal(const std::filesystem::path& path) {
    wal_recovery_ = WalRecovery{};
    wal_recovery_.shard = options_.index;
    auto scans = scan_wal(path);
    std::size_t first = scans.size();
    for (std::size_t i = 0; i < scans.size(); ++i) {
        if (scans[i].end != WalFileScan::End::clean) {
            first = i;
            break;
        }
    }
    if (first == scans.size()) return Status::ok();  // every log whole
    // Point-in-time recovery replays up to the first problem and nothing after it, in this
    // log or a later one.
    WalRecovery& r = wal_recovery_;
    const WalFileScan& damaged = scans[first];
    r.problem = damaged.problem;
    r.dropped_bytes = damaged.size - damaged.intact_bytes;
    r.dropped_records = 1 + damaged.records_after;
    r.corrupt = damaged.end == WalFileScan::End::corrupt;
    for (std::size_t i = first + 1; i < scans.size(); ++i) {
        r.dropped_bytes += scans[i].size;
        r.dropped_records += scans[i].records + scans[i].records_after;
        if (scans[i].records + scans[i].records_after > 0) r.corrupt = true;  // not a tail
    }
    std::uint64_t last_intact = 0;
    for (std::size_t i = 0; i <= first; ++i)
        last_intact = std::max(last_intact, scans[i].last_sequence);
    auto acked = read_acked(path / kAckedFile);
    if (acked) {
        // The record cut short held an acknowledged write when its first sequence is not newer
        // than the newest acknowledged; without its first fragment, when what is left ends
        // before the newest acknowledged.
        if (damaged.dropped_sequence > 0) {
            r.acknowledged_lost = damaged.dropped_sequence <= *acked;
        } else {
            r.acknowledged_lost = last_intact < *acked;
        }
    }
    r.torn_tail = !r.corrupt && !r.acknowledged_lost;
    if (!r.damaged()) return Status::ok();  // a torn tail: a write in flight at a crash
    if (options_.wal_recovery == WalRecoveryPolicy::point_in_time) {
        r.accepted = true;
        return Status::ok();
    }
    std::string what = r.acknowledged_lost ? "acknowledged writes would be lost" : "corrupted";
    return Status::error(
        Status::Code::corruption,
        "shard " + std::to_string(options_.index) + ": the write-ahead log is damaged (" +
            r.problem + "); replaying it would drop " + std::to_string(r.dropped_bytes) +
            " bytes in " + std::to_string(r.dropped_records) + " records, " + what +
            ". Nothing was changed. Restore a checkpoint (citygate --restore), or start with "
            "--recover=point-in-time to accept the loss and go on (it is then reported in "
            "/metrics, /readyz and the status page)");
}

void Shard::open_acked(const std::filesystem::path& directory) {
    close_acked();
    int fd = ::open((directory / kAckedFile).c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return;
    // The file's block is written once with pwrite, which reports a full volume as an error:
    // a first store into a mapped page with no block behind it would be a SIGBUS instead.
    unsigned char bytes[8] = {};
    const auto current = read_acked(directory / kAckedFile);
    for (int i = 0; current && i < 8; ++i)
        bytes[i] = static_cast<unsigned char>(*current >> (8 * i));
    void* mapped = MAP_FAILED;
    if (::pwrite(fd, bytes, sizeof bytes, 0) == static_cast<ssize_t>(sizeof bytes)) {
        mapped = ::mmap(nullptr, sizeof bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    }
    ::close(fd);
    if (mapped != MAP_FAILED) acked_ = static_cast<std::uint64_t*>(mapped);
}

void Shard::close_acked() {
    if (acked_) ::munmap(acked_, sizeof *acked_);
    acked_ = nullptr;
}

void Shard::note_acknowledged() {
    if (!acked_) return;
    static_assert(std::endian::native == std::endian::little, "CITYGATE-ACKED is little-endian");
    // A store into the file's page in the page cache: a process crash keeps it, as the WAL
    // write before it, without a system call per commit (the pwrite it replaced was one of the
    // commit's three). No msync: after a power loss it may be older than the WAL, which only
    // weakens the check, never makes it refuse a log that is whole. One aligned 8-byte store,
    // so a crash never leaves half of it.
    std::atomic_ref<std::uint64_t>(*acked_).store(db_->GetLatestSequenceNumber(),
                                                  std::memory_order_relaxed);
}

}  // namespace citygate::storage::detail
