// Shard flush: the writer hands its head to the flush thread, which turns it into chunks and
// rollups (rewriting chunks and recomputing rollups for late data) and deletes the log it covers.
#include "storage/detail/shard.hpp"

#include <algorithm>
#include <future>

#include "storage/detail/keys.hpp"
#include "storage/detail/rocks_status.hpp"
#include "storage/detail/samples.hpp"
#include "storage/detail/thread_cpu.hpp"

namespace citygate::storage::detail {
namespace {

// What the flush reads: each series' newest chunk and rollup blocks, once a head, to rewrite
// them. A block it reads is stale by the next flush (the rewrite is in the memtable), so caching
// it would only push out blocks queries reuse, and grow the cache, and RSS, for nothing.
rocksdb::ReadOptions flush_reads() {
    rocksdb::ReadOptions ro;
    ro.fill_cache = false;
    return ro;
}

constexpr std::int64_t kMinute = static_cast<std::int64_t>(Resolution::minute);
constexpr std::int64_t kHour = static_cast<std::int64_t>(Resolution::hour);

}  // namespace

Status Shard::run_on_flusher(std::function<Status()> task) {
    auto promise = std::make_shared<std::promise<Status>>();
    auto future = promise->get_future();
    {
        std::lock_guard lock(flush_mutex_);
        flusher_tasks_.push_back([promise, task = std::move(task)] { promise->set_value(task()); });
    }
    flush_cv_.notify_all();
    return future.get();
}

Status Shard::flush_now() {
    return run_on_writer([this] { return flush_sync(); });
}

Status Shard::compact_all() {
    if (failed()) return failure();
    if (writes_held()) {
        return Status::error(Status::Code::busy,
                             "compaction refused: the data volume is under its free-space reserve");
    }
    if (auto s = flush_now(); !s.is_ok()) return s;
    rocksdb::FlushOptions fo;
    std::vector<CfHandle> cfs{default_cf_, index_cf_};
    {
        std::shared_lock lock(windows_mutex_);
        for (auto& [start, cf] : windows_)
            cfs.push_back(cf);
    }
    rocksdb::CompactRangeOptions co;
    co.bottommost_level_compaction = rocksdb::BottommostLevelCompaction::kForceOptimized;
    for (auto& cf : cfs) {
        if (auto s = db_->Flush(fo, cf.get()); !s.ok()) {
            fail(from_rocks(s, "flush"));
            return failure();
        }
        if (auto s = db_->CompactRange(co, cf.get(), nullptr, nullptr); !s.ok()) {
            fail(from_rocks(s, "compact"));
            return failure();
        }
    }
    return Status::ok();
}

void Shard::hand_off() {
    last_flush_ = std::chrono::steady_clock::now();
    if (head_points_ == 0) return;
    auto job = std::make_unique<FlushJob>();
    job->series.reserve(dirty_.size());
    // A series replayed from the log at open is not loaded yet: learn what is on disk now, while
    // the flush thread is idle, so it never writes chunks of a series the writer is reading.
    for (std::uint64_t id : dirty_) {
        auto& st = states_[id];
        if (!st.loaded) {
            if (auto s = load_state(id, st); !s.is_ok()) return;  // retried at the next hand off
        }
    }
    {
        std::unique_lock lock(head_mutex_);
        for (std::uint64_t id : dirty_) {
            auto& st = states_[id];
            st.last_head_points =
                static_cast<std::uint32_t>(std::min<std::size_t>(st.pending.size(), UINT32_MAX));
            job->bytes += st.pending.capacity() * sizeof(Sample);
            auto samples = std::make_shared<const std::vector<Sample>>(std::move(st.pending));
            job->series.push_back({id, samples, st.pending_sorted});
            st.flushing = std::move(samples);
            st.flushing_late = st.pending_late;
            st.pending = {};
            st.pending_sorted = true;
            st.pending_late = false;
            st.sealed_max_ts = std::max(st.sealed_max_ts, st.max_ts);
        }
    }
    job->log_end = next_log_sequence_;
    job->points = head_points_;
    dirty_.clear();
    head_points_ = 0;
    {
        std::lock_guard lock(flush_mutex_);
        flush_job_ = std::move(job);
        flush_failed_ = false;
    }
    flush_cv_.notify_all();
}

Status Shard::flush_sync() {
    std::unique_lock lock(flush_mutex_);
    flush_done_cv_.wait(lock, [&] { return !flush_job_ || flush_failed_; });
    if (flush_job_) return flush_status_;  // an earlier head could not be flushed
    lock.unlock();
    hand_off();
    lock.lock();
    flush_done_cv_.wait(lock, [&] { return !flush_job_ || flush_failed_; });
    return flush_job_ ? flush_status_ : Status::ok();
}

void Shard::run_flusher() {
    std::unique_lock lock(flush_mutex_);
    for (;;) {
        // Waking every 200 ms drives retention and retries a failed job.
        flush_cv_.wait_for(lock, std::chrono::milliseconds(200), [&] {
            return flusher_stop_ || !flusher_tasks_.empty() || (flush_job_ && !flush_failed_);
        });
        if (flusher_stop_ && flusher_tasks_.empty()) break;
        std::deque<std::function<void()>> tasks;
        tasks.swap(flusher_tasks_);
        FlushJob* job = flush_job_.get();  // only this thread resets it
        lock.unlock();
        const std::uint64_t woke = thread_cpu_ns();
        if (job) {
            // Flushing a head writes its chunks before it deletes its log: held while free space
            // is under half the reserve; a failed shard writes nothing.
            Status status;
            if (failed()) {
                status = failure();
            } else if (read_only() || (options_.disk && options_.disk->critical())) {
                status = Status::error(Status::Code::busy,
                                       "head flush held: the data volume is under half its "
                                       "free-space reserve");
            } else {
                status = write_job(*job);
            }
            lock.lock();
            flush_status_ = status;
            flush_failed_ = !status.is_ok();
            if (status.is_ok()) flush_job_.reset();
            lock.unlock();
            flush_done_cv_.notify_all();
        }
        for (auto& task : tasks)
            task();
        if (options_.retention_ms > 0) drop_expired_windows();
        if (options_.seal_windows) seal_due_windows();
        flusher_busy_ns_.fetch_add(thread_cpu_ns() - woke, std::memory_order_relaxed);
        lock.lock();
    }
}

Status Shard::read_last_chunk(std::uint64_t id, ChunkState& st) const {
    rocksdb::ReadOptions ro = flush_reads();
    ro.prefix_same_as_start = true;
    std::vector<std::pair<std::int64_t, CfHandle>> windows;
    {
        std::shared_lock lock(windows_mutex_);
        windows.assign(windows_.rbegin(), windows_.rend());
    }
    for (auto& [start, cf] : windows) {
        std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, cf.get()));
        it->SeekForPrev(record_key(RecordKind::chunk, id, INT64_MAX));
        RecordKey key;
        if (it->Valid() && parse_record_key(it->key().ToStringView(), key) &&
            key.kind == RecordKind::chunk && key.series_id == id) {
            ChunkHeader header;
            if (auto s = decode_chunk_header(it->value().ToStringView(), header); !s.is_ok()) {
                return s;
            }
            st.persisted_max_ts = header.last_ts;
            st.last_chunk_ts = key.ts;
            st.last_chunk_points = header.count;
            break;
        }
        if (!it->status().ok()) return from_rocks(it->status(), "load series");
    }
    st.loaded = true;
    return Status::ok();
}

