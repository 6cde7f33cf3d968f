// Shard deletes (the admin delete_series API): points of chosen series in a time range, their
// rollups, and series left without points, so a series poisoned by a bad clock can be repaired.
#include <algorithm>

#include "storage/detail/keys.hpp"
#include "storage/detail/rocks_status.hpp"
#include "storage/detail/samples.hpp"
#include "storage/detail/shard.hpp"

namespace citygate::storage::detail {
namespace {

constexpr std::int64_t kMinute = static_cast<std::int64_t>(Resolution::minute);
constexpr std::int64_t kHour = static_cast<std::int64_t>(Resolution::hour);

// Deletes every key of `kind` of series `id` in `cf` (one window) into `batch`.
Status delete_records(rocksdb::DB& db, rocksdb::ColumnFamilyHandle* cf, RecordKind kind,
                      std::uint64_t id, rocksdb::WriteBatch& batch) {
    rocksdb::ReadOptions ro;
    ro.prefix_same_as_start = true;
    std::unique_ptr<rocksdb::Iterator> it(db.NewIterator(ro, cf));
    RecordKey key;
    for (it->Seek(record_key(kind, id, INT64_MIN)); it->Valid(); it->Next()) {
        if (!parse_record_key(it->key().ToStringView(), key) || key.kind != kind ||
            key.series_id != id) {
            break;
        }
        if (auto s = batch.Delete(cf, it->key()); !s.ok()) return from_rocks(s, "batch");
    }
    return from_rocks(it->status(), "read for delete");
}

}  // namespace

Status Shard::delete_points(const std::vector<std::uint64_t>& ids, std::int64_t start,
                            std::int64_t end, DeleteResult& result) {
    if (ids.empty() || end <= start) return Status::ok();
    return run_on_writer([&]() -> Status {
        // A delete writes: not on a shard in its error state, nor while the volume is full.
        if (failed()) return failure();
        if (writes_held()) {
            return Status::error(Status::Code::busy,
                                 "shard " + std::to_string(options_.index) +
                                     " takes no writes now (data volume full or read-only)");
        }
        // Everything into chunks first: the head and a running flush hold no point of these
        // series afterwards, and the writer (this thread) commits nothing until we are done.
        if (auto s = flush_sync(); !s.is_ok()) return s;
        std::vector<bool> removed(ids.size(), false);
        // The chunks and chunk states belong to the flush thread; it is idle now (no job) but
        // for retention, which runs on that thread too.
        auto status = run_on_flusher([&]() -> Status {
            for (std::size_t i = 0; i < ids.size(); ++i) {
                std::uint64_t deleted = 0;
                bool left = true;
                auto s = delete_series_points(ids[i], start, end, deleted, left);
                if (ids[i] < chunk_states_.size()) chunk_states_[ids[i]].loaded = false;
                if (!s.is_ok()) return s;
                removed[i] = !left;
                result.points += deleted;
            }
            return Status::ok();
        });
        // The writer's view of each series (newest point, what is sealed) is learnt again from
        // the chunks that are left at its next write; also after a failure, which may have
        // rewritten some series.
        {
            std::unique_lock lock(head_mutex_);
            for (std::size_t i = 0; i < ids.size(); ++i) {
                if (ids[i] >= states_.size()) continue;
                auto& st = states_[ids[i]];
                st.max_ts = INT64_MIN;
                st.sealed_max_ts = INT64_MIN;
                st.loaded = false;
            }
        }
        for (std::size_t i = 0; i < ids.size(); ++i) {
            if (!removed[i]) continue;
            if (index_.erase(ids[i])) {
                {
                    std::unique_lock lock(head_mutex_);
                    states_[ids[i]].erased = true;
                }
                ++result.series_removed;
                if (options_.total_series) {
                    options_.total_series->fetch_sub(1, std::memory_order_relaxed);
                }
            }
        }
        report_index_memory();
        result.series += ids.size();
        return status;
    });
}

Status Shard::delete_series_points(std::uint64_t id, std::int64_t start, std::int64_t end,
                                   std::uint64_t& deleted, bool& left) {
    std::vector<std::pair<std::int64_t, CfHandle>> windows;
    {
        std::shared_lock lock(windows_mutex_);
        windows.assign(windows_.begin(), windows_.end());
    }
    rocksdb::WriteBatch batch;
    left = false;
    rocksdb::ReadOptions ro;
    ro.prefix_same_as_start = true;
    const std::size_t max_chunk = options_.target_chunk_points * 2;
    for (auto& [ws, cf] : windows) {
        // The whole window's points of this series: a window is a day, a few thousand points.
        std::vector<Sample> points;
        {
            std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, cf.get()));
            RecordKey key;
            for (it->Seek(record_key(RecordKind::chunk, id, INT64_MIN)); it->Valid(); it->Next()) {
                if (!parse_record_key(it->key().ToStringView(), key) ||
                    key.kind != RecordKind::chunk || key.series_id != id) {
                    break;
                }
                if (auto s = decode_chunk(it->value().ToStringView(), points); !s.is_ok()) {
                    return s;
                }
            }
            if (!it->status().ok()) return from_rocks(it->status(), "read chunks");
        }
        if (points.empty()) continue;
        sort_keep_last(points);
        std::vector<Sample> kept;
        kept.reserve(points.size());
        for (const auto& p : points) {
            if (p.ts < start || p.ts >= end) kept.push_back(p);
        }
        if (!kept.empty()) left = true;
        if (kept.size() == points.size()) continue;  // nothing of this window goes
        deleted += points.size() - kept.size();
        // Rewrite the window: its chunks and both rollup resolutions from the points kept.
        for (RecordKind kind : {RecordKind::chunk, RecordKind::rollup_1m, RecordKind::rollup_1h}) {
            if (auto s = delete_records(*db_, cf.get(), kind, id, batch); !s.is_ok()) return s;
        }
        for (std::size_t c = 0; c < kept.size(); c += max_chunk) {
            std::size_t n = std::min(max_chunk, kept.size() - c);
            auto p = batch.Put(cf.get(), record_key(RecordKind::chunk, id, kept[c].ts),
                               encode_chunk(&kept[c], n));
            if (!p.ok()) return from_rocks(p, "batch");
        }
        if (kept.empty()) continue;
        const bool sealed = window_sealed(ws);
        auto minutes = bucketize(kept.data(), kept.size(), kMinute);
        std::vector<RollupBucket> hours;
        for (std::size_t i = 0; i < minutes.size();) {
            std::int64_t hour = floor_to(minutes[i].start, kHour);
            std::size_t j = i;
            while (j < minutes.size() && minutes[j].start < hour + kHour)
                ++j;
            std::vector<RollupBucket> block(minutes.begin() + static_cast<std::ptrdiff_t>(i),
                                            minutes.begin() + static_cast<std::ptrdiff_t>(j));
            i = j;
            // A sealed window keeps no minute blocks, nor does a sparse series: their minutes
            // come from the chunks.
            std::size_t points = 0;
            for (const auto& m : block)
                points += m.count;
            if (!sealed && minute_blocks_pay(points, block.size())) {
                auto p = batch.Put(cf.get(), record_key(RecordKind::rollup_1m, id, hour),
                                   encode_rollups(block, hour, kMinute));
                if (!p.ok()) return from_rocks(p, "batch");
            } else {
                round_like_codec(block);
            }
            RollupBucket h;
            h.start = hour;
            for (const auto& m : block)
                h.merge_later(m);
            hours.push_back(h);
        }
        auto p = batch.Put(cf.get(), record_key(RecordKind::rollup_1h, id, ws),
                           encode_rollups(hours, ws, kHour));
        if (!p.ok()) return from_rocks(p, "batch");
    }
    if (!left) {
        auto d = batch.Delete(index_cf_.get(), index_key(id));
        if (!d.ok()) return from_rocks(d, "batch");
    }
    if (batch.Count() == 0) return Status::ok();
    rocksdb::WriteOptions wo;
    wo.sync = options_.fsync == FsyncPolicy::batch;
    // Under the head lock, as a flush: readers take their snapshot under it, so they see the
    // series either before or after.
    std::unique_lock lock(head_mutex_);
    auto status = from_rocks(db_->Write(wo, &batch), "delete write");
    // As for client writes: after a failed write RocksDB must not be asked to write again.
    if (!status.is_ok()) fail(status);
    return status;
}

}  // namespace citygate::storage::detail
