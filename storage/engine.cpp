// Engine: shard routing, the all-or-none multi-shard write, and queries fanned out to shards.
#include "storage/engine.hpp"

#include <rocksdb/cache.h>
#include <rocksdb/write_buffer_manager.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <future>
#include <iterator>
#include <limits>
#include <map>
#include <thread>
#include <type_traits>

#include "storage/cpu_limit.hpp"
#include "storage/detail/disk_guard.hpp"
#include "storage/detail/keys.hpp"
#include "storage/detail/layout.hpp"
#include "storage/detail/matcher.hpp"
#include "storage/detail/shard.hpp"

namespace citygate::storage {

using detail::RollupBucket;
using detail::Sample;
using detail::Shard;

struct Engine::Impl {
    EngineOptions options;
    // Before shards: the shards use it until they are closed.
    std::unique_ptr<detail::DiskGuard> disk;
    std::vector<std::unique_ptr<Shard>> shards;
    std::shared_ptr<std::atomic<std::uint64_t>> total_series;  // all shards' series
    std::shared_ptr<std::atomic<std::uint64_t>> index_bytes;   // all shards' series indexes
    std::shared_ptr<rocksdb::Cache> cache;
    std::shared_ptr<rocksdb::WriteBufferManager> memtable_budget;  // null: unbounded
    StorageMemory limits;                                          // each part's limit (used: 0)
    // Set once the shards are open: the guard's transitions reach them only then.
    std::atomic<bool> started{false};

