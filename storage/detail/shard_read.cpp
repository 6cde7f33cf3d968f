// Shard reads: raw points and rollup buckets from the head and the chunks under one snapshot,
// and the operations figures (stats, disk bytes, RocksDB health) and checkpoints.
#include "storage/detail/shard.hpp"

#include <rocksdb/utilities/checkpoint.h>

#include <algorithm>
#include <iterator>
#include <optional>
#include <set>
#include <thread>

#include "storage/detail/keys.hpp"
#include "storage/detail/layout.hpp"
#include "storage/detail/rocks_status.hpp"
#include "storage/detail/samples.hpp"

namespace citygate::storage::detail {
namespace {

constexpr std::int64_t kHour = static_cast<std::int64_t>(Resolution::hour);

// RAII for a RocksDB snapshot.
class SnapshotGuard {
  public:
    explicit SnapshotGuard(rocksdb::DB* db) : db_(db), snapshot_(db->GetSnapshot()) {}
    ~SnapshotGuard() { db_->ReleaseSnapshot(snapshot_); }
    SnapshotGuard(const SnapshotGuard&) = delete;
    SnapshotGuard& operator=(const SnapshotGuard&) = delete;
    const rocksdb::Snapshot* get() const { return snapshot_; }

  private:
    rocksdb::DB* db_;
    const rocksdb::Snapshot* snapshot_;
};

// The head of one series in [start, end), charged to the budget: handed-off points, then pending
// ones, which is arrival order, so sort_keep_last() keeps the newest of duplicates. Runs under the
// head lock: charge() never waits.
template <typename State>
Status copy_head(const State& st, std::int64_t start, std::int64_t end, QueryBudget& budget,
                 std::vector<Sample>& out) {
    auto in_range = [&](const Sample& p) { return p.ts >= start && p.ts < end; };
    std::size_t n =
        static_cast<std::size_t>(std::count_if(st.pending.begin(), st.pending.end(), in_range));
    if (st.flushing) n += std::count_if(st.flushing->begin(), st.flushing->end(), in_range);
    if (n == 0) return Status::ok();
    if (auto s = budget.grow(out, n); !s.is_ok()) return s;
    if (st.flushing)
        std::copy_if(st.flushing->begin(), st.flushing->end(), std::back_inserter(out), in_range);
    std::copy_if(st.pending.begin(), st.pending.end(), std::back_inserter(out), in_range);
    return Status::ok();
}

// Frees a vector the budget paid for and gives its bytes back.
template <typename T>
void free_charged(std::vector<T>& v, QueryBudget& budget) {
    budget.release(v.capacity() * sizeof(T));
    std::vector<T>().swap(v);
}

}  // namespace

Status Shard::read_series(std::uint64_t id, std::int64_t start, std::int64_t end,
                          const rocksdb::ReadOptions& ro,
                          const std::vector<std::pair<std::int64_t, CfHandle>>& windows,
                          std::vector<Sample>& head, QueryBudget& budget,
                          std::vector<Sample>& out) const {
    std::vector<Sample> decoded;
    std::size_t decoded_charged = 0;
    for (auto& [ws, cf] : windows) {
        std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, cf.get()));
        RecordKey key;
        it->SeekForPrev(record_key(RecordKind::chunk, id, start));
        if (!it->Valid() || !parse_record_key(it->key().ToStringView(), key) ||
            key.kind != RecordKind::chunk || key.series_id != id) {
            it->Seek(record_key(RecordKind::chunk, id, start));
        }
        for (; it->Valid(); it->Next()) {
            if (!parse_record_key(it->key().ToStringView(), key) || key.kind != RecordKind::chunk ||
                key.series_id != id || key.ts >= end) {
                break;
            }
            if (auto s = budget.check(); !s.is_ok()) return s;
            decoded.clear();
            if (auto s = decode_chunk(it->value().ToStringView(), decoded); !s.is_ok()) return s;
            // A chunk's points are bounded by the chunk format: the scratch buffer is charged
            // once it has grown to hold one.
            if (decoded.capacity() > decoded_charged) {
                if (auto s = budget.charge((decoded.capacity() - decoded_charged) * sizeof(Sample));
                    !s.is_ok()) {
                    return s;
                }
                decoded_charged = decoded.capacity();
            }
            auto in_range = [&](const Sample& p) { return p.ts >= start && p.ts < end; };
            auto n =
                static_cast<std::size_t>(std::count_if(decoded.begin(), decoded.end(), in_range));
            if (auto s = budget.count_points(n); !s.is_ok()) return s;
            if (auto s = budget.grow(out, n); !s.is_ok()) return s;
            std::copy_if(decoded.begin(), decoded.end(), std::back_inserter(out), in_range);
        }
        if (!it->status().ok()) return from_rocks(it->status(), "read chunks");
    }
    budget.release(decoded_charged * sizeof(Sample));
    if (!head.empty()) {
        sort_keep_last(head);
        if (auto s = budget.count_points(head.size()); !s.is_ok()) return s;
        if (auto s = budget.charge((out.size() + head.size()) * sizeof(Sample)); !s.is_ok()) {
            return s;
        }
        std::vector<Sample> merged = merge_samples(out, head);
        free_charged(out, budget);
        free_charged(head, budget);
        out = std::move(merged);
    }
    return Status::ok();
}

