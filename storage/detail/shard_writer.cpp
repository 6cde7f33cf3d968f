// Shard write path: the bounded input queue, the writer thread's loop, and the group commit
// that puts a whole queue's points into one WAL write before firing their callbacks.
#include "storage/detail/shard.hpp"

#include <future>

#include "storage/detail/coding.hpp"
#include "storage/detail/keys.hpp"
#include "storage/detail/rocks_status.hpp"
#include "storage/detail/thread_cpu.hpp"

namespace citygate::storage::detail {

bool Shard::reserve_once(std::size_t n) {
    std::size_t before = reserved_.fetch_add(n);
    // A write bigger than the whole queue is let in when the queue is empty, so it can progress.
    if (before == 0 || before + n <= options_.queue_capacity) return true;
    reserved_.fetch_sub(n);
    return false;
}

bool Shard::try_reserve(std::size_t n) {
    if (reserve_once(n)) return true;
    // Refused: say a producer waits for room, then look again. A commit that frees room after
    // the second look sees the flag (both are sequentially consistent), so the producer is told;
    // one that freed it before, the second look finds. Commits tell nobody while nobody waits:
    // telling every I/O thread after every batch was two wake-ups per message at 10k msg/s.
    room_wanted_.store(true);
    return reserve_once(n);
}

void Shard::release_room(std::size_t n) {
    reserved_.fetch_sub(n);
    if (room_wanted_.exchange(false) && options_.on_space_available) {
        options_.on_space_available();
    }
}

void Shard::unreserve(std::size_t n) {
    reserved_.fetch_sub(n);
}

void Shard::push(QueuedWrite write, bool wake, std::vector<Point>* refill) {
    {
        std::lock_guard lock(queue_mutex_);
        queue_.push_back(std::move(write));
        if (refill && !spare_points_.empty()) {
            *refill = std::move(spare_points_.back());
            spare_points_.pop_back();
        }
    }
    if (wake) queue_cv_.notify_one();
}

void Shard::recycle(std::vector<QueuedWrite>& work) {
    {
        std::lock_guard lock(queue_mutex_);
        for (auto& write : work) {
            if (spare_points_.size() >= kSpareVectors) break;
            if (write.points.capacity() > kSpareVectorPoints) continue;
            write.points.clear();
            spare_points_.push_back(std::move(write.points));
        }
    }
    // Callbacks and admissions go here, outside the lock.
    work.clear();
    // A burst of small writes grows the vector to queue_capacity entries; that is not kept.
    if (work.capacity() > kKeptWrites) std::vector<QueuedWrite>().swap(work);
}

void Shard::commit_queued() {
    if (commit_queued_here()) return;
    // A writer gathering a batch wakes by itself when its delay ends; waking it per write would
    // cost the wake-ups the delay is there to save.
    if (!gathering_.load() || reserved_.load() >= kGatherPoints) queue_cv_.notify_one();
}

void Shard::gather(std::unique_lock<std::mutex>& lock) {
    if (options_.fsync != FsyncPolicy::batch || options_.commit_delay.count() <= 0) return;
    if (stop_ || !tasks_.empty() || queue_.empty() || reserved_.load() >= kGatherPoints) return;
    gathering_.store(true);
    queue_cv_.wait_for(lock, options_.commit_delay, [&] {
        return stop_ || !tasks_.empty() || reserved_.load() >= kGatherPoints;
    });
    gathering_.store(false);
}

bool Shard::ready_series(const Point& point) const {
    if (point.ref.valid()) {
        const std::uint64_t id = point.ref.id;
        return id < states_.size() && states_[id].loaded && !states_[id].erased;
    }
    auto id = index_.find(point.series);
    return id && states_[*id].loaded;
}

bool Shard::commit_queued_here() {
    if (options_.fsync != FsyncPolicy::none) return false;
    std::unique_lock commit_lock(commit_mutex_, std::try_to_lock);
    // The writer or another producer is committing: the writer takes what is queued next.
    if (!commit_lock.owns_lock()) return false;
    if (failed() || writes_held()) return false;
    {
        std::lock_guard lock(queue_mutex_);
        if (queue_.empty()) return true;  // someone committed it already
        if (!tasks_.empty() || stop_) return false;
        std::size_t points = 0;
        for (const auto& write : queue_) {
            points += write.points.size();
            for (const auto& point : write.points) {
                // A new series is admitted against limits and written to the index, an
                // unloaded one reads its last chunk from disk: both are the writer's.
                if (!ready_series(point)) return false;
            }
        }
        // A full head is the writer's to hand off (and to wait for the flush before it).
        if (head_points_ + points >= options_.head_flush_points) return false;
        here_work_.swap(queue_);
    }
    if (!commit(here_work_, true)) {
        // RocksDB would stall: back to the front of the queue, for the writer.
        std::lock_guard lock(queue_mutex_);
        queue_.insert(queue_.begin(), std::make_move_iterator(here_work_.begin()),
                      std::make_move_iterator(here_work_.end()));
        here_work_.clear();
        return false;
    }
    recycle(here_work_);
    last_write_ = std::chrono::steady_clock::now();
    memtables_dirty_ = true;
    return true;
}

Status Shard::run_on_writer(std::function<Status()> task) {
    auto promise = std::make_shared<std::promise<Status>>();
    auto future = promise->get_future();
    {
        std::lock_guard lock(queue_mutex_);
        tasks_.push_back([promise, task = std::move(task)] { promise->set_value(task()); });
    }
    queue_cv_.notify_one();
    return future.get();
}

bool Shard::writes_held() const {
    return read_only() || (options_.disk && options_.disk->full());
}

void Shard::fail_writes(std::vector<QueuedWrite>& work, const Status& status) {
    std::size_t total = 0;
    for (auto& w : work)
        total += w.points.size();
    // As in commit: room first, so a producer retrying from a callback finds it.
    release_room(total);
    for (auto& w : work)
        w.complete(WriteResult{.status = status});
}

void Shard::run() {
    std::vector<QueuedWrite> work;
    std::deque<std::function<void()>> tasks;
    for (;;) {
        bool stopping, held;
        {
            std::unique_lock lock(queue_mutex_);
            queue_cv_.wait_for(lock, std::chrono::milliseconds(200), [&] {
                return stop_ || !tasks_.empty() || (!queue_.empty() && !writes_held());
            });
            gather(lock);
        }
        // Everything below owns the shard's writer state; a producer committing on its own
        // thread (commit_queued_here) waits for none of it: it queues instead. Taken before the
        // queue, so no producer commits between the queue's take and its commit (per shard,
        // writes commit in the order they came).
        std::lock_guard commit_lock(commit_mutex_);
        {
            std::lock_guard lock(queue_mutex_);
            // Held writes stay queued, their room reserved (so producers stay pushed back),
            // until space returns; a failed shard or a close takes them to fail them.
            held = writes_held() && !failed();
            if (!held || stop_) work.swap(queue_);
            tasks.swap(tasks_);
            stopping = stop_;
        }
        const std::uint64_t woke = thread_cpu_ns();
        if (!work.empty()) {
            if (failed()) {
                fail_writes(work, failure());
            } else if (held) {
                fail_writes(work, Status::error(Status::Code::io_error,
                                                "storage closed while the data volume was under "
                                                "its free-space reserve: not written"));
            } else {
                commit(work);
                last_write_ = std::chrono::steady_clock::now();
                memtables_dirty_ = true;
            }
            recycle(work);
        }
        for (auto& task : tasks)
            task();
        tasks.clear();

        auto now = std::chrono::steady_clock::now();
        const bool full = head_points_ >= options_.head_flush_points;
        // A failed or read-only shard writes nothing more, head flushes included.
        const bool may_flush = !failed() && !read_only();
        if (may_flush &&
            (full || (head_points_ > 0 && now - last_flush_ >= options_.head_flush_interval))) {
            std::unique_lock lock(flush_mutex_);
            if (full && flush_job_ && !flush_failed_) {
                // Backpressure: a full head waits for the running flush rather than letting a
                // third one pile up, so a shard holds at most about twice head_flush_points.
                // Waiting costs no CPU time, so busy_ns_ does not count it.
                flush_done_cv_.wait(lock, [&] { return !flush_job_ || flush_failed_; });
            }
            // A failed job stays with the flush thread, which retries it (the head and the log
            // are untouched); this head waits for it.
            if (!flush_job_) {
                lock.unlock();
                hand_off();
            }
        }
        if (may_flush && !held) flush_idle_memtables(now);
        busy_ns_.fetch_add(thread_cpu_ns() - woke, std::memory_order_relaxed);
        if (stopping) {
            std::lock_guard lock(queue_mutex_);
            if (queue_.empty() && tasks_.empty()) break;
        }
    }
    // Closing: put the head into chunks, so the next open replays no log, then RocksDB's
    // memtables into SST files, so it replays no WAL either: with 4 M series the first start
    // after a close spent as long recovering the WAL (and flushing what it recovered) as loading
    // the index. A failure leaves either in the WAL, which is as durable; after a failed head
    // flush RocksDB is not asked to write again.
    // A failed shard, a read-only one and a volume under its reserve write nothing at close:
    // what was acknowledged is in the WAL already.
    if (failed() || writes_held()) return;
    std::lock_guard commit_lock(commit_mutex_);
    if (flush_sync().is_ok()) {
        if (auto s = flush_memtables(); !s.is_ok()) fail(s);
    }
}

void Shard::flush_idle_memtables(std::chrono::steady_clock::time_point now) {
    if (options_.memtable_idle_flush.count() <= 0 || !memtables_dirty_ || head_points_ > 0 ||
        now - last_write_ < options_.memtable_idle_flush) {
        return;
    }
    {
        // The head flush writes chunks and rollups: wait until it has.
        std::lock_guard lock(flush_mutex_);
        if (flush_job_) return;
    }
    memtables_dirty_ = false;
    std::vector<rocksdb::ColumnFamilyHandle*> families{default_cf_.get(), index_cf_.get()};
    {
        std::shared_lock lock(windows_mutex_);
        for (const auto& [start, cf] : windows_)
            families.push_back(cf.get());
    }
    rocksdb::FlushOptions options;
    options.wait = false;  // RocksDB's background threads write the SST files
    options.allow_write_stall = true;
    auto status = db_->Flush(options, families);
    if (!status.ok()) memtables_dirty_ = true;  // tried again at the next idle check
}

Status Shard::flush_memtables() {
    std::vector<rocksdb::ColumnFamilyHandle*> families{default_cf_.get(), index_cf_.get()};
    {
        std::shared_lock lock(windows_mutex_);
        for (const auto& [start, cf] : windows_)
            families.push_back(cf.get());
    }
    rocksdb::FlushOptions options;
    options.wait = true;
    return from_rocks(db_->Flush(options, families), "flush at close");
}

bool Shard::commit(std::vector<QueuedWrite>& work, bool here) {
    // Each queued write's part of the outcome; its status is the batch's.
    auto& parts = commit_parts_;
    parts.assign(work.size(), WriteResult{});
    auto& staged = commit_staged_;
    staged.clear();
    std::size_t total = 0;
    for (auto& w : work)
        total += w.points.size();
    staged.reserve(total);

    auto& batch = commit_batch_;
    batch.Clear();
    auto& log = commit_log_;
    log.clear();
    log.reserve(total * 14);
    std::size_t new_series = 0;
    commit_admissions_.clear();
    commit_undo_.clear();
    const std::int64_t cutoff = retention_cutoff();
    std::int64_t prev_ts = 0;
    Status status;

    for (std::size_t w = 0; w < work.size() && status.is_ok(); ++w) {
        for (auto& point : work[w].points) {
            std::string_view key = point.series;
            std::uint64_t id = SeriesRef::none;
            if (point.ref.valid() && point.ref.id < states_.size() &&
                !states_[point.ref.id].erased) {
                id = point.ref.id;
            } else if (point.ref.valid()) {
                // Deleted since the producer resolved it: the same key, created anew. (An id
                // never handed out has no key: refused as invalid below.)
                key = index_.erased_key(point.ref.id);
            }
            if (id == SeriesRef::none) {
                if (auto found = index_.find(key)) id = *found;
            }
            if (id == SeriesRef::none) {
                SeriesLimit refused = admit_series(work[w]);
                if (refused != SeriesLimit::none) {
                    ++parts[w].rejected_series_limit;
                    ++parts[w].rejected_by_limit[static_cast<std::size_t>(refused)];
                    continue;
                }
                auto added = index_.add(key, id);
                if (added != SeriesIndex::AddResult::added) {
                    unadmit_series(work[w].admission.get());
                    if (added == SeriesIndex::AddResult::limit_reached) {
                        ++parts[w].rejected_series_limit;
                        ++parts[w].rejected_by_limit[static_cast<std::size_t>(SeriesLimit::shard)];
                    } else {
                        ++parts[w].rejected_invalid;
                    }
                    continue;
                }
                ++new_series;
                commit_admissions_.push_back(work[w].admission.get());
                {
                    std::unique_lock lock(head_mutex_);
                    states_.emplace_back();
                }
                states_[id].loaded = true;  // a new series has nothing persisted
                report_index_memory();      // at once: the other shards see it in their checks
                auto s = batch.Put(index_cf_.get(), index_key(id), key);
                if (!s.ok()) {
                    status = from_rocks(s, "batch");
                    break;
                }
            }
            auto& st = states_[id];
            if (!st.loaded) {
                if (auto s = load_state(id, st); !s.is_ok()) {
                    status = s;
                    break;
                }
            }
            if (point.timestamp_ms < cutoff ||
                (st.max_ts != INT64_MIN &&
                 point.timestamp_ms < st.max_ts - options_.out_of_order_ms)) {
                ++parts[w].rejected_late;
                continue;
            }
            if (here && point.timestamp_ms > st.max_ts) commit_undo_.emplace_back(id, st.max_ts);
            st.max_ts = std::max(st.max_ts, point.timestamp_ms);
            put_varint(log, id);
            put_svarint(log, point.timestamp_ms - prev_ts);
            put_double(log, point.value);
            prev_ts = point.timestamp_ms;
            staged.push_back(
                {id, {point.timestamp_ms, point.value}, point.timestamp_ms <= st.sealed_max_ts});
            ++parts[w].accepted;
        }
    }
    if (status.is_ok() && !staged.empty()) {
        auto s = batch.Put(default_cf_.get(), log_key(next_log_sequence_), log);
        if (!s.ok()) status = from_rocks(s, "batch");
    }
    auto started = std::chrono::steady_clock::now();
    if (status.is_ok() && batch.Count() > 0) {
        rocksdb::WriteOptions wo;
        wo.sync = options_.fsync == FsyncPolicy::batch;
        // On a producer's thread RocksDB must not delay the write (a stall while compaction
        // catches up): it answers Incomplete, and the writer thread takes the write instead.
        wo.no_slowdown = here;
        auto written = db_->Write(wo, &batch);
        if (here && written.IsIncomplete()) {
            // Newest first: a series stepped twice gets its oldest maximum back last.
            for (auto undo = commit_undo_.rbegin(); undo != commit_undo_.rend(); ++undo)
                states_[undo->first].max_ts = undo->second;
            return false;
        }
        status = from_rocks(written, "write");
        // After a failed WAL write RocksDB must not be asked to write again (Debian's build
        // asserts in the WAL writer): the shard enters its error state.
        if (!status.is_ok()) fail(status);
        if (status.is_ok() && options_.disk) options_.disk->consumed(batch.GetDataSize());
        if (status.is_ok()) note_acknowledged();  // before any callback acknowledges it
    }
    auto latency = std::chrono::steady_clock::now() - started;

    if (status.is_ok()) {
        if (!staged.empty()) ++next_log_sequence_;
        // The new series are in the WAL: queries may list them (their states_ exist already).
        if (new_series > 0) index_.publish();
        std::size_t grown = 0;  // capacity the head's vectors took, in samples
        std::unique_lock lock(head_mutex_);
        for (const auto& s : staged) {
            auto& st = states_[s.id];
            const std::size_t capacity = st.pending.capacity();
            if (st.pending.empty()) {
                dirty_.push_back(s.id);
                st.pending.reserve(std::max<std::size_t>(st.last_head_points, 1));
            } else if (s.sample.ts <= st.pending.back().ts) {
                st.pending_sorted = false;
            }
            st.pending.push_back(s.sample);
            st.pending_late = st.pending_late || s.late;
            grown += st.pending.capacity() - capacity;
        }
        head_points_ += staged.size();
        head_points_visible_.fetch_add(staged.size(), std::memory_order_relaxed);
        head_bytes_.fetch_add(grown * sizeof(Sample), std::memory_order_relaxed);
    } else {
        // Nothing of this batch reached the WAL: forget the series it introduced, and give back
        // what they were charged.
        for (std::size_t i = 0; i < new_series; ++i)
            index_.remove_last();
        for (SeriesAdmission* admission : commit_admissions_)
            unadmit_series(admission);
        std::unique_lock lock(head_mutex_);
        states_.resize(index_.size());
        report_index_memory();
    }

    std::uint64_t late = 0, over = 0, invalid = 0;
    for (auto& p : parts) {
        late += p.rejected_late;
        over += p.rejected_series_limit;
        invalid += p.rejected_invalid;
    }
    if (status.is_ok()) {
        points_written_.fetch_add(staged.size(), std::memory_order_relaxed);
        rejected_late_.fetch_add(late, std::memory_order_relaxed);
        rejected_limit_.fetch_add(over, std::memory_order_relaxed);
        rejected_invalid_.fetch_add(invalid, std::memory_order_relaxed);
    }
    batches_.fetch_add(1, std::memory_order_relaxed);
    // Metrics first, so a caller that saw its callback also sees the batch counted.
    if (options_.on_batch) {
        options_.on_batch({options_.index, staged.size(),
                           std::chrono::duration_cast<std::chrono::nanoseconds>(latency)});
    }
    // Queue room is released before the callbacks run, so a producer retrying from a callback
    // (or from on_space_available) finds it.
    release_room(total);
    for (std::size_t w = 0; w < work.size(); ++w) {
        // Nothing of a failed batch is in the WAL, so its parts carry no counts.
        if (!status.is_ok()) parts[w] = WriteResult{.status = status};
        work[w].complete(parts[w]);
    }
    return true;
}

SeriesLimit Shard::admit_series(const QueuedWrite& write) {
    if (index_.live() >= options_.max_series) return SeriesLimit::shard;
    // Every shard reports each series it creates at once, so this sees them all.
    if (options_.index_bytes && options_.max_index_bytes > 0 &&
        options_.index_bytes->load(std::memory_order_relaxed) >= options_.max_index_bytes)
        return SeriesLimit::memory;
    auto& total = options_.total_series;
    if (total && options_.max_total_series > 0 &&
        total->fetch_add(1, std::memory_order_relaxed) >= options_.max_total_series) {
        total->fetch_sub(1, std::memory_order_relaxed);
        return SeriesLimit::global;
    }
    if (total && options_.max_total_series == 0) total->fetch_add(1, std::memory_order_relaxed);
    if (write.admission) {
        SeriesLimit refused = write.admission->admit();
        if (refused != SeriesLimit::none) {
            if (total) total->fetch_sub(1, std::memory_order_relaxed);
            return refused;
        }
    }
    return SeriesLimit::none;
}

std::uint64_t Shard::index_memory() const {
    return index_.memory_bytes() + index_.size() * (sizeof(SeriesState) + sizeof(ChunkState));
}

void Shard::report_index_memory() {
    const std::uint64_t now = index_memory();
    if (options_.index_bytes) {
        options_.index_bytes->fetch_add(now - index_bytes_reported_, std::memory_order_relaxed);
    }
    index_bytes_reported_ = now;
}

void Shard::unadmit_series(SeriesAdmission* admission) {
    if (options_.total_series) options_.total_series->fetch_sub(1, std::memory_order_relaxed);
    if (admission) admission->release();
}

// The writer's view: everything on disk is sealed.
Status Shard::load_state(std::uint64_t id, SeriesState& st) {
    ChunkState chunks;
    if (auto s = read_last_chunk(id, chunks); !s.is_ok()) return s;
    st.sealed_max_ts = std::max(st.sealed_max_ts, chunks.persisted_max_ts);
    st.max_ts = std::max(st.max_ts, st.sealed_max_ts);
    st.loaded = true;
    return Status::ok();
}

}  // namespace citygate::storage::detail
