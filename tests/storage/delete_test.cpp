// Engine::delete_points: a poisoned series repaired by deleting its future reading, range
// deletes with rollups recomputed, and whole series removed from the index across a reopen.
#include <catch2/catch.hpp>

#include "tests/storage/helpers.hpp"
#include "tests/support/temp_dir.hpp"

using namespace citygate::storage;
using namespace citygate::storage::test;
using citygate::test::TempDir;

namespace {

constexpr std::int64_t kT0 = 1'718'409'600'000;  // 2024-06-15T00:00:00Z, a window start
constexpr std::int64_t kMinute = 60'000;
constexpr std::int64_t kTenYears = 3650LL * 24 * 3600 * 1000;

std::vector<std::int64_t> times_of(Engine& engine, const std::string& selector) {
    auto r = engine.query_raw(sel(selector), INT64_MIN, INT64_MAX);
    REQUIRE(r.is_ok());
    if (r.value().empty()) return {};
    REQUIRE(r.value().size() == 1);
    return r.value()[0].timestamps_ms;
}

}  // namespace

TEST_CASE("deleting a reading stamped far ahead lets the series take current readings again") {
    TempDir dir;
    auto o = options_for(dir);
    const std::string series = key("pm25", "clock-broken");
    const std::string selector = R"(pm25{device="clock-broken"})";
    auto engine = open_engine(o);
    std::vector<Point> good;
    for (int i = 0; i < 10; ++i)
        good.push_back({series, kT0 + i * kMinute, 1.0 * i});
    REQUIRE(all_accepted(write_sync(*engine, good)));
    // The bad clock: one reading ten years ahead is stored...
    REQUIRE(all_accepted(write_sync(*engine, {{series, kT0 + kTenYears, 99}})));
    // ... and from then on every correct reading of the series is late.
    auto poisoned = write_sync(*engine, {{series, kT0 + 10 * kMinute, 10}});
    REQUIRE(poisoned.durable());
    CHECK(poisoned.rejected_late == 1);

    bool flushed_first = GENERATE(false, true);
    INFO("future point flushed into chunks before the delete: " << flushed_first);
    if (flushed_first) REQUIRE(engine->flush().is_ok());

    auto deleted = engine->delete_points(sel(selector), kT0 + kTenYears, kT0 + kTenYears + 1);
    REQUIRE(deleted.is_ok());
    CHECK(deleted.value().series == 1);
    CHECK(deleted.value().points == 1);
    CHECK(deleted.value().series_removed == 0);

    auto repaired = write_sync(*engine, {{series, kT0 + 10 * kMinute, 10}});
    CHECK(all_accepted(repaired));
    auto times = times_of(*engine, selector);
    REQUIRE(times.size() == 11);
    CHECK(times.back() == kT0 + 10 * kMinute);

    // Still repaired after a reopen: the writer's view comes from what is on disk.
    engine.reset();
    engine = open_engine(o);
    CHECK(all_accepted(write_sync(*engine, {{series, kT0 + 11 * kMinute, 11}})));
    CHECK(times_of(*engine, selector).size() == 12);
    // Deleting nothing that exists changes nothing.
    auto none = engine->delete_points(sel(selector), kT0 + 2 * kTenYears, kT0 + 3 * kTenYears);
    REQUIRE(none.is_ok());
    CHECK(none.value().points == 0);
    CHECK(times_of(*engine, selector).size() == 12);
}