Status Shard::read_raw(const std::vector<std::uint64_t>& ids, std::int64_t start, std::int64_t end,
                       QueryBudget& budget, std::vector<SeriesSamples>& out) const {
    std::shared_lock db_lock(db_mutex_);  // a read-only shard being reopened waits for us
    if (!db_) return Status::error(Status::Code::io_error, "shard closed after a failed reopen");
    if (auto s = budget.charge(ids.size() * sizeof(std::vector<Sample>)); !s.is_ok()) return s;
    std::vector<std::vector<Sample>> head(ids.size());
    std::optional<SnapshotGuard> snapshot;
    {
        // Snapshot and head copy under one lock: a flush moves points from the head into chunks
        // under the exclusive lock, so each point is seen exactly once.
        std::shared_lock lock(head_mutex_);
        snapshot.emplace(db_.get());
        for (std::size_t i = 0; i < ids.size(); ++i) {
            if (auto s = copy_head(states_[ids[i]], start, end, budget, head[i]); !s.is_ok()) {
                return s;
            }
        }
    }
    auto windows = windows_overlapping(start, end);
    rocksdb::ReadOptions ro;
    ro.snapshot = snapshot->get();
    ro.prefix_same_as_start = true;
    for (std::size_t i = 0; i < ids.size(); ++i) {
        if (options_.test_read_delay.count() > 0) {
            std::this_thread::sleep_for(options_.test_read_delay);
        }
        if (auto s = budget.check(); !s.is_ok()) return s;
        std::uint64_t id = ids[i];
        SeriesSamples series{id, index_.key(id), {}};
        if (auto s = budget.charge(series.key.capacity()); !s.is_ok()) return s;
        if (auto s = read_series(id, start, end, ro, windows, head[i], budget, series.samples);
            !s.is_ok()) {
            return s;
        }
        if (series.samples.empty()) continue;
        if (auto s = budget.grow(out, 1); !s.is_ok()) return s;
        out.push_back(std::move(series));
    }
    return Status::ok();
}

