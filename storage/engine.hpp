// The time-series engine: samples in, durable in the WAL before the write callback fires,
// queries out. Knows nothing of MQTT.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "storage/inplace_function.hpp"
#include "storage/query_budget.hpp"
#include "storage/selector.hpp"
#include "storage/status.hpp"

namespace rocksdb {
class Env;
}

namespace citygate::storage {

// A series as storage holds it: its shard and its id there, from Engine::find_series(). A
// producer that sends the same series over and over resolves its key once and writes by
// reference from then on, with no key to build, hash or look up per point (as Prometheus'
// appender references). Valid while the engine is open; a reference to a series deleted since
// (Engine::delete_points) still writes, into the series of the same key created anew.
struct SeriesRef {
    static constexpr std::uint64_t none = ~std::uint64_t{0};
    std::uint64_t id = none;
    std::uint32_t shard = 0;
    bool valid() const { return id != none; }
};

// One reading, of the series `ref` when it is valid, else of `series`: the canonical series key
// built by format_series_key(), `measurement{tag="value",...}` with tags sorted by name.
struct Point {
    Point() = default;
    Point(std::string series_key, std::int64_t timestamp, double v)
        : series(std::move(series_key)), timestamp_ms(timestamp), value(v) {}
    Point(SeriesRef reference, std::int64_t timestamp, double v)
        : timestamp_ms(timestamp), value(v), ref(reference) {}