TEST_CASE("a range delete removes raw points and the rollups agree with what is left") {
    TempDir dir;
    auto engine = open_engine(options_for(dir));
    std::vector<Point> points;
    for (int i = 0; i < 180; ++i) {  // three hours, one a minute, two series
        points.push_back({key("no2", "a"), kT0 + i * kMinute, 1.0 + i});
        points.push_back({key("no2", "b"), kT0 + i * kMinute, 2.0 + i});
    }
    REQUIRE(all_accepted(write_sync(*engine, points)));
    REQUIRE(engine->flush().is_ok());
    // 30 minutes in the middle of the first hour and the second hour whole, of series a only.
    auto deleted =
        engine->delete_points(sel(R"(no2{device="a"})"), kT0 + 15 * kMinute, kT0 + 45 * kMinute);
    REQUIRE(deleted.is_ok());
    CHECK(deleted.value().points == 30);
    deleted =
        engine->delete_points(sel(R"(no2{device="a"})"), kT0 + 60 * kMinute, kT0 + 120 * kMinute);
    REQUIRE(deleted.is_ok());
    CHECK(deleted.value().points == 60);
    CHECK(times_of(*engine, R"(no2{device="a"})").size() == 90);
    CHECK(times_of(*engine, R"(no2{device="b"})").size() == 180);

    for (std::int64_t step : {kMinute, 60 * kMinute}) {
        INFO("step " << step);
        AggregateQuery q;
        q.selector = sel(R"(no2{device="a"})");
        q.start_ms = kT0;
        q.end_ms = kT0 + 180 * kMinute;
        q.step_ms = step;
        q.function = Aggregation::sum;
        auto rollups = engine->query_aggregate(q);
        q.source = AggregateQuery::Source::raw;
        auto raw = engine->query_aggregate(q);
        REQUIRE(rollups.is_ok());
        REQUIRE(raw.is_ok());
        REQUIRE(rollups.value().size() == 1);
        REQUIRE(raw.value().size() == 1);
        CHECK(rollups.value()[0].timestamps_ms == raw.value()[0].timestamps_ms);
        CHECK(rollups.value()[0].values == raw.value()[0].values);
    }
    // The emptied hour has no rollup left.
    AggregateQuery hourly;
    hourly.selector = sel(R"(no2{device="a"})");
    hourly.start_ms = kT0;
    hourly.end_ms = kT0 + 180 * kMinute;
    hourly.step_ms = 60 * kMinute;
    hourly.function = Aggregation::count;
    auto counts = engine->query_aggregate(hourly);
    REQUIRE(counts.is_ok());
    CHECK(counts.value()[0].timestamps_ms == std::vector<std::int64_t>{kT0, kT0 + 120 * kMinute});
    CHECK(counts.value()[0].values == std::vector<double>{30, 60});
}

TEST_CASE("a series left without points leaves the index, also after a reopen, and can return") {
    TempDir dir;
    auto o = options_for(dir, 1);  // one shard: the removed series holds the newest id
    {
        auto engine = open_engine(o);
        REQUIRE(all_accepted(write_sync(*engine, {{key("co", "keep"), kT0, 1},
                                                  {key("co", "gone"), kT0, 2},
                                                  {key("co", "gone"), kT0 + kMinute, 3}})));
        auto deleted = engine->delete_points(sel(R"(co{device="gone"})"), INT64_MIN, INT64_MAX);
        REQUIRE(deleted.is_ok());
        CHECK(deleted.value().points == 2);
        CHECK(deleted.value().series_removed == 1);
        auto listed = engine->series(sel("co"));
        REQUIRE(listed.is_ok());
        CHECK(listed.value() == std::vector<std::string>{key("co", "keep")});
        CHECK(engine->stats().series == 1);
        // A selector matching every series (no positive matcher) skips the removed one too.
        auto everything = engine->series(sel(R"({device!="nothing"})"));
        REQUIRE(everything.is_ok());
        CHECK(everything.value().size() == 1);
    }
    auto engine = open_engine(o);
    CHECK(engine->stats().series == 1);
    auto listed = engine->series(sel("co"));
    REQUIRE(listed.is_ok());
    CHECK(listed.value() == std::vector<std::string>{key("co", "keep")});
    // Written again it is a new series holding only the new reading; so is a brand new one.
    REQUIRE(all_accepted(write_sync(
        *engine, {{key("co", "gone"), kT0 + 5 * kMinute, 4}, {key("co", "new"), kT0, 5}})));
    CHECK(times_of(*engine, R"(co{device="gone"})") ==
          std::vector<std::int64_t>{kT0 + 5 * kMinute});
    CHECK(times_of(*engine, R"(co{device="new"})") == std::vector<std::int64_t>{kT0});
    CHECK(times_of(*engine, R"(co{device="keep"})") == std::vector<std::int64_t>{kT0});
    CHECK(engine->stats().series == 3);
    auto bad = engine->delete_points(sel("co"), kT0, kT0);
    CHECK_FALSE(bad.is_ok());
}