Status Shard::read_spans(const std::vector<std::uint64_t>& ids, const std::vector<TimeSpan>& spans,
                         QueryBudget& budget, std::vector<std::vector<Sample>>& out) const {
    std::shared_lock db_lock(db_mutex_);  // a read-only shard being reopened waits for us
    if (!db_) return Status::error(Status::Code::io_error, "shard closed after a failed reopen");
    out.assign(ids.size(), {});
    if (spans.empty()) return Status::ok();
    if (auto s = budget.charge(2 * ids.size() * sizeof(std::vector<Sample>)); !s.is_ok()) return s;
    const std::int64_t first = spans.front().start_ms;
    const std::int64_t last = spans.back().end_ms;
    // The span holding ts, if any (spans are sorted and disjoint).
    auto in_spans = [&spans](std::int64_t ts) {
        auto it =
            std::upper_bound(spans.begin(), spans.end(), ts,
                             [](std::int64_t t, const TimeSpan& s) { return t < s.start_ms; });
        return it != spans.begin() && ts < std::prev(it)->end_ms;
    };
    std::vector<std::vector<Sample>> head(ids.size());
    std::optional<SnapshotGuard> snapshot;
    {
        std::shared_lock lock(head_mutex_);
        snapshot.emplace(db_.get());
        for (std::size_t i = 0; i < ids.size(); ++i) {
            if (auto s = copy_head(states_[ids[i]], first, last, budget, head[i]); !s.is_ok()) {
                return s;
            }
            std::erase_if(head[i], [&](const Sample& p) { return !in_spans(p.ts); });
        }
    }
    rocksdb::ReadOptions ro;
    ro.snapshot = snapshot->get();
    ro.prefix_same_as_start = true;
    // One iterator per window for every series and span: each span costs a seek, not a new
    // iterator, and spans within one chunk decode it once.
    auto windows = windows_overlapping(first, last);
    std::vector<std::unique_ptr<rocksdb::Iterator>> iterators;
    for (auto& [ws, cf] : windows)
        iterators.emplace_back(db_->NewIterator(ro, cf.get()));
    std::vector<Sample> decoded;
    std::size_t decoded_charged = 0;
    for (std::size_t i = 0; i < ids.size(); ++i) {
        if (options_.test_read_delay.count() > 0) {
            std::this_thread::sleep_for(options_.test_read_delay);
        }
        if (auto s = budget.check(); !s.is_ok()) return s;
        const std::uint64_t id = ids[i];
        std::vector<Sample>& points = out[i];
        for (std::size_t w = 0; w < windows.size(); ++w) {
            const std::int64_t ws = windows[w].first;
            rocksdb::Iterator& it = *iterators[w];
            bool have_decoded = false;
            std::int64_t decoded_ts = 0;
            for (const TimeSpan& span : spans) {
                if (span.end_ms <= ws || span.start_ms >= ws + options_.window_ms) continue;
                RecordKey key;
                it.SeekForPrev(record_key(RecordKind::chunk, id, span.start_ms));
                if (!it.Valid() || !parse_record_key(it.key().ToStringView(), key) ||
                    key.kind != RecordKind::chunk || key.series_id != id) {
                    it.Seek(record_key(RecordKind::chunk, id, span.start_ms));
                }
                for (; it.Valid(); it.Next()) {
                    if (!parse_record_key(it.key().ToStringView(), key) ||
                        key.kind != RecordKind::chunk || key.series_id != id ||
                        key.ts >= span.end_ms) {
                        break;
                    }
                    if (!have_decoded || key.ts != decoded_ts) {
                        if (auto s = budget.check(); !s.is_ok()) return s;
                        decoded.clear();
                        if (auto s = decode_chunk(it.value().ToStringView(), decoded); !s.is_ok()) {
                            return s;
                        }
                        if (decoded.capacity() > decoded_charged) {
                            if (auto s = budget.charge((decoded.capacity() - decoded_charged) *
                                                       sizeof(Sample));
                                !s.is_ok()) {
                                return s;
                            }
                            decoded_charged = decoded.capacity();
                        }
                        have_decoded = true;
                        decoded_ts = key.ts;
                    }
                    auto in_span = [&](const Sample& p) {
                        return p.ts >= span.start_ms && p.ts < span.end_ms;
                    };
                    auto n = static_cast<std::size_t>(
                        std::count_if(decoded.begin(), decoded.end(), in_span));
                    if (auto s = budget.count_points(n); !s.is_ok()) return s;
                    if (auto s = budget.grow(points, n); !s.is_ok()) return s;
                    std::copy_if(decoded.begin(), decoded.end(), std::back_inserter(points),
                                 in_span);
                }
                if (!it.status().ok()) return from_rocks(it.status(), "read chunks");
            }
        }
        if (!head[i].empty()) {
            sort_keep_last(head[i]);
            if (auto s = budget.count_points(head[i].size()); !s.is_ok()) return s;
            if (auto s = budget.charge((points.size() + head[i].size()) * sizeof(Sample));
                !s.is_ok()) {
                return s;
            }
            std::vector<Sample> merged = merge_samples(points, head[i]);
            free_charged(points, budget);
            points = std::move(merged);
        }
        free_charged(head[i], budget);
    }
    budget.release(decoded_charged * sizeof(Sample));
    return Status::ok();
}

