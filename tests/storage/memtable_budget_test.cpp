// The memtable budget: one RocksDB write buffer manager for every shard and window column
// family, so memtable memory stays near EngineOptions::memtable_budget_bytes however many
// windows are being written.
#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <thread>

#include "tests/storage/helpers.hpp"
#include "tests/support/temp_dir.hpp"

using namespace citygate::storage;
using namespace citygate::storage::test;
using citygate::test::TempDir;

namespace {

constexpr std::int64_t kT0 = 1'718'409'600'000;
constexpr std::int64_t kHour = 3'600'000;
constexpr std::size_t kMiB = 1 << 20;

std::uint64_t memtable_bytes(const Engine& engine) {
    std::uint64_t total = 0;
    for (const auto& f : engine.rocksdb_figures())
        total += f.memtable_bytes;
    return total;
}

struct Observed {
    std::uint64_t peak = 0;     // the most seen after any hour's flush
    std::uint64_t settled = 0;  // once RocksDB's background flushes are done
};

// Writes `hours` one-hour windows on two shards, flushing the head after each hour so every
// window's column family gets a memtable of chunks and rollups.
Observed memtable_bytes_writing(const TempDir& dir, std::size_t budget, int hours) {
    EngineOptions o;
    o.directory = dir.path();
    o.shards = 2;
    o.retention = std::chrono::milliseconds(0);
    o.out_of_order_window = std::chrono::hours(24 * 365);
    o.partition_window = std::chrono::hours(1);
    o.memtable_budget_bytes = budget;
    // These 2024 windows are long over by the wall clock: sealing would compact each one (its
    // memtable with it) as soon as it is created, leaving nothing for the budget to bound.
    o.seal_windows = false;
    auto opened = Engine::open(o);
    REQUIRE(opened.is_ok());
    auto& engine = *opened.value();
    Observed seen;
    for (int h = 0; h < hours; ++h) {
        std::vector<Point> points;
        for (int d = 0; d < 20; ++d) {
            for (std::int64_t t = 0; t < kHour; t += 60'000)
                points.push_back(
                    {key("pm25", "m-" + std::to_string(d)), kT0 + h * kHour + t, 1.0 * d});
        }
        REQUIRE(all_accepted(write_sync(engine, std::move(points))));
        REQUIRE(engine.flush().is_ok());
        seen.peak = std::max(seen.peak, memtable_bytes(engine));
    }
    seen.settled = memtable_bytes(engine);
    for (int i = 0; i < 50; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        std::uint64_t now = memtable_bytes(engine);
        if (now == seen.settled) break;
        seen.settled = now;
    }
    return seen;
}

}  // namespace

TEST_CASE("memtables of many window column families stay near the memtable budget") {
    constexpr std::size_t kBudget = 16 * kMiB;
    constexpr int kHours = 40;  // 80 window column families over the two shards
    TempDir bounded;
    Observed with_budget = memtable_bytes_writing(bounded, kBudget, kHours);
    TempDir unbounded;
    Observed without = memtable_bytes_writing(unbounded, 0, kHours);
    INFO("memtable bytes with a " << kBudget << "-byte budget: peak " << with_budget.peak
                                  << ", settled " << with_budget.settled << "; unbounded: peak "
                                  << without.peak << ", settled " << without.settled);
    // Over the budget, the shard that writes next flushes its oldest memtable; memtables being
    // flushed count until their flush ends, so just after a write the figure may pass the budget
    // by what is in flight, but it does not grow with the windows as the unbounded one does.
    CHECK(with_budget.peak < 4 * kBudget);
    CHECK(with_budget.settled <= kBudget);
    CHECK(without.settled > 8 * kBudget);  // a case the budget has to work for
}

TEST_CASE("a memtable budget of 0 leaves memtables unbounded and the engine works as before") {
    TempDir dir;
    EngineOptions o;
    o.directory = dir.path();
    o.shards = 1;
    o.retention = std::chrono::milliseconds(0);
    o.memtable_budget_bytes = 0;
    auto opened = Engine::open(o);
    REQUIRE(opened.is_ok());
    REQUIRE(all_accepted(write_sync(*opened.value(), {{key("pm25", "z"), kT0, 1}})));
    REQUIRE(opened.value()->flush().is_ok());
    auto r = opened.value()->query_raw(sel("pm25"), kT0, kT0 + 1);
    REQUIRE(r.is_ok());
    CHECK(r.value().size() == 1);
}
