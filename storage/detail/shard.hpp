// One shard: a RocksDB instance with its own WAL, a bounded input queue and the one writer thread
// that owns every mutation (index, head, chunks, rollups, retention). Readers run on any thread.
//
// Write path: the writer drains the whole queue into one WriteBatch holding one batch-log record
// (every accepted point, compactly encoded) plus index records for new series, writes it with
// the WAL on, then makes the points visible in the in-memory head and fires the callbacks.
// Flush: when the head is big or old enough, the writer hands it (and the log sequence it ends
// at) to the shard's flush thread and starts a new head. The flush thread turns the handed-off
// points into compressed chunks and rollups in the time-window column families and deletes the
// log records below that sequence, all in one atomic WriteBatch; so after a crash the log
// replays exactly what chunks lack. Readers see the head, the handed-off points and the chunks
// under one lock and one snapshot, so every point exactly once. The flush thread also enforces
// retention.
//
// The implementation is split by job: shard_open.cpp (options, column families, recovery, close),
// shard_writer.cpp (queue, writer loop, group commit), shard_flush.cpp (hand-off, flush thread,
// chunks and rollups, late data), shard_retention.cpp (windows, retention), shard_seal.cpp
// (sealed windows: no 1-minute blocks, minutes computed from chunks) and shard_read.cpp (reads,
// figures, checkpoints).
#pragma once

#include <rocksdb/db.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <shared_mutex>
#include <thread>
#include <vector>

#include "storage/detail/chunk.hpp"
#include "storage/detail/disk_guard.hpp"
#include "storage/detail/rollup.hpp"
#include "storage/detail/series_index.hpp"
#include "storage/detail/write_join.hpp"
#include "storage/engine.hpp"

namespace citygate::storage::detail {

struct ShardOptions {
    unsigned index = 0;
    std::filesystem::path directory;
    std::size_t queue_capacity = 65536;
    FsyncPolicy fsync = FsyncPolicy::none;
    std::int64_t window_ms = 0;
    std::int64_t out_of_order_ms = 0;
    std::int64_t retention_ms = 0;
    bool seal_windows = true;                 // EngineOptions::seal_windows
    std::size_t minute_block_min_points = 1;  // EngineOptions::minute_block_min_points
    std::size_t max_series = 0;
    // Series of all shards together, shared by them; max_total_series bounds it (0: no bound).
    std::shared_ptr<std::atomic<std::uint64_t>> total_series;
    std::size_t max_total_series = 0;
    // Memory of all shards' series indexes together, shared by them; past max_index_bytes (0:
    // no bound) a write that would create a series is refused (SeriesLimit::memory).
    std::shared_ptr<std::atomic<std::uint64_t>> index_bytes;
    std::uint64_t max_index_bytes = 0;
    std::size_t head_flush_points = 0;
    std::chrono::milliseconds head_flush_interval{};
    std::chrono::milliseconds memtable_idle_flush{};
    std::chrono::microseconds commit_delay{};  // EngineOptions::commit_delay
    std::size_t target_chunk_points = 0;
    std::function<std::int64_t()> clock;
    std::function<void(const BatchReport&)> on_batch;
    std::function<void()> on_space_available;
    std::shared_ptr<rocksdb::Cache> block_cache;
    // The engine's memtable budget, shared by every shard; null: unbounded.
    std::shared_ptr<rocksdb::WriteBufferManager> write_buffer_manager;
    StorageTuning tuning;
    WalRecoveryPolicy wal_recovery = WalRecoveryPolicy::refuse;
    std::chrono::milliseconds test_read_delay{0};  // reads sleep this long before each series
    // The data volume's reserve, shared by the shards (null: no guard). Client writes wait while
    // it is full, head flushes while it is critical.
    DiskGuard* disk = nullptr;
    // Size of the data volume and the shards sharing it (0: unknown): RocksDB's file sizes and
    // preallocations are capped from each shard's share, so a small volume works.
    std::uint64_t volume_bytes = 0;
    unsigned shard_count = 1;
    bool read_only = false;             // open with DB::OpenForReadOnly (a full volume at start)
    std::shared_ptr<rocksdb::Env> env;  // testing only; null: the default
    // The shard failed (first failure only), or was reopened writable. Any thread; cheap.
    std::function<void(const HealthEvent&)> on_health_event;
};

struct ShardStats {
    std::uint64_t points_written = 0;
    std::uint64_t points_rejected_late = 0;
    std::uint64_t points_rejected_series_limit = 0;
    std::uint64_t points_rejected_invalid = 0;
    std::uint64_t series = 0;
    std::uint64_t batches = 0;
    std::uint64_t flushes = 0;
    std::uint64_t windows_dropped = 0;
    std::uint64_t windows_sealed = 0;
    std::size_t queue_depth = 0;
    std::size_t head_points = 0;
    std::uint64_t writer_busy_ns = 0;   // writer thread CPU time committing
    std::uint64_t flusher_busy_ns = 0;  // flush thread CPU time flushing, enforcing retention
};

// One series' points in a query range, sorted by time, duplicates resolved.
struct SeriesSamples {
    std::uint64_t id = 0;
    std::string key;
    std::vector<Sample> samples;
};

class Shard {
  public:
    [[nodiscard]] static Result<std::unique_ptr<Shard>> open(ShardOptions options);
    // Drains the queue (firing every callback), flushes the head, stops the writer, closes.
    ~Shard();

