// Engine: shard routing, the all-or-none multi-shard write, and queries fanned out to shards.
#include "storage/engine.hpp"

#include <rocksdb/cache.h>
#include <rocksdb/write_buffer_manager.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <future>
#include <map>
#include <thread>

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
    std::vector<std::unique_ptr<Shard>> shards;
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
    unsigned count = wanted != 0 ? wanted : std::max(1u, std::thread::hardware_concurrency());
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

Status series_limit_error(std::size_t found, std::size_t limit) {
    return Status::error(Status::Code::limit_exceeded,
                         "query: the selector matches " + std::to_string(found) +
                             " series, more than the limit of " + std::to_string(limit));
}

Status points_limit_error(std::size_t limit) {
    return Status::error(Status::Code::limit_exceeded,
                         "query: reads more than the limit of " + std::to_string(limit) +
                             " points; narrow the selector or the time range");
}

// Matches series in every shard; fails when more than the limit match.
Status match_all(const std::vector<std::unique_ptr<Shard>>& shards, const Selector& selector,
                 std::size_t max_series, std::vector<std::vector<std::uint64_t>>& ids) {
    auto matchers = detail::compile(selector);
    if (!matchers.is_ok()) return matchers.status();
    ids.assign(shards.size(), {});
    // Postings lookups take microseconds: sequential beats starting threads.
    for (std::size_t i = 0; i < shards.size(); ++i) {
        ids[i] = shards[i]->match(matchers.value());
    }
    std::size_t total = 0;
    for (auto& v : ids)
        total += v.size();
    if (total > max_series) return series_limit_error(total, max_series);
    return Status::ok();
}

}  // namespace

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
    auto cache = rocksdb::NewLRUCache(options.block_cache_bytes);
    std::shared_ptr<rocksdb::WriteBufferManager> memtable_budget;
    if (options.memtable_budget_bytes > 0) {
        memtable_budget =
            std::make_shared<rocksdb::WriteBufferManager>(options.memtable_budget_bytes);
    }
    for (unsigned i = 0; i < options.shards; ++i) {
        detail::ShardOptions so;
        so.index = i;
        so.directory = options.directory;
        so.queue_capacity = options.queue_capacity;
        so.fsync = options.fsync;
        so.window_ms = window;
        so.out_of_order_ms = options.out_of_order_window.count();
        so.retention_ms = options.retention.count();
        so.max_series = options.max_series_per_shard;
        so.head_flush_points = options.head_flush_points;
        so.head_flush_interval = options.head_flush_interval;
        so.target_chunk_points = options.target_chunk_points;
        so.clock = options.clock;
        so.on_batch = options.on_batch;
        so.on_space_available = options.on_space_available;
        so.block_cache = cache;
        so.write_buffer_manager = memtable_budget;
        so.tuning = options.tuning;
        auto shard = Shard::open(std::move(so));
        if (!shard.is_ok()) return shard.status();
        impl->shards.push_back(std::move(shard.value()));
    }
    impl->options = std::move(options);
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