    void report(const HealthEvent& event) const {
        if (options.on_health_event) options.on_health_event(event);
    }
    // Guard thread or a writer: the volume went under its reserve or came back above it.
    void on_disk_change(bool full, const DiskFigures& f) {
        auto mib = [](std::uint64_t bytes) {
            return std::to_string((bytes + (1 << 19)) >> 20) + " MiB";
        };
        std::string where = options.directory.string();
        if (full) {
            report({HealthEvent::Kind::disk_full, 0,
                    "data volume of " + where + " is under its free-space reserve (" +
                        mib(f.free_bytes) + " free of " + mib(f.volume_bytes) + ", reserve " +
                        mib(f.reserve_bytes) +
                        "): writes are held and not acknowledged until space is freed"});
            return;
        }
        report({HealthEvent::Kind::disk_space_returned, 0,
                "data volume of " + where + " has free space again (" + mib(f.free_bytes) +
                    " free, reserve " + mib(f.reserve_bytes) + "): held writes proceed"});
        if (!started.load(std::memory_order_acquire)) return;
        for (auto& shard : shards) {
            if (shard->read_only()) shard->request_reopen();
            shard->wake();
        }
        // Producers pushed back while the volume was full retry now.
        if (options.on_space_available) options.on_space_available();
    }
};

namespace {

constexpr std::int64_t kMinute = 60'000;
constexpr std::int64_t kHour = 3'600'000;

// Stable across builds and processes, which the on-disk placement of series needs (std::hash
// promises no such thing). Eight bytes per step with a multiply-xorshift mix: bytewise FNV-1a
// cost 10% of a producer thread's time in the bench.
std::uint64_t stable_hash(std::string_view s) {
    constexpr std::uint64_t k = 0x9e3779b97f4a7c15ull;
    std::uint64_t h = s.size() * k;
    std::size_t i = 0;
    for (; i + 8 <= s.size(); i += 8) {
        std::uint64_t w;
        std::memcpy(&w, s.data() + i, 8);
        h = (h ^ w) * k;
        h ^= h >> 32;
    }
    std::uint64_t tail = 0;
    std::memcpy(&tail, s.data() + i, s.size() - i);
    h = (h ^ tail) * k;
    h ^= h >> 29;
    h *= 0xbf58476d1ce4e5b9ull;
    return h ^ (h >> 32);
}

// The shard count is fixed when a directory is created: series are placed by hash modulo it.
Result<unsigned> settle_shard_count(const std::filesystem::path& dir, unsigned wanted) {
    auto meta = dir / detail::kMetaFile;
    if (auto found = detail::read_shard_count(dir)) {
        unsigned stored = *found;
        if (wanted != 0 && wanted != stored) {
            return Status::error(Status::Code::invalid_argument,
                                 "storage: " + dir.string() + " was created with " +
                                     std::to_string(stored) + " shards, not " +
                                     std::to_string(wanted));
        }
        return stored;
    }
    unsigned count = wanted != 0 ? wanted : usable_cpus();  // the cgroup's CPU limit included
    std::ofstream out(meta, std::ios::trunc);
    out << count << "\n";
    out.flush();
    if (!out)
        return Status::error(Status::Code::io_error, "storage: cannot write " + meta.string());
    return count;
}

// Runs fn(shard index) for the shards that have work, in parallel when several do: a query
// that touches one shard (one series) pays no thread start.
template <typename Fn>
void for_each_shard(const std::vector<std::vector<std::uint64_t>>& ids, Fn fn) {
    std::vector<std::size_t> busy;
    for (std::size_t i = 0; i < ids.size(); ++i) {
        if (!ids[i].empty()) busy.push_back(i);
    }
    std::vector<std::future<void>> futures;
    for (std::size_t b = 1; b < busy.size(); ++b) {
        futures.push_back(std::async(std::launch::async, [&fn, i = busy[b]] { fn(i); }));
    }
    if (!busy.empty()) fn(busy[0]);
    for (auto& f : futures)
        f.get();
}

// Matches series in every shard; fails when more than the budget's series limit match.
Status match_all(const std::vector<std::unique_ptr<Shard>>& shards, const Selector& selector,
                 QueryBudget& budget, std::vector<std::vector<std::uint64_t>>& ids) {
    if (auto s = budget.admit(); !s.is_ok()) return s;
    auto matchers = detail::compile(selector);
    if (!matchers.is_ok()) return matchers.status();
    if (auto s = budget.charge(shards.size() * sizeof(ids[0])); !s.is_ok()) return s;
    ids.assign(shards.size(), {});
    // Postings lookups take microseconds: sequential beats starting threads.
    std::size_t total = 0;
    for (std::size_t i = 0; i < shards.size(); ++i) {
        if (auto s = shards[i]->match(matchers.value(), budget, ids[i]); !s.is_ok()) return s;
        total += ids[i].size();
        if (auto s = budget.count_series(total); !s.is_ok()) return s;
    }
    return Status::ok();
}

// The status a query ends with: the budget's first failure (the limit that stopped it) when it
// has one, else the first shard's error.
Status first_failure(QueryBudget& budget, const std::vector<Status>& statuses) {
    if (budget.exceeded() != QueryBudget::Limit::none) return budget.check();
    for (const auto& s : statuses) {
        if (!s.is_ok()) return s;
    }
    return Status::ok();
}

}  // namespace

const char* series_limit_name(SeriesLimit limit) {
    switch (limit) {
        case SeriesLimit::none:
            return "none";
        case SeriesLimit::global:
            return "global";
        case SeriesLimit::shard:
            return "shard";
        case SeriesLimit::identity:
            return "identity";
        case SeriesLimit::connection:
            return "connection";
        case SeriesLimit::memory:
            return "memory";
    }
    return "unknown";
}

std::optional<Aggregation> parse_aggregation(std::string_view name) {
    static const std::pair<std::string_view, Aggregation> names[] = {
        {"avg", Aggregation::avg},   {"min", Aggregation::min},     {"max", Aggregation::max},
        {"sum", Aggregation::sum},   {"count", Aggregation::count}, {"first", Aggregation::first},
        {"last", Aggregation::last}, {"rate", Aggregation::rate}};
    for (auto& [n, a] : names) {
        if (n == name) return a;
    }
    return std::nullopt;
}

Engine::Engine(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Engine::~Engine() {
    impl_->started = false;
    impl_->disk->stop();  // no transition reaches the shards while they close
    // Each shard drains its queue (firing callbacks) and flushes its head before closing.
    impl_->shards.clear();
}

Result<std::unique_ptr<Engine>> Engine::open(EngineOptions options) {
    auto invalid = [](const std::string& what) {
        return Status::error(Status::Code::invalid_argument, "storage: " + what);
    };
    if (options.directory.empty()) return invalid("no directory");
    std::int64_t window = options.partition_window.count();
    if (window <= 0 || window % kHour != 0) return invalid("partition_window must be whole hours");
    if (options.out_of_order_window.count() < 0) return invalid("negative out_of_order_window");
    if (options.queue_capacity == 0) return invalid("queue_capacity must be positive");
    if (options.target_chunk_points == 0) return invalid("target_chunk_points must be positive");
    if (options.minute_block_min_points == 0) {
        return invalid("minute_block_min_points must be positive");
    }
    std::error_code ec;
    std::filesystem::create_directories(options.directory, ec);
    if (ec) return Status::error(Status::Code::io_error, "storage: " + ec.message());
    auto count = settle_shard_count(options.directory, options.shards);
    if (!count.is_ok()) return count.status();
    options.shards = count.value();
    if (!options.clock) {
        options.clock = [] {
            return std::chrono::duration_cast<std::chrono::milliseconds>(
                       std::chrono::system_clock::now().time_since_epoch())
                .count();
        };
    }

    auto impl = std::make_unique<Impl>();
    impl->total_series = std::make_shared<std::atomic<std::uint64_t>>(0);
    impl->options.on_health_event = options.on_health_event;
    impl->options.on_space_available = options.on_space_available;
    impl->options.directory = options.directory;
    detail::DiskGuard::Options guard;
    guard.directory = options.directory;
    guard.reserve_bytes = options.min_free_bytes;
    guard.interval = options.disk_poll_interval;
    guard.probe = options.disk_probe;
    guard.on_change = [raw = impl.get()](bool full, const DiskFigures& f) {
        raw->on_disk_change(full, f);
    };
    impl->disk = std::make_unique<detail::DiskGuard>(std::move(guard));
    const std::uint64_t volume = impl->disk->volume_bytes();
    // A volume already under its reserve opens read-only: queries work, writes wait for space
    // (RocksDB's writable open replays and flushes the WAL and writes a new MANIFEST, which a
    // full disk fails, or worse).
    const bool read_only = impl->disk->full();
    if (volume > 0) {
        // The head lives in the batch log (about 10 bytes a point) until it is flushed: on a
        // small volume it must leave room for chunks, so it is flushed at a sixteenth of a
        // shard's share of the volume.
        const std::uint64_t share = volume / options.shards;
        options.head_flush_points = static_cast<std::size_t>(std::min<std::uint64_t>(
            options.head_flush_points, std::max<std::uint64_t>(16384, share / 160)));
    }
    // The memory budget: each part its share, or its own option where that is lower.
    StorageMemory& limits = impl->limits;
    const std::uint64_t budget = options.memory_budget_bytes;
    auto share = [budget](unsigned percent, std::uint64_t own) {
        if (budget == 0) return own;
        const std::uint64_t part = budget / 100 * percent;
        return own == 0 ? part : std::min(own, part);
    };
    limits.budget = budget;
    limits.memtables.limit = share(MemoryShares::memtables, options.memtable_budget_bytes);
    limits.block_cache.limit = share(MemoryShares::block_cache, options.block_cache_bytes);
    // Two heads a shard at most: the one filling and the one its flush thread turns into chunks.
    const std::uint64_t head_bytes = std::uint64_t{2} * options.shards * kHeadPointBytes;
    if (budget > 0) {
        const std::uint64_t points = budget / 100 * MemoryShares::head / head_bytes;
        options.head_flush_points = static_cast<std::size_t>(std::min<std::uint64_t>(
            options.head_flush_points, std::max<std::uint64_t>(4096, points)));
    }
    limits.head.limit = options.head_flush_points * head_bytes;
    limits.series_index.limit = share(MemoryShares::series_index, 0);
    // Under a budget, memtables are charged to the block cache (dummy entries of their size):
    // data blocks, index and filter blocks and memtables together stay within the cache's
    // capacity, and blocks give way while memtables are large. Index and filter blocks stay in
    // the high-priority pool, ahead of data blocks.
    rocksdb::LRUCacheOptions cache_options;
    cache_options.capacity = limits.block_cache.limit;
    cache_options.high_pri_pool_ratio = 0.25;
    const bool charged = budget > 0 && limits.memtables.limit > 0;
    if (charged) cache_options.capacity += limits.memtables.limit;
    impl->cache = rocksdb::NewLRUCache(cache_options);
    if (limits.memtables.limit > 0) {
        impl->memtable_budget = std::make_shared<rocksdb::WriteBufferManager>(
            limits.memtables.limit, charged ? impl->cache : nullptr);
    }
    impl->index_bytes = std::make_shared<std::atomic<std::uint64_t>>(0);
    std::vector<detail::ShardOptions> shard_options;
    for (unsigned i = 0; i < options.shards; ++i) {
        detail::ShardOptions so;
        so.index = i;
        so.directory = options.directory;
        so.queue_capacity = options.queue_capacity;
        so.fsync = options.fsync;
        so.window_ms = window;
        so.out_of_order_ms = options.out_of_order_window.count();
        so.retention_ms = options.retention.count();
        so.seal_windows = options.seal_windows;
        so.minute_block_min_points = options.minute_block_min_points;
        so.max_series = options.max_series_per_shard;
        so.total_series = impl->total_series;
        so.max_total_series = options.max_series;
        so.head_flush_points = options.head_flush_points;
        so.head_flush_interval = options.head_flush_interval;
        so.commit_delay = options.commit_delay;
        so.memtable_idle_flush = options.memtable_idle_flush;
        so.target_chunk_points = options.target_chunk_points;
        so.clock = options.clock;
        so.on_batch = options.on_batch;
        so.on_space_available = options.on_space_available;
        so.block_cache = impl->cache;
        so.write_buffer_manager = impl->memtable_budget;
        so.index_bytes = impl->index_bytes;
        so.max_index_bytes = limits.series_index.limit;
        so.tuning = options.tuning;
        so.wal_recovery = options.wal_recovery;
        so.test_read_delay = options.test_read_delay;
        so.disk = impl->disk.get();
        so.volume_bytes = volume;
        so.shard_count = options.shards;
        so.read_only = read_only;
        so.env = options.test_env;
        so.on_health_event = options.on_health_event;
        shard_options.push_back(std::move(so));
    }
    // Shards open in parallel: each loads its series index and replays its log, which is what a
    // start with millions of series waits for (4 M series, 2 shards: 25.7 s one after the other).
    std::vector<std::future<Result<std::unique_ptr<Shard>>>> opening;
    const unsigned threads = usable_cpus();
    std::vector<Result<std::unique_ptr<Shard>>> opened;
    for (std::size_t first = 0; first < shard_options.size(); first += threads) {
        std::size_t last = std::min(shard_options.size(), first + threads);
        for (std::size_t i = first; i < last; ++i) {
            opening.push_back(std::async(std::launch::async, [&so = shard_options[i]] {
                return Shard::open(std::move(so));
            }));
        }
        for (auto& f : opening)
            opened.push_back(f.get());
        opening.clear();
    }
    for (auto& shard : opened) {
        if (!shard.is_ok()) return shard.status();  // the others close as `opened` goes
        impl->shards.push_back(std::move(shard.value()));
    }
    impl->options = std::move(options);
    impl->started = true;
    impl->disk->start();
    // Space may have returned while the shards opened.
    if (read_only) {
        impl->disk->poll_now();
        if (!impl->disk->full()) {
            for (auto& shard : impl->shards) {
                if (shard->read_only()) shard->request_reopen();
            }
        }
    }
    return std::unique_ptr<Engine>(new Engine(std::move(impl)));
}

unsigned Engine::shard_count() const {
    return static_cast<unsigned>(impl_->shards.size());
}

unsigned Engine::shard_of(std::string_view series_key) const {
    // Hash the tags, not the measurement: the fields of one device's message share their tags,
    // so one MQTT message usually lands in one shard and needs no cross-shard join.
    auto brace = series_key.find('{');
    auto tags = brace == std::string_view::npos ? series_key : series_key.substr(brace);
    return static_cast<unsigned>(stable_hash(tags) % impl_->shards.size());
}

SeriesRef Engine::find_series(std::string_view key) const {
    const unsigned shard = shard_of(key);
    auto id = impl_->shards[shard]->find_series(key);
    if (!id) return {};
    return {*id, shard};
}

std::uint64_t Engine::series_epoch() const {
    std::uint64_t epoch = 0;
    for (const auto& shard : impl_->shards)
        epoch += shard->series_erased();
    return epoch;
}

namespace {

// The writes this thread deferred (Engine::defer_commits), by shard.
struct DeferredWrites {
    const Engine* engine = nullptr;
    std::vector<unsigned> shards;
};
thread_local DeferredWrites deferred_writes;

// The tables of a write split across shards, kept from one write to the next on each thread. A
// write borrows them (a callback fired by its commit may write again on the same thread, and
// then finds none and makes its own) and gives them back when it returns.
struct SplitTables {
    std::vector<unsigned> placement;  // each point's shard
    std::vector<std::size_t> per_shard;
    std::vector<std::vector<Point>> split;
};
thread_local SplitTables split_tables;

class BorrowedSplitTables {
  public:
    BorrowedSplitTables() : tables_(std::move(split_tables)) {}
    ~BorrowedSplitTables() { split_tables = std::move(tables_); }
    BorrowedSplitTables(const BorrowedSplitTables&) = delete;
    BorrowedSplitTables& operator=(const BorrowedSplitTables&) = delete;
    SplitTables* operator->() { return &tables_; }

  private:
    SplitTables tables_;
};

}  // namespace

void Engine::defer_commits() {
    deferred_writes.engine = this;
}

void Engine::commit_deferred() {
    if (deferred_writes.engine != this) return;
    deferred_writes.engine = nullptr;
    for (unsigned s : deferred_writes.shards)
        impl_->shards[s]->commit_queued();
    deferred_writes.shards.clear();
}

bool Engine::try_write(std::vector<Point>& points, WriteCallback done,
                       std::shared_ptr<SeriesAdmission> admission) {
    if (points.empty()) {
        if (done) done(WriteResult{});
        return true;
    }
    auto& shards = impl_->shards;
    // Under the free-space reserve nothing new is taken: the producer pushes back (stops
    // reading its socket) and retries on on_space_available, which fires when space returns.
    if (impl_->disk->full()) return false;
    const std::size_t n = shards.size();
    auto shard_of_point = [this](const Point& p) {
        return p.ref.valid() ? p.ref.shard : shard_of(p.series);
    };
    const bool defer = deferred_writes.engine == this;
    // `refill` gets a spare vector of the shard's in return (see Shard::push).
    auto hand_over = [&](unsigned s, detail::QueuedWrite write, std::vector<Point>& refill) {
        shards[s]->push(std::move(write), false, &refill);
        if (!defer) return shards[s]->commit_queued();
        auto& touched = deferred_writes.shards;
        if (std::find(touched.begin(), touched.end(), s) == touched.end()) touched.push_back(s);
    };
    // Most writes are one device's readings, in one shard (shard_of hashes the tags): no
    // placement tables and no join for those.
    const unsigned first = shard_of_point(points[0]);
    bool one_shard = true;
    for (std::size_t i = 1; i < points.size() && one_shard; ++i)
        one_shard = shard_of_point(points[i]) == first;
    if (one_shard) {
        auto& shard = *shards[first];
        if (shard.read_only() || !shard.try_reserve(points.size())) return false;
        std::vector<Point> taken = std::move(points);
        points.clear();
        hand_over(first, {std::move(taken), nullptr, std::move(done), std::move(admission)},
                  points);
        return true;
    }
    BorrowedSplitTables tables;
    auto& placement = tables->placement;
    auto& per_shard = tables->per_shard;
    auto& split = tables->split;
    placement.resize(points.size());
    per_shard.assign(n, 0);
    for (std::size_t i = 0; i < points.size(); ++i) {
        placement[i] = shard_of_point(points[i]);
        ++per_shard[placement[i]];
    }
    // Reserve room in every shard involved, in shard order; undo on the first refusal, so the
    // write is all or none without holding locks across shards.
    for (std::size_t s = 0; s < n; ++s) {
        if (per_shard[s] > 0 && shards[s]->read_only()) {
            for (std::size_t u = 0; u < s; ++u) {
                if (per_shard[u] > 0) shards[u]->unreserve(per_shard[u]);
            }
            return false;
        }
        if (per_shard[s] == 0 || shards[s]->try_reserve(per_shard[s])) continue;
        for (std::size_t u = 0; u < s; ++u) {
            if (per_shard[u] > 0) shards[u]->unreserve(per_shard[u]);
        }
        return false;
    }
    unsigned parts = 0;
    for (auto c : per_shard)
        parts += c > 0 ? 1 : 0;
    auto join = std::make_shared<detail::WriteJoin>(parts, std::move(done));
    split.resize(n);
    for (std::size_t s = 0; s < n; ++s)
        split[s].reserve(per_shard[s]);
    for (std::size_t i = 0; i < points.size(); ++i) {
        split[placement[i]].push_back(std::move(points[i]));
    }
    for (unsigned s = 0; s < n; ++s) {
        if (split[s].empty()) continue;
        std::vector<Point> part = std::move(split[s]);
        split[s].clear();
        hand_over(s, {std::move(part), join, nullptr, admission}, split[s]);
    }
    points.clear();
    return true;
}

Result<std::vector<RawSeries>> Engine::query_raw(const Selector& selector, std::int64_t start_ms,
                                                 std::int64_t end_ms, QueryBudget& budget) const {
    auto& shards = impl_->shards;
    std::vector<std::vector<std::uint64_t>> ids;
    if (auto s = match_all(shards, selector, budget, ids); !s.is_ok()) return s;
    std::vector<std::vector<detail::SeriesSamples>> found(shards.size());
    std::vector<Status> statuses(shards.size());
    for_each_shard(ids, [&](std::size_t i) {
        statuses[i] = shards[i]->read_raw(ids[i], start_ms, end_ms, budget, found[i]);
    });
    if (auto s = first_failure(budget, statuses); !s.is_ok()) return s;
    std::vector<RawSeries> out;
    for (auto& shard_found : found) {
        for (auto& s : shard_found) {
            // Each series' samples are freed as soon as they are copied out.
            const std::size_t n = s.samples.size();
            if (auto status = budget.grow(out, 1); !status.is_ok()) return status;
            if (auto status = budget.charge(n * (sizeof(std::int64_t) + sizeof(double)));
                !status.is_ok()) {
                return status;
            }
            RawSeries r;
            r.series = std::move(s.key);
            r.timestamps_ms.reserve(n);
            r.values.reserve(n);
            for (const auto& p : s.samples) {
                r.timestamps_ms.push_back(p.ts);
                r.values.push_back(p.value);
            }
            budget.release(s.samples.capacity() * sizeof(Sample));
            std::vector<Sample>().swap(s.samples);
            out.push_back(std::move(r));
        }
    }
    std::sort(out.begin(), out.end(),
              [](const RawSeries& a, const RawSeries& b) { return a.series < b.series; });
    return out;
}

Result<std::vector<RawSeries>> Engine::query_raw(const Selector& selector, std::int64_t start_ms,
                                                 std::int64_t end_ms,
                                                 const QueryLimits& limits) const {
    QueryBudget budget(limits);
    return query_raw(selector, start_ms, end_ms, budget);
}

Result<std::vector<std::string>> Engine::series(const Selector& selector,
                                                QueryBudget& budget) const {
    auto& shards = impl_->shards;
    std::vector<std::vector<std::uint64_t>> ids;
    if (auto s = match_all(shards, selector, budget, ids); !s.is_ok()) return s;
    std::vector<std::string> out;
    for (std::size_t i = 0; i < shards.size(); ++i) {
        if (auto s = budget.grow(out, ids[i].size()); !s.is_ok()) return s;
        for (auto id : ids[i]) {
            out.push_back(shards[i]->series_key(id));
            if (auto s = budget.charge(out.back().capacity()); !s.is_ok()) return s;
        }
    }
    std::sort(out.begin(), out.end());
    return out;
}

Result<std::vector<std::string>> Engine::series(const Selector& selector,
                                                const QueryLimits& limits) const {
    QueryBudget budget(limits);
    return series(selector, budget);
}

Result<std::vector<std::string>> Engine::label_values(std::string_view name,
                                                      const Selector& selector,
                                                      QueryBudget& budget) const {
    auto& shards = impl_->shards;
    std::vector<std::vector<std::uint64_t>> ids;
    if (auto s = match_all(shards, selector, budget, ids); !s.is_ok()) return s;
    std::vector<std::string> out, values;
    for (std::size_t i = 0; i < shards.size(); ++i) {
        if (auto s = shards[i]->label_values(name, ids[i], budget, values); !s.is_ok()) return s;
        if (auto s = budget.grow(out, values.size()); !s.is_ok()) return s;
        std::move(values.begin(), values.end(), std::back_inserter(out));
    }
    std::sort(out.begin(), out.end());
    out.erase(std::unique(out.begin(), out.end()), out.end());
    return out;
}

Result<std::vector<std::string>> Engine::label_values(std::string_view name,
                                                      const Selector& selector,
                                                      const QueryLimits& limits) const {
    QueryBudget budget(limits);
    return label_values(name, selector, budget);
}

namespace {

// A group's (or one series') aggregate over one step. A series contributes one per step that has
// data, so steps without data cost nothing however many the range has.
struct GroupStep {
    std::int64_t start = 0;
    std::uint64_t series = 0;  // contributing series
    RollupBucket combined;     // count/sum/min/max over all points
    double first_sum = 0, last_sum = 0, rate_sum = 0;
    std::uint64_t rates = 0;

    void merge(const GroupStep& other) {
        if (combined.count == 0) {
            combined = other.combined;
        } else {
            combined.min = std::min(combined.min, other.combined.min);
            combined.max = std::max(combined.max, other.combined.max);
            combined.sum += other.combined.sum;
            combined.count += other.combined.count;
        }
        series += other.series;
        first_sum += other.first_sum;
        last_sum += other.last_sum;
        rate_sum += other.rate_sum;
        rates += other.rates;
    }
};

double value_of(Aggregation f, const RollupBucket& b) {
    switch (f) {
        case Aggregation::avg:
            return b.sum / static_cast<double>(b.count);
        case Aggregation::min:
            return b.min;
        case Aggregation::max:
            return b.max;
        case Aggregation::sum:
            return b.sum;
        case Aggregation::count:
            return static_cast<double>(b.count);
        case Aggregation::first:
            return b.first;
        case Aggregation::last:
            return b.last;
        case Aggregation::rate:
            break;
    }
    return 0;
}

// One series' steps that have data, from its points or rollup buckets (sorted by time); the
// step before the range (from `read_start`) only gives the first step of the range its rate.
template <typename Item>
Status fold_series(const std::vector<Item>& items, const AggregateQuery& q, std::int64_t read_start,
                   QueryBudget& budget, std::vector<GroupStep>& steps) {
    steps.clear();
    for (const Item& item : items) {
        std::int64_t at;
        if constexpr (std::is_same_v<Item, Sample>) {
            at = item.ts;
        } else {
            at = item.start;
        }
        // Unsigned: read_start may be far below zero.
        const auto step = static_cast<std::uint64_t>(q.step_ms);
        const auto base = static_cast<std::uint64_t>(read_start);
        auto step_start =
            static_cast<std::int64_t>(base + (static_cast<std::uint64_t>(at) - base) / step * step);
        if (steps.empty() || steps.back().start != step_start) {
            if (auto s = budget.grow(steps, 1); !s.is_ok()) return s;
            GroupStep step;
            step.start = step_start;
            step.series = 1;
            step.combined.start = step_start;
            steps.push_back(step);
        }
        if constexpr (std::is_same_v<Item, Sample>) {
            steps.back().combined.add(item.value);
        } else {
            steps.back().combined.merge_later(item);
        }
    }
    const double step_seconds = static_cast<double>(q.step_ms) / 1000.0;
    for (std::size_t j = 0; j < steps.size(); ++j) {
        auto& g = steps[j];
        g.first_sum = g.combined.first;
        g.last_sum = g.combined.last;
        if (j > 0 && steps[j - 1].start + q.step_ms == g.start) {
            g.rate_sum = (g.combined.last - steps[j - 1].combined.last) / step_seconds;
            g.rates = 1;
        }
    }
    if (!steps.empty() && steps.front().start < q.start_ms) steps.erase(steps.begin());
    return Status::ok();
}

}  // namespace

Result<std::vector<RollupSeries>> Engine::query_rollups(const Selector& selector,
                                                        std::int64_t width_ms,
                                                        std::int64_t start_ms, std::int64_t end_ms,
                                                        std::vector<TimeSpan> raw_spans,
                                                        QueryBudget& budget) const {
    if (width_ms != kMinute && width_ms != kHour) {
        return Status::error(Status::Code::invalid_argument,
                             "query: rollups are 1-minute or 1-hour buckets");
    }
    if (detail::floor_to(start_ms, width_ms) != start_ms ||
        detail::floor_to(end_ms, width_ms) != end_ms) {
        return Status::error(Status::Code::invalid_argument,
                             "query: a rollup range starts and ends on bucket boundaries");
    }
    const auto resolution = static_cast<detail::Resolution>(width_ms);
    std::erase_if(raw_spans, [](const TimeSpan& s) { return s.end_ms <= s.start_ms; });
    std::sort(raw_spans.begin(), raw_spans.end(),
              [](const TimeSpan& a, const TimeSpan& b) { return a.start_ms < b.start_ms; });
    std::vector<TimeSpan> spans;
    for (const TimeSpan& s : raw_spans) {
        if (!spans.empty() && s.start_ms <= spans.back().end_ms) {
            spans.back().end_ms = std::max(spans.back().end_ms, s.end_ms);
        } else {
            spans.push_back(s);
        }
    }
    auto& shards = impl_->shards;
    std::vector<std::vector<std::uint64_t>> ids;
    if (auto s = match_all(shards, selector, budget, ids); !s.is_ok()) return s;
    std::vector<std::vector<RollupSeries>> found(shards.size());
    std::vector<Status> statuses(shards.size());
    for_each_shard(ids, [&](std::size_t i) {
        std::vector<std::vector<RollupBucket>> buckets(ids[i].size());
        std::vector<std::vector<Sample>> edges(ids[i].size());
        if (start_ms < end_ms) {
            statuses[i] =
                shards[i]->read_rollups(ids[i], resolution, start_ms, end_ms, budget, buckets);
        }
        if (statuses[i].is_ok() && !spans.empty())
            statuses[i] = shards[i]->read_spans(ids[i], spans, budget, edges);
        for (std::size_t s = 0; statuses[i].is_ok() && s < ids[i].size(); ++s) {
            std::erase_if(buckets[s], [](const RollupBucket& b) { return b.count == 0; });
            if (buckets[s].empty() && edges[s].empty()) continue;
            RollupSeries series;
            series.series = shards[i]->series_key(ids[i][s]);
            statuses[i] =
                budget.charge(series.series.capacity() + buckets[s].size() * sizeof(BucketSummary) +
                              edges[s].size() * (sizeof(std::int64_t) + sizeof(double)));
            if (!statuses[i].is_ok()) break;
            series.buckets.reserve(buckets[s].size());
            for (const RollupBucket& b : buckets[s])
                series.buckets.push_back({b.start, b.count, b.sum, b.min, b.max, b.last});
            series.edge_timestamps_ms.reserve(edges[s].size());
            series.edge_values.reserve(edges[s].size());
            for (const Sample& p : edges[s]) {
                series.edge_timestamps_ms.push_back(p.ts);
                series.edge_values.push_back(p.value);
            }
            budget.release(buckets[s].capacity() * sizeof(RollupBucket) +
                           edges[s].capacity() * sizeof(Sample));
            std::vector<RollupBucket>().swap(buckets[s]);
            std::vector<Sample>().swap(edges[s]);
            if (auto st = budget.grow(found[i], 1); !st.is_ok()) {
                statuses[i] = st;
                break;
            }
            found[i].push_back(std::move(series));
        }
    });
    if (auto s = first_failure(budget, statuses); !s.is_ok()) return s;
    std::vector<RollupSeries> out;
    for (auto& shard_found : found) {
        for (auto& s : shard_found)
            out.push_back(std::move(s));
    }
    std::sort(out.begin(), out.end(),
              [](const RollupSeries& a, const RollupSeries& b) { return a.series < b.series; });
    return out;
}

Result<std::vector<AggregatedSeries>> Engine::query_aggregate(const AggregateQuery& q,
                                                              QueryBudget& budget) const {
    if (q.step_ms <= 0)
        return Status::error(Status::Code::invalid_argument, "query: step must be positive");
    if (q.end_ms <= q.start_ms) return std::vector<AggregatedSeries>{};
    // In unsigned arithmetic: the span of two int64 times always fits.
    const std::uint64_t span =
        static_cast<std::uint64_t>(q.end_ms) - static_cast<std::uint64_t>(q.start_ms);
    const std::uint64_t step = static_cast<std::uint64_t>(q.step_ms);
    const std::uint64_t steps = span / step + (span % step != 0 ? 1 : 0);
    const QueryLimits& limits = budget.limits();
    if (steps > limits.max_points) {
        return Status::error(Status::Code::limit_exceeded,
                             "query: " + std::to_string(steps) + " steps, more than the limit of " +
                                 std::to_string(limits.max_points) +
                                 " points a series; widen the step or narrow the range");
    }
    auto& shards = impl_->shards;
    std::vector<std::vector<std::uint64_t>> ids;
    if (auto s = match_all(shards, q.selector, budget, ids); !s.is_ok()) return s;

    std::optional<detail::Resolution> resolution;
    if (q.source == AggregateQuery::Source::automatic) {
        if (q.step_ms % kHour == 0 && detail::floor_to(q.start_ms, kHour) == q.start_ms) {
            resolution = detail::Resolution::hour;
        } else if (q.step_ms % kMinute == 0 &&
                   detail::floor_to(q.start_ms, kMinute) == q.start_ms) {
            resolution = detail::Resolution::minute;
        }
    }
    // One step more, for rate (none before the earliest time there is).
    const std::int64_t read_start =
        q.start_ms >= INT64_MIN + q.step_ms ? q.start_ms - q.step_ms : INT64_MIN;

    using SeriesSteps = std::pair<std::string, std::vector<GroupStep>>;
    std::vector<std::vector<SeriesSteps>> folded(shards.size());
    std::vector<Status> statuses(shards.size());
    for_each_shard(ids, [&](std::size_t i) {
        auto& out = folded[i];
        auto add = [&](std::string key, const auto& items) -> Status {
            std::vector<GroupStep> steps_of;
            if (auto s = fold_series(items, q, read_start, budget, steps_of); !s.is_ok()) return s;
            if (steps_of.empty()) return Status::ok();
            if (auto s = budget.grow(out, 1); !s.is_ok()) return s;
            out.emplace_back(std::move(key), std::move(steps_of));
            return Status::ok();
        };
        if (resolution) {
            std::vector<std::vector<RollupBucket>> buckets;
            statuses[i] =
                shards[i]->read_rollups(ids[i], *resolution, read_start, q.end_ms, budget, buckets);
            for (std::size_t s = 0; statuses[i].is_ok() && s < ids[i].size(); ++s) {
                if (buckets[s].empty()) continue;
                std::string key = shards[i]->series_key(ids[i][s]);
                statuses[i] = budget.charge(key.capacity());
                if (statuses[i].is_ok()) statuses[i] = add(std::move(key), buckets[s]);
                budget.release(buckets[s].capacity() * sizeof(RollupBucket));
                std::vector<RollupBucket>().swap(buckets[s]);
            }
        } else {
            std::vector<detail::SeriesSamples> raw;
            statuses[i] = shards[i]->read_raw(ids[i], read_start, q.end_ms, budget, raw);
            for (std::size_t s = 0; statuses[i].is_ok() && s < raw.size(); ++s) {
                statuses[i] = add(std::move(raw[s].key), raw[s].samples);
                budget.release(raw[s].samples.capacity() * sizeof(Sample));
                std::vector<Sample>().swap(raw[s].samples);
            }
        }
    });
    if (auto s = first_failure(budget, statuses); !s.is_ok()) return s;

    struct Group {
        std::vector<Tag> labels;
        std::vector<GroupStep> steps;  // sorted by start once `sorted`
        bool sorted = true;
    };
    std::map<std::string, Group> groups;
    for (auto& shard_folded : folded) {
        for (auto& [key, steps_of] : shard_folded) {
            std::string group_key = key;
            std::vector<Tag> labels;
            auto parsed = parse_series_key(key);
            if (parsed.is_ok()) {
                auto& [measurement, tags] = parsed.value();
                if (q.group_by) {
                    for (const auto& name : *q.group_by) {
                        auto it = std::find_if(tags.begin(), tags.end(),
                                               [&](const Tag& t) { return t.first == name; });
                        std::string value = it != tags.end() ? it->second : std::string();
                        if (name == "__name__") value = measurement;
                        labels.emplace_back(name, value);
                    }
                    group_key = format_series_key("", labels);
                } else {
                    labels = tags;
                    labels.emplace_back("__name__", measurement);
                }
            }
            auto found = groups.find(group_key);
            if (found == groups.end()) {
                std::size_t bytes = 2 * group_key.size() + 128;  // key, node and labels
                for (const auto& [name, value] : labels)
                    bytes += name.size() + value.size() + sizeof(Tag);
                if (auto s = budget.charge(bytes); !s.is_ok()) return s;
                groups.emplace(std::move(group_key), Group{std::move(labels), std::move(steps_of)});
                continue;
            }
            Group& group = found->second;
            if (auto s = budget.grow(group.steps, steps_of.size()); !s.is_ok()) return s;
            group.steps.insert(group.steps.end(), steps_of.begin(), steps_of.end());
            group.sorted = false;
            budget.release(steps_of.capacity() * sizeof(GroupStep));
            std::vector<GroupStep>().swap(steps_of);
        }
    }
    std::vector<AggregatedSeries> out;
    for (auto& [key, group] : groups) {
        if (auto s = budget.check(); !s.is_ok()) return s;
        auto& steps_of = group.steps;
        if (!group.sorted) {
            std::sort(steps_of.begin(), steps_of.end(),
                      [](const GroupStep& a, const GroupStep& b) { return a.start < b.start; });
            std::size_t kept = 0;
            for (std::size_t j = 0; j < steps_of.size(); ++j) {
                if (kept > 0 && steps_of[kept - 1].start == steps_of[j].start) {
                    steps_of[kept - 1].merge(steps_of[j]);
                } else {
                    steps_of[kept++] = steps_of[j];
                }
            }
            steps_of.resize(kept);
        }
        AggregatedSeries a;
        a.key = key;
        a.labels = std::move(group.labels);
        if (auto s = budget.charge(a.key.size() + steps_of.size() * 16); !s.is_ok()) return s;
        a.timestamps_ms.reserve(steps_of.size());
        a.values.reserve(steps_of.size());
        for (const auto& g : steps_of) {
            double v;
            if (q.function == Aggregation::rate) {
                if (g.rates == 0) continue;
                v = g.rate_sum;
            } else if (q.function == Aggregation::first) {
                v = g.first_sum / static_cast<double>(g.series);
            } else if (q.function == Aggregation::last) {
                v = g.last_sum / static_cast<double>(g.series);
            } else {
                v = value_of(q.function, g.combined);
            }
            a.timestamps_ms.push_back(g.start);
            a.values.push_back(v);
        }
        budget.release(steps_of.capacity() * sizeof(GroupStep));
        std::vector<GroupStep>().swap(steps_of);
        if (a.timestamps_ms.empty()) continue;
        if (auto s = budget.grow(out, 1); !s.is_ok()) return s;
        out.push_back(std::move(a));
    }
    return out;
}

Result<std::vector<AggregatedSeries>> Engine::query_aggregate(const AggregateQuery& q,
                                                              const QueryLimits& limits) const {
    QueryBudget budget(limits);
    return query_aggregate(q, budget);
}

EngineStats Engine::stats() const {
    EngineStats out;
    const EngineOptions& o = impl_->options;
    out.max_series = static_cast<std::uint64_t>(o.max_series_per_shard) * impl_->shards.size();
    if (o.max_series > 0) out.max_series = std::min<std::uint64_t>(out.max_series, o.max_series);
    for (auto& shard : impl_->shards) {
        auto s = shard->stats();
        out.points_written += s.points_written;
        out.points_rejected_late += s.points_rejected_late;
        out.points_rejected_series_limit += s.points_rejected_series_limit;
        out.points_rejected_invalid += s.points_rejected_invalid;
        out.series += s.series;
        out.batches += s.batches;
        out.flushes += s.flushes;
        out.windows_dropped += s.windows_dropped;
        out.windows_sealed += s.windows_sealed;
        out.head_points += s.head_points;
        out.queue_depth.push_back(s.queue_depth);
        out.points_written_per_shard.push_back(s.points_written);
        out.writer_busy_ns.push_back(s.writer_busy_ns);
        out.flusher_busy_ns.push_back(s.flusher_busy_ns);
    }
    return out;
}

StorageMemory Engine::memory() const {
    StorageMemory out = impl_->limits;
    const auto& wbm = impl_->memtable_budget;
    std::uint64_t charged = 0;  // the cache's dummy entries standing for memtables
    if (wbm) {
        out.memtables.used = wbm->memory_usage();
        charged = wbm->dummy_entries_in_cache_usage();
    } else {
        for (auto& shard : impl_->shards)
            out.memtables.used += shard->rocksdb_figures().memtable_bytes;
    }
    const std::uint64_t cached = impl_->cache->GetUsage();
    out.block_cache.used = cached > charged ? cached - charged : 0;
    for (auto& shard : impl_->shards)
        out.head.used += shard->head_bytes();
    out.series_index.used = impl_->index_bytes->load(std::memory_order_relaxed);
    return out;
}

StorageHealth Engine::health() const {
    StorageHealth h;
    h.disk = impl_->disk->figures();
    for (auto& shard : impl_->shards) {
        if (shard->read_only()) h.read_only = true;
        if (shard->failed())
            h.failed_shards.push_back({shard->index(), shard->failure().message()});
    }
    return h;
}

std::vector<std::string> Engine::problems() const {
    std::vector<std::string> out;
    StorageHealth h = health();
    auto mib = [](std::uint64_t bytes) { return std::to_string((bytes + (1 << 19)) >> 20); };
    if (h.disk.full) {
        out.push_back("disk full: " + mib(h.disk.free_bytes) + " MiB free of " +
                      mib(h.disk.volume_bytes) + " MiB, under the free-space reserve of " +
                      mib(h.disk.reserve_bytes) + " MiB (storage.min_free_space); writes are held");
    }
    if (h.read_only) {
        out.push_back(
            "storage is read-only: opened on a volume under its free-space reserve; "
            "writable again once space is freed");
    }
    for (const auto& f : h.failed_shards) {
        out.push_back("shard " + std::to_string(f.shard) +
                      " is unwritable (restart required): " + f.error);
    }
    return out;
}

Status Engine::flush() {
    for (auto& shard : impl_->shards) {
        if (auto s = shard->flush_now(); !s.is_ok()) return s;
    }
    return Status::ok();
}

Status Engine::compact() {
    for (auto& shard : impl_->shards) {
        if (auto s = shard->compact_all(); !s.is_ok()) return s;
    }
    return Status::ok();
}

void Engine::enforce_retention() {
    for (auto& shard : impl_->shards)
        shard->enforce_retention_now();
}

std::uint64_t Engine::disk_bytes() const {
    std::uint64_t total = 0;
    for (auto& shard : impl_->shards)
        total += shard->disk_bytes();
    return total;
}

Status Engine::checkpoint(const std::filesystem::path& target) const {
    std::error_code ec;
    if (std::filesystem::exists(target, ec)) {
        return Status::error(Status::Code::invalid_argument,
                             "checkpoint target exists: " + target.string());
    }
    std::filesystem::create_directories(target, ec);
    if (ec) {
        return Status::error(Status::Code::io_error,
                             "cannot create " + target.string() + ": " + ec.message());
    }
    std::filesystem::copy_file(impl_->options.directory / detail::kMetaFile,
                               target / detail::kMetaFile, ec);
    if (ec) {
        return Status::error(Status::Code::io_error,
                             "cannot copy " + std::string(detail::kMetaFile) + ": " + ec.message());
    }
    for (unsigned i = 0; i < impl_->shards.size(); ++i) {
        auto status = impl_->shards[i]->checkpoint(detail::shard_directory(target, i));
        if (!status.is_ok()) return status;
    }
    return Status::ok();
}

Result<DeleteResult> Engine::delete_points(const Selector& selector, std::int64_t start_ms,
                                           std::int64_t end_ms) {
    if (end_ms <= start_ms) {
        return Status::error(Status::Code::invalid_argument, "delete: end must be after start");
    }
    // Matching is bounded only by what the shards hold: a delete may name every series.
    QueryLimits unbounded;
    unbounded.max_series = std::numeric_limits<std::size_t>::max();
    unbounded.max_points = std::numeric_limits<std::size_t>::max();
    unbounded.max_bytes = std::numeric_limits<std::size_t>::max();
    QueryBudget budget(unbounded);
    auto& shards = impl_->shards;
    std::vector<std::vector<std::uint64_t>> ids;
    if (auto s = match_all(shards, selector, budget, ids); !s.is_ok()) return s;
    std::vector<DeleteResult> results(shards.size());
    std::vector<Status> statuses(shards.size());
    for_each_shard(ids, [&](std::size_t i) {
        statuses[i] = shards[i]->delete_points(ids[i], start_ms, end_ms, results[i]);
    });
    DeleteResult total;
    for (const auto& r : results) {
        total.series += r.series;
        total.points += r.points;
        total.series_removed += r.series_removed;
    }
    for (const auto& s : statuses) {
        if (!s.is_ok()) return s;
    }
    return total;
}

std::vector<WalRecovery> Engine::wal_recovery() const {
    std::vector<WalRecovery> out;
    for (auto& shard : impl_->shards)
        out.push_back(shard->wal_recovery());
    return out;
}

std::vector<RocksDbFigures> Engine::rocksdb_figures() const {
    std::vector<RocksDbFigures> figures;
    for (auto& shard : impl_->shards)
        figures.push_back(shard->rocksdb_figures());
    return figures;
}

}  // namespace citygate::storage
