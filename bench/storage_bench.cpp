// citygate-storage-bench: ingests the deterministic city dataset (city/city_model) into the
// storage engine and prints ingest rates (WAL on; fsync none and batch), bytes per point on disk
// after a full compaction and query latencies. The last line is one JSON object for scripts.
#include <algorithm>
#include <atomic>
#include <bit>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

#include "city/city_model.hpp"
#include "storage/engine.hpp"

using namespace citygate;
using Clock = std::chrono::steady_clock;

namespace {

constexpr std::int64_t kStart = 1'718'409'600'000;  // 2024-06-15T00:00:00Z
constexpr std::int64_t kInterval = 10'000;          // one reading every 10 s

struct Args {
    std::size_t sensors = 10'000;
    std::int64_t minutes = 60;
    unsigned shards = 2;
    std::size_t points_per_write = 1000;
    std::int64_t jitter_ms = 0;  // each reading's timestamp moved by up to this, as devices do
    std::filesystem::path dir;
    bool quick = false;
    bool fsync_batch = true;  // also run the fsync=batch ingest
    std::size_t head_flush_points = storage::EngineOptions{}.head_flush_points;
    std::size_t minute_block_min_points = storage::EngineOptions{}.minute_block_min_points;
    storage::StorageTuning tuning;  // RocksDB options of the window column families, for A/B
    // The engine's clock: the dataset's time, as if the city were reporting live (sealing and
    // retention go by it). The ingest moves it along with the readings.
    std::shared_ptr<std::atomic<std::int64_t>> now =
        std::make_shared<std::atomic<std::int64_t>>(kStart);
};

struct IngestResult {
    double seconds = 0;
    std::uint64_t points = 0;
    double per_s_total = 0;
    double per_s_per_thread = 0;  // points per second of writer-thread CPU time, mean of shards
    // points per second of writer plus flush thread CPU time, mean of shards: the cost of a
    // point with its share of the background flush
    double per_s_per_thread_with_flush = 0;
    double writer_cpu_s = 0;   // sum over shards
    double flusher_cpu_s = 0;  // sum over shards
};

[[noreturn]] void usage();

storage::StorageTuning::Compression compression(const std::string& name) {
    if (name == "none") return storage::StorageTuning::Compression::none;
    if (name == "lz4") return storage::StorageTuning::Compression::lz4;
    if (name == "zstd") return storage::StorageTuning::Compression::zstd;
    usage();
}

[[noreturn]] void usage() {
    std::fprintf(
        stderr,
        "usage: citygate-storage-bench [--quick] [--sensors N] [--minutes M] "
        "[--shards N] [--jitter-ms N] [--points-per-write N] [--dir PATH] [--no-fsync-batch]\n"
        "  [--head-flush-points N] [--minute-block-min-points N] [--compression none|lz4|zstd] "
        "[--bottommost-compression none|lz4|zstd]\n"
        "  [--bloom-bits N] [--no-prefix-bloom] [--write-buffer-mb N] "
        "[--compaction level|universal] [--block-kb N] [--l0-trigger N]\n");
    std::exit(2);
}

void check(const storage::Status& s, const char* what) {
    if (s.is_ok()) return;
    std::fprintf(stderr, "%s: %s\n", what, s.message().c_str());
    std::exit(1);
}

std::vector<std::vector<std::string>> series_keys(const loadgen::CityModel& city) {
    std::vector<std::vector<std::string>> keys;
    for (const auto& s : city.sensors()) {
        auto& k = keys.emplace_back();
        for (auto m : loadgen::measurements(s.type)) {
            k.push_back(
                storage::format_series_key(m, {{"district", s.district},
                                               {"type", std::string(loadgen::type_name(s.type))},
                                               {"device", s.device}}));
        }
    }
    return keys;
}

// A deterministic offset in [-jitter_ms, jitter_ms] per (sensor, nominal time): a device's clock
// and network move each reading's timestamp a little, so deltas are never exactly the period.
std::int64_t jitter(const Args& args, std::size_t sensor, std::int64_t t) {
    if (args.jitter_ms == 0) return 0;
    std::uint64_t h = (static_cast<std::uint64_t>(sensor) << 40) ^ static_cast<std::uint64_t>(t);
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    auto span = static_cast<std::uint64_t>(2 * args.jitter_ms + 1);
    return static_cast<std::int64_t>(h % span) - args.jitter_ms;
}

// Avg PM2.5 by district over the dataset's first hour, at `step_ms` steps.
storage::AggregateQuery avg_pm25_by_district(std::int64_t step_ms) {
    storage::AggregateQuery q;
    q.selector = storage::Selector::parse("pm25").value();
    q.start_ms = kStart;
    q.end_ms = kStart + 3'600'000;
    q.step_ms = step_ms;
    q.function = storage::Aggregation::avg;
    q.group_by = std::vector<std::string>{"district"};
    return q;
}

std::unique_ptr<storage::Engine> open_engine(const Args& args, const std::filesystem::path& dir,
                                             storage::FsyncPolicy fsync) {
    storage::EngineOptions o;
    o.directory = dir;
    o.shards = args.shards;
    o.fsync = fsync;
    o.retention = std::chrono::milliseconds(0);  // the dataset is in 2024
    o.head_flush_points = args.head_flush_points;
    o.minute_block_min_points = args.minute_block_min_points;
    o.tuning = args.tuning;
    o.clock = [now = args.now] { return now->load(std::memory_order_relaxed); };
    auto e = storage::Engine::open(std::move(o));
    check(e.status(), "open");
    return std::move(e.value());
}

IngestResult ingest(storage::Engine& engine, const loadgen::CityModel& city,
                    const std::vector<std::vector<std::string>>& keys, const Args& args) {
    std::atomic<std::uint64_t> acked_writes{0};
    std::atomic<bool> failed{false};
    std::uint64_t writes = 0, points = 0;
    const std::int64_t end = kStart + args.minutes * 60'000;
    std::vector<loadgen::Reading> readings;
    std::vector<storage::Point> batch;
    auto before = engine.stats();
    auto started = Clock::now();
    auto submit = [&] {
        auto cb = [&](const storage::WriteResult& r) {
            if (!r.durable() || r.rejected() > 0) failed = true;
            acked_writes.fetch_add(1, std::memory_order_relaxed);
        };
        points += batch.size();
        while (!engine.try_write(batch, cb))
            std::this_thread::yield();
        ++writes;
        batch.clear();
    };
    for (std::int64_t t = kStart; t < end; t += kInterval) {
        args.now->store(t, std::memory_order_relaxed);
        for (std::size_t s = 0; s < city.sensors().size(); ++s) {
            readings.clear();
            city.readings(s, t, readings);
            for (std::size_t m = 0; m < readings.size(); ++m) {
                batch.push_back({keys[s][m], t + jitter(args, s, t), readings[m].value});
            }
            if (batch.size() >= args.points_per_write) submit();
        }
    }
    if (!batch.empty()) submit();
    args.now->store(end, std::memory_order_relaxed);
    while (acked_writes.load() < writes)
        std::this_thread::sleep_for(std::chrono::microseconds(200));
    IngestResult r;
    r.seconds = std::chrono::duration<double>(Clock::now() - started).count();
    if (failed) {
        std::fprintf(stderr, "a write failed\n");
        std::exit(1);
    }
    auto after = engine.stats();
    r.points = points;
    r.per_s_total = static_cast<double>(points) / r.seconds;
    double sum = 0, sum_with_flush = 0;
    for (std::size_t i = 0; i < after.writer_busy_ns.size(); ++i) {
        double busy = static_cast<double>(after.writer_busy_ns[i] - before.writer_busy_ns[i]) / 1e9;
        double flush =
            static_cast<double>(after.flusher_busy_ns[i] - before.flusher_busy_ns[i]) / 1e9;
        double pts = static_cast<double>(after.points_written_per_shard[i] -
                                         before.points_written_per_shard[i]);
        sum += busy > 0 ? pts / busy : 0;
        sum_with_flush += busy + flush > 0 ? pts / (busy + flush) : 0;
        r.writer_cpu_s += busy;
        r.flusher_cpu_s += flush;
    }
    const auto shards = static_cast<double>(after.writer_busy_ns.size());
    r.per_s_per_thread = sum / shards;
    r.per_s_per_thread_with_flush = sum_with_flush / shards;
    return r;
}

// Every file under `dir`: SST files, write-ahead logs, MANIFEST, as `du` sees them.
std::uint64_t directory_bytes(const std::filesystem::path& dir) {
    std::uint64_t total = 0;
    std::error_code ec;
    for (const auto& e : std::filesystem::recursive_directory_iterator(dir, ec)) {
        std::error_code size_ec;
        if (e.is_regular_file(size_ec)) {
            auto n = e.file_size(size_ec);
            if (!size_ec) total += n;
        }
    }
    return total;
}

// What a reader sees, to compare before and after sealing: one series' raw points, and avg
// PM2.5 by district at 1-minute steps (1-minute buckets) and 1-hour steps, over the hour.
struct Answers {
    std::vector<storage::RawSeries> raw;
    std::vector<storage::AggregatedSeries> minutes, hours;
    bool operator==(const Answers& o) const {
        auto same_raw = [](const storage::RawSeries& a, const storage::RawSeries& b) {
            return a.series == b.series && a.timestamps_ms == b.timestamps_ms &&
                   same_values(a.values, b.values);
        };
        auto same_agg = [](const storage::AggregatedSeries& a, const storage::AggregatedSeries& b) {
            return a.key == b.key && a.timestamps_ms == b.timestamps_ms &&
                   same_values(a.values, b.values);
        };
        return std::equal(raw.begin(), raw.end(), o.raw.begin(), o.raw.end(), same_raw) &&
               std::equal(minutes.begin(), minutes.end(), o.minutes.begin(), o.minutes.end(),
                          same_agg) &&
               std::equal(hours.begin(), hours.end(), o.hours.begin(), o.hours.end(), same_agg);
    }
    static bool same_values(const std::vector<double>& a, const std::vector<double>& b) {
        return std::equal(a.begin(), a.end(), b.begin(), b.end(), [](double x, double y) {
            return std::bit_cast<std::uint64_t>(x) == std::bit_cast<std::uint64_t>(y);
        });
    }
};

Answers ask(const storage::Engine& engine, const std::vector<std::vector<std::string>>& keys,
            std::int64_t minutes) {
    Answers a;
    for (std::size_t i = 0; i < keys.size(); i += keys.size() / 16 + 1) {
        auto r = engine.query_raw(storage::Selector::parse(keys[i][0]).value(), kStart - 3'600'000,
                                  kStart + minutes * 60'000 + 3'600'000);
        check(r.status(), "query_raw");
        for (auto& s : r.value())
            a.raw.push_back(std::move(s));
    }
    storage::AggregateQuery q;
    q.selector = storage::Selector::parse("pm25").value();
    q.start_ms = kStart;
    q.end_ms = kStart + minutes * 60'000;
    q.function = storage::Aggregation::avg;
    q.group_by = std::vector<std::string>{"district"};
    q.step_ms = 60'000;
    auto m = engine.query_aggregate(q);
    check(m.status(), "query_aggregate");
    a.minutes = m.value();
    q.step_ms = 3'600'000;
    auto h = engine.query_aggregate(q);
    check(h.status(), "query_aggregate");
    a.hours = h.value();
    return a;
}

template <typename Fn>
double median_ms(int runs, Fn fn) {
    std::vector<double> ms;
    for (int i = 0; i < runs; ++i) {
        auto t = Clock::now();
        fn();
        ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t).count());
    }
    std::sort(ms.begin(), ms.end());
    return ms[ms.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
    Args args;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        auto next = [&]() -> std::string {
            if (i + 1 >= argc) usage();
            return argv[++i];
        };
        if (a == "--quick") {
            args.quick = true;
            args.sensors = 2'000;
            args.minutes = 30;
        } else if (a == "--sensors") {
            args.sensors = std::stoul(next());
        } else if (a == "--minutes") {
            args.minutes = std::stol(next());
        } else if (a == "--shards") {
            args.shards = static_cast<unsigned>(std::stoul(next()));
        } else if (a == "--jitter-ms") {
            args.jitter_ms = std::stoll(next());
        } else if (a == "--points-per-write") {
            args.points_per_write = std::stoul(next());
        } else if (a == "--dir") {
            args.dir = next();
        } else if (a == "--no-fsync-batch") {
            args.fsync_batch = false;
        } else if (a == "--head-flush-points") {
            args.head_flush_points = std::stoul(next());
        } else if (a == "--minute-block-min-points") {
            args.minute_block_min_points = std::stoul(next());
        } else if (a == "--compression") {
            args.tuning.compression = compression(next());
        } else if (a == "--bottommost-compression") {
            args.tuning.bottommost_compression = compression(next());
        } else if (a == "--bloom-bits") {
            args.tuning.bloom_bits_per_key = std::stoi(next());
        } else if (a == "--no-prefix-bloom") {
            args.tuning.series_prefix_bloom = false;
        } else if (a == "--write-buffer-mb") {
            args.tuning.write_buffer_bytes = std::stoul(next()) << 20;
        } else if (a == "--compaction") {
            auto c = next();
            if (c != "level" && c != "universal") usage();
            args.tuning.compaction = c == "level" ? storage::StorageTuning::Compaction::level
                                                  : storage::StorageTuning::Compaction::universal;
        } else if (a == "--l0-trigger") {
            args.tuning.level0_compaction_trigger = std::stoi(next());
        } else if (a == "--block-kb") {
            args.tuning.block_bytes = std::stoul(next()) << 10;
        } else {
            usage();
        }
    }
    bool own_dir = args.dir.empty();
    if (own_dir) {
        args.dir = std::filesystem::temp_directory_path() /
                   ("citygate-storage-bench-" + std::to_string(::getpid()));
    }
    std::filesystem::remove_all(args.dir);