// Flush thread: the job's points into chunks and rollups, and its log records deleted, in one
// atomic write; then the handed-off points leave the head, under the lock readers take their
// snapshot in.
Status Shard::write_job(const FlushJob& job) {
    rocksdb::WriteBatch batch;
    Status status;
    for (const auto& series : job.series) {
        if (chunk_states_.size() <= series.id) chunk_states_.resize(series.id + 1);
        auto& cs = chunk_states_[series.id];
        if (!cs.loaded) status = read_last_chunk(series.id, cs);
        if (status.is_ok())
            status = flush_series(series.id, *series.samples, series.sorted, cs, batch);
        if (!status.is_ok()) break;
    }
    if (status.is_ok()) {
        auto d = batch.DeleteRange(default_cf_.get(), log_key(0), log_key(job.log_end));
        if (!d.ok()) status = from_rocks(d, "batch");
    }
    rocksdb::WriteOptions wo;
    wo.sync = options_.fsync == FsyncPolicy::batch;
    std::unique_lock lock(head_mutex_);
    if (status.is_ok()) {
        status = from_rocks(db_->Write(wo, &batch), "flush write");
        if (!status.is_ok()) {
            fail(status);
        } else if (options_.disk) {
            options_.disk->consumed(batch.GetDataSize());
        }
    }
    if (!status.is_ok()) {
        lock.unlock();
        for (const auto& series : job.series) {
            if (series.id < chunk_states_.size()) chunk_states_[series.id].loaded = false;
        }
        return status;
    }
    for (const auto& series : job.series) {
        auto& st = states_[series.id];
        st.flushing.reset();
        st.flushing_late = false;
    }
    lock.unlock();
    head_points_visible_.fetch_sub(job.points, std::memory_order_relaxed);
    head_bytes_.fetch_sub(job.bytes, std::memory_order_relaxed);
    flushes_.fetch_add(1, std::memory_order_relaxed);
    return Status::ok();
}

