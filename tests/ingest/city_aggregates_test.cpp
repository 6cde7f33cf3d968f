// City aggregates: per-thread minute buckets, their merge, the pair cap and the exposition.
#include <catch2/catch.hpp>

#include <thread>

#include "ingest/city_aggregates.hpp"

using namespace citygate::ingest;

namespace {

constexpr std::int64_t minute = 60'000;
// 12:34:20 on some day, well inside a minute; the last complete minute starts at 12:33:00.
constexpr std::int64_t now = 1'763'800'000'000 / minute * minute + 20'000;
constexpr std::int64_t last_minute = now / minute * minute - minute;

const CityAverage* find(const CitySnapshot& snapshot, std::string_view district,
                        std::string_view measurement) {
    for (const auto& pair : snapshot.pairs) {
        if (pair.district == district && pair.measurement == measurement) return &pair;
    }
    return nullptr;
}

}  // namespace

TEST_CASE("the average covers the readings of the last complete minute by their timestamp") {
    CityAggregates city(16);
    CityAccumulator& accumulator = city.add_accumulator();
    accumulator.add("pudong", "pm25", last_minute + 1'000, 10, now);
    accumulator.add("pudong", "pm25", last_minute + 59'999, 20, now);
    accumulator.add("pudong", "pm25", now - 5'000, 100, now);  // current minute
    accumulator.add("xuhui", "pm25", last_minute, 7, now);

    CitySnapshot snapshot = city.snapshot(now);
    CHECK(snapshot.minute_start_ms == last_minute);
    REQUIRE(snapshot.pairs.size() == 2);
    const CityAverage* pudong = find(snapshot, "pudong", "pm25");
    REQUIRE(pudong);
    CHECK(pudong->samples == 2);
    CHECK(pudong->average == 15);
    CHECK(pudong->current_samples == 1);
    CHECK(pudong->current_average == 100);
    CHECK(find(snapshot, "xuhui", "pm25")->average == 7);
}

TEST_CASE("readings a minute or more outside the kept window are not aggregated") {
    CityAggregates city(16);
    CityAccumulator& accumulator = city.add_accumulator();
    accumulator.add("pudong", "pm25", last_minute - 1, 1, now);                 // two minutes ago
    accumulator.add("pudong", "pm25", now + 2 * minute, 1, now);                // clock far ahead
    accumulator.add("pudong", "pm25", now / minute * minute + minute, 1, now);  // next minute
    CitySnapshot snapshot = city.snapshot(now);
    // The reading of the next minute is kept for when that minute is reported, not shown now.
    CHECK(snapshot.pairs.empty());
    CitySnapshot later = city.snapshot(now + 2 * minute);
    REQUIRE(later.pairs.size() == 1);
    CHECK(later.pairs[0].samples == 1);
}

TEST_CASE("a minute's bucket is reused two minutes later, and an older reading does not reset it") {
    CityAggregates city(16);
    CityAccumulator& accumulator = city.add_accumulator();
    accumulator.add("pudong", "no2", last_minute + 10, 4, now);
    std::int64_t two_later = now + 2 * minute;
    accumulator.add("pudong", "no2", last_minute + 2 * minute + 10, 8, two_later);
    // A late reading of the minute the bucket held before is refused, not mixed in.
    accumulator.add("pudong", "no2", last_minute + 20, 1000, last_minute + 20 + minute);
    CitySnapshot snapshot = city.snapshot(two_later);
    REQUIRE(snapshot.pairs.size() == 1);
    CHECK(snapshot.pairs[0].samples == 1);
    CHECK(snapshot.pairs[0].average == 8);
}

TEST_CASE("accumulators of several threads are merged, and read consistently while written") {
    CityAggregates city(16);
    constexpr int threads = 4, readings = 20'000;
    std::vector<std::thread> workers;
    for (int t = 0; t < threads; ++t) {
        workers.emplace_back([&city, t] {
            CityAccumulator& mine = city.local();
            for (int i = 0; i < readings; ++i)
                mine.add(t % 2 ? "pudong" : "xuhui", "pm25", last_minute + i, 5, now);
        });
    }
    // A count and a sum from different updates would give an average other than 5.
    int inconsistent = 0;
    for (int i = 0; i < 200; ++i) {
        for (const auto& pair : city.snapshot(now).pairs) {
            if (pair.samples && pair.average != 5) ++inconsistent;
        }
    }
    for (auto& worker : workers)
        worker.join();
    CHECK(inconsistent == 0);
    CitySnapshot snapshot = city.snapshot(now);
    REQUIRE(snapshot.pairs.size() == 2);
    CHECK(find(snapshot, "pudong", "pm25")->samples == 2 * readings);
    CHECK(find(snapshot, "xuhui", "pm25")->samples == 2 * readings);
}

TEST_CASE("pairs beyond the cap are dropped and counted, known pairs still count") {
    CityAggregates city(2);
    CityAccumulator& accumulator = city.add_accumulator();
    accumulator.add("a", "m", last_minute, 1, now);
    accumulator.add("b", "m", last_minute, 1, now);
    accumulator.add("c", "m", last_minute, 1, now);
    accumulator.add("c", "m", last_minute, 1, now);
    accumulator.add("a", "m", last_minute, 3, now);
    CityAccumulator& other = city.add_accumulator();
    other.add("b", "m", last_minute, 5, now);  // known pair, first seen by this thread
    other.add("d", "m", last_minute, 1, now);

    CitySnapshot snapshot = city.snapshot(now);
    CHECK(snapshot.pairs_tracked == 2);
    CHECK(snapshot.readings_dropped == 3);
    REQUIRE(snapshot.pairs.size() == 2);
    CHECK(find(snapshot, "a", "m")->average == 2);
    CHECK(find(snapshot, "b", "m")->average == 3);
    CHECK_FALSE(find(snapshot, "c", "m"));
}

TEST_CASE("a cap of zero keeps nothing") {
    CityAggregates city(0);
    city.add_accumulator().add("a", "m", last_minute, 1, now);
    CitySnapshot snapshot = city.snapshot(now);
    CHECK(snapshot.pairs.empty());
    CHECK(snapshot.readings_dropped == 1);
}

TEST_CASE("the exposition has the gauges of the last minute with escaped labels") {
    CityAggregates city(16);
    CityAccumulator& accumulator = city.add_accumulator();
    accumulator.add("pu\"dong", "pm25", last_minute, 30, now);
    accumulator.add("pu\"dong", "pm25", last_minute, 40, now);
    accumulator.add("xuhui", "temp", now, 5, now);  // current minute only: no gauge yet
    std::string text = CityAggregates::serialize(city.snapshot(now));
    CHECK_THAT(text, Catch::Contains("# TYPE citygate_city_avg_1m gauge\n"
                                     "citygate_city_avg_1m{district=\"pu\\\"dong\","
                                     "measurement=\"pm25\"} 35\n"));
    CHECK_THAT(text,
               Catch::Contains(
                   "citygate_city_samples_1m{district=\"pu\\\"dong\",measurement=\"pm25\"} 2\n"));
    CHECK_THAT(text, Catch::Contains("citygate_city_minute_start_seconds " +
                                     std::to_string(last_minute / 1000) + "\n"));
    CHECK_THAT(text, Catch::Contains("citygate_city_pairs 2\n"));
    CHECK_THAT(text, Catch::Contains("citygate_city_dropped_total 0\n"));
    CHECK_FALSE(text.find("xuhui") != std::string::npos);
}

TEST_CASE("the last complete minute has its minimum and maximum, merged across threads") {
    CityAggregates city(16);
    CityAccumulator& one = city.add_accumulator();
    CityAccumulator& two = city.add_accumulator();
    one.add("pudong", "pm25", last_minute + 1'000, 10, now);
    one.add("pudong", "pm25", last_minute + 2'000, -3, now);
    two.add("pudong", "pm25", last_minute + 3'000, 42, now);
    two.add("pudong", "pm25", now - 1'000, 1000, now);  // current minute: not in them
    CitySnapshot snapshot = city.snapshot(now);
    const CityAverage* pair = find(snapshot, "pudong", "pm25");
    REQUIRE(pair);
    CHECK(pair->samples == 3);
    CHECK(pair->minimum == -3);
    CHECK(pair->maximum == 42);
    CHECK(pair->average == Approx(49.0 / 3));
    std::string text = CityAggregates::serialize(snapshot);
    CHECK_THAT(text, Catch::Contains(
                         "citygate_city_min_1m{district=\"pudong\",measurement=\"pm25\"} -3\n"));
    CHECK_THAT(text, Catch::Contains(
                         "citygate_city_max_1m{district=\"pudong\",measurement=\"pm25\"} 42\n"));
}

TEST_CASE("another window length: windows aligned to multiples of it") {
    constexpr std::int64_t window = 2'000;
    CityAggregates city(16, window);
    CHECK(city.window_ms() == window);
    CityAccumulator& accumulator = city.add_accumulator();
    const std::int64_t at = 1'763'800'000'500;  // 0.5 s into a 2 s window
    const std::int64_t last = at / window * window - window;
    accumulator.add("d", "m", last, 1, at);
    accumulator.add("d", "m", last + window - 1, 5, at);
    accumulator.add("d", "m", last - 1, 100, at);  // two windows ago: not aggregated
    CitySnapshot snapshot = city.snapshot(at);
    CHECK(snapshot.minute_start_ms == last);
    CHECK(snapshot.window_ms == window);
    const CityAverage* pair = find(snapshot, "d", "m");
    REQUIRE(pair);
    CHECK(pair->samples == 2);
    CHECK(pair->average == 3);
    CHECK(pair->minimum == 1);
    CHECK(pair->maximum == 5);
    // Two windows later the bucket is free again.
    CHECK(city.snapshot(at + 2 * window).pairs.empty());
}
