// Sealed windows: once a window and the out-of-order window after it have passed, the engine
// drops its 1-minute blocks and computes 1-minute buckets from its chunks. Every query answers
// the same before and after the seal, after a reopen, and after writes into the sealed window.
#include <catch2/catch.hpp>

#include <atomic>
#include <bit>
#include <chrono>
#include <cmath>
#include <memory>
#include <random>
#include <thread>

#include <rocksdb/db.h>

#include "tests/storage/helpers.hpp"
#include "tests/support/temp_dir.hpp"

using namespace citygate::storage;
using namespace citygate::storage::test;
using citygate::test::TempDir;

namespace {

constexpr std::int64_t kT0 = 1'718'409'600'000;  // 2024-06-15T00:00:00Z, a window start
constexpr std::int64_t kMin = 60'000;
constexpr std::int64_t kHour = 3'600'000;
constexpr std::int64_t kWindow = 4 * kHour;

struct Fixture {
    TempDir dir;
    std::shared_ptr<std::atomic<std::int64_t>> now =
        std::make_shared<std::atomic<std::int64_t>>(kT0);

    EngineOptions options() const {
        auto o = options_for(dir);
        o.partition_window = std::chrono::milliseconds(kWindow);
        o.out_of_order_window = std::chrono::hours(1);
        o.clock = [now = now] { return now->load(); };
        return o;
    }
};

// Readings every 10 s with +-20 ms of jitter for `hours` hours from kT0 + offset, values with
// one or two decimals, or arbitrary doubles for the "raw" device.
std::vector<Point> readings(int devices, std::int64_t from, std::int64_t to, std::uint32_t seed) {
    std::mt19937 rng(seed);
    std::uniform_int_distribution<int> jitter(-20, 20);
    std::normal_distribution<double> step(0, 0.4);
    std::vector<Point> out;
    for (int d = 0; d < devices; ++d) {
        double v = 20 + d;
        // From 1 s in, so the jitter never moves a point before `from` (into another window).
        for (std::int64_t t = from + 1000; t < to; t += 10'000) {
            v += step(rng);
            double value = d % 3 == 0   ? std::round(v * 10) / 10
                           : d % 3 == 1 ? std::round(v * 100) / 100
                                        : v;  // not a decimal: raw doubles
            out.push_back({key("pm25", "d-" + std::to_string(d), d % 2 ? "xuhui" : "pudong"),
                           t + jitter(rng), value});
        }
    }
    return out;
}

struct Answers {
    std::vector<RawSeries> raw;
    std::vector<std::vector<AggregatedSeries>> aggregates;
};

Answers ask(const Engine& engine) {
    Answers a;
    auto raw = engine.query_raw(sel("pm25"), kT0 - kHour, kT0 + 2 * kWindow);
    REQUIRE(raw.is_ok());
    a.raw = raw.value();
    struct Shape {
        std::int64_t start, end, step;
        bool grouped;
    };
    // Minute steps (1-minute buckets), 5 minutes, whole hours, a range starting mid-hour, one
    // crossing into the next window, and groups.
    const Shape shapes[] = {{kT0, kT0 + kWindow, kMin, false},
                            {kT0, kT0 + kWindow, 5 * kMin, false},
                            {kT0, kT0 + kWindow, kHour, false},
                            {kT0 + 37 * kMin, kT0 + 2 * kHour + 3 * kMin, kMin, false},
                            {kT0 + 3 * kHour, kT0 + kWindow + kHour, 2 * kMin, false},
                            {kT0, kT0 + kWindow, 10 * kMin, true}};
    for (const auto& shape : shapes) {
        for (auto f :
             {Aggregation::avg, Aggregation::min, Aggregation::max, Aggregation::sum,
              Aggregation::count, Aggregation::first, Aggregation::last, Aggregation::rate}) {
            AggregateQuery q;
            q.selector = sel("pm25");
            q.start_ms = shape.start;
            q.end_ms = shape.end;
            q.step_ms = shape.step;
            q.function = f;
            if (shape.grouped) q.group_by = std::vector<std::string>{"district"};
            auto r = engine.query_aggregate(q);
            REQUIRE(r.is_ok());
            a.aggregates.push_back(r.value());
        }
    }
    return a;
}

bool same_double(double a, double b) {
    return std::bit_cast<std::uint64_t>(a) == std::bit_cast<std::uint64_t>(b);
}

// Bit for bit. Sums over raw (non-decimal) doubles may differ in the last bits: a live 1-minute
// bucket was summed in the pieces the head flushes cut, a computed one in one go.
void check_same(const Answers& before, const Answers& after) {
    REQUIRE(before.raw.size() == after.raw.size());
    for (std::size_t i = 0; i < before.raw.size(); ++i) {
        INFO(before.raw[i].series);
        CHECK(before.raw[i].series == after.raw[i].series);
        CHECK(before.raw[i].timestamps_ms == after.raw[i].timestamps_ms);
        REQUIRE(before.raw[i].values.size() == after.raw[i].values.size());
        for (std::size_t j = 0; j < before.raw[i].values.size(); ++j)
            CHECK(same_double(before.raw[i].values[j], after.raw[i].values[j]));
    }
    REQUIRE(before.aggregates.size() == after.aggregates.size());
    for (std::size_t q = 0; q < before.aggregates.size(); ++q) {
        const auto& b = before.aggregates[q];
        const auto& a = after.aggregates[q];
        REQUIRE(b.size() == a.size());
        for (std::size_t s = 0; s < b.size(); ++s) {
            INFO("query " << q << ", " << b[s].key);
            CHECK(b[s].key == a[s].key);
            CHECK(b[s].timestamps_ms == a[s].timestamps_ms);
            REQUIRE(b[s].values.size() == a[s].values.size());
            const bool raw_doubles = b[s].key.find("d-2") != std::string::npos ||
                                     b[s].key.find("d-5") != std::string::npos ||
                                     b[s].key[0] == '{';
            for (std::size_t j = 0; j < b[s].values.size(); ++j) {
                if (raw_doubles) {
                    CHECK(b[s].values[j] == Approx(a[s].values[j]).epsilon(1e-12));
                } else {
                    CHECK(same_double(b[s].values[j], a[s].values[j]));
                }
            }
        }
    }
}

// Readings every second (decimals) from `devices` devices named f-<n>.
std::vector<Point> fast_readings(int devices, std::int64_t from, std::int64_t to) {
    std::vector<Point> out;
    for (int d = 0; d < devices; ++d) {
        for (std::int64_t t = from + 500; t < to; t += 1000) {
            double v = std::round((40 + d + 5 * std::sin(static_cast<double>(t) / 1e6)) * 10) / 10;
            out.push_back({key("pm25", "f-" + std::to_string(d)), t, v});
        }
    }
    return out;
}

// 1-minute blocks in the data directory (the engine closed): every shard, every window.
std::size_t minute_blocks(const std::filesystem::path& directory) {
    std::size_t blocks = 0;
    for (const auto& entry : std::filesystem::directory_iterator(directory)) {
        if (!entry.is_directory()) continue;
        std::vector<std::string> names;
        if (!rocksdb::DB::ListColumnFamilies({}, entry.path().string(), &names).ok()) continue;
        std::vector<rocksdb::ColumnFamilyDescriptor> families;
        for (const auto& name : names)
            families.emplace_back(name, rocksdb::ColumnFamilyOptions());
        std::vector<rocksdb::ColumnFamilyHandle*> handles;
        rocksdb::DB* raw = nullptr;
        REQUIRE(
            rocksdb::DB::OpenForReadOnly({}, entry.path().string(), families, &handles, &raw).ok());
        std::unique_ptr<rocksdb::DB> db(raw);
        for (std::size_t i = 0; i < handles.size(); ++i) {
            if (names[i].rfind("window-", 0) != 0) continue;
            std::unique_ptr<rocksdb::Iterator> it(db->NewIterator({}, handles[i]));
            for (it->Seek("m"); it->Valid() && it->key()[0] == 'm'; it->Next())
                ++blocks;
        }
        for (auto* handle : handles)
            REQUIRE(db->DestroyColumnFamilyHandle(handle).ok());
    }
    return blocks;
}

void wait_sealed(const Engine& engine, std::uint64_t windows) {
    for (int i = 0; i < 200 && engine.stats().windows_sealed < windows; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    REQUIRE(engine.stats().windows_sealed >= windows);
}

}  // namespace

TEST_CASE("queries answer the same before and after a window is sealed, and after a reopen") {
    Fixture fx;
    // Before the seal, from stored 1-minute blocks (1) or computed ones (the default, for 10 s
    // readings).
    const std::size_t min_points =
        GENERATE(std::size_t{1}, EngineOptions{}.minute_block_min_points);
    auto options = fx.options();
    options.minute_block_min_points = min_points;
    Answers before;
    {
        auto engine = open_engine(options);
        // Three head flushes cut the hours, so live 1-minute blocks were merged across flushes.
        for (auto [from, to] : {std::pair{kT0, kT0 + 70 * kMin},
                                {kT0 + 70 * kMin, kT0 + 150 * kMin},
                                {kT0 + 150 * kMin, kT0 + kWindow + 30 * kMin}}) {
            fx.now->store(to);
            REQUIRE(all_accepted(write_sync(*engine, readings(6, from, to, 7))));
            REQUIRE(engine->flush().is_ok());
        }
        // Late points and a duplicate that replaces a value, within the out-of-order window.
        REQUIRE(all_accepted(write_sync(
            *engine, {{key("pm25", "d-0", "pudong"), kT0 + kWindow - 10 * kMin + 5, 99.5},
                      {key("pm25", "d-1", "xuhui"), kT0 + kWindow - 30 * kMin + 1, 12.25}})));
        REQUIRE(engine->flush().is_ok());
        before = ask(*engine);
        REQUIRE(engine->stats().windows_sealed == 0);

        fx.now->store(kT0 + kWindow + kHour);  // the first window and its grace are over
        wait_sealed(*engine, 2);               // the first window, on both shards
        CHECK(engine->stats().windows_sealed == 2);
        check_same(before, ask(*engine));
    }
    auto engine = open_engine(options);  // the seal is on disk
    CHECK(engine->stats().windows_sealed == 2);
    check_same(before, ask(*engine));
}

TEST_CASE("points written into a sealed window are in its buckets") {
    Fixture fx;
    auto engine = open_engine(fx.options());
    REQUIRE(all_accepted(write_sync(*engine, readings(4, kT0, kT0 + 2 * kHour, 3))));
    REQUIRE(engine->flush().is_ok());
    fx.now->store(kT0 + kWindow + kHour);
    wait_sealed(*engine, 2);
    // A device with a clock behind (a new series), and another new series that arrives in two
    // flushes: the second extends an hour of the sealed window.
    auto behind = readings(1, kT0 + 20 * kMin, kT0 + kHour, 9);
    for (auto& p : behind)
        p.series = key("pm25", "behind");
    REQUIRE(all_accepted(write_sync(*engine, behind)));
    REQUIRE(engine->flush().is_ok());
    auto late = readings(2, kT0 + kHour, kT0 + 90 * kMin, 11);
    for (auto& p : late)
        p.series = key("pm25", "late");
    std::vector<Point> first(late.begin(), late.begin() + 100),
        rest(late.begin() + 100, late.end());
    REQUIRE(all_accepted(write_sync(*engine, first)));
    REQUIRE(engine->flush().is_ok());
    REQUIRE(all_accepted(write_sync(*engine, rest)));
    for (bool flushed : {false, true}) {
        if (flushed) REQUIRE(engine->flush().is_ok());
        for (std::int64_t step : {kMin, 5 * kMin, kHour}) {
            for (auto f : {Aggregation::sum, Aggregation::count, Aggregation::min, Aggregation::max,
                           Aggregation::first, Aggregation::last}) {
                AggregateQuery q;
                q.selector = sel("pm25");
                q.start_ms = kT0;
                q.end_ms = kT0 + kWindow;
                q.step_ms = step;
                q.function = f;
                auto rolled = engine->query_aggregate(q);
                q.source = AggregateQuery::Source::raw;
                auto raw = engine->query_aggregate(q);
                REQUIRE(rolled.is_ok());
                REQUIRE(raw.is_ok());
                REQUIRE(rolled.value().size() == raw.value().size());
                for (std::size_t s = 0; s < raw.value().size(); ++s) {
                    INFO(raw.value()[s].key << " step " << step << " flushed " << flushed);
                    CHECK(rolled.value()[s].timestamps_ms == raw.value()[s].timestamps_ms);
                    REQUIRE(rolled.value()[s].values.size() == raw.value()[s].values.size());
                    for (std::size_t j = 0; j < raw.value()[s].values.size(); ++j) {
                        CHECK(rolled.value()[s].values[j] ==
                              Approx(raw.value()[s].values[j]).epsilon(1e-9));
                    }
                }
            }
        }
    }
}

TEST_CASE("deleting points of a sealed window keeps its buckets right") {
    Fixture fx;
    auto engine = open_engine(fx.options());
    REQUIRE(all_accepted(write_sync(*engine, readings(3, kT0, kT0 + 2 * kHour, 5))));
    REQUIRE(engine->flush().is_ok());
    fx.now->store(kT0 + kWindow + kHour);
    wait_sealed(*engine, 2);
    auto deleted = engine->delete_points(sel("pm25"), kT0 + 30 * kMin, kT0 + 40 * kMin);
    REQUIRE(deleted.is_ok());
    CHECK(deleted.value().points > 0);
    for (std::int64_t step : {kMin, kHour}) {
        AggregateQuery q;
        q.selector = sel("pm25");
        q.start_ms = kT0;
        q.end_ms = kT0 + kWindow;
        q.step_ms = step;
        q.function = Aggregation::count;
        auto rolled = engine->query_aggregate(q);
        q.source = AggregateQuery::Source::raw;
        auto raw = engine->query_aggregate(q);
        REQUIRE(rolled.is_ok());
        REQUIRE(raw.is_ok());
        REQUIRE(rolled.value().size() == 3);
        for (std::size_t s = 0; s < 3; ++s) {
            CHECK(rolled.value()[s].timestamps_ms == raw.value()[s].timestamps_ms);
            CHECK(rolled.value()[s].values == raw.value()[s].values);
        }
    }
}

TEST_CASE("an hour keeps a 1-minute block only where its series is dense, and answers the same") {
    // The same writes into three engines: every hour with a block, none, and the default (the
    // 1 s devices' hours with one, the 10 s devices' without).
    const std::size_t settings[] = {1, 1'000'000, EngineOptions{}.minute_block_min_points};
    std::vector<Answers> answers;
    std::vector<std::size_t> blocks;
    Answers flushed;
    for (std::size_t min_points : settings) {
        Fixture fx;
        auto options = fx.options();
        options.minute_block_min_points = min_points;
        {
            auto engine = open_engine(options);
            auto write = [&](std::vector<Point> points) {
                REQUIRE(all_accepted(write_sync(*engine, std::move(points))));
            };
            // c-0 and c-1 report every 10 s until minute 70, then every second: their hour 1
            // was first written sparse and keeps no block, hour 2 starts dense.
            auto changing = [&](std::int64_t from, std::int64_t to, std::int64_t every) {
                std::vector<Point> out;
                for (const char* device : {"c-0", "c-1"}) {
                    for (std::int64_t t = from + 250; t < to; t += every)
                        out.push_back(
                            {key("pm25", device), t, static_cast<double>(t / every % 97)});
                }
                return out;
            };
            for (auto [from, to] : {std::pair{kT0, kT0 + 70 * kMin},
                                    {kT0 + 70 * kMin, kT0 + 150 * kMin},
                                    {kT0 + 150 * kMin, kT0 + kWindow + 30 * kMin}}) {
                fx.now->store(to);
                write(readings(6, from, to, 11));
                write(fast_readings(2, from, to));
                write(changing(from, to, from < kT0 + 70 * kMin ? 10'000 : 1000));
                REQUIRE(engine->flush().is_ok());
                if (to != kT0 + 150 * kMin) continue;
                // Late points and duplicates into flushed hours with and without blocks (c-1's
                // hour 1 is rewritten from all its points, now dense: it gets a block).
                write({{key("pm25", "d-0", "pudong"), kT0 + 100 * kMin + 5, 99.5},
                       {key("pm25", "d-1", "xuhui"), kT0 + 130 * kMin + 1, 12.25},
                       {key("pm25", "f-0"), kT0 + 110 * kMin + 500, -3.5},
                       {key("pm25", "f-1"), kT0 + 2 * kHour + 7, 1234.5},
                       {key("pm25", "c-0"), kT0 + 125 * kMin + 3, 7},
                       {key("pm25", "c-1"), kT0 + 95 * kMin + 3, 7}});
                REQUIRE(engine->flush().is_ok());
            }
            // A deleted stretch rewrites the window of every series but c-0 (whose hour 1 is
            // left as its flushes wrote it) from all of its points.
            auto deleted = engine->delete_points(sel(R"(pm25{device!="c-0"})"), kT0 + 190 * kMin,
                                                 kT0 + 193 * kMin + 30'000);
            REQUIRE(deleted.is_ok());
            CHECK(deleted.value().points > 0);
            // Points still in the head are bucketed with those on disk.
            write(fast_readings(2, kT0 + kWindow + 30 * kMin, kT0 + kWindow + 33 * kMin));
            write(readings(6, kT0 + kWindow + 30 * kMin, kT0 + kWindow + 33 * kMin, 12));
            answers.push_back(ask(*engine));
            REQUIRE(engine->stats().windows_sealed == 0);
            // Flushed (sums of the head's points are then rounded as stored ones are).
            REQUIRE(engine->flush().is_ok());
            flushed = ask(*engine);
        }
        blocks.push_back(minute_blocks(options.directory));
        auto engine = open_engine(options);
        check_same(flushed, ask(*engine));
    }
    check_same(answers[0], answers[1]);
    check_same(answers[0], answers[2]);
    // Per series-hour: 12 series over 5 hours with blocks, none, and the dense ones': f-0 and
    // f-1 every hour; c-0 from hour 2; c-1 from hour 1, rewritten from all of its points by
    // the late one.
    CHECK(blocks[0] > blocks[2]);
    CHECK(blocks[1] == 0);
    CHECK(blocks[2] == 2 * 5 + 3 + 4);
}
