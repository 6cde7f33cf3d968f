// Sealed windows: once no point can reach a window any more as ordinary data (it ended, and the
// out-of-order window after it passed), the flush thread drops its 1-minute rollup blocks and
// compacts it into the bottommost level. The blocks were 40% of a window's bytes and hold nothing
// its chunks do not: 1-minute buckets of a sealed window are computed from the chunks, through
// the block codec, so readers get the very buckets the blocks held. 1-hour blocks stay (a
// window's worth of them is a few bytes a series).
#include <algorithm>

#include "storage/detail/keys.hpp"
#include "storage/detail/rocks_status.hpp"
#include "storage/detail/shard.hpp"

namespace citygate::storage::detail {
namespace {

constexpr std::int64_t kMinute = static_cast<std::int64_t>(Resolution::minute);
constexpr std::int64_t kHour = static_cast<std::int64_t>(Resolution::hour);

std::string sealed_key(std::int64_t window) {
    return record_key(RecordKind::sealed, 0, window);
}

// The smallest multiple of `width` at or after ts (ts is inside a window, far from overflow).
std::int64_t ceil_to(std::int64_t ts, std::int64_t width) {
    std::int64_t f = floor_to(ts, width);
    return f == ts ? f : f + width;
}

}  // namespace

bool Shard::window_sealed(std::int64_t start) const {
    std::shared_lock lock(head_mutex_);
    return sealed_windows_.contains(start);
}

Status Shard::load_sealed_windows() {
    std::set<std::int64_t> sealed;
    for (auto& [start, cf] : windows_) {
        std::string value;
        auto g = db_->Get({}, cf.get(), sealed_key(start), &value);
        if (g.ok()) {
            sealed.insert(start);
        } else if (!g.IsNotFound()) {
            return from_rocks(g, "read seal marker");
        }
    }
    std::unique_lock lock(head_mutex_);
    windows_sealed_.store(sealed.size(), std::memory_order_relaxed);
    sealed_windows_ = std::move(sealed);
    return Status::ok();
}

void Shard::seal_due_windows() {
    // A seal writes (and compacts): not on a failed or read-only shard, nor on a volume under
    // half its reserve (compaction needs room for the rewritten files).
    if (failed() || read_only() || (options_.disk && options_.disk->critical())) return;
    const std::int64_t now = options_.clock();
    std::vector<std::pair<std::int64_t, CfHandle>> due;
    {
        std::shared_lock lock(windows_mutex_);
        for (auto& [start, cf] : windows_) {
            // Overflow-safe form of start + window + out_of_order <= now.
            if (start > now - options_.window_ms - options_.out_of_order_ms) break;
            if (!window_sealed(start)) due.emplace_back(start, cf);
        }
    }
    for (auto& [start, cf] : due) {
        if (auto s = seal_window(start, cf); !s.is_ok()) return;  // failed(): no more writes
    }
}

Status Shard::seal_window(std::int64_t start, const CfHandle& cf) {
    rocksdb::WriteBatch batch;
    // Every key of the window is a kind byte then 16 bytes: ["m", "n") is every 1-minute block.
    auto d = batch.DeleteRange(cf.get(), std::string(1, static_cast<char>(RecordKind::rollup_1m)),
                               std::string(1, static_cast<char>(RecordKind::rollup_1m) + 1));
    if (!d.ok()) return from_rocks(d, "batch");
    auto p = batch.Put(cf.get(), sealed_key(start), {});
    if (!p.ok()) return from_rocks(p, "batch");
    rocksdb::WriteOptions wo;
    wo.sync = options_.fsync == FsyncPolicy::batch;
    {
        std::unique_lock lock(head_mutex_);
        auto status = from_rocks(db_->Write(wo, &batch), "seal write");
        if (!status.is_ok()) {
            fail(status);
            return status;
        }
        sealed_windows_.insert(start);
    }
    if (options_.disk) options_.disk->consumed(batch.GetDataSize());
    // Rewrite the window once into the bottommost level: the range tombstone and the chunks'
    // older versions (each head flush extended the newest chunk) go, and the data is ZSTD.
    rocksdb::CompactRangeOptions co;
    co.bottommost_level_compaction = rocksdb::BottommostLevelCompaction::kForceOptimized;
    co.exclusive_manual_compaction = false;
    if (auto s = db_->CompactRange(co, cf.get(), nullptr, nullptr); !s.ok()) {
        // The seal itself is written; a compaction that did not run only costs bytes, and
        // RocksDB's own compactions get to the window later.
        if (!s.IsShutdownInProgress() && !s.IsManualCompactionPaused()) {
            fail(from_rocks(s, "compact sealed window"));
            return failure();
        }
    }
    windows_sealed_.fetch_add(1, std::memory_order_relaxed);
    return Status::ok();
}

Status Shard::derive_minutes(std::uint64_t id, std::int64_t start, std::int64_t end,
                             std::int64_t ws, const CfHandle& cf, const rocksdb::ReadOptions& ro,
                             QueryBudget& budget, std::vector<RollupBucket>& out) const {
    // Buckets starting in [lo, hi) hold the points in [ceil(lo), ceil(hi)); whole hours of them
    // are read, as a block held a whole hour: the block codec's exponent depends on all of it.
    const std::int64_t lo = std::max(start, ws);
    const std::int64_t hi = std::min(end, ws + options_.window_ms);
    if (lo >= hi) return Status::ok();
    const std::int64_t from = std::max(ws, floor_to(ceil_to(lo, kMinute), kHour));
    const std::int64_t to = std::min(ws + options_.window_ms, ceil_to(ceil_to(hi, kMinute), kHour));
    std::vector<Sample> raw, no_head;
    std::vector<std::pair<std::int64_t, CfHandle>> window{{ws, cf}};
    if (auto s = read_series(id, from, to, ro, window, no_head, budget, raw); !s.is_ok()) return s;
    if (auto s = budget.charge(raw.size() * sizeof(RollupBucket)); !s.is_ok()) return s;
    std::vector<RollupBucket> block;
    for (std::size_t i = 0; i < raw.size();) {
        const std::int64_t hour = floor_to(raw[i].ts, kHour);
        std::size_t j = i;
        while (j < raw.size() && raw[j].ts < hour + kHour)
            ++j;
        block = bucketize(raw.data() + i, j - i, kMinute);
        i = j;
        // As the flush stored them: sums of decimals are the exact decimal sum, not the
        // accumulated double.
        round_like_codec(block);
        std::size_t n = 0;
        for (const auto& b : block)
            n += b.start >= start && b.start < end ? 1 : 0;
        if (auto s = budget.grow(out, n); !s.is_ok()) return s;
        for (const auto& b : block) {
            if (b.start >= start && b.start < end) out.push_back(b);
        }
    }
    budget.release(raw.size() * sizeof(RollupBucket) + raw.capacity() * sizeof(Sample));
    return Status::ok();
}

Status Shard::derive_unstored_minutes(std::uint64_t id, std::int64_t start, std::int64_t end,
                                      std::int64_t ws, const CfHandle& cf,
                                      const rocksdb::ReadOptions& ro,
                                      const std::vector<std::int64_t>& hours_stored,
                                      QueryBudget& budget, std::vector<RollupBucket>& out) const {
    const std::int64_t lo = std::max(start, ws);
    const std::int64_t hi = std::min(end, ws + options_.window_ms);
    // Runs of consecutive hours with no stored block, each read in one go.
    std::size_t next_stored = 0;
    std::int64_t run = INT64_MIN;
    for (std::int64_t hour = floor_to(lo, kHour); hour < hi; hour += kHour) {
        while (next_stored < hours_stored.size() && hours_stored[next_stored] < hour)
            ++next_stored;
        const bool stored = next_stored < hours_stored.size() && hours_stored[next_stored] == hour;
        if (!stored && run == INT64_MIN) run = hour;
        if (stored && run != INT64_MIN) {
            if (auto s = derive_minutes(id, std::max(lo, run), hour, ws, cf, ro, budget, out);
                !s.is_ok()) {
                return s;
            }
            run = INT64_MIN;
        }
    }
    if (run == INT64_MIN) return Status::ok();
    return derive_minutes(id, std::max(lo, run), hi, ws, cf, ro, budget, out);
}

}  // namespace citygate::storage::detail