    // Producer side, thread safe. Reserve queue room for `n` points; all-or-nothing per call.
    bool try_reserve(std::size_t n);
    void unreserve(std::size_t n);
    // Only after a successful try_reserve() for write.points.size(). `wake` false: the writer
    // is not told; the producer calls commit_queued() (at once or at the end of its batch).
    // `refill`, when given, receives an empty points vector with the capacity of one committed
    // before, if the shard has one spare, so a producer that fills a vector per message does
    // not allocate one each time.
    void push(QueuedWrite write, bool wake = true, std::vector<Point>* refill = nullptr);
    // Commits what is queued on the calling thread, whose callbacks then have fired, when
    // nothing there can block: fsync none (a WAL append is a write to the page cache), the
    // shard writable, nobody committing, every point of a series that exists and is loaded,
    // room in the head, RocksDB not stalling. Otherwise wakes the writer, which commits it. At
    // low rates this saves the hand-off to the writer thread and back, two wake-ups a write.
    void commit_queued();

    // Readers, thread safe. Each charges what it holds to `budget` before allocating it and
    // checks the budget between series and per chunk; the budget's first failure is returned.
    [[nodiscard]] Status match(const std::vector<CompiledMatcher>& matchers, QueryBudget& budget,
                               std::vector<std::uint64_t>& ids) const {
        return index_.match(matchers, budget, ids);
    }
    std::string series_key(std::uint64_t id) const { return index_.key(id); }
    // Thread safe: the id of a published series (Engine::find_series), and how many series
    // were deleted (Engine::series_epoch).
    std::optional<std::uint64_t> find_series(std::string_view key) const {
        return index_.find_published(key);
    }
    std::uint64_t series_erased() const { return index_.erased_count(); }
    [[nodiscard]] Status label_values(std::string_view name, const std::vector<std::uint64_t>& ids,
                                      QueryBudget& budget, std::vector<std::string>& out) const {
        return index_.label_values(name, ids, budget, out);
    }
    // Committed points of each id with start <= ts < end; series without points are left out.
    // Points are counted against the budget's max_points.
    [[nodiscard]] Status read_raw(const std::vector<std::uint64_t>& ids, std::int64_t start,
                                  std::int64_t end, QueryBudget& budget,
                                  std::vector<SeriesSamples>& out) const;
    // Committed rollup buckets of `resolution` (1m or 1h) with start <= bucket < end; buckets
    // include the head. Returned per id, sorted by bucket start; buckets count as points.
    [[nodiscard]] Status read_rollups(const std::vector<std::uint64_t>& ids, Resolution resolution,
                                      std::int64_t start, std::int64_t end, QueryBudget& budget,
                                      std::vector<std::vector<RollupBucket>>& out) const;