    std::string series;
    std::int64_t timestamp_ms = 0;
    double value = 0;
    SeriesRef ref;
};

enum class FsyncPolicy {
    none,   // WAL written before the callback: survives a process crash, not a power loss.
    batch,  // WAL fsynced once per group-committed batch: survives a power loss.
};

// Figures of one group-committed batch, reported from the writer thread that wrote it.
struct BatchReport {
    unsigned shard = 0;
    std::size_t points = 0;
    std::chrono::nanoseconds write_latency{};  // WriteBatch submit to WAL done
};

// RocksDB settings of the time-window column families, where chunks and rollups live. The
// defaults are the measured choice for this workload (figures in storage/README.md and next to
// each option in storage/detail/shard_open.cpp); the bench exposes each one for A/B runs.
struct StorageTuning {
    enum class Compression { none, lz4, zstd };
    enum class Compaction { level, universal };
    Compression compression = Compression::lz4;  // levels above the bottommost
    Compression bottommost_compression = Compression::zstd;
    int bloom_bits_per_key = 10;      // 0: no filter blocks
    bool series_prefix_bloom = true;  // filter on (record kind, series id), not whole keys
    std::size_t write_buffer_bytes = 32 << 20;  // memtable per window column family
    Compaction compaction = Compaction::level;
    std::size_t block_bytes = 32 << 10;
    // L0 files of a window that start a compaction (RocksDB's default is 4). Each head flush
    // rewrites every series' newest chunk and hour rollup block, so a memtable flushed during
    // the hour leaves stale versions in L0 that only a compaction removes.
    int level0_compaction_trigger = 2;
};

// The limit that refused a point because it would have created a series. Storage enforces
// global, shard and memory (the series index's share of the memory budget); identity and
// connection are the caller's (SeriesAdmission).
enum class SeriesLimit : std::uint8_t { none, global, shard, identity, connection, memory };
inline constexpr std::size_t kSeriesLimits = 6;
const char* series_limit_name(SeriesLimit limit);  // "global", "shard", ...

// The caller's say over the series one write may create: per-client limits storage knows
// nothing of (the ingest unit's, per identity and per connection). Asked on a shard's writer
// thread, once per series the write would create, after storage's own limits let it in; several
// shards may ask at once, so implementations are thread safe, and cheap (no I/O, no index).
class SeriesAdmission {
  public:
    virtual ~SeriesAdmission() = default;
    // none: the series may be created, and is charged to the caller; else the limit refusing it.
    virtual SeriesLimit admit() = 0;
    // A series admit() let in was not created after all (its batch did not reach the WAL).
    virtual void release() = 0;
};

// Space of the volume holding the data directory, as statvfs() tells an unprivileged writer.
struct DiskSpace {
    std::uint64_t free_bytes = 0;
    std::uint64_t total_bytes = 0;
};
using DiskProbe = std::function<std::optional<DiskSpace>(const std::filesystem::path&)>;

// The free-space reserve the engine keeps by default: 2% of the volume, at least 64 MiB and at
// most 4 GiB, and never more than a quarter of the volume (a 64 MiB volume keeps 16 MiB).
std::uint64_t auto_free_space_reserve(std::uint64_t volume_bytes);

// The data volume against its reserve.
struct DiskFigures {
    std::uint64_t free_bytes = 0;     // at the last probe
    std::uint64_t reserve_bytes = 0;  // EngineOptions::min_free_bytes, or the automatic one
    std::uint64_t volume_bytes = 0;
    bool full = false;          // under the reserve: writes are held
    bool probe_failed = false;  // statvfs failed at the last probe (the state is kept)
};

// Why the engine does not take writes, or not all of them.
struct StorageHealth {
    DiskFigures disk;
    // Opened on a full volume: read-only until free space returns (then reopened writable).
    bool read_only = false;
    // Shards that met a RocksDB error on a write, flush or sync: every later write to them
    // fails (not acknowledged) and RocksDB is not called to write again. Needs a restart.
    struct FailedShard {
        unsigned shard = 0;
        std::string error;
    };
    std::vector<FailedShard> failed_shards;
    [[nodiscard]] bool writable() const {
        return !disk.full && !read_only && failed_shards.empty();
    }
};

// A change of StorageHealth, for the log.
struct HealthEvent {
    enum class Kind { disk_full, disk_space_returned, shard_failed, reopened_writable };
    Kind kind = Kind::disk_full;
    unsigned shard = 0;  // shard_failed
    std::string message;
};

// What to do when a shard's write-ahead log is damaged (see WalRecovery).
enum class WalRecoveryPolicy {
    refuse,         // Engine::open fails, naming the shard and the damage, touching nothing
    point_in_time,  // replay up to the damage, drop the rest, report it in wal_recovery()
};

// What opening one shard found in its write-ahead log. A kill -9 may leave the last record
// incomplete: that write never returned, so it was never acknowledged (the callback fires only
// after the WAL write, and its fsync with FsyncPolicy::batch); such a torn tail is dropped and
// reported, not refused. Anything else dropped is damage: a corrupted record (bad checksum,
// length or type) anywhere, or a record missing that held an acknowledged write (the shard
// keeps the sequence number of the newest acknowledged write in shard-N/CITYGATE-ACKED, written
// after every group commit, so a log cut shorter than what was acknowledged is seen).
struct WalRecovery {
    unsigned shard = 0;
    std::uint64_t dropped_bytes = 0;    // not replayed: from the first damage to the end
    std::uint64_t dropped_records = 0;  // WAL records (group commits) among them
    bool torn_tail = false;             // only an incomplete last record, never acknowledged
    bool corrupt = false;               // a record failed its checks
    bool acknowledged_lost = false;     // a dropped record held acknowledged writes
    bool accepted = false;              // damaged, and opened under point_in_time
    std::string problem;                // e.g. "checksum mismatch at byte 1234 of 000012.log"
    [[nodiscard]] bool damaged() const { return corrupt || acknowledged_lost; }
};

struct EngineOptions {
    std::filesystem::path directory;
    unsigned shards = 0;                 // 0: one per core
    std::size_t queue_capacity = 65536;  // points waiting per shard
    FsyncPolicy fsync = FsyncPolicy::none;
    std::chrono::milliseconds partition_window = std::chrono::hours(24);
    std::chrono::milliseconds out_of_order_window = std::chrono::hours(1);
    std::chrono::milliseconds retention = std::chrono::hours(24 * 30);  // 0: keep forever
    // Sealing: once a window has ended and the out-of-order window after it has passed too (by
    // `clock`), the flush thread rewrites it for its long life: its 1-minute rollup blocks are
    // dropped (1-minute buckets are then computed from its chunks, with the same results) and
    // the window is compacted into RocksDB's bottommost (ZSTD) level. Points still accepted for
    // a sealed window (a series whose clock is behind) are written there as late data.
    bool seal_windows = true;
    // 1-minute rollup blocks are kept where they pay: a flush writes an hour's block when the
    // points it rolls up average at least this many a minute bucket (12: a reading every 5 s or
    // more often). A sparser series' 1-minute buckets are computed from its chunks when read,
    // as for a sealed window, with the same results: a minute of a 10 s sensor is 6 points that
    // decode about as fast as the bucket would, and its blocks would be a third of the window's
    // bytes. An hour keeps the choice its first flush made. 1: every hour keeps its block.
    std::size_t minute_block_min_points = 12;
    // Series limits: a point that would create a series beyond either is refused (counted,
    // WriteResult::rejected_series_limit); existing series keep being written. max_series is
    // all shards together, 0: only the per-shard limit.
    std::size_t max_series_per_shard = 2'000'000;
    std::size_t max_series = 0;
    // Called from writer threads; must be cheap and thread safe. May be empty.
    std::function<void(const BatchReport&)> on_batch;
    // Called from a writer thread after it drained its queue, so producers that were refused by
    // try_write() can try again. Must be cheap and thread safe. May be empty.
    std::function<void()> on_space_available;

