// Bounds on what one query may hold and how long it may run, and on the memory of every running
// query together. Reads charge a QueryBudget for memory before they allocate it and check it
// between series and every chunk of points; the first limit a query meets ends the whole query.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>

#include "storage/status.hpp"

namespace citygate::storage {

// One query's limits; a query beyond one fails, naming it. Series, points and memory give
// limit_exceeded; the time limit gives busy.
struct QueryLimits {
    std::size_t max_series = 10'000;
    // Raw points read, or rollup buckets when aggregating from rollups, over all shards.
    std::size_t max_points = 5'000'000;
    // Memory the query holds at once: points and buckets read, partial aggregates, the result
    // and what the caller charges for its answer. 512 MiB: a raw query at max_points holds
    // 16 bytes a point as read and about 35 more as JSON, ~255 MB; twice that leaves room for
    // long series keys and group labels.
    std::size_t max_bytes = std::size_t{512} << 20;
    std::chrono::milliseconds timeout{0};  // from the start the budget is given; 0: none
};

// Memory every running query holds together; a budget that cannot get room in it fails with
// busy. Budgets take it in grants (1/64 of the capacity, 4 KiB to 4 MiB) so running queries
// rarely meet on its lock. Thread safe; must outlive the budgets that use it.
class QueryMemory {
  public:
    // `wait`: how long a query that holds nothing yet waits for room before it is refused.
    explicit QueryMemory(std::size_t capacity_bytes,
                         std::chrono::milliseconds wait = std::chrono::seconds(1));
    QueryMemory(const QueryMemory&) = delete;
    QueryMemory& operator=(const QueryMemory&) = delete;

    std::size_t capacity() const { return capacity_; }
    std::size_t in_use() const;

  private:
    friend class QueryBudget;
    // Takes `bytes` if they fit, waiting for room until `until` (not at all when it has passed).
    bool take(std::size_t bytes, std::chrono::steady_clock::time_point until);
    void give_back(std::size_t bytes);

    const std::size_t capacity_;
    const std::size_t grant_;
    const std::chrono::milliseconds wait_;
    mutable std::mutex mutex_;
    std::condition_variable room_;
    std::size_t in_use_ = 0;
};

// One query's budget: memory held (against QueryLimits::max_bytes and the shared QueryMemory),
// points read, the deadline and a cancellation flag. Thread safe: a query's shard reads charge
// it from several threads. Give it back by destroying it: the shared memory is returned then.
class QueryBudget {
  public:
    using Clock = std::chrono::steady_clock;
    // Which limit ended the query.
    enum class Limit { none, series, points, bytes, shared_bytes, timeout, cancelled };

    // `shared` and `cancelled` may be null; both must outlive the budget. The deadline is
    // `started` + limits.timeout. `cancelled`, once true, ends the query (server shutting down).
    explicit QueryBudget(QueryLimits limits = {}, QueryMemory* shared = nullptr,
                         Clock::time_point started = Clock::now(),
                         const std::atomic<bool>* cancelled = nullptr);
    ~QueryBudget();
    QueryBudget(const QueryBudget&) = delete;
    QueryBudget& operator=(const QueryBudget&) = delete;

    const QueryLimits& limits() const { return limits_; }

    // Takes the query's first grant of shared memory, waiting for room up to the shared
    // memory's wait (never past the deadline); busy when there is none. The only call that
    // waits: every query entry point calls it first, before any lock. Idempotent.
    [[nodiscard]] Status admit();
    // Counts `bytes` the caller is about to allocate; call before allocating. Fails, counting
    // nothing, past max_bytes (limit_exceeded) or when the shared memory has no room (busy,
    // without waiting), and whenever check() would.
    [[nodiscard]] Status charge(std::size_t bytes);
    // Makes room for `extra` more elements in `container` (a vector or string), charging its
    // growth first; grows geometrically like push_back would.
    template <typename Container>
    [[nodiscard]] Status grow(Container& container, std::size_t extra);
    // Memory charged before that the caller freed again.
    void release(std::size_t bytes);
    // Counts points (or rollup buckets) read; limit_exceeded past max_points.
    [[nodiscard]] Status count_points(std::size_t points);
    // The series the selector matched; limit_exceeded past max_series.
    [[nodiscard]] Status count_series(std::size_t series);
    // busy past the deadline or once cancelled; after any failure, that failure again (so the
    // other shards of a failed query stop too). Cheap: call between series and per chunk.
    [[nodiscard]] Status check();

    // The limit that ended the query; none while it runs.
    Limit exceeded() const;
    std::size_t held() const;
    std::size_t peak() const;

  private:
    Status fail_locked(Limit limit, Status status);
    Status check_locked(Clock::time_point now);

    const QueryLimits limits_;
    QueryMemory* const shared_;
    const Clock::time_point deadline_;
    const std::atomic<bool>* const cancelled_;

    mutable std::mutex mutex_;
    std::size_t held_ = 0;
    std::size_t peak_ = 0;
    std::size_t reserved_ = 0;  // taken from shared_, at least held_
    bool admitted_ = false;
    std::atomic<std::size_t> points_{0};
    std::atomic<bool> failed_{false};
    Limit limit_ = Limit::none;
    Status failure_;
};

template <typename Container>
Status QueryBudget::grow(Container& container, std::size_t extra) {
    const std::size_t size = container.size();
    const std::size_t capacity = container.capacity();
    if (extra <= capacity - size) return Status::ok();
    constexpr std::size_t element = sizeof(typename Container::value_type);
    const std::size_t most = SIZE_MAX / element;
    std::size_t wanted = extra > most - size ? most : size + extra;
    wanted = std::max(wanted, capacity > most / 2 ? most : capacity * 2);
    if (auto status = charge((wanted - capacity) * element); !status.is_ok()) return status;
    container.reserve(wanted);
    return Status::ok();
}

}  // namespace citygate::storage
