// The head flush runs on a background thread per shard while the writer keeps committing:
// readers must see every point exactly once throughout, and rollups must stay right.
#include <catch2/catch.hpp>

#include <atomic>
#include <map>
#include <random>
#include <thread>

#include "tests/storage/helpers.hpp"
#include "tests/support/temp_dir.hpp"

using namespace citygate::storage;
using namespace citygate::storage::test;
using citygate::test::TempDir;

namespace {

constexpr std::int64_t kT0 = 1'718'409'600'000;
constexpr std::int64_t kMin = 60'000;

EngineOptions small_heads(const TempDir& dir) {
    EngineOptions o;
    o.directory = dir.path();
    o.shards = 2;
    o.retention = std::chrono::milliseconds(0);
    o.queue_capacity = 1000;
    o.head_flush_points = 500;  // many flushes, each racing the next commits
    o.target_chunk_points = 50;
    return o;
}

}  // namespace

TEST_CASE("background flushes keep every point readable exactly once while ingest goes on") {
    TempDir dir;
    auto opened = Engine::open(small_heads(dir));
    REQUIRE(opened.is_ok());
    auto& engine = *opened.value();

    std::vector<std::string> keys;
    for (int i = 0; i < 16; ++i)
        keys.push_back(key("pm25", "d" + std::to_string(i)));
    std::map<std::string, std::map<std::int64_t, double>> model;

    std::atomic<bool> done{false};
    std::atomic<int> reader_failures{0};
    std::size_t max_head = 0;
    std::thread reader([&] {
        std::size_t last_total = 0;
        while (!done.load()) {
            auto r = engine.query_raw(sel("pm25"), kT0 - 3'600'000, kT0 + 24 * 3'600'000);
            if (!r.is_ok()) {
                ++reader_failures;
                continue;
            }
            std::size_t total = 0;
            for (const auto& s : r.value()) {
                for (std::size_t i = 1; i < s.timestamps_ms.size(); ++i) {
                    // Seen twice (head and chunk) or out of order: the hand-off leaked.
                    if (s.timestamps_ms[i] <= s.timestamps_ms[i - 1]) ++reader_failures;
                }
                total += s.timestamps_ms.size();
            }
            // Writes only add timestamps (duplicates replace), so what is visible never shrinks.
            if (total < last_total) ++reader_failures;
            last_total = total;
            max_head = std::max<std::size_t>(max_head, engine.stats().head_points);
        }
    });

    std::mt19937 rng(7);
    std::int64_t ts = kT0;
    for (int round = 0; round < 300; ++round) {
        std::vector<Point> points;
        for (const auto& k : keys) {
            points.push_back({k, ts, static_cast<double>(round)});
            model[k][ts] = round;
        }
        // Every few rounds a duplicate and a late sample (within the out-of-order window), which
        // may land in a head whose earlier points are being flushed.
        if (round % 7 == 3) {
            const auto& k = keys[rng() % keys.size()];
            std::int64_t dup = ts - 10'000 * static_cast<std::int64_t>(1 + rng() % 20);
            if (dup >= kT0) {
                points.push_back({k, dup, -1.0 * round});
                model[k][dup] = -1.0 * round;
            }
            std::int64_t late = ts - 5'000 - 10'000 * static_cast<std::int64_t>(rng() % 30);
            if (late >= kT0) {
                points.push_back({k, late, 0.5 * round});
                model[k][late] = 0.5 * round;
            }
        }
        REQUIRE(all_accepted(write_sync(engine, std::move(points))));
        ts += 10'000;
    }
    done = true;
    reader.join();
    CHECK(reader_failures.load() == 0);
    auto stats = engine.stats();
    CHECK(stats.flushes >= 4);
    // A full head waits for the running flush: the head (pending plus handed off) stays within
    // twice the threshold plus what one drain of a full queue adds to each.
    CHECK(max_head <= 2 * (500 + 1000) * 2);
    for (std::size_t s = 0; s < stats.flusher_busy_ns.size(); ++s) {
        CHECK(stats.flusher_busy_ns[s] > 0);
    }

    // Before the final flush (head and chunks mixed) and after it, raw and rollups agree with
    // the model.
    for (int pass = 0; pass < 2; ++pass) {
        auto raw = engine.query_raw(sel("pm25"), kT0, ts);
        REQUIRE(raw.is_ok());
        REQUIRE(raw.value().size() == keys.size());
        for (const auto& s : raw.value()) {
            const auto& want = model.at(s.series);
            REQUIRE(s.timestamps_ms.size() == want.size());
            std::size_t i = 0;
            for (const auto& [t, v] : want) {
                CHECK(s.timestamps_ms[i] == t);
                CHECK(s.values[i] == v);
                ++i;
            }
        }
        AggregateQuery q;
        q.selector = sel("pm25");
        q.start_ms = kT0;
        q.end_ms = kT0 + 60 * kMin;
        q.step_ms = kMin;  // whole minutes: read from 1-minute rollups
        q.function = Aggregation::sum;
        auto agg = engine.query_aggregate(q);
        REQUIRE(agg.is_ok());
        REQUIRE(agg.value().size() == keys.size());
        for (const auto& s : agg.value()) {
            const auto& want = model.at(s.key);
            for (std::size_t i = 0; i < s.timestamps_ms.size(); ++i) {
                double sum = 0;
                for (auto it = want.lower_bound(s.timestamps_ms[i]);
                     it != want.end() && it->first < s.timestamps_ms[i] + kMin; ++it) {
                    sum += it->second;
                }
                CHECK(s.values[i] == Approx(sum));
            }
        }
        REQUIRE(engine.flush().is_ok());
    }
    CHECK(engine.stats().head_points == 0);
}