    // Head: accepted points live in the WAL (as one batch-log record per group commit) and in
    // memory until a flush turns them into compressed chunks and rollups. A shard hands its head
    // to its background flush thread when it holds this many head points or its oldest is this
    // old; it bounds memory and the log replayed at open. The writer keeps committing meanwhile;
    // it waits for the flush only when a second full head is waiting behind a running one.
    std::size_t head_flush_points = 1 << 21;
    std::chrono::milliseconds head_flush_interval = std::chrono::minutes(5);
    // FsyncPolicy::batch only: a shard writer that finds fewer than 512 points queued waits up
    // to this long for more before it commits and fsyncs, so at moderate rates one fsync and
    // one wake-up each way serve several messages instead of one or two (as PostgreSQL's
    // commit_delay). It adds at most this much to an acknowledgement's latency. 0: off.
    std::chrono::microseconds commit_delay = std::chrono::microseconds(1000);
    // A shard that took no write for this long, its head already in chunks, flushes RocksDB's
    // memtables into SST files (without waiting), so an idle gateway gives their memory back and
    // its write-ahead log files go. 0: memtables flush only when full (and at close).
    std::chrono::milliseconds memtable_idle_flush = std::chrono::minutes(2);
    // Chunks are extended up to this many points (then split at twice it): bigger chunks
    // compress better, smaller ones cost less to rewrite for late data.
    std::size_t target_chunk_points = 360;
    std::size_t block_cache_bytes = 256 << 20;  // shared by all shards
    // Memtable memory of all shards and all their column families together, held by one RocksDB
    // write buffer manager: once it is reached, the shard that writes next flushes its oldest
    // memtable early (a soft bound: one write may go a little over it). 0: unbounded, each
    // column family up to its own write buffers (2 x 128 MiB of batch log, 3 x
    // write_buffer_bytes per window being written, per shard: several GiB on a 16-core node).
    // 1 GiB leaves a 16-shard node 64 MiB a shard, room for the two heads its batch log holds
    // (about 25 MB each at the default head_flush_points) so log records still mostly die in
    // memory, with window memtables flushed smaller (the bench measured no size or ingest change
    // between 1 and 128 MiB window memtables); nodes with a few shards never reach it.
    std::size_t memtable_budget_bytes = std::size_t{1} << 30;
    // One budget for storage's memory (0: each part bounded by its own option alone). Each part
    // takes its share (MemoryShares), or its own option where that is lower; Engine::memory()
    // reports the result. Memtables 25 % (memtable_budget_bytes; their write buffer manager is
    // charged to the block cache, so the two share one cache of their two shares), the block
    // cache 15 % (block_cache_bytes; index and filter blocks included), the head
    // 20 % (head_flush_points, at kHeadPointBytes a point and two heads a shard: the one
    // filling and the one being flushed) and the series index 15 % (a series that would take
    // the index past it is refused: SeriesLimit::memory). The caller gives queries 15 %
    // (QueryMemory); the last 10 % is left for connections, buffers and code.
    std::size_t memory_budget_bytes = 0;
    StorageTuning tuning;
    // Free space the data volume keeps: under it, writes are held (try_write() answers false,
    // what is queued waits, nothing reaches RocksDB), so RocksDB never meets a full disk; they
    // resume by themselves once free space is an eighth of the reserve (at least 1 MiB) above it.
    // Unset: auto_free_space_reserve() of the volume. 0: no reserve (a full disk then fails the
    // shards that meet it). A volume already under it at open is opened read-only.
    std::optional<std::uint64_t> min_free_bytes;
    std::chrono::milliseconds disk_poll_interval{200};
    // Called on every StorageHealth change, from the polling thread or a writer or flush thread.
    // Must be cheap and thread safe. May be empty.
    std::function<void(const HealthEvent&)> on_health_event;
    // Testing only: what the engine takes for the volume's space (empty: statvfs), and a RocksDB
    // Env of the test's (a file system that fails writes on demand).
    DiskProbe disk_probe;
    std::shared_ptr<rocksdb::Env> test_env;
    WalRecoveryPolicy wal_recovery = WalRecoveryPolicy::refuse;
    // Wall clock in ms since the epoch for retention (tests inject one). Empty: system clock.
    std::function<std::int64_t()> clock;
    // Testing only: reads sleep this long before each series, to exercise query deadlines.
    std::chrono::milliseconds test_read_delay{0};
};

struct EngineStats {
    std::uint64_t points_written = 0;
    std::uint64_t points_rejected_late = 0;
    std::uint64_t points_rejected_series_limit = 0;
    std::uint64_t points_rejected_invalid = 0;  // not a canonical series key
    std::uint64_t series = 0;
    // The most series the shards may hold together: max_series, or shards x
    // max_series_per_shard when that is lower.
    std::uint64_t max_series = 0;
    std::uint64_t batches = 0;             // group commits
    std::uint64_t flushes = 0;             // head flushes into chunks
    std::uint64_t windows_dropped = 0;     // by retention
    std::uint64_t windows_sealed = 0;      // sealed windows held now, their rewrite done
    std::uint64_t head_points = 0;         // accepted, not yet in chunks
    std::vector<std::size_t> queue_depth;  // per shard, points waiting
    std::vector<std::uint64_t> points_written_per_shard;
    std::vector<std::uint64_t> writer_busy_ns;  // per shard: writer thread CPU time committing
    // per shard: CPU time of the background thread turning the head into chunks and rollups
    // (and enforcing retention); it runs beside the writer, off the ingest path.
    std::vector<std::uint64_t> flusher_busy_ns;
};

// One shard's RocksDB figures (all column families together).
struct RocksDbFigures {
    std::uint64_t memtable_bytes = 0;            // rocksdb.cur-size-all-mem-tables
    std::uint64_t pending_compaction_bytes = 0;  // rocksdb.estimate-pending-compaction-bytes
    std::uint64_t delayed_write_rate = 0;        // bytes/s while writes are slowed, else 0
    bool writes_stopped = false;                 // rocksdb.is-write-stopped
    std::uint64_t wal_bytes = 0;                 // live write-ahead log files
    std::uint64_t running_compactions = 0;
};

// Memory a head point costs while it waits in memory: a 16-byte sample in a vector reserved
// to the series' previous head, with room for series whose rate changes.
inline constexpr std::size_t kHeadPointBytes = 24;

// The parts of EngineOptions::memory_budget_bytes, in percent; the rest is the caller's.
struct MemoryShares {
    static constexpr unsigned memtables = 25, block_cache = 15, head = 20, series_index = 15,
                              queries = 15;
};

// One part of the memory budget: what it may take (0: unbounded) and what it holds now.
struct MemoryPart {
    std::uint64_t limit = 0;
    std::uint64_t used = 0;
};

// Storage's memory, part by part (Engine::memory()).
struct StorageMemory {
    std::uint64_t budget = 0;  // EngineOptions::memory_budget_bytes; 0: none
    MemoryPart memtables;      // RocksDB memtables of every shard (write buffer manager)
    MemoryPart block_cache;    // data, index and filter blocks
    MemoryPart head;           // points in memory, not yet in chunks (the flushing head too)
    MemoryPart series_index;   // keys, ids and postings (an estimate from their sizes)
};

// What Engine::delete_points() did.
struct DeleteResult {
    std::uint64_t series = 0;          // series that matched
    std::uint64_t points = 0;          // points deleted
    std::uint64_t series_removed = 0;  // series left without points: gone from the index
};

// What became of one try_write(), reported once on a writer thread.
struct WriteResult {
    // ok: every accepted point is in the WAL (fsynced with FsyncPolicy::batch). Otherwise the
    // WAL write failed and no point of this write is guaranteed durable.
    Status status;
    std::size_t accepted = 0;  // points now durable
    // Older than the out-of-order window, or behind retention.
    std::size_t rejected_late = 0;
    // Would create a series over a series limit (may clear later: retention frees series).
    std::size_t rejected_series_limit = 0;
    // The same points by the limit that refused them, indexed by SeriesLimit.
    std::array<std::size_t, kSeriesLimits> rejected_by_limit{};
    std::size_t rejected_invalid = 0;  // not a canonical series key
    [[nodiscard]] bool durable() const { return status.is_ok(); }
    [[nodiscard]] std::size_t rejected() const {
        return rejected_late + rejected_series_limit + rejected_invalid;
    }
};

// Called exactly once per try_write() that returned true, on the thread that committed the
// write's last part (every part is in the WAL, or one failed): a shard's writer thread, or, with
// fsync none, the caller's own thread before try_write() returns, when its shard was idle and
// the write created no series (so a callback must not take a lock held around try_write()).
// Rejected points are a result, not a failure: a durable write may have rejected some points (also
// counted in EngineStats) while every other point is in the WAL, so a QoS 1 PUBACK may be sent;
// retrying rejected points will not help, except those over the series limit once retention frees
// series. When the write is not durable every count is 0: the caller cannot know which points
// reached the WAL.
// Held inline up to 56 bytes (the ingest unit's wrapper of its completion), so a write makes no
// allocation for its callback.
using WriteCallback = InplaceFunction<void(const WriteResult&), 56>;

struct RawSeries {
    std::string series;
    std::vector<std::int64_t> timestamps_ms;
    std::vector<double> values;
};

// A time span [start_ms, end_ms).
struct TimeSpan {
    std::int64_t start_ms = 0;
    std::int64_t end_ms = 0;
};

// What a rollup bucket knows of the samples with start <= ts < start + width.
struct BucketSummary {
    std::int64_t start = 0;
    std::uint64_t count = 0;
    double sum = 0, min = 0, max = 0, last = 0;
};

// A series' rollup buckets and, beside them, its raw points in a few short spans: what a
// windowed aggregate reads when its windows do not fall on bucket boundaries.
struct RollupSeries {
    std::string series;
    std::vector<BucketSummary> buckets;            // ascending, buckets with samples only
    std::vector<std::int64_t> edge_timestamps_ms;  // raw points in the spans, ascending
    std::vector<double> edge_values;
};

enum class Aggregation { avg, min, max, sum, count, first, last, rate };
// "avg", "min", ... as in the HTTP API; nothing for an unknown name.
std::optional<Aggregation> parse_aggregation(std::string_view name);

struct AggregateQuery {
    Selector selector;
    std::int64_t start_ms = 0;
    std::int64_t end_ms = 0;  // steps start at start_ms, start_ms + step_ms, ... < end_ms
    std::int64_t step_ms = 60'000;
    Aggregation function = Aggregation::avg;
    // Unset: one result per series. Set: series are combined per step into groups by these tag
    // names (empty: all into one group). Across a group, avg is sum/count over all points, sum
    // and count add up, min/max take the extreme, rate adds the series' rates, first/last are
    // the mean of the series' first/last values.
    std::optional<std::vector<std::string>> group_by;
    // automatic: 1-hour rollups when step and start are whole hours, 1-minute rollups when whole
    // minutes, else raw points. raw forces raw points (to check rollups against).
    enum class Source { automatic, raw } source = Source::automatic;
};

// rate at a step is (last value of the step - last value of the step before) / step seconds;
// a step whose previous step has no data has no rate.
struct AggregatedSeries {
    std::string key;  // the series key, or `{district="pudong"}` for a group
    std::vector<Tag> labels;
    std::vector<std::int64_t> timestamps_ms;  // step starts that have data
    std::vector<double> values;
};

class Engine {
  public:
    // Opens (or creates) the shards under options.directory and starts the writer threads.
    [[nodiscard]] static Result<std::unique_ptr<Engine>> open(EngineOptions options);