// Writes one series' pending points into chunks and rollups. The in-memory state it updates
// (persisted_max_ts, last chunk) describes the batch about to be written; if that write fails the
// state is reloaded from disk before the next use.
Status Shard::flush_series(std::uint64_t id, const std::vector<Sample>& samples, bool sorted,
                           ChunkState& st, rocksdb::WriteBatch& batch) {
    std::vector<Sample> pending = samples;
    if (!sorted) sort_keep_last(pending);
    const std::int64_t cutoff = retention_cutoff();
    const std::size_t max_chunk = options_.target_chunk_points * 2;
    st.loaded = false;  // reset below on success of building the batch
    std::size_t i = 0;
    while (i < pending.size()) {
        std::int64_t ws = floor_to(pending[i].ts, options_.window_ms);
        std::size_t j = i;
        while (j < pending.size() && pending[j].ts < ws + options_.window_ms)
            ++j;
        std::vector<Sample> part(pending.begin() + static_cast<std::ptrdiff_t>(i),
                                 pending.begin() + static_cast<std::ptrdiff_t>(j));
        i = j;
        if (ws + options_.window_ms <= cutoff) continue;  // its window is already gone
        auto cf_result = ensure_window(ws);
        if (!cf_result.is_ok()) return cf_result.status();
        CfHandle cf = cf_result.value();
        const std::int64_t persisted_before = st.persisted_max_ts;

        std::vector<Sample> chunk_points;  // what gets (re)written as chunks
        std::vector<Sample> rollup_points;
        bool replace_rollups = false;
        // A sealed window keeps no 1-minute blocks to merge into: its hour buckets are
        // recomputed from all of the touched hours' points, as for late data.
        const bool sealed = window_sealed(ws);
        if (part.front().ts > st.persisted_max_ts && !sealed) {
            // Append: extend the newest chunk while it is small, so chunks stay big enough to
            // compress well even when the head is flushed often.
            chunk_points = part;
            rollup_points = std::move(part);
            if (st.last_chunk_ts != INT64_MIN && st.last_chunk_ts >= ws &&
                st.last_chunk_points < options_.target_chunk_points) {
                std::string value;
                auto key = record_key(RecordKind::chunk, id, st.last_chunk_ts);
                auto g = db_->Get(flush_reads(), cf.get(), key, &value);
                if (g.ok()) {
                    std::vector<Sample> old;
                    if (auto s = decode_chunk(value, old); !s.is_ok()) return s;
                    old.insert(old.end(), chunk_points.begin(), chunk_points.end());
                    chunk_points = std::move(old);
                } else if (!g.IsNotFound()) {
                    return from_rocks(g, "read chunk");
                }
            }
        } else {
            // Late or duplicate samples: rewrite every chunk overlapping the hours they touch,
            // and recompute those hours' rollups from the merged raw points.
            std::int64_t lo = floor_to(part.front().ts, kHour);
            std::int64_t hi = floor_to(part.back().ts, kHour) + kHour;
            std::vector<Sample> old;
            rocksdb::ReadOptions ro = flush_reads();
            ro.prefix_same_as_start = true;
            std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, cf.get()));
            it->SeekForPrev(record_key(RecordKind::chunk, id, lo));
            RecordKey key;
            if (!it->Valid() || !parse_record_key(it->key().ToStringView(), key) ||
                key.kind != RecordKind::chunk || key.series_id != id) {
                it->Seek(record_key(RecordKind::chunk, id, lo));
            }
            for (; it->Valid(); it->Next()) {
                if (!parse_record_key(it->key().ToStringView(), key) ||
                    key.kind != RecordKind::chunk || key.series_id != id || key.ts >= hi) {
                    break;
                }
                ChunkHeader header;
                if (auto s = decode_chunk_header(it->value().ToStringView(), header); !s.is_ok()) {
                    return s;
                }
                if (header.last_ts < lo) continue;
                if (auto s = decode_chunk(it->value().ToStringView(), old); !s.is_ok()) return s;
                auto d = batch.Delete(cf.get(), it->key());
                if (!d.ok()) return from_rocks(d, "batch");
            }
            if (!it->status().ok()) return from_rocks(it->status(), "read chunks");
            chunk_points = merge_samples(old, part);
            for (const auto& p : chunk_points) {
                if (p.ts >= lo && p.ts < hi) rollup_points.push_back(p);
            }
            replace_rollups = true;
        }
        for (std::size_t c = 0; c < chunk_points.size(); c += max_chunk) {
            std::size_t n = std::min(max_chunk, chunk_points.size() - c);
            auto key = record_key(RecordKind::chunk, id, chunk_points[c].ts);
            auto p = batch.Put(cf.get(), key, encode_chunk(&chunk_points[c], n));
            if (!p.ok()) return from_rocks(p, "batch");
            if (chunk_points[c + n - 1].ts >= st.persisted_max_ts) {
                st.last_chunk_ts = chunk_points[c].ts;
                st.last_chunk_points = n;
            }
        }
        st.persisted_max_ts = std::max(st.persisted_max_ts, chunk_points.back().ts);
        if (auto s = write_rollups(id, ws, cf, rollup_points, replace_rollups, sealed,
                                   persisted_before, batch);
            !s.is_ok()) {
            return s;
        }
    }
    st.loaded = true;
    return Status::ok();
}