Status Shard::read_rollups(const std::vector<std::uint64_t>& ids, Resolution resolution,
                           std::int64_t start, std::int64_t end, QueryBudget& budget,
                           std::vector<std::vector<RollupBucket>>& out) const {
    std::shared_lock db_lock(db_mutex_);  // a read-only shard being reopened waits for us
    if (!db_) return Status::error(Status::Code::io_error, "shard closed after a failed reopen");
    const std::int64_t width = static_cast<std::int64_t>(resolution);
    if (auto s = budget.charge(ids.size() * (sizeof(std::vector<Sample>) + 1)); !s.is_ok()) {
        return s;
    }
    std::vector<std::vector<Sample>> head(ids.size());
    std::vector<bool> late_head(ids.size(), false);
    std::optional<SnapshotGuard> snapshot;
    std::set<std::int64_t> sealed;  // as of the snapshot (see sealed_windows_)
    {
        std::shared_lock lock(head_mutex_);
        snapshot.emplace(db_.get());
        if (resolution == Resolution::minute) sealed = sealed_windows_;
        for (std::size_t i = 0; i < ids.size(); ++i) {
            const auto& st = states_[ids[i]];
            if (auto s = copy_head(st, start, end, budget, head[i]); !s.is_ok()) return s;
            late_head[i] = st.pending_late || st.flushing_late;
        }
    }
    auto windows = windows_overlapping(start, end);
    rocksdb::ReadOptions ro;
    ro.snapshot = snapshot->get();
    ro.prefix_same_as_start = true;
    if (auto s = budget.charge(ids.size() * sizeof(std::vector<RollupBucket>)); !s.is_ok()) {
        return s;
    }
    out.assign(ids.size(), {});
    for (std::size_t i = 0; i < ids.size(); ++i) {
        if (options_.test_read_delay.count() > 0) {
            std::this_thread::sleep_for(options_.test_read_delay);
        }
        if (auto s = budget.check(); !s.is_ok()) return s;
        std::uint64_t id = ids[i];
        auto& buckets = out[i];
        if (late_head[i]) {
            // A late point may change a persisted bucket: bucket the raw points instead.
            std::vector<Sample> raw;
            if (auto s = read_series(id, start, end, ro, windows, head[i], budget, raw);
                !s.is_ok()) {
                return s;
            }
            if (auto s = budget.charge(raw.size() * sizeof(RollupBucket)); !s.is_ok()) return s;
            buckets = bucketize(raw.data(), raw.size(), width);
            free_charged(raw, budget);
            continue;
        }
        auto kind = resolution == Resolution::hour ? RecordKind::rollup_1h : RecordKind::rollup_1m;
        std::int64_t block_width = resolution == Resolution::hour ? options_.window_ms : kHour;
        std::vector<RollupBucket> block;
        std::size_t block_charged = 0;
        for (auto& [ws, cf] : windows) {
            if (sealed.contains(ws)) {
                if (auto s = derive_minutes(id, start, end, ws, cf, ro, budget, buckets);
                    !s.is_ok()) {
                    return s;
                }
                continue;
            }
            const std::size_t window_begin = buckets.size();
            std::vector<std::int64_t> hours_stored;  // minute blocks found, by hour
            std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, cf.get()));
            it->Seek(record_key(kind, id, floor_to(std::max(start, ws), block_width)));
            RecordKey key;
            for (; it->Valid(); it->Next()) {
                if (!parse_record_key(it->key().ToStringView(), key) || key.kind != kind ||
                    key.series_id != id || key.ts >= end) {
                    break;
                }
                if (auto s = budget.check(); !s.is_ok()) return s;
                block.clear();
                if (auto s = decode_rollups(it->value().ToStringView(), key.ts, width, block);
                    !s.is_ok()) {
                    return s;
                }
                if (block.capacity() > block_charged) {
                    if (auto s = budget.charge((block.capacity() - block_charged) *
                                               sizeof(RollupBucket));
                        !s.is_ok()) {
                        return s;
                    }
                    block_charged = block.capacity();
                }
                std::size_t n = 0;
                for (const auto& b : block)
                    n += b.start >= start && b.start < end ? 1 : 0;
                if (auto s = budget.count_points(n); !s.is_ok()) return s;
                if (auto s = budget.grow(buckets, n); !s.is_ok()) return s;
                for (const auto& b : block) {
                    if (b.start >= start && b.start < end) buckets.push_back(b);
                }
                if (resolution == Resolution::minute) hours_stored.push_back(key.ts);
            }
            if (!it->status().ok()) return from_rocks(it->status(), "read rollups");
            if (resolution == Resolution::minute) {
                // Hours without a block (a sparse series') come from the chunks.
                const auto stored_end = static_cast<std::ptrdiff_t>(buckets.size());
                if (auto s = derive_unstored_minutes(id, start, end, ws, cf, ro, hours_stored,
                                                     budget, buckets);
                    !s.is_ok()) {
                    return s;
                }
                std::inplace_merge(
                    buckets.begin() + static_cast<std::ptrdiff_t>(window_begin),
                    buckets.begin() + stored_end, buckets.end(),
                    [](const RollupBucket& a, const RollupBucket& b) { return a.start < b.start; });
            }
        }
        budget.release(block_charged * sizeof(RollupBucket));
        if (!head[i].empty()) {
            sort_keep_last(head[i]);
            if (auto s = budget.count_points(head[i].size()); !s.is_ok()) return s;
            if (auto s =
                    budget.charge((buckets.size() + 2 * head[i].size()) * sizeof(RollupBucket));
                !s.is_ok()) {
                return s;
            }
            merge_buckets(buckets, bucketize(head[i].data(), head[i].size(), width), false);
            free_charged(head[i], budget);
        }
    }
    return Status::ok();
}