    // Committed points of each id in the spans (sorted, disjoint), one vector per id in the
    // order of `ids` (empty where it has none). Points are counted against max_points.
    [[nodiscard]] Status read_spans(const std::vector<std::uint64_t>& ids,
                                    const std::vector<TimeSpan>& spans, QueryBudget& budget,
                                    std::vector<std::vector<Sample>>& out) const;

    ShardStats stats() const;
    unsigned index() const { return options_.index; }
    // The error state: set by the first failed RocksDB write, flush or sync; from then on
    // writes fail and RocksDB is not asked to write again. Thread safe.
    bool failed() const { return failed_.load(std::memory_order_acquire); }
    Status failure() const;
    // Opened read-only (a full volume at start) and not reopened yet. Thread safe.
    bool read_only() const { return read_only_.load(std::memory_order_acquire); }
    // Asks the writer thread to reopen a read-only shard writable (returns at once; the shard
    // reports on_health_event when it is). Thread safe.
    void request_reopen();
    // Wakes the writer to look at its held queue again (space returned). Thread safe.
    void wake();
    const WalRecovery& wal_recovery() const { return wal_recovery_; }
    // Test and bench hooks (writer-thread work done synchronously through the queue's thread).
    [[nodiscard]] Status flush_now();
    [[nodiscard]] Status compact_all();
    std::uint64_t disk_bytes() const;
    RocksDbFigures rocksdb_figures() const;
    // Memory of the head's points, the one being flushed included (vector capacities). Thread
    // safe.
    std::uint64_t head_bytes() const { return head_bytes_.load(std::memory_order_relaxed); }
    // Deletes the points of `ids` with start <= ts < end, their rollups, and a series left
    // without points (see Engine::delete_points); adds to `result`. On the writer thread, after
    // flushing the head; the chunks are rewritten by the flush thread (shard_delete.cpp).
    [[nodiscard]] Status delete_points(const std::vector<std::uint64_t>& ids, std::int64_t start,
                                       std::int64_t end, DeleteResult& result);
    // A RocksDB checkpoint of this shard in `target` (a directory that must not exist).
    Status checkpoint(const std::filesystem::path& target) const;
    void enforce_retention_now();

  private:
    struct SeriesState {
        // Guarded by head_mutex_: changed under the exclusive lock, read under the shared one.
        std::vector<Sample> pending;  // head: accepted, in the WAL, not handed off (arrival order)
        bool pending_sorted = true;
        // Some pending point is not newer than everything sealed (in chunks or handed off), so
        // it may replace or join a persisted bucket: readers of rollups must go to raw.
        bool pending_late = false;
        // Handed to the flush thread, not yet in chunks; arrival order, all older than pending.
        std::shared_ptr<const std::vector<Sample>> flushing;
        bool flushing_late = false;
        // Writer thread only.
        bool loaded = false;                     // sealed_max_ts knows what is on disk
        bool erased = false;                     // deleted: a reference writes to its key anew
        std::int64_t max_ts = INT64_MIN;         // newest accepted
        std::int64_t sealed_max_ts = INT64_MIN;  // newest in chunks or handed off
        // Points of the previous head: the next head's vector is reserved to it at its first
        // point, so a steady series allocates once a head instead of doubling its way up.
        std::uint32_t last_head_points = 0;
    };
    // Where a series' chunks end; flush thread only.
    struct ChunkState {
        bool loaded = false;
        std::int64_t persisted_max_ts = INT64_MIN;
        std::int64_t last_chunk_ts = INT64_MIN;  // key of the newest chunk, to extend it
        std::size_t last_chunk_points = 0;
    };
    // One head handed from the writer to the flush thread.
    struct FlushJob {
        struct Series {
            std::uint64_t id;
            std::shared_ptr<const std::vector<Sample>> samples;
            bool sorted;
        };
        std::vector<Series> series;
        std::uint64_t log_end = 0;  // the log records below this sequence hold exactly these
        std::size_t points = 0;
        std::size_t bytes = 0;  // capacity of the series' vectors
    };
    using CfHandle = std::shared_ptr<rocksdb::ColumnFamilyHandle>;

