// The time-series engine: samples in, durable in the WAL before the write callback fires,
// queries out. Knows nothing of MQTT.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "storage/selector.hpp"
#include "storage/status.hpp"

namespace citygate::storage {

// One reading. `series` is the canonical series key built by format_series_key():
// `measurement{tag="value",...}` with tags sorted by name.
struct Point {
    std::string series;
    std::int64_t timestamp_ms = 0;
    double value = 0;
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

struct EngineOptions {
    std::filesystem::path directory;
    unsigned shards = 0;                             // 0: one per core
    std::size_t queue_capacity = 65536;              // points waiting per shard
    FsyncPolicy fsync = FsyncPolicy::none;
    std::chrono::milliseconds partition_window = std::chrono::hours(24);
    std::chrono::milliseconds out_of_order_window = std::chrono::hours(1);
    std::chrono::milliseconds retention = std::chrono::hours(24 * 30);  // 0: keep forever
    std::size_t max_series_per_shard = 2'000'000;
    // Called from writer threads; must be cheap and thread safe. May be empty.
    std::function<void(const BatchReport&)> on_batch;
    // Called from a writer thread after it drained its queue, so producers that were refused by
    // try_write() can try again. Must be cheap and thread safe. May be empty.
    std::function<void()> on_space_available;
};

struct EngineStats {
    std::uint64_t points_written = 0;
    std::uint64_t points_rejected_late = 0;
    std::uint64_t points_rejected_series_limit = 0;
    std::uint64_t series = 0;
    std::vector<std::size_t> queue_depth;  // per shard, points waiting
};

// Called on a writer thread once every point of one try_write() is in the WAL (status ok), or
// when the write failed (status carries why). Called exactly once.
using WriteCallback = std::function<void(Status)>;

struct RawSeries {
    std::string series;
    std::vector<std::int64_t> timestamps_ms;
    std::vector<double> values;
};

struct QueryLimits {
    std::size_t max_series = 10'000;
    std::size_t max_points = 5'000'000;
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
    // queue they need is full: the caller pushes back and retries after on_space_available.
    // Thread safe. Points of one series keep their order.
    [[nodiscard]] bool try_write(std::vector<Point>& points, WriteCallback done);

    // Raw points of every series matching the selector with start <= ts < end, ordered by series
    // key then time. Thread safe; reads what is committed.
    [[nodiscard]] Result<std::vector<RawSeries>> query_raw(const Selector& selector,
                                                           std::int64_t start_ms,
                                                           std::int64_t end_ms,
                                                           const QueryLimits& limits = {}) const;

    // Series keys matching the selector.
    [[nodiscard]] Result<std::vector<std::string>> series(const Selector& selector,
                                                          const QueryLimits& limits = {}) const;

    [[nodiscard]] EngineStats stats() const;
    [[nodiscard]] unsigned shard_count() const;

private:
    struct Impl;
    explicit Engine(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

}  // namespace citygate::storage