    // Flushes nothing more than what is queued: drains the queues, fires pending callbacks,
    // stops the writer threads and closes RocksDB.
    ~Engine();

    Engine(const Engine&) = delete;
    Engine& operator=(const Engine&) = delete;

    // Enqueues the points (all or none). Returns false, without taking the points, when a shard
    // queue they need is full, or while the data volume is under its free-space reserve (or the
    // engine is read-only): the caller pushes back and retries after on_space_available, which
    // also fires when space returns. A write to a failed shard (StorageHealth) is taken and
    // fails (not durable).
    // On true the points have been moved out and `points` is left empty; `done` will fire (see
    // WriteCallback). An empty `points` fires `done` with an ok, empty result at once on the
    // calling thread. One call larger than a whole shard queue is let in when that queue is empty.
    // Thread safe. Points of one series keep their order. `admission`, when set, is asked before
    // each series the write would create (see SeriesAdmission) and is held until `done` fired.
    [[nodiscard]] bool try_write(std::vector<Point>& points, WriteCallback done,
                                 std::shared_ptr<SeriesAdmission> admission = nullptr);
    // Group commit on the producer's side: after defer_commits(), this thread's try_write()
    // calls queue their points without committing them, and commit_deferred() commits what each
    // shard touched holds, in one WAL write per shard (see WriteCallback for the thread). For a
    // thread that takes many writes in one go: an I/O thread serving the connections one
    // readiness wake-up found readable. Writes still queued are committed by the shard's writer
    // within 200 ms whatever happens. Per thread; commit_deferred() ends the deferral.
    void defer_commits();
    void commit_deferred();