    explicit Shard(ShardOptions options);
    [[nodiscard]] Status open_db();
    // Writer thread: close the read-only DB and open it writable, under db_mutex_.
    void reopen_writable();
    // Enters the error state (the first failure is kept) and reports it.
    void fail(const Status& status);
    // Writer thread: whether queued client writes must wait (full volume, read-only).
    bool writes_held() const;
    // One attempt at reserving `n` points of queue room.
    bool reserve_once(std::size_t n);
    // Gives back `n` points of queue room; tells on_space_available if a producer was refused.
    void release_room(std::size_t n);
    // Writer thread: fails every queued write with `status`, writing nothing.
    void fail_writes(std::vector<QueuedWrite>& work, const Status& status);
    // Empties `work`, keeping the points vectors (up to kSpareVectors, none larger than
    // kSpareVectorPoints) for push() to hand back, and not more than kKeptWrites of capacity.
    void recycle(std::vector<QueuedWrite>& work);
    // Before RocksDB replays the WAL: scans it, fills wal_recovery_, and fails (corruption,
    // naming the shard, the damage and the choice) when it is damaged and the policy refuses.
    [[nodiscard]] Status check_wal(const std::filesystem::path& path);
    // After every successful writer commit: the newest sequence acknowledged so far.
    void note_acknowledged();
    // Maps shard-N/CITYGATE-ACKED in `directory` (open_db), or unmaps it (close).
    void open_acked(const std::filesystem::path& directory);
    void close_acked();
    [[nodiscard]] Status recover();
    void run();
    // Commits `work` and fires its callbacks (the commit_mutex_ held). `here`: on a producer's
    // thread (try_commit_here); false, with nothing changed, when RocksDB would stall.
    bool commit(std::vector<QueuedWrite>& work, bool here = false);
    // Whether `point`'s series exists and is loaded, so a commit on a producer's thread may
    // take it (commit_mutex_ held).
    bool ready_series(const Point& point) const;
    // Writer thread, queue_mutex_ held, something queued: with fsync batch, waits up to
    // commit_delay for more, so one fsync (and one wake-up each way) serves more writes.
    void gather(std::unique_lock<std::mutex>& lock);
    // commit_queued() on this thread; false when the writer must do it.
    bool commit_queued_here();
    // Writer thread: may `write` create one more series? Storage's limits first (shard, then the
    // global count, which it charges), then the write's admission; none when it may.
    SeriesLimit admit_series(const QueuedWrite& write);
    // Writer thread: the memory of the series index and of the per-series states.
    std::uint64_t index_memory() const;
    // Writer thread: adds what index_memory() grew or shrank by since the last call to the
    // engine's count (ShardOptions::index_bytes).
    void report_index_memory();
    // Undoes admit_series() for a series that was not created after all.
    void unadmit_series(SeriesAdmission* admission);
    // Writer thread: hand the head to the flush thread, once the previous job is done.
    void hand_off();
    // Writer thread: hand off the head and wait until it and any earlier job are in chunks.
    [[nodiscard]] Status flush_sync();
    // Writer thread, at close: every column family's memtable into SST files.
    [[nodiscard]] Status flush_memtables();
    // Writer thread: flushes the memtables when the shard has been idle (memtable_idle_flush).
    void flush_idle_memtables(std::chrono::steady_clock::time_point now);
    void run_flusher();
    [[nodiscard]] Status write_job(const FlushJob& job);
    [[nodiscard]] Status flush_series(std::uint64_t id, const std::vector<Sample>& samples,
                                      bool sorted, ChunkState& state, rocksdb::WriteBatch& batch);
    // `persisted_before`: the series' newest point on disk before this flush (append only).
    [[nodiscard]] Status write_rollups(std::uint64_t id, std::int64_t window, const CfHandle& cf,
                                       const std::vector<Sample>& raw, bool replace, bool sealed,
                                       std::int64_t persisted_before, rocksdb::WriteBatch& batch);
    // Whether buckets rolling up `points` points in `buckets` minutes get a stored block.
    bool minute_blocks_pay(std::size_t points, std::size_t buckets) const;
    // Flush thread: seals every window due (EngineOptions::seal_windows), one at a time.
    void seal_due_windows();
    [[nodiscard]] Status seal_window(std::int64_t start, const CfHandle& cf);
    // Whether window `start` is sealed. Any thread (takes the head lock shared).
    bool window_sealed(std::int64_t start) const;
    // Loads the sealed set from the windows' markers (open_db).
    [[nodiscard]] Status load_sealed_windows();
    // 1-minute buckets of one series with start <= bucket < end inside window `ws`, computed
    // from its chunks exactly as a stored block would hold them (shard_seal.cpp): for a sealed
    // window, and for hours that keep no block (minute_block_min_points).
    [[nodiscard]] Status derive_minutes(std::uint64_t id, std::int64_t start, std::int64_t end,
                                        std::int64_t ws, const CfHandle& cf,
                                        const rocksdb::ReadOptions& ro, QueryBudget& budget,
                                        std::vector<RollupBucket>& out) const;
    // derive_minutes() for the hours of [start, end) in window `ws` not in `hours_stored` (the
    // sorted starts of the hours whose blocks the reader found).
    [[nodiscard]] Status derive_unstored_minutes(std::uint64_t id, std::int64_t start,
                                                 std::int64_t end, std::int64_t ws,
                                                 const CfHandle& cf, const rocksdb::ReadOptions& ro,
                                                 const std::vector<std::int64_t>& hours_stored,
                                                 QueryBudget& budget,
                                                 std::vector<RollupBucket>& out) const;
    // One series' committed points in [start, end) from the chunks under `ro`'s snapshot, merged
    // with `head` (its head points, in arrival order); not counted as points.
    [[nodiscard]] Status read_series(std::uint64_t id, std::int64_t start, std::int64_t end,
                                     const rocksdb::ReadOptions& ro,
                                     const std::vector<std::pair<std::int64_t, CfHandle>>& windows,
                                     std::vector<Sample>& head, QueryBudget& budget,
                                     std::vector<Sample>& out) const;
    [[nodiscard]] Status read_last_chunk(std::uint64_t id, ChunkState& state) const;
    // Flush thread: rewrites one series' windows without its points in [start, end); `left`
    // says whether any point of it remains.
    [[nodiscard]] Status delete_series_points(std::uint64_t id, std::int64_t start,
                                              std::int64_t end, std::uint64_t& deleted, bool& left);
    [[nodiscard]] Status load_state(std::uint64_t id, SeriesState& state);
    void drop_expired_windows();
    CfHandle window(std::int64_t start) const;
    [[nodiscard]] Result<CfHandle> ensure_window(std::int64_t start);
    std::vector<std::pair<std::int64_t, CfHandle>> windows_overlapping(std::int64_t start,
                                                                       std::int64_t end) const;
    std::int64_t retention_cutoff() const;
    [[nodiscard]] Status run_on_writer(std::function<Status()> task);
    [[nodiscard]] Status run_on_flusher(std::function<Status()> task);