TEST_CASE("points handed to the flush thread survive a reopen before or after the flush") {
    TempDir dir;
    std::int64_t ts = kT0;
    const auto k = key("no2", "x1");
    for (int open = 0; open < 3; ++open) {
        auto opened = Engine::open(small_heads(dir));
        REQUIRE(opened.is_ok());
        auto& engine = *opened.value();
        for (int i = 0; i < 40; ++i) {
            std::vector<Point> points;
            for (int j = 0; j < 50; ++j, ts += 1000)
                points.push_back({k, ts, static_cast<double>(ts % 1000)});
            REQUIRE(all_accepted(write_sync(engine, std::move(points))));
        }
        auto raw = engine.query_raw(sel("no2"), kT0, ts);
        REQUIRE(raw.is_ok());
        REQUIRE(raw.value().size() == 1);
        CHECK(raw.value()[0].timestamps_ms.size() == static_cast<std::size_t>((ts - kT0) / 1000));
    }
}

TEST_CASE("new series appear in listings and queries while readers run, never half made") {
    // Readers used to index the series key deque and the per-series head without the writer's
    // lock, and could match a series whose head state did not exist yet; the sanitizer builds
    // run this to catch such races.
    TempDir dir;
    auto opened = Engine::open(small_heads(dir));
    REQUIRE(opened.is_ok());
    auto& engine = *opened.value();
    std::atomic<bool> done{false};
    std::atomic<int> failures{0};
    std::thread reader([&] {
        std::size_t last = 0;
        while (!done.load()) {
            auto listed = engine.series(sel("co2"));
            auto raw = engine.query_raw(sel("co2"), kT0, kT0 + 3'600'000);
            auto values = engine.label_values("device", sel("co2"));
            if (!listed.is_ok() || !raw.is_ok() || !values.is_ok()) {
                ++failures;
                continue;
            }
            for (const auto& k : listed.value()) {
                if (k.empty()) ++failures;
            }
            if (listed.value().size() < last) ++failures;
            last = listed.value().size();
        }
    });
    for (int i = 0; i < 400; ++i) {
        std::vector<Point> points;
        for (int j = 0; j < 5; ++j)
            points.push_back({key("co2", "n-" + std::to_string(i * 5 + j)), kT0 + i, 1.0});
        REQUIRE(all_accepted(write_sync(engine, std::move(points))));
    }
    done = true;
    reader.join();
    CHECK(failures.load() == 0);
    auto listed = engine.series(sel("co2"));
    REQUIRE(listed.is_ok());
    CHECK(listed.value().size() == 2000);
}

TEST_CASE("an idle shard flushes its head and then its memtables, and its log files go") {
    TempDir dir;
    EngineOptions o;
    o.directory = dir.path();
    o.shards = 2;
    o.retention = std::chrono::milliseconds(0);
    o.seal_windows = false;
    o.head_flush_interval = std::chrono::milliseconds(300);
    o.memtable_idle_flush = std::chrono::milliseconds(500);
    auto engine = open_engine(o);
    const std::int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                                 std::chrono::system_clock::now().time_since_epoch())
                                 .count();
    std::vector<Point> points;
    for (int d = 0; d < 200; ++d) {
        for (int i = 0; i < 50; ++i)
            points.push_back({key("pm25", "idle-" + std::to_string(d)), now - 600'000 + i * 10'000,
                              static_cast<double>(i)});
    }
    REQUIRE(all_accepted(write_sync(*engine, points)));
    auto memtables = [&] {
        std::uint64_t bytes = 0;
        for (const auto& f : engine->rocksdb_figures())
            bytes += f.memtable_bytes;
        return bytes;
    };
    auto wal = [&] {
        std::uint64_t bytes = 0;
        for (const auto& f : engine->rocksdb_figures())
            bytes += f.wal_bytes;
        return bytes;
    };
    const auto busy_memtables = memtables();
    const auto busy_wal = wal();
    REQUIRE(busy_memtables > 0);
    REQUIRE(busy_wal > 0);
    // Nothing is written now: within seconds the head is in chunks and the memtables in SSTs.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while ((memtables() * 4 > busy_memtables || wal() * 4 > busy_wal) &&
           std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    INFO("memtables " << busy_memtables << " -> " << memtables() << ", WAL " << busy_wal << " -> "
                      << wal());
    CHECK(memtables() * 4 <= busy_memtables);
    CHECK(wal() * 4 <= busy_wal);
    auto read = engine->query_raw(sel("pm25"), now - 700'000, now);
    REQUIRE(read.is_ok());
    std::size_t n = 0;
    for (const auto& s : read.value())
        n += s.timestamps_ms.size();
    CHECK(n == points.size());
}