    // Queries. Each is bounded by a QueryBudget: series matched, points read, memory held
    // (charged before it is allocated, steps without data cost nothing), a deadline and a
    // cancellation flag, checked between series and per chunk of points; the first limit met
    // fails the query (limit_exceeded, or busy for the deadline, cancellation and the shared
    // query memory) and budget.exceeded() names it. What the result holds stays charged to the
    // budget until the budget is destroyed, so a caller can charge its answer on top. Matchers
    // are evaluated outside every lock a shard's writer takes. Thread safe; read what is
    // committed. The overloads with QueryLimits run under a budget of their own.

    // Raw points of every series matching the selector with start <= ts < end, ordered by series
    // key then time.
    [[nodiscard]] Result<std::vector<RawSeries>> query_raw(const Selector& selector,
                                                           std::int64_t start_ms,
                                                           std::int64_t end_ms,
                                                           QueryBudget& budget) const;
    [[nodiscard]] Result<std::vector<RawSeries>> query_raw(const Selector& selector,
                                                           std::int64_t start_ms,
                                                           std::int64_t end_ms,
                                                           const QueryLimits& limits = {}) const;

    // Series keys matching the selector, sorted.
    [[nodiscard]] Result<std::vector<std::string>> series(const Selector& selector,
                                                          QueryBudget& budget) const;
    [[nodiscard]] Result<std::vector<std::string>> series(const Selector& selector,
                                                          const QueryLimits& limits = {}) const;