    loadgen::CityModel city(args.sensors, 20240615);
    auto keys = series_keys(city);
    std::size_t series = 0;
    for (auto& k : keys)
        series += k.size();
    std::printf("dataset: %zu sensors, %zu series, %lld min at %lld s, %llu points, %u shards\n",
                args.sensors, series, static_cast<long long>(args.minutes),
                static_cast<long long>(kInterval / 1000),
                static_cast<unsigned long long>(
                    city.points_between(kStart, kStart + args.minutes * 60'000, kInterval)),
                args.shards);

    auto report = [](const char* name, const IngestResult& r) {
        std::printf(
            "ingest fsync=%s: %.0f points/s total (%.2f s wall), %.0f points/s per writer thread "
            "(writer CPU %.2f s), %.0f points/s per writer thread counting its flush thread "
            "(flush CPU %.2f s)\n",
            name, r.per_s_total, r.seconds, r.per_s_per_thread, r.writer_cpu_s,
            r.per_s_per_thread_with_flush, r.flusher_cpu_s);
    };
    IngestResult synced;
    if (args.fsync_batch) {
        auto engine = open_engine(args, args.dir / "fsync-batch", storage::FsyncPolicy::batch);
        synced = ingest(*engine, city, keys, args);
        report("batch", synced);
    }
    std::filesystem::remove_all(args.dir / "fsync-batch");

    auto engine = open_engine(args, args.dir / "fsync-none", storage::FsyncPolicy::none);
    IngestResult fast = ingest(*engine, city, keys, args);
    report("none", fast);

    // As a user finds the data after the hour, with no manual compaction. Live: every file of
    // the data directory (SST files, and the write-ahead logs holding what is still in
    // memtables). After the engine's own flushes: the head flushed (as its 5-minute interval
    // does) and the engine closed and reopened (a clean close writes every memtable into SST
    // files, as full memtables are), so the SST files are all there is.
    const auto points = static_cast<double>(fast.points);
    const auto engine_dir = args.dir / "fsync-none";
    double bytes_per_point_live_dir = static_cast<double>(directory_bytes(engine_dir)) / points;
    check(engine->flush(), "flush");
    engine.reset();
    double bytes_per_point_closed_dir = static_cast<double>(directory_bytes(engine_dir)) / points;
    engine = open_engine(args, engine_dir, storage::FsyncPolicy::none);
    double bytes_per_point_live =
        static_cast<double>(engine->disk_bytes()) / static_cast<double>(fast.points);
    // Then RocksDB's own compactions, once they are done (they start from what the flushes
    // left: with level0_compaction_trigger files in a window's L0, their stale versions of
    // rewritten chunks and rollup blocks go).
    const auto settle_started = Clock::now();
    for (int quiet = 0; quiet < 5 && Clock::now() - settle_started < std::chrono::minutes(2);) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        bool busy = false;
        for (const auto& f : engine->rocksdb_figures())
            busy = busy || f.running_compactions > 0 || f.pending_compaction_bytes > 0;
        quiet = busy ? 0 : quiet + 1;
    }
    double bytes_per_point_settled =
        static_cast<double>(engine->disk_bytes()) / static_cast<double>(fast.points);
    std::size_t probe = 0;
    double one_series_live_ms = median_ms(args.quick ? 21 : 101, [&] {
        auto sel = storage::Selector::parse(keys[(probe++ * 97) % keys.size()][0]);
        check(sel.status(), "selector");
        auto r = engine->query_raw(sel.value(), kStart, kStart + 24 * 3'600'000);
        check(r.status(), "query_raw");
    });
    // Avg PM2.5 by district over the hour at 5-minute steps, from 1-minute buckets: stored
    // blocks, or computed from chunks for series under --minute-block-min-points.
    const storage::AggregateQuery by_district = avg_pm25_by_district(300'000);
    double by_district_5m_live_ms = median_ms(args.quick ? 3 : 10, [&] {
        check(engine->query_aggregate(by_district).status(), "query_aggregate");
    });
    std::printf(
        "query avg pm25 by district over the hour at 5-minute steps, before sealing: %.3f ms\n",
        by_district_5m_live_ms);
    std::printf(
        "after the hour, no manual compaction: %.3f bytes/point in the live data directory "
        "(WAL included), %.3f after the head flush and a clean close (directory), %.3f in SST "
        "files, %.3f once RocksDB's own compactions are done; query one series over a day "
        "%.3f ms\n",
        bytes_per_point_live_dir, bytes_per_point_closed_dir, bytes_per_point_live,
        bytes_per_point_settled, one_series_live_ms);

    // Sealed: the clock moves past the window's end and the out-of-order window after it; the
    // engine seals the window by itself (both windows: the jitter puts a few readings just
    // before midnight, in the previous day's window). Readers must get the same answers.
    Answers live_answers = ask(*engine, keys, args.minutes);
    const auto seal_started = Clock::now();
    args.now->store(kStart + 25 * 3'600'000, std::memory_order_relaxed);
    const std::uint64_t expect_sealed = (args.jitter_ms > 0 ? 2ull : 1ull) * args.shards;
    while (engine->stats().windows_sealed < expect_sealed &&
           Clock::now() - seal_started < std::chrono::minutes(5)) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    double seal_s = std::chrono::duration<double>(Clock::now() - seal_started).count();
    const std::uint64_t sealed = engine->stats().windows_sealed;
    double bytes_per_point_sealed =
        static_cast<double>(engine->disk_bytes()) / static_cast<double>(fast.points);
    Answers sealed_answers = ask(*engine, keys, args.minutes);
    const bool same_answers = live_answers == sealed_answers;
    std::printf(
        "sealed (%llu windows in %.1f s): %.3f bytes/point in SST files; answers the same as "
        "before sealing: %s (%zu raw series, %zu + %zu by-district series)\n",
        static_cast<unsigned long long>(sealed), seal_s, bytes_per_point_sealed,
        same_answers ? "yes" : "NO", live_answers.raw.size(), live_answers.minutes.size(),
        live_answers.hours.size());
    if (!same_answers) {
        std::fprintf(stderr, "answers changed by sealing\n");
        return 1;
    }

    auto compact_started = Clock::now();
    check(engine->compact(), "compact");
    double compact_s = std::chrono::duration<double>(Clock::now() - compact_started).count();
    double bytes_per_point =
        static_cast<double>(engine->disk_bytes()) / static_cast<double>(fast.points);
    std::printf("disk after full compaction: %llu bytes, %.3f bytes/point (compaction %.1f s)\n",
                static_cast<unsigned long long>(engine->disk_bytes()), bytes_per_point, compact_s);

    // One series over a day (raw points), and avg PM2.5 by district over an hour (1h rollups).
    const auto& s0 = city.sensors()[0];
    auto one = storage::Selector::parse(keys[0][0]);
    check(one.status(), "selector");
    std::size_t one_points = 0;
    double one_series_ms = median_ms(args.quick ? 5 : 20, [&] {
        auto r = engine->query_raw(one.value(), kStart, kStart + 24 * 3'600'000);
        check(r.status(), "query_raw");
        one_points = r.value().empty() ? 0 : r.value()[0].values.size();
    });
    storage::AggregateQuery q = avg_pm25_by_district(3'600'000);
    std::size_t groups = 0;
    double by_district_ms = median_ms(args.quick ? 3 : 10, [&] {
        auto r = engine->query_aggregate(q);
        check(r.status(), "query_aggregate");
        groups = r.value().size();
    });
    q.step_ms = 300'000;
    double by_district_5m_ms = median_ms(args.quick ? 3 : 10, [&] {
        auto r = engine->query_aggregate(q);
        check(r.status(), "query_aggregate");
    });
    q.source = storage::AggregateQuery::Source::raw;
    double by_district_raw_ms = median_ms(args.quick ? 3 : 5, [&] {
        auto r = engine->query_aggregate(q);
        check(r.status(), "query_aggregate");
    });
    std::printf("query one series over a day (%s, %zu points): %.3f ms\n", s0.device.c_str(),
                one_points, one_series_ms);
    std::printf(
        "query avg pm25 by district over an hour (%zu groups): step 1h %.3f ms, "
        "step 5m %.3f ms, from raw points %.3f ms\n",
        groups, by_district_ms, by_district_5m_ms, by_district_raw_ms);
    engine.reset();
    if (own_dir) std::filesystem::remove_all(args.dir);

    std::printf(
        "{\"points\": %llu, \"shards\": %u, \"points_per_s_per_thread\": %.0f, "
        "\"points_per_s_per_thread_with_flush\": %.0f, \"ingest_wall_s\": %.3f, "
        "\"writer_cpu_s\": %.3f, \"flusher_cpu_s\": %.3f, "
        "\"bytes_per_point_before_compaction\": %.3f, \"bytes_per_point_live_dir\": %.3f, "
        "\"bytes_per_point_closed_dir\": %.3f, \"bytes_per_point_settled\": %.3f, "
        "\"bytes_per_point_sealed\": %.3f, "
        "\"seal_s\": %.3f, \"same_answers_sealed\": %s, "
        "\"query_one_series_day_before_compaction_ms\": %.3f, "
        "\"points_per_s_total\": %.0f, \"points_per_s_per_thread_fsync_batch\": %.0f, "
        "\"points_per_s_total_fsync_batch\": %.0f, \"bytes_per_point\": %.3f, "
        "\"query_one_series_day_ms\": %.3f, \"query_avg_by_district_hour_ms\": %.3f, "
        "\"query_avg_by_district_hour_5m_ms\": %.3f, \"query_avg_by_district_hour_raw_ms\": "
        "%.3f, \"query_avg_by_district_hour_5m_live_ms\": %.3f}\n",
        static_cast<unsigned long long>(fast.points), args.shards, fast.per_s_per_thread,
        fast.per_s_per_thread_with_flush, fast.seconds, fast.writer_cpu_s, fast.flusher_cpu_s,
        bytes_per_point_live, bytes_per_point_live_dir, bytes_per_point_closed_dir,
        bytes_per_point_settled, bytes_per_point_sealed, seal_s, same_answers ? "true" : "false",
        one_series_live_ms, fast.per_s_total, synced.per_s_per_thread, synced.per_s_total,
        bytes_per_point, one_series_ms, by_district_ms, by_district_5m_ms, by_district_raw_ms,
        by_district_5m_live_ms);
    return 0;
}