    ShardOptions options_;
    // Readers hold it shared while they use db_ and the column family handles; reopening a
    // read-only shard writable takes it exclusively. The writer thread needs it only there.
    mutable std::shared_mutex db_mutex_;
    std::atomic<bool> read_only_{false};
    std::atomic<bool> failed_{false};
    mutable std::mutex failure_mutex_;
    Status failure_;
    rocksdb::Options db_options_;
    rocksdb::ColumnFamilyOptions window_options_;
    std::unique_ptr<rocksdb::DB> db_;
    CfHandle default_cf_, index_cf_;

    mutable std::shared_mutex windows_mutex_;
    std::map<std::int64_t, CfHandle> windows_;
    // Starts of the sealed windows. Guarded by head_mutex_ (not windows_mutex_): a reader takes
    // it with its snapshot, and a seal writes its batch and changes it under the exclusive lock,
    // so a reader never looks for 1-minute blocks a seal in its snapshot has deleted.
    std::set<std::int64_t> sealed_windows_;

    SeriesIndex index_;
    mutable std::shared_mutex head_mutex_;  // readers of pending vs the writer changing them
    std::vector<SeriesState> states_;
    std::vector<std::uint64_t> dirty_;  // ids with pending points (writer only)
    std::size_t head_points_ = 0;       // pending points (writer only)
    std::uint64_t next_log_sequence_ = 0;
    std::uint64_t first_log_sequence_ = 0;
    std::chrono::steady_clock::time_point last_flush_;
    // Writer only: the last committed write, and whether anything was written to RocksDB since
    // the memtables were last flushed for being idle.
    std::chrono::steady_clock::time_point last_write_;
    bool memtables_dirty_ = false;
    // Reused by every commit (writer only): fresh multi-megabyte buffers per batch cost page
    // faults that showed up as 8% of the bench's time.
    rocksdb::WriteBatch commit_batch_;
    std::string commit_log_;
    struct Staged {
        std::uint64_t id;
        Sample sample;
        bool late;
    };
    std::vector<Staged> commit_staged_;
    std::vector<SeriesAdmission*> commit_admissions_;  // of each new series of the batch
    // A commit on a producer's thread: each series' max_ts before it, to undo a stalled write.
    std::vector<std::pair<std::uint64_t, std::int64_t>> commit_undo_;
    std::vector<WriteResult> commit_parts_;  // each queued write's part of the outcome
    std::vector<QueuedWrite> here_work_;
    // Owns what the comments call writer-only state (index mutation, states_' writer fields,
    // head_points_, the commit buffers): the writer thread holds it for each turn of its loop, a
    // producer for a commit on its own thread. Taken before queue_mutex_, never after.
    std::mutex commit_mutex_;