    // Aggregated range query across matching series, fanned out to the shards in parallel and
    // merged; ordered by key.
    [[nodiscard]] Result<std::vector<AggregatedSeries>> query_aggregate(const AggregateQuery& query,
                                                                        QueryBudget& budget) const;
    [[nodiscard]] Result<std::vector<AggregatedSeries>> query_aggregate(
        const AggregateQuery& query, const QueryLimits& limits = {}) const;

    // Rollup buckets of `width_ms` (60,000 or 3,600,000) with start_ms <= bucket start < end_ms
    // (both multiples of the width; the head included) and raw points in `raw_spans` (any
    // spans: sorted and merged here) of every series matching the selector, ordered by key.
    // Series with neither are left out. Buckets count as points.
    [[nodiscard]] Result<std::vector<RollupSeries>> query_rollups(
        const Selector& selector, std::int64_t width_ms, std::int64_t start_ms, std::int64_t end_ms,
        std::vector<TimeSpan> raw_spans, QueryBudget& budget) const;

    // Values of tag `name` ("__name__" for measurements) among series matching the selector,
    // sorted.
    [[nodiscard]] Result<std::vector<std::string>> label_values(std::string_view name,
                                                                const Selector& selector,
                                                                QueryBudget& budget) const;
    [[nodiscard]] Result<std::vector<std::string>> label_values(
        std::string_view name, const Selector& selector, const QueryLimits& limits = {}) const;