bool Engine::try_write(std::vector<Point>& points, WriteCallback done) {
    if (points.empty()) {
        if (done) done(WriteResult{});
        return true;
    }
    auto& shards = impl_->shards;
    const std::size_t n = shards.size();
    std::vector<unsigned> placement(points.size());
    std::vector<std::size_t> per_shard(n, 0);
    for (std::size_t i = 0; i < points.size(); ++i) {
        placement[i] = shard_of(points[i].series);
        ++per_shard[placement[i]];
    }
    // Reserve room in every shard involved, in shard order; undo on the first refusal, so the
    // write is all or none without holding locks across shards.
    for (std::size_t s = 0; s < n; ++s) {
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
    if (parts == 1) {
        shards[placement[0]]->push({std::move(points), join});
    } else {
        std::vector<std::vector<Point>> split(n);
        for (std::size_t s = 0; s < n; ++s)
            split[s].reserve(per_shard[s]);
        for (std::size_t i = 0; i < points.size(); ++i) {
            split[placement[i]].push_back(std::move(points[i]));
        }
        for (std::size_t s = 0; s < n; ++s) {
            if (!split[s].empty()) shards[s]->push({std::move(split[s]), join});
        }
    }
    points.clear();
    return true;
}

Result<std::vector<RawSeries>> Engine::query_raw(const Selector& selector, std::int64_t start_ms,
                                                 std::int64_t end_ms,
                                                 const QueryLimits& limits) const {
    auto& shards = impl_->shards;
    std::vector<std::vector<std::uint64_t>> ids;
    if (auto s = match_all(shards, selector, limits.max_series, ids); !s.is_ok()) return s;
    std::vector<std::vector<detail::SeriesSamples>> found(shards.size());
    std::vector<Status> statuses(shards.size());
    // Each shard gets the whole budget; the merged total is checked again below.
    for_each_shard(ids, [&](std::size_t i) {
        std::int64_t budget = static_cast<std::int64_t>(limits.max_points);
        statuses[i] = shards[i]->read_raw(ids[i], start_ms, end_ms, budget, found[i]);
    });
    std::size_t points = 0;
    std::vector<RawSeries> out;
    for (std::size_t i = 0; i < shards.size(); ++i) {
        if (!statuses[i].is_ok()) {
            if (statuses[i].code() == Status::Code::limit_exceeded) {
                return points_limit_error(limits.max_points);
            }
            return statuses[i];
        }
        for (auto& s : found[i]) {
            points += s.samples.size();
            RawSeries r;
            r.series = std::move(s.key);
            r.timestamps_ms.reserve(s.samples.size());
            r.values.reserve(s.samples.size());
            for (const auto& p : s.samples) {
                r.timestamps_ms.push_back(p.ts);
                r.values.push_back(p.value);
            }
            out.push_back(std::move(r));
        }
    }
    if (points > limits.max_points) return points_limit_error(limits.max_points);
    std::sort(out.begin(), out.end(),
              [](const RawSeries& a, const RawSeries& b) { return a.series < b.series; });
    return out;
}

Result<std::vector<std::string>> Engine::series(const Selector& selector,
                                                const QueryLimits& limits) const {
    auto& shards = impl_->shards;
    std::vector<std::vector<std::uint64_t>> ids;
    if (auto s = match_all(shards, selector, limits.max_series, ids); !s.is_ok()) return s;
    std::vector<std::string> out;
    for (std::size_t i = 0; i < shards.size(); ++i) {
        for (auto id : ids[i])
            out.push_back(shards[i]->series_key(id));
    }
    std::sort(out.begin(), out.end());
    return out;
}

Result<std::vector<std::string>> Engine::label_values(std::string_view name,
                                                      const Selector& selector,
                                                      const QueryLimits& limits) const {
    auto& shards = impl_->shards;
    std::vector<std::vector<std::uint64_t>> ids;
    if (auto s = match_all(shards, selector, limits.max_series, ids); !s.is_ok()) return s;
    std::vector<std::string> out;
    for (std::size_t i = 0; i < shards.size(); ++i) {
        auto values = shards[i]->label_values(name, ids[i]);
        out.insert(out.end(), values.begin(), values.end());
    }
    std::sort(out.begin(), out.end());
    out.erase(std::unique(out.begin(), out.end()), out.end());
    return out;
}

namespace {

// One series' partial aggregates per step, index k = step starting at start + (k - 1) * step;
// index 0 is the step before the range, read only so rate has a previous value.
using Steps = std::vector<RollupBucket>;

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

struct GroupStep {
    std::uint64_t series = 0;  // contributing series
    RollupBucket combined;     // count/sum/min/max over all points
    double first_sum = 0, last_sum = 0, rate_sum = 0;
    std::uint64_t rates = 0;
};

}  // namespace

Result<std::vector<AggregatedSeries>> Engine::query_aggregate(const AggregateQuery& q,
                                                              const QueryLimits& limits) const {
    if (q.step_ms <= 0)
        return Status::error(Status::Code::invalid_argument, "query: step must be positive");
    if (q.end_ms <= q.start_ms) return std::vector<AggregatedSeries>{};
    const std::int64_t steps = (q.end_ms - q.start_ms + q.step_ms - 1) / q.step_ms;
    if (static_cast<std::uint64_t>(steps) > limits.max_points)
        return points_limit_error(limits.max_points);
    auto& shards = impl_->shards;
    std::vector<std::vector<std::uint64_t>> ids;
    if (auto s = match_all(shards, q.selector, limits.max_series, ids); !s.is_ok()) return s;

    std::optional<detail::Resolution> resolution;
    if (q.source == AggregateQuery::Source::automatic) {
        if (q.step_ms % kHour == 0 && detail::floor_to(q.start_ms, kHour) == q.start_ms) {
            resolution = detail::Resolution::hour;
        } else if (q.step_ms % kMinute == 0 &&
                   detail::floor_to(q.start_ms, kMinute) == q.start_ms) {
            resolution = detail::Resolution::minute;
        }
    }
    const std::int64_t read_start = q.start_ms - q.step_ms;  // one step more, for rate
    auto step_index = [&](std::int64_t ts) {
        return static_cast<std::size_t>((ts - read_start) / q.step_ms);
    };

    struct ShardResult {
        Status status;
        std::vector<std::pair<std::string, Steps>> series;
    };
    std::vector<ShardResult> results(shards.size());
    for_each_shard(ids, [&](std::size_t i) {
        auto& r = results[i];
        std::int64_t budget = static_cast<std::int64_t>(limits.max_points);
        auto fold = [&](std::string key, const auto& items, auto&& start_of) {
            Steps steps_of(static_cast<std::size_t>(steps) + 1);
            for (std::size_t k = 0; k < steps_of.size(); ++k) {
                steps_of[k].start = read_start + static_cast<std::int64_t>(k) * q.step_ms;
            }
            bool any = false;
            for (const auto& item : items) {
                auto& step = steps_of[step_index(start_of(item))];
                if constexpr (std::is_same_v<std::decay_t<decltype(item)>, Sample>) {
                    step.add(item.value);
                } else {
                    step.merge_later(item);
                }
                any = true;
            }
            if (any) r.series.emplace_back(std::move(key), std::move(steps_of));
        };
        if (resolution) {
            std::vector<std::vector<RollupBucket>> buckets;
            r.status =
                shards[i]->read_rollups(ids[i], *resolution, read_start, q.end_ms, budget, buckets);
            if (!r.status.is_ok()) return;
            for (std::size_t s = 0; s < ids[i].size(); ++s) {
                fold(shards[i]->series_key(ids[i][s]), buckets[s],
                     [](const RollupBucket& b) { return b.start; });
            }
        } else {
            std::vector<detail::SeriesSamples> raw;
            r.status = shards[i]->read_raw(ids[i], read_start, q.end_ms, budget, raw);
            if (!r.status.is_ok()) return;
            for (auto& s : raw) {
                fold(std::move(s.key), s.samples, [](const Sample& p) { return p.ts; });
            }
        }
    });

    std::map<std::string, std::pair<std::vector<Tag>, std::vector<GroupStep>>> groups;
    for (auto& r : results) {
        if (!r.status.is_ok()) {
            if (r.status.code() == Status::Code::limit_exceeded)
                return points_limit_error(limits.max_points);
            return r.status;
        }
        for (auto& [key, steps_of] : r.series) {
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
            auto& [group_labels, group_steps] = groups[group_key];
            if (group_steps.empty()) {
                group_labels = labels;
                group_steps.resize(steps_of.size());
            }
            for (std::size_t k = 1; k < steps_of.size(); ++k) {
                const auto& b = steps_of[k];
                if (b.count == 0) continue;
                auto& g = group_steps[k];
                ++g.series;
                g.combined.start = b.start;
                if (g.combined.count == 0) {
                    g.combined = b;
                } else {
                    g.combined.min = std::min(g.combined.min, b.min);
                    g.combined.max = std::max(g.combined.max, b.max);
                    g.combined.sum += b.sum;
                    g.combined.count += b.count;
                }
                g.first_sum += b.first;
                g.last_sum += b.last;
                if (steps_of[k - 1].count > 0) {
                    g.rate_sum +=
                        (b.last - steps_of[k - 1].last) / (static_cast<double>(q.step_ms) / 1000.0);
                    ++g.rates;
                }
            }
        }
    }
    std::vector<AggregatedSeries> out;
    for (auto& [key, entry] : groups) {
        AggregatedSeries a;
        a.key = key;
        a.labels = std::move(entry.first);
        for (const auto& g : entry.second) {
            if (g.series == 0) continue;
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
            a.timestamps_ms.push_back(g.combined.start);
            a.values.push_back(v);
        }
        if (!a.timestamps_ms.empty()) out.push_back(std::move(a));
    }
    return out;
}

EngineStats Engine::stats() const {
    EngineStats out;
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
        out.head_points += s.head_points;
        out.queue_depth.push_back(s.queue_depth);
        out.points_written_per_shard.push_back(s.points_written);
        out.writer_busy_ns.push_back(s.writer_busy_ns);
        out.flusher_busy_ns.push_back(s.flusher_busy_ns);
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

std::vector<RocksDbFigures> Engine::rocksdb_figures() const {
    std::vector<RocksDbFigures> figures;
    for (auto& shard : impl_->shards)
        figures.push_back(shard->rocksdb_figures());
    return figures;
}

}  // namespace citygate::storage
