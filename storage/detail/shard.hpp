// One shard: a RocksDB instance with its own WAL, a bounded input queue and the one writer thread
// that owns every mutation (index, head, chunks, rollups, retention). Readers run on any thread.
//
// Write path: the writer drains the whole queue into one WriteBatch holding one batch-log record
// (every accepted point, compactly encoded) plus index records for new series, writes it with
// the WAL on, then makes the points visible in the in-memory head and fires the callbacks.
// Flush: when the head is big or old enough, the writer turns pending points into compressed
// chunks and rollups in the time-window column families and deletes the flushed log records, all
// in one atomic WriteBatch; so after a crash the log replays exactly what chunks lack.
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
#include <shared_mutex>
#include <thread>
#include <vector>

#include "storage/detail/chunk.hpp"
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
    std::size_t max_series = 0;
    std::size_t head_flush_points = 0;
    std::chrono::milliseconds head_flush_interval{};
    std::size_t target_chunk_points = 0;
    std::function<std::int64_t()> clock;
    std::function<void(const BatchReport&)> on_batch;
    std::function<void()> on_space_available;
    std::shared_ptr<rocksdb::Cache> block_cache;
    std::shared_ptr<rocksdb::WriteBufferManager> write_buffer_manager;
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
    std::size_t queue_depth = 0;
    std::size_t head_points = 0;
    std::uint64_t writer_busy_ns = 0;  // writer thread CPU time committing and flushing
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
    // Only after a successful try_reserve() for write.points.size().
    void push(QueuedWrite write);

    // Readers, thread safe.
    std::vector<std::uint64_t> match(const std::vector<CompiledMatcher>& matchers) const {
        return index_.match(matchers);
    }
    const std::string& series_key(std::uint64_t id) const { return index_.key(id); }
    std::vector<std::string> label_values(std::string_view name,
                                          const std::vector<std::uint64_t>& ids) const {
        return index_.label_values(name, ids);
    }
    // Committed points of each id with start <= ts < end. `budget` is decremented by the points
    // returned; limit_exceeded once it would go below zero.
    [[nodiscard]] Status read_raw(const std::vector<std::uint64_t>& ids, std::int64_t start,
                                  std::int64_t end, std::int64_t& budget,
                                  std::vector<SeriesSamples>& out) const;
    // Committed rollup buckets of `resolution` (1m or 1h) with start <= bucket < end; buckets
    // include the head. Returned per id, sorted by bucket start.
    [[nodiscard]] Status read_rollups(const std::vector<std::uint64_t>& ids, Resolution resolution,
                                      std::int64_t start, std::int64_t end, std::int64_t& budget,
                                      std::vector<std::vector<RollupBucket>>& out) const;

    ShardStats stats() const;
    // Test and bench hooks (writer-thread work done synchronously through the queue's thread).
    [[nodiscard]] Status flush_now();
    [[nodiscard]] Status compact_all();
    std::uint64_t disk_bytes() const;
    void enforce_retention_now();

  private:
    struct SeriesState {
        std::vector<Sample> pending;  // accepted, in the WAL, not yet in chunks (head)
        bool pending_sorted = true;
        // Some pending point is not newer than everything persisted, so it may replace or join a
        // persisted bucket: readers of rollups must go to raw for this series. Guarded like
        // `pending` (written under the exclusive head lock), unlike the writer-only fields below.
        bool pending_late = false;
        bool loaded = false;  // persisted_max_ts known
        std::int64_t max_ts = INT64_MIN;
        std::int64_t persisted_max_ts = INT64_MIN;
        std::int64_t last_chunk_ts = INT64_MIN;  // key of the newest chunk, to extend it
        std::size_t last_chunk_points = 0;
    };
    using CfHandle = std::shared_ptr<rocksdb::ColumnFamilyHandle>;

    explicit Shard(ShardOptions options);
    [[nodiscard]] Status open_db();
    [[nodiscard]] Status recover();
    void run();
    void commit(std::deque<QueuedWrite>& work);
    [[nodiscard]] Status flush();
    [[nodiscard]] Status flush_series(std::uint64_t id, SeriesState& state,
                                      rocksdb::WriteBatch& batch);
    [[nodiscard]] Status write_rollups(std::uint64_t id, std::int64_t window, const CfHandle& cf,
                                       const std::vector<Sample>& raw, bool replace,
                                       rocksdb::WriteBatch& batch);
    [[nodiscard]] Status load_state(std::uint64_t id, SeriesState& state);
    void drop_expired_windows();
    CfHandle window(std::int64_t start) const;
    [[nodiscard]] Result<CfHandle> ensure_window(std::int64_t start);
    std::vector<std::pair<std::int64_t, CfHandle>> windows_overlapping(std::int64_t start,
                                                                       std::int64_t end) const;
    std::int64_t retention_cutoff() const;
    [[nodiscard]] Status run_on_writer(std::function<Status()> task);

    ShardOptions options_;
    rocksdb::Options db_options_;
    rocksdb::ColumnFamilyOptions window_options_;
    std::unique_ptr<rocksdb::DB> db_;
    CfHandle default_cf_, index_cf_;

    mutable std::shared_mutex windows_mutex_;
    std::map<std::int64_t, CfHandle> windows_;

    SeriesIndex index_;
    mutable std::shared_mutex head_mutex_;  // readers of pending vs the writer changing them
    std::vector<SeriesState> states_;
    std::vector<std::uint64_t> dirty_;  // ids with pending points (writer only)
    std::size_t head_points_ = 0;
    std::uint64_t next_log_sequence_ = 0;
    std::uint64_t first_log_sequence_ = 0;
    std::chrono::steady_clock::time_point last_flush_;
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

    std::mutex queue_mutex_;
    std::condition_variable queue_cv_;
    std::deque<QueuedWrite> queue_;
    std::deque<std::function<void()>> tasks_;  // writer-thread jobs (flush_now, tests)
    bool stop_ = false;
    std::atomic<std::size_t> reserved_{0};

    std::atomic<std::uint64_t> points_written_{0}, rejected_late_{0}, rejected_limit_{0},
        rejected_invalid_{0}, batches_{0}, flushes_{0}, windows_dropped_{0}, busy_ns_{0};
    std::atomic<std::size_t> head_points_visible_{0};

    std::thread writer_;
};

}  // namespace citygate::storage::detail