    [[nodiscard]] EngineStats stats() const;
    // Memory held by each budgeted part, and its limit. Thread safe, cheap (atomics and the
    // cache's counters).
    [[nodiscard]] StorageMemory memory() const;
    [[nodiscard]] unsigned shard_count() const;
    // Whether writes are taken, and why not. Thread safe, cheap (atomics and a short lock).
    [[nodiscard]] StorageHealth health() const;
    // health() in words, one line per problem (empty: writable), for /readyz and the log.
    [[nodiscard]] std::vector<std::string> problems() const;

    // Operations hooks (admin endpoints, tests, the bench). Each runs on the shards' writer or
    // flush threads and returns when done. flush(): head into chunks and rollups now. compact():
    // flush, then a full RocksDB compaction. enforce_retention(): drop expired windows now.
    [[nodiscard]] Status flush();
    [[nodiscard]] Status compact();
    void enforce_retention();
    // Bytes of SST files on disk (excludes the WAL), over all shards.
    [[nodiscard]] std::uint64_t disk_bytes() const;
    // Writes a consistent copy of every shard (RocksDB checkpoints: hard links where the file
    // system allows, so cheap) plus the engine's metadata into `target`, which must not exist.
    // Every write whose callback fired before the call is in the copy. Restore it with
    // restore_checkpoint(), or open the copy itself with Engine::open. Thread safe.
    [[nodiscard]] Status checkpoint(const std::filesystem::path& target) const;
    // Deletes every point with start <= ts < end of the series matching `selector`, and their
    // rollups; a series left without any point is removed from the index (queries no longer
    // list it; a later reading creates it anew). Afterwards new readings are judged late only
    // against the points that are left, so a series poisoned by a reading stamped far in the
    // future accepts current readings again once that reading is deleted. Each shard holding a
    // match first flushes its head into chunks, then rewrites every time window that held
    // deleted points, one atomic write per series (fsynced with FsyncPolicy::batch); meanwhile
    // its writer takes no writes (producers are pushed back), so the call costs about a flush.
    // A failure leaves each series either as it was or fully rewritten. Thread safe.
    [[nodiscard]] Result<DeleteResult> delete_points(const Selector& selector,
                                                     std::int64_t start_ms, std::int64_t end_ms);
    // What each shard's recovery found in its write-ahead log at open, one per shard. Thread
    // safe (fixed after open).
    [[nodiscard]] std::vector<WalRecovery> wal_recovery() const;
    // RocksDB health figures of every shard, for monitoring. Thread safe; reads properties and
    // lists the shard directories (cheap, but not for a hot path).
    [[nodiscard]] std::vector<RocksDbFigures> rocksdb_figures() const;
    // The shard a series key belongs to (hash of its tag part).
    [[nodiscard]] unsigned shard_of(std::string_view series_key) const;
    // Thread safe. The reference of the series `key` once its first write is in the WAL; none
    // for a series storage does not hold (yet). Takes the shard index's lock shared: resolve
    // once per series and keep the reference, not once per point.
    [[nodiscard]] SeriesRef find_series(std::string_view key) const;
    // Thread safe. Grows whenever series are deleted: a producer keeping references drops them
    // when it changes (they would still write, but into a series deleted and created anew).
    [[nodiscard]] std::uint64_t series_epoch() const;

  private:
    struct Impl;
    explicit Engine(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

// Makes `data_dir` a copy of a checkpoint written by Engine::checkpoint(), ready for
// Engine::open. Fails with invalid_argument, touching nothing, when `checkpoint` is not one (no
// engine metadata, or a shard it names is missing) or when `data_dir` exists and is not empty.
// SST files are hard-linked where the file system allows (they are immutable), every other file
// is copied, so the checkpoint stays usable. On an I/O failure (io_error) whatever it wrote into
// `data_dir` is removed again. No engine may have `data_dir` open meanwhile.
[[nodiscard]] Status restore_checkpoint(const std::filesystem::path& checkpoint,
                                        const std::filesystem::path& data_dir);

}  // namespace citygate::storage