    std::mutex queue_mutex_;
    std::condition_variable queue_cv_;
    // A vector, not a deque: taken whole by swapping with the committer's, so neither side
    // allocates once both have grown to a batch.
    std::vector<QueuedWrite> queue_;
    // Emptied, with their capacity; see push(). At most 64 x 1024 points (4 MiB) a shard: a
    // point is 64 bytes, and 256 of 4096 would have been 64 MiB a shard kept for large writes.
    std::vector<std::vector<Point>> spare_points_;
    static constexpr std::size_t kSpareVectors = 64, kSpareVectorPoints = 1024, kKeptWrites = 4096;
    std::deque<std::function<void()>> tasks_;  // writer-thread jobs (flush_now, tests)
    bool stop_ = false;
    std::atomic<std::size_t> reserved_{0};
    // A producer was refused room since the last commit: the next release tells
    // on_space_available.
    std::atomic<bool> room_wanted_{false};
    // fsync batch: the writer waits up to commit_delay for this many points before committing a
    // smaller queue (gather), and producers do not wake it meanwhile.
    static constexpr std::size_t kGatherPoints = 512;
    std::atomic<bool> gathering_{false};

    std::atomic<std::uint64_t> points_written_{0}, rejected_late_{0}, rejected_limit_{0},
        rejected_invalid_{0}, batches_{0}, flushes_{0}, windows_dropped_{0}, windows_sealed_{0},
        busy_ns_{0}, flusher_busy_ns_{0};
    std::atomic<std::size_t> head_points_visible_{0};  // pending plus handed off
    std::atomic<std::uint64_t> head_bytes_{0};         // their vectors' capacity
    std::uint64_t index_bytes_reported_ = 0;  // writer: index_.memory_bytes() in index_bytes

    // The writer and the flush thread meet here.
    std::mutex flush_mutex_;
    std::condition_variable flush_cv_;       // wakes the flush thread
    std::condition_variable flush_done_cv_;  // wakes a writer waiting for a job
    std::unique_ptr<FlushJob> flush_job_;    // the job in progress or to retry; null when idle
    Status flush_status_;                    // of the last attempt at flush_job_
    bool flush_failed_ = false;              // the last attempt failed; retried later
    std::deque<std::function<void()>> flusher_tasks_;
    bool flusher_stop_ = false;
    std::vector<ChunkState> chunk_states_;  // flush thread only

    WalRecovery wal_recovery_;
    // shard-N/CITYGATE-ACKED, mapped: the newest acknowledged sequence, little-endian; null when
    // the file could not be written (the recovery check then knows less, nothing else changes).
    std::uint64_t* acked_ = nullptr;

    std::thread writer_;
    std::thread flusher_;
};

}  // namespace citygate::storage::detail