namespace {

std::size_t bucket_points(const std::vector<RollupBucket>& buckets) {
    std::size_t points = 0;
    for (const auto& b : buckets)
        points += b.count;
    return points;
}

}  // namespace

bool Shard::minute_blocks_pay(std::size_t points, std::size_t buckets) const {
    return points >= buckets * options_.minute_block_min_points;
}

// 1-minute buckets of each touched hour go into that hour's block (merged with what is there,
// or replacing it when `raw` covers the hours completely); each touched hour's 1-hour bucket is
// then recomputed from its minutes, so the two resolutions never disagree. An hour gets a block
// only where the flush that first writes it finds the series dense enough (minute_blocks_pay);
// once written, later flushes keep it up to date, and an hour first written without one stays
// without (a block, where there is one, covers every point of its hour). A sealed window
// (`sealed`, with `replace`) gets no minute blocks, only its hour buckets.
Status Shard::write_rollups(std::uint64_t id, std::int64_t window, const CfHandle& cf,
                            const std::vector<Sample>& raw, bool replace, bool sealed,
                            std::int64_t persisted_before, rocksdb::WriteBatch& batch) {
    if (raw.empty()) return Status::ok();
    auto minutes = bucketize(raw.data(), raw.size(), kMinute);
    // Appended points decide by the series' rate over all of them (the first minutes of an
    // hour may be few); points rewriting whole hours by each hour's own.
    const bool dense = minute_blocks_pay(raw.size(), minutes.size());
    auto window_key = record_key(RecordKind::rollup_1h, id, window);
    std::vector<RollupBucket> window_block;
    {
        std::string value;
        auto g = db_->Get(flush_reads(), cf.get(), window_key, &value);
        if (g.ok()) {
            if (auto s = decode_rollups(value, window, kHour, window_block); !s.is_ok()) return s;
        } else if (!g.IsNotFound()) {
            return from_rocks(g, "read rollup");
        }
    }
    std::vector<RollupBucket> hours;
    std::size_t i = 0;
    while (i < minutes.size()) {
        std::int64_t hour = floor_to(minutes[i].start, kHour);
        std::size_t j = i;
        while (j < minutes.size() && minutes[j].start < hour + kHour)
            ++j;
        std::vector<RollupBucket> block(minutes.begin() + static_cast<std::ptrdiff_t>(i),
                                        minutes.begin() + static_cast<std::ptrdiff_t>(j));
        i = j;
        auto key = record_key(RecordKind::rollup_1m, id, hour);
        RollupBucket h;
        h.start = hour;
        // Appended points of an hour that has points on disk: its block, if it has one, takes
        // them; else its hour bucket does.
        const bool continued = !replace && persisted_before >= hour;
        bool stored = false;
        if (continued) {
            std::string value;
            auto g = db_->Get(flush_reads(), cf.get(), key, &value);
            if (g.ok()) {
                std::vector<RollupBucket> old;
                if (auto s = decode_rollups(value, hour, kMinute, old); !s.is_ok()) return s;
                merge_buckets(old, block, false);
                block = std::move(old);
                stored = true;
            } else if (!g.IsNotFound()) {
                return from_rocks(g, "read rollup");
            } else {
                auto earlier = std::lower_bound(
                    window_block.begin(), window_block.end(), hour,
                    [](const RollupBucket& b, std::int64_t start) { return b.start < start; });
                if (earlier != window_block.end() && earlier->start == hour) h = *earlier;
            }
        } else if (!sealed &&
                   (replace ? minute_blocks_pay(bucket_points(block), block.size()) : dense)) {
            stored = true;
        } else if (replace && !sealed) {
            // Rewritten from all of its points: an hour that had a block and is now sparse
            // loses it.
            auto d = batch.Delete(cf.get(), key);
            if (!d.ok()) return from_rocks(d, "batch");
        }
        if (stored && !sealed) {
            auto p = batch.Put(cf.get(), key, encode_rollups(block, hour, kMinute));
            if (!p.ok()) return from_rocks(p, "batch");
        } else {
            round_like_codec(block);  // what a reader computes from the chunks
        }
        for (const auto& m : block)
            h.merge_later(m);
        hours.push_back(h);
    }
    merge_buckets(window_block, hours, true);
    auto p = batch.Put(cf.get(), window_key, encode_rollups(window_block, window, kHour));
    if (!p.ok()) return from_rocks(p, "batch");
    return Status::ok();
}

}  // namespace citygate::storage::detail