ShardStats Shard::stats() const {
    ShardStats s;
    s.points_written = points_written_.load(std::memory_order_relaxed);
    s.points_rejected_late = rejected_late_.load(std::memory_order_relaxed);
    s.points_rejected_series_limit = rejected_limit_.load(std::memory_order_relaxed);
    s.points_rejected_invalid = rejected_invalid_.load(std::memory_order_relaxed);
    s.series = index_.live();
    s.batches = batches_.load(std::memory_order_relaxed);
    s.flushes = flushes_.load(std::memory_order_relaxed);
    s.windows_dropped = windows_dropped_.load(std::memory_order_relaxed);
    s.windows_sealed = windows_sealed_.load(std::memory_order_relaxed);
    s.queue_depth = reserved_.load(std::memory_order_relaxed);
    s.head_points = head_points_visible_.load(std::memory_order_relaxed);
    s.writer_busy_ns = busy_ns_.load(std::memory_order_relaxed);
    s.flusher_busy_ns = flusher_busy_ns_.load(std::memory_order_relaxed);
    return s;
}

std::uint64_t Shard::disk_bytes() const {
    std::uint64_t total = 0;
    std::shared_lock db_lock(db_mutex_);
    if (!db_) return 0;
    std::vector<CfHandle> cfs{default_cf_, index_cf_};
    {
        std::shared_lock lock(windows_mutex_);
        for (auto& [start, cf] : windows_)
            cfs.push_back(cf);
    }
    for (auto& cf : cfs) {
        std::uint64_t v = 0;
        if (db_->GetIntProperty(cf.get(), rocksdb::DB::Properties::kTotalSstFilesSize, &v)) {
            total += v;
        }
    }
    return total;
}

Status Shard::checkpoint(const std::filesystem::path& target) const {
    // A checkpoint flushes the memtables first: a write RocksDB must not be asked for on a
    // failed shard, nor on a volume under its reserve.
    if (failed()) return failure();
    if (read_only() || (options_.disk && options_.disk->full())) {
        return Status::error(Status::Code::busy,
                             "checkpoint refused: the data volume is under its free-space reserve");
    }
    std::shared_lock db_lock(db_mutex_);
    rocksdb::Checkpoint* raw = nullptr;
    if (auto s = rocksdb::Checkpoint::Create(db_.get(), &raw); !s.ok()) {
        return from_rocks(s, "checkpoint");
    }
    std::unique_ptr<rocksdb::Checkpoint> checkpoint(raw);
    // log_size_for_flush 0: memtables are flushed first, so the copy needs no WAL replay beyond
    // what it carries; the batch log keeps points not yet in chunks, as in the live shard.
    if (auto s = checkpoint->CreateCheckpoint(target.string(), 0); !s.ok()) {
        return from_rocks(s, "checkpoint");
    }
    return Status::ok();
}

RocksDbFigures Shard::rocksdb_figures() const {
    RocksDbFigures figures;
    std::shared_lock db_lock(db_mutex_);
    if (!db_) return figures;
    auto aggregated = [&](const std::string& property) {
        std::uint64_t value = 0;
        return db_->GetAggregatedIntProperty(property, &value) ? value : 0;
    };
    figures.memtable_bytes = aggregated(rocksdb::DB::Properties::kCurSizeAllMemTables);
    figures.pending_compaction_bytes =
        aggregated(rocksdb::DB::Properties::kEstimatePendingCompactionBytes);
    std::uint64_t value = 0;
    if (db_->GetIntProperty(rocksdb::DB::Properties::kActualDelayedWriteRate, &value)) {
        figures.delayed_write_rate = value;
    }
    if (db_->GetIntProperty(rocksdb::DB::Properties::kIsWriteStopped, &value)) {
        figures.writes_stopped = value != 0;
    }
    if (db_->GetIntProperty(rocksdb::DB::Properties::kNumRunningCompactions, &value)) {
        figures.running_compactions = value;
    }
    // Live WAL files are the *.log files of the shard's directory.
    std::error_code ec;
    auto path = shard_directory(options_.directory, options_.index);
    for (const auto& entry : std::filesystem::directory_iterator(path, ec)) {
        if (entry.path().extension() == ".log") {
            std::error_code size_ec;
            auto size = entry.file_size(size_ec);
            if (!size_ec) figures.wal_bytes += size;
        }
    }
    return figures;
}

}  // namespace citygate::storage::detail
