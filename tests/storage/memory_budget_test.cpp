// The memory budget: one figure (EngineOptions::memory_budget_bytes) from which the memtables,
// the block cache, the head and the series index take their shares, each visible in
// Engine::memory(), and a series index at its share refusing new series.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "tests/storage/helpers.hpp"
#include "tests/support/temp_dir.hpp"

using namespace citygate::storage;
using namespace citygate::storage::test;
using citygate::test::TempDir;

namespace {

constexpr std::int64_t kT0 = 1'718'409'600'000;
constexpr std::uint64_t kMiB = 1 << 20;

std::vector<Point> points_of(int series, int points_each, std::int64_t t0 = kT0) {
    std::vector<Point> points;
    for (int s = 0; s < series; ++s) {
        for (int i = 0; i < points_each; ++i)
            points.push_back({key("pm25", "d-" + std::to_string(s)), t0 + i * 1000, 1.0 * i});
    }
    return points;
}

}  // namespace

TEST_CASE("each part takes its share of the memory budget, or its own option where lower") {
    TempDir dir;
    EngineOptions o = options_for(dir, 2);
    o.memory_budget_bytes = 400 * kMiB;
    o.block_cache_bytes = 8 * kMiB;  // lower than its 15 %: its own option wins
    auto engine = open_engine(o);
    StorageMemory m = engine->memory();
    CHECK(m.budget == 400 * kMiB);
    CHECK(m.memtables.limit == 400 * kMiB / 100 * 25);
    CHECK(m.block_cache.limit == 8 * kMiB);
    CHECK(m.series_index.limit == 400 * kMiB / 100 * 15);
    // 20 % for two heads a shard at 24 bytes a point: 80 MiB / 96 bytes, below the default
    // 2 M points a head.
    CHECK(m.head.limit <= 400 * kMiB / 100 * 20);
    CHECK(m.head.limit > 400 * kMiB / 100 * 19);
    CHECK(m.budget - (m.memtables.limit + m.series_index.limit + m.head.limit) >=
          400 * kMiB / 100 * 25);  // queries' 15 % and the rest are the caller's
}

TEST_CASE("without a memory budget each part keeps its own option") {
    TempDir dir;
    EngineOptions o = options_for(dir, 2);
    auto engine = open_engine(o);
    StorageMemory m = engine->memory();
    CHECK(m.budget == 0);
    CHECK(m.memtables.limit == o.memtable_budget_bytes);
    CHECK(m.block_cache.limit == o.block_cache_bytes);
    CHECK(m.head.limit == std::uint64_t{o.head_flush_points} * 2 * 2 * kHeadPointBytes);
    CHECK(m.series_index.limit == 0);  // unbounded: the series limits bound it
}

TEST_CASE("the head's and the series index's memory are counted as they fill and drain") {
    TempDir dir;
    EngineOptions o = options_for(dir, 2);
    o.memory_budget_bytes = 256 * kMiB;
    auto engine = open_engine(o);
    StorageMemory empty = engine->memory();
    CHECK(empty.head.used == 0);
    CHECK(empty.series_index.used == 0);

    REQUIRE(all_accepted(write_sync(*engine, points_of(200, 50))));
    StorageMemory filled = engine->memory();
    // 10,000 points of 16 bytes, in vectors grown by doubling: at least the samples, at most
    // twice them.
    CHECK(filled.head.used >= 10'000 * 16);
    CHECK(filled.head.used <= 2 * 10'000 * 16 + 200 * 16);
    // 200 keys of about 40 bytes, their ids, postings and states: a few hundred bytes each.
    CHECK(filled.series_index.used > 200 * 100);
    CHECK(filled.series_index.used < 200 * 2000);
    CHECK(filled.memtables.used > 0);

    REQUIRE(engine->flush().is_ok());
    StorageMemory flushed = engine->memory();
    CHECK(flushed.head.used == 0);
    CHECK(flushed.series_index.used == filled.series_index.used);

    // The next head of a steady series is reserved to its previous one: 50 points, one
    // allocation of exactly 50 samples a series.
    REQUIRE(all_accepted(write_sync(*engine, points_of(200, 50, kT0 + 60'000))));
    CHECK(engine->memory().head.used == 200 * 50 * 16);
}

TEST_CASE(
    "a series index at its share of the budget refuses new series, not readings of "
    "existing ones") {
    TempDir dir;
    EngineOptions o = options_for(dir, 2);
    o.memory_budget_bytes = kMiB;  // 15 %: about 157 KB of index, a few hundred series
    auto engine = open_engine(o);
    const std::uint64_t limit = engine->memory().series_index.limit;
    REQUIRE(limit == kMiB / 100 * 15);

    WriteResult r = write_sync(*engine, points_of(5000, 1));
    const std::size_t refused = r.rejected_by_limit[static_cast<std::size_t>(SeriesLimit::memory)];
    const std::uint64_t series = engine->stats().series;
    INFO("series " << series << ", refused " << refused << ", index bytes "
                   << engine->memory().series_index.used << " of " << limit);
    CHECK(refused > 0);
    CHECK(series + refused == 5000);
    CHECK(series > 100);
    // One batch may pass the share by at most the series it admitted before seeing it reached.
    CHECK(engine->memory().series_index.used < limit + limit / 10);

    // Existing series keep being written; a new one is still refused, and named. Which series
    // got in depends on which shard's writer reached the share first: take one that did.
    std::string existing;
    for (int s = 0; s < 5000 && existing.empty(); ++s) {
        if (engine->find_series(key("pm25", "d-" + std::to_string(s))).valid())
            existing = key("pm25", "d-" + std::to_string(s));
    }
    REQUIRE_FALSE(existing.empty());
    std::vector<Point> more{{existing, kT0 + 5000, 2.0},
                            {key("pm25", "brand-new"), kT0 + 5000, 3.0}};
    WriteResult again = write_sync(*engine, std::move(more));
    CHECK(again.rejected_by_limit[static_cast<std::size_t>(SeriesLimit::memory)] == 1);
    CHECK(again.rejected() == 1);
    CHECK(std::string(series_limit_name(SeriesLimit::memory)) == "memory");
}
